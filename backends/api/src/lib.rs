//! berth-backend: the ports berth's core is driven through.
//!
//! - [`Backend`]: the containerd calls the core emits ([`berth_core::Call`]), one async method
//!   each, plus [`Backend::list`] for recovery. Every failure is a plain-data
//!   [`BackendError`] with a kind; each implementation maps its native errors into it in
//!   exactly one function.
//! - [`CheckpointStore`]: durable per-container status checkpoints.
//!
//! Implementations: `berth-containerd` (real containerd over gRPC, checkpoints on the local
//! file system) and `berth-simbackend` (a simulated containerd with fault injection).

use async_trait::async_trait;

pub use berth_core::{
    BackendError, BackendErrorKind, Call, CallResult, ContainerId, ContainerMeta, ExecId,
    ExecOutput, ExecSpec, ExitStatus, ImageRecord, ImageRef, Resources, ResourcesOf, SandboxMeta,
    Status, Target, TaskState,
};

/// A containerd container record carrying berth's label, as listed at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<M> {
    /// The containerd id (not validated: a record with a bad id is reported, not trusted).
    pub id: String,
    /// When containerd created the record (unix ns; 0 if unknown).
    pub created_at: i64,
    /// berth's metadata, or why it could not be read (such a record is skipped by recovery
    /// but its directories are kept).
    pub meta: Result<M, String>,
}

/// Every berth-labelled record in containerd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Pause containers of sandboxes.
    pub sandboxes: Vec<Listed<SandboxMeta>>,
    /// CRI containers.
    pub containers: Vec<Listed<ContainerMeta>>,
}

/// A task's resource usage at one moment (containerd `Tasks.Metrics`), as CRI stats report
/// it (docs/containerd-behaviour.md §12). Counters are cumulative since the task started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// The containerd id (a container's, or a sandbox's pause container).
    pub id: String,
    /// When the sample was taken (unix ns).
    pub timestamp: i64,
    /// CPU time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use (cgroup usage), in bytes.
    pub memory_usage_bytes: u64,
    /// The working set: usage minus inactive file pages (0 if negative), in bytes.
    pub memory_working_set_bytes: u64,
    /// The limit minus the working set, when a limit is set.
    pub memory_available_bytes: Option<u64>,
    /// Anonymous memory (RSS), in bytes.
    pub memory_rss_bytes: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// Processes the kernel killed for running out of memory in the task's cgroup.
    pub oom_kills: u64,
}

/// The containerd operations berth needs. Every method but [`Backend::wait_task`] must
/// return within a deadline (the implementation's or the caller's).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Resolves a CRI container's image reference in the image store (by ID, normalised
    /// name or unique ID prefix: [`berth_core::resolve_image`] over the store's names and
    /// IDs). Changes nothing. NotFound naming the image when none matches, InvalidArgument
    /// for an ambiguous prefix ([`berth_core::ImageError::to_backend`]); `id` is the
    /// container being created (the error's target).
    async fn resolve_image(&self, id: &ContainerId, image: &str) -> Result<ImageRef, BackendError>;
    /// Creates the container record (rootfs snapshot, OCI spec, labels, metadata extension)
    /// from the image `meta.image` names (resolved by [`Backend::resolve_image`]).
    /// AlreadyExists if the id is taken.
    async fn create_container(&self, meta: &ContainerMeta) -> Result<(), BackendError>;
    /// Creates a sandbox's pause container record.
    async fn create_sandbox(&self, meta: &SandboxMeta) -> Result<(), BackendError>;
    /// Deletes a container record and its snapshot. NotFound if absent. Callers delete the
    /// task first: deleting a record whose task lives orphans the task.
    async fn delete_container(&self, target: &Target) -> Result<(), BackendError>;
    /// Creates the task; returns the pid of `runc init`.
    async fn create_task(&self, target: &Target) -> Result<u32, BackendError>;
    /// Starts a created task; returns its pid.
    async fn start_task(&self, target: &Target) -> Result<u32, BackendError>;
    /// Waits for the task's exit. A stream broken by a containerd restart or a lost
    /// connection is `Unavailable`, never an exit.
    async fn wait_task(&self, target: &Target) -> Result<ExitStatus, BackendError>;
    /// Signals the task's init process.
    async fn kill_task(&self, target: &Target, signal: i32) -> Result<(), BackendError>;
    /// Deletes the task (with `kill`: SIGKILL and wait for the exit first). NotFound if
    /// there is none.
    async fn delete_task(&self, target: &Target, kill: bool) -> Result<(), BackendError>;
    /// Observes the task; a missing task is `Ok(TaskState::NotFound)`.
    async fn task_status(&self, target: &Target) -> Result<TaskState, BackendError>;
    /// Applies new limits to a container: [`ResourcesOf::Task`] changes its running task's
    /// cgroup at once (`Tasks.Update`; NotFound without a task), [`ResourcesOf::Record`]
    /// writes them into its record's OCI spec (`Containers.Update`; NotFound without a
    /// record), so a task created later starts with them.
    async fn update_resources(
        &self,
        id: &ContainerId,
        of: ResourcesOf,
        resources: &Resources,
    ) -> Result<(), BackendError>;
    /// Reopens the container's log file (CRI ReopenContainerLog, after log rotation moved
    /// it): what its task writes next goes to a new file at its log path.
    /// FailedPrecondition if no log of it is being written (no log path, or no running
    /// task).
    async fn reopen_log(&self, id: &ContainerId) -> Result<(), BackendError>;
    /// Creates and starts exec process `exec.exec_id` in the container's running task
    /// (`Tasks.Exec` with the container's process settings and `exec.cmd`, then `Tasks.Start`
    /// of it), its stdout and stderr captured up to `exec.output_cap` bytes each (the rest
    /// read and dropped); returns its pid. NotFound without a task; FailedPrecondition when
    /// the task does not run.
    async fn start_exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<u32, BackendError>;
    /// Waits for the exec process to exit, then for its output to be drained, with a bound
    /// (a background child holding the pipe open cannot hold the wait); no deadline
    /// otherwise. A broken stream is `Unavailable`, never an exit. NotFound if the process
    /// is gone.
    async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError>;
    /// Signals the exec process. NotFound if it is gone or has exited.
    async fn kill_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
        signal: i32,
    ) -> Result<(), BackendError>;
    /// Deletes the exec process (`Tasks.DeleteProcess`), SIGKILLing a live one and waiting
    /// for it first. NotFound if it is gone already.
    async fn delete_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<(), BackendError>;
    /// Kills and deletes every exec process of berth's ([`ExecId::is_berths`]) in the
    /// container's task; returns how many. `Ok(0)` when there is no task.
    async fn sweep_execs(&self, id: &ContainerId) -> Result<u32, BackendError>;
    /// Lists every record carrying berth's label.
    async fn list(&self) -> Result<Listing, BackendError>;
    /// Samples the resource usage of the tasks of `ids` (every task when empty). A container
    /// without a task is left out of the answer, not an error.
    async fn task_metrics(&self, ids: &[ContainerId]) -> Result<Vec<TaskMetrics>, BackendError>;
}

/// Runs one [`Call`] on a backend and shapes its result for the core.
pub async fn run_call<B: Backend + ?Sized>(
    backend: &B,
    call: &Call,
) -> Result<CallResult, BackendError> {
    Ok(match call {
        Call::ResolveImage { id, image } => {
            CallResult::Image(Box::new(backend.resolve_image(id, image).await?))
        }
        Call::CreateContainer(meta) => {
            backend.create_container(meta).await?;
            CallResult::Done
        }
        Call::CreateSandbox(meta) => {
            backend.create_sandbox(meta).await?;
            CallResult::Done
        }
        Call::DeleteContainer(t) => {
            backend.delete_container(t).await?;
            CallResult::Done
        }
        Call::CreateTask(t) => CallResult::Pid(backend.create_task(t).await?),
        Call::StartTask(t) => CallResult::Pid(backend.start_task(t).await?),
        Call::WaitTask(t) => CallResult::Exited(backend.wait_task(t).await?),
        Call::KillTask { target, signal } => {
            backend.kill_task(target, *signal).await?;
            CallResult::Done
        }
        Call::DeleteTask { target, kill } => {
            backend.delete_task(target, *kill).await?;
            CallResult::Done
        }
        Call::TaskStatus(t) => CallResult::Task(backend.task_status(t).await?),
        Call::UpdateResources { id, of, resources } => {
            backend.update_resources(id, *of, resources).await?;
            CallResult::Done
        }
        Call::ReopenLog(id) => {
            backend.reopen_log(id).await?;
            CallResult::Done
        }
        Call::StartExec { id, exec } => CallResult::Pid(backend.start_exec(id, exec).await?),
        Call::WaitExec { id, exec_id } => {
            CallResult::ExecExited(Box::new(backend.wait_exec(id, exec_id).await?))
        }
        Call::KillExec {
            id,
            exec_id,
            signal,
        } => {
            backend.kill_exec(id, exec_id, *signal).await?;
            CallResult::Done
        }
        Call::DeleteExec { id, exec_id } => {
            backend.delete_exec(id, exec_id).await?;
            CallResult::Done
        }
        Call::SweepExecs(id) => CallResult::Swept(backend.sweep_execs(id).await?),
    })
}

/// The kind of a checkpoint storage failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The file system is full (ENOSPC, EDQUOT).
    NoSpace,
    /// The file system is read-only (EROFS).
    ReadOnly,
    /// fsync failed: the data may not be durable.
    Sync,
    /// Any other I/O error.
    Io,
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreErrorKind::NoSpace => "no space left on device",
            StoreErrorKind::ReadOnly => "read-only file system",
            StoreErrorKind::Sync => "fsync failed",
            StoreErrorKind::Io => "I/O error",
        })
    }
}

/// A checkpoint storage failure, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {path}: {kind}: {message}")]
pub struct StoreError {
    /// What failed.
    pub kind: StoreErrorKind,
    /// The operation ("write", "delete", "list", "sync").
    pub what: &'static str,
    /// The file or directory involved.
    pub path: String,
    /// The OS's words.
    pub message: String,
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// There is no checkpoint for this container.
    #[error("container {id}: no checkpoint")]
    Missing {
        /// The container.
        id: ContainerId,
    },
    /// The file exists but does not decode (empty, torn, garbage, unknown version).
    #[error("container {id}: {error}")]
    Corrupt {
        /// The container.
        id: ContainerId,
        /// Why it does not decode.
        error: berth_core::CheckpointError,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] StoreError),
}

/// Durable per-container status checkpoints.
///
/// Contract: after `write` returns Ok the record survives a crash or power loss; a crash
/// during `write` leaves either the old or the new record, never a torn one; a failed
/// `write` leaves no temporary file and either record (a rename that landed before its
/// directory fsync failed is visible, but not durable): the caller rewrites the record it
/// wants until a write succeeds.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Durably replaces the container's checkpoint.
    async fn write(&self, id: &ContainerId, status: &Status) -> Result<(), StoreError>;
    /// Deletes the checkpoint and the container's directory; Ok if already gone.
    async fn delete(&self, id: &ContainerId) -> Result<(), StoreError>;
    /// Loads and decodes a checkpoint.
    async fn load(&self, id: &ContainerId) -> Result<Status, LoadError>;
    /// Names of every container directory (not validated: the orphan sweep needs them all).
    async fn list(&self) -> Result<Vec<String>, StoreError>;
    /// Removes an orphan directory by name; refuses names that are not valid ids.
    async fn remove_orphan(&self, name: &str) -> Result<(), StoreError>;
    /// Makes everything written so far durable (called before recovery reads anything).
    async fn sync(&self) -> Result<(), StoreError>;
}
