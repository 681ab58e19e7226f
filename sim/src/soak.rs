//! Soak: seeds on every core for a time budget (or a seed count), with progress on stderr
//! and a closing report: seeds run, seeds/s, faults injected by kind, crash points hit,
//! failures with their replay lines, and the plain `N passed, M failed` line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_simbackend::{FaultCounts, FaultKind};

use crate::run::{Failure, run_seed};
use crate::shape::Shape;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The shape of every run.
    pub shape: Shape,
    /// First seed.
    pub start: u64,
    /// Stop after this many seeds (None: only the time budget).
    pub seeds: Option<u64>,
    /// Wall-clock budget.
    pub budget: Duration,
    /// Worker threads.
    pub jobs: usize,
    /// Print progress to stderr every this often (None: quiet).
    pub progress: Option<Duration>,
    /// Seeds that fail with the symptom of an open berth bug ([`crate::bugs::OPEN_BUGS`])
    /// are reported apart and not counted as failures.
    pub allow_open: bool,
    /// Each seed runs in a shape drawn from it ([`Shape::swarm`], keeping `shape`'s fault
    /// mask and planted bug) instead of `shape` itself.
    pub swarm: bool,
}

/// What a soak found.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Seeds that passed.
    pub passed: u64,
    /// Failed runs, by seed.
    pub failures: Vec<Failure>,
    /// Runs that failed with the symptom of an open berth bug (with `allow_open`).
    pub known_open: Vec<(Failure, &'static str)>,
    /// Wall time.
    pub elapsed: Duration,
    /// Faults injected over every seed, by kind.
    pub faults: FaultCounts,
    /// Crash points hit (what each berth crash interrupted), with counts.
    pub crash_points: BTreeMap<String, u64>,
    /// Simulated time over every seed.
    pub sim_time: Duration,
    /// Trace events over every seed.
    pub events: u64,
    /// CRI requests over every seed.
    pub requests: u64,
    /// The slowest seed and its wall time.
    pub slowest: Option<(u64, Duration)>,
    /// Runs whose memory was not freed at the end (must be 0).
    pub leaked: u64,
}

impl SoakReport {
    /// Seeds run.
    pub fn seeds(&self) -> u64 {
        self.passed + self.failures.len() as u64 + self.known_open.len() as u64
    }

    /// Seeds per second of wall time.
    pub fn rate(&self) -> f64 {
        self.seeds() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report, ending with `N passed, M failed`; `swarm`: each seed ran in its own
    /// shape drawn from `shape` ([`Shape::swarm`]).
    pub fn render(&self, shape: &Shape, swarm: bool, jobs: usize) -> String {
        let mut s = String::new();
        let n = self.seeds().max(1);
        if swarm {
            let _ = writeln!(
                s,
                "== soak report (swarm: a shape drawn per seed, SIM_FAULTS={}{})",
                shape.faults,
                shape
                    .bug
                    .map(|b| format!(" SIM_BUG={}", b.name()))
                    .unwrap_or_default()
            );
        } else {
            let _ = writeln!(s, "== soak report ({})", shape.env());
        }
        let _ = writeln!(
            s,
            "seeds run: {} in {:.1}s on {jobs} jobs: {:.0} seeds/s",
            self.seeds(),
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        let _ = writeln!(
            s,
            "per seed: {:.0} CRI requests, {:.0} trace events, {:.0}s simulated{}",
            self.requests as f64 / n as f64,
            self.events as f64 / n as f64,
            self.sim_time.as_secs_f64() / n as f64,
            self.slowest
                .map(|(seed, d)| format!("; slowest seed {seed}: {:.0} ms", d.as_secs_f64() * 1e3))
                .unwrap_or_default()
        );
        if self.leaked > 0 {
            let _ = writeln!(s, "FAIL: {} runs leaked their world (memory)", self.leaked);
        }
        let _ = writeln!(s, "faults injected by kind:");
        for kind in FaultKind::ALL {
            let c = self.faults.get(kind);
            if c > 0 {
                let _ = writeln!(s, "  {:<20} {c}", kind.name());
            }
        }
        let hits: u64 = self.crash_points.values().sum();
        let _ = writeln!(
            s,
            "crash points hit: {} distinct over {hits} berth crashes (calls and disk steps in flight):",
            self.crash_points.len()
        );
        let mut points: Vec<(&String, &u64)> = self.crash_points.iter().collect();
        points.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (p, c) in points.iter().take(25) {
            let _ = writeln!(s, "  {c:>7}  {p}");
        }
        if points.len() > 25 {
            let _ = writeln!(s, "  … {} more", points.len() - 25);
        }
        if !self.known_open.is_empty() {
            let mut by_bug: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for (f, id) in &self.known_open {
                by_bug.entry(id).or_default().push(f.seed);
            }
            let _ = writeln!(
                s,
                "{} seeds hit open berth bugs (reported apart, not counted; see sim/tests/regressions.txt):",
                self.known_open.len()
            );
            for (id, seeds) in &by_bug {
                let first: Vec<String> = seeds.iter().take(8).map(u64::to_string).collect();
                let _ = writeln!(
                    s,
                    "  open:{id}: {} seeds, e.g. {}",
                    seeds.len(),
                    first.join(" ")
                );
            }
            if let Some((f, _)) = self.known_open.first() {
                let _ = writeln!(s, "  replay one: {}", f.replay_line());
            }
        }
        for f in &self.failures {
            let _ = writeln!(s, "{f}");
        }
        let _ = write!(s, "{} passed, {} failed", self.passed, self.failures.len());
        s
    }
}

/// Runs seeds from `opts.start` on `opts.jobs` threads until the budget or the seed count
/// is spent.
pub fn soak(opts: &SoakOptions) -> SoakReport {
    let began = Instant::now();
    let next = Arc::new(AtomicU64::new(opts.start));
    let end = opts.seeds.map(|n| opts.start.saturating_add(n));
    let report = Arc::new(Mutex::new(SoakReport::default()));
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.map(|every| {
        let (report, done) = (report.clone(), done.clone());
        std::thread::spawn(move || {
            let mut at = every;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if began.elapsed() < at {
                    continue;
                }
                at += every;
                let r = report.lock().unwrap_or_else(|p| p.into_inner());
                let secs = began.elapsed().as_secs_f64();
                eprintln!(
                    "[{secs:>6.1}s] {} seeds, {:.0}/s, {} failed",
                    r.seeds(),
                    r.seeds() as f64 / secs.max(1e-9),
                    r.failures.len()
                );
            }
        })
    });
    let workers: Vec<_> = (0..opts.jobs.max(1))
        .map(|_| {
            let (next, report, shape) = (next.clone(), report.clone(), opts.shape.clone());
            let (budget, allow_open, swarm) = (opts.budget, opts.allow_open, opts.swarm);
            std::thread::spawn(move || {
                while began.elapsed() < budget {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if end.is_some_and(|e| seed >= e) {
                        break;
                    }
                    let t = Instant::now();
                    let result = if swarm {
                        run_seed(seed, &Shape::swarm(seed, &shape), false)
                    } else {
                        run_seed(seed, &shape, false)
                    };
                    let took = t.elapsed();
                    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                    if r.slowest.is_none_or(|(_, d)| took > d) {
                        r.slowest = Some((seed, took));
                    }
                    match result {
                        Ok(o) => {
                            r.passed += 1;
                            r.faults.merge(&o.faults);
                            for p in o.crash_points {
                                *r.crash_points.entry(p).or_insert(0) += 1;
                            }
                            r.sim_time += o.sim_time;
                            r.events += o.events;
                            r.requests += o.requests;
                        }
                        Err(f) => {
                            let open = f
                                .violations
                                .first()
                                .and_then(|v| crate::bugs::open_bug(v))
                                .filter(|_| allow_open);
                            match open {
                                Some(bug) => r.known_open.push((f, bug.id)),
                                None => r.failures.push(f),
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    done.store(true, Ordering::SeqCst);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let mut r = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    r.leaked = crate::world::live_worlds();
    r.elapsed = began.elapsed();
    r.failures.sort_by_key(|f| f.seed);
    r.known_open.sort_by_key(|(f, _)| f.seed);
    r
}
