//! StartContainer (docs/containerd-behaviour.md §4.2), step by step so a crash or a failure can
//! land between any two.
//!
//! guard `Starting` → sandbox READY → `Tasks.Create` → `Tasks.Start` → persist
//! `{Pid, StartedAt}` → watch armed → reply. Rollbacks, in order: R2 `Tasks.Delete` with
//! kill (armed for any failure after the create was sent: a create whose reply was lost may
//! still have made the task), then R1 persist `{FinishedAt, 128, StartError, message}`,
//! then the guard released.
//!
//! The exit watch is armed after the start is durable (docs/architecture.md §3.4). No exit can be
//! missed:
//! the shim keeps a task's exit status until `Tasks.Delete`, and only the exit handler
//! deletes a started task, after the exit is persisted.

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, RequestId};
use crate::io::{
    BackendError, Call, CallResult, EventKind, PersistAction, PersistError, Response, Target,
};
use crate::machine::{Machine, OperationStep};
use crate::record::{SandboxState, Waiter};
use crate::status::{ContainerState, START_ERROR_EXIT_CODE, START_ERROR_REASON, Status};

/// The steps of StartContainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartStep {
    /// `Tasks.Create`.
    CreateTask { id: ContainerId, req: RequestId },
    /// `Tasks.Start`.
    StartTask { id: ContainerId, req: RequestId },
    /// The write of `{Pid, StartedAt}`.
    Persist {
        id: ContainerId,
        req: RequestId,
        status: Status,
    },
    /// R2: `Tasks.Delete` with kill.
    RollbackTask {
        id: ContainerId,
        req: RequestId,
        error: CommandError,
    },
    /// R1: the write of the failed start.
    RecordFailure {
        id: ContainerId,
        req: RequestId,
        error: CommandError,
        status: Status,
    },
}

impl OperationStep for StartStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            StartStep::CreateTask { id, req } => m.on_start_create_task(id, req, result),
            StartStep::StartTask { id, req } => m.on_start_start_task(id, req, result),
            StartStep::RollbackTask { id, req, error } => {
                m.on_start_rollback_task(id, req, error, result)
            }
            step @ (StartStep::Persist { .. } | StartStep::RecordFailure { .. }) => {
                return Some(step);
            }
        }
        None
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            StartStep::Persist { id, req, status } => m.on_start_persist(id, req, status, result),
            StartStep::RecordFailure {
                id,
                req,
                error,
                status,
            } => m.on_start_record_failure(id, req, error, status, result),
            step @ (StartStep::CreateTask { .. }
            | StartStep::StartTask { .. }
            | StartStep::RollbackTask { .. }) => return Some(step),
        }
        None
    }
}

impl Machine {
    pub(crate) fn start_container(&mut self, req: RequestId, id: ContainerId) {
        let Some(c) = self.containers.get_mut(&id) else {
            self.reply(req, Err(CommandError::ContainerNotFound { id }));
            return;
        };
        // containerd's order: state, removing, starting (docs/containerd-behaviour.md §4.2 step 2).
        if let Err(e) = c.can_start() {
            self.reply(req, Err(e));
            return;
        }
        c.guard = Some(Guard::Starting);
        let sandbox_id = c.meta.sandbox_id.clone();
        match self.sandboxes.get(&sandbox_id) {
            None => {
                let error = CommandError::SandboxNotFound { id: sandbox_id };
                self.start_record_failure(id, req, error);
            }
            Some(s) if s.state != SandboxState::Ready || s.removing => {
                let error = CommandError::SandboxNotReady { id: sandbox_id };
                self.start_record_failure(id, req, error);
            }
            Some(_) => {
                let target = crate::io::Target::Container(id.clone());
                self.call(StartStep::CreateTask { id, req }, Call::CreateTask(target));
            }
        }
    }

    fn on_start_create_task(
        &mut self,
        id: ContainerId,
        req: RequestId,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Ok(_) => {
                let target = crate::io::Target::Container(id.clone());
                self.call(StartStep::StartTask { id, req }, Call::StartTask(target));
            }
            Err(error) => {
                let error = CommandError::Backend {
                    op: Operation::StartContainer,
                    target: Target::Container(id.clone()),
                    error,
                };
                self.start_rollback_task(id, req, error);
            }
        }
    }

    fn on_start_start_task(
        &mut self,
        id: ContainerId,
        req: RequestId,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Ok(result) => {
                let pid = match result {
                    CallResult::Pid(pid) if pid > 0 => pid,
                    // A backend that reports no pid cannot be supervised: undo the start.
                    other => {
                        let error = CommandError::Backend {
                            op: Operation::StartContainer,
                            target: Target::Container(id.clone()),
                            error: BackendError::new(
                                crate::io::BackendErrorKind::Other,
                                "Tasks.Start",
                                id.as_str(),
                                format!("unexpected result {other:?}"),
                            ),
                        };
                        self.start_rollback_task(id, req, error);
                        return;
                    }
                };
                let now = self.wall();
                let Some(c) = self.containers.get(&id) else {
                    return;
                };
                let mut status = c.status.clone();
                status.pid = pid;
                status.started_at = now.max(status.created_at);
                self.persist(
                    StartStep::Persist {
                        id: id.clone(),
                        req,
                        status: status.clone(),
                    },
                    &id,
                    PersistAction::Write(status),
                );
            }
            Err(error) => {
                let error = CommandError::Backend {
                    op: Operation::StartContainer,
                    target: Target::Container(id.clone()),
                    error,
                };
                self.start_rollback_task(id, req, error);
            }
        }
    }

    fn on_start_persist(
        &mut self,
        id: ContainerId,
        req: RequestId,
        status: Status,
        result: Result<(), PersistError>,
    ) {
        if let Err(error) = result {
            let error = CommandError::Persist {
                op: Operation::StartContainer,
                error,
            };
            self.start_rollback_task(id, req, error);
            return;
        }
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        c.status = status;
        c.guard = None;
        let stop_after = c.stop_after_start.take();
        let target = c.target();
        self.arm_watch(&target);
        self.event(target, EventKind::Started);
        self.reply(req, Ok(Response::Done));
        if let Some(timeout) = stop_after {
            self.begin_stop(&id, timeout);
        }
        self.progress_sandbox_of(&id);
    }

    /// R2: delete the task with kill; NotFound means it never existed or is gone already.
    fn start_rollback_task(&mut self, id: ContainerId, req: RequestId, error: CommandError) {
        let target = crate::io::Target::Container(id.clone());
        self.call(
            StartStep::RollbackTask { id, req, error },
            Call::DeleteTask { target, kill: true },
        );
    }

    fn on_start_rollback_task(
        &mut self,
        id: ContainerId,
        req: RequestId,
        error: CommandError,
        result: Result<CallResult, BackendError>,
    ) {
        if let Err(e) = result
            && !e.is_not_found()
        {
            // containerd only logs this and may leak the task; berth keeps deleting it in
            // the background until it is gone.
            let target = crate::io::Target::Container(id.clone());
            self.schedule_cleanup(&target);
        }
        self.start_record_failure(id, req, error);
    }

    /// R1: record the failed start as EXITED 128 "StartError". After a write failure the
    /// container stays CREATED in memory, and since the disk may hold any of the records
    /// written since (the RUNNING one of this start included), CREATED is rewritten until it
    /// is durable: a later start must not find a stale RUNNING record after a crash.
    fn start_record_failure(&mut self, id: ContainerId, req: RequestId, error: CommandError) {
        let now = self.wall();
        let Some(c) = self.containers.get(&id) else {
            self.reply(req, Err(error));
            return;
        };
        let mut status = c.status.clone();
        status.pid = 0;
        status.finished_at = now.max(status.started_at).max(status.created_at).max(1);
        status.exit_code = START_ERROR_EXIT_CODE;
        status.reason = START_ERROR_REASON.to_owned();
        status.message = error.to_string();
        self.persist(
            StartStep::RecordFailure {
                id: id.clone(),
                req,
                error,
                status: status.clone(),
            },
            &id,
            PersistAction::Write(status),
        );
    }

    fn on_start_record_failure(
        &mut self,
        id: ContainerId,
        req: RequestId,
        error: CommandError,
        status: Status,
        result: Result<(), PersistError>,
    ) {
        let Some(c) = self.containers.get_mut(&id) else {
            self.reply(req, Err(error));
            return;
        };
        let write_failed = result.is_err();
        if !write_failed {
            c.status = status;
        }
        c.guard = None;
        c.stop_after_start = None;
        let waiters = std::mem::take(&mut c.waiters);
        let exited = c.state() == ContainerState::Exited;
        if exited {
            self.event(crate::io::Target::Container(id.clone()), EventKind::Stopped);
        }
        self.reply(req, Err(error));
        // Stops waiting on this start are satisfied once nothing runs: at once, or when the
        // background delete of a task the rollback could not delete has finished.
        let task_lingers = self.containers.get(&id).is_some_and(|c| c.task_lingers());
        for w in waiters {
            match w {
                // The disk may hold this start's RUNNING record: see `answer_idle_stop`.
                Waiter::Stop(r) if write_failed => self.reply_stop_busy(&id, r),
                Waiter::Stop(r) if task_lingers => {
                    if let Some(c) = self.containers.get_mut(&id) {
                        c.waiters.push(Waiter::Stop(r));
                    }
                }
                Waiter::Stop(r) => self.reply(r, Ok(Response::Done)),
                Waiter::Remove(r) => self.begin_remove(&id, r),
            }
        }
        if write_failed {
            self.rewrite_record(&id);
        }
        self.progress_sandbox_of(&id);
    }
}
