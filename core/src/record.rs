//! The records the machine keeps of containers and sandboxes, the lanes of background work
//! on them, and what several operations share: predicates on a container (what refuses an
//! operation, and why) and the rewrite of a record after a failed write.

use std::time::Duration;

use crate::error::{CommandError, Guard, Operation};
use crate::ids::{ContainerId, OpId, RequestId, SandboxId};
use crate::io::Target;
use crate::machine::Machine;
use crate::meta::{ContainerMeta, SandboxMeta};
use crate::status::{ContainerState, ExitStatus, Status};

/// Sandbox state (docs/containerd-behaviour.md §6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SandboxState {
    /// The pause task runs.
    Ready,
    /// The pause task does not run.
    NotReady,
    /// Could not be established (reported to CRI as NOTREADY).
    Unknown,
}

/// A lane of background work on one object: idle, one call in flight, or waiting to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lane {
    #[default]
    Idle,
    InFlight(OpId),
    Backoff {
        attempt: u32,
    },
}

impl Lane {
    pub(crate) fn is_idle(self) -> bool {
        self == Lane::Idle
    }
}

/// Who waits for a container's exit to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// A StopContainer request.
    Stop(RequestId),
    /// A RemoveContainer request (or an internal one, from RemovePodSandbox).
    Remove(Option<RequestId>),
}

/// An exit being recorded: persisted first, then the task deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingExit {
    pub exit: ExitStatus,
    pub lane: Lane,
}

/// A container the machine knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub(crate) meta: ContainerMeta,
    /// The durable status (what the last successful persist wrote), except while
    /// recovery's write is pending (`dirty`).
    pub(crate) status: Status,
    pub(crate) guard: Option<Guard>,
    pub(crate) dirty: Lane,
    pub(crate) stop_signaled: bool,
    /// The stop signal's `Tasks.Kill` is in flight: once it returns, SIGKILL follows after
    /// this (the shortest grace period asked for meanwhile).
    pub(crate) escalate_after: Option<Duration>,
    pub(crate) stop_after_start: Option<Duration>,
    /// A SIGKILL is in flight.
    pub(crate) killing: bool,
    pub(crate) watch: Lane,
    pub(crate) exit: Option<PendingExit>,
    pub(crate) cleanup: Lane,
    pub(crate) waiters: Vec<Waiter>,
    /// A removal waiting for the background task delete in flight (two deletes of one task
    /// at once make the loser fail with "ttrpc: closed" when the shim goes away).
    pub(crate) remove_after_cleanup: Option<Option<RequestId>>,
    /// Recovery found this container's task running under a CREATED record (a start cut
    /// short by a crash, never acknowledged) and is making RUNNING durable: the record on
    /// disk, to go back to if that write fails.
    pub(crate) adopting: Option<Status>,
}

impl Container {
    pub(crate) fn new(meta: ContainerMeta, status: Status) -> Self {
        Container {
            meta,
            status,
            guard: None,
            dirty: Lane::Idle,
            stop_signaled: false,
            escalate_after: None,
            stop_after_start: None,
            killing: false,
            watch: Lane::Idle,
            exit: None,
            cleanup: Lane::Idle,
            waiters: Vec::new(),
            remove_after_cleanup: None,
            adopting: None,
        }
    }

    /// The container's metadata.
    pub fn meta(&self) -> &ContainerMeta {
        &self.meta
    }

    /// Its status record.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Derived CRI state.
    pub fn state(&self) -> ContainerState {
        self.status.state()
    }

    /// The guard held by an in-flight operation, if any.
    pub fn guard(&self) -> Option<Guard> {
        self.guard
    }

    /// True while an exit is being recorded (persisted, then the task deleted): the
    /// container is on its way to EXITED.
    pub fn is_exiting(&self) -> bool {
        self.exit.is_some()
    }

    /// False while recovery's rewrite of this container's record is not yet durable (the
    /// disk failed and the write is being retried): a crash now would bring back the
    /// previous record.
    pub fn is_durable(&self) -> bool {
        self.dirty.is_idle()
    }

    /// True while a RemoveContainer is in flight (CRI verbose info `removing`).
    pub fn is_removing(&self) -> bool {
        self.guard == Some(Guard::Removing)
    }

    /// What holds the container against an operation that writes its record: a guard of
    /// an operation in flight, an exit being recorded (`Exiting`), or a rewrite of its
    /// record that is not durable yet (`Recovering`). Such an operation waits (busy,
    /// retryable) so that no two writes of one record ever race.
    pub(crate) fn busy_guard(&self) -> Option<Guard> {
        self.guard
            .or(self.exit.map(|_| Guard::Exiting))
            .or((!self.dirty.is_idle()).then_some(Guard::Recovering))
    }

    /// Why StartContainer refuses now, in containerd's order (docs/containerd-behaviour.md §4.2
    /// step 2): a state
    /// other than CREATED, then whatever holds the container. A stale task still being
    /// deleted (`CleaningUp`) would collide with (or, deleted late, kill) the new one.
    pub(crate) fn can_start(&self) -> Result<(), CommandError> {
        let id = &self.meta.id;
        let state = self.state();
        if state != ContainerState::Created {
            return Err(CommandError::InvalidState {
                id: id.clone(),
                op: Operation::StartContainer,
                state,
            });
        }
        let guard = self
            .guard
            .or(self.exit.map(|_| Guard::Exiting))
            .or(self.task_lingers().then_some(Guard::CleaningUp));
        match guard {
            Some(guard) => Err(CommandError::Busy {
                id: id.clone(),
                op: Operation::StartContainer,
                guard,
            }),
            None => Ok(()),
        }
    }

    /// Why UpdateContainerResources refuses now: a state other than RUNNING (limits for its
    /// task) or CREATED (limits for its record), then [`Container::busy_guard`].
    pub(crate) fn can_update(&self) -> Result<(), CommandError> {
        let id = &self.meta.id;
        let op = Operation::UpdateContainerResources;
        let state = self.state();
        if !matches!(state, ContainerState::Running | ContainerState::Created) {
            return Err(CommandError::InvalidState {
                id: id.clone(),
                op,
                state,
            });
        }
        match self.busy_guard() {
            Some(guard) => Err(CommandError::Busy {
                id: id.clone(),
                op,
                guard,
            }),
            None => Ok(()),
        }
    }

    /// Why a removal cannot begin now: another operation holds the container (a second
    /// removal included).
    pub(crate) fn can_remove(&self) -> Result<(), CommandError> {
        match self.guard {
            Some(guard) => Err(CommandError::Busy {
                id: self.meta.id.clone(),
                op: Operation::RemoveContainer,
                guard,
            }),
            None => Ok(()),
        }
    }

    /// A StopContainer has nothing to stop: no exit being recorded, no start in flight, no
    /// task lingering, CREATED or EXITED. It is answered at once (see
    /// `Machine::answer_idle_stop`).
    pub(crate) fn nothing_to_stop(&self) -> bool {
        self.exit.is_none()
            && self.guard != Some(Guard::Starting)
            && !self.task_lingers()
            && matches!(
                self.state(),
                ContainerState::Exited | ContainerState::Created
            )
    }

    /// The record is durable and recovery does not hold the container: an idle stop may be
    /// acknowledged (a crash cannot bring back a record that says otherwise).
    pub(crate) fn is_settled(&self) -> bool {
        self.dirty.is_idle() && self.guard != Some(Guard::Recovering)
    }

    /// Its exit is recorded or being recorded: no process of it runs, or will once the
    /// exit is durable.
    pub(crate) fn is_finished(&self) -> bool {
        self.exit.is_some() || self.state() == ContainerState::Exited
    }

    /// A task delete of the background cleanup is in flight or waits to be retried.
    pub(crate) fn task_lingers(&self) -> bool {
        !self.cleanup.is_idle()
    }

    /// An exit arrived while another write of the record was in flight and waits for it to
    /// finish (its own write not yet started).
    pub(crate) fn has_deferred_exit(&self) -> bool {
        self.exit.is_some_and(|p| p.lane == Lane::Idle)
    }

    /// An UNKNOWN container nothing else holds: recovery may observe its task again and
    /// decide anew.
    pub(crate) fn awaits_observation(&self) -> bool {
        self.state() == ContainerState::Unknown && self.guard.is_none() && self.exit.is_none()
    }

    pub(crate) fn target(&self) -> Target {
        Target::Container(self.meta.id.clone())
    }
}

/// A sandbox the machine knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub(crate) meta: SandboxMeta,
    pub(crate) state: SandboxState,
    pub(crate) pid: u32,
    pub(crate) exit: Option<ExitStatus>,
    pub(crate) removing: bool,
    pub(crate) stop_waiters: Vec<RequestId>,
    pub(crate) remove_waiters: Vec<RequestId>,
    pub(crate) killing: bool,
    pub(crate) watch: Lane,
    pub(crate) cleanup: Lane,
    pub(crate) deleting: bool,
}

impl Sandbox {
    pub(crate) fn new(meta: SandboxMeta, state: SandboxState, pid: u32) -> Self {
        Sandbox {
            meta,
            state,
            pid,
            exit: None,
            removing: false,
            stop_waiters: Vec::new(),
            remove_waiters: Vec::new(),
            killing: false,
            watch: Lane::Idle,
            cleanup: Lane::Idle,
            deleting: false,
        }
    }

    /// Its metadata.
    pub fn meta(&self) -> &SandboxMeta {
        &self.meta
    }

    /// Its state.
    pub fn state(&self) -> SandboxState {
        self.state
    }

    /// Pid of the pause process while Ready; 0 otherwise.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the pause task ended, if it did.
    pub fn exit(&self) -> Option<ExitStatus> {
        self.exit
    }

    pub(crate) fn target(&self) -> Target {
        Target::Sandbox(self.meta.id.clone())
    }
}

/// An object being created: its name and id are held, it is not yet visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creating<M> {
    pub req: RequestId,
    pub meta: M,
    /// The creation time recorded once the containerd record exists.
    pub created_at: i64,
    /// Sandboxes: the pause task's pid once created.
    pub pid: u32,
}

impl Machine {
    /// True if `id` names a container or sandbox that exists or is being created.
    pub(crate) fn id_in_use(&self, id: &str) -> bool {
        let as_container = ContainerId::new(id).ok();
        let as_sandbox = SandboxId::new(id).ok();
        as_container
            .is_some_and(|c| self.containers.contains_key(&c) || self.creating.contains_key(&c))
            || as_sandbox.is_some_and(|s| {
                self.sandboxes.contains_key(&s) || self.creating_sandboxes.contains_key(&s)
            })
    }

    /// A write of the container's record failed: the disk may hold the previous record or
    /// the one that failed (a rename can land before its directory fsync fails). The record
    /// memory holds is rewritten, retried with backoff, until durable; meanwhile the
    /// container is held as during recovery's rewrite (start, remove and update answer
    /// busy; an exit is kept and its write, carrying the whole record, replaces the rewrite).
    /// A container held by another operation (a removal, which deletes the record) is left
    /// to it.
    pub(crate) fn rewrite_record(&mut self, id: &ContainerId) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.busy_guard().is_some() {
            return;
        }
        self.set_guard(id, Some(Guard::Recovering));
        self.recover_persist(id, 0);
    }

    pub(crate) fn set_guard(&mut self, id: &ContainerId, guard: Option<Guard>) {
        if let Some(c) = self.containers.get_mut(id) {
            c.guard = guard;
        }
    }
}
