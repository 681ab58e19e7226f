//! Recovery after a restart (docs/containerd-behaviour.md §6), with docs/architecture.md §3's
//! improvements.
//!
//! Input: every berth record containerd lists, each with its checkpoint (or why it could
//! not be read) and what the backend observed of its task. Output: a machine holding every
//! container and sandbox at once (none is skipped, a name conflict is reported and never
//! fatal), plus the effects that make disk and backend agree with it.
//!
//! The decision for one container is the pure function [`decide`]; the table it implements
//! is snapshot-tested cell by cell. Differences from containerd:
//! - `unknown` is persisted, so a second restart never turns UNKNOWN into RUNNING, and an
//!   UNKNOWN record takes its creation time from the containerd record (never 0);
//! - EXITED is terminal: a stray task of an EXITED container is deleted, the record kept;
//! - a task that stopped while berth was down is recorded like any exit: persisted first,
//!   then deleted;
//! - a failed checkpoint write keeps the container (in memory, retried with backoff),
//!   except for a start cut short by the crash (its task runs, its record says CREATED):
//!   RUNNING is only ever shown once durable, so if that write fails the start is rolled
//!   back (task deleted with kill, CREATED rewritten), as a start whose write failed is;
//! - a task that could not be observed (error, timeout) is observed again later.

use crate::config::Config;
use crate::error::Guard;
use crate::exit::ExitStep;
use crate::ids::ContainerId;
use crate::io::{
    BackendError, Call, CallResult, Now, PersistAction, PersistError, Target, TaskState,
};
use crate::machine::{Machine, OperationStep, Step, Timer};
use crate::meta::{ContainerMeta, SandboxMeta};
use crate::record::{Container, Lane, Sandbox, SandboxState};
use crate::status::{ContainerState, ExitStatus, Status};

/// The steps of recovery (and of the rewrite of a record after a failed write, which
/// holds the container as recovery does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecoveryStep {
    /// The write of the recovered (or rewritten) record.
    Persist {
        id: ContainerId,
        attempt: u32,
        status: Status,
    },
    /// `Tasks.Delete` with kill of a Created task, or of a start cut short whose RUNNING
    /// record could not be written.
    TaskDelete { id: ContainerId },
    /// `Tasks.Get` of a task recovery could not observe.
    Observe { target: Target, attempt: u32 },
}

impl RecoveryStep {
    /// A step recovery may start once another of its steps had an outcome (a checkpoint
    /// rewrite after a task delete): recovery is not over until it has had one too.
    pub(crate) fn is_follow_up(&self) -> bool {
        matches!(
            self,
            RecoveryStep::Persist { .. } | RecoveryStep::TaskDelete { .. }
        )
    }
}

impl OperationStep for RecoveryStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            RecoveryStep::TaskDelete { id } => m.on_recover_task_delete(id, result),
            RecoveryStep::Observe { target, attempt } => {
                m.on_recover_observe(target, attempt, result)
            }
            step @ RecoveryStep::Persist { .. } => return Some(step),
        }
        None
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            RecoveryStep::Persist {
                id,
                attempt,
                status,
            } => m.on_recover_persist(id, attempt, status, result),
            step @ (RecoveryStep::TaskDelete { .. } | RecoveryStep::Observe { .. }) => {
                return Some(step);
            }
        }
        None
    }
}

/// Why a container's checkpoint could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// No checkpoint file (crash between `Containers.Create` and the first write, or lost).
    Missing,
    /// The file does not decode (empty, torn, garbage, unknown version) or cannot be read.
    Unreadable(String),
}

/// One container as found at restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredContainer {
    /// Its metadata, from the containerd record.
    pub meta: ContainerMeta,
    /// When containerd created the record (unix ns; 0 if unknown).
    pub record_created_at: i64,
    /// The checkpoint.
    pub checkpoint: Result<Status, CheckpointProblem>,
    /// What the backend reported for its task (an error includes a deadline hit).
    pub task: Result<TaskState, BackendError>,
}

/// One sandbox as found at restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSandbox {
    /// Its metadata, from the containerd record.
    pub meta: SandboxMeta,
    /// What the backend reported for its pause task.
    pub task: Result<TaskState, BackendError>,
}

/// Everything recovery starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryInput {
    /// Sandboxes.
    pub sandboxes: Vec<RecoveredSandbox>,
    /// Containers.
    pub containers: Vec<RecoveredContainer>,
}

/// What recovery does with one container: the cell of the decision table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The record the container starts from (before `exit` is applied).
    pub status: Status,
    /// Write `status` to the checkpoint (it differs from what is on disk).
    pub persist: bool,
    /// Delete a Created task (with kill) before the container is usable; if that fails
    /// the container becomes UNKNOWN.
    pub delete_created_task: bool,
    /// Record this exit through the exit handler (persist, then delete the task).
    pub exit: Option<ExitStatus>,
    /// Delete a stray task in the background (EXITED stays EXITED).
    pub cleanup: bool,
    /// Arm the exit watch once the record is durable.
    pub watch: bool,
    /// The task could not be observed: observe it again later.
    pub observe_later: bool,
}

/// The decision table (docs/containerd-behaviour.md §6.4 with berth's rules) for one container.
/// `now` is the wall
/// clock of the recovery.
pub fn decide(
    checkpoint: &Result<Status, CheckpointProblem>,
    record_created_at: i64,
    task: &Result<TaskState, BackendError>,
    now: i64,
) -> Decision {
    let (on_disk, readable) = match checkpoint {
        Ok(s) => (s.clone(), true),
        Err(_) => (Status::unknown(record_created_at), false),
    };
    let mut status = on_disk.clone();
    if status.created_at == 0 && record_created_at > 0 {
        // containerd's synthesised records say CreatedAt 0 ("56 years ago").
        status.created_at = record_created_at;
    }
    let mut d = Decision {
        status: Status::default(),
        persist: false,
        delete_created_task: false,
        exit: None,
        cleanup: false,
        watch: false,
        observe_later: false,
    };
    let state = status.state();
    match (state, task) {
        (ContainerState::Exited, Ok(TaskState::NotFound)) => {}
        (ContainerState::Exited, _) => d.cleanup = true,
        (_, Ok(TaskState::Stopped(exit))) => d.exit = Some(*exit),
        (ContainerState::Created, Ok(TaskState::NotFound)) => {}
        (ContainerState::Created, Ok(TaskState::Created { .. })) => d.delete_created_task = true,
        (ContainerState::Created, Ok(TaskState::Running { pid })) => {
            // Crash between Tasks.Start and the persist: it runs, record it.
            status.pid = *pid;
            status.started_at = now.max(status.created_at);
            d.watch = true;
        }
        (ContainerState::Running, Ok(TaskState::Running { pid })) => {
            status.pid = *pid;
            d.watch = true;
        }
        (ContainerState::Running, Ok(TaskState::NotFound)) => d.exit = Some(ExitStatus::lost(now)),
        (ContainerState::Running | ContainerState::Unknown, Ok(TaskState::Created { .. })) => {
            d.delete_created_task = true;
            status.unknown = true;
        }
        // It ran (a pid or a start time is known) and its task is gone: the exit is lost,
        // as in the RUNNING row.
        (ContainerState::Unknown, Ok(TaskState::NotFound))
            if status.pid > 0 || status.started_at > 0 =>
        {
            d.exit = Some(ExitStatus::lost(now))
        }
        (ContainerState::Unknown, Ok(TaskState::NotFound)) => status.unknown = true,
        (ContainerState::Unknown, Ok(TaskState::Running { pid })) => {
            status.unknown = true;
            status.pid = *pid;
            if status.started_at == 0 {
                status.started_at = now.max(status.created_at);
            }
            d.watch = true;
        }
        (_, Ok(TaskState::Paused)) => {
            status.unknown = true;
            d.watch = true;
        }
        (_, Err(_)) => {
            status.unknown = true;
            d.observe_later = true;
        }
    }
    d.persist = !readable || status != on_disk;
    d.status = status;
    d
}

/// What recovery does with a sandbox: its state, pid, and whether to delete a leftover
/// pause task, watch it, or observe it again later.
pub fn decide_sandbox(
    task: &Result<TaskState, BackendError>,
) -> (SandboxState, u32, bool, bool, bool) {
    match task {
        Ok(TaskState::Running { pid }) => (SandboxState::Ready, *pid, false, true, false),
        Ok(TaskState::NotFound) => (SandboxState::NotReady, 0, false, false, false),
        Ok(TaskState::Created { .. } | TaskState::Stopped(_) | TaskState::Paused) => {
            (SandboxState::NotReady, 0, true, false, false)
        }
        Err(_) => (SandboxState::Unknown, 0, false, false, true),
    }
}

impl Machine {
    /// Builds the machine from what survived a restart. The returned machine holds every
    /// object; its effects (checkpoint rewrites, task deletes, watches) are ready to poll.
    /// [`Machine::is_recovering`] stays true until each recovery step had an outcome.
    pub fn recover(config: Config, input: RecoveryInput, now: Now) -> Machine {
        let mut m = Machine::new(config, now);
        for rs in input.sandboxes {
            let id = rs.meta.id.clone();
            if let Err(e) = m.sandbox_names.reserve(&rs.meta.name, &id) {
                m.name_conflicts.insert(format!("sandbox {id}: {e}"));
            }
            let (state, pid, cleanup, watch, observe_later) = decide_sandbox(&rs.task);
            let mut sandbox = Sandbox::new(rs.meta, state, pid);
            if let Ok(TaskState::Stopped(exit)) = rs.task {
                sandbox.exit = Some(exit);
            }
            let target = sandbox.target();
            m.sandboxes.insert(id, sandbox);
            if cleanup {
                m.schedule_cleanup(&target);
            }
            if watch {
                m.arm_watch(&target);
            }
            if observe_later {
                m.schedule_observe(target, 0);
            }
        }
        for rc in input.containers {
            let id = rc.meta.id.clone();
            if let Err(e) = m.container_names.reserve(&rc.meta.name, &id) {
                m.name_conflicts.insert(format!("container {id}: {e}"));
            }
            let decision = decide(&rc.checkpoint, rc.record_created_at, &rc.task, now.wall);
            let mut container = Container::new(rc.meta, decision.status.clone());
            if let Ok(on_disk) = &rc.checkpoint
                && on_disk.state() == ContainerState::Created
                && decision.status.state() == ContainerState::Running
            {
                container.adopting = Some(on_disk.clone());
            }
            m.containers.insert(id.clone(), container);
            m.apply_decision(&id, decision);
        }
        let before: Vec<_> = m.steps.keys().copied().collect();
        for op in before {
            // Waits are long-lived and exec sweeps run in the background: recovery is over
            // without them.
            if !matches!(
                m.steps.get(&op),
                Some(Step::Exit(ExitStep::Wait { .. }) | Step::Exec(_))
            ) {
                m.recovery_outstanding.insert(op);
            }
        }
        m
    }

    fn apply_decision(&mut self, id: &ContainerId, d: Decision) {
        let Some(target) = self.containers.get(id).map(|c| c.target()) else {
            return;
        };
        if d.watch || d.observe_later || d.status.state() == ContainerState::Unknown {
            // Its task runs, or may (it could not be observed): an exec process a crashed
            // berth started in it may live on (docs/recovery.md §8). A sweep of a container
            // without a task finds nothing.
            self.sweep_execs(id, 0);
        }
        if d.cleanup {
            #[cfg(feature = "planted-bugs")]
            if self
                .config
                .has_bug(crate::config::PlantedBug::RecoveryWatchesExitedTask)
            {
                self.planted_watch(&target);
                return;
            }
            self.schedule_cleanup(&target);
        }
        if let Some(exit) = d.exit {
            // The exit handler persists `status.with_exit(exit)`, covering `persist`.
            self.begin_exit(id, exit);
            return;
        }
        if d.delete_created_task {
            self.set_guard(id, Some(Guard::Recovering));
            self.call(
                RecoveryStep::TaskDelete { id: id.clone() },
                Call::DeleteTask { target, kill: true },
            );
            return;
        }
        if d.persist {
            self.set_guard(id, Some(Guard::Recovering));
            #[cfg(feature = "planted-bugs")]
            if d.watch
                && self
                    .config
                    .has_bug(crate::config::PlantedBug::WatchArmedBeforeRecorded)
            {
                self.arm_watch(&target);
            }
            self.recover_persist(id, 0);
            return;
        }
        if d.watch {
            self.arm_watch(&target);
        }
        if d.observe_later {
            self.schedule_observe(target, 0);
        }
    }

    pub(crate) fn recover_persist(&mut self, id: &ContainerId, attempt: u32) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let status = c.status.clone();
        #[allow(unused_mut)]
        let mut written = status.clone();
        #[cfg(feature = "planted-bugs")]
        if self
            .config
            .has_bug(crate::config::PlantedBug::UnknownNotPersisted)
        {
            written.unknown = false;
        }
        let op = self.persist(
            RecoveryStep::Persist {
                id: id.clone(),
                attempt,
                status,
            },
            id,
            PersistAction::Write(written),
        );
        if let Some(c) = self.containers.get_mut(id) {
            c.dirty = Lane::InFlight(op);
        }
    }

    pub(crate) fn retry_recover_persist(&mut self, id: ContainerId, attempt: u32) {
        if self
            .containers
            .get(&id)
            .is_some_and(|c| matches!(c.dirty, Lane::Backoff { .. }))
        {
            self.recover_persist(&id, attempt);
        }
    }

    fn on_recover_persist(
        &mut self,
        id: ContainerId,
        attempt: u32,
        status: Status,
        result: Result<(), PersistError>,
    ) {
        #[cfg(feature = "planted-bugs")]
        if result.is_err()
            && self
                .config
                .has_bug(crate::config::PlantedBug::RecoveryWriteFailureSkips)
        {
            // containerd: the container is skipped (gone from the store, name released).
            self.containers.remove(&id);
            self.container_names.release_key(&id);
            return;
        }
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        let adopting = c.adopting.take();
        if c.has_deferred_exit() {
            // An exit arrived meanwhile: its write carries the whole record.
            c.dirty = Lane::Idle;
            c.guard = None;
            self.persist_exit(id, 0);
            return;
        }
        if result.is_err()
            && let Some(on_disk) = adopting
        {
            // RUNNING is shown only once durable, as StartContainer does: a crash would bring
            // back CREATED and lose the exit of a process berth said ran. The start was never
            // acknowledged (its reply waits for this record): roll it back like a start whose
            // write failed, task deleted with kill, then CREATED rewritten until durable
            // (the failed write may have landed).
            c.status = on_disk;
            c.dirty = Lane::Idle;
            let target = c.target();
            self.call(
                RecoveryStep::TaskDelete { id },
                Call::DeleteTask { target, kill: true },
            );
            return;
        }
        if result.is_err() {
            // Keep the container (docs/architecture.md §3.5), retry the write.
            c.dirty = Lane::Backoff {
                attempt: attempt + 1,
            };
            let delay = self.config.backoff(attempt, self.config.backoff_max);
            self.arm(
                delay,
                Timer::RetryPersist {
                    id,
                    attempt: attempt + 1,
                },
            );
            return;
        }
        c.dirty = Lane::Idle;
        c.guard = None;
        let target = c.target();
        let state = status.state();
        let unknown_unobserved = status.unknown && status.pid == 0;
        // containerd armed its monitor once, before the record was in place; berth arms it
        // here, after.
        #[cfg(feature = "planted-bugs")]
        if self
            .config
            .has_bug(crate::config::PlantedBug::WatchArmedBeforeRecorded)
        {
            self.progress_sandbox_of(&id);
            return;
        }
        // Watch whatever may still run: a RUNNING container, or an UNKNOWN one with a pid.
        if state == ContainerState::Running
            || (state == ContainerState::Unknown && !unknown_unobserved)
        {
            self.arm_watch(&target);
        } else if state == ContainerState::Unknown && unknown_unobserved && c.watch.is_idle() {
            // An UNKNOWN container whose task state is not known: look again later.
            self.schedule_observe(target, 0);
        }
        self.progress_sandbox_of(&id);
    }

    fn on_recover_task_delete(
        &mut self,
        id: ContainerId,
        result: Result<CallResult, BackendError>,
    ) {
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        if let Err(e) = &result
            && !e.is_not_found()
        {
            // containerd: "task delete fails" → UNKNOWN.
            c.status.unknown = true;
        }
        self.recover_persist(&id, 0);
    }

    fn schedule_observe(&mut self, target: Target, attempt: u32) {
        let delay = self.config.backoff(attempt, self.config.resync_backoff_max);
        self.arm(delay, Timer::RetryObserve { target, attempt });
    }

    /// Re-observes a task recovery could not observe.
    pub(crate) fn observe(&mut self, target: Target, attempt: u32) {
        let still_unknown = match &target {
            Target::Container(id) => self
                .containers
                .get(id)
                .is_some_and(|c| c.awaits_observation() && c.watch.is_idle()),
            Target::Sandbox(id) => self
                .sandboxes
                .get(id)
                .is_some_and(|s| s.state == SandboxState::Unknown && s.watch.is_idle()),
        };
        if still_unknown {
            self.call(
                RecoveryStep::Observe {
                    target: target.clone(),
                    attempt,
                },
                Call::TaskStatus(target),
            );
        }
    }

    fn on_recover_observe(
        &mut self,
        target: Target,
        attempt: u32,
        result: Result<CallResult, BackendError>,
    ) {
        let task = match result {
            Ok(CallResult::Task(t)) => t,
            _ => {
                self.schedule_observe(target, attempt + 1);
                return;
            }
        };
        match target {
            Target::Container(id) => {
                let Some(c) = self.containers.get(&id) else {
                    return;
                };
                if !c.awaits_observation() {
                    return;
                }
                let d = decide(
                    &Ok(c.status.clone()),
                    c.status.created_at,
                    &Ok(task),
                    self.wall(),
                );
                if let Some(c) = self.containers.get_mut(&id) {
                    c.status = d.status.clone();
                }
                self.apply_decision(&id, d);
            }
            Target::Sandbox(id) => {
                let (state, pid, cleanup, watch, _) = decide_sandbox(&Ok(task));
                let Some(s) = self.sandboxes.get_mut(&id) else {
                    return;
                };
                if s.state != SandboxState::Unknown {
                    return;
                }
                s.state = state;
                s.pid = pid;
                if let TaskState::Stopped(exit) = task {
                    s.exit = Some(exit);
                }
                let t = s.target();
                if cleanup {
                    self.schedule_cleanup(&t);
                }
                if watch {
                    self.arm_watch(&t);
                }
                self.progress_sandbox(&id);
            }
        }
    }
}
