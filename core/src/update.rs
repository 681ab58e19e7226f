//! UpdateContainerResources: the new limits are recorded durably (containerd's
//! `UpdateSync`, spec §3) after the driver applied them to the task or record.
//!
//! While the write is in flight the container holds the `Updating` guard: starts and
//! removals are refused (retryable), and an exit that arrives is kept and recorded as soon
//! as the update's write has finished, so no two writes of one record ever race.

use crate::error::{CommandError, Guard};
use crate::ids::{ContainerId, RequestId};
use crate::io::{BackendError, CallResult, PersistAction, PersistError, Response};
use crate::machine::{Machine, OperationStep};
use crate::status::{Resources, Status};

/// The steps of UpdateContainerResources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpdateStep {
    /// The write of the new limits.
    Persist {
        id: ContainerId,
        req: RequestId,
        status: Status,
    },
}

impl OperationStep for UpdateStep {
    fn on_call(self, _m: &mut Machine, _result: Result<CallResult, BackendError>) -> Option<Self> {
        // Every step of it waits for a persist outcome.
        Some(self)
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            UpdateStep::Persist { id, req, status } => m.on_update_persist(id, req, status, result),
        }
        None
    }
}

impl Machine {
    pub(crate) fn update_resources(
        &mut self,
        req: RequestId,
        id: ContainerId,
        resources: Resources,
    ) {
        let Some(c) = self.containers.get_mut(&id) else {
            self.reply(req, Err(CommandError::ContainerNotFound { id }));
            return;
        };
        if let Err(e) = c.can_update() {
            self.reply(req, Err(e));
            return;
        }
        c.guard = Some(Guard::Updating);
        let mut status = c.status.clone();
        status.resources = Some(resources);
        self.persist(
            UpdateStep::Persist {
                id: id.clone(),
                req,
                status: status.clone(),
            },
            &id,
            PersistAction::Write(status),
        );
    }

    fn on_update_persist(
        &mut self,
        id: ContainerId,
        req: RequestId,
        status: Status,
        result: Result<(), PersistError>,
    ) {
        let Some(c) = self.containers.get_mut(&id) else {
            self.reply(req, Ok(Response::Done));
            return;
        };
        c.guard = None;
        let deferred_exit = c.has_deferred_exit();
        let failed = result.is_err();
        match result {
            Ok(()) => {
                // Nothing else wrote this record meanwhile (the guard kept them out).
                c.status = status;
                self.reply(req, Ok(Response::Done));
            }
            Err(error) => self.reply(
                req,
                Err(CommandError::Persist {
                    op: "update container resources",
                    error,
                }),
            ),
        }
        if deferred_exit {
            // The exit's write carries the whole record, covering a failed write too.
            self.persist_exit(id.clone(), 0);
        } else if failed {
            self.rewrite_record(&id);
        }
        self.progress_sandbox_of(&id);
    }
}
