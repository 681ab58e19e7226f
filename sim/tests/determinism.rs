//! The harness checks its own determinism: the same seed and shape, run twice (each on a
//! fresh thread with a fresh runtime), give the same trace hash (FNV-1a over every event)
//! and the same outcome; keeping the readable trace does not change the hash; different
//! seeds give different traces. `SIM_DET_SEEDS` (default 0..6) picks the seeds.
#![cfg(madsim)]

use berth_sim::shape::seeds_from_env;
use berth_sim::{Shape, run_seed};

fn fingerprint(seed: u64, shape: &Shape, keep: bool) -> (u64, u64, bool) {
    match run_seed(seed, shape, keep) {
        Ok(o) => (o.hash, o.events, true),
        Err(f) => (f.hash, f.events, false),
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let seeds = std::env::var("SIM_DET_SEEDS")
        .ok()
        .and_then(|v| berth_sim::shape::parse_range(&v))
        .unwrap_or(0..6);
    let shape = Shape::from_env_or(Shape::default()).expect("SIM_* variables");
    let mut hashes = Vec::new();
    for seed in seeds {
        let a = fingerprint(seed, &shape, false);
        let b = fingerprint(seed, &shape, false);
        assert_eq!(a, b, "seed {seed}: two runs differ (hash, events, passed)");
        let traced = fingerprint(seed, &shape, true);
        assert_eq!(
            a, traced,
            "seed {seed}: keeping the trace text changed the run"
        );
        assert!(a.1 > 100, "seed {seed}: only {} events", a.1);
        println!("seed {seed}: hash {:016x}, {} events", a.0, a.1);
        hashes.push(a.0);
    }
    let mut distinct = hashes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        hashes.len(),
        "two seeds gave the same trace"
    );
}

#[test]
fn the_ci_workload_is_deterministic_too() {
    let seeds = seeds_from_env(100..104).expect("SIM_SEEDS");
    for seed in seeds {
        let a = fingerprint(seed, &Shape::ci(), false);
        assert_eq!(a, fingerprint(seed, &Shape::ci(), false), "seed {seed}");
    }
}
