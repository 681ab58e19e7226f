//! The core's inputs and outputs: time, backend calls and their results, checkpoint writes,
//! CRI commands and replies, events.

use std::fmt;
use std::time::Duration;

use crate::error::CommandError;
use crate::ids::{ContainerId, ExecId, OpId, RequestId, SandboxId};
use crate::image::ImageRef;
use crate::meta::{ContainerConfig, ContainerMeta, SandboxConfig, SandboxMeta};
use crate::status::{ExitStatus, Resources, Status};

/// The current time, given by the driver with every input. The core never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, unix nanoseconds: the source of every CRI timestamp.
    pub wall: i64,
    /// Monotonic time since the driver's epoch: the base of every timer deadline.
    pub mono: Duration,
}

impl Now {
    /// A time whose wall clock is `wall_base + mono` (handy for tests and simulations).
    pub fn at(wall_base: i64, mono: Duration) -> Now {
        Now {
            wall: wall_base.saturating_add(i64::try_from(mono.as_nanos()).unwrap_or(i64::MAX)),
            mono,
        }
    }
}

/// The containerd object a task call is about: a CRI container, or a sandbox's pause
/// container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A CRI container.
    Container(ContainerId),
    /// A pod sandbox (its pause container).
    Sandbox(SandboxId),
}

impl Target {
    /// The containerd id.
    pub fn as_str(&self) -> &str {
        match self {
            Target::Container(id) => id.as_str(),
            Target::Sandbox(id) => id.as_str(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Container(id) => write!(f, "container {id}"),
            Target::Sandbox(id) => write!(f, "sandbox {id}"),
        }
    }
}

/// A backend call the core asks the driver to run. Names follow containerd's verbs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Resolve a CRI container's image reference in containerd's image store (by ID, name
    /// or unique ID prefix, [`crate::resolve_image`]); nothing changes. NotFound naming the
    /// image when none matches, InvalidArgument for an ambiguous ID prefix.
    /// Result: [`CallResult::Image`].
    ResolveImage {
        /// The container being created.
        id: ContainerId,
        /// The reference as CRI gave it (`config.image.image`).
        image: String,
    },
    /// Create the containerd container record (with its rootfs snapshot) of a CRI container.
    /// Result: [`CallResult::Done`].
    CreateContainer(Box<ContainerMeta>),
    /// Create the containerd container record of a sandbox's pause container.
    /// Result: [`CallResult::Done`].
    CreateSandbox(Box<SandboxMeta>),
    /// Delete a containerd container record and its snapshot. NotFound means already gone.
    /// Result: [`CallResult::Done`].
    DeleteContainer(Target),
    /// Create the task (shim + `runc create`), with stdout/stderr to the container's log.
    /// Result: [`CallResult::Pid`].
    CreateTask(Target),
    /// Start a created task. Result: [`CallResult::Pid`].
    StartTask(Target),
    /// Wait for the task to exit. Long-lived: runs without a deadline. A broken stream
    /// (containerd restarting) is an error, never an exit. Result: [`CallResult::Exited`].
    WaitTask(Target),
    /// Send a signal to the task's init process. Result: [`CallResult::Done`].
    KillTask {
        /// Whose task.
        target: Target,
        /// Signal number.
        signal: i32,
    },
    /// Delete the task; with `kill`, SIGKILL it first and wait for it to exit (containerd's
    /// `WithProcessKill`). NotFound means already gone. Result: [`CallResult::Done`].
    DeleteTask {
        /// Whose task.
        target: Target,
        /// Kill a live task first.
        kill: bool,
    },
    /// Observe the task. Result: [`CallResult::Task`] (NotFound is a state there, not an
    /// error).
    TaskStatus(Target),
    /// Apply new resource limits to a container: to its running task (`Tasks.Update`, the
    /// cgroup changes at once) or to its record (`Containers.Update` of the OCI spec, so a
    /// task created later starts with them). Result: [`CallResult::Done`].
    UpdateResources {
        /// Whose limits.
        id: ContainerId,
        /// The task or the record.
        of: ResourcesOf,
        /// The new limits.
        resources: Box<Resources>,
    },
    /// Reopen a running container's log file (CRI ReopenContainerLog, after log rotation
    /// moved it): what the container writes next goes to a file at its log path.
    /// FailedPrecondition when no log of it is being written. Result: [`CallResult::Done`].
    ReopenLog(ContainerId),
    /// Create and start an exec process in the container's running task (`Tasks.Exec`, then
    /// `Tasks.Start` of the exec), its stdout and stderr captured. Result:
    /// [`CallResult::Pid`].
    StartExec {
        /// Whose task.
        id: ContainerId,
        /// The process.
        exec: Box<ExecSpec>,
    },
    /// Wait for an exec process to exit and for its output to be drained (with a bound: a
    /// background child holding the pipe open cannot hold the wait). Long-lived, like
    /// [`Call::WaitTask`]; a broken stream is an error. Result: [`CallResult::ExecExited`].
    WaitExec {
        /// Whose task.
        id: ContainerId,
        /// Which exec process.
        exec_id: ExecId,
    },
    /// Send a signal to an exec process. NotFound if it is gone. Result:
    /// [`CallResult::Done`].
    KillExec {
        /// Whose task.
        id: ContainerId,
        /// Which exec process.
        exec_id: ExecId,
        /// Signal number.
        signal: i32,
    },
    /// Delete an exec process (`Tasks.DeleteProcess`), killing a live one first. NotFound
    /// means already gone. Result: [`CallResult::Done`].
    DeleteExec {
        /// Whose task.
        id: ContainerId,
        /// Which exec process.
        exec_id: ExecId,
    },
    /// Kill and delete every exec process of berth's ([`ExecId::is_berths`]) in the
    /// container's task (after a restart: an exec of a crashed berth must not live on).
    /// `Ok(0)` when there is no task. Result: [`CallResult::Swept`].
    SweepExecs(ContainerId),
}

/// An exec process to start in a container's running task (CRI ExecSync): the container's
/// own process settings (user, groups, env, cwd, capabilities, seccomp, no_new_privs) with
/// `cmd` as its arguments, no terminal, no stdin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecSpec {
    /// Its id (berth's: [`crate::EXEC_ID_PREFIX`]).
    pub exec_id: crate::ExecId,
    /// The command and its arguments; never empty.
    pub cmd: Vec<String>,
    /// At most this many bytes of stdout, and as many of stderr, are kept; the rest is read
    /// and dropped (containerd keeps 16 MiB of each).
    pub output_cap: usize,
}

/// How an exec process ended, with what it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecOutput {
    /// Its exit code (128 + signal for a process killed by a signal).
    pub exit_code: i32,
    /// What it wrote to stdout, at most [`ExecSpec::output_cap`] bytes.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr, at most [`ExecSpec::output_cap`] bytes.
    pub stderr: Vec<u8>,
}

/// Where [`Call::UpdateResources`] applies the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourcesOf {
    /// The running task (containerd `Tasks.Update`).
    Task,
    /// The container record's OCI spec (containerd `Containers.Update`).
    Record,
}

impl Call {
    /// The object the call is about.
    pub fn target(&self) -> Target {
        match self {
            Call::CreateContainer(m) => Target::Container(m.id.clone()),
            Call::CreateSandbox(m) => Target::Sandbox(m.id.clone()),
            Call::DeleteContainer(t)
            | Call::CreateTask(t)
            | Call::StartTask(t)
            | Call::WaitTask(t)
            | Call::TaskStatus(t)
            | Call::KillTask { target: t, .. }
            | Call::DeleteTask { target: t, .. } => t.clone(),
            Call::UpdateResources { id, .. }
            | Call::ReopenLog(id)
            | Call::ResolveImage { id, .. }
            | Call::StartExec { id, .. }
            | Call::WaitExec { id, .. }
            | Call::KillExec { id, .. }
            | Call::DeleteExec { id, .. }
            | Call::SweepExecs(id) => Target::Container(id.clone()),
        }
    }

    /// containerd's name for the call, for logs and transcripts.
    pub fn verb(&self) -> &'static str {
        match self {
            // The image store's names and the IDs they point at.
            Call::ResolveImage { .. } => "Images.List",
            Call::CreateContainer(_) | Call::CreateSandbox(_) => "Containers.Create",
            Call::DeleteContainer(_) => "Containers.Delete",
            Call::CreateTask(_) => "Tasks.Create",
            Call::StartTask(_) => "Tasks.Start",
            Call::WaitTask(_) => "Tasks.Wait",
            Call::KillTask { .. } => "Tasks.Kill",
            Call::DeleteTask { .. } => "Tasks.Delete",
            Call::TaskStatus(_) => "Tasks.Get",
            Call::UpdateResources {
                of: ResourcesOf::Task,
                ..
            } => "Tasks.Update",
            Call::UpdateResources {
                of: ResourcesOf::Record,
                ..
            } => "Containers.Update",
            // berth's own log copier, not a containerd service.
            Call::ReopenLog(_) => "Logs.Reopen",
            Call::StartExec { .. } => "Tasks.Exec",
            Call::WaitExec { .. } => "Tasks.Wait",
            Call::KillExec { .. } => "Tasks.Kill",
            Call::DeleteExec { .. } => "Tasks.DeleteProcess",
            Call::SweepExecs(_) => "Tasks.ListPids",
        }
    }

    /// True for the calls that have no deadline ([`Call::WaitTask`], [`Call::WaitExec`]).
    pub fn is_long_lived(&self) -> bool {
        matches!(self, Call::WaitTask(_) | Call::WaitExec { .. })
    }
}

/// What a task looks like to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// No task (never created, deleted, or its shim died).
    NotFound,
    /// Created, not started (`runc init` waiting).
    Created {
        /// Pid of `runc init`.
        pid: u32,
    },
    /// Running.
    Running {
        /// Pid of the init process.
        pid: u32,
    },
    /// Exited; the shim keeps the status until the task is deleted.
    Stopped(ExitStatus),
    /// Paused (or pausing, or containerd's "unknown" task status).
    Paused,
}

/// The successful result of a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallResult {
    /// The call took effect.
    Done,
    /// The task's pid (CreateTask, StartTask).
    Pid(u32),
    /// The task exited (WaitTask).
    Exited(ExitStatus),
    /// The task's state (TaskStatus).
    Task(TaskState),
    /// What an image reference resolved to (ResolveImage).
    Image(Box<ImageRef>),
    /// The exec process exited and its output was drained (WaitExec).
    ExecExited(Box<ExecOutput>),
    /// How many exec processes were killed and deleted (SweepExecs).
    Swept(u32),
}

/// The kind of a backend failure, the only thing the core branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendErrorKind {
    /// The object does not exist.
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The object is not in a state that allows the call.
    FailedPrecondition,
    /// The backend cannot be reached (containerd restarting, connection lost).
    Unavailable,
    /// The call did not finish within its deadline.
    DeadlineExceeded,
    /// The request names something ambiguously (an image ID prefix matching several
    /// images); nothing happened.
    InvalidArgument,
    /// Anything else.
    Other,
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendErrorKind::NotFound => "not found",
            BackendErrorKind::AlreadyExists => "already exists",
            BackendErrorKind::FailedPrecondition => "failed precondition",
            BackendErrorKind::Unavailable => "unavailable",
            BackendErrorKind::DeadlineExceeded => "deadline exceeded",
            BackendErrorKind::InvalidArgument => "invalid argument",
            BackendErrorKind::Other => "error",
        })
    }
}

/// A backend failure as plain data: a kind, the object involved and the backend's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{verb} {target}: {kind}: {message}")]
pub struct BackendError {
    /// What failed.
    pub kind: BackendErrorKind,
    /// The call's verb (e.g. "Tasks.Start").
    pub verb: String,
    /// The containerd id involved.
    pub target: String,
    /// The backend's own words.
    pub message: String,
}

impl BackendError {
    /// Builds an error.
    pub fn new(
        kind: BackendErrorKind,
        verb: impl Into<String>,
        target: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        BackendError {
            kind,
            verb: verb.into(),
            target: target.into(),
            message: message.into(),
        }
    }

    /// True for [`BackendErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }
}

/// Why a checkpoint write or delete failed, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint of container {id}: {message}")]
pub struct PersistError {
    /// The container.
    pub id: ContainerId,
    /// What the store said (ENOSPC, EROFS, fsync failure...).
    pub message: String,
}

/// What to do to a container's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistAction {
    /// Write this record durably (replace the old one atomically).
    Write(Status),
    /// Delete the checkpoint (and the container's state directory).
    Delete,
}

/// An effect the driver must carry out, in the order polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run a backend call; feed its result to [`crate::Machine::handle_call`].
    Call {
        /// Echoed back with the result.
        op: OpId,
        /// What to run.
        call: Call,
    },
    /// Persist a container's checkpoint; feed the result to
    /// [`crate::Machine::handle_persisted`]. The core emits nothing further for that
    /// container's operation until then, so durability precedes every later effect.
    Persist {
        /// Echoed back with the result.
        op: OpId,
        /// Whose checkpoint.
        id: ContainerId,
        /// Write or delete.
        action: PersistAction,
    },
    /// Answer a CRI request.
    Reply {
        /// The request.
        req: RequestId,
        /// The answer.
        result: Result<Response, CommandError>,
    },
}

/// A CRI command that changes state. Reads (status, list) are plain getters on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RunPodSandbox with a new id chosen by the driver.
    RunPodSandbox {
        /// The new sandbox's id.
        id: SandboxId,
        /// Its config.
        config: Box<SandboxConfig>,
    },
    /// StopPodSandbox: stop every container of the pod, then the pause task.
    StopPodSandbox(SandboxId),
    /// RemovePodSandbox: stop, remove every container, then the sandbox.
    RemovePodSandbox(SandboxId),
    /// CreateContainer with a new id chosen by the driver.
    CreateContainer {
        /// The new container's id.
        id: ContainerId,
        /// Its sandbox.
        sandbox: SandboxId,
        /// Its config.
        config: Box<ContainerConfig>,
    },
    /// StartContainer.
    StartContainer(ContainerId),
    /// StopContainer: the stop signal, then SIGKILL after `timeout` (zero: SIGKILL at once).
    StopContainer {
        /// Which container.
        id: ContainerId,
        /// Grace period.
        timeout: Duration,
    },
    /// RemoveContainer (force-stops a running or unknown container first).
    RemoveContainer(ContainerId),
    /// UpdateContainerResources: apply new limits to the task of a RUNNING container or the
    /// record of a CREATED one ([`Call::UpdateResources`]), then record them durably.
    UpdateContainerResources {
        /// Which container.
        id: ContainerId,
        /// The new limits.
        resources: Resources,
    },
    /// ReopenContainerLog: reopen a RUNNING container's log file ([`Call::ReopenLog`]).
    ReopenContainerLog(ContainerId),
    /// ExecSync: run `cmd` in a RUNNING container as exec process `exec_id` (chosen by the
    /// driver, [`crate::EXEC_ID_PREFIX`]), answer its exit code and output; past `timeout`
    /// (zero: none) from its start the process is killed and the answer is
    /// [`CommandError::ExecTimeout`]. The exec process is deleted afterwards.
    ExecSync {
        /// Which container.
        id: ContainerId,
        /// The exec process's id.
        exec_id: ExecId,
        /// The command and its arguments; never empty.
        cmd: Vec<String>,
        /// How long it may run (zero: no limit).
        timeout: Duration,
    },
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The sandbox created by RunPodSandbox.
    SandboxCreated(SandboxId),
    /// The container created by CreateContainer.
    ContainerCreated(ContainerId),
    /// How ExecSync's process ended, with its output.
    ExecSync(ExecOutput),
    /// Any other command succeeded.
    Done,
}

/// What happened, for the CRI event stream (GetContainerEvents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Which object.
    pub target: Target,
    /// What happened to it.
    pub kind: EventKind,
    /// When (unix ns).
    pub at: i64,
}

/// The kind of an [`Event`] (CRI `ContainerEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Created.
    Created,
    /// Started.
    Started,
    /// Stopped (its exit is durable).
    Stopped,
    /// Deleted.
    Deleted,
}
