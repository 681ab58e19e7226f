//! The CRI verbs through the service against a real containerd + runc: stop racing start
//! (docs/architecture.md §3.7), removal of running and UNKNOWN containers and of pods
//! (docs/containerd-behaviour.md §4.4, §6.8),
//! unknown ids (docs/containerd-behaviour.md §4.3, §4.4), Unavailable during recovery
//! (docs/containerd-behaviour.md §6.1), graceful
//! shutdown.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use berth_backend::{Backend, TaskState};
use berth_core::{CommandError, ContainerState, SandboxState};
use berth_service::{ContainerFilter, SandboxFilter, ServiceError};
use berth_testkit::process_alive;
use common::wrappers::Knobs;
use common::{
    STOP_TIMEOUT, ServiceFixture, await_process_gone, is_container_not_found, sleeper,
    start_held_at_gate,
};

/// `sh` that exits 0 on SIGTERM (checked once a second).
fn polite() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "trap 'exit 0' TERM; while true; do sleep 1; done".into(),
    ]
}

/// Panics, listing `failures`, unless every one of the `tried` `request`s (on `noun`)
/// succeeded at the first try.
fn assert_all_first_try(request: &str, noun: &str, failures: &[String], tried: usize) {
    assert!(
        failures.is_empty(),
        "{request} failed at the first try for {} of {tried} {noun}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// docs/architecture.md §3.7: a StopContainer that races a StartContainer ends with the container
/// stopped and no task left (containerd makes such a stop a no-op and the container runs
/// on). First with the stop landing for sure between `Tasks.Create` and `Tasks.Start`, then
/// issued concurrently with the start at a few staggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_racing_start_ends_stopped() {
    let w = ServiceFixture::start().await;
    let (node, knobs) = w.ready_gated_node().await;
    let pod = w.pod(&node, "pod").await;

    // The stop arrives while the start is held just before Tasks.Start.
    let id = w.create(&node, &pod, "held", polite()).await;
    let start = start_held_at_gate(&node, &id, &knobs).await;
    let mut stop = {
        let (svc, id) = (node.svc.clone(), id.clone());
        Box::pin(async move { svc.stop_container(id.as_str(), STOP_TIMEOUT).await })
    };
    // The first poll sends the request; requests are served in order, so once a later one
    // is answered the stop has been handled, and it must wait for the start.
    assert!(futures::poll!(&mut stop).is_pending());
    let during = node.status_of(id.as_str()).await;
    assert_eq!(during.state, ContainerState::Created, "{during:?}");
    assert!(
        futures::poll!(&mut stop).is_pending(),
        "the stop waits for the start to settle"
    );
    knobs.container_start.open();
    start.await.expect("join").expect("start succeeds");
    stop.await.expect("stop succeeds");
    let after = node.status_of(id.as_str()).await;
    assert_eq!(after.state, ContainerState::Exited, "{after:?}");
    assert!(
        [0, 143].contains(&after.status.exit_code),
        "SIGTERM, trapped or not: {after:?}"
    );
    w.await_no_task("no task is left", &id).await;

    // Free races: the stop issued together with the start, or a little after it.
    for (i, stagger_ms) in [0u64, 0, 1, 3, 10, 30, 100].into_iter().enumerate() {
        let id = w.create(&node, &pod, &format!("racer{i}"), polite()).await;
        let (started, stopped) = tokio::join!(node.start_container(id.as_str()), async {
            tokio::time::sleep(Duration::from_millis(stagger_ms)).await;
            node.stop_container(id.as_str(), STOP_TIMEOUT).await
        });
        started.unwrap_or_else(|e| panic!("racer{i}: start: {e}"));
        stopped.unwrap_or_else(|e| panic!("racer{i}: stop: {e}"));
        let after = node.status_of(id.as_str()).await;
        assert_eq!(
            after.state,
            ContainerState::Exited,
            "racer{i} (stop {stagger_ms} ms after start): {after:?}"
        );
        w.await_no_task(&format!("racer{i} has no task left"), &id)
            .await;
    }
    w.finish(node).await;
}

/// docs/containerd-behaviour.md §4.4 (measured: removing a RUNNING and an UNKNOWN container both
/// succeed): the
/// container is killed, its task and record deleted, its checkpoint gone, at the first
/// RemoveContainer. Several running ones, since removal right after the forced exit is
/// where a race would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_running_and_unknown_containers() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let mut running = Vec::new();
    for i in 0..4 {
        running.push(w.run(&node, &pod, &format!("run{i}"), sleeper()).await);
    }
    let (unknown, unknown_pid) = w.run(&node, &pod, "unknown", sleeper()).await;
    node.crash().await;
    std::fs::write(w.store().status_path(&unknown), b"garbage").expect("damage checkpoint");
    let (node, knobs) = w.ready_gated_node().await;
    assert_eq!(
        node.status_of(unknown.as_str()).await.state,
        ContainerState::Unknown
    );

    let mut removed = running.clone();
    removed.push((unknown, unknown_pid));
    let mut failures = Vec::new();
    for (id, pid) in &removed {
        let before = node.status_of(id.as_str()).await.state;
        if let Err(e) = node.remove_container(id.as_str()).await {
            failures.push(format!("{before} {id}: {e}"));
            continue;
        }
        assert!(
            is_container_not_found(&node.container_status(id.as_str()).await),
            "{id} is gone from the service"
        );
        assert_eq!(w.task(id).await, TaskState::NotFound, "{id}: task");
        let listing = w.observer.list().await.expect("list");
        assert!(
            listing.containers.iter().all(|l| l.id != id.as_str()),
            "{id}: containerd record left"
        );
        assert!(
            !w.root().join("containers").join(id.as_str()).exists(),
            "{id}: checkpoint directory left"
        );
        await_process_gone(&format!("{id}'s process is gone"), *pid).await;
    }
    assert_all_first_try("RemoveContainer", "containers", &failures, removed.len());
    knobs.assert_no_overlapping_deletes();
    w.finish(node).await;
}

/// RemovePodSandbox of Ready pods with a running container each succeeds at the first
/// try: containers killed and removed, pause task and record deleted. (Eight pods: a race
/// between two deletes of one task would hit at least one of them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_ready_pods_with_running_containers() {
    let w = ServiceFixture::start().await;
    let (node, knobs) = w.ready_gated_node().await;
    let mut pods = Vec::new();
    for i in 0..8 {
        let pod = w.pod(&node, &format!("pod{i}")).await;
        let (id, _) = w.run(&node, &pod, "app", sleeper()).await;
        pods.push((pod, id));
    }
    let mut failures = Vec::new();
    for (pod, id) in &pods {
        if let Err(e) = node.remove_pod_sandbox(pod.as_str()).await {
            failures.push(format!("pod {pod}: {e}"));
            continue;
        }
        assert!(node.sandbox_status(pod.as_str()).await.is_err(), "{pod}");
        assert!(node.container_status(id.as_str()).await.is_err(), "{id}");
        assert_eq!(w.pause_task(pod).await, TaskState::NotFound, "{pod}");
        assert_eq!(w.task(id).await, TaskState::NotFound, "{id}");
    }
    assert_all_first_try("RemovePodSandbox", "pods", &failures, pods.len());
    knobs.assert_no_overlapping_deletes();
    w.finish(node).await;
}

/// docs/containerd-behaviour.md §4.3 / §4.4 (containerd ≥ 1.6.35 / 1.7.21 / 2.0): stop and remove
/// of ids nobody
/// knows succeed, and change nothing; start and status of them say NotFound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_remove_of_unknown_ids_succeed() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let (id, pid) = w.run(&node, &pod, "bystander", sleeper()).await;
    let before = node.containers().await;

    let ghost = "no-such-container";
    node.stop_container(ghost, STOP_TIMEOUT)
        .await
        .expect("StopContainer of an unknown id");
    node.remove_container(ghost)
        .await
        .expect("RemoveContainer of an unknown id");
    node.stop_pod_sandbox("no-such-pod")
        .await
        .expect("StopPodSandbox of an unknown id");
    node.remove_pod_sandbox("no-such-pod")
        .await
        .expect("RemovePodSandbox of an unknown id");
    assert!(
        is_container_not_found(&node.start_container(ghost).await),
        "StartContainer of an unknown id"
    );
    assert!(
        is_container_not_found(&node.container_status(ghost).await),
        "ContainerStatus of an unknown id"
    );

    // Removing twice: the second is a removal of an id that no longer exists.
    let gone = w.create(&node, &pod, "gone", sleeper()).await;
    node.remove_container(gone.as_str()).await.expect("remove");
    node.remove_container(gone.as_str())
        .await
        .expect("remove again");
    node.stop_container(gone.as_str(), STOP_TIMEOUT)
        .await
        .expect("stop after remove");

    assert_eq!(node.containers().await, before, "nothing else changed");
    assert_eq!(w.task(&id).await, TaskState::Running { pid });
    w.finish(node).await;
}

/// docs/containerd-behaviour.md §6.1: until recovery has finished every request is answered
/// Unavailable (and
/// changes nothing); afterwards the recovered state is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_recovery_answer_unavailable() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let (id, pid) = w.run(&node, &pod, "kept", sleeper()).await;
    let before = node.status_of(id.as_str()).await;
    node.crash().await;

    let knobs = Knobs::new();
    knobs.list.arm();
    let node = w.gated_node(&knobs).await;
    knobs.list.await_one("recovery reaches its listing").await;
    assert!(!node.is_ready());
    let unavailable = |what: &str, r: Result<(), ServiceError>| {
        assert_eq!(
            r,
            Err(ServiceError::Command(CommandError::Recovering)),
            "{what} during recovery"
        );
    };
    unavailable(
        "ListContainers",
        node.list_containers(ContainerFilter::default())
            .await
            .map(drop),
    );
    unavailable(
        "ContainerStatus",
        node.container_status(id.as_str()).await.map(drop),
    );
    unavailable(
        "ListPodSandbox",
        node.list_sandboxes(SandboxFilter::default())
            .await
            .map(drop),
    );
    unavailable(
        "PodSandboxStatus",
        node.sandbox_status(pod.as_str()).await.map(drop),
    );
    unavailable(
        "RunPodSandbox",
        node.run_pod_sandbox(w.pod_config("other")).await.map(drop),
    );
    unavailable(
        "CreateContainer",
        node.create_container(pod.as_str(), w.container_config("x", sleeper()))
            .await
            .map(drop),
    );
    unavailable("StartContainer", node.start_container(id.as_str()).await);
    unavailable(
        "StopContainer",
        node.stop_container(id.as_str(), STOP_TIMEOUT).await,
    );
    unavailable("RemoveContainer", node.remove_container(id.as_str()).await);
    unavailable("StopPodSandbox", node.stop_pod_sandbox(pod.as_str()).await);
    unavailable(
        "RemovePodSandbox",
        node.remove_pod_sandbox(pod.as_str()).await,
    );
    assert_eq!(
        w.task(&id).await,
        TaskState::Running { pid },
        "nothing was done"
    );

    knobs.list.open();
    node.wait_ready().await.expect("recovery finishes");
    let after = node.status_of(id.as_str()).await;
    assert_eq!(after.state, ContainerState::Running);
    assert_eq!(after.status, before.status);
    assert_eq!(node.containers().await.len(), 1, "nothing was created");
    assert_eq!(node.sandboxes().await.len(), 1);
    w.finish(node).await;
}

/// Graceful shutdown kills nothing: every task still runs in containerd afterwards, and
/// the next instance finds them exactly as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_kills_nothing() {
    let w = ServiceFixture::start().await;
    let node = w.ready_node().await;
    let pod = w.pod(&node, "pod").await;
    let pause_pid = node.sandbox_status(pod.as_str()).await.expect("pod").pid;
    let mut running = Vec::new();
    for i in 0..3 {
        running.push(w.run(&node, &pod, &format!("c{i}"), sleeper()).await);
    }
    let before = node.containers().await;

    node.shut_down().await;
    assert_eq!(
        w.pause_task(&pod).await,
        TaskState::Running { pid: pause_pid }
    );
    for (id, pid) in &running {
        assert_eq!(w.task(id).await, TaskState::Running { pid: *pid }, "{id}");
        assert!(process_alive(*pid), "{id}: pid {pid}");
    }

    let node = w.ready_node().await;
    assert_eq!(node.containers().await, before, "the same containers");
    let sandbox = node.sandbox_status(pod.as_str()).await.expect("pod");
    assert_eq!(sandbox.state, SandboxState::Ready);
    assert_eq!(sandbox.pid, pause_pid);
    w.finish(node).await;
}
