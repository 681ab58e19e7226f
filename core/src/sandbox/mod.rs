//! RunPodSandbox, StopPodSandbox, RemovePodSandbox (docs/containerd-behaviour.md §6.8 for the
//! states).
//!
//! A sandbox is its pause container: `Containers.Create` → `Tasks.Create` → `Tasks.Start`
//! → Ready, watched like a container. Its state is never checkpointed; recovery re-derives
//! it from the pause task. Stop: every container of the pod is force-stopped (exits made
//! durable), then the pause task is killed → NotReady. Remove: stop, remove every container,
//! delete the pause task and record, release the name.
//!
//! Each operation lives in its own file (`run.rs`, `stop.rs`, `remove.rs`) with its steps;
//! this file holds what they share: the pause task's exit, the driver of a pending stop or
//! removal ([`Machine::progress_sandbox`], called after every change of a container of the
//! pod), and the failure of a pending stop or removal.

mod remove;
mod run;
mod stop;

pub(crate) use remove::RemoveSandboxStep;
pub(crate) use run::RunSandboxStep;
pub(crate) use stop::StopSandboxStep;

use std::time::Duration;

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, RequestId, SandboxId};
use crate::io::{BackendError, EventKind, Response, Target};
use crate::machine::Machine;
use crate::record::SandboxState;
use crate::status::{ContainerState, ExitStatus};

impl Machine {
    /// A backend error of a pod operation, naming the sandbox.
    fn sandbox_error(op: Operation, id: &SandboxId, error: BackendError) -> CommandError {
        CommandError::Backend {
            op,
            target: Target::Sandbox(id.clone()),
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
        #[cfg(feature = "planted-bugs")]
        let early = !s.removing
            && self
                .config
                .has_bug(crate::config::PlantedBug::StopPodRepliesBeforeExits);
        #[cfg(not(feature = "planted-bugs"))]
        let early = false;
        let mut busy = false;
        for cid in &members {
            let Some(c) = self.containers.get_mut(cid) else {
                continue;
            };
            if c.guard == Some(Guard::Starting) {
                c.stop_after_start = Some(Duration::ZERO);
                busy = true;
            } else if c.exit.is_some() || c.guard == Some(Guard::Recovering) {
                busy |= !early;
            } else if matches!(c.state(), ContainerState::Running | ContainerState::Unknown) {
                busy |= !early;
                self.begin_stop(cid, Duration::ZERO);
            } else if c.task_lingers() {
                // A task a failed start's rollback could not delete may still run (CREATED,
                // or EXITED "StartError"): stopped once the background delete (with kill)
                // is done, as StopContainer waits for it (sim seed 1001659).
                busy = true;
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
        // 4. the pause task and record deleted (after any background delete of the pause
        // task: two deletes at once fail one of them when the shim exits).
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
