//! Shrinking a failing run to a minimal one, and writing it out as a regression entry
//! (`sim/tests/regressions.txt`):
//!
//! 1. the seed stays and the shape shrinks greedily (fewer clients, containers, pods,
//!    crashes, a shorter chaos phase, fewer fault kinds) while the run still fails the same
//!    way;
//! 2. then small shapes, smallest first, are tried with other seeds: a timing bug rarely
//!    survives a change of the workload under one seed, but the same bug usually shows in
//!    a much smaller workload under another;
//! 3. the smallest reproduction found is shrunk greedily again.
//!
//! "The same way": for a planted bug, the run fails with the bug on and passes with it off
//! (so the failure is the bug's, not some other one's); otherwise the first violation keeps
//! its [`signature`].

use crate::bugs::{Bug, signature};
use crate::run::{Failure, run_seed};
use crate::shape::Shape;

/// What a shrunk run must still show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Fails with this planted bug on, passes with it off.
    Planted(Bug),
    /// Fails with a first violation of this signature.
    Signature(String),
}

impl Goal {
    /// The goal a failure sets: its planted bug if one is on, else its first violation's
    /// signature.
    pub fn of(f: &Failure) -> Goal {
        match f.shape.bug {
            Some(bug) => Goal::Planted(bug),
            None => Goal::Signature(
                f.violations
                    .first()
                    .map(|v| signature(v))
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The minimal failing run found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The failure of the minimal shape.
    pub failure: Failure,
    /// Runs spent shrinking.
    pub runs: u64,
}

/// Runs `seed` with `shape`; the failure if it meets `goal`. Counts runs in `runs`.
pub fn reproduces(seed: u64, shape: &Shape, goal: &Goal, runs: &mut u64) -> Option<Failure> {
    *runs += 1;
    let f = run_seed(seed, shape, false).err()?;
    match goal {
        Goal::Planted(_) => {
            *runs += 1;
            let clean = Shape {
                bug: None,
                ..shape.clone()
            };
            run_seed(seed, &clean, false).is_ok().then_some(f)
        }
        Goal::Signature(sig) => f
            .violations
            .first()
            .is_some_and(|v| signature(v) == *sig)
            .then_some(f),
    }
}

/// Smaller shapes to try next, most aggressive first.
fn candidates(s: &Shape) -> Vec<Shape> {
    let mut out = Vec::new();
    let mut push = |c: Shape| {
        let c = c.normalized();
        if c != *s && !out.contains(&c) {
            out.push(c);
        }
    };
    for clients in [1, s.clients / 2, s.clients.saturating_sub(1)] {
        if clients >= 1 && clients < s.clients {
            push(Shape {
                clients,
                pods: s.pods.min(clients.max(1) * 2),
                ..s.clone()
            });
        }
    }
    for containers in [
        1,
        s.containers / 4,
        s.containers / 2,
        s.containers.saturating_sub(1),
    ] {
        if containers >= 1 && containers < s.containers {
            push(Shape {
                containers,
                ..s.clone()
            });
        }
    }
    for crashes in [0, s.crashes / 2, s.crashes.saturating_sub(1)] {
        if crashes < s.crashes {
            push(Shape {
                crashes,
                ..s.clone()
            });
        }
    }
    for pods in [s.clients, s.pods.saturating_sub(1)] {
        if pods < s.pods {
            push(Shape { pods, ..s.clone() });
        }
    }
    for chaos_secs in [5, s.chaos_secs / 2] {
        if chaos_secs >= 5 && chaos_secs < s.chaos_secs {
            push(Shape {
                chaos_secs,
                ..s.clone()
            });
        }
    }
    push(Shape {
        faults: crate::shape::FaultMask::NONE,
        ..s.clone()
    });
    for f in s.faults.kinds() {
        push(Shape {
            faults: s.faults.without(f),
            ..s.clone()
        });
    }
    out
}

/// A size to minimize: requests, crashes and simulated time all cost trace events.
fn size(s: &Shape) -> u64 {
    let faults = u64::from(s.faults.0.count_ones());
    (s.clients as u64 + s.containers as u64 * 4 + s.pods as u64)
        * (s.crashes as u64 + 1)
        * s.chaos_secs.max(1)
        * (faults + 1)
}

/// Greedy same-seed shrinking of `best`, within `budget` runs.
fn greedy(mut best: Failure, goal: &Goal, runs: &mut u64, budget: u64) -> Failure {
    'outer: while *runs < budget {
        for c in candidates(&best.shape) {
            if *runs >= budget {
                break 'outer;
            }
            if let Some(f) = reproduces(best.seed, &c, goal, runs) {
                best = f;
                continue 'outer;
            }
        }
        break;
    }
    best
}

/// Small shapes (smaller than `than`), smallest first, for the seed search.
fn ladder(than: &Shape) -> Vec<Shape> {
    let mut out = Vec::new();
    for clients in [1, 2, 3] {
        for containers in [1, 2, 4, 8, 16] {
            for crashes in [0, 1, 2, 5] {
                for chaos_secs in [10, 30, 60] {
                    // Other seeds draw other fault plans: search with every kind allowed
                    // (the greedy pass prunes the kinds afterwards).
                    let s = Shape {
                        clients,
                        containers,
                        pods: clients,
                        crashes,
                        chaos_secs,
                        faults: crate::shape::FaultMask::ALL,
                        ..than.clone()
                    }
                    .normalized();
                    let smaller = s.clients <= than.clients
                        && s.containers < than.containers.max(2)
                        && s.crashes <= than.crashes
                        && s.chaos_secs <= than.chaos_secs;
                    if smaller && !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
        }
    }
    out.sort_by_key(size);
    out
}

/// Shrinks the failing run `failure` within `max_runs` runs (see the module docs).
pub fn shrink(failure: &Failure, max_runs: u64) -> Shrunk {
    let goal = Goal::of(failure);
    let mut runs = 0;
    let third = max_runs / 3;
    let mut best = greedy(failure.clone(), &goal, &mut runs, third);
    // Seed search: 40 seeds per small shape, smallest shape first.
    let search_end = runs + third;
    'search: for shape in ladder(&best.shape) {
        for seed in 0..40 {
            if runs >= search_end {
                break 'search;
            }
            if let Some(f) = reproduces(seed, &shape, &goal, &mut runs) {
                best = f;
                break 'search;
            }
        }
    }
    let best = greedy(best, &goal, &mut runs, max_runs);
    Shrunk {
        failure: best,
        runs,
    }
}

/// A `sim/tests/regressions.txt` line for a run: `seed=… SIM_…=… expect=… # note`.
pub fn regression_entry(seed: u64, shape: &Shape, expect: &str, note: &str) -> String {
    format!(
        "seed={seed} {} expect={expect} # {}",
        shape.env(),
        note.replace('\n', " ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_only_shrink() {
        let s = Shape::default();
        let c = candidates(&s);
        assert!(!c.is_empty());
        for x in &c {
            assert!(
                x.clients <= s.clients
                    && x.containers <= s.containers
                    && x.crashes <= s.crashes
                    && x.chaos_secs <= s.chaos_secs
                    && x.faults.0 & !s.faults.0 == 0,
                "{x:?}"
            );
            assert_ne!(*x, s);
        }
        let tiny = Shape {
            clients: 1,
            containers: 1,
            pods: 1,
            crashes: 0,
            chaos_secs: 5,
            faults: crate::shape::FaultMask::NONE,
            bug: None,
            early_pod_stops: false,
        };
        assert!(candidates(&tiny).is_empty());
    }

    #[test]
    fn entries_are_one_line() {
        let e = regression_entry(7, &Shape::ci(), "pass", "a\nb");
        assert!(e.starts_with("seed=7 SIM_CLIENTS=3"));
        assert!(e.ends_with("expect=pass # a b"));
    }
}
