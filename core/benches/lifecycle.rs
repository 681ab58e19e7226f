//! Throughput of the lifecycle machine, as a plain program (`harness = false`):
//!
//! - transitions/s of a create → start → exit → remove cycle, with every effect answered at
//!   once, driven two ways: through the test [`FakeNode`] (logging off) and through a minimal
//!   driver that answers effects with no bookkeeping, so the FakeNode's overhead shows;
//! - the time to plan the recovery of 10,000 containers (`Machine::recover` over every cell
//!   of the decision table, then draining its effects), and to run that recovery to the end.
//!
//! Run: `cargo bench -p berth-core --bench lifecycle`. `BERTH_BENCH_QUICK=1` runs a few
//! repeats only (a smoke run).
//!
//! A transition is one input the machine handles (a command, a call result, a persist
//! outcome, a task exit); its effects (calls, persists, replies) are counted separately.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use berth_core::testing::{self, FakeNode, WALL_BASE};
use berth_core::{
    BackendError, BackendErrorKind, Call, CallResult, CheckpointProblem, Command, Config,
    ContainerId, ContainerMeta, Effect, ExitStatus, Machine, Now, OpId, RecoveredContainer,
    RecoveredSandbox, RecoveryInput, Response, SandboxId, SandboxMeta, Status, Target, TaskState,
};

/// Containers in the recovery benchmark.
const RECOVERED: usize = 10_000;
/// Containers per pod in the recovery benchmark.
const PER_POD: usize = 100;

fn main() {
    let quick = std::env::var_os("BERTH_BENCH_QUICK").is_some();
    let (repeats, cycles, recover_repeats) = if quick {
        (3, 2_000, 3)
    } else {
        (15, 20_000, 20)
    };

    println!(
        "berth-core lifecycle benchmark ({repeats} repeats of {cycles} cycles; recovery of {RECOVERED} containers x {recover_repeats})"
    );
    println!();

    let per_cycle = minimal_cycle_counts();
    println!("one create → start → exit → remove cycle, as the machine sees it:");
    println!("  {:<34} {:>6}", "inputs (transitions)", per_cycle.inputs());
    println!("  {:<34} {:>6}", "  commands", per_cycle.commands);
    println!("  {:<34} {:>6}", "  call results", per_cycle.call_results);
    println!(
        "  {:<34} {:>6}",
        "  persist outcomes", per_cycle.persist_outcomes
    );
    println!(
        "  {:<34} {:>6}",
        "  task exits (wait results)", per_cycle.exits
    );
    println!("  {:<34} {:>6}", "effects: calls", per_cycle.calls);
    println!("  {:<34} {:>6}", "effects: persists", per_cycle.persists);
    println!("  {:<34} {:>6}", "effects: replies", per_cycle.replies);
    println!();

    let minimal = measure(repeats, cycles, |n| {
        let mut d = Driver::new();
        d.run_pod();
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            d.cycle();
            lat.push(t.elapsed());
        }
        black_box(&d.machine);
        lat
    });
    let world = measure(repeats, cycles, |n| {
        let mut w = FakeNode::new();
        w.logging = false;
        assert!(w.run_pod("p0", "web").is_ok());
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            world_cycle(&mut w);
            lat.push(t.elapsed());
        }
        black_box(&w.machine);
        lat
    });

    let inputs = per_cycle.inputs() as f64;
    println!("cycle throughput (effects answered at once):");
    println!(
        "  {:<16} {:>12} {:>16} {:>11} {:>11} {:>11}",
        "driver", "cycles/s", "transitions/s", "cycle p50", "cycle p99", "spread"
    );
    for (name, r) in [("minimal driver", &minimal), ("FakeNode (no log)", &world)] {
        println!(
            "  {:<16} {:>12.0} {:>16.0} {:>11} {:>11} {:>11}",
            name,
            r.cycles_per_s_median,
            r.cycles_per_s_median * inputs,
            fmt_dur(r.p50),
            fmt_dur(r.p99),
            format!(
                "±{:.1}%",
                100.0 * (r.cycles_per_s_max - r.cycles_per_s_min) / 2.0 / r.cycles_per_s_median
            ),
        );
    }
    println!(
        "  FakeNode overhead: {:.0}% of a FakeNode cycle is the FakeNode's own bookkeeping",
        100.0 * (1.0 - world.cycles_per_s_median / minimal.cycles_per_s_median)
    );
    println!();

    recovery(recover_repeats);
}

/// What one minimal-driver cycle fed the machine and got back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    commands: u64,
    call_results: u64,
    persist_outcomes: u64,
    exits: u64,
    calls: u64,
    persists: u64,
    replies: u64,
}

impl Counts {
    fn inputs(&self) -> u64 {
        self.commands + self.call_results + self.persist_outcomes + self.exits
    }
}

/// A driver with no bookkeeping: every call succeeds at once, waits are parked until the
/// cycle makes the task exit, persists succeed, replies must be Ok.
struct Driver {
    machine: Machine,
    now: Now,
    waits: BTreeMap<Target, OpId>,
    next_req: u64,
    next_pid: u32,
    counts: Counts,
}

impl Driver {
    fn new() -> Self {
        let now = Now::at(WALL_BASE, Duration::ZERO);
        Driver {
            machine: Machine::new(Config::default(), now),
            now,
            waits: BTreeMap::new(),
            next_req: 1,
            next_pid: 100,
            counts: Counts::default(),
        }
    }

    fn tick(&mut self) {
        self.now = Now::at(WALL_BASE, self.now.mono + Duration::from_micros(1));
    }

    fn command(&mut self, command: Command) {
        self.tick();
        let req = berth_core::RequestId(self.next_req);
        self.next_req += 1;
        self.counts.commands += 1;
        self.machine.handle_command(req, command, self.now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(effect) = self.machine.poll_effect() {
            self.tick();
            match effect {
                Effect::Call { op, call } => {
                    self.counts.calls += 1;
                    let result = match call {
                        Call::WaitTask(target) => {
                            self.waits.insert(target, op);
                            continue;
                        }
                        Call::CreateTask(_) | Call::StartTask(_) => {
                            self.next_pid += 1;
                            CallResult::Pid(self.next_pid)
                        }
                        Call::TaskStatus(_) => CallResult::Task(TaskState::NotFound),
                        _ => CallResult::Done,
                    };
                    self.counts.call_results += 1;
                    self.machine.handle_call(op, Ok(result), self.now);
                }
                Effect::Persist { op, .. } => {
                    self.counts.persists += 1;
                    self.counts.persist_outcomes += 1;
                    self.machine.handle_persisted(op, Ok(()), self.now);
                }
                Effect::Reply { result, .. } => {
                    self.counts.replies += 1;
                    assert!(result.is_ok(), "benchmark command failed: {result:?}");
                }
            }
        }
    }

    fn exit(&mut self, target: Target, code: i32) {
        self.tick();
        let op = self.waits.remove(&target).expect("the task is watched");
        self.counts.exits += 1;
        let exit = ExitStatus::real(code, self.now.wall);
        self.machine
            .handle_call(op, Ok(CallResult::Exited(exit)), self.now);
        self.drain();
    }

    fn run_pod(&mut self) {
        self.command(Command::RunPodSandbox {
            id: SandboxId::new("p0").expect("valid id"),
            config: Box::new(testing::sandbox_config("web")),
        });
    }

    fn cycle(&mut self) {
        let id = ContainerId::new("c0").expect("valid id");
        self.command(Command::CreateContainer {
            id: id.clone(),
            sandbox: SandboxId::new("p0").expect("valid id"),
            config: Box::new(testing::container_config("app")),
        });
        self.command(Command::StartContainer(id.clone()));
        self.exit(Target::Container(id.clone()), 0);
        self.command(Command::RemoveContainer(id));
    }
}

/// One cycle's inputs and effects, checked to be a complete, successful cycle.
fn minimal_cycle_counts() -> Counts {
    let mut d = Driver::new();
    d.run_pod();
    let before = d.counts;
    d.cycle();
    assert!(
        d.machine.containers().next().is_none(),
        "the cycle removes its container"
    );
    d.machine.check_invariants().expect("invariants hold");
    let c = d.counts;
    Counts {
        commands: c.commands - before.commands,
        call_results: c.call_results - before.call_results,
        persist_outcomes: c.persist_outcomes - before.persist_outcomes,
        exits: c.exits - before.exits,
        calls: c.calls - before.calls,
        persists: c.persists - before.persists,
        replies: c.replies - before.replies,
    }
}

fn world_cycle(w: &mut FakeNode) {
    assert!(matches!(
        w.create("c0", "p0", "app"),
        Ok(Response::ContainerCreated(_))
    ));
    assert!(w.start("c0").is_ok());
    w.exit_task(&FakeNode::ct("c0"), 0);
    w.settle();
    assert!(
        w.run(Command::RemoveContainer(
            ContainerId::new("c0").expect("valid id")
        ))
        .is_ok()
    );
    // Keep the FakeNode from growing over a long run.
    w.replies.clear();
    w.exit_history.clear();
}

struct Throughput {
    cycles_per_s_median: f64,
    cycles_per_s_min: f64,
    cycles_per_s_max: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `repeats` batches of `cycles` (plus one warm-up) and summarises.
fn measure(
    repeats: usize,
    cycles: usize,
    mut batch: impl FnMut(usize) -> Vec<Duration>,
) -> Throughput {
    batch(cycles / 10);
    let mut rates = Vec::new();
    let mut all = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let lat = batch(cycles);
        let elapsed = t.elapsed();
        rates.push(cycles as f64 / elapsed.as_secs_f64());
        all.extend(lat);
    }
    rates.sort_by(f64::total_cmp);
    all.sort();
    Throughput {
        cycles_per_s_median: rates[rates.len() / 2],
        cycles_per_s_min: rates[0],
        cycles_per_s_max: rates[rates.len() - 1],
        p50: percentile(&all, 50),
        p99: percentile(&all, 99),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

// ------------------------------------------------------------------ recovery

/// 10,000 containers in 100 running pods, spread evenly over every (checkpoint, observed
/// task) cell of the decision table: 6 checkpoint states × 7 observations.
fn recovery_input() -> RecoveryInput {
    let mut input = RecoveryInput::default();
    for p in 0..RECOVERED.div_ceil(PER_POD) {
        let id = SandboxId::new(format!("p{p}")).expect("valid id");
        let config = testing::sandbox_config(&format!("pod{p}"));
        input.sandboxes.push(RecoveredSandbox {
            meta: SandboxMeta {
                id,
                name: config.reservation_name(),
                config,
                created_at: WALL_BASE,
            },
            task: Ok(TaskState::Running {
                pid: 10 + u32::try_from(p).expect("small"),
            }),
        });
    }
    for i in 0..RECOVERED {
        let p = i / PER_POD;
        let pod = testing::sandbox_config(&format!("pod{p}"));
        let config = testing::container_config(&format!("app{i}"));
        let pid = 100_000 + u32::try_from(i).expect("small");
        let created = Status::created(WALL_BASE, None);
        let mut running = created.clone();
        running.pid = pid;
        running.started_at = WALL_BASE + 1_000_000_000;
        let mut exited = running.clone();
        exited.pid = 0;
        exited.finished_at = WALL_BASE + 2_000_000_000;
        let checkpoint = match i % 6 {
            0 => Ok(created),
            1 => Ok(running),
            2 => Ok(exited),
            3 => Ok(Status::unknown(WALL_BASE)),
            4 => Err(CheckpointProblem::Missing),
            _ => Err(CheckpointProblem::Unreadable(
                "checkpoint is truncated".into(),
            )),
        };
        let id = ContainerId::new(format!("c{i}")).expect("valid id");
        let task = match (i / 6) % 7 {
            0 => Ok(TaskState::NotFound),
            1 => Ok(TaskState::Created { pid }),
            2 => Ok(TaskState::Running { pid }),
            3 => Ok(TaskState::Stopped(ExitStatus::real(
                0,
                WALL_BASE + 3_000_000_000,
            ))),
            4 => Ok(TaskState::Paused),
            5 => Err(BackendError::new(
                BackendErrorKind::Other,
                "Tasks.Get",
                id.as_str(),
                "shim error",
            )),
            _ => Err(BackendError::new(
                BackendErrorKind::DeadlineExceeded,
                "Tasks.Get",
                id.as_str(),
                "context deadline exceeded",
            )),
        };
        input.containers.push(RecoveredContainer {
            meta: ContainerMeta {
                name: config.reservation_name(&pod),
                log_path: format!("{}/{}", pod.log_directory, config.log_path),
                id,
                sandbox_id: SandboxId::new(format!("p{p}")).expect("valid id"),
                config,
                stop_signal: 15,
                image: Default::default(),
            },
            record_created_at: WALL_BASE,
            checkpoint,
            task,
        });
    }
    input
}

#[derive(Default, Clone, Copy)]
struct EffectMix {
    calls: usize,
    persists: usize,
    replies: usize,
}

fn recovery(repeats: usize) {
    let input = recovery_input();
    let config = Config::default();
    let now = Now::at(WALL_BASE, Duration::from_secs(10));
    let mut plan = Vec::new();
    let mut drain = Vec::new();
    let mut complete = Vec::new();
    let mut mix = EffectMix::default();
    let mut answered = 0;
    for r in 0..=repeats {
        let owned = input.clone();
        let t0 = Instant::now();
        let mut m = Machine::recover(config.clone(), owned, now);
        let t1 = Instant::now();
        let mut effects = Vec::with_capacity(2 * RECOVERED);
        while let Some(e) = m.poll_effect() {
            effects.push(e);
        }
        let t2 = Instant::now();
        // Run it to the end: every persist succeeds, every call answers with the observed
        // truth (tasks deleted are gone), waits stay parked.
        let (n, t3) = finish_recovery(&mut m, effects.clone(), now);
        if r == 0 {
            // Warm-up; also check the outcome once.
            assert_eq!(m.containers().count(), RECOVERED);
            m.check_invariants()
                .expect("invariants hold after recovery");
            assert!(!m.is_recovering(), "every recovery step had an outcome");
            for e in &effects {
                match e {
                    Effect::Call { .. } => mix.calls += 1,
                    Effect::Persist { .. } => mix.persists += 1,
                    Effect::Reply { .. } => mix.replies += 1,
                }
            }
            answered = n;
            continue;
        }
        plan.push(t1 - t0);
        drain.push(t2 - t1);
        complete.push(t3 - t0);
        black_box(&m);
    }
    plan.sort();
    drain.sort();
    complete.sort();
    println!(
        "recovery of {RECOVERED} containers in {} pods (all 42 decision cells), {repeats} repeats:",
        RECOVERED / PER_POD
    );
    println!(
        "  first effects: {} calls, {} persists, {} replies; {} inputs to run it to the end",
        mix.calls, mix.persists, mix.replies, answered
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>14}",
        "phase", "p50", "max", "per container"
    );
    for (name, v) in [
        ("Machine::recover (plan)", &plan),
        ("drain poll_effect", &drain),
        ("plan + drain + answer every effect", &complete),
    ] {
        let p50 = percentile(v, 50);
        println!(
            "  {:<44} {:>10} {:>10} {:>14}",
            name,
            fmt_dur(p50),
            fmt_dur(v[v.len() - 1]),
            fmt_dur(p50 / u32::try_from(RECOVERED).expect("small")),
        );
    }
}

/// Answers `first` and everything it leads to, firing timers while recovery steps are
/// outstanding (observations retried later); returns the inputs fed and when it ended.
fn finish_recovery(m: &mut Machine, first: Vec<Effect>, mut now: Now) -> (usize, Instant) {
    let mut queue: std::collections::VecDeque<Effect> = first.into();
    let mut inputs = 0;
    loop {
        let Some(effect) = queue.pop_front() else {
            match m.poll_timeout() {
                Some(at) if m.is_recovering() => {
                    now = Now::at(WALL_BASE, at.max(now.mono));
                    m.handle_timeout(now);
                    inputs += 1;
                    queue.extend(std::iter::from_fn(|| m.poll_effect()));
                    continue;
                }
                _ => break,
            }
        };
        match effect {
            Effect::Call { op, call } => {
                let result = match call {
                    Call::WaitTask(_) => continue,
                    Call::TaskStatus(_) => CallResult::Task(TaskState::NotFound),
                    Call::CreateTask(_) | Call::StartTask(_) => CallResult::Pid(1),
                    _ => CallResult::Done,
                };
                m.handle_call(op, Ok(result), now);
            }
            Effect::Persist { op, .. } => m.handle_persisted(op, Ok(()), now),
            Effect::Reply { .. } => continue,
        }
        inputs += 1;
        while let Some(e) = m.poll_effect() {
            queue.push_back(e);
        }
    }
    (inputs, Instant::now())
}
