//! Exec processes of the simulated containerd (ExecSync, docs/containerd-behaviour.md §11):
//! codes and output from the plan in the command, the output cap, runs until killed, a
//! background child holding the pipe (the wait still returns within the drain bound), the
//! death of the container's init, shim deaths, containerd restarts, the sweep, and the
//! truth.

mod common;

use std::time::Duration;

use berth_backend::{Backend, BackendErrorKind, ExecId, ExecSpec};
use berth_core::{ContainerId, EXEC_ID_PREFIX};
use berth_simbackend::{ExecEnd, ExecPlan, ProcessPlan, SimBackend, SimConfig};
use common::{ct, pod, pod_id, run};

fn sim() -> SimBackend {
    SimBackend::with_config(1, SimConfig::instant())
}

fn cid(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap()
}

fn xid(n: u32) -> ExecId {
    ExecId::new(format!("{EXEC_ID_PREFIX}{n}")).unwrap()
}

fn spec(n: u32, plan: ExecPlan, cap: usize) -> ExecSpec {
    ExecSpec {
        exec_id: xid(n),
        cmd: plan.to_cmd(),
        output_cap: cap,
    }
}

/// `took` is `want`, give or take a timer tick (madsim's timers are not exact).
fn about(took: Duration, want: Duration) {
    assert!(
        took >= want && took < want + Duration::from_millis(50),
        "took {took:?}, expected {want:?}"
    );
}

async fn running(sim: &SimBackend) {
    pod(sim, "p1").await;
    run(sim, "p1", "c1", ProcessPlan::forever()).await;
}

#[test]
fn a_plan_survives_its_command() {
    for plan in [
        ExecPlan::exit(Duration::from_millis(1500), 3).printing(10, 20),
        ExecPlan::forever().tagged(7),
        ExecPlan::exit(Duration::ZERO, 0).lingering(Duration::MAX),
    ] {
        assert_eq!(ExecPlan::from_cmd(&plan.to_cmd()), plan);
    }
    assert_eq!(
        ExecPlan::from_cmd(&["echo".into(), "hi".into()]),
        ExecPlan::default()
    );
}

#[tokio::test(start_paused = true)]
async fn exec_answers_its_code_and_capped_output_and_is_deleted() {
    let sim = sim();
    running(&sim).await;
    let plan = ExecPlan::exit(Duration::from_secs(2), 3).printing(100, 5);
    sim.start_exec(&cid("c1"), &spec(1, plan, 64))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let out = sim.wait_exec(&cid("c1"), &xid(1)).await.unwrap();
    about(started.elapsed(), Duration::from_secs(2));
    assert_eq!(out.exit_code, 3);
    assert_eq!(
        out.stdout,
        plan.stdout()[..64].to_vec(),
        "capped at 64 bytes"
    );
    assert_eq!(out.stderr, plan.stderr());
    let truth = sim.truth();
    assert_eq!(truth.execs.len(), 1);
    assert_eq!(truth.execs_left().count(), 1, "exited, not yet deleted");
    sim.delete_exec(&cid("c1"), &xid(1)).await.unwrap();
    assert_eq!(sim.truth().execs_left().count(), 0);
    let gone = sim.delete_exec(&cid("c1"), &xid(1)).await.unwrap_err();
    assert_eq!(gone.kind, BackendErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn exec_runs_until_killed_and_the_kill_ends_its_wait() {
    let sim = sim();
    running(&sim).await;
    sim.start_exec(&cid("c1"), &spec(1, ExecPlan::forever(), 1 << 20))
        .await
        .unwrap();
    let waiter = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.wait_exec(&cid("c1"), &xid(1)).await })
    };
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(sim.execs()[0].alive());
    assert!(!waiter.is_finished());
    sim.kill_exec(&cid("c1"), &xid(1), 9).await.unwrap();
    let out = waiter.await.unwrap().unwrap();
    assert_eq!(out.exit_code, 137);
    assert_eq!(sim.execs()[0].end, Some(ExecEnd::Signal(9)));
    let again = sim.kill_exec(&cid("c1"), &xid(1), 9).await.unwrap_err();
    assert_eq!(again.kind, BackendErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn a_background_child_holding_the_pipe_cannot_hold_the_wait() {
    let sim = sim();
    running(&sim).await;
    let bound = sim.config().exec_drain_bound;
    let plan = ExecPlan::exit(Duration::from_secs(1), 0)
        .printing(3, 0)
        .lingering(Duration::MAX);
    sim.start_exec(&cid("c1"), &spec(1, plan, 1024))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let out = sim.wait_exec(&cid("c1"), &xid(1)).await.unwrap();
    about(started.elapsed(), Duration::from_secs(1) + bound);
    assert_eq!(out.stdout, b"abc".to_vec());
    // A short-lived child only delays the wait until it closes the pipe.
    let plan = ExecPlan::exit(Duration::ZERO, 0).lingering(Duration::from_millis(300));
    sim.start_exec(&cid("c1"), &spec(2, plan, 1024))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    sim.wait_exec(&cid("c1"), &xid(2)).await.unwrap();
    about(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn exec_dies_with_its_container_and_with_its_task() {
    let sim = sim();
    running(&sim).await;
    sim.start_exec(&cid("c1"), &spec(1, ExecPlan::forever(), 16))
        .await
        .unwrap();
    let waiter = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.wait_exec(&cid("c1"), &xid(1)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.exit_now(&ct("c1"), 0).unwrap();
    let out = waiter.await.unwrap().unwrap();
    assert_eq!(out.exit_code, 137);
    assert_eq!(sim.execs()[0].end, Some(ExecEnd::TaskDied));
    // No exec into a stopped task.
    let refused = sim
        .start_exec(&cid("c1"), &spec(2, ExecPlan::default(), 16))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, BackendErrorKind::FailedPrecondition);
    // The task's delete takes the undeleted exec with it.
    assert_eq!(sim.truth().execs_left().count(), 1);
    sim.delete_task(&ct("c1"), true).await.unwrap();
    assert_eq!(sim.truth().execs_left().count(), 0);
    // No task: NotFound; the sweep finds nothing.
    let no_task = sim
        .start_exec(&cid("c1"), &spec(3, ExecPlan::default(), 16))
        .await
        .unwrap_err();
    assert_eq!(no_task.kind, BackendErrorKind::NotFound);
    assert_eq!(sim.sweep_execs(&cid("c1")).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_shim_death_takes_the_exec_and_breaks_its_wait() {
    let sim = sim();
    running(&sim).await;
    sim.start_exec(&cid("c1"), &spec(1, ExecPlan::forever(), 16))
        .await
        .unwrap();
    let waiter = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.wait_exec(&cid("c1"), &xid(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    sim.kill_shim(&pod_id("p1")).unwrap();
    let broken = waiter.await.unwrap().unwrap_err();
    assert_eq!(broken.kind, BackendErrorKind::Unavailable);
    let e = &sim.execs()[0];
    assert_eq!((e.end, e.deleted), (Some(ExecEnd::ShimDied), true));
}

#[tokio::test(start_paused = true)]
async fn a_containerd_restart_breaks_the_wait_and_the_exec_lives_on() {
    let sim = sim();
    running(&sim).await;
    sim.start_exec(&cid("c1"), &spec(1, ExecPlan::forever(), 16))
        .await
        .unwrap();
    let waiter = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.wait_exec(&cid("c1"), &xid(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    sim.restart_containerd(Duration::from_secs(1));
    let broken = waiter.await.unwrap().unwrap_err();
    assert_eq!(broken.kind, BackendErrorKind::Unavailable);
    assert!(sim.execs()[0].alive(), "the exec lives in its shim");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The sweep kills and deletes berth's exec processes only.
    let foreign = ExecSpec {
        exec_id: ExecId::new("operator-shell").unwrap(),
        cmd: ExecPlan::forever().to_cmd(),
        output_cap: 16,
    };
    sim.start_exec(&cid("c1"), &foreign).await.unwrap();
    assert_eq!(sim.sweep_execs(&cid("c1")).await.unwrap(), 1);
    let execs = sim.execs();
    assert!(!execs[0].alive() && execs[0].deleted);
    assert!(execs[1].alive() && !execs[1].is_berths());
}

#[tokio::test(start_paused = true)]
async fn exec_ids_are_unique_per_task() {
    let sim = sim();
    running(&sim).await;
    sim.start_exec(&cid("c1"), &spec(1, ExecPlan::forever(), 16))
        .await
        .unwrap();
    let dup = sim
        .start_exec(&cid("c1"), &spec(1, ExecPlan::forever(), 16))
        .await
        .unwrap_err();
    assert_eq!(dup.kind, BackendErrorKind::AlreadyExists);
}
