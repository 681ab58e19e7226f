//! StopPodSandbox: every container of the pod is force-stopped (exits made durable), then
//! the pause task is killed → NotReady. The stop is driven by
//! [`Machine::progress_sandbox`]; this file holds its entry and its kill step.

use crate::error::Operation;
use crate::ids::{RequestId, SandboxId};
use crate::io::{BackendError, Call, CallResult, PersistError, Response, Target};
use crate::machine::{Machine, OperationStep};
use crate::signal::SIGKILL;

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
    pub(super) fn kill_pause_task(&mut self, id: &SandboxId) {
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
                let error = Self::sandbox_error(Operation::StopPodSandbox, &id, e);
                self.fail_sandbox_ops(&id, &error);
            }
        }
    }
}
