//! Ready-made metadata for tests, examples and small harness scenarios.

use berth_backend::{ContainerMeta, SandboxMeta};
use berth_core::{ContainerConfig, ContainerId, SandboxConfig, SandboxId};

/// Valid sandbox and container metadata for a pod `pod` holding a container `container`.
/// Both ids must be valid containerd ids (panics otherwise: for tests only).
pub fn metas(pod: &str, container: &str) -> (SandboxMeta, ContainerMeta) {
    (sandbox_meta(pod), container_meta(pod, container))
}

/// Valid sandbox metadata for a pod `pod` (panics on an invalid id: for tests only).
pub fn sandbox_meta(pod: &str) -> SandboxMeta {
    let config = SandboxConfig {
        name: format!("{pod}-name"),
        uid: format!("uid-{pod}"),
        namespace: "default".into(),
        log_directory: format!("/var/log/pods/{pod}"),
        ..SandboxConfig::default()
    };
    SandboxMeta {
        id: SandboxId::new(pod).expect("valid sandbox id"),
        name: config.reservation_name(),
        config,
        created_at: 0,
    }
}

/// Valid container metadata for a container `container` in pod `pod` (panics on an
/// invalid id: for tests only).
pub fn container_meta(pod: &str, container: &str) -> ContainerMeta {
    let sandbox = sandbox_meta(pod).config;
    let config = ContainerConfig {
        name: format!("{container}-name"),
        image: "busybox".into(),
        log_path: format!("{container}.log"),
        ..ContainerConfig::default()
    };
    ContainerMeta {
        id: ContainerId::new(container).expect("valid container id"),
        sandbox_id: SandboxId::new(pod).expect("valid sandbox id"),
        name: config.reservation_name(&sandbox),
        log_path: format!("/var/log/pods/{pod}/{container}.log"),
        config,
        stop_signal: 15,
        image: Default::default(),
    }
}
