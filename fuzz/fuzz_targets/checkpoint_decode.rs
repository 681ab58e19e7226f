//! Fuzz target `checkpoint_decode` (see `berth_fuzz`). Under cargo-fuzz (`--cfg fuzzing`) this is a
//! libFuzzer entry point; in a plain build it replays the stored inputs (or the files and
//! directories given as arguments) on stable.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::fuzz("checkpoint_decode", data));

#[cfg(not(fuzzing))]
fn main() {
    berth_fuzz::replay::main("checkpoint_decode");
}
