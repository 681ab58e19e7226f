//! UpdateContainerResources (containerd's `UpdateContainerResources`, then `UpdateSync`;
//! docs/containerd-behaviour.md §3): the new limits are applied to containerd first (the
//! task of a RUNNING container, `Tasks.Update`; the record of a CREATED one, its OCI spec),
//! then recorded durably, then acknowledged.
//!
//! The container holds the `Updating` guard from the request to the end of the write, and
//! which call to make is decided under it: starts and removals are refused (retryable), and
//! an exit that arrives is kept and recorded once the update is done, so the state the call
//! was chosen for holds until then and no two writes of one record ever race. A failed
//! call releases the guard and records nothing.

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, RequestId};
use crate::io::{
    BackendError, Call, CallResult, PersistAction, PersistError, ResourcesOf, Response, Target,
};
use crate::machine::{Machine, OperationStep};
use crate::status::{ContainerState, Resources, Status};

/// The steps of UpdateContainerResources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpdateStep {
    /// The call applying the new limits to the task or the record.
    Apply {
        id: ContainerId,
        req: RequestId,
        resources: Box<Resources>,
    },
    /// The write of the new limits.
    Persist {
        id: ContainerId,
        req: RequestId,
        status: Status,
    },
}

impl OperationStep for UpdateStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            UpdateStep::Apply { id, req, resources } => {
                m.on_update_applied(id, req, *resources, result);
                None
            }
            persist @ UpdateStep::Persist { .. } => Some(persist),
        }
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            UpdateStep::Persist { id, req, status } => {
                m.on_update_persist(id, req, status, result);
                None
            }
            apply @ UpdateStep::Apply { .. } => Some(apply),
        }
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
        // Decided under the guard: the state cannot leave RUNNING or CREATED before the
        // update is done (can_update admitted only those two).
        let of = match c.state() {
            ContainerState::Running => ResourcesOf::Task,
            _ => ResourcesOf::Record,
        };
        let resources = Box::new(resources);
        self.call(
            UpdateStep::Apply {
                id: id.clone(),
                req,
                resources: resources.clone(),
            },
            Call::UpdateResources { id, of, resources },
        );
    }

    fn on_update_applied(
        &mut self,
        id: ContainerId,
        req: RequestId,
        resources: Resources,
        result: Result<CallResult, BackendError>,
    ) {
        let Some(c) = self.containers.get_mut(&id) else {
            self.reply(req, Err(CommandError::ContainerNotFound { id }));
            return;
        };
        match result {
            Ok(_) => {
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
            Err(error) => {
                // Nothing was recorded: the container is as before (containerd may have
                // applied the limits anyway if only the reply was lost; the caller retries).
                c.guard = None;
                let deferred_exit = c.has_deferred_exit();
                self.reply(
                    req,
                    Err(CommandError::Backend {
                        op: Operation::UpdateContainerResources,
                        target: Target::Container(id.clone()),
                        error,
                    }),
                );
                if deferred_exit {
                    self.persist_exit(id.clone(), 0);
                }
                self.progress_sandbox_of(&id);
            }
        }
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
                    op: Operation::UpdateContainerResources,
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
