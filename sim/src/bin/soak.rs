//! `soak`: runs simulator seeds on every core for a time budget and reports seeds/s,
//! faults injected by kind, crash points hit and failures with their replay lines. Exits 1
//! if any seed failed; the last line is `N passed, M failed`.
//!
//! ```text
//! soak [--secs N] [--jobs N] [--start SEED] [--seeds COUNT] [--ci] [--swarm] [--min-seeds N] [--allow-open]
//! ```
//! The shape is the default (3 clients, 50 containers, 5 crashes) or, with `--ci`, the
//! smaller CI workload; `SIM_*` variables override either. With `--swarm` every seed runs
//! in a shape drawn from it (1–6 clients, 1–50 containers, 0–12 crashes, 5–60 s of chaos),
//! keeping the fault mask and planted bug; each failure prints its own shape. `--min-seeds N` fails the run if
//! fewer than N seeds were simulated (the CI guard). `--allow-open` reports seeds that hit an
//! open berth bug (listed in `berth_sim::bugs::OPEN_BUGS`) apart instead of failing on them.

#[cfg(madsim)]
fn main() {
    use std::time::Duration;

    use berth_sim::Shape;
    use berth_sim::soak::{SoakOptions, soak};

    let mut args = std::env::args().skip(1);
    let mut secs = 60u64;
    let mut jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut start = 0u64;
    let mut seeds = None;
    let mut base = Shape::default();
    let mut min_seeds = 0u64;
    let mut allow_open = false;
    let mut swarm = false;
    let num = |v: Option<String>, flag: &str| -> u64 {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("soak: {flag} needs a number");
            std::process::exit(2)
        })
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = num(args.next(), "--secs"),
            "--jobs" => jobs = num(args.next(), "--jobs") as usize,
            "--start" => start = num(args.next(), "--start"),
            "--seeds" => seeds = Some(num(args.next(), "--seeds")),
            "--min-seeds" => min_seeds = num(args.next(), "--min-seeds"),
            "--ci" => base = Shape::ci(),
            "--allow-open" => allow_open = true,
            "--swarm" => swarm = true,
            other => {
                eprintln!("soak: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let shape = match Shape::from_env_or(base) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    // A failing seed is reported with its replay line; the panic message is in the report.
    std::panic::set_hook(Box::new(|_| {}));
    let opts = SoakOptions {
        shape: shape.clone(),
        start,
        seeds,
        budget: Duration::from_secs(secs),
        jobs,
        progress: Some(Duration::from_secs(5)),
        allow_open,
        swarm,
    };
    let report = soak(&opts);
    println!("{}", report.render(&shape, swarm, jobs));
    if report.seeds() < min_seeds {
        println!(
            "FAIL: only {} seeds simulated, fewer than the required {min_seeds}",
            report.seeds()
        );
        std::process::exit(1);
    }
    if !report.failures.is_empty() || report.leaked > 0 {
        std::process::exit(1);
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "soak needs the simulator: RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=$HOME/.cache/berth-target-sim cargo run --release -p berth-sim --bin soak"
    );
    std::process::exit(2);
}
