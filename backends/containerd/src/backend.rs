//! [`ContainerdBackend`]: berth's [`Backend`] over a real containerd.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use berth_backend::{
    Backend, BackendError, ContainerId, ContainerMeta, ExecId, ExecOutput, ExecSpec, ExitStatus,
    ImageRef, Listing, Resources, ResourcesOf, SandboxMeta, Target, TaskMetrics, TaskState,
};

use crate::client::Client;
use crate::config::BackendConfig;
use crate::error::{ConnectError, deadline_exceeded, map_log_error, map_status};
use crate::image::ImageCache;

/// berth's [`Backend`] over containerd's gRPC API (containerd-client 0.9).
///
/// Guarantees: every request carries the configured namespace; every call but
/// [`Backend::wait_task`] has a deadline ([`BackendConfig::call_timeout`], or
/// [`BackendConfig::task_create_timeout`] for `Tasks.Create`) and fails with
/// `DeadlineExceeded` past it; every containerd error goes through
/// [`crate::map_status`]; a broken connection is `Unavailable`, never an exit. Cloning is
/// cheap and clones share the connection and the image cache.
#[derive(Debug, Clone)]
pub struct ContainerdBackend {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) config: BackendConfig,
    pub(crate) images: ImageCache,
    /// This process's `oom_score_adj`: the lowest value runc may set without
    /// CAP_SYS_RESOURCE.
    pub(crate) oom_score_adj_floor: i64,
    /// Makes lease ids unique within this process.
    pub(crate) lease_seq: AtomicU64,
}

impl ContainerdBackend {
    /// Connects to the containerd at [`BackendConfig::socket`] and checks that it answers
    /// within [`BackendConfig::call_timeout`]. Later outages are survived: the connection
    /// comes back by itself when containerd does.
    pub async fn connect(config: BackendConfig) -> Result<Self, ConnectError> {
        let client =
            Client::connect(&config.socket, &config.namespace, config.call_timeout).await?;
        Ok(ContainerdBackend {
            inner: Arc::new(Inner {
                client,
                config,
                images: ImageCache::default(),
                oom_score_adj_floor: own_oom_score_adj(),
                lease_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The underlying thin client (for calls berth's port does not cover).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The configuration this backend runs with.
    pub fn config(&self) -> &BackendConfig {
        &self.inner.config
    }

    /// Runs one unary call with `timeout`; maps its failure with [`map_status`].
    pub(crate) async fn rpc<T>(
        &self,
        verb: &str,
        target: &str,
        timeout: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(deadline_exceeded(verb, target, timeout)),
            Ok(Err(status)) => Err(map_status(&status, verb, target)),
            Ok(Ok(reply)) => Ok(reply.into_inner()),
        }
    }

    /// [`ContainerdBackend::rpc`] with [`BackendConfig::call_timeout`].
    pub(crate) async fn call<T>(
        &self,
        verb: &str,
        target: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, BackendError> {
        self.rpc(verb, target, self.inner.config.call_timeout, call)
            .await
    }
}

/// `/proc/self/oom_score_adj`, or 0 if unreadable.
fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[async_trait]
impl Backend for ContainerdBackend {
    async fn resolve_image(&self, id: &ContainerId, image: &str) -> Result<ImageRef, BackendError> {
        let timeout = self.config().call_timeout;
        let (image, _) = self
            .inner
            .images
            .resolve_ref(self.client(), image, id.as_str(), timeout)
            .await?;
        Ok(image)
    }

    async fn create_container(&self, meta: &ContainerMeta) -> Result<(), BackendError> {
        self.create_cri_container(meta).await
    }

    async fn create_sandbox(&self, meta: &SandboxMeta) -> Result<(), BackendError> {
        self.create_pause_container(meta).await
    }

    async fn delete_container(&self, target: &Target) -> Result<(), BackendError> {
        self.delete_record(target.as_str()).await
    }

    async fn create_task(&self, target: &Target) -> Result<u32, BackendError> {
        self.create_task_for(target).await
    }

    async fn start_task(&self, target: &Target) -> Result<u32, BackendError> {
        self.start(target.as_str()).await
    }

    async fn wait_task(&self, target: &Target) -> Result<ExitStatus, BackendError> {
        self.wait(target.as_str()).await
    }

    async fn kill_task(&self, target: &Target, signal: i32) -> Result<(), BackendError> {
        self.kill(target.as_str(), signal).await
    }

    async fn delete_task(&self, target: &Target, kill: bool) -> Result<(), BackendError> {
        self.delete_task_of(target.as_str(), kill).await
    }

    async fn task_status(&self, target: &Target) -> Result<TaskState, BackendError> {
        self.status(target.as_str()).await
    }

    async fn update_resources(
        &self,
        id: &ContainerId,
        of: ResourcesOf,
        resources: &Resources,
    ) -> Result<(), BackendError> {
        match of {
            ResourcesOf::Task => self.update_task_resources(id.as_str(), resources).await,
            ResourcesOf::Record => self.update_record_resources(id.as_str(), resources).await,
        }
    }

    async fn reopen_log(&self, id: &ContainerId) -> Result<(), BackendError> {
        self.reopen_container_log(id.as_str())
            .await
            .map_err(|e| map_log_error(&e, "Logs.Reopen", id.as_str()))
    }

    async fn start_exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<u32, BackendError> {
        self.exec_start(id, exec).await
    }

    async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
    ) -> Result<ExecOutput, BackendError> {
        self.exec_wait(id, exec_id).await
    }

    async fn kill_exec(
        &self,
        id: &ContainerId,
        exec_id: &ExecId,
        signal: i32,
    ) -> Result<(), BackendError> {
        self.exec_kill(id, exec_id, signal).await
    }

    async fn delete_exec(&self, id: &ContainerId, exec_id: &ExecId) -> Result<(), BackendError> {
        self.exec_delete(id, exec_id).await
    }

    async fn sweep_execs(&self, id: &ContainerId) -> Result<u32, BackendError> {
        self.exec_sweep(id).await
    }

    async fn list(&self) -> Result<Listing, BackendError> {
        self.list_records().await
    }

    async fn task_metrics(&self, ids: &[ContainerId]) -> Result<Vec<TaskMetrics>, BackendError> {
        self.metrics_of(ids).await
    }
}
