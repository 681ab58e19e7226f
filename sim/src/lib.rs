//! berth-sim: berth's deterministic simulator (docs/architecture.md §6).
//!
//! # Contract
//!
//! A run is a seed and a [`Shape`]. Under `--cfg madsim` ([`run_seed`]) the seed expands
//! into a [`Workload`] (pods, containers whose processes exit with chosen codes at chosen
//! times, one script of CRI requests per client, several clients at once) and a swarm fault
//! plan (`berth_simbackend::FaultPlan::from_seed`, restricted to [`Shape::faults`]). The
//! real berth service runs on a madsim node against the simulated containerd and disk
//! (`berth-simbackend`):
//!
//! 1. **chaos**: faults on; berth killed at random moments (any await point; half of the
//!    kills are power losses that drop the disk's page cache) and restarted, sometimes again
//!    while it recovers; containerd restarted, shims killed, processes exiting at any
//!    moment; the clients retry whatever failed, as kubelet does;
//! 2. **heal**: faults off; berth must be serving within a bound, every client must finish
//!    its script within a bound, then the system must have converged: every check in
//!    [`checks`] passes, a restart of the settled berth changes nothing it reports, and
//!    removing everything leaves nothing behind.
//!
//! The checkers run after every client request and chaos event where they can, and at the
//! end. A failing run returns a [`Failure`] with the violations, the one command line that
//! replays it ([`Shape::replay_line`]) and, on replay with `SIM_TRACE=1`, a readable trace.
//! The same seed and shape always give the same trace hash ([`trace::Fnv`], FNV-1a);
//! [`shrink`] reduces a failing shape to a minimal one, [`soak`] runs seeds on every core
//! for a time budget, [`bugs`] lists the planted bugs the simulator must catch.
//!
//! In the normal build only the plain parts exist ([`shape`], [`workload`], [`checks`],
//! [`trace`], [`bugs`], [`probe`], [`scenario`]): the differential tests run scenarios
//! against both the simulated and a real containerd on plain tokio.
//!
//! # Commands
//!
//! ```text
//! export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=$HOME/.cache/berth-target-sim
//! cargo test --release -p berth-sim                          # seeds, determinism, regressions
//! SIM_SEEDS=0..2000 cargo test --release -p berth-sim --test sim seeds -- --nocapture
//! SIM_SEED=7 SIM_TRACE=1 cargo test --release -p berth-sim --test sim replay -- --nocapture
//! cargo run --release -p berth-sim --bin soak -- --secs 60 --jobs 2
//! cargo run --release -p berth-sim --features planted-bugs --bin planted
//! cargo run --release -p berth-sim --bin shrink -- --seed 7 --write
//! ```

pub mod bugs;
pub mod checks;
pub mod probe;
pub mod regressions;
pub mod scenario;
pub mod shape;
pub mod trace;
pub mod workload;

#[cfg(madsim)]
mod client;
#[cfg(madsim)]
mod run;
#[cfg(madsim)]
pub mod shrink;
#[cfg(madsim)]
pub mod soak;
#[cfg(madsim)]
mod world;

pub use bugs::Bug;
#[cfg(madsim)]
pub use run::{Failure, Outcome, run_seed};
pub use shape::{FaultMask, FaultSwitch, Shape};
pub use workload::Workload;
#[cfg(madsim)]
pub use world::live_worlds;

/// The simulator's allocator (simulator builds only; see Cargo.toml).
#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// True if this build runs the simulation (`--cfg madsim`); the guard test fails a CI run
/// that would otherwise simulate nothing.
pub const SIMULATES: bool = cfg!(madsim);
