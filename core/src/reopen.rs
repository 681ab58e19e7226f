//! ReopenContainerLog (containerd's `ReopenContainerLog`): a RUNNING container's log file
//! is reopened, so that log rotation can move the old one away. Any other state is
//! FailedPrecondition naming it, as containerd answers. The reopen changes no record: it
//! takes no guard and persists nothing.

use crate::error::{CommandError, Operation};
use crate::ids::{ContainerId, RequestId};
use crate::io::{BackendError, Call, CallResult, PersistError, Response, Target};
use crate::machine::{Machine, OperationStep};
use crate::status::ContainerState;

/// The step of ReopenContainerLog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReopenStep {
    /// The call reopening the log.
    Reopen { id: ContainerId, req: RequestId },
}

impl OperationStep for ReopenStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        let ReopenStep::Reopen { id, req } = self;
        let reply = result
            .map(|_| Response::Done)
            .map_err(|error| CommandError::Backend {
                op: Operation::ReopenContainerLog,
                target: Target::Container(id),
                error,
            });
        m.reply(req, reply);
        None
    }

    fn on_persisted(self, _m: &mut Machine, _result: Result<(), PersistError>) -> Option<Self> {
        // Its one step waits for a call result.
        Some(self)
    }
}

impl Machine {
    pub(crate) fn reopen_container_log(&mut self, req: RequestId, id: ContainerId) {
        let Some(c) = self.containers.get(&id) else {
            self.reply(req, Err(CommandError::ContainerNotFound { id }));
            return;
        };
        let state = c.state();
        if state != ContainerState::Running {
            self.reply(
                req,
                Err(CommandError::InvalidState {
                    id,
                    op: Operation::ReopenContainerLog,
                    state,
                }),
            );
            return;
        }
        self.call(
            ReopenStep::Reopen {
                id: id.clone(),
                req,
            },
            Call::ReopenLog(id),
        );
    }
}
