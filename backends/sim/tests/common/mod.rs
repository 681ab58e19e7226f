//! Helpers shared by the integration tests.
#![allow(dead_code)]

use berth_backend::{Backend, Target};
use berth_core::{ContainerId, SandboxId};
use berth_simbackend::examples::{container_meta, sandbox_meta};
use berth_simbackend::{ProcessPlan, SimBackend};

/// A container target.
pub fn ct(id: &str) -> Target {
    Target::Container(ContainerId::new(id).unwrap())
}

/// A sandbox target.
pub fn sb(id: &str) -> Target {
    Target::Sandbox(SandboxId::new(id).unwrap())
}

/// A sandbox id.
pub fn pod_id(id: &str) -> SandboxId {
    SandboxId::new(id).unwrap()
}

/// Creates a pod with a running pause task; returns the pause pid.
pub async fn pod(sim: &SimBackend, id: &str) -> u32 {
    sim.create_sandbox(&sandbox_meta(id)).await.unwrap();
    sim.create_task(&sb(id)).await.unwrap();
    sim.start_task(&sb(id)).await.unwrap()
}

/// Creates and starts a container following `plan`; returns its pid.
pub async fn run(sim: &SimBackend, pod: &str, id: &str, plan: ProcessPlan) -> u32 {
    sim.create_container(&container_meta(pod, id))
        .await
        .unwrap();
    sim.plan(&ct(id), plan);
    let pid = sim.create_task(&ct(id)).await.unwrap();
    assert_eq!(sim.start_task(&ct(id)).await.unwrap(), pid);
    pid
}
