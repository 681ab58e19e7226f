//! Exec processes (CRI ExecSync) against containerd: `Tasks.Exec` with the container's own
//! OCI `process` and the command as its arguments, `Tasks.Start`, `Tasks.Wait` of the exec,
//! `Tasks.Kill` of it, `Tasks.DeleteProcess`, and a sweep of berth's exec processes
//! (`Tasks.ListPids`) for recovery. What the core decides around them (RUNNING only, the
//! timeout, the delete afterwards, the sweep) is in docs/architecture.md; containerd's own
//! behaviour in docs/containerd-behaviour.md.
//!
//! Output: two FIFOs per exec under `<fifo root>/.exec/<namespace>/<container>/<exec>/`,
//! opened by berth for reading **before** `Tasks.Exec`, together with a write end of
//! berth's own that keeps them from reading end-of-file before the shim has its write ends
//! (the shim opens them synchronously during `Tasks.Start`). Once `Tasks.Start` answered,
//! berth drops its write ends: end-of-file then means the process, and every child that
//! inherited its stdout or stderr, closed them. Each stream keeps at most
//! [`ExecSpec::output_cap`] bytes and reads and drops the rest, so a chatty process never
//! blocks on a full pipe.
//!
//! Bounded drain: once `Tasks.Wait` reported the exit, the output is awaited at most
//! [`EXEC_DRAIN_TIMEOUT`]; a background child that keeps the pipe open cannot hold the reply
//! (containerd 1.6 waits for it without bound). Readers of an exec whose output nobody
//! collects (berth restarted, or the exec was deleted before its wait) stop when the exec
//! is deleted.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use berth_backend::{BackendError, BackendErrorKind, ContainerId};
use berth_core::{ExecId, ExecOutput, ExecSpec};
use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, KillRequest, ListPidsRequest, StartRequest,
    WaitRequest,
};
use tokio::io::AsyncReadExt as _;
use tokio::task::JoinHandle;

use crate::backend::ContainerdBackend;
use crate::error::{local, map_status};
use crate::logio;

/// How long the output of an exited exec process is awaited before the reply goes out with
/// what was read (a background child may hold the pipe open for ever).
pub const EXEC_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Type URL of an OCI `Process` in `Tasks.Exec`.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Type URL of the runc shim's per-process details in `Tasks.ListPids`.
const PROCESS_DETAILS_TYPE_URL: &str = "containerd.runc.v1.ProcessDetails";

/// How long a killed exec process is waited for before `Tasks.DeleteProcess`.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// SIGKILL.
const SIGKILL: u32 = 9;

/// `containerd.runc.v1.ProcessDetails` (runc shim's `options` proto): which exec a pid of
/// `Tasks.ListPids` belongs to. Not in containerd-client; one field is all berth reads.
#[derive(Clone, PartialEq, prost::Message)]
struct ProcessDetails {
    #[prost(string, tag = "1")]
    exec_id: String,
}

/// The output readers of one exec process of this berthd.
struct ExecIo {
    stdout: Captured,
    stderr: Captured,
    dir: PathBuf,
}

/// One stream's reader and what it has read so far (kept when the drain bound cuts it off).
struct Captured {
    reader: JoinHandle<()>,
    kept: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    fn start(rx: tokio::net::unix::pipe::Receiver, cap: usize) -> Captured {
        let kept = Arc::new(Mutex::new(Vec::new()));
        Captured {
            reader: tokio::spawn(capture(rx, cap, kept.clone())),
            kept,
        }
    }

    /// What was read, once end-of-file was reached or `deadline` passed.
    async fn finish(mut self, deadline: tokio::time::Instant) -> (Vec<u8>, bool) {
        let complete = tokio::time::timeout_at(deadline, &mut self.reader)
            .await
            .is_ok();
        self.reader.abort();
        let kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        (kept, complete)
    }
}

impl ExecIo {
    /// Stops the readers and removes the FIFOs.
    fn release(self) {
        self.stdout.reader.abort();
        self.stderr.reader.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (containerd namespace, container id, exec id).
type ExecKey = (String, String, String);

/// The readers of every exec in flight in this process.
static EXECS: LazyLock<Mutex<HashMap<ExecKey, ExecIo>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn execs() -> std::sync::MutexGuard<'static, HashMap<ExecKey, ExecIo>> {
    EXECS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads `rx` to end-of-file into `kept`, keeping the first `cap` bytes.
async fn capture(mut rx: tokio::net::unix::pipe::Receiver, cap: usize, kept: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

impl ContainerdBackend {
    fn key(&self, id: &ContainerId, exec_id: &ExecId) -> ExecKey {
        (
            self.config().namespace.clone(),
            id.as_str().to_owned(),
            exec_id.as_str().to_owned(),
        )
    }

    fn exec_dir(&self, id: &ContainerId, exec_id: &ExecId) -> PathBuf {
        logio::fifo_root()
            .join(".exec")
            .join(&self.config().namespace)
            .join(id.as_str())
            .join(exec_id.as_str())
    }

    /// Starts `exec` in the running task of container `id`: the container's OCI `process`
    /// with `exec.cmd` as its arguments and no terminal, stdout and stderr captured.
    /// Returns the exec process's pid. NotFound without a record or task; AlreadyExists if
    /// the exec id is taken. On failure nothing of berth's is left (the exec may exist in
    /// containerd after a lost reply: deleting it is the caller's next step).
    pub async fn exec_start(&self, id: &ContainerId, exec: &ExecSpec) -> Result<u32, BackendError> {
        const VERB: &str = "Tasks.Exec";
        let cid = id.as_str();
        if exec.cmd.is_empty() {
            return Err(local(
                BackendErrorKind::Other,
                VERB,
                cid,
                "the exec command is empty",
            ));
        }
        let process = self.exec_process(id, &exec.cmd).await?;
        let dir = self.exec_dir(id, &exec.exec_id);
        let io_err = |what: &str, e: std::io::Error| {
            local(
                BackendErrorKind::Other,
                VERB,
                cid,
                format!("exec {}: {what} {}: {e}", exec.exec_id, dir.display()),
            )
        };
        if let Some(old) = execs().remove(&self.key(id, &exec.exec_id)) {
            old.release();
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("cannot create", e))?;
        let mut paths = Vec::new();
        let mut receivers = Vec::new();
        let mut keepers = Vec::new();
        for stream in ["stdout", "stderr"] {
            let path = dir.join(stream);
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &path,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .map_err(|e| io_err("cannot make a FIFO in", e.into()))?;
            let rx = tokio::net::unix::pipe::OpenOptions::new()
                .open_receiver(&path)
                .map_err(|e| io_err("cannot open a FIFO in", e))?;
            // Our own write end: no end-of-file before the shim holds its write ends.
            let keeper = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| io_err("cannot open a FIFO in", e))?;
            paths.push(path.display().to_string());
            receivers.push(rx);
            keepers.push(keeper);
        }
        let cap = exec.output_cap;
        let stderr_rx = receivers.pop();
        let stdout_rx = receivers.pop();
        let (Some(stdout_rx), Some(stderr_rx)) = (stdout_rx, stderr_rx) else {
            return Err(io_err("no FIFOs in", std::io::ErrorKind::NotFound.into()));
        };
        let io = ExecIo {
            stdout: Captured::start(stdout_rx, cap),
            stderr: Captured::start(stderr_rx, cap),
            dir: dir.clone(),
        };
        let c = self.client();
        let started = async {
            self.call(
                VERB,
                cid,
                c.tasks().exec(c.request(ExecProcessRequest {
                    container_id: cid.to_owned(),
                    stdin: String::new(),
                    stdout: paths[0].clone(),
                    stderr: paths[1].clone(),
                    terminal: false,
                    spec: Some(prost_types::Any {
                        type_url: PROCESS_TYPE_URL.to_owned(),
                        value: serde_json::to_vec(&process).unwrap_or_default(),
                    }),
                    exec_id: exec.exec_id.as_str().to_owned(),
                })),
            )
            .await?;
            self.call(
                "Tasks.Start",
                cid,
                c.tasks().start(c.request(StartRequest {
                    container_id: cid.to_owned(),
                    exec_id: exec.exec_id.as_str().to_owned(),
                })),
            )
            .await
        }
        .await;
        drop(keepers);
        match started {
            Ok(reply) => {
                execs().insert(self.key(id, &exec.exec_id), io);
                Ok(reply.pid)
            }
            Err(e) => {
                io.release();
                Err(e)
            }
        }
    }

    /// The container's OCI `process` from its record's spec, with `cmd` as its arguments,
    /// no terminal (containerd CRI's `execInternal` does the same with its stored spec).
    async fn exec_process(
        &self,
        id: &ContainerId,
        cmd: &[String],
    ) -> Result<serde_json::Value, BackendError> {
        const VERB: &str = "Tasks.Exec";
        let rec = self.record(id.as_str()).await?;
        let spec: serde_json::Value = rec
            .spec
            .as_ref()
            .map(|any| serde_json::from_slice(&any.value))
            .transpose()
            .map_err(|e| {
                local(
                    BackendErrorKind::Other,
                    VERB,
                    id.as_str(),
                    format!("the container's OCI spec is not JSON: {e}"),
                )
            })?
            .unwrap_or(serde_json::Value::Null);
        let mut process = match spec.get("process") {
            Some(p) if p.is_object() => p.clone(),
            _ => {
                return Err(local(
                    BackendErrorKind::Other,
                    VERB,
                    id.as_str(),
                    "the container's OCI spec has no process",
                ));
            }
        };
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::Value::Bool(false);
        if let Some(obj) = process.as_object_mut() {
            obj.remove("consoleSize");
        }
        Ok(process)
    }

    /// Waits (without a deadline) for exec `exec_id` of container `id` to exit, then for its
    /// output, at most [`EXEC_DRAIN_TIMEOUT`]. A broken stream is `Unavailable`, never an
    /// exit. Output of an exec this process did not start (berth restarted) is empty.
    pub async fn exec_wait(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        let cid = id.as_str();
        let c = self.client();
        let reply = c
            .tasks()
            .wait(c.request(WaitRequest {
                container_id: cid.to_owned(),
                exec_id: exec_id.as_str().to_owned(),
            }))
            .await
            .map_err(|s| map_status(&s, "Tasks.Wait", cid))?
            .into_inner();
        let exit_code = i32::try_from(reply.exit_status).unwrap_or(i32::MAX);
        let Some(io) = execs().remove(&self.key(id, exec_id)) else {
            return Ok(ExecOutput {
                exit_code,
                stdout: Vec::new(),
                stderr: Vec::new(),
            });
        };
        let ExecIo {
            stdout,
            stderr,
            dir,
        } = io;
        let deadline = tokio::time::Instant::now() + EXEC_DRAIN_TIMEOUT;
        let ((stdout, out_done), (stderr, err_done)) =
            tokio::join!(stdout.finish(deadline), stderr.finish(deadline));
        if !(out_done && err_done) {
            tracing::warn!(
                container = cid,
                exec = %exec_id,
                bound = ?EXEC_DRAIN_TIMEOUT,
                "exec output still open after its exit (a background child holds it): replying with what was read"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(ExecOutput {
            exit_code,
            stdout,
            stderr,
        })
    }

    /// Sends `signal` to exec process `exec_id` of container `id`. NotFound if it is gone.
    pub async fn exec_kill(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
        signal: i32,
    ) -> Result<(), BackendError> {
        let cid = id.as_str();
        let signal = u32::try_from(signal).map_err(|_| {
            local(
                BackendErrorKind::Other,
                "Tasks.Kill",
                cid,
                format!("invalid signal {signal}"),
            )
        })?;
        let c = self.client();
        self.call(
            "Tasks.Kill",
            cid,
            c.tasks().kill(c.request(KillRequest {
                container_id: cid.to_owned(),
                exec_id: exec_id.as_str().to_owned(),
                signal,
                all: false,
            })),
        )
        .await?;
        Ok(())
    }

    /// Deletes exec process `exec_id` of container `id` (`Tasks.DeleteProcess`), killing it
    /// first if it still runs, and releases berth's readers and FIFOs of it. NotFound means
    /// it is already gone (the readers are released then too).
    pub async fn exec_delete(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<(), BackendError> {
        let cid = id.as_str();
        let c = self.client();
        let exec = exec_id.as_str().to_owned();
        match self.exec_kill(id, exec_id, SIGKILL as i32).await {
            Ok(()) => {
                // Deleting a live process fails: wait for the kill to land.
                let waited = self
                    .rpc(
                        "Tasks.Wait",
                        cid,
                        KILL_WAIT,
                        c.tasks().wait(c.request(WaitRequest {
                            container_id: cid.to_owned(),
                            exec_id: exec.clone(),
                        })),
                    )
                    .await;
                match waited {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
            // Already finished (FailedPrecondition/NotFound "process already finished").
            Err(e) if e.is_not_found() || e.kind == BackendErrorKind::FailedPrecondition => {}
            Err(e) => return Err(e),
        }
        let deleted = self
            .call(
                "Tasks.DeleteProcess",
                cid,
                c.tasks().delete_process(c.request(DeleteProcessRequest {
                    container_id: cid.to_owned(),
                    exec_id: exec,
                })),
            )
            .await;
        if deleted.is_ok() || deleted.as_ref().is_err_and(BackendError::is_not_found) {
            if let Some(io) = execs().remove(&self.key(id, exec_id)) {
                io.release();
            }
            let _ = std::fs::remove_dir_all(self.exec_dir(id, exec_id));
        }
        deleted.map(|_| ())
    }

    /// Kills and deletes every exec process berth started ([`ExecId::is_berths`]) in the
    /// task of container `id`; returns how many. Exec processes of others (`ctr task
    /// exec`) are left alone. Ok(0) without a task.
    pub async fn exec_sweep(&self, id: &ContainerId) -> Result<u32, BackendError> {
        let cid = id.as_str();
        let c = self.client();
        let listed = self
            .call(
                "Tasks.ListPids",
                cid,
                c.tasks().list_pids(c.request(ListPidsRequest {
                    container_id: cid.to_owned(),
                })),
            )
            .await;
        let processes = match listed {
            Ok(r) => r.processes,
            Err(e) if e.is_not_found() => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut swept = 0;
        for p in processes {
            let Some(info) = p
                .info
                .filter(|i| i.type_url.ends_with(PROCESS_DETAILS_TYPE_URL))
            else {
                continue;
            };
            let Ok(details) = <ProcessDetails as prost::Message>::decode(info.value.as_slice())
            else {
                continue;
            };
            let Ok(exec_id) = ExecId::new(details.exec_id) else {
                continue;
            };
            if !exec_id.is_berths() {
                continue;
            }
            match self.exec_delete(id, &exec_id).await {
                Ok(()) => swept += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(swept)
    }
}
