//! CreateContainer (docs/containerd-behaviour.md §4.1).
//!
//! validate → reserve name → resolve the image → `Containers.Create` → persist
//! `{CreatedAt: now}` → visible. An image that does not resolve releases the name and
//! answers the backend's error (nothing was created). Rollback after `Containers.Create`, in
//! reverse: delete the containerd record, release the name. If the rollback
//! itself fails the record may live on in containerd; berth then keeps the container as
//! UNKNOWN (visible and removable) instead of hiding it until the next restart.

use crate::error::{CommandError, Operation};
use crate::ids::{ContainerId, RequestId, SandboxId};
use crate::io::{
    BackendError, Call, CallResult, EventKind, PersistAction, PersistError, Response, Target,
};
use crate::machine::{Machine, OperationStep};
use crate::meta::{ContainerConfig, ContainerMeta};
use crate::record::{Container, Creating, SandboxState};
use crate::status::Status;
use crate::validate::{join_log_path, validate_container_config};

/// The steps of CreateContainer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CreateStep {
    /// The image lookup (`Call::ResolveImage`); nothing exists yet.
    Image { id: ContainerId },
    /// `Containers.Create`.
    Record { id: ContainerId },
    /// The first checkpoint write, `{CreatedAt: now}`.
    Persist { id: ContainerId },
    /// Rollback: `Containers.Delete`.
    Rollback {
        id: ContainerId,
        error: CommandError,
    },
    /// Rollback: the checkpoint a failed write may have left is deleted.
    RollbackCheckpoint {
        id: ContainerId,
        error: CommandError,
    },
}

impl OperationStep for CreateStep {
    fn on_call(self, m: &mut Machine, result: Result<CallResult, BackendError>) -> Option<Self> {
        match self {
            CreateStep::Image { id } => m.on_create_image(id, result),
            CreateStep::Record { id } => m.on_create_record(id, result),
            CreateStep::Rollback { id, error } => m.on_create_rollback(id, error, result),
            step @ (CreateStep::Persist { .. } | CreateStep::RollbackCheckpoint { .. }) => {
                return Some(step);
            }
        }
        None
    }

    fn on_persisted(self, m: &mut Machine, result: Result<(), PersistError>) -> Option<Self> {
        match self {
            CreateStep::Persist { id } => m.on_create_persist(id, result),
            CreateStep::RollbackCheckpoint { id, error } => {
                m.on_create_rollback_checkpoint(id, error, result)
            }
            step @ (CreateStep::Image { .. }
            | CreateStep::Record { .. }
            | CreateStep::Rollback { .. }) => return Some(step),
        }
        None
    }
}

impl Machine {
    pub(crate) fn create_container(
        &mut self,
        req: RequestId,
        id: ContainerId,
        sandbox_id: SandboxId,
        config: ContainerConfig,
    ) {
        match self.admit_create(&id, &sandbox_id, config) {
            Ok(meta) => {
                let image = meta.config.image.clone();
                self.creating.insert(
                    id.clone(),
                    Creating {
                        req,
                        meta,
                        created_at: 0,
                        pid: 0,
                    },
                );
                self.call(
                    CreateStep::Image { id: id.clone() },
                    Call::ResolveImage { id, image },
                );
            }
            Err(e) => self.reply(req, Err(e)),
        }
    }

    /// Preconditions in containerd's order (docs/containerd-behaviour.md §4.1), then the name
    /// reservation.
    fn admit_create(
        &mut self,
        id: &ContainerId,
        sandbox_id: &SandboxId,
        config: ContainerConfig,
    ) -> Result<ContainerMeta, CommandError> {
        let sandbox =
            self.sandboxes
                .get(sandbox_id)
                .ok_or_else(|| CommandError::SandboxNotFound {
                    id: sandbox_id.clone(),
                })?;
        if sandbox.removing {
            return Err(CommandError::SandboxRemoving {
                id: sandbox_id.clone(),
            });
        }
        // containerd v2.4 behaviour: a container in a NotReady sandbox could never start.
        if sandbox.state != SandboxState::Ready {
            return Err(CommandError::SandboxNotReady {
                id: sandbox_id.clone(),
            });
        }
        let stop_signal = validate_container_config(&config)?;
        if self.id_in_use(id.as_str()) {
            return Err(CommandError::IdInUse { id: id.to_string() });
        }
        let sandbox_config = &sandbox.meta.config;
        let name = config.reservation_name(sandbox_config);
        let log_path = join_log_path(&sandbox_config.log_directory, &config.log_path);
        self.container_names
            .reserve(&name, id)
            .map_err(CommandError::NameReserved)?;
        Ok(ContainerMeta {
            id: id.clone(),
            sandbox_id: sandbox_id.clone(),
            name,
            config,
            log_path,
            stop_signal,
            image: Default::default(),
        })
    }

    /// The image resolved: it becomes part of the metadata `Containers.Create` stores, so
    /// the record says what the container was created from. A failure (not found, an
    /// ambiguous prefix, containerd unreachable) created nothing: the name is released.
    fn on_create_image(&mut self, id: ContainerId, result: Result<CallResult, BackendError>) {
        let Some(creating) = self.creating.get_mut(&id) else {
            return;
        };
        match result {
            Ok(CallResult::Image(image)) => {
                creating.meta.image = *image;
                let meta = creating.meta.clone();
                self.call(
                    CreateStep::Record { id },
                    Call::CreateContainer(Box::new(meta)),
                );
            }
            other => {
                let error = match other {
                    Err(error) => error,
                    Ok(unexpected) => BackendError::new(
                        crate::io::BackendErrorKind::Other,
                        "Images.List",
                        id.as_str(),
                        format!("unexpected result {unexpected:?}"),
                    ),
                };
                let Some(creating) = self.creating.remove(&id) else {
                    return;
                };
                self.container_names.release_key(&id);
                self.reply(
                    creating.req,
                    Err(CommandError::Backend {
                        op: Operation::CreateContainer,
                        target: Target::Container(id),
                        error,
                    }),
                );
                self.progress_sandbox(&creating.meta.sandbox_id);
            }
        }
    }

    fn on_create_record(&mut self, id: ContainerId, result: Result<CallResult, BackendError>) {
        match result {
            Ok(_) => {
                let now = self.wall();
                let Some(creating) = self.creating.get_mut(&id) else {
                    return;
                };
                creating.created_at = now;
                let status = Status::created(now, creating.meta.config.resources.clone());
                self.persist(
                    CreateStep::Persist { id: id.clone() },
                    &id,
                    PersistAction::Write(status),
                );
            }
            Err(error) => {
                let error = CommandError::Backend {
                    op: Operation::CreateContainer,
                    target: Target::Container(id.clone()),
                    error,
                };
                // The record may exist even though the call failed (reply lost), unless
                // containerd said the id was taken by someone else.
                self.create_rollback(id, error);
            }
        }
    }

    fn on_create_persist(&mut self, id: ContainerId, result: Result<(), PersistError>) {
        match result {
            Ok(()) => {
                let Some(creating) = self.creating.remove(&id) else {
                    return;
                };
                let status =
                    Status::created(creating.created_at, creating.meta.config.resources.clone());
                let sandbox = creating.meta.sandbox_id.clone();
                self.containers
                    .insert(id.clone(), Container::new(creating.meta, status));
                self.event(crate::io::Target::Container(id.clone()), EventKind::Created);
                self.reply(creating.req, Ok(Response::ContainerCreated(id)));
                // A pod stop or removal waited for this create to settle.
                self.progress_sandbox(&sandbox);
            }
            Err(error) => {
                let error = CommandError::Persist {
                    op: Operation::CreateContainer,
                    error,
                };
                self.create_rollback(id, error);
            }
        }
    }

    fn create_rollback(&mut self, id: ContainerId, error: CommandError) {
        self.call(
            CreateStep::Rollback {
                id: id.clone(),
                error,
            },
            Call::DeleteContainer(crate::io::Target::Container(id)),
        );
    }

    fn on_create_rollback(
        &mut self,
        id: ContainerId,
        error: CommandError,
        result: Result<CallResult, BackendError>,
    ) {
        let record_gone = match &result {
            Ok(_) => true,
            Err(e) => e.is_not_found(),
        };
        // A failed checkpoint write may still have landed (a rename before a failed
        // directory fsync).
        let checkpoint_may_exist = matches!(error, CommandError::Persist { .. });
        if record_gone && checkpoint_may_exist {
            // Delete it before the id is free again: a later create of the same id must not
            // meet it (a recovery would take it for the new container's record).
            self.persist(
                CreateStep::RollbackCheckpoint {
                    id: id.clone(),
                    error,
                },
                &id,
                PersistAction::Delete,
            );
            return;
        }
        let Some(creating) = self.creating.remove(&id) else {
            return;
        };
        if record_gone {
            self.container_names.release_key(&id);
            self.reply(creating.req, Err(error));
            self.progress_sandbox(&creating.meta.sandbox_id);
            return;
        }
        // The containerd record may survive: keep the container visible as UNKNOWN (what the
        // next recovery would find) so it can be removed, and keep its name reserved for it.
        let status = Status::unknown(self.wall());
        self.containers
            .insert(id.clone(), Container::new(creating.meta, status));
        self.reply(creating.req, Err(error));
        self.progress_sandbox_of(&id);
        if checkpoint_may_exist {
            // The failed write may have landed: put UNKNOWN on disk too, or the next
            // recovery would find the container CREATED.
            self.rewrite_record(&id);
        }
    }

    /// The checkpoint a failed create may have left is deleted (or, if that failed too, left
    /// to the next recovery's orphan sweep, which finds no containerd record for it).
    fn on_create_rollback_checkpoint(
        &mut self,
        id: ContainerId,
        error: CommandError,
        _result: Result<(), PersistError>,
    ) {
        let Some(creating) = self.creating.remove(&id) else {
            return;
        };
        self.container_names.release_key(&id);
        self.reply(creating.req, Err(error));
        self.progress_sandbox(&creating.meta.sandbox_id);
    }
}
