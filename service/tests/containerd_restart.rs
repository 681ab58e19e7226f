//! containerd SIGKILLed and restarted under a live service (docs/architecture.md §3.1: a broken
//! connection is not an exit): every wait breaks, yet no container is reported exited that
//! did not exit; the exits that happened during the outage are recorded with their real
//! codes and the shim's exit times; the survivors are watched again afterwards.

#![cfg(not(madsim))]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use berth_backend::TaskState;
use berth_core::{ContainerState, EventKind, SandboxState, Target};
use common::{ServiceFixture, await_log, eventually, exits_on_term, now_ns, signal, sleeper};
use rustix::process::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_sigkilled_under_a_live_service() {
    let mut w = ServiceFixture::start().await;
    let (node, knobs) = w.ready_gated_node().await;
    let pod = w.pod(&node, "pod").await;
    let pause_pid = node.sandbox_status(pod.as_str()).await.expect("pod").pid;
    let mut leavers = Vec::new();
    for code in [11, 12, 13] {
        let (id, pid) = w
            .run(&node, &pod, &format!("leaver{code}"), exits_on_term(code))
            .await;
        await_log(&node.status_of(id.as_str()).await.meta.log_path, "ready").await;
        leavers.push((id, pid, code));
    }
    let mut survivors = Vec::new();
    for i in 0..3 {
        survivors.push(w.run(&node, &pod, &format!("survivor{i}"), sleeper()).await);
    }
    let mut events = node.events();
    let wait_errors = knobs.wait_errors.load(Ordering::SeqCst);
    let status_errors = knobs.status_errors.load(Ordering::SeqCst);

    w.ctd.kill9().expect("kill containerd");
    let outage_start = now_ns();
    // Every wait (6 containers and the pause) breaks and the re-syncs fail against the dead
    // socket: the service has had every chance to mistake the outage for exits.
    eventually("every wait broke and a re-sync failed", || async {
        let waits = knobs.wait_errors.load(Ordering::SeqCst) - wait_errors;
        let gets = knobs.status_errors.load(Ordering::SeqCst) - status_errors;
        if waits >= 7 && gets >= 7 {
            Ok(())
        } else {
            Err(format!("{waits} broken waits, {gets} failed Tasks.Get"))
        }
    })
    .await;
    for (id, view) in node.containers().await {
        assert_eq!(
            view.state,
            ContainerState::Running,
            "{id} during the outage"
        );
    }
    // Three containers exit while containerd is down; their shims keep the exit.
    for (_, pid, _) in &leavers {
        signal(*pid, Signal::TERM);
    }
    for (id, pid, _) in &leavers {
        eventually(
            &format!("{id} (pid {pid}) is reaped by its shim"),
            || async {
                if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    Err("still in /proc".to_owned())
                } else {
                    Ok(())
                }
            },
        )
        .await;
    }
    w.ctd.start_again().await.expect("restart containerd");
    let outage_end = now_ns();

    for (id, _, code) in &leavers {
        let view = node
            .await_state(
                &format!("{id} is EXITED"),
                id.as_str(),
                ContainerState::Exited,
            )
            .await;
        assert_eq!(view.status.exit_code, *code, "{id}: {view:?}");
        assert_eq!(view.status.reason, "", "{id}: {view:?}");
        assert!(
            outage_start <= view.status.finished_at && view.status.finished_at <= outage_end,
            "{id}: exit at {} outside the outage [{outage_start}, {outage_end}]",
            view.status.finished_at
        );
    }
    for (id, pid) in &survivors {
        let view = node.status_of(id.as_str()).await;
        assert_eq!(view.state, ContainerState::Running, "{id}: {view:?}");
        assert_eq!(view.status.pid, *pid, "{id}: {view:?}");
        assert_eq!(w.task(id).await, TaskState::Running { pid: *pid }, "{id}");
    }
    let sandbox = node.sandbox_status(pod.as_str()).await.expect("pod");
    assert_eq!(sandbox.state, SandboxState::Ready, "{sandbox:?}");
    assert_eq!(sandbox.pid, pause_pid);

    // The event stream says the same: exactly the three leavers stopped.
    let mut stopped = BTreeSet::new();
    while let Ok(event) = events.try_recv() {
        if event.kind == EventKind::Stopped {
            stopped.insert(event.target);
        }
    }
    let expected: BTreeSet<Target> = leavers
        .iter()
        .map(|(id, _, _)| Target::Container(id.clone()))
        .collect();
    assert_eq!(stopped, expected, "Stopped events");

    // The survivors are watched again: an exit now is recorded with its real code.
    let (id, pid) = &survivors[0];
    signal(*pid, Signal::KILL);
    let view = node
        .await_state(
            &format!("{id} is EXITED after SIGKILL"),
            id.as_str(),
            ContainerState::Exited,
        )
        .await;
    assert_eq!(view.status.exit_code, 137, "{view:?}");

    // No task is left behind for what exited.
    eventually("only the live tasks remain", || async {
        let live = w.live_tasks().await;
        let want: BTreeSet<String> = survivors[1..]
            .iter()
            .map(|(id, _)| Target::Container(id.clone()).to_string())
            .chain([Target::Sandbox(pod.clone()).to_string()])
            .collect();
        let have: BTreeSet<String> = live.keys().cloned().collect();
        if have == want {
            Ok(())
        } else {
            Err(format!("{live:?}"))
        }
    })
    .await;
    w.finish(node).await;
}
