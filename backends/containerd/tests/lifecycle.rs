//! Container and task lifecycle against a real containerd + runc: real processes, real
//! exit codes.

mod common;

use berth_backend::{Backend, BackendErrorKind, TaskState};
use berth_containerd::{LABEL_MANAGED, spec::clamp_oom_score_adj};
use berth_core::Resources;
use common::{BackendFixture, POD, now_ns, target};
use containerd_client::services::v1::snapshots::StatSnapshotRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_42_is_waited_with_its_time() {
    let w = BackendFixture::start().await;
    let meta = w.meta("exit42", &["sh", "-c", "exit 42"]);
    let t = target("exit42");
    let before = now_ns();
    w.backend.create_container(&meta).await.unwrap();
    let created_pid = w.backend.create_task(&t).await.unwrap();
    assert!(created_pid > 0);
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::Created { pid: created_pid }
    );
    let waiter = {
        let b = w.backend.clone();
        let t = t.clone();
        tokio::spawn(async move { b.wait_task(&t).await })
    };
    let pid = w.backend.start_task(&t).await.unwrap();
    assert_eq!(pid, created_pid);
    let exit = waiter.await.unwrap().unwrap();
    let after = now_ns();
    assert_eq!(exit.code, 42);
    assert!(!exit.synthetic);
    assert!(
        before <= exit.exited_at && exit.exited_at <= after,
        "{exit:?}"
    );
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::Stopped(exit)
    );
    // A second wait after the exit returns the same status.
    assert_eq!(w.backend.wait_task(&t).await.unwrap(), exit);
    w.backend.delete_task(&t, false).await.unwrap();
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::NotFound
    );
    w.backend.delete_container(&t).await.unwrap();
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_with_term_runs_the_trap_and_kill_gives_137() {
    let w = BackendFixture::start().await;
    let logs = berth_testkit::scratch_dir("trap").unwrap();
    // The trap is installed before the marker line: once "ready" is in the log, TERM runs it.
    let mut trap = w.meta(
        "trapper",
        &[
            "sh",
            "-c",
            "trap 'exit 43' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    trap.log_path = logs.path().join("trapper.log").display().to_string();
    let plain = w.meta("sleeper", &["sleep", "1000"]);
    w.run(&trap).await;
    w.run(&plain).await;
    common::await_log(&trap.log_path, "ready").await;
    w.backend.kill_task(&target("trapper"), 15).await.unwrap();
    let exit = w.backend.wait_task(&target("trapper")).await.unwrap();
    assert_eq!(exit.code, 43, "the TERM trap ran");
    w.backend.kill_task(&target("sleeper"), 9).await.unwrap();
    let exit = w.backend.wait_task(&target("sleeper")).await.unwrap();
    assert_eq!(exit.code, 137);
    // Signalling a finished process is NotFound ("process already finished").
    let err = w
        .backend
        .kill_task(&target("sleeper"), 9)
        .await
        .unwrap_err();
    assert_eq!(err.kind, BackendErrorKind::NotFound, "{err}");
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_with_kill_stops_a_running_task_and_removes_record_and_snapshot() {
    let w = BackendFixture::start().await;
    let meta = w.meta("victim", &["sleep", "1000"]);
    let t = target("victim");
    let pid = w.run(&meta).await;
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::Running { pid }
    );
    w.backend.delete_task(&t, true).await.unwrap();
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::NotFound
    );
    assert!(!berth_testkit::process_alive(pid), "pid {pid} still alive");
    w.backend.delete_container(&t).await.unwrap();
    let c = w.backend.client();
    let stat = c
        .snapshots()
        .stat(c.request(StatSnapshotRequest {
            snapshotter: w.backend.config().snapshotter.clone(),
            key: "victim".into(),
        }))
        .await;
    assert_eq!(
        stat.unwrap_err().code(),
        tonic::Code::NotFound,
        "snapshot removed"
    );
    // A created, never started task is deleted with kill as well.
    let meta = w.meta("unstarted", &["sleep", "1000"]);
    let t = target("unstarted");
    w.backend.create_container(&meta).await.unwrap();
    w.backend.create_task(&t).await.unwrap();
    w.backend.delete_task(&t, true).await.unwrap();
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::NotFound
    );
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_file_receives_stdout_and_stderr() {
    let w = BackendFixture::start().await;
    let logs = berth_testkit::scratch_dir("logs").unwrap();
    let path = logs.path().join("pods/p1/c/0.log");
    let mut meta = w.meta(
        "logger",
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    meta.log_path = path.display().to_string();
    w.run(&meta).await;
    let exit = w.backend.wait_task(&target("logger")).await.unwrap();
    assert_eq!(exit.code, 3);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("to-stdout\n"), "{text:?}");
    assert!(text.contains("to-stderr\n"), "{text:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_score_adj_below_ours_is_clamped_and_the_task_starts() {
    let w = BackendFixture::start().await;
    let mut meta = w.meta("oom", &["sleep", "1000"]);
    meta.config.resources = Some(Resources {
        oom_score_adj: -998,
        memory_limit_in_bytes: 64 << 20,
        ..Resources::default()
    });
    let pid = w.run(&meta).await;
    let ours: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let theirs: i64 = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(theirs, clamp_oom_score_adj(-998, ours));
    // The memory limit reached the container's cgroup (v1 or v2 layout).
    let ns = w.ctd.namespace();
    let v1 = format!("/sys/fs/cgroup/memory/{ns}/oom/memory.limit_in_bytes");
    let v2 = format!("/sys/fs/cgroup/{ns}/oom/memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_joins_its_pods_namespaces_and_gets_image_and_cri_config() {
    let w = BackendFixture::start().await;
    let pause = match w
        .backend
        .task_status(&berth_backend::Target::Sandbox(POD.parse().unwrap()))
        .await
        .unwrap()
    {
        TaskState::Running { pid } => pid,
        other => panic!("pause task {other:?}"),
    };
    let logs = berth_testkit::scratch_dir("cfg").unwrap();
    let mut meta = w.meta(
        "cfg",
        &[
            "sh",
            "-c",
            "trap 'exit $CODE' TERM; [ \"$(pwd)\" = /tmp ] && [ \"$(hostname)\" = host-pod1 ] || exit 1; \
             echo ready; while :; do sleep 0.05; done",
        ],
    );
    meta.config.working_dir = "/tmp".into();
    meta.config.envs = vec![("CODE".into(), "7".into())];
    meta.log_path = logs.path().join("cfg.log").display().to_string();
    let pid = w.run(&meta).await;
    common::await_log(&meta.log_path, "ready").await;
    for ns in ["pid", "ipc", "uts"] {
        let mine = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let pod = std::fs::read_link(format!("/proc/{pause}/ns/{ns}")).unwrap();
        assert_eq!(mine, pod, "{ns} namespace shared with the pause process");
    }
    // One shim per pod (the sandbox-id annotation groups them), as under containerd's CRI.
    assert_eq!(
        w.ctd.shim_pids().len(),
        1,
        "the pod's pause and container tasks share one shim"
    );
    let mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(
        mnt,
        std::fs::read_link(format!("/proc/{pause}/ns/mnt")).unwrap()
    );
    w.backend.kill_task(&target("cfg"), 15).await.unwrap();
    let exit = w.backend.wait_task(&target("cfg")).await.unwrap();
    assert_eq!(exit.code, 7, "cwd, hostname and env as configured");
    // No command and no args: the image's Cmd (["sh"]) runs and exits 0 on a null stdin.
    let meta = w.meta("imgcmd", &[]);
    w.run(&meta).await;
    assert_eq!(
        w.backend.wait_task(&target("imgcmd")).await.unwrap().code,
        0
    );
    let listing = w.backend.list().await.unwrap();
    assert!(listing.containers.iter().any(|c| c.id == "imgcmd"));
    let labels = w
        .backend
        .client()
        .containers()
        .get(
            w.backend
                .client()
                .request(containerd_client::services::v1::GetContainerRequest {
                    id: "imgcmd".into(),
                }),
        )
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap()
        .labels;
    assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
    w.cleanup().await;
}
