//! Whole simulated runs. `seeds` runs `SIM_SEEDS` (default 0..20) with the shape from the
//! `SIM_*` variables (default: 3 clients, 50 containers, 5 crashes, every fault); a seed that
//! hits a known open berth bug (`berth_sim::bugs::OPEN_BUGS`) is reported, not failed, unless
//! `SIM_STRICT=1`. `replay` runs the single `SIM_SEED` and prints its trace with
//! `SIM_TRACE=1`. Compiles to nothing without `--cfg madsim` (the guard test catches that).
#![cfg(madsim)]

use berth_sim::bugs::open_bug;
use berth_sim::shape::seeds_from_env;
use berth_sim::{Shape, run_seed};

fn shape() -> Shape {
    Shape::from_env_or(Shape::default()).expect("SIM_* variables")
}

#[test]
fn seeds() {
    let shape = shape();
    let seeds = seeds_from_env(0..20).expect("SIM_SEEDS");
    let mut failures = Vec::new();
    let mut ran = 0u64;
    for seed in seeds.clone() {
        ran += 1;
        match run_seed(seed, &shape, false) {
            Ok(o) => assert!(o.events > 0 && o.requests > 0, "seed {seed} did nothing"),
            Err(f) => {
                let strict = std::env::var("SIM_STRICT").is_ok_and(|v| v == "1");
                match f.violations.first().and_then(|v| open_bug(v)) {
                    Some(bug) if !strict => {
                        println!("seed {seed}: OPEN BERTH BUG {} (not counted)\n{f}", bug.id)
                    }
                    _ => {
                        println!("{f}");
                        failures.push(f.seed);
                    }
                }
            }
        }
    }
    println!("simulated {ran} seeds ({seeds:?}) of {}", shape.env());
    assert!(ran > 0, "no seed simulated");
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[test]
fn replay() {
    let Ok(seed) = std::env::var("SIM_SEED") else {
        println!("SIM_SEED not set: nothing to replay");
        return;
    };
    let seed: u64 = seed.trim().parse().expect("SIM_SEED is a number");
    let keep = std::env::var("SIM_TRACE").is_ok_and(|v| v != "0");
    match run_seed(seed, &shape(), keep) {
        Ok(o) => {
            for line in &o.trace {
                println!("{line}");
            }
            println!(
                "seed {seed} passed: {} events, hash {:016x}, {} requests, {:.1}s simulated, crash points {:?}",
                o.events,
                o.hash,
                o.requests,
                o.sim_time.as_secs_f64(),
                o.crash_points
            );
        }
        Err(f) => {
            for line in &f.trace {
                println!("{line}");
            }
            panic!("{f}");
        }
    }
}

#[test]
fn swarm_soak_runs_each_seed_in_its_own_shape() {
    use berth_sim::soak::{SoakOptions, soak};
    let opts = SoakOptions {
        shape: Shape::default(),
        start: 1_000_000,
        seeds: Some(40),
        budget: std::time::Duration::from_secs(600),
        jobs: 2,
        progress: None,
        allow_open: false,
        swarm: true,
    };
    let report = soak(&opts);
    let text = report.render(&opts.shape, true, opts.jobs);
    assert_eq!(report.seeds(), 40, "{text}");
    assert!(report.failures.is_empty(), "{text}");
    assert!(text.contains("swarm: a shape drawn per seed"), "{text}");
    // Shapes differ per seed: 40 default-shape seeds would average ~229 requests each.
    let shapes: std::collections::BTreeSet<String> = (1_000_000..1_000_040)
        .map(|s| Shape::swarm(s, &opts.shape).env())
        .collect();
    assert!(shapes.len() > 30, "{shapes:?}");
    assert!(report.requests < 40 * 200, "{text}");
}
