//! Every run in `regressions.txt` (shrunk failures the simulator found) replayed: `pass`
//! entries must pass; `open:<id>` entries, berth bugs not fixed yet, must still fail with
//! that bug's symptom (and the test asks for the entry to be flipped once it passes).
//! `SIM_STRICT=1`: every entry must pass (run it to check a fix).
#![cfg(madsim)]

use berth_sim::bugs::open_bug;
use berth_sim::regressions::{Expect, parse};
use berth_sim::run_seed;

#[test]
fn regressions_replay() {
    let text = include_str!("regressions.txt");
    let entries = parse(text).expect("regressions.txt parses");
    let strict = std::env::var("SIM_STRICT").is_ok_and(|v| v == "1");
    let mut problems = Vec::new();
    for e in &entries {
        let result = run_seed(e.seed, &e.shape, false);
        let line = format!(
            "regressions.txt:{} seed={} {}",
            e.line,
            e.seed,
            e.shape.env()
        );
        match (&e.expect, result) {
            (Expect::Pass, Ok(_)) => println!("{line}: passes"),
            (Expect::Pass, Err(f)) => problems.push(format!("{line}: fails again\n{f}")),
            (Expect::Open(_), Ok(_)) if strict => println!("{line}: passes (open bug fixed)"),
            (Expect::Open(id), Ok(_)) => problems.push(format!(
                "{line}: passes now: open berth bug {id} looks fixed; change the entry to expect=pass"
            )),
            (Expect::Open(id), Err(f)) => {
                let hit = f.violations.iter().filter_map(|v| open_bug(v)).any(|b| b.id == id);
                if strict {
                    problems.push(format!("{line}: open berth bug {id} still there (SIM_STRICT=1)\n{f}"));
                } else if hit {
                    println!("{line}: OPEN BERTH BUG {id} still reproduces (expected until berth is fixed)");
                } else {
                    problems.push(format!("{line}: expected open bug {id}, failed otherwise\n{f}"));
                }
            }
        }
    }
    assert!(!entries.is_empty(), "regressions.txt lists nothing");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
