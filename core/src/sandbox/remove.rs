//! RemovePodSandbox: stop, remove every container, delete the pause task and record,
//! release the name. The removal is driven by [`Machine::progress_sandbox`]; this file
//! holds its entry and its delete steps.

use crate::error::Operation;
use crate::ids::{RequestId, SandboxId};
use crate::io::{BackendError, Call, CallResult, EventKind, PersistError, Response, Target};
use crate::machine::{Machine, OperationStep, Timer};
use crate::record::Lane;

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

    /// Deletes the pause task, then its record, once no background delete of the pause
    /// task is in flight.
    pub(super) fn delete_pause_task(&mut self, id: &SandboxId) {
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
        let error = Self::sandbox_error(Operation::RemovePodSandbox, id, e);
        self.fail_sandbox_ops(id, &error);
    }
}
