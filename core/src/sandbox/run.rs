//! RunPodSandbox: the pause container's `Containers.Create` → `Tasks.Create` →
//! `Tasks.Start` → Ready, watched like a container. A failed step is rolled back in
//! reverse (the pause task deleted, then the record, the name released); a rollback that
//! cannot finish leaves the sandbox visible so it can be removed.

use crate::error::{CommandError, Operation};
use crate::ids::{RequestId, SandboxId};
use crate::io::{BackendError, Call, CallResult, EventKind, PersistError, Response, Target};
use crate::machine::{Machine, OperationStep};
use crate::meta::{SandboxConfig, SandboxMeta};
use crate::record::{Creating, Sandbox, SandboxState};
use crate::validate::validate_sandbox_config;

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
                let error = Self::sandbox_error(Operation::RunPodSandbox, &id, e);
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
                let error = Self::sandbox_error(Operation::RunPodSandbox, &id, e);
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
                let error = Self::sandbox_error(Operation::RunPodSandbox, &id, e);
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
