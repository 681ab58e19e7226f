//! Exec processes against a real containerd + runc: output, codes, the cap, a kill, a
//! background child holding the pipe, the sweep of berth's exec processes.

mod common;

use std::time::{Duration, Instant};

use berth_backend::{Backend, BackendErrorKind};
use berth_containerd::EXEC_DRAIN_TIMEOUT;
use berth_core::{ContainerId, EXEC_ID_PREFIX, ExecId, ExecSpec};
use common::BackendFixture;

const MIB: usize = 1 << 20;

fn exec(n: u32, cmd: &[&str]) -> ExecSpec {
    ExecSpec {
        exec_id: ExecId::new(format!("{EXEC_ID_PREFIX}{n}")).unwrap(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        output_cap: 16 * MIB,
    }
}

/// Pids of processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Waits (at most 10 s) until a process with command line `args` runs: `Tasks.Start`
/// answers once runc started it, maybe before its `execve`.
async fn await_process(args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_running(args).is_empty() {
        assert!(Instant::now() < deadline, "{args:?} never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn running_container(w: &BackendFixture, id: &str) -> ContainerId {
    let meta = w.meta(id, &["sleep", "infinity"]);
    w.run(&meta).await;
    meta.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_output_and_any_exit_code_and_is_deleted() {
    let w = BackendFixture::start().await;
    let id = running_container(&w, "ex1").await;
    let e = exec(1, &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let pid = w.backend.exec_start(&id, &e).await.unwrap();
    assert!(pid > 0);
    let out = w.backend.exec_wait(&id, &e.exec_id).await.unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    w.backend.exec_delete(&id, &e.exec_id).await.unwrap();
    // Deleted: gone from containerd; a second delete is NotFound.
    let again = w.backend.exec_delete(&id, &e.exec_id).await.unwrap_err();
    assert_eq!(again.kind, BackendErrorKind::NotFound, "{again}");
    // The container's own process settings: its environment (PATH from the spec).
    let env = exec(2, &["sh", "-c", "echo $PATH; pwd"]);
    w.backend.exec_start(&id, &env).await.unwrap();
    let out = w.backend.exec_wait(&id, &env.exec_id).await.unwrap();
    assert_eq!(out.exit_code, 0);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("/usr/bin") && text.ends_with("/\n"),
        "{text:?}"
    );
    w.backend.exec_delete(&id, &env.exec_id).await.unwrap();
    // A command the image does not have fails at start, naming it.
    let missing = exec(3, &["no-such-binary"]);
    let err = w.backend.exec_start(&id, &missing).await.unwrap_err();
    assert!(err.message.contains("no-such-binary"), "{err}");
    let _ = w.backend.exec_delete(&id, &missing.exec_id).await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_beyond_the_cap_is_read_and_dropped() {
    let w = BackendFixture::start().await;
    let id = running_container(&w, "excap").await;
    let mut e = exec(1, &["sh", "-c", "head -c 3145728 /dev/zero; echo done >&2"]);
    e.output_cap = MIB;
    w.backend.exec_start(&id, &e).await.unwrap();
    let out = w.backend.exec_wait(&id, &e.exec_id).await.unwrap();
    assert_eq!(out.exit_code, 0, "the writer never blocked on a full pipe");
    assert_eq!(out.stdout.len(), MIB);
    assert_eq!(out.stderr, b"done\n");
    w.backend.exec_delete(&id, &e.exec_id).await.unwrap();
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_exec_ends_137_and_leaves_no_process() {
    let w = BackendFixture::start().await;
    let id = running_container(&w, "exkill").await;
    let e = exec(1, &["sleep", "4321"]);
    w.backend.exec_start(&id, &e).await.unwrap();
    await_process(&["sleep", "4321"]).await;
    let waiter = {
        let b = w.backend.clone();
        let (id, exec_id) = (id.clone(), e.exec_id.clone());
        tokio::spawn(async move { b.exec_wait(&id, &exec_id).await })
    };
    w.backend.exec_kill(&id, &e.exec_id, 9).await.unwrap();
    let out = waiter.await.unwrap().unwrap();
    assert_eq!(out.exit_code, 137);
    w.backend.exec_delete(&id, &e.exec_id).await.unwrap();
    assert!(processes_running(&["sleep", "4321"]).is_empty());
    // Deleting a live exec kills it first.
    let live = exec(2, &["sleep", "4322"]);
    w.backend.exec_start(&id, &live).await.unwrap();
    await_process(&["sleep", "4322"]).await;
    w.backend.exec_delete(&id, &live.exec_id).await.unwrap();
    assert!(processes_running(&["sleep", "4322"]).is_empty());
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_child_holding_the_pipe_cannot_hold_the_reply() {
    let w = BackendFixture::start().await;
    let id = running_container(&w, "exbg").await;
    let e = exec(1, &["sh", "-c", "sleep 4324 & echo started"]);
    w.backend.exec_start(&id, &e).await.unwrap();
    let began = Instant::now();
    let out = w.backend.exec_wait(&id, &e.exec_id).await.unwrap();
    let took = began.elapsed();
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        out.stdout, b"started\n",
        "what was read before the bound is kept"
    );
    assert!(
        took < EXEC_DRAIN_TIMEOUT + Duration::from_secs(5),
        "the drain is bounded ({took:?})"
    );
    w.backend.exec_delete(&id, &e.exec_id).await.unwrap();
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_berths_exec_processes_only() {
    let w = BackendFixture::start().await;
    let id = running_container(&w, "exsweep").await;
    let ours = exec(1, &["sleep", "4325"]);
    w.backend.exec_start(&id, &ours).await.unwrap();
    let mut theirs = exec(2, &["sleep", "4326"]);
    theirs.exec_id = ExecId::new("operator-debug").unwrap();
    w.backend.exec_start(&id, &theirs).await.unwrap();
    await_process(&["sleep", "4325"]).await;
    await_process(&["sleep", "4326"]).await;
    assert_eq!(w.backend.exec_sweep(&id).await.unwrap(), 1);
    assert!(processes_running(&["sleep", "4325"]).is_empty());
    assert_eq!(processes_running(&["sleep", "4326"]).len(), 1);
    assert_eq!(w.backend.exec_sweep(&id).await.unwrap(), 0);
    w.backend.exec_delete(&id, &theirs.exec_id).await.unwrap();
    // No task: nothing to sweep, no exec can start.
    let created = w.meta("exnotask", &["sleep", "infinity"]);
    w.backend.create_container(&created).await.unwrap();
    assert_eq!(w.backend.exec_sweep(&created.id).await.unwrap(), 0);
    let err = w
        .backend
        .exec_start(&created.id, &exec(3, &["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::NotFound, "{err}");
    w.cleanup().await;
}
