//! Tasks: create (snapshot mounts + log FIFOs), start, wait, kill, delete, status.
//!
//! A CRI container with a log path gets its stdout and stderr through FIFOs that a copier
//! of this process turns into CRI log records (`crate::logio`): made before
//! `Tasks.Create`, drained when `Tasks.Wait` reports the exit, re-attached when `Tasks.Get`
//! or `Tasks.Wait` meets a task no copier reads (after a restart), removed after
//! `Tasks.Delete`.

use berth_backend::{BackendError, BackendErrorKind, ContainerMeta, ExitStatus, Target, TaskState};
use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::{
    CreateTaskRequest, DeleteTaskRequest, GetRequest, KillRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status as ProcessStatus;

use crate::backend::ContainerdBackend;
use crate::container::CONTAINER_EXTENSION;
use crate::error::{local, map_status};
use crate::time::unix_nanos;

/// SIGKILL.
const SIGKILL: u32 = 9;

impl ContainerdBackend {
    /// `Tasks.Create` with the record's snapshot mounts as rootfs and, for a CRI container
    /// with a log path, two FIFOs as stdout and stderr whose copier writes that file (created
    /// if missing) in the CRI log format.
    pub(crate) async fn create_task_for(&self, target: &Target) -> Result<u32, BackendError> {
        const VERB: &str = "Tasks.Create";
        let id = target.as_str();
        let c = self.client();
        let rec = self.record(id).await?;
        let log_path = match target {
            Target::Sandbox(_) => String::new(),
            Target::Container(_) => {
                let bytes = rec
                    .extensions
                    .get(CONTAINER_EXTENSION)
                    .map(|a| a.value.as_slice())
                    .unwrap_or_default();
                ContainerMeta::decode(bytes)
                    .map_err(|e| local(BackendErrorKind::Other, VERB, id, e.to_string()))?
                    .log_path
            }
        };
        if rec.snapshot_key.is_empty() {
            return Err(local(
                BackendErrorKind::FailedPrecondition,
                VERB,
                id,
                "the container record has no snapshot",
            ));
        }
        let mounts = self
            .call(
                "Snapshots.Mounts",
                id,
                c.snapshots().mounts(c.request(MountsRequest {
                    snapshotter: rec.snapshotter.clone(),
                    key: rec.snapshot_key.clone(),
                })),
            )
            .await?
            .mounts;
        let fifos = if log_path.is_empty() {
            None
        } else {
            Some(
                self.prepare_log_io(id, &log_path)
                    .await
                    .map_err(|e| local(BackendErrorKind::Other, VERB, id, e.to_string()))?,
            )
        };
        let (stdout, stderr) = fifos.map(|f| (f.stdout, f.stderr)).unwrap_or_default();
        let created = self
            .rpc(
                VERB,
                id,
                self.config().task_create_timeout,
                c.tasks().create(c.request(CreateTaskRequest {
                    container_id: id.to_owned(),
                    rootfs: mounts,
                    stdout,
                    stderr,
                    ..CreateTaskRequest::default()
                })),
            )
            .await;
        match created {
            Ok(created) => Ok(created.pid),
            Err(e) => {
                // The task may exist after a lost reply or a deadline: keep its copier then;
                // Tasks.Delete releases it.
                if !matches!(
                    e.kind,
                    BackendErrorKind::DeadlineExceeded | BackendErrorKind::Unavailable
                ) {
                    self.release_logs(id).await;
                }
                Err(e)
            }
        }
    }

    /// `Tasks.Start`; returns the pid.
    pub(crate) async fn start(&self, id: &str) -> Result<u32, BackendError> {
        let c = self.client();
        let reply = self
            .call(
                "Tasks.Start",
                id,
                c.tasks().start(c.request(StartRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                })),
            )
            .await?;
        Ok(reply.pid)
    }

    /// `Tasks.Wait` without a deadline. Only a reply is an exit: a broken stream is an
    /// error (`Unavailable`, see [`crate::map_status`]). The log holds the task's output
    /// when the exit is returned.
    pub(crate) async fn wait(&self, id: &str) -> Result<ExitStatus, BackendError> {
        self.ensure_logs_attached(id);
        let c = self.client();
        let reply = c
            .tasks()
            .wait(c.request(WaitRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|s| map_status(&s, "Tasks.Wait", id))?
            .into_inner();
        self.sync_logs(id).await;
        let exit = exit(reply.exit_status, reply.exited_at.as_ref());
        Ok(self.with_oom(id, exit).await)
    }

    /// `exit` marked OOM-killed if the kernel OOM-killed a process in the task's cgroup
    /// (containerd's CRI learns it from the `TaskOOM` event; berth reads the cgroup's OOM
    /// kill counter through `Tasks.Metrics`, which still answers until the task is deleted).
    /// A failed read leaves the exit as it is.
    async fn with_oom(&self, id: &str, exit: ExitStatus) -> ExitStatus {
        let Ok(cid) = berth_backend::ContainerId::new(id) else {
            return exit;
        };
        match self.metrics_of(std::slice::from_ref(&cid)).await {
            Ok(m) if m.iter().any(|m| m.id == id && m.oom_kills > 0) => exit.oom_killed(),
            Ok(_) => exit,
            Err(e) => {
                tracing::debug!(task = id, error = %e, "no OOM count for an exited task");
                exit
            }
        }
    }

    /// `Tasks.Kill` of the init process.
    pub(crate) async fn kill(&self, id: &str, signal: i32) -> Result<(), BackendError> {
        let signal = u32::try_from(signal).map_err(|_| {
            local(
                BackendErrorKind::Other,
                "Tasks.Kill",
                id,
                format!("invalid signal {signal}"),
            )
        })?;
        self.send_signal(id, signal, false).await
    }

    async fn send_signal(&self, id: &str, signal: u32, all: bool) -> Result<(), BackendError> {
        let c = self.client();
        self.call(
            "Tasks.Kill",
            id,
            c.tasks().kill(c.request(KillRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
                signal,
                all,
            })),
        )
        .await?;
        Ok(())
    }

    /// `Tasks.Delete`; with `kill`, first SIGKILL every process of the task (NotFound
    /// "process already finished" tolerated) and wait for the exit within the call
    /// deadline (containerd's `WithProcessKill`).
    pub(crate) async fn delete_task_of(&self, id: &str, kill: bool) -> Result<(), BackendError> {
        let c = self.client();
        if kill {
            match self.send_signal(id, SIGKILL, true).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
            let waited = self
                .call(
                    "Tasks.Wait",
                    id,
                    c.tasks().wait(c.request(WaitRequest {
                        container_id: id.to_owned(),
                        exec_id: String::new(),
                    })),
                )
                .await;
            match waited {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        let deleted = self
            .call(
                "Tasks.Delete",
                id,
                c.tasks().delete(c.request(DeleteTaskRequest {
                    container_id: id.to_owned(),
                })),
            )
            .await;
        match deleted {
            Ok(_) => {
                self.release_logs(id).await;
                Ok(())
            }
            Err(e) => {
                if e.is_not_found() {
                    self.release_logs(id).await;
                }
                Err(e)
            }
        }
    }

    /// `Tasks.Get` as a [`TaskState`]; NotFound (no task, or no record) is a state.
    pub(crate) async fn status(&self, id: &str) -> Result<TaskState, BackendError> {
        let c = self.client();
        let reply = self
            .call(
                "Tasks.Get",
                id,
                c.tasks().get(c.request(GetRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                })),
            )
            .await;
        let process = match reply {
            Err(e) if e.is_not_found() => return Ok(TaskState::NotFound),
            Err(e) => return Err(e),
            Ok(r) => r.process.ok_or_else(|| {
                local(
                    BackendErrorKind::Other,
                    "Tasks.Get",
                    id,
                    "containerd answered without a process",
                )
            })?,
        };
        self.ensure_logs_attached(id);
        Ok(match process.status() {
            ProcessStatus::Created => TaskState::Created { pid: process.pid },
            ProcessStatus::Running => TaskState::Running { pid: process.pid },
            ProcessStatus::Stopped => {
                let exit = exit(process.exit_status, process.exited_at.as_ref());
                TaskState::Stopped(self.with_oom(id, exit).await)
            }
            ProcessStatus::Paused | ProcessStatus::Pausing | ProcessStatus::Unknown => {
                TaskState::Paused
            }
        })
    }
}

/// A real exit; a zero `exited_at` (Go's zero time) is reported as 0 ("unknown time").
fn exit(code: u32, at: Option<&prost_types::Timestamp>) -> ExitStatus {
    ExitStatus::real(code as i32, unix_nanos(at).unwrap_or(0))
}
