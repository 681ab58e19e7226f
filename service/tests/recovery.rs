//! Recovery after a crash of berth, against a real containerd + runc: every cell of the
//! recovery decision table (core/tests/snapshots/transcripts__recovery_decision_table.snap,
//! docs/containerd-behaviour.md §6.4 with docs/architecture.md §3) that a real system can reach. A
//! crash is the service's runtime
//! shut down with no cleanup at all; the next instance runs on the same checkpoint
//! directory and the same containerd namespace.

#![cfg(not(madsim))]

mod common;

use berth_backend::{CheckpointStore, TaskState};
use berth_core::{CommandError, ContainerState, SandboxState, UNKNOWN_EXIT_CODE, UNKNOWN_REASON};
use berth_service::ServiceError;
use berth_testkit::process_alive;
use common::wrappers::{Hold, HoldingStore, store_gate};
use common::{
    ServiceFixture, await_log, await_process_gone, eventually, exits_on_term,
    is_container_not_found, now_ns, signal, sleeper, start_held_at, start_held_at_gate,
};
use rustix::process::Signal;

/// Table row "RUNNING | Stopped": the task exited while berth was down (its shim alive) →
/// EXITED with the real code and the shim's exit time, persisted, then the task deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_whose_task_stopped_while_down_is_exited_with_its_real_code_and_time() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let (id, pid) = w.run(&node, &pod, "leaver", exits_on_term(7)).await;
    let before = node.status_of(id.as_str()).await;
    await_log(&before.meta.log_path, "ready").await;

    node.crash().await;
    let outage_start = now_ns();
    signal(pid, Signal::TERM);
    let exit = w.await_task_stopped(&id).await;
    assert_eq!(exit.code, 7, "containerd's record of the exit");
    let outage_end = now_ns();

    let node = w.ready_node().await;
    let after = node.status_of(id.as_str()).await;
    assert_eq!(after.state, ContainerState::Exited, "{after:?}");
    assert_eq!(after.status.exit_code, 7, "{after:?}");
    assert_eq!(after.status.reason, "", "{after:?}");
    assert_eq!(after.status.pid, 0, "{after:?}");
    assert_eq!(
        after.status.finished_at, exit.exited_at,
        "the shim's exit time, not the recovery's"
    );
    assert!(
        outage_start <= after.status.finished_at && after.status.finished_at <= outage_end,
        "exit at {} outside the outage [{outage_start}, {outage_end}]",
        after.status.finished_at
    );
    assert_eq!(after.status.created_at, before.status.created_at);
    assert_eq!(after.status.started_at, before.status.started_at);
    let on_disk = w.store().load(&id).await.expect("checkpoint");
    assert_eq!(on_disk, after.status, "the exit is durable");
    w.await_no_task("the exited task is deleted", &id).await;
    w.finish(node).await;
}

/// Table row "RUNNING | not found": the shims were killed while berth was down, so
/// containerd has no task any more → EXITED 255 "Unknown" at the recovery time; the sandbox
/// (its pause shim died too) is NotReady. Both remain removable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_whose_shim_was_killed_while_down_is_exited_255_unknown() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let (id, pid) = w.run(&node, &pod, "victim", sleeper()).await;
    let before = node.status_of(id.as_str()).await;

    node.crash().await;
    let outage_start = now_ns();
    let killed = w.ctd.kill_shims().await.expect("kill shims");
    assert_eq!(
        killed.len(),
        1,
        "one shim serves the pod (pause and container): {killed:?}"
    );

    let node = w.ready_node().await;
    let ready_at = now_ns();
    let after = node.status_of(id.as_str()).await;
    assert_eq!(after.state, ContainerState::Exited, "{after:?}");
    assert_eq!(after.status.exit_code, UNKNOWN_EXIT_CODE, "{after:?}");
    assert_eq!(after.status.reason, UNKNOWN_REASON, "{after:?}");
    assert!(
        outage_start <= after.status.finished_at && after.status.finished_at <= ready_at,
        "the lost exit is stamped with the recovery time: {after:?}"
    );
    assert_eq!(after.status.started_at, before.status.started_at);
    assert_eq!(w.store().load(&id).await.expect("checkpoint"), after.status);
    let sandbox = node.sandbox_status(pod.as_str()).await.expect("sandbox");
    assert_eq!(sandbox.state, SandboxState::NotReady, "{sandbox:?}");

    eventually("no task and no process is left", || async {
        let tasks = w.live_tasks().await;
        if tasks.is_empty() && !process_alive(pid) {
            Ok(())
        } else {
            Err(format!(
                "tasks {tasks:?}, pid {pid} alive: {}",
                process_alive(pid)
            ))
        }
    })
    .await;
    w.finish(node).await;
}

/// Table row "CREATED | Created": berth crashed between `Tasks.Create` and `Tasks.Start`
/// → the task is deleted (its `runc init` killed), the container is CREATED and starts
/// normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_task_create_and_start_deletes_the_task_and_stays_startable() {
    let w = ServiceFixture::start().await;
    let (node, knobs) = w.ready_gated_node().await;
    let pod = w.pod(&node, "pod").await;
    let id = w.create(&node, &pod, "late", sleeper()).await;

    let start = start_held_at_gate(&node, &id, &knobs).await;
    let init_pid = match w.task(&id).await {
        TaskState::Created { pid } => pid,
        other => panic!("expected a Created task, containerd has {other:?}"),
    };
    node.crash().await;
    assert_eq!(
        start.await.expect("join"),
        Err(ServiceError::Stopped),
        "the crashed service never answered"
    );
    let on_disk = w.store().load(&id).await.expect("checkpoint");
    assert_eq!(on_disk.state(), ContainerState::Created, "{on_disk:?}");

    // The next instance's checkpoint writes are held, so the step after the task delete
    // (rewriting the record) is pending for as long as the test wants.
    let writes = store_gate();
    writes.arm();
    let node = {
        let writes = writes.clone();
        w.node_with(move |b, s| (b, HoldingStore::new(s, writes, Hold::Writes)))
            .await
    };
    eventually(
        "recovery deleted the task and rewrites the record",
        || async {
            match (writes.reached(), w.task(&id).await) {
                (1, TaskState::NotFound) => Ok(()),
                other => Err(format!("(writes held, task) = {other:?}")),
            }
        },
    )
    .await;
    // A request served now comes after the driver's step that emitted the held write, so
    // readiness as of that step is visible once it answers (Unavailable or not).
    let _ = node.container_status(id.as_str()).await;
    // If the service says it is ready now, a StartContainer sent now must succeed (at
    // worst after waiting for the record): "answer Unavailable until recovery is done".
    let mut early_start = None;
    if node.is_ready() {
        let (svc, cid) = (node.svc.clone(), id.clone());
        let mut start = Box::pin(async move { svc.start_container(cid.as_str()).await });
        let first = futures::poll!(&mut start); // sends the request
        let _ = node.container_status(id.as_str()).await; // served after it
        early_start = Some(match first {
            std::task::Poll::Ready(answer) => Early::Answered(answer),
            std::task::Poll::Pending => Early::Waiting(start),
        });
    }
    writes.open();
    node.wait_ready().await.expect("recovery finishes");
    let after = node.status_of(id.as_str()).await;
    assert!(
        after.state == ContainerState::Created || early_start.is_some(),
        "{after:?}"
    );
    if early_start.is_none() {
        assert_eq!(after.status, on_disk, "nothing else changed");
    }
    await_process_gone("runc init of the deleted task is gone", init_pid).await;

    if let Some(early) = early_start {
        let answer = match early {
            Early::Answered(answer) => answer,
            Early::Waiting(start) => start.await,
        };
        answer.expect("StartContainer sent once the service said it was ready");
    } else {
        node.start_container(id.as_str())
            .await
            .expect("start after recovery");
    }
    let running = node.status_of(id.as_str()).await;
    assert_eq!(running.state, ContainerState::Running, "{running:?}");
    assert_eq!(
        w.task(&id).await,
        TaskState::Running {
            pid: running.status.pid
        }
    );
    w.finish(node).await;
}

/// A request's answer, or the request still waiting for one.
enum Early<F> {
    Answered(Result<(), ServiceError>),
    Waiting(F),
}

/// Table row "CREATED | Running": berth crashed after `Tasks.Start` but before the RUNNING
/// record was durable → RUNNING with the task's pid, started at the recovery time, and its
/// exit watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_start_before_the_persist_recovers_running() {
    let w = ServiceFixture::start().await;
    let gate = store_gate();
    let node = {
        let gate = gate.clone();
        w.node_with(move |b, s| (b, HoldingStore::new(s, gate, Hold::Running)))
            .await
    };
    node.wait_ready().await.expect("ready");
    let pod = w.pod(&node, "pod").await;
    let id = w.create(&node, &pod, "unrecorded", sleeper()).await;
    let created = node.status_of(id.as_str()).await;

    let start = start_held_at(
        &node,
        &id,
        &gate,
        "StartContainer reaches the RUNNING persist",
    )
    .await;
    let pid = match w.task(&id).await {
        TaskState::Running { pid } => pid,
        other => panic!("expected a Running task, containerd has {other:?}"),
    };
    let crash_at = now_ns();
    node.crash().await;
    assert_eq!(start.await.expect("join"), Err(ServiceError::Stopped));
    assert_eq!(
        w.store().load(&id).await.expect("checkpoint").state(),
        ContainerState::Created,
        "the RUNNING record never reached the disk"
    );

    let node = w.ready_node().await;
    let ready_at = now_ns();
    let after = node.status_of(id.as_str()).await;
    assert_eq!(after.state, ContainerState::Running, "{after:?}");
    assert_eq!(after.status.pid, pid, "{after:?}");
    assert!(
        crash_at <= after.status.started_at && after.status.started_at <= ready_at,
        "started at the recovery time: {after:?}"
    );
    assert_eq!(after.status.created_at, created.status.created_at);
    assert_eq!(
        w.store().load(&id).await.expect("checkpoint"),
        after.status,
        "recovery made the RUNNING record durable"
    );

    // The exit is watched: a kill from outside is recorded with its real code.
    signal(pid, Signal::KILL);
    let exited = node
        .await_state(
            "the killed container is EXITED",
            id.as_str(),
            ContainerState::Exited,
        )
        .await;
    assert_eq!(exited.status.exit_code, 137, "{exited:?}");
    w.finish(node).await;
}

/// Table row "EXITED | not found": an exited container comes back exactly as it was, on
/// disk and in memory, restart after restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exited_container_is_unchanged_across_two_restarts() {
    let w = ServiceFixture::start().await;
    let mut node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let id = w
        .create(
            &node,
            &pod,
            "done",
            vec!["sh".into(), "-c".into(), "exit 3".into()],
        )
        .await;
    node.start_container(id.as_str()).await.expect("start");
    let exited = node
        .await_state("the container exits", id.as_str(), ContainerState::Exited)
        .await;
    assert_eq!(exited.status.exit_code, 3, "{exited:?}");
    w.await_no_task("the exited task is deleted", &id).await;
    let on_disk = w.store().load(&id).await.expect("checkpoint");
    assert_eq!(on_disk, exited.status);

    for restart in 1..=2 {
        node.crash().await;
        node = w.ready_node().await;
        let after = node.status_of(id.as_str()).await;
        assert_eq!(after.state, ContainerState::Exited, "restart {restart}");
        assert_eq!(after.status, exited.status, "restart {restart}");
        assert_eq!(
            w.store().load(&id).await.expect("checkpoint"),
            on_disk,
            "restart {restart}: the checkpoint is untouched"
        );
        assert_eq!(w.task(&id).await, TaskState::NotFound, "restart {restart}");
    }
    w.finish(node).await;
}

/// Table rows "unreadable | Running" and "unreadable | not found": a checkpoint full of
/// garbage → UNKNOWN (created time from the containerd record, never 0), the UNKNOWN is
/// persisted so a second restart cannot turn it RUNNING (containerd's bug,
/// docs/containerd-behaviour.md §6.6), start
/// is refused, and both are removable (the live task killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_is_unknown_removable_and_never_running() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let (live, pid) = w.run(&node, &pod, "live", sleeper()).await;
    let idle = w.create(&node, &pod, "idle", sleeper()).await;

    node.crash().await;
    let store = w.store();
    for id in [&live, &idle] {
        std::fs::write(store.status_path(id), b"\x00\xffnot a checkpoint{{{")
            .expect("damage the checkpoint");
        assert!(
            matches!(
                store.load(id).await,
                Err(berth_backend::LoadError::Corrupt { .. })
            ),
            "{id}: the file no longer decodes"
        );
    }

    let mut node = w.ready_node().await;
    for restart in 1..=2 {
        let l = node.status_of(live.as_str()).await;
        assert_eq!(l.state, ContainerState::Unknown, "restart {restart}: {l:?}");
        assert_eq!(l.status.pid, pid, "restart {restart}: {l:?}");
        assert!(l.status.created_at > 0, "restart {restart}: {l:?}");
        let i = node.status_of(idle.as_str()).await;
        assert_eq!(i.state, ContainerState::Unknown, "restart {restart}: {i:?}");
        assert_eq!(i.status.pid, 0, "restart {restart}: {i:?}");
        assert!(i.status.created_at > 0, "restart {restart}: {i:?}");
        for id in [&live, &idle] {
            let on_disk = store.load(id).await.expect("recovery rewrote it");
            assert!(on_disk.unknown, "restart {restart}: {id}: {on_disk:?}");
        }
        match node.start_container(idle.as_str()).await {
            Err(ServiceError::Command(CommandError::InvalidState { state, .. })) => {
                assert_eq!(state, ContainerState::Unknown)
            }
            other => panic!("restart {restart}: start of an UNKNOWN container: {other:?}"),
        }
        assert_eq!(w.task(&live).await, TaskState::Running { pid });
        if restart == 1 {
            node.crash().await;
            node = w.ready_node().await;
        }
    }

    for id in [&live, &idle] {
        node.remove_container(id.as_str())
            .await
            .unwrap_or_else(|e| panic!("remove UNKNOWN {id}: {e}"));
        assert!(
            is_container_not_found(&node.container_status(id.as_str()).await),
            "{id} is gone"
        );
        assert_eq!(w.task(id).await, TaskState::NotFound);
    }
    await_process_gone("the UNKNOWN container's process is killed", pid).await;
    w.finish(node).await;
}
