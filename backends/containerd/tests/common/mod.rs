//! Shared set-up of the integration tests: a private containerd (berth-testkit), a backend
//! on it, a running sandbox, and a cleanup that deletes every task and record the test made.

#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use berth_backend::{Backend, BackendErrorKind, ContainerMeta, SandboxMeta, Target};
use berth_containerd::{BackendConfig, ContainerdBackend};
use berth_core::{ContainerConfig, ContainerId, SandboxConfig, SandboxId};
use berth_testkit::PrivateContainerd;

/// The sandbox every test container lives in.
pub const POD: &str = "pod1";

/// A private containerd, a backend on it and a started sandbox [`POD`].
pub struct BackendFixture {
    /// The private containerd.
    pub ctd: PrivateContainerd,
    /// The backend under test, connected to it.
    pub backend: ContainerdBackend,
}

impl BackendFixture {
    /// Starts everything; panics with the harness's words if the machine cannot.
    pub async fn start() -> BackendFixture {
        berth_testkit::require_root_and_tools().expect("root and tools");
        let ctd = PrivateContainerd::start()
            .await
            .expect("private containerd");
        let mut config = BackendConfig::new(ctd.socket());
        config.namespace = ctd.namespace().to_owned();
        config.sandbox_image = ctd.image_ref().to_owned();
        config.sandbox_command = vec!["sleep".into(), "infinity".into()];
        let backend = ContainerdBackend::connect(config).await.expect("connect");
        let fixture = BackendFixture { ctd, backend };
        let pod = Target::Sandbox(SandboxId::new(POD).unwrap());
        fixture
            .backend
            .create_sandbox(&fixture.sandbox_meta(POD))
            .await
            .expect("create sandbox");
        fixture
            .backend
            .create_task(&pod)
            .await
            .expect("create pause task");
        fixture
            .backend
            .start_task(&pod)
            .await
            .expect("start pause task");
        fixture
    }

    /// The metadata of a sandbox with id `id`.
    pub fn sandbox_meta(&self, id: &str) -> SandboxMeta {
        SandboxMeta {
            id: SandboxId::new(id).unwrap(),
            name: format!("{id}_default_uid-{id}_0"),
            config: SandboxConfig {
                name: id.into(),
                uid: format!("uid-{id}"),
                namespace: "default".into(),
                hostname: format!("host-{id}"),
                ..SandboxConfig::default()
            },
            created_at: 1,
        }
    }

    /// The metadata of a container in [`POD`] running `command` (no log).
    pub fn meta(&self, id: &str, command: &[&str]) -> ContainerMeta {
        ContainerMeta {
            id: ContainerId::new(id).unwrap(),
            sandbox_id: SandboxId::new(POD).unwrap(),
            name: format!("{id}_{POD}_default_uid_0"),
            config: ContainerConfig {
                name: id.into(),
                image: self.ctd.image_ref().to_owned(),
                command: command.iter().map(|s| s.to_string()).collect(),
                ..ContainerConfig::default()
            },
            log_path: String::new(),
            stop_signal: 15,
            image: Default::default(),
        }
    }

    /// Creates the container, its task, and starts it; returns the started pid.
    pub async fn run(&self, meta: &ContainerMeta) -> u32 {
        let t = target(meta.id.as_str());
        self.backend
            .create_container(meta)
            .await
            .expect("create container");
        self.backend.create_task(&t).await.expect("create task");
        self.backend.start_task(&t).await.expect("start task")
    }

    /// Deletes every task (killing it) and every record berth's label marks, containers
    /// before sandboxes, checks nothing is left, and stops containerd.
    pub async fn cleanup(self) {
        let listing = self.backend.list().await.expect("list for cleanup");
        let targets = listing
            .containers
            .iter()
            .map(|l| Target::Container(ContainerId::new(&l.id).unwrap()))
            .chain(
                listing
                    .sandboxes
                    .iter()
                    .map(|l| Target::Sandbox(SandboxId::new(&l.id).unwrap())),
            );
        for t in targets {
            match self.backend.delete_task(&t, true).await {
                Ok(()) => {}
                Err(e) if e.kind == BackendErrorKind::NotFound => {}
                Err(e) => panic!("cleanup: delete task {t}: {e}"),
            }
            self.backend
                .delete_container(&t)
                .await
                .expect("cleanup: delete container");
        }
        let after = self.backend.list().await.expect("list after cleanup");
        assert!(
            after.containers.is_empty() && after.sandboxes.is_empty(),
            "{after:?}"
        );
        self.ctd.shutdown().await.expect("containerd shutdown");
    }
}

/// The target of a CRI container.
pub fn target(id: &str) -> Target {
    Target::Container(ContainerId::new(id).unwrap())
}

/// Wall clock in unix ns.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Polls a log file until it contains `needle` (a container's "I am ready" marker); panics
/// after 20 s with what the file holds.
pub async fn await_log(path: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{path}: {needle:?} never appeared; it holds {text:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
