//! `shrink`: shrinks a failing run to a minimal one and prints it (replay line, trace
//! length); with `--write`, appends it to `sim/tests/regressions.txt`.
//!
//! ```text
//! shrink --seed N [--write] [--expect pass|open:<id>] [--note TEXT] [--max-runs N]
//! ```
//! The shape comes from the `SIM_*` variables (default: the figure's workload). Without
//! `--expect`, a failure that is an open berth bug's symptom is written `open:<id>`, anything
//! else `pass` (the test then fails until berth is fixed).

#[cfg(madsim)]
fn main() {
    use std::io::Write as _;

    use berth_sim::bugs::open_bug;
    use berth_sim::shrink::{regression_entry, shrink};
    use berth_sim::{Shape, run_seed};

    let mut args = std::env::args().skip(1);
    let mut seed = None;
    let mut write = false;
    let mut expect = None;
    let mut note = String::new();
    let mut max_runs = 3000u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|v| v.parse::<u64>().ok()),
            "--write" => write = true,
            "--expect" => expect = args.next(),
            "--note" => note = args.next().unwrap_or_default(),
            "--max-runs" => max_runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(3000),
            other => {
                eprintln!("shrink: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let Some(seed) = seed else {
        eprintln!("shrink: --seed N is required");
        std::process::exit(2);
    };
    let shape = Shape::from_env_or(Shape::default()).unwrap_or_else(|e| {
        eprintln!("shrink: {e}");
        std::process::exit(2)
    });
    std::panic::set_hook(Box::new(|_| {}));
    let failure = match run_seed(seed, &shape, false) {
        Ok(_) => {
            println!("seed {seed} passes with {}: nothing to shrink", shape.env());
            return;
        }
        Err(f) => f,
    };
    println!("{failure}");
    let s = shrink(&failure, max_runs);
    let min = s.failure;
    println!(
        "shrunk in {} runs to seed={} {} ({} trace events):",
        s.runs,
        min.seed,
        min.shape.env(),
        min.events
    );
    println!("{min}");
    if write {
        let expect =
            expect.unwrap_or_else(|| match min.violations.first().and_then(|v| open_bug(v)) {
                Some(bug) => format!("open:{}", bug.id),
                None => "pass".to_owned(),
            });
        if note.is_empty() {
            note = min.violations.first().cloned().unwrap_or_default();
        }
        let entry = regression_entry(min.seed, &min.shape, &expect, &note);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regressions.txt");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap_or_else(|e| {
                eprintln!("shrink: cannot open {path}: {e}");
                std::process::exit(1)
            });
        writeln!(file, "{entry}").unwrap_or_else(|e| {
            eprintln!("shrink: cannot write {path}: {e}");
            std::process::exit(1)
        });
        println!("appended to {path}:\n{entry}");
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "shrink needs the simulator: RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=$HOME/.cache/berth-target-sim cargo run --release -p berth-sim --bin shrink -- --seed N"
    );
    std::process::exit(2);
}
