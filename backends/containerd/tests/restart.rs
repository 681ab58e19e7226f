//! containerd crashes and shim deaths against a real containerd + runc
//! (docs/containerd-behaviour.md §9.4): tasks
//! outlive containerd, a broken wait is `Unavailable` (never an exit), exits during an
//! outage keep their real code and time, a dead shim leaves the record and no task.

mod common;

use std::time::Duration;

use berth_backend::{Backend, BackendErrorKind, Target, TaskState};
use berth_core::SandboxId;
use common::{BackendFixture, POD, now_ns, target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_sigkilled_while_a_task_runs() {
    let mut w = BackendFixture::start().await;
    let t = target("survivor");
    let pid = w.run(&w.meta("survivor", &["sleep", "1000"])).await;
    let waiter = {
        let (b, t) = (w.backend.clone(), t.clone());
        tokio::spawn(async move { b.wait_task(&t).await })
    };
    // Let the wait reach containerd (if it has not, it fails with connection refused, which
    // is Unavailable as well).
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.ctd.kill9().unwrap();
    let broken = waiter.await.unwrap();
    let e = broken.expect_err("a broken wait is not an exit");
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    let e = w.backend.task_status(&t).await.unwrap_err();
    assert_eq!(
        e.kind,
        BackendErrorKind::Unavailable,
        "containerd down: {e}"
    );
    assert!(
        berth_testkit::process_alive(pid),
        "the task outlives containerd"
    );

    w.ctd.start_again().await.unwrap();
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::Running { pid }
    );
    let waiter = {
        let (b, t) = (w.backend.clone(), t.clone());
        tokio::spawn(async move { b.wait_task(&t).await })
    };
    w.backend.kill_task(&t, 9).await.unwrap();
    let exit = waiter.await.unwrap().unwrap();
    assert_eq!(exit.code, 137);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exits_while_containerd_is_down_is_stopped_with_its_real_code() {
    let mut w = BackendFixture::start().await;
    let logs = berth_testkit::scratch_dir("outage").unwrap();
    let mut meta = w.meta(
        "leaver",
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    meta.log_path = logs.path().join("leaver.log").display().to_string();
    let t = target("leaver");
    let pid = w.run(&meta).await;
    common::await_log(&meta.log_path, "ready").await;

    w.ctd.kill9().unwrap();
    let outage_start = now_ns();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Wait until the shim has reaped it (no /proc entry at all, not even a zombie).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} never reaped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The shim stamps the exit just after reaping; keep containerd down a while longer so
    // the whole exit falls inside the outage.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outage_end = now_ns();
    w.ctd.start_again().await.unwrap();

    let state = w.backend.task_status(&t).await.unwrap();
    let TaskState::Stopped(exit) = state else {
        panic!("expected Stopped, got {state:?}");
    };
    assert_eq!(exit.code, 7);
    assert!(
        outage_start <= exit.exited_at && exit.exited_at <= outage_end,
        "exit at {} outside the outage [{outage_start}, {outage_end}]",
        exit.exited_at
    );
    assert_eq!(w.backend.wait_task(&t).await.unwrap(), exit);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shim_leaves_the_record_and_no_task() {
    let w = BackendFixture::start().await;
    let t = target("orphan");
    w.run(&w.meta("orphan", &["sleep", "1000"])).await;
    let waiter = {
        let (b, t) = (w.backend.clone(), t.clone());
        tokio::spawn(async move { b.wait_task(&t).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = w.ctd.kill_shims().await.unwrap();
    assert_eq!(
        killed.len(),
        1,
        "one shim serves the pod (pause and container): {killed:?}"
    );
    let e = waiter
        .await
        .unwrap()
        .expect_err("a broken wait is not an exit");
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    // Tasks.Get says NotFound at once (the shim is unreachable); Kill and Delete say
    // `ttrpc: closed` (Unavailable) until containerd has cleaned up after the dead shim, then
    // NotFound as well.
    let pod = Target::Sandbox(SandboxId::new(POD).unwrap());
    for t in [&t, &pod] {
        assert_eq!(w.backend.task_status(t).await.unwrap(), TaskState::NotFound);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match w.backend.delete_task(t, true).await {
                Err(e) if e.kind == BackendErrorKind::NotFound => break,
                Err(e) if e.kind == BackendErrorKind::Unavailable => {}
                other => panic!("{t}: delete of a task whose shim died: {other:?}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{t}: never cleaned up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(w.backend.task_status(t).await.unwrap(), TaskState::NotFound);
    }
    let listing = w.backend.list().await.unwrap();
    assert_eq!(listing.containers.len(), 1);
    assert_eq!(listing.containers[0].id, "orphan");
    assert!(listing.containers[0].meta.is_ok());
    assert_eq!(listing.sandboxes.len(), 1);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_task_survives_a_restart_as_created_and_still_starts() {
    let mut w = BackendFixture::start().await;
    let t = target("dormant");
    w.backend
        .create_container(&w.meta("dormant", &["sh", "-c", "exit 4"]))
        .await
        .unwrap();
    let pid = w.backend.create_task(&t).await.unwrap();
    w.ctd.restart().await.unwrap();
    assert_eq!(
        w.backend.task_status(&t).await.unwrap(),
        TaskState::Created { pid }
    );
    assert_eq!(w.backend.start_task(&t).await.unwrap(), pid);
    assert_eq!(w.backend.wait_task(&t).await.unwrap().code, 4);
    w.cleanup().await;
}
