//! Under `--cfg madsim` the simulated containerd and disk run on madsim's virtual clock,
//! and the same seed gives the same run. Compiles to nothing in the normal build.
#![cfg(madsim)]

mod common;

use std::time::Duration;

use berth_backend::{Backend, BackendErrorKind, CheckpointStore, TaskState};
use berth_core::{ContainerId, Status};
use berth_simbackend::{FaultPlan, ProcessPlan, SimBackend, SimDisk};
use common::{ct, pod, pod_id, run};

/// A small scenario: a pod, three containers, a containerd restart during a wait, a shim
/// death, checkpoint writes and a power loss. Returns a trace of what it saw.
async fn scenario(seed: u64) -> Vec<String> {
    let sim = SimBackend::new(seed);
    let disk = SimDisk::new(seed);
    let mut trace = Vec::new();
    pod(&sim, "p1").await;
    let start = sim.now_wall();
    run(
        &sim,
        "p1",
        "c1",
        ProcessPlan::exit(Duration::from_secs(5), 42),
    )
    .await;
    run(&sim, "p1", "c2", ProcessPlan::forever()).await;
    let c1 = ct("c1");
    let restarter = async {
        madsim::time::sleep(Duration::from_secs(1)).await;
        sim.restart_containerd(Duration::from_secs(2));
    };
    let (broken, ()) = tokio::join!(sim.wait_task(&c1), restarter);
    assert_eq!(broken.unwrap_err().kind, BackendErrorKind::Unavailable);
    madsim::time::sleep(Duration::from_secs(10)).await;
    let exit = sim.wait_task(&c1).await.unwrap();
    assert_eq!(exit.code, 42);
    assert!(exit.exited_at >= start + 5_000_000_000);
    trace.push(format!("c1 exit {exit:?}"));
    sim.set_faults(FaultPlan::from_seed(seed));
    for i in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(10), sim.task_status(&ct("c2"))).await;
        trace.push(format!("status {i} {r:?}"));
    }
    sim.set_faults(FaultPlan::none());
    sim.kill_shim(&pod_id("p1")).unwrap();
    assert_eq!(
        sim.task_status(&ct("c2")).await.unwrap(),
        TaskState::NotFound
    );
    disk.set_faults(&FaultPlan::from_seed(seed));
    for i in 0..10 {
        let id = ContainerId::new(format!("c{i}")).unwrap();
        let r = disk.write(&id, &Status::created(i, None)).await;
        trace.push(format!("write {i} {r:?}"));
    }
    trace.push(format!("{:?}", disk.crash(true)));
    trace.push(format!("{:?}", sim.truth()));
    trace.push(format!("{:?}", sim.fault_log()));
    trace.push(format!("{:?}", disk.fault_log()));
    trace
}

#[madsim::test]
async fn the_model_runs_on_the_simulated_clock() {
    let seed = madsim::runtime::Handle::current().seed();
    let trace = scenario(seed).await;
    assert!(trace[0].starts_with("c1 exit"));
    assert!(trace.len() > 30);
}

#[test]
fn the_same_seed_gives_the_same_run_under_madsim() {
    let run = |seed: u64| {
        std::thread::spawn(move || {
            let rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.block_on(scenario(seed))
        })
        .join()
        .expect("the scenario panicked")
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}
