//! `planted`: switches on each planted bug in turn and requires the simulator to catch it.
//! For every bug it runs seeds from 0 until one fails with the bug on and passes with it off
//! (so the failure is the bug's), shrinks that run, and prints a table: bug, caught, seeds
//! needed, length of the shrunk trace (events up to the failure), the shrunk shape and the
//! first violation. Exits 1 if a bug was not caught within `--max-seeds`.
//!
//! ```text
//! planted [--max-seeds N] [--ci] [--no-shrink] [--bug NAME]
//! ```
//! The core's bugs need `--features planted-bugs`.

#[cfg(madsim)]
fn main() {
    use berth_sim::Shape;
    use berth_sim::bugs::Bug;
    use berth_sim::shrink::{Goal, reproduces, shrink};

    let mut args = std::env::args().skip(1);
    let mut max_seeds = 500u64;
    let mut base = Shape::default();
    let mut do_shrink = true;
    let mut only: Option<Bug> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-seeds" => {
                max_seeds = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                    eprintln!("planted: --max-seeds needs a number");
                    std::process::exit(2)
                })
            }
            "--ci" => base = Shape::ci(),
            "--no-shrink" => do_shrink = false,
            "--bug" => {
                let name = args.next().unwrap_or_default();
                only = Some(Bug::parse(&name).unwrap_or_else(|e| {
                    eprintln!("planted: {e}");
                    std::process::exit(2)
                }));
            }
            other => {
                eprintln!("planted: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut missed = 0;
    for bug in Bug::ALL
        .into_iter()
        .filter(|b| only.is_none_or(|o| o == *b))
    {
        if !bug.available() {
            rows.push(format!(
                "| {:<34} | not built (--features planted-bugs) | | | | |",
                bug.name()
            ));
            missed += 1;
            continue;
        }
        let shape = Shape {
            bug: Some(bug),
            ..base.clone()
        };
        let goal = Goal::Planted(bug);
        let mut runs = 0;
        let found = (0..max_seeds)
            .find_map(|seed| reproduces(seed, &shape, &goal, &mut runs).map(|f| (seed, f)));
        match found {
            None => {
                missed += 1;
                rows.push(format!(
                    "| {:<34} | NO     | > {max_seeds:<6} | | | |",
                    bug.name()
                ));
            }
            Some((seed, failure)) => {
                let (min, extra) = if do_shrink {
                    let s = shrink(&failure, 1500);
                    (s.failure, s.runs)
                } else {
                    (failure, 0)
                };
                let first = min.violations.first().cloned().unwrap_or_default();
                let first: String = first.chars().take(110).collect();
                rows.push(format!(
                    "| {:<34} | yes    | {:<8} | {:<6} | seed={} {} | {} |",
                    bug.name(),
                    seed + 1,
                    min.events,
                    min.seed,
                    min.shape.env(),
                    first
                ));
                eprintln!(
                    "{bug}: caught by seed {seed} ({runs} runs), shrunk in {extra} runs; replay: {}",
                    min.replay_line()
                );
            }
        }
    }
    println!(
        "== planted bugs ({} per bug at most, shape {})",
        max_seeds,
        base.env()
    );
    println!(
        "| {:<34} | caught | seeds needed | shrunk trace (events) | shrunk run | first violation |",
        "bug"
    );
    println!(
        "|{}|--------|----------|--------|------|------|",
        "-".repeat(36)
    );
    for r in &rows {
        println!("{r}");
    }
    println!(
        "{} of {} planted bugs caught in {:.1}s",
        rows.len() - missed,
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if missed > 0 {
        std::process::exit(1);
    }
}

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "planted needs the simulator: RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=$HOME/.cache/berth-target-sim cargo run --release -p berth-sim --features planted-bugs --bin planted"
    );
    std::process::exit(2);
}
