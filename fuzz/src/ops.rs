//! The `ops` target: an [`Arbitrary`] list of operations on [`FakeNode`], with
//! [`Machine::check_invariants`](berth_core::Machine::check_invariants) after every one.
//!
//! Ids, names and durations come from small enums so that short inputs hit the same objects
//! again and again (a name conflict, a stop racing a start, an exit during recovery) instead
//! of spreading over a huge id space. Every operation is bounded, and so is the list
//! ([`MAX_OPS`]), so each input runs in well under a millisecond.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use berth_core::testing::{self, CallFault, FakeNode};
use berth_core::{
    BackendError, BackendErrorKind, CheckpointProblem, Command, ContainerId, ContainerState,
    Machine, SandboxId, Target,
};

/// Most operations read from one input; the rest of the input is ignored.
pub const MAX_OPS: usize = 96;
/// Most effects one [`Op::Drain`] carries out.
pub const MAX_DRAIN: usize = 32;

/// One of the four container ids the fuzzer uses.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `c0`.
    C0,
    /// `c1`.
    C1,
    /// `c2`.
    C2,
    /// `c3`.
    C3,
}

impl Slot {
    /// The container id.
    pub fn id(self) -> ContainerId {
        ContainerId::new(format!("c{}", self as u8)).expect("c0..c3 are valid ids")
    }
}

/// One of the two sandbox ids the fuzzer uses.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSlot {
    /// `p0`.
    P0,
    /// `p1`.
    P1,
}

impl PodSlot {
    /// The sandbox id.
    pub fn id(self) -> SandboxId {
        SandboxId::new(format!("p{}", self as u8)).expect("p0, p1 are valid ids")
    }
}

/// A pod name: two pods with the same name conflict.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodName {
    /// `web`.
    Web,
    /// `api`.
    Api,
}

/// A container name: equal names in one pod conflict; the empty name is invalid.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `app`.
    App,
    /// `sidecar`.
    Sidecar,
    /// The empty name (rejected by validation).
    Empty,
}

/// Whose task an operation hits.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A container's task.
    Container(Slot),
    /// A sandbox's pause task.
    Sandbox(PodSlot),
}

impl Who {
    /// The target.
    pub fn target(self) -> Target {
        match self {
            Who::Container(s) => Target::Container(s.id()),
            Who::Sandbox(p) => Target::Sandbox(p.id()),
        }
    }
}

/// A backend call, by containerd verb.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `Containers.Create`.
    ContainersCreate,
    /// `Containers.Delete`.
    ContainersDelete,
    /// `Tasks.Create`.
    TasksCreate,
    /// `Tasks.Start`.
    TasksStart,
    /// `Tasks.Wait` (only as a failure before the call: a wait has no reply to lose).
    TasksWait,
    /// `Tasks.Kill`.
    TasksKill,
    /// `Tasks.Delete`.
    TasksDelete,
    /// `Tasks.Get`.
    TasksGet,
}

impl Verb {
    /// containerd's name, as [`berth_core::Call::verb`] gives it.
    pub fn name(self) -> &'static str {
        match self {
            Verb::ContainersCreate => "Containers.Create",
            Verb::ContainersDelete => "Containers.Delete",
            Verb::TasksCreate => "Tasks.Create",
            Verb::TasksStart => "Tasks.Start",
            Verb::TasksWait => "Tasks.Wait",
            Verb::TasksKill => "Tasks.Kill",
            Verb::TasksDelete => "Tasks.Delete",
            Verb::TasksGet => "Tasks.Get",
        }
    }
}

/// A backend error kind.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NotFound.
    NotFound,
    /// AlreadyExists.
    AlreadyExists,
    /// FailedPrecondition.
    FailedPrecondition,
    /// Unavailable.
    Unavailable,
    /// DeadlineExceeded.
    DeadlineExceeded,
    /// Other.
    Other,
}

impl From<Kind> for BackendErrorKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::NotFound => BackendErrorKind::NotFound,
            Kind::AlreadyExists => BackendErrorKind::AlreadyExists,
            Kind::FailedPrecondition => BackendErrorKind::FailedPrecondition,
            Kind::Unavailable => BackendErrorKind::Unavailable,
            Kind::DeadlineExceeded => BackendErrorKind::DeadlineExceeded,
            Kind::Other => BackendErrorKind::Other,
        }
    }
}

/// A StopContainer grace period.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Zero: SIGKILL at once.
    Zero,
    /// 1 s.
    S1,
    /// 10 s.
    S10,
    /// 30 s.
    S30,
}

impl Grace {
    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Grace::Zero => 0,
            Grace::S1 => 1,
            Grace::S10 => 10,
            Grace::S30 => 30,
        })
    }
}

/// How far the virtual clock moves.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// 1 ms.
    Ms1,
    /// 100 ms.
    Ms100,
    /// 1 s (the first backoff step).
    S1,
    /// 10 s.
    S10,
    /// 5 min (the backoff cap).
    Min5,
    /// To the machine's next timer, if one is armed.
    NextTimer,
}

/// What a checkpoint read gives at recovery instead of the durable record.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadProblem {
    /// The file is missing.
    Missing,
    /// The file cannot be decoded or read.
    Unreadable,
}

/// One operation on the world.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// RunPodSandbox (effects stay pending).
    RunPod {
        /// Sandbox id.
        pod: PodSlot,
        /// Pod name.
        name: PodName,
    },
    /// CreateContainer (effects stay pending).
    Create {
        /// Container id.
        id: Slot,
        /// Its sandbox.
        pod: PodSlot,
        /// Container name.
        name: Name,
    },
    /// StartContainer.
    Start(Slot),
    /// StopContainer with a grace period.
    Stop {
        /// Container id.
        id: Slot,
        /// Grace period.
        grace: Grace,
    },
    /// RemoveContainer.
    Remove(Slot),
    /// StopPodSandbox.
    StopPod(PodSlot),
    /// RemovePodSandbox.
    RemovePod(PodSlot),
    /// Carry out pending effect number `i % pending` (any order is legal).
    Execute(u8),
    /// Carry out the oldest pending effect, `n % MAX_DRAIN + 1` times.
    Drain(u8),
    /// The next call with this verb fails before it takes effect.
    Fault {
        /// Which call.
        verb: Verb,
        /// How it fails.
        kind: Kind,
    },
    /// The next call with this verb takes effect but its reply is lost (Unavailable).
    /// `Tasks.Wait` has no reply to lose and fails before it takes effect instead.
    LoseReply(Verb),
    /// The next `n % 4` checkpoint writes or deletes fail.
    FailPersists(u8),
    /// The task's process exits with this code (if it lives).
    TaskExit {
        /// Whose task.
        who: Who,
        /// Exit code.
        code: u8,
    },
    /// The last real exit of a task is delivered again as an event (a duplicate or late
    /// exit).
    ExitEvent(Who),
    /// The task's process ignores SIGTERM from now on.
    IgnoreTerm(Who),
    /// The task's shim dies: the task is gone, its waits break.
    KillShim(Who),
    /// containerd restarts: every wait breaks, tasks live on.
    RestartContainerd,
    /// The clock moves; due timers fire.
    Advance(Delay),
    /// berth crashes and recovers; up to two observations fail, one checkpoint read may
    /// fail.
    CrashRecover {
        /// Observations that fail, and how.
        observe: [Option<(Who, Kind)>; 2],
        /// A checkpoint that cannot be read.
        checkpoint: Option<(Slot, ReadProblem)>,
    },
}

/// Decodes at most [`MAX_OPS`] operations: one [`Op::arbitrary`] after the other until the
/// input is used up.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// What a run reached, so tests can tell a corpus that exercises the machine from one that
/// does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    /// Operations applied.
    pub ops: usize,
    /// Container states seen after some operation.
    pub states: BTreeSet<ContainerState>,
    /// Crash-and-recover operations applied.
    pub recoveries: usize,
    /// Replies received.
    pub replies: usize,
    /// Replies that were errors.
    pub error_replies: usize,
}

/// An invariant broken after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the operation after which it broke.
    pub step: usize,
    /// The operations, up to and including that one.
    pub ops: Vec<Op>,
    /// The broken invariant.
    pub message: String,
    /// The world's transcript (empty when logging was off).
    pub transcript: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "after op {}: {}", self.step, self.message)?;
        writeln!(f, "ops:")?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  {i:>2}: {op:?}")?;
        }
        if !self.transcript.is_empty() {
            writeln!(f, "transcript:\n{}", self.transcript)?;
        }
        Ok(())
    }
}

/// Decodes `data` and applies it to a fresh world, checking the invariants after every
/// operation. `logging` keeps the world's transcript (slower; for reproducing).
pub fn run(data: &[u8], logging: bool) -> Result<Reached, Violation> {
    run_ops(&decode(data), logging)
}

/// Applies `ops` to a fresh world, checking the invariants after every one.
pub fn run_ops(ops: &[Op], logging: bool) -> Result<Reached, Violation> {
    let mut world = FakeNode::new();
    world.logging = logging;
    let mut reached = Reached::default();
    for (step, op) in ops.iter().enumerate() {
        apply(&mut world, *op);
        reached.ops += 1;
        if matches!(op, Op::CrashRecover { .. }) {
            reached.recoveries += 1;
        }
        reached
            .states
            .extend(world.machine.containers().map(|c| c.state()));
        if let Err(v) = world.machine.check_invariants() {
            return Err(Violation {
                step,
                ops: ops[..=step].to_vec(),
                message: v.to_string(),
                transcript: world.transcript_text(),
            });
        }
    }
    reached.replies = world.replies.len();
    reached.error_replies = world.replies.values().filter(|r| r.is_err()).count();
    Ok(reached)
}

/// Applies one operation. Never panics on its own: indexes wrap, counts are bounded.
pub fn apply(world: &mut FakeNode, op: Op) {
    match op {
        Op::RunPod { pod, name } => {
            let name = match name {
                PodName::Web => "web",
                PodName::Api => "api",
            };
            world.command(Command::RunPodSandbox {
                id: pod.id(),
                config: Box::new(testing::sandbox_config(name)),
            });
        }
        Op::Create { id, pod, name } => {
            let name = match name {
                Name::App => "app",
                Name::Sidecar => "sidecar",
                Name::Empty => "",
            };
            world.command(Command::CreateContainer {
                id: id.id(),
                sandbox: pod.id(),
                config: Box::new(testing::container_config(name)),
            });
        }
        Op::Start(id) => {
            world.command(Command::StartContainer(id.id()));
        }
        Op::Stop { id, grace } => {
            world.command(Command::StopContainer {
                id: id.id(),
                timeout: grace.duration(),
            });
        }
        Op::Remove(id) => {
            world.command(Command::RemoveContainer(id.id()));
        }
        Op::StopPod(pod) => {
            world.command(Command::StopPodSandbox(pod.id()));
        }
        Op::RemovePod(pod) => {
            world.command(Command::RemovePodSandbox(pod.id()));
        }
        Op::Execute(i) => {
            if !world.pending.is_empty() {
                let i = usize::from(i) % world.pending.len();
                world.execute(i);
            }
        }
        Op::Drain(n) => {
            for _ in 0..=usize::from(n) % MAX_DRAIN {
                if world.pending.is_empty() {
                    break;
                }
                world.execute(0);
            }
        }
        Op::Fault { verb, kind } => world.fail_next(verb.name(), CallFault::Before(kind.into())),
        Op::LoseReply(Verb::TasksWait) => world.fail_next(
            Verb::TasksWait.name(),
            CallFault::Before(BackendErrorKind::Unavailable),
        ),
        Op::LoseReply(verb) => world.fail_next(verb.name(), CallFault::ReplyLost),
        Op::FailPersists(n) => world.fail_persists(usize::from(n % 4)),
        Op::TaskExit { who, code } => world.exit_task(&who.target(), i32::from(code)),
        Op::ExitEvent(who) => {
            let target = who.target();
            if let Some(exit) = world
                .exit_history
                .get(&target)
                .and_then(|h| h.last())
                .copied()
            {
                world.machine.handle_task_exit(target, exit, world.now);
                world.collect();
            }
        }
        Op::IgnoreTerm(who) => {
            world.ignores_term.insert(who.target());
        }
        Op::KillShim(who) => world.kill_shim(&who.target()),
        Op::RestartContainerd => world.restart_containerd(),
        Op::Advance(delay) => {
            let by = match delay {
                Delay::Ms1 => Duration::from_millis(1),
                Delay::Ms100 => Duration::from_millis(100),
                Delay::S1 => Duration::from_secs(1),
                Delay::S10 => Duration::from_secs(10),
                Delay::Min5 => Duration::from_secs(300),
                Delay::NextTimer => {
                    world.advance_to_next_timer();
                    return;
                }
            };
            world.advance(by);
        }
        Op::CrashRecover {
            observe,
            checkpoint,
        } => crash_and_recover(world, observe, checkpoint),
    }
}

fn crash_and_recover(
    world: &mut FakeNode,
    observe: [Option<(Who, Kind)>; 2],
    checkpoint: Option<(Slot, ReadProblem)>,
) {
    let failing: Vec<(Target, Kind)> = observe
        .iter()
        .flatten()
        .map(|(who, kind)| (who.target(), *kind))
        .collect();
    let observe = |t: &Target| {
        failing.iter().find(|(f, _)| f == t).map(|(_, kind)| {
            Err(BackendError::new(
                (*kind).into(),
                "Tasks.Get",
                t.as_str(),
                "observation failed (injected)",
            ))
        })
    };
    // The world drops every pending effect and in-flight wait of the old machine.
    world.crash_and_recover(observe);
    if let Some((slot, problem)) = checkpoint {
        // Rebuild from the same input with one checkpoint read failing. Nothing of the
        // first rebuild ran yet (its effects are only pending), so this is the same crash.
        let mut input = world.recovery_input(observe);
        let id = slot.id();
        if let Some(c) = input.containers.iter_mut().find(|c| c.meta.id == id) {
            c.checkpoint = Err(match problem {
                ReadProblem::Missing => CheckpointProblem::Missing,
                ReadProblem::Unreadable => {
                    CheckpointProblem::Unreadable("checkpoint is truncated (injected)".into())
                }
            });
            world.pending.clear();
            world.machine = Machine::recover(world.machine.config().clone(), input, world.now);
            world.collect();
        }
    }
}
