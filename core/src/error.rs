//! Errors the core returns to CRI callers. Every message names the ids involved and reads as
//! a log line; [`CommandError::code`] says how the daemon maps it to a gRPC status, and
//! [`BackendErrorKind::code`] is the one mapping of a backend failure to such a code.

use crate::ids::{ContainerId, ExecId, IdError, SandboxId};
use crate::io::{BackendError, BackendErrorKind, PersistError, Target};
use crate::registry::NameError;
use crate::status::ContainerState;

/// How an error maps onto a gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Bad request.
    InvalidArgument,
    /// The object does not exist.
    NotFound,
    /// The id or name is taken.
    AlreadyExists,
    /// The object is in the wrong state for the request.
    FailedPrecondition,
    /// The backend or the disk failed.
    Internal,
    /// Try again later.
    Unavailable,
    /// A backend call did not answer in time (it may still have taken effect).
    DeadlineExceeded,
}

impl BackendErrorKind {
    /// The code a caller gets for a backend failure of this kind: the one mapping, used by
    /// the core's [`CommandError::code`] and by the daemon. NotFound, FailedPrecondition,
    /// Unavailable, DeadlineExceeded and InvalidArgument (an ambiguous image ID prefix) keep
    /// their meaning; AlreadyExists (a conflict inside
    /// containerd, not of the caller's making) and Other are Internal.
    pub fn code(self) -> ErrorCode {
        match self {
            BackendErrorKind::NotFound => ErrorCode::NotFound,
            BackendErrorKind::FailedPrecondition => ErrorCode::FailedPrecondition,
            BackendErrorKind::Unavailable => ErrorCode::Unavailable,
            BackendErrorKind::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            BackendErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
            BackendErrorKind::AlreadyExists | BackendErrorKind::Other => ErrorCode::Internal,
        }
    }
}

/// A state that forbids an operation, named as containerd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guard {
    /// A StartContainer is in flight.
    Starting,
    /// A RemoveContainer (or RemovePodSandbox) is in flight.
    Removing,
    /// Recovery is still cleaning the container's task up, or the container's record is
    /// being rewritten (after recovery, or after a write of it failed).
    Recovering,
    /// Its exit is being recorded.
    Exiting,
    /// An UpdateContainerResources is being recorded.
    Updating,
    /// A previous task of the container is still being deleted.
    CleaningUp,
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Guard::Starting => "starting",
            Guard::Removing => "removing",
            Guard::Recovering => "recovering",
            Guard::Exiting => "its exit is being recorded",
            Guard::Updating => "its resources are being updated",
            Guard::CleaningUp => "its previous task is still being deleted",
        })
    }
}

/// The CRI operation an error is about. Its text is what the operation does, without its
/// object, so that it reads after "cannot": "container c1: cannot start in state
/// CONTAINER_RUNNING", "sandbox p1: cannot run: Tasks.Start p1: …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// RunPodSandbox.
    RunPodSandbox,
    /// StopPodSandbox.
    StopPodSandbox,
    /// RemovePodSandbox.
    RemovePodSandbox,
    /// CreateContainer.
    CreateContainer,
    /// StartContainer.
    StartContainer,
    /// StopContainer.
    StopContainer,
    /// RemoveContainer.
    RemoveContainer,
    /// UpdateContainerResources.
    UpdateContainerResources,
    /// ReopenContainerLog.
    ReopenContainerLog,
    /// ExecSync.
    ExecSync,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::RunPodSandbox => "run",
            Operation::StopPodSandbox | Operation::StopContainer => "stop",
            Operation::RemovePodSandbox | Operation::RemoveContainer => "remove",
            Operation::CreateContainer => "create",
            Operation::StartContainer => "start",
            Operation::UpdateContainerResources => "update its resources",
            Operation::ReopenContainerLog => "reopen its log",
            Operation::ExecSync => "exec",
        })
    }
}

/// Why a CRI command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The CRI field, e.g. `config.metadata.name`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An id is malformed.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// An id prefix matches more than one object.
    #[error("id prefix {prefix:?} is ambiguous: it matches {matches} objects")]
    AmbiguousPrefix {
        /// The prefix.
        prefix: String,
        /// How many ids it matches.
        matches: usize,
    },
    /// Recovery after a restart has not finished: nothing is decided until it has
    /// (containerd's "server is not initialized yet").
    #[error("berth is recovering its state after a restart; try again")]
    Recovering,
    /// No such sandbox.
    #[error("sandbox {id}: not found")]
    SandboxNotFound {
        /// The sandbox asked for.
        id: SandboxId,
    },
    /// No such container.
    #[error("container {id}: not found")]
    ContainerNotFound {
        /// The container asked for.
        id: ContainerId,
    },
    /// The id is already used by another object.
    #[error("id {id} is already in use")]
    IdInUse {
        /// The id.
        id: String,
    },
    /// The reservation name is taken (containerd: "failed to reserve container name").
    #[error("failed to reserve name: {0}")]
    NameReserved(NameError),
    /// The sandbox is not ready for new containers or for starting one.
    #[error("sandbox {id}: not ready")]
    SandboxNotReady {
        /// The sandbox.
        id: SandboxId,
    },
    /// The sandbox is being removed.
    #[error("sandbox {id}: is being removed")]
    SandboxRemoving {
        /// The sandbox.
        id: SandboxId,
    },
    /// The container's state forbids the operation (containerd: "container is in
    /// CONTAINER_EXITED state").
    #[error("container {id}: cannot {op} in state {state}")]
    InvalidState {
        /// The container.
        id: ContainerId,
        /// The operation refused.
        op: Operation,
        /// Its state.
        state: ContainerState,
    },
    /// Another operation holds the container.
    #[error("container {id}: cannot {op} while {guard}")]
    Busy {
        /// The container.
        id: ContainerId,
        /// The operation refused.
        op: Operation,
        /// What holds it.
        guard: Guard,
    },
    /// A backend call failed.
    #[error("{target}: cannot {op}: {error}")]
    Backend {
        /// The CRI operation the call was a step of.
        op: Operation,
        /// The object.
        target: Target,
        /// The backend's error (its verb names the step).
        error: BackendError,
    },
    /// ExecSync's process outlived its timeout: it was killed (containerd: "timeout 1s
    /// exceeded: context deadline exceeded", gRPC DeadlineExceeded).
    #[error(
        "container {id}: exec {exec_id}: timeout {} exceeded: context deadline exceeded",
        show_timeout(*timeout)
    )]
    ExecTimeout {
        /// The container.
        id: ContainerId,
        /// The exec process.
        exec_id: ExecId,
        /// The timeout it outlived.
        timeout: std::time::Duration,
    },
    /// A checkpoint write failed.
    #[error("container {}: cannot {op}: {error}", error.id)]
    Persist {
        /// The CRI operation the write was a step of.
        op: Operation,
        /// The store's error.
        error: PersistError,
    },
}

impl CommandError {
    /// The gRPC code the daemon answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::InvalidArgument { .. }
            | CommandError::InvalidId(_)
            | CommandError::AmbiguousPrefix { .. } => ErrorCode::InvalidArgument,
            CommandError::Recovering => ErrorCode::Unavailable,
            CommandError::SandboxNotFound { .. } | CommandError::ContainerNotFound { .. } => {
                ErrorCode::NotFound
            }
            CommandError::IdInUse { .. } => ErrorCode::AlreadyExists,
            CommandError::NameReserved(_)
            | CommandError::SandboxNotReady { .. }
            | CommandError::SandboxRemoving { .. }
            | CommandError::InvalidState { .. }
            | CommandError::Busy { .. } => ErrorCode::FailedPrecondition,
            CommandError::Backend { error, .. } => error.kind.code(),
            CommandError::Persist { .. } => ErrorCode::Internal,
            CommandError::ExecTimeout { .. } => ErrorCode::DeadlineExceeded,
        }
    }
}

/// A timeout as containerd prints it in ExecSync's error: whole seconds as `1s`, anything
/// else with its fraction.
fn show_timeout(t: std::time::Duration) -> String {
    if t.subsec_nanos() == 0 {
        format!("{}s", t.as_secs())
    } else {
        format!("{t:?}")
    }
}
