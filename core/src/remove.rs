//! RemoveContainer (docs/containerd-behaviour.md §4.4).
//!
//! RUNNING or UNKNOWN → forced stop first (SIGKILL, the exit made durable). Then guard
//! `Removing` → `Tasks.Delete` with kill (NotFound tolerated) → `Containers.Delete`
//! (NotFound tolerated) → checkpoint deleted → gone, name released. Any failure releases
//! the guard and leaves the container removable again. A crash after the containerd record
//! is gone leaves only directories, which recovery's orphan sweep removes.

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, RequestId};
use crate::io::{
    BackendError, Call, CallResult, EventKind, PersistAction, PersistError, Response, Target,
};
use crate::machine::{Machine, OperationStep, Timer};
use crate::record::Waiter;
use crate::status::ContainerState;
use std::time::Duration;

/// The steps of RemoveContainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoveStep {
    /// `Tasks.Delete` with kill.
    Task {
        id: ContainerId,
        req: Option<RequestId>,
    },
    /// `Containers.Delete`.
    Record {
        id: ContainerId,
        req: Option<RequestId>,
    },
    /// The checkpoint deleted.
    Checkpoint {
        id: ContainerId,
        req: Option<RequestId>,
    },
}

impl OperationStep for RemoveStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            RemoveStep::Task { id, req } => m.on_remove_task(id, req, result),
            RemoveStep::Record { id, req } => m.on_remove_record(id, req, result),
            step @ RemoveStep::Checkpoint { .. } => return Some(step),
        }
        None
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            RemoveStep::Checkpoint { id, req } => m.on_remove_checkpoint(id, req, result),
            step @ (RemoveStep::Task { .. } | RemoveStep::Record { .. }) => return Some(step),
        }
        None
    }
}

impl Machine {
    pub(crate) fn remove_container(&mut self, req: RequestId, id: ContainerId) {
        let Some(c) = self.containers.get_mut(&id) else {
            self.reply(req, Ok(Response::Done));
            return;
        };
        if let Err(e) = c.can_remove() {
            self.reply(req, Err(e));
            return;
        }
        if c.exit.is_some() {
            c.waiters.push(Waiter::Remove(Some(req)));
            return;
        }
        match c.state() {
            ContainerState::Running | ContainerState::Unknown => {
                c.waiters.push(Waiter::Remove(Some(req)));
                self.begin_stop(&id, Duration::ZERO);
            }
            ContainerState::Created | ContainerState::Exited => self.begin_remove(&id, Some(req)),
        }
    }

    /// Removes a stopped container (CREATED or EXITED). `req` is None for a removal that
    /// RemovePodSandbox started.
    pub(crate) fn begin_remove(&mut self, id: &ContainerId, req: Option<RequestId>) {
        let Some(c) = self.containers.get_mut(id) else {
            if let Some(req) = req {
                self.reply(req, Ok(Response::Done));
            }
            return;
        };
        if let Err(e) = c.can_remove() {
            if let Some(req) = req {
                self.reply(req, Err(e));
            }
            return;
        }
        c.guard = Some(Guard::Removing);
        if matches!(c.cleanup, crate::record::Lane::InFlight(_)) {
            c.remove_after_cleanup = Some(req);
            return;
        }
        let target = c.target();
        self.call(
            RemoveStep::Task {
                id: id.clone(),
                req,
            },
            Call::DeleteTask { target, kill: true },
        );
    }

    /// The background task delete a removal waited for has finished: the removal goes on
    /// with its own delete (a no-op NotFound if the background one succeeded).
    pub(crate) fn resume_remove_after_cleanup(&mut self, id: &ContainerId) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let Some(req) = c.remove_after_cleanup.take() else {
            return;
        };
        let target = c.target();
        self.call(
            RemoveStep::Task {
                id: id.clone(),
                req,
            },
            Call::DeleteTask { target, kill: true },
        );
    }

    fn on_remove_task(
        &mut self,
        id: ContainerId,
        req: Option<RequestId>,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Err(error) if !error.is_not_found() => self.fail_remove(&id, req, error_of(&id, error)),
            _ => {
                let target = Target::Container(id.clone());
                self.call(
                    RemoveStep::Record { id, req },
                    Call::DeleteContainer(target),
                );
            }
        }
    }

    fn on_remove_record(
        &mut self,
        id: ContainerId,
        req: Option<RequestId>,
        result: Result<CallResult, BackendError>,
    ) {
        match result {
            Err(error) if !error.is_not_found() => self.fail_remove(&id, req, error_of(&id, error)),
            _ => {
                self.persist(
                    RemoveStep::Checkpoint {
                        id: id.clone(),
                        req,
                    },
                    &id,
                    PersistAction::Delete,
                );
            }
        }
    }

    fn on_remove_checkpoint(
        &mut self,
        id: ContainerId,
        req: Option<RequestId>,
        result: Result<(), PersistError>,
    ) {
        if let Err(error) = result {
            let error = CommandError::Persist {
                op: Operation::RemoveContainer,
                error,
            };
            self.fail_remove(&id, req, error);
            return;
        }
        let Some(c) = self.containers.remove(&id) else {
            return;
        };
        self.container_names.release_key(&id);
        self.name_conflicts.remove(&format!("container {id}"));
        self.disarm(|t| match t {
            Timer::Escalate { id: e }
            | Timer::RetryExit { id: e, .. }
            | Timer::RetryPersist { id: e, .. } => *e == id,
            Timer::RetryCleanup { target, .. }
            | Timer::RetryResync { target, .. }
            | Timer::RetryObserve { target, .. } => *target == Target::Container(id.clone()),
            // An exec's lifetime is its own: its wait returns and its delete follows (its
            // process died with the task); a pending sweep finds no task.
            Timer::ExecTimeout { .. }
            | Timer::RetryExecKill { .. }
            | Timer::RetryExecDelete { .. }
            | Timer::RetryExecSweep { .. } => false,
        });
        self.event(Target::Container(id.clone()), EventKind::Deleted);
        if let Some(req) = req {
            self.reply(req, Ok(Response::Done));
        }
        for w in c.waiters {
            match w {
                Waiter::Stop(r) | Waiter::Remove(Some(r)) => self.reply(r, Ok(Response::Done)),
                Waiter::Remove(None) => {}
            }
        }
        self.progress_sandbox(&c.meta.sandbox_id);
    }

    fn fail_remove(&mut self, id: &ContainerId, req: Option<RequestId>, error: CommandError) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.guard = None;
        let sandbox = c.meta.sandbox_id.clone();
        match req {
            Some(req) => self.reply(req, Err(error)),
            None => self.fail_sandbox_ops(&sandbox, &error),
        }
    }
}

fn error_of(id: &ContainerId, error: BackendError) -> CommandError {
    CommandError::Backend {
        op: Operation::RemoveContainer,
        target: Target::Container(id.clone()),
        error,
    }
}
