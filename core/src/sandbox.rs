//! RunPodSandbox, StopPodSandbox, RemovePodSandbox (spec §6.8 for the states).
//!
//! A sandbox is its pause container: `Containers.Create` → `Tasks.Create` → `Tasks.Start`
//! → Ready, watched like a container. Its state is never checkpointed; recovery re-derives
//! it from the pause task. Stop: every container of the pod is force-stopped (exits made
//! durable), then the pause task is killed → NotReady. Remove: stop, remove every container,
//! delete the pause task and record, release the name.

use crate::error::{CommandError, Guard};
use crate::ids::{ContainerId, RequestId, SandboxId};
use crate::io::{BackendError, Call, CallResult, EventKind, PersistError, Response, Target};
use crate::machine::{Machine, OperationStep, Timer};
use crate::meta::{SandboxConfig, SandboxMeta};
use crate::record::{Creating, Lane, Sandbox, SandboxState};
use crate::signal::SIGKILL;
use crate::status::{ContainerState, ExitStatus};
use crate::validate::validate_sandbox_config;
use std::time::Duration;

impl Machine {
    /// A backend error of a pod operation, naming the sandbox.
    fn sandbox_error(op: &'static str, id: &SandboxId, error: BackendError) -> CommandError {
        CommandError::Backend {
            op,
            target: format!("sandbox {id}"),
            error,
        }
    }

    /// The pause task exited (from its watch, an event, or recovery).
    pub(crate) fn sandbox_exited(&mut self, id: &SandboxId, exit: ExitStatus) {
        let Some(s) = self.sandboxes.get_mut(id) else {
            return;
        };
        if s.exit.is_some() && s.state == SandboxState::NotReady {
            return;
        }
        s.state = SandboxState::NotReady;
        s.pid = 0;
        s.exit = Some(exit);
        s.killing = false;
        let target = s.target();
        self.event(target.clone(), EventKind::Stopped);
        self.schedule_cleanup(&target);
        self.progress_sandbox(id);
    }

    /// [`Machine::progress_sandbox`] for the pod of `container`.
    pub(crate) fn progress_sandbox_of(&mut self, container: &ContainerId) {
        if let Some(sid) = self
            .containers
            .get(container)
            .map(|c| c.meta.sandbox_id.clone())
        {
            self.progress_sandbox(&sid);
        }
    }

    /// Drives a pending StopPodSandbox / RemovePodSandbox one step further; called after
    /// every change of a container of the pod.
    pub(crate) fn progress_sandbox(&mut self, id: &SandboxId) {
        let Some(s) = self.sandboxes.get(id) else {
            return;
        };
        if s.stop_waiters.is_empty() && !s.removing {
            return;
        }
        if self.creating.values().any(|c| &c.meta.sandbox_id == id) {
            return; // settles soon; its completion calls back here
        }
        let members: Vec<ContainerId> = self
            .containers
            .values()
            .filter(|c| &c.meta.sandbox_id == id)
            .map(|c| c.meta.id.clone())
            .collect();
        // 1. every container of the pod stopped, its exit durable.
        let mut busy = false;
        for cid in &members {
            let Some(c) = self.containers.get_mut(cid) else {
                continue;
            };
            if c.guard == Some(Guard::Starting) {
                c.stop_after_start = Some(Duration::ZERO);
                busy = true;
            } else if c.exit.is_some() || c.guard == Some(Guard::Recovering) {
                busy = true;
            } else if matches!(c.state(), ContainerState::Running | ContainerState::Unknown) {
                busy = true;
                self.begin_stop(cid, Duration::ZERO);
            }
        }
        if busy {
            return;
        }
        // 2. the pause task stopped.
        let Some(s) = self.sandboxes.get_mut(id) else {
            return;
        };
        if s.state != SandboxState::NotReady {
            self.kill_pause_task(id);
            return;
        }
        let stopped = std::mem::take(&mut s.stop_waiters);
        let removing = s.removing;
        for req in stopped {
            self.reply(req, Ok(Response::Done));
        }
        if !removing {
            return;
        }
        // 3. every container removed.
        if !members.is_empty() {
            for cid in &members {
                if self
                    .containers
                    .get(cid)
                    .is_some_and(|c| c.can_remove().is_ok())
                {
                    self.begin_remove(cid, None);
                }
            }
            return;
        }
        // 4. the pause task and record deleted.
        self.delete_pause_task(id);
    }

    /// A step of a pending StopPodSandbox / RemovePodSandbox failed: every request waiting
    /// on the sandbox gets the error, and the removal is abandoned (the kubelet retries).
    pub(crate) fn fail_sandbox_ops(&mut self, id: &SandboxId, error: &CommandError) {
        let Some(s) = self.sandboxes.get_mut(id) else {
            return;
        };
        s.removing = false;
        let waiters: Vec<RequestId> = std::mem::take(&mut s.stop_waiters)
            .into_iter()
            .chain(std::mem::take(&mut s.remove_waiters))
            .collect();
        for req in waiters {
            self.reply(req, Err(error.clone()));
        }
    }
}

/// The steps of RunPodSandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunSandboxStep {
    /// `Containers.Create` of the pause container.
    CreateRecord { id: SandboxId },
    /// `Tasks.Create` of the pause task.
    CreateTask { id: SandboxId },
    /// `Tasks.Start` of the pause task.
    StartTask { id: SandboxId },
    /// Rollback: `Tasks.Delete` with kill.
    RollbackTask { id: SandboxId, error: CommandError },
    /// Rollback: `Containers.Delete`.
    RollbackRecord { id: SandboxId, error: CommandError },
}

impl OperationStep for RunSandboxStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            RunSandboxStep::CreateRecord { id } => m.on_sandbox_create_record(id, result),
            RunSandboxStep::CreateTask { id } => m.on_sandbox_create_task(id, result),
            RunSandboxStep::StartTask { id } => m.on_sandbox_start_task(id, result),
            RunSandboxStep::RollbackTask { id, error } => {
                m.on_sandbox_rollback_task(id, error, result)
            }
            RunSandboxStep::RollbackRecord { id, error } => {
                m.on_sandbox_rollback_record(id, error, result)
            }
        }
        None
    }

    fn on_persisted(self, _m: &mut Machine, _result: Result<(), PersistError>) -> Option<Self> {
        // Every step of it waits for a call result.
        Some(self)
    }
}

impl Machine {
    pub(crate) fn run_pod_sandbox(&mut self, req: RequestId, id: SandboxId, config: SandboxConfig) {
        if let Err(e) = validate_sandbox_config(&config) {
            self.reply(req, Err(e));
            return;
        }
        if self.id_in_use(id.as_str()) {
            self.reply(req, Err(CommandError::IdInUse { id: id.to_string() }));
            return;
        }
        let name = config.reservation_name();
        if let Err(e) = self.sandbox_names.reserve(&name, &id) {
            self.reply(req, Err(CommandError::NameReserved(e)));
            return;
        }
        let meta = SandboxMeta {
            id: id.clone(),
            name,
            config,
            created_at: self.wall(),
        };
        self.creating_sandboxes.insert(
            id.clone(),
            Creating {
                req,
                meta: meta.clone(),
                created_at: meta.created_at,
                pid: 0,
            },
        );
        self.call(
            RunSandboxStep::CreateRecord { id },
            Call::CreateSandbox(Box::new(meta)),
        );
    }

    fn on_sandbox_create_record(
        &mut self,
        id: SandboxId,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Ok(_) => {
                self.call(
                    RunSandboxStep::CreateTask { id: id.clone() },
                    Call::CreateTask(Target::Sandbox(id)),
                );
            }
            Err(e) => {
                let error = Self::sandbox_error("run pod sandbox", &id, e);
                self.call(
                    RunSandboxStep::RollbackRecord {
                        id: id.clone(),
                        error,
                    },
                    Call::DeleteContainer(Target::Sandbox(id)),
                );
            }
        }
    }

    fn on_sandbox_create_task(&mut self, id: SandboxId, result: Result<CallResult, BackendError>) {
        match result {
            Ok(_) => {
                self.call(
                    RunSandboxStep::StartTask { id: id.clone() },
                    Call::StartTask(Target::Sandbox(id)),
                );
            }
            Err(e) => {
                let error = Self::sandbox_error("create pause task of", &id, e);
                self.sandbox_rollback_task(id, error);
            }
        }
    }

    fn on_sandbox_start_task(&mut self, id: SandboxId, result: Result<CallResult, BackendError>) {
        match result {
            Ok(CallResult::Pid(pid)) if pid > 0 => {
                let Some(creating) = self.creating_sandboxes.remove(&id) else {
                    return;
                };
                let sandbox = Sandbox::new(creating.meta, SandboxState::Ready, pid);
                let target = sandbox.target();
                self.sandboxes.insert(id.clone(), sandbox);
                self.arm_watch(&target);
                self.event(target.clone(), EventKind::Created);
                self.event(target, EventKind::Started);
                self.reply(creating.req, Ok(Response::SandboxCreated(id)));
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    Ok(r) => BackendError::new(
                        crate::io::BackendErrorKind::Other,
                        "Tasks.Start",
                        id.as_str(),
                        format!("unexpected result {r:?}"),
                    ),
                };
                let error = Self::sandbox_error("start pause task of", &id, e);
                self.sandbox_rollback_task(id, error);
            }
        }
    }

    fn sandbox_rollback_task(&mut self, id: SandboxId, error: CommandError) {
        self.call(
            RunSandboxStep::RollbackTask {
                id: id.clone(),
                error,
            },
            Call::DeleteTask {
                target: Target::Sandbox(id),
                kill: true,
            },
        );
    }

    fn on_sandbox_rollback_task(
        &mut self,
        id: SandboxId,
        error: CommandError,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Err(e) if !e.is_not_found() => {
                // The pause task may live on; deleting the record now would orphan it.
                // Keep the sandbox visible (Unknown) so Stop/Remove can clean it up.
                self.sandbox_rollback_keep(id, SandboxState::Unknown, error);
            }
            _ => {
                self.call(
                    RunSandboxStep::RollbackRecord {
                        id: id.clone(),
                        error,
                    },
                    Call::DeleteContainer(Target::Sandbox(id)),
                );
            }
        }
    }

    fn on_sandbox_rollback_record(
        &mut self,
        id: SandboxId,
        error: CommandError,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Err(e) if !e.is_not_found() => {
                self.sandbox_rollback_keep(id, SandboxState::NotReady, error)
            }
            _ => {
                if let Some(creating) = self.creating_sandboxes.remove(&id) {
                    self.sandbox_names.release_key(&id);
                    self.reply(creating.req, Err(error));
                }
            }
        }
    }

    /// A rollback could not finish: the sandbox becomes visible so it can be removed.
    fn sandbox_rollback_keep(&mut self, id: SandboxId, state: SandboxState, error: CommandError) {
        if let Some(creating) = self.creating_sandboxes.remove(&id) {
            self.sandboxes
                .insert(id, Sandbox::new(creating.meta, state, 0));
            self.reply(creating.req, Err(error));
        }
    }
}

/// The steps of StopPodSandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopSandboxStep {
    /// `Tasks.Kill` of the pause task with SIGKILL.
    Kill { id: SandboxId },
}

impl OperationStep for StopSandboxStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            StopSandboxStep::Kill { id } => m.on_sandbox_kill(id, result),
        }
        None
    }

    fn on_persisted(self, _m: &mut Machine, _result: Result<(), PersistError>) -> Option<Self> {
        // Every step of it waits for a call result.
        Some(self)
    }
}

impl Machine {
    pub(crate) fn stop_pod_sandbox(&mut self, req: RequestId, id: SandboxId) {
        let Some(s) = self.sandboxes.get_mut(&id) else {
            self.reply(req, Ok(Response::Done));
            return;
        };
        s.stop_waiters.push(req);
        self.progress_sandbox(&id);
    }

    /// Kills the pause task (SIGKILL) unless a kill is in flight; its exit arrives through
    /// the watch.
    fn kill_pause_task(&mut self, id: &SandboxId) {
        let Some(s) = self.sandboxes.get_mut(id) else {
            return;
        };
        if !s.killing {
            s.killing = true;
            self.call(
                StopSandboxStep::Kill { id: id.clone() },
                Call::KillTask {
                    target: Target::Sandbox(id.clone()),
                    signal: SIGKILL,
                },
            );
        }
    }

    fn on_sandbox_kill(&mut self, id: SandboxId, result: Result<CallResult, BackendError>) {
        let Some(s) = self.sandboxes.get_mut(&id) else {
            return;
        };
        let target = Target::Sandbox(id.clone());
        match result {
            Ok(_) => self.arm_watch(&target),
            Err(e) if e.is_not_found() => {
                if s.watch.is_idle() {
                    self.resync(target, 0);
                }
            }
            Err(e) => {
                s.killing = false;
                let error = Self::sandbox_error("stop pod sandbox", &id, e);
                self.fail_sandbox_ops(&id, &error);
            }
        }
    }
}

/// The steps of RemovePodSandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoveSandboxStep {
    /// `Tasks.Delete` with kill of the pause task.
    DeleteTask { id: SandboxId },
    /// `Containers.Delete` of the pause container.
    DeleteRecord { id: SandboxId },
}

impl OperationStep for RemoveSandboxStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            RemoveSandboxStep::DeleteTask { id } => m.on_sandbox_delete_task(id, result),
            RemoveSandboxStep::DeleteRecord { id } => m.on_sandbox_delete_record(id, result),
        }
        None
    }

    fn on_persisted(self, _m: &mut Machine, _result: Result<(), PersistError>) -> Option<Self> {
        // Every step of it waits for a call result.
        Some(self)
    }
}

impl Machine {
    pub(crate) fn remove_pod_sandbox(&mut self, req: RequestId, id: SandboxId) {
        let Some(s) = self.sandboxes.get_mut(&id) else {
            self.reply(req, Ok(Response::Done));
            return;
        };
        s.removing = true;
        s.remove_waiters.push(req);
        self.progress_sandbox(&id);
    }

    /// Deletes the pause task, then its record; after any background delete of the pause
    /// task (two deletes at once fail one of them when the shim exits).
    fn delete_pause_task(&mut self, id: &SandboxId) {
        let Some(s) = self.sandboxes.get_mut(id) else {
            return;
        };
        if matches!(s.cleanup, Lane::InFlight(_)) {
            return;
        }
        if !s.deleting {
            s.deleting = true;
            self.call(
                RemoveSandboxStep::DeleteTask { id: id.clone() },
                Call::DeleteTask {
                    target: Target::Sandbox(id.clone()),
                    kill: true,
                },
            );
        }
    }

    fn on_sandbox_delete_task(&mut self, id: SandboxId, result: Result<CallResult, BackendError>) {
        match result {
            Err(e) if !e.is_not_found() => self.fail_sandbox_delete(&id, e),
            _ => {
                self.call(
                    RemoveSandboxStep::DeleteRecord { id: id.clone() },
                    Call::DeleteContainer(Target::Sandbox(id)),
                );
            }
        }
    }

    fn on_sandbox_delete_record(
        &mut self,
        id: SandboxId,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Err(e) if !e.is_not_found() => self.fail_sandbox_delete(&id, e),
            _ => {
                let Some(s) = self.sandboxes.remove(&id) else {
                    return;
                };
                self.sandbox_names.release_key(&id);
                self.name_conflicts.remove(&format!("sandbox {id}"));
                let target = Target::Sandbox(id.clone());
                self.disarm(|t| match t {
                    Timer::RetryCleanup { target: x, .. }
                    | Timer::RetryResync { target: x, .. }
                    | Timer::RetryObserve { target: x, .. } => *x == target,
                    _ => false,
                });
                self.event(target, EventKind::Deleted);
                for req in s.stop_waiters.into_iter().chain(s.remove_waiters) {
                    self.reply(req, Ok(Response::Done));
                }
            }
        }
    }

    fn fail_sandbox_delete(&mut self, id: &SandboxId, e: BackendError) {
        if let Some(s) = self.sandboxes.get_mut(id) {
            s.deleting = false;
        }
        let error = Self::sandbox_error("remove pod sandbox", id, e);
        self.fail_sandbox_ops(id, &error);
    }
}
