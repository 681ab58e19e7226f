//! The simulated containerd behaves as containerd 1.6 was measured to
//! (docs/containerd-behaviour.md §9.1–9.4, docs/containerd-behaviour.md §6.1).

mod common;

use std::time::Duration;

use berth_backend::{Backend, BackendErrorKind, Resources, ResourcesOf, TaskState};
use berth_simbackend::examples::{container_meta, sandbox_meta};
use berth_simbackend::{ExitCause, ProcessPlan, ShimState, SimBackend, SimConfig};
use common::{ct, pod, pod_id, run, sb};

fn sim() -> SimBackend {
    SimBackend::with_config(1, SimConfig::instant())
}

const SECOND: i64 = 1_000_000_000;

#[tokio::test(start_paused = true)]
async fn records_persist_across_a_containerd_restart_and_list_returns_them() {
    let sim = sim();
    pod(&sim, "p1").await;
    let t0 = sim.now_wall();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t1 = sim.now_wall();
    sim.create_container(&container_meta("p1", "c2"))
        .await
        .unwrap();
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    let t2 = sim.now_wall();
    sim.restart_containerd(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listing = sim.list().await.unwrap();
    let ids: Vec<&str> = listing.containers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2"], "sorted by id");
    assert_eq!(listing.sandboxes.len(), 1);
    assert!(listing.sandboxes[0].created_at <= t0);
    let created = listing.containers[0].created_at;
    assert!(t1 <= created && created <= t2, "{t1} <= {created} <= {t2}");
    assert!(created >= t0 + 2 * SECOND);
    assert_eq!(
        listing.containers[0].meta.as_ref().unwrap(),
        &container_meta("p1", "c1")
    );
    let truth = sim.truth();
    let rec = &truth.records["c1"];
    assert_eq!(rec.pod, pod_id("p1"));
    assert_eq!(rec.labels["io.berth.kind"], "container");
    assert_eq!(rec.labels["io.berth.sandbox"], "p1");
    assert_eq!(truth.restarts.len(), 1);
    // The pause task survived the restart.
    assert!(matches!(
        sim.task_status(&sb("p1")).await.unwrap(),
        TaskState::Running { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn every_call_fails_fast_with_unavailable_while_containerd_is_down() {
    let sim = sim();
    pod(&sim, "p1").await;
    sim.restart_containerd(Duration::from_secs(5));
    assert!(!sim.is_containerd_up());
    let before = tokio::time::Instant::now();
    let errors = [
        sim.list().await.unwrap_err(),
        sim.task_status(&sb("p1")).await.unwrap_err(),
        sim.wait_task(&sb("p1")).await.unwrap_err(),
        sim.kill_task(&sb("p1"), 9).await.unwrap_err(),
        sim.create_container(&container_meta("p1", "c1"))
            .await
            .unwrap_err(),
    ];
    assert_eq!(tokio::time::Instant::now(), before, "no call waited");
    for e in errors {
        assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(sim.is_containerd_up());
    assert!(matches!(
        sim.task_status(&sb("p1")).await.unwrap(),
        TaskState::Running { .. }
    ));
    assert!(
        !sim.truth().records.contains_key("c1"),
        "a refused call has no effect"
    );
}

#[tokio::test(start_paused = true)]
async fn a_planned_exit_is_waited_with_its_real_code_and_time() {
    let sim = sim();
    pod(&sim, "p1").await;
    let pid = run(
        &sim,
        "p1",
        "c1",
        ProcessPlan::exit(Duration::from_secs(7), 42),
    )
    .await;
    let started = sim.truth().tasks["c1"].started_at;
    assert_eq!(sim.truth().tasks["c1"].exit_due, Some(started + 7 * SECOND));
    // The wait blocks until the exit, 7 s later.
    let exit = sim.wait_task(&ct("c1")).await.unwrap();
    assert_eq!(exit.code, 42);
    assert!(!exit.synthetic);
    assert_eq!(exit.exited_at, started + 7 * SECOND);
    assert!(sim.now_wall() >= exit.exited_at);
    // The shim keeps the status: later waits answer at once with the same exit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap(), exit);
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Stopped(exit)
    );
    let real = sim.truth().last_exit("c1").cloned().unwrap();
    assert_eq!(
        (real.pid, real.code, real.exited_at, real.cause),
        (pid, 42, exit.exited_at, ExitCause::Planned)
    );
    assert!(real.started && !real.shim_died);
}

#[tokio::test(start_paused = true)]
async fn a_wait_blocks_while_the_task_runs_and_several_waiters_get_the_same_exit() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    let t = ct("c1");
    let killer = async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let before = sim.now_wall();
        sim.kill_task(&t, 9).await.unwrap();
        (before, sim.now_wall())
    };
    let (a, b, (before, after)) = tokio::join!(sim.wait_task(&t), sim.wait_task(&t), killer);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a.code, 137);
    assert!(
        before <= a.exited_at && a.exited_at <= after,
        "exited when killed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_breaks_on_a_containerd_restart_and_the_task_lives_on() {
    let sim = sim();
    pod(&sim, "p1").await;
    let pid = run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    let t = ct("c1");
    let restarter = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sim.restart_containerd(Duration::from_millis(300));
    };
    let (waited, ()) = tokio::join!(sim.wait_task(&t), restarter);
    let e = waited.expect_err("a broken wait is not an exit");
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sim.task_status(&t).await.unwrap(),
        TaskState::Running { pid }
    );
    assert!(sim.exits().iter().all(|e| e.target != t), "nothing exited");
    // A fresh wait works again.
    let killer = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.kill_task(&t, 9).await.unwrap();
    };
    let (exit, ()) = tokio::join!(sim.wait_task(&t), killer);
    assert_eq!(exit.unwrap().code, 137);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_exits_while_containerd_is_down_is_stopped_with_its_real_time() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(
        &sim,
        "p1",
        "c1",
        ProcessPlan::exit(Duration::from_secs(2), 7),
    )
    .await;
    let start = sim.truth().tasks["c1"].started_at;
    sim.restart_containerd(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let up = sim.now_wall();
    let state = sim.task_status(&ct("c1")).await.unwrap();
    let TaskState::Stopped(exit) = state else {
        panic!("expected Stopped, got {state:?}");
    };
    assert_eq!(exit.code, 7);
    assert_eq!(exit.exited_at, start + 2 * SECOND);
    assert!(exit.exited_at < up);
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap(), exit);
    sim.delete_task(&ct("c1"), false).await.unwrap();
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn kill_gives_137_for_sigkill_143_for_sigterm_unless_ignored() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(&sim, "p1", "term", ProcessPlan::forever()).await;
    run(&sim, "p1", "kill", ProcessPlan::forever()).await;
    run(&sim, "p1", "deaf", ProcessPlan::forever().ignoring_term()).await;
    sim.kill_task(&ct("term"), 15).await.unwrap();
    sim.kill_task(&ct("kill"), 9).await.unwrap();
    sim.kill_task(&ct("deaf"), 15).await.unwrap();
    assert_eq!(sim.wait_task(&ct("term")).await.unwrap().code, 143);
    assert_eq!(sim.wait_task(&ct("kill")).await.unwrap().code, 137);
    assert!(
        matches!(
            sim.task_status(&ct("deaf")).await.unwrap(),
            TaskState::Running { .. }
        ),
        "a handler-less PID 1 ignores SIGTERM"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.kill_task(&ct("deaf"), 9).await.unwrap();
    assert_eq!(sim.wait_task(&ct("deaf")).await.unwrap().code, 137);
    let e = sim.kill_task(&ct("deaf"), 9).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound);
    assert!(e.message.contains("process already finished"), "{e}");
    let causes: Vec<ExitCause> = sim.exits().iter().map(|e| e.cause).collect();
    assert_eq!(
        causes,
        [
            ExitCause::Signal(15),
            ExitCause::Signal(9),
            ExitCause::Signal(9)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_process_that_handles_sigterm_exits_with_its_own_code_and_signals_are_logged() {
    let sim = sim();
    pod(&sim, "p1").await;
    let plan = ProcessPlan::forever().handling_term(Duration::from_millis(300), 3);
    run(&sim, "p1", "grace", plan).await;
    run(&sim, "p1", "late", plan).await;
    // Its planned exit comes first: the handler does not delay it.
    let soon =
        ProcessPlan::exit(Duration::from_millis(100), 7).handling_term(Duration::from_secs(5), 3);
    run(&sim, "p1", "soon", soon).await;
    let t0 = sim.now_wall();
    sim.kill_task(&ct("grace"), 15).await.unwrap();
    sim.kill_task(&ct("late"), 15).await.unwrap();
    sim.kill_task(&ct("soon"), 15).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A second SIGTERM does not reset the shutdown; SIGKILL during it ends it with 137.
    sim.kill_task(&ct("grace"), 15).await.unwrap();
    sim.kill_task(&ct("late"), 9).await.unwrap();
    let grace = sim.wait_task(&ct("grace")).await.unwrap();
    assert_eq!(grace.code, 3);
    assert_eq!((grace.exited_at - t0) / 1_000_000, 300);
    assert_eq!(sim.wait_task(&ct("late")).await.unwrap().code, 137);
    assert_eq!(sim.wait_task(&ct("soon")).await.unwrap().code, 7);
    let causes: Vec<(String, ExitCause)> = sim
        .exits()
        .iter()
        .filter(|e| e.target.as_str() != "p1")
        .map(|e| (e.target.as_str().to_owned(), e.cause))
        .collect();
    assert!(
        causes.contains(&("grace".to_owned(), ExitCause::Handled(15))),
        "{causes:?}"
    );
    assert!(
        causes.contains(&("late".to_owned(), ExitCause::Signal(9))),
        "{causes:?}"
    );
    assert!(
        causes.contains(&("soon".to_owned(), ExitCause::Planned)),
        "{causes:?}"
    );
    // Every signal that reached a process, with its time; none to a finished one.
    assert!(sim.kill_task(&ct("grace"), 9).await.is_err());
    let truth = sim.truth();
    let of = |id: &str| -> Vec<(i32, i64)> {
        truth
            .signals
            .iter()
            .filter(|s| s.target.as_str() == id)
            .map(|s| (s.signal, (s.at - t0) / 1_000_000))
            .collect()
    };
    // (in ms: the simulated clock adds a few ns of jitter to every sleep)
    assert_eq!(of("grace"), [(15, 0), (15, 100)]);
    assert_eq!(of("late"), [(15, 0), (9, 100)]);
    assert_eq!(of("soon"), [(15, 0)]);
    assert_eq!(sim.truth_of("late").signals.len(), 2);
    // The SIGKILL of Tasks.Delete with kill is logged too.
    run(&sim, "p1", "doomed", ProcessPlan::forever()).await;
    sim.delete_task(&ct("doomed"), true).await.unwrap();
    let doomed = sim.truth_of("doomed").signals;
    assert_eq!(doomed.len(), 1);
    assert!(doomed[0].by_delete && doomed[0].signal == 9);
}

#[tokio::test(start_paused = true)]
async fn sigterm_to_a_created_task_stops_it_with_status_2() {
    let sim = sim();
    pod(&sim, "p1").await;
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    sim.create_task(&ct("c1")).await.unwrap();
    sim.kill_task(&ct("c1"), 15).await.unwrap();
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap().code, 2);
    assert!(!sim.truth().last_exit("c1").unwrap().started);
}

#[tokio::test(start_paused = true)]
async fn delete_task_follows_containerd() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    let e = sim.delete_task(&ct("c1"), false).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    // With kill: SIGKILL, then delete.
    sim.delete_task(&ct("c1"), true).await.unwrap();
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
    let exit = sim.truth().last_exit("c1").cloned().unwrap();
    assert_eq!((exit.code, exit.cause), (137, ExitCause::DeleteKill));
    let e = sim.delete_task(&ct("c1"), true).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound);
    // A created task can be deleted without kill; no process ran, no exit is recorded.
    sim.create_task(&ct("c1")).await.unwrap();
    sim.delete_task(&ct("c1"), false).await.unwrap();
    assert_eq!(
        sim.exits().iter().filter(|e| e.target == ct("c1")).count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_on_a_task_deleted_with_kill_returns_the_kill() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    let deleter = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.delete_task(&ct("c1"), true).await.unwrap();
    };
    let t = ct("c1");
    let (exit, ()) = tokio::join!(sim.wait_task(&t), deleter);
    assert_eq!(exit.unwrap().code, 137);
}

#[tokio::test(start_paused = true)]
async fn task_calls_on_missing_records_and_tasks() {
    let sim = sim();
    pod(&sim, "p1").await;
    let e = sim.create_task(&ct("ghost")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    assert_eq!(
        sim.task_status(&ct("ghost")).await.unwrap(),
        TaskState::NotFound
    );
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    let e = sim
        .create_container(&container_meta("p1", "c1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::AlreadyExists);
    for e in [
        sim.start_task(&ct("c1")).await.unwrap_err(),
        sim.wait_task(&ct("c1")).await.unwrap_err(),
        sim.kill_task(&ct("c1"), 9).await.unwrap_err(),
        sim.delete_task(&ct("c1"), true).await.unwrap_err(),
    ] {
        assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    }
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
    let pid = sim.create_task(&ct("c1")).await.unwrap();
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Created { pid }
    );
    let e = sim.create_task(&ct("c1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::AlreadyExists);
    sim.start_task(&ct("c1")).await.unwrap();
    let e = sim.start_task(&ct("c1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition);
    sim.kill_task(&ct("c1"), 9).await.unwrap();
    let e = sim.start_task(&ct("c1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition);
    let e = sim.delete_container(&ct("nope")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn a_container_needs_its_pod_and_a_live_pause_task() {
    let sim = sim();
    let e = sim
        .create_container(&container_meta("p1", "c1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    sim.create_sandbox(&sandbox_meta("p1")).await.unwrap();
    let e = sim
        .create_container(&container_meta("p1", "c1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    sim.create_task(&sb("p1")).await.unwrap();
    sim.start_task(&sb("p1")).await.unwrap();
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    // The pause process dies: the container cannot join the pod's namespaces any more.
    sim.kill_task(&sb("p1"), 9).await.unwrap();
    let e = sim.create_task(&ct("c1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Other, "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_shim_death_takes_every_task_of_its_pod() {
    let sim = sim();
    pod(&sim, "p1").await;
    pod(&sim, "p2").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    run(
        &sim,
        "p1",
        "c2",
        ProcessPlan::exit(Duration::from_secs(1), 3),
    )
    .await;
    run(&sim, "p2", "c3", ProcessPlan::forever()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killer = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.kill_shim(&pod_id("p1")).unwrap()
    };
    let c1 = ct("c1");
    let (waited, death) = tokio::join!(sim.wait_task(&c1), killer);
    let e = waited.expect_err("no exit is reported to waits");
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    assert_eq!(death.killed, [ct("c1"), sb("p1")]);
    assert_eq!(death.lost, [ct("c2")]);
    for t in [ct("c1"), ct("c2"), sb("p1")] {
        assert_eq!(sim.task_status(&t).await.unwrap(), TaskState::NotFound);
        assert!(matches!(
            sim.kill_task(&t, 9).await.unwrap_err().kind,
            BackendErrorKind::NotFound
        ));
    }
    assert!(matches!(
        sim.task_status(&ct("c3")).await.unwrap(),
        TaskState::Running { .. }
    ));
    let truth = sim.truth();
    assert!(truth.records.contains_key("c1"), "records remain");
    assert_eq!(
        truth.shims[&pod_id("p1")].state,
        ShimState::Died { at: death.at }
    );
    assert_eq!(truth.shims[&pod_id("p2")].state, ShimState::Alive);
    let c1 = truth.last_exit("c1").unwrap();
    assert_eq!(
        (c1.code, c1.cause, c1.shim_died),
        (137, ExitCause::ShimDied, true)
    );
    let c2 = truth.last_exit("c2").unwrap();
    assert_eq!(
        (c2.code, c2.cause, c2.shim_died),
        (3, ExitCause::Planned, true)
    );
    assert_eq!(truth.shim_deaths, [death]);
    assert_eq!(
        sim.kill_shim(&pod_id("p1")).unwrap_err(),
        berth_simbackend::HookError::NoLiveShim { pod: pod_id("p1") }
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_shim_death_task_calls_say_ttrpc_closed_until_containerd_cleans_up() {
    let sim = SimBackend::with_config(
        1,
        SimConfig {
            shim_cleanup: Duration::from_secs(2),
            ..SimConfig::instant()
        },
    );
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    sim.kill_shim(&pod_id("p1")).unwrap();
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
    let e = sim.delete_task(&ct("c1"), true).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("ttrpc: closed"));
    let e = sim.create_task(&sb("p1")).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = sim.delete_task(&ct("c1"), true).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    // A new shim serves the pod.
    sim.create_task(&sb("p1")).await.unwrap();
    let truth = sim.truth();
    assert_eq!(truth.shims[&pod_id("p1")].state, ShimState::Alive);
    assert_eq!(truth.shims[&pod_id("p1")].shim, 2);
}

#[tokio::test(start_paused = true)]
async fn deleting_a_record_whose_task_lives_orphans_it_until_the_id_is_recreated() {
    let sim = sim();
    pod(&sim, "p1").await;
    let pid = run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    sim.delete_container(&ct("c1")).await.unwrap();
    let truth = sim.truth();
    let orphans: Vec<_> = truth.orphans().collect();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].target, ct("c1"));
    assert_eq!(orphans[0].state, TaskState::Running { pid });
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
    for e in [
        sim.kill_task(&ct("c1"), 9).await.unwrap_err(),
        sim.delete_task(&ct("c1"), true).await.unwrap_err(),
    ] {
        assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    }
    assert!(sim.list().await.unwrap().containers.is_empty());
    // The orphan survives a containerd restart.
    sim.restart_containerd(Duration::ZERO);
    assert_eq!(sim.truth().orphans().count(), 1);
    // A record with the same id makes the task reachable again.
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Running { pid }
    );
    sim.delete_task(&ct("c1"), true).await.unwrap();
    sim.delete_container(&ct("c1")).await.unwrap();
    assert_eq!(sim.truth().orphans().count(), 0);
}

#[tokio::test(start_paused = true)]
async fn exit_now_ends_a_running_process_with_the_given_code() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = sim.now_wall();
    let exit = sim.exit_now(&ct("c1"), 9).unwrap();
    assert_eq!((exit.code, exit.cause), (9, ExitCause::ExitNow));
    assert!(before <= exit.exited_at && exit.exited_at <= sim.now_wall());
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap().code, 9);
    assert!(matches!(
        sim.exit_now(&ct("c1"), 1),
        Err(berth_simbackend::HookError::NotRunning { .. })
    ));
    assert!(matches!(
        sim.exit_now(&ct("zz"), 1),
        Err(berth_simbackend::HookError::NoTask { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_created_task_survives_a_restart_as_created_and_still_starts() {
    let sim = sim();
    pod(&sim, "p1").await;
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    let pid = sim.create_task(&ct("c1")).await.unwrap();
    sim.restart_containerd(Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Created { pid }
    );
    sim.plan(&ct("c1"), ProcessPlan::exit(Duration::from_secs(1), 4));
    assert_eq!(sim.start_task(&ct("c1")).await.unwrap(), pid);
    assert_eq!(sim.wait_task(&ct("c1")).await.unwrap().code, 4);
}

#[tokio::test(start_paused = true)]
async fn a_shim_exits_with_the_last_task_of_its_pod() {
    let sim = sim();
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::exit(Duration::ZERO, 0)).await;
    sim.delete_task(&ct("c1"), false).await.unwrap();
    assert_eq!(sim.truth().shims[&pod_id("p1")].state, ShimState::Alive);
    sim.delete_task(&sb("p1"), true).await.unwrap();
    let truth = sim.truth();
    assert!(matches!(
        truth.shims[&pod_id("p1")].state,
        ShimState::Exited { .. }
    ));
    assert!(truth.live_shims().next().is_none());
    assert!(truth.shim_deaths.is_empty(), "a clean exit is not a death");
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_metadata_is_reported_by_list() {
    let sim = sim();
    pod(&sim, "p1").await;
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    sim.set_record_meta_error("c1", Some("garbage".into()))
        .unwrap();
    let listing = sim.list().await.unwrap();
    assert_eq!(listing.containers[0].meta, Err("garbage".to_owned()));
    assert!(listing.sandboxes[0].meta.is_ok());
    assert!(sim.set_record_meta_error("zz", None).is_err());
}

#[tokio::test(start_paused = true)]
async fn with_real_latencies_a_restart_during_a_call_breaks_it() {
    let sim = SimBackend::new(3);
    pod(&sim, "p1").await;
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    let restarter = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        sim.restart_containerd(Duration::from_secs(1));
    };
    // Tasks.Create takes 51 ms: the restart lands inside it.
    let t = ct("c1");
    let (created, ()) = tokio::join!(sim.create_task(&t), restarter);
    let e = created.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
}

/// Without the sandbox-id grouping annotation containerd runs one shim per task;
/// `SimConfig::shim_per_container` models that.
#[tokio::test(start_paused = true)]
async fn with_a_shim_per_container_a_shim_death_takes_one_task() {
    let sim = SimBackend::with_config(
        9,
        SimConfig {
            shim_per_container: true,
            ..SimConfig::instant()
        },
    );
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    run(&sim, "p1", "c2", ProcessPlan::forever()).await;
    let truth = sim.truth();
    assert_eq!(
        truth.live_shims().count(),
        3,
        "pause, c1 and c2 each have a shim"
    );
    let death = sim.kill_shim_of(&ct("c1")).unwrap();
    assert_eq!(death.killed, vec![ct("c1")]);
    assert_eq!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::NotFound
    );
    assert!(matches!(
        sim.task_status(&ct("c2")).await.unwrap(),
        TaskState::Running { .. }
    ));
    assert!(matches!(
        sim.task_status(&sb("p1")).await.unwrap(),
        TaskState::Running { .. }
    ));
    // Grouped per pod (the default), the same death takes the whole pod.
    let grouped = sim_grouped().await;
    let death = grouped.kill_shim_of(&ct("c1")).unwrap();
    assert_eq!(death.killed.len(), 3, "{death:?}");
}

async fn sim_grouped() -> SimBackend {
    let sim = SimBackend::with_config(9, SimConfig::instant());
    pod(&sim, "p1").await;
    run(&sim, "p1", "c1", ProcessPlan::forever()).await;
    run(&sim, "p1", "c2", ProcessPlan::forever()).await;
    sim
}

#[tokio::test(start_paused = true)]
async fn resources_go_to_the_record_or_the_task_and_show_in_the_truth() {
    let sim = sim();
    pod(&sim, "p1").await;
    let id = berth_core::ContainerId::new("c1").unwrap();
    let mib = |n: i64| Resources {
        memory_limit_in_bytes: n << 20,
        ..Resources::default()
    };
    sim.create_container(&container_meta("p1", "c1"))
        .await
        .unwrap();
    // No task: Tasks.Update is NotFound, a reopen finds no log being written.
    let e = sim
        .update_resources(&id, ResourcesOf::Task, &mib(8))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    let e = sim.reopen_log(&id).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    // CREATED: the record's spec; the task created later starts with it.
    sim.update_resources(&id, ResourcesOf::Record, &mib(64))
        .await
        .unwrap();
    assert_eq!(sim.truth_of("c1").record_resources, Some(mib(64)));
    sim.create_task(&ct("c1")).await.unwrap();
    sim.start_task(&ct("c1")).await.unwrap();
    let task = |sim: &SimBackend| sim.truth_of("c1").task.unwrap().resources;
    assert_eq!(task(&sim), Some(mib(64)));
    // RUNNING: the task's cgroup; the record keeps its own.
    sim.update_resources(&id, ResourcesOf::Task, &mib(32))
        .await
        .unwrap();
    assert_eq!(task(&sim), Some(mib(32)));
    assert_eq!(sim.truth().records["c1"].resources, Some(mib(64)));
    assert_eq!(sim.truth().tasks["c1"].resources, Some(mib(32)));
    sim.reopen_log(&id).await.unwrap();
    // A reopen is berth's own: a containerd outage does not touch it; an update waits.
    sim.restart_containerd(Duration::from_secs(5));
    sim.reopen_log(&id).await.unwrap();
    let e = sim
        .update_resources(&id, ResourcesOf::Task, &mib(16))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::Unavailable, "{e}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Exited: no update of the stopped task, no log being written.
    sim.kill_task(&ct("c1"), 9).await.unwrap();
    let e = sim
        .update_resources(&id, ResourcesOf::Task, &mib(16))
        .await
        .unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::NotFound, "{e}");
    let e = sim.reopen_log(&id).await.unwrap_err();
    assert_eq!(e.kind, BackendErrorKind::FailedPrecondition, "{e}");
    assert_eq!(task(&sim), Some(mib(32)));
}

#[tokio::test(start_paused = true)]
async fn a_memory_limit_below_the_process_use_oom_kills_it_as_the_update_lands() {
    let sim = sim();
    pod(&sim, "p1").await;
    let plan = ProcessPlan::forever().using_memory(96);
    run(&sim, "p1", "c1", plan).await;
    let id = berth_core::ContainerId::new("c1").unwrap();
    let mib = |n: i64| Resources {
        memory_limit_in_bytes: n << 20,
        ..Resources::default()
    };
    // At or above its use: it runs on.
    sim.update_resources(&id, ResourcesOf::Task, &mib(96))
        .await
        .unwrap();
    assert!(matches!(
        sim.task_status(&ct("c1")).await.unwrap(),
        TaskState::Running { .. }
    ));
    let t0 = sim.now_wall();
    // Below: the update succeeds (the cgroup has the limit) and the kernel kills the process.
    sim.update_resources(&id, ResourcesOf::Task, &mib(64))
        .await
        .unwrap();
    assert_eq!(sim.truth_of("c1").task.unwrap().resources, Some(mib(64)));
    let exit = sim.wait_task(&ct("c1")).await.unwrap();
    assert_eq!(exit.code, 137);
    assert!(exit.exited_at >= t0);
    let cause = sim
        .exits()
        .iter()
        .rev()
        .find(|e| e.target.as_str() == "c1")
        .unwrap()
        .cause;
    assert_eq!(cause, ExitCause::OomKilled);
    // Tasks.Metrics counts the kill; a stopped task uses no memory.
    let m = sim.task_metrics(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].oom_kills, m[0].memory_usage_bytes), (1, 0));
    // No limit at all never kills.
    run(&sim, "p1", "c2", plan).await;
    let id2 = berth_core::ContainerId::new("c2").unwrap();
    sim.update_resources(&id2, ResourcesOf::Task, &mib(0))
        .await
        .unwrap();
    assert!(matches!(
        sim.task_status(&ct("c2")).await.unwrap(),
        TaskState::Running { .. }
    ));
    // A running task: its plan's memory, CPU growing with time; unknown ids are left out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nobody = berth_core::ContainerId::new("nobody").unwrap();
    let m = sim.task_metrics(&[id2.clone(), nobody]).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id, "c2");
    assert_eq!(m[0].memory_usage_bytes, 96 << 20);
    assert!(m[0].cpu_usage_ns >= 20_000_000, "{:?}", m[0]);
    assert_eq!(m[0].oom_kills, 0);
    let all = sim.task_metrics(&[]).await.unwrap();
    assert!(all.iter().any(|t| t.id == "c2") && all.iter().any(|t| t.id == "p1"));
}
