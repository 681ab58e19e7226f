//! The guard against a simulator run that simulates nothing: without `--cfg madsim` every
//! simulation test compiles to nothing and "passes". CI sets `SIM_REQUIRED=1` for the
//! simulator run, which makes this test fail unless the flag reached the build.

#[test]
fn the_simulator_is_built_when_required() {
    let required = std::env::var("SIM_REQUIRED").is_ok_and(|v| v == "1");
    assert!(
        !required || berth_sim::SIMULATES,
        "SIM_REQUIRED=1 but this build lacks --cfg madsim: the simulation tests compiled to nothing (RUSTFLAGS replaced?)"
    );
    assert_eq!(berth_sim::SIMULATES, cfg!(madsim));
}
