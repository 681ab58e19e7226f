//! The state machine: state, the input/output plumbing, timers and lanes. Each lifecycle
//! operation lives in its own file (`create.rs`, `start.rs`, `exit.rs`, `stop.rs`,
//! `remove.rs`, `update.rs`, `execsync.rs`, `recovery.rs`, and `sandbox/` for the pod operations) and owns
//! its steps: their type, and what the outcome of each does. This file only forwards an
//! outcome to the operation its step belongs to. The records and what several operations
//! share live in `record.rs`, the tunables in `config.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

// Re-exported here too: `testing` reaches the config as `machine::Config`.
pub(crate) use crate::config::Config;
use crate::create::CreateStep;
use crate::error::CommandError;
use crate::execsync::{Exec, ExecStep};
use crate::exit::ExitStep;
use crate::ids::{ContainerId, ExecId, OpId, RequestId, SandboxId};
use crate::io::{
    BackendError, Call, CallResult, Command, Effect, Event, EventKind, Now, PersistAction,
    PersistError, Response, Target,
};
use crate::meta::{ContainerMeta, SandboxMeta};
use crate::record::{Container, Creating, Lane, Sandbox};
use crate::recovery::RecoveryStep;
use crate::registry::NameRegistry;
use crate::remove::RemoveStep;
use crate::reopen::ReopenStep;
use crate::sandbox::{RemoveSandboxStep, RunSandboxStep, StopSandboxStep};
use crate::start::StartStep;
use crate::status::ExitStatus;
use crate::stop::StopStep;
use crate::update::UpdateStep;

/// What an outstanding effect's outcome means: the step of the operation it belongs to.
/// Each operation owns its step type and what an outcome does to each step; this enum only
/// names the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Create(CreateStep),
    Start(StartStep),
    Stop(StopStep),
    Exit(ExitStep),
    Remove(RemoveStep),
    Update(UpdateStep),
    Reopen(ReopenStep),
    Exec(ExecStep),
    Recovery(RecoveryStep),
    RunSandbox(RunSandboxStep),
    StopSandbox(StopSandboxStep),
    RemoveSandbox(RemoveSandboxStep),
}

/// The steps of one operation: which of them waits for a call result and which for a
/// persist outcome, and what the operation does with that outcome.
pub(crate) trait OperationStep: Sized {
    /// Handles the result of the call this step emitted. A step that waits for a persist
    /// outcome instead is handed back untouched.
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self>;

    /// Handles the outcome of the persist this step emitted. A step that waits for a call
    /// result instead is handed back untouched.
    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self>;
}

/// Forwards an outcome to the operation the step belongs to.
macro_rules! forward {
    ($step:expr, $method:ident, $m:expr, $result:expr) => {
        match $step {
            Step::Create(s) => s.$method($m, $result).map(Step::Create),
            Step::Start(s) => s.$method($m, $result).map(Step::Start),
            Step::Stop(s) => s.$method($m, $result).map(Step::Stop),
            Step::Exit(s) => s.$method($m, $result).map(Step::Exit),
            Step::Remove(s) => s.$method($m, $result).map(Step::Remove),
            Step::Update(s) => s.$method($m, $result).map(Step::Update),
            Step::Reopen(s) => s.$method($m, $result).map(Step::Reopen),
            Step::Exec(s) => s.$method($m, $result).map(Step::Exec),
            Step::Recovery(s) => s.$method($m, $result).map(Step::Recovery),
            Step::RunSandbox(s) => s.$method($m, $result).map(Step::RunSandbox),
            Step::StopSandbox(s) => s.$method($m, $result).map(Step::StopSandbox),
            Step::RemoveSandbox(s) => s.$method($m, $result).map(Step::RemoveSandbox),
        }
    };
}

impl OperationStep for Step {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        forward!(self, on_call, m, result)
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        forward!(self, on_persisted, m, result)
    }
}

/// Lets an operation hand its own step to [`Machine::call`] and [`Machine::persist`].
macro_rules! step_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Step {
            fn from(step: $ty) -> Step {
                Step::$variant(step)
            }
        })*
    };
}

step_from!(
    Create(CreateStep),
    Start(StartStep),
    Stop(StopStep),
    Exit(ExitStep),
    Remove(RemoveStep),
    Update(UpdateStep),
    Reopen(ReopenStep),
    Exec(ExecStep),
    Recovery(RecoveryStep),
    RunSandbox(RunSandboxStep),
    StopSandbox(StopSandboxStep),
    RemoveSandbox(RemoveSandboxStep),
);

/// A timer the machine armed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Send SIGKILL if the container still runs.
    Escalate { id: ContainerId },
    /// Retry recording a container's exit.
    RetryExit { id: ContainerId, attempt: u32 },
    /// Retry deleting a task.
    RetryCleanup { target: Target, attempt: u32 },
    /// Re-observe a task after a broken wait.
    RetryResync { target: Target, attempt: u32 },
    /// Retry recovery's checkpoint write.
    RetryPersist { id: ContainerId, attempt: u32 },
    /// Re-observe a task recovery could not observe.
    RetryObserve { target: Target, attempt: u32 },
    /// An exec process outlived its timeout: kill it.
    ExecTimeout { exec_id: ExecId },
    /// Retry killing an exec process past its timeout.
    RetryExecKill { exec_id: ExecId, attempt: u32 },
    /// Retry deleting an exec process.
    RetryExecDelete { exec_id: ExecId, attempt: u32 },
    /// Retry recovery's sweep of a container's exec processes.
    RetryExecSweep { id: ContainerId, attempt: u32 },
}

/// berth's lifecycle state machine. See the crate documentation for the driving contract.
#[derive(Debug, Clone)]
pub struct Machine {
    pub(crate) config: Config,
    pub(crate) containers: BTreeMap<ContainerId, Container>,
    pub(crate) sandboxes: BTreeMap<SandboxId, Sandbox>,
    pub(crate) creating: BTreeMap<ContainerId, Creating<ContainerMeta>>,
    pub(crate) creating_sandboxes: BTreeMap<SandboxId, Creating<SandboxMeta>>,
    pub(crate) container_names: NameRegistry<ContainerId>,
    pub(crate) sandbox_names: NameRegistry<SandboxId>,
    /// Recovered objects whose name another object already held (reported, not fatal).
    pub(crate) name_conflicts: BTreeSet<String>,
    pub(crate) steps: BTreeMap<OpId, Step>,
    /// ExecSyncs in flight, from the request to the exec process's deletion.
    pub(crate) execs: BTreeMap<ExecId, Exec>,
    /// Recovery's sweeps of exec processes, by container, still to finish.
    pub(crate) exec_sweeps: BTreeMap<ContainerId, Lane>,
    next_op: u64,
    pub(crate) effects: VecDeque<Effect>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) timers: BTreeSet<(Duration, u64, Timer)>,
    timer_seq: u64,
    /// Recovery steps still without a first outcome.
    pub(crate) recovery_outstanding: BTreeSet<OpId>,
    /// The checkpoint write (or delete) of each record in flight: the core hands out one
    /// per record at a time (docs/architecture.md §3).
    writes_in_flight: BTreeMap<ContainerId, OpId>,
    /// The first time a second write of one record was handed out while one was in flight
    /// (record, the write in flight, the second): an invariant violation.
    pub(crate) write_overlap: Option<(ContainerId, OpId, OpId)>,
    pub(crate) now: Now,
}

impl Machine {
    /// An empty machine (a node with nothing on it).
    pub fn new(config: Config, now: Now) -> Self {
        Machine {
            config,
            containers: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
            creating: BTreeMap::new(),
            creating_sandboxes: BTreeMap::new(),
            container_names: NameRegistry::default(),
            sandbox_names: NameRegistry::default(),
            name_conflicts: BTreeSet::new(),
            steps: BTreeMap::new(),
            execs: BTreeMap::new(),
            exec_sweeps: BTreeMap::new(),
            next_op: 1,
            effects: VecDeque::new(),
            events: VecDeque::new(),
            timers: BTreeSet::new(),
            timer_seq: 0,
            recovery_outstanding: BTreeSet::new(),
            writes_in_flight: BTreeMap::new(),
            write_overlap: None,
            now,
        }
    }

    // ---------------------------------------------------------------- inputs

    /// Input: a CRI command. Its reply comes out of [`Machine::poll_effect`], now or after
    /// the calls it needs. While recovery has not finished every command is answered
    /// [`CommandError::Recovering`] and changes nothing.
    pub fn handle_command(&mut self, req: RequestId, command: Command, now: Now) {
        self.tick(now);
        if let Err(e) = self.serving() {
            self.reply(req, Err(e));
            return;
        }
        match command {
            Command::RunPodSandbox { id, config } => self.run_pod_sandbox(req, id, *config),
            Command::StopPodSandbox(id) => self.stop_pod_sandbox(req, id),
            Command::RemovePodSandbox(id) => self.remove_pod_sandbox(req, id),
            Command::CreateContainer {
                id,
                sandbox,
                config,
            } => self.create_container(req, id, sandbox, *config),
            Command::StartContainer(id) => self.start_container(req, id),
            Command::StopContainer { id, timeout } => self.stop_container(req, id, timeout),
            Command::RemoveContainer(id) => self.remove_container(req, id),
            Command::UpdateContainerResources { id, resources } => {
                self.update_resources(req, id, resources)
            }
            Command::ReopenContainerLog(id) => self.reopen_container_log(req, id),
            Command::ExecSync {
                id,
                exec_id,
                cmd,
                timeout,
            } => self.exec_sync(req, id, exec_id, cmd, timeout),
        }
    }

    /// Input: the result of a [`Call`] emitted as `op`. Unknown ops are ignored (a driver
    /// may deliver a result after the machine was rebuilt).
    pub fn handle_call(&mut self, op: OpId, result: Result<CallResult, BackendError>, now: Now) {
        self.tick(now);
        let first_op = self.next_op;
        let from_recovery = self.recovery_outstanding.remove(&op);
        self.handle_call_step(op, result);
        if from_recovery {
            self.chain_recovery(first_op);
        }
    }

    /// Recovery is over only when its follow-up steps (a checkpoint rewrite after a task
    /// delete) have had an outcome too.
    fn chain_recovery(&mut self, first_op: u64) {
        let follow_ups: Vec<OpId> = self
            .steps
            .range(OpId(first_op)..)
            .filter(|(_, s)| matches!(s, Step::Recovery(r) if r.is_follow_up()))
            .map(|(op, _)| *op)
            .collect();
        self.recovery_outstanding.extend(follow_ups);
    }

    fn handle_call_step(&mut self, op: OpId, result: Result<CallResult, BackendError>) {
        let Some(step) = self.steps.remove(&op) else {
            return;
        };
        if let Some(step) = step.on_call(self, result) {
            // A persist outcome delivered as a call result: a driver bug. Put the step back
            // so the real outcome can still arrive.
            self.steps.insert(op, step);
        }
    }

    /// Input: the outcome of a [`Effect::Persist`] emitted as `op`.
    pub fn handle_persisted(&mut self, op: OpId, result: Result<(), PersistError>, now: Now) {
        self.tick(now);
        let first_op = self.next_op;
        let from_recovery = self.recovery_outstanding.remove(&op);
        self.handle_persisted_step(op, result);
        if from_recovery {
            self.chain_recovery(first_op);
        }
    }

    fn handle_persisted_step(&mut self, op: OpId, result: Result<(), PersistError>) {
        let Some(step) = self.steps.remove(&op) else {
            return;
        };
        self.writes_in_flight
            .retain(|_, in_flight| *in_flight != op);
        if let Some(step) = step.on_persisted(self, result) {
            // A call result delivered as a persist outcome: put the step back likewise.
            self.steps.insert(op, step);
        }
    }

    /// Input: a task exit learned outside a [`Call::WaitTask`] (an event, a duplicate, a
    /// late one). First recorded exit wins; exits of unknown or removed objects are ignored.
    pub fn handle_task_exit(&mut self, target: Target, exit: ExitStatus, now: Now) {
        self.tick(now);
        match target {
            Target::Container(id) => self.record_exit(&id, exit),
            Target::Sandbox(id) => self.sandbox_exited(&id, exit),
        }
    }

    /// Input: time passed. Fires every timer due at `now.mono`.
    pub fn handle_timeout(&mut self, now: Now) {
        self.tick(now);
        while let Some(first) = self.timers.first() {
            if first.0 > now.mono {
                break;
            }
            let Some((_, _, timer)) = self.timers.pop_first() else {
                break;
            };
            self.fire(timer);
        }
    }

    // ---------------------------------------------------------------- outputs

    /// Output: the next effect to carry out, in order.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Output: the next event for the CRI event stream.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Output: the earliest timer deadline (monotonic), if any timer is armed.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    // ---------------------------------------------------------------- getters

    /// A container by id.
    pub fn container(&self, id: &ContainerId) -> Option<&Container> {
        self.containers.get(id)
    }

    /// Every visible container, in id order.
    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.containers.values()
    }

    /// A sandbox by id.
    pub fn sandbox(&self, id: &SandboxId) -> Option<&Sandbox> {
        self.sandboxes.get(id)
    }

    /// Every visible sandbox, in id order.
    pub fn sandboxes(&self) -> impl Iterator<Item = &Sandbox> {
        self.sandboxes.values()
    }

    /// True while steps started by recovery have not had their first outcome: commands
    /// and reads are answered [`CommandError::Recovering`] until this turns false.
    pub fn is_recovering(&self) -> bool {
        !self.recovery_outstanding.is_empty()
    }

    /// Whether the machine answers requests now: [`CommandError::Recovering`] while
    /// recovery has not finished (what commands get, and what reads must answer too).
    pub fn serving(&self) -> Result<(), CommandError> {
        if self.is_recovering() {
            Err(CommandError::Recovering)
        } else {
            Ok(())
        }
    }

    /// Names of recovered objects that could not be registered because another object
    /// held their name (containerd treats this as fatal; berth reports it).
    pub fn name_conflicts(&self) -> impl Iterator<Item = &str> {
        self.name_conflicts.iter().map(String::as_str)
    }

    /// The objects berth waits on now: a `Tasks.Wait` of theirs is outstanding, or their
    /// exit watch is re-syncing after a broken wait (in flight or waiting to retry). In
    /// target order, each once. A settled machine waits on no EXITED container and no
    /// NotReady sandbox: their exits are recorded, nothing more can come (the simulator's
    /// `exited` check and the core's property test hold it to that).
    pub fn armed_waits(&self) -> Vec<Target> {
        let mut armed: BTreeSet<Target> = self
            .steps
            .values()
            .filter_map(|s| match s {
                Step::Exit(ExitStep::Wait { target } | ExitStep::Resync { target, .. }) => {
                    Some(target.clone())
                }
                _ => None,
            })
            .collect();
        armed.extend(
            self.containers
                .values()
                .filter(|c| !c.watch.is_idle())
                .map(Container::target),
        );
        armed.extend(
            self.sandboxes
                .values()
                .filter(|s| !s.watch.is_idle())
                .map(Sandbox::target),
        );
        armed.into_iter().collect()
    }

    /// Number of operations waiting for an outcome.
    pub fn outstanding(&self) -> usize {
        self.steps.len()
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---------------------------------------------------------------- plumbing

    fn tick(&mut self, now: Now) {
        // Time never runs backwards inside the machine, even if the driver's clock does.
        if now.mono >= self.now.mono {
            self.now.mono = now.mono;
        }
        self.now.wall = now.wall.max(self.now.wall);
    }

    pub(crate) fn wall(&self) -> i64 {
        self.now.wall
    }

    pub(crate) fn next_op(&mut self) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        op
    }

    pub(crate) fn call(&mut self, step: impl Into<Step>, call: Call) -> OpId {
        let op = self.next_op();
        self.steps.insert(op, step.into());
        self.effects.push_back(Effect::Call { op, call });
        op
    }

    pub(crate) fn persist(
        &mut self,
        step: impl Into<Step>,
        id: &ContainerId,
        action: PersistAction,
    ) -> OpId {
        let op = self.next_op();
        self.steps.insert(op, step.into());
        if let Some(first) = self.writes_in_flight.insert(id.clone(), op) {
            // Two writes of one record in flight may land in either order (an older status
            // over a newer one); every caller waits for the first. Kept for the invariants.
            self.write_overlap.get_or_insert((id.clone(), first, op));
        }
        self.effects.push_back(Effect::Persist {
            op,
            id: id.clone(),
            action,
        });
        op
    }

    pub(crate) fn reply(&mut self, req: RequestId, result: Result<Response, CommandError>) {
        self.effects.push_back(Effect::Reply { req, result });
    }

    pub(crate) fn event(&mut self, target: Target, kind: EventKind) {
        let at = self.wall();
        self.events.push_back(Event { target, kind, at });
    }

    pub(crate) fn arm(&mut self, after: Duration, timer: Timer) {
        self.timer_seq += 1;
        let at = self.now.mono.saturating_add(after);
        self.timers.insert((at, self.timer_seq, timer));
    }

    pub(crate) fn disarm(&mut self, pred: impl Fn(&Timer) -> bool) {
        self.timers.retain(|(_, _, t)| !pred(t));
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Escalate { id } => self.on_escalate(id),
            Timer::RetryExit { id, attempt } => self.persist_exit(id, attempt),
            Timer::RetryCleanup { target, attempt } => self.cleanup_task(target, attempt),
            Timer::RetryResync { target, attempt } => self.resync(target, attempt),
            Timer::RetryPersist { id, attempt } => self.retry_recover_persist(id, attempt),
            Timer::RetryObserve { target, attempt } => self.observe(target, attempt),
            Timer::ExecTimeout { exec_id } => self.on_exec_timeout(exec_id),
            Timer::RetryExecKill { exec_id, attempt } => self.retry_exec_kill(exec_id, attempt),
            Timer::RetryExecDelete { exec_id, attempt } => self.retry_exec_delete(exec_id, attempt),
            Timer::RetryExecSweep { id, attempt } => self.retry_exec_sweep(id, attempt),
        }
    }
}
