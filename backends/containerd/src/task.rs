//! Tasks: create (snapshot mounts + log file), start, wait, kill, delete, status.

use std::path::Path;

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
/// Mode of a container log file berth creates.
const LOG_FILE_MODE: u32 = 0o640;

impl ContainerdBackend {
    /// `Tasks.Create` with the record's snapshot mounts as rootfs and, for a CRI container
    /// with a log path, that file (created if missing) as stdout and stderr.
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
        if !log_path.is_empty() {
            open_log(&log_path)
                .await
                .map_err(|why| local(BackendErrorKind::Other, VERB, id, why))?;
        }
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
        let created = self
            .rpc(
                VERB,
                id,
                self.config().task_create_timeout,
                c.tasks().create(c.request(CreateTaskRequest {
                    container_id: id.to_owned(),
                    rootfs: mounts,
                    stdout: log_path.clone(),
                    stderr: log_path,
                    ..CreateTaskRequest::default()
                })),
            )
            .await?;
        Ok(created.pid)
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
    /// error (`Unavailable`, see [`crate::map_status`]).
    pub(crate) async fn wait(&self, id: &str) -> Result<ExitStatus, BackendError> {
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
        Ok(exit(reply.exit_status, reply.exited_at.as_ref()))
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
        self.call(
            "Tasks.Delete",
            id,
            c.tasks().delete(c.request(DeleteTaskRequest {
                container_id: id.to_owned(),
            })),
        )
        .await?;
        Ok(())
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
        Ok(match process.status() {
            ProcessStatus::Created => TaskState::Created { pid: process.pid },
            ProcessStatus::Running => TaskState::Running { pid: process.pid },
            ProcessStatus::Stopped => {
                TaskState::Stopped(exit(process.exit_status, process.exited_at.as_ref()))
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

/// Creates the log file (and its parent directories) if missing; the shim opens it
/// `O_APPEND` and does not create it.
async fn open_log(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("log path {path:?} is not absolute"));
    }
    if let Some(dir) = p.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("create log directory {}: {e}", dir.display()))?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(p)
        .await
        .map_err(|e| format!("create log file {path}: {e}"))?;
    Ok(())
}
