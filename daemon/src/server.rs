//! [`Cri`]: the CRI v1 `RuntimeService` over berth-service.
//!
//! Every RPC validates its request ([`crate::validate`]) before the service sees it, and
//! every failure goes out through [`crate::error::to_status`]. Until berthd is connected to
//! containerd and recovery has finished, every RPC but Version, Status and RuntimeConfig
//! answers `Unavailable`. RPCs berth does not serve yet answer `Unimplemented` with a
//! message.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_service::{ContainerFilter, ServiceHandle};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::{ApiError, to_status};
use crate::validate::{self, SandboxStateFilter};

/// What berthd has once it reached containerd.
#[derive(Clone)]
pub struct Connected {
    /// The service: every RPC but Version, Status and RuntimeConfig goes through it.
    pub service: ServiceHandle,
}

/// State shared by the RPCs and the daemon's main task.
pub struct Runtime {
    containerd_socket: String,
    config_toml: String,
    connected: OnceLock<Connected>,
    stopping: watch::Sender<bool>,
    cpu: crate::stats::CpuSamples,
}

impl Runtime {
    /// A runtime not yet connected to containerd.
    pub fn new(config: &crate::config::Config) -> Arc<Runtime> {
        Arc::new(Runtime {
            containerd_socket: config.containerd_socket.display().to_string(),
            config_toml: config.to_toml(),
            connected: OnceLock::new(),
            stopping: watch::channel(false).0,
            cpu: crate::stats::CpuSamples::default(),
        })
    }

    /// Records the connection (once).
    pub fn set_connected(&self, c: Connected) {
        let _ = self.connected.set(c);
    }

    /// The connection, if made.
    pub fn connected(&self) -> Option<&Connected> {
        self.connected.get()
    }

    /// Starts refusing requests and ends event streams (graceful shutdown).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    fn service(&self) -> Result<&ServiceHandle, ApiError> {
        if self.stopping() {
            return Err(ApiError::ShuttingDown);
        }
        self.connected
            .get()
            .map(|c| &c.service)
            .ok_or_else(|| ApiError::NotConnected {
                socket: self.containerd_socket.clone(),
            })
    }
}

/// The CRI `RuntimeService` implementation.
#[derive(Clone)]
pub struct Cri {
    rt: Arc<Runtime>,
}

impl Cri {
    /// A service answering from `rt`.
    pub fn new(rt: Arc<Runtime>) -> Cri {
        Cri { rt }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Logs a failed RPC and shapes its reply.
fn reply<T>(rpc: &'static str, r: Result<T, ApiError>) -> Result<Response<T>, Status> {
    match r {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            let status = to_status(&e);
            match status.code() {
                tonic::Code::Internal | tonic::Code::Unknown => {
                    tracing::warn!(rpc, code = ?status.code(), error = %e, "request failed")
                }
                _ => tracing::debug!(rpc, code = ?status.code(), error = %e, "request failed"),
            }
            Err(status)
        }
    }
}

fn unimplemented<T>(rpc: &'static str, detail: &'static str) -> Result<Response<T>, Status> {
    Err(to_status(&ApiError::Unimplemented { rpc, detail }))
}

type EventStream = ReceiverStream<Result<cri::ContainerEventResponse, Status>>;

impl Cri {
    async fn run_pod_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> Result<cri::RunPodSandboxResponse, ApiError> {
        let config = validate::sandbox_config(&req)?;
        let svc = self.rt.service()?;
        let id = svc.run_pod_sandbox(config).await?;
        tracing::info!(sandbox = %id, "pod sandbox running");
        Ok(cri::RunPodSandboxResponse {
            pod_sandbox_id: id.to_string(),
        })
    }

    async fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> Result<cri::PodSandboxStatusResponse, ApiError> {
        validate::object_id("pod_sandbox_id", "sandbox", &req.pod_sandbox_id)?;
        let svc = self.rt.service()?;
        let view = svc.sandbox_status(&req.pod_sandbox_id).await?;
        let containers = svc
            .list_containers(ContainerFilter {
                sandbox: Some(view.meta.id.to_string()),
                ..ContainerFilter::default()
            })
            .await?;
        Ok(cri::PodSandboxStatusResponse {
            status: Some(convert::sandbox_status(&view)),
            info: if req.verbose {
                convert::sandbox_info(&view)
            } else {
                HashMap::new()
            },
            containers_statuses: containers.iter().map(convert::container_status).collect(),
            timestamp: now_nanos(),
        })
    }

    async fn list_pod_sandbox(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> Result<cri::ListPodSandboxResponse, ApiError> {
        let (filter, state) = validate::sandbox_filter(req.filter.as_ref())?;
        let svc = self.rt.service()?;
        let items = svc
            .list_sandboxes(filter)
            .await?
            .iter()
            .filter(|v| match state {
                None => true,
                Some(SandboxStateFilter::Ready) => {
                    convert::sandbox_state(v.state) == cri::PodSandboxState::SandboxReady
                }
                Some(SandboxStateFilter::NotReady) => {
                    convert::sandbox_state(v.state) == cri::PodSandboxState::SandboxNotready
                }
            })
            .map(convert::sandbox)
            .collect();
        Ok(cri::ListPodSandboxResponse { items })
    }

    async fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> Result<cri::CreateContainerResponse, ApiError> {
        let (sandbox, config) = validate::container_config(&req)?;
        let svc = self.rt.service()?;
        let id = svc.create_container(&sandbox, config).await?;
        tracing::info!(container = %id, sandbox, "container created");
        Ok(cri::CreateContainerResponse {
            container_id: id.to_string(),
        })
    }

    async fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> Result<cri::ContainerStatusResponse, ApiError> {
        validate::object_id("container_id", "container", &req.container_id)?;
        let view = self
            .rt
            .service()?
            .container_status(&req.container_id)
            .await?;
        Ok(cri::ContainerStatusResponse {
            status: Some(convert::container_status(&view)),
            info: if req.verbose {
                convert::container_info(&view)
            } else {
                HashMap::new()
            },
        })
    }

    async fn list_containers(
        &self,
        req: cri::ListContainersRequest,
    ) -> Result<cri::ListContainersResponse, ApiError> {
        let filter = validate::container_filter(req.filter.as_ref())?;
        let views = self.rt.service()?.list_containers(filter).await?;
        Ok(cri::ListContainersResponse {
            containers: views.iter().map(convert::container).collect(),
        })
    }

    async fn container_stats(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> Result<cri::ContainerStatsResponse, ApiError> {
        validate::object_id("container_id", "container", &req.container_id)?;
        let svc = self.rt.service()?;
        let view = svc.container_status(&req.container_id).await?;
        let metrics = if view.state == berth_core::ContainerState::Running {
            svc.task_metrics(vec![view.meta.id.clone()]).await?
        } else {
            Vec::new()
        };
        let m = metrics.iter().find(|m| m.id == view.meta.id.as_str());
        Ok(cri::ContainerStatsResponse {
            stats: Some(crate::stats::container_stats(&view, m, &self.rt.cpu)),
        })
    }

    async fn list_container_stats(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> Result<cri::ListContainerStatsResponse, ApiError> {
        let filter = req.filter.as_ref().map(|f| cri::ContainerFilter {
            id: f.id.clone(),
            state: None,
            pod_sandbox_id: f.pod_sandbox_id.clone(),
            label_selector: f.label_selector.clone(),
        });
        let filter = validate::container_filter(filter.as_ref())?;
        let everything = filter == ContainerFilter::default();
        let svc = self.rt.service()?;
        let views = svc.list_containers(filter).await?;
        let running: Vec<_> = views
            .iter()
            .filter(|v| v.state == berth_core::ContainerState::Running)
            .map(|v| v.meta.id.clone())
            .collect();
        let metrics = match (running.is_empty(), everything) {
            (true, _) => Vec::new(),
            // One call for every task rather than a filter naming each.
            (false, true) => svc.task_metrics(Vec::new()).await?,
            (false, false) => svc.task_metrics(running).await?,
        };
        if everything {
            let alive: Vec<String> = views.iter().map(|v| v.meta.id.to_string()).collect();
            self.rt.cpu.retain(&alive);
        }
        let by_id: HashMap<&str, &berth_backend::TaskMetrics> =
            metrics.iter().map(|m| (m.id.as_str(), m)).collect();
        Ok(cri::ListContainerStatsResponse {
            stats: views
                .iter()
                .map(|v| {
                    let m = (v.state == berth_core::ContainerState::Running)
                        .then(|| by_id.get(v.meta.id.as_str()).copied())
                        .flatten();
                    crate::stats::container_stats(v, m, &self.rt.cpu)
                })
                .collect(),
        })
    }

    async fn update_container_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> Result<cri::UpdateContainerResourcesResponse, ApiError> {
        validate::object_id("container_id", "container", &req.container_id)?;
        let resources = req
            .linux
            .as_ref()
            .map(|r| validate::resources("linux", r))
            .transpose()?;
        let svc = self.rt.service()?;
        match resources {
            // The core applies them (Tasks.Update of a running task, the record of a
            // created container) and records them, deciding under its Updating guard.
            Some(r) => {
                svc.update_container_resources(&req.container_id, r).await?;
                tracing::info!(container = %req.container_id, "resources updated");
            }
            // Nothing to apply: only the container must exist.
            None => drop(svc.container_status(&req.container_id).await?),
        }
        Ok(cri::UpdateContainerResourcesResponse {})
    }

    async fn reopen_container_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> Result<cri::ReopenContainerLogResponse, ApiError> {
        validate::object_id("container_id", "container", &req.container_id)?;
        self.rt
            .service()?
            .reopen_container_log(&req.container_id)
            .await?;
        Ok(cri::ReopenContainerLogResponse {})
    }

    /// ExecSync: the core runs the exec process and deletes it; a timeout is
    /// DeadlineExceeded through [`to_status`] like every error, a non-zero code an answer.
    async fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, ApiError> {
        let (cmd, timeout) = validate::exec_sync(&req)?;
        let out = self
            .rt
            .service()?
            .exec_sync(&req.container_id, cmd, timeout)
            .await?;
        Ok(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        })
    }

    fn status(&self, req: &cri::StatusRequest) -> cri::StatusResponse {
        let (ready, reason, message) = match self.rt.connected() {
            _ if self.rt.stopping() => {
                (false, "ShuttingDown", "berthd is shutting down".to_owned())
            }
            Some(c) if c.service.is_ready() => (true, "", String::new()),
            Some(_) => (
                false,
                "Recovering",
                "berth is recovering its state after a restart".to_owned(),
            ),
            None => (
                false,
                "ContainerdUnavailable",
                format!(
                    "not connected to containerd at {} yet",
                    self.rt.containerd_socket
                ),
            ),
        };
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: ready,
                reason: reason.into(),
                message,
            },
            cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: "berth has no pod networking yet: every pod uses the host network".into(),
            },
        ];
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("config".to_owned(), self.rt.config_toml.clone());
        }
        cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![cri::RuntimeHandler {
                name: crate::RUNTIME_HANDLER.into(),
                features: Some(cri::RuntimeHandlerFeatures::default()),
            }],
            features: Some(cri::RuntimeFeatures::default()),
        }
    }

    fn events(&self) -> Result<EventStream, ApiError> {
        let svc = self.rt.service()?.clone();
        let mut events = svc.events();
        let mut stopping = self.rt.stopping.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    biased;
                    _ = stopping.wait_for(|s| *s) => break,
                    _ = tx.closed() => break,
                    e = events.recv() => e,
                };
                let event = match event {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "an event stream client is too slow; events were dropped"
                        );
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let msg = event_message(&svc, &event).await;
                if tx.send(Ok(msg)).await.is_err() {
                    break;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// An event with the statuses known now (the object may be gone already).
async fn event_message(svc: &ServiceHandle, e: &berth_core::Event) -> cri::ContainerEventResponse {
    match &e.target {
        berth_core::Target::Container(id) => {
            let view = svc.container_status(id.as_str()).await.ok();
            let sandbox = match &view {
                Some(v) => svc.sandbox_status(v.meta.sandbox_id.as_str()).await.ok(),
                None => None,
            };
            let containers: Vec<_> = view.into_iter().collect();
            convert::event(e, sandbox.as_ref(), &containers)
        }
        berth_core::Target::Sandbox(id) => {
            let sandbox = svc.sandbox_status(id.as_str()).await.ok();
            let containers = match &sandbox {
                Some(_) => svc
                    .list_containers(ContainerFilter {
                        sandbox: Some(id.to_string()),
                        ..ContainerFilter::default()
                    })
                    .await
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            convert::event(e, sandbox.as_ref(), &containers)
        }
    }
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        _req: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: crate::CRI_API_VERSION.into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        reply(
            "RunPodSandbox",
            Cri::run_pod_sandbox(self, req.into_inner()).await,
        )
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            validate::object_id("pod_sandbox_id", "sandbox", &req.pod_sandbox_id)?;
            self.rt
                .service()?
                .stop_pod_sandbox(&req.pod_sandbox_id)
                .await?;
            Ok(cri::StopPodSandboxResponse {})
        };
        reply("StopPodSandbox", r.await)
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            validate::object_id("pod_sandbox_id", "sandbox", &req.pod_sandbox_id)?;
            self.rt
                .service()?
                .remove_pod_sandbox(&req.pod_sandbox_id)
                .await?;
            Ok(cri::RemovePodSandboxResponse {})
        };
        reply("RemovePodSandbox", r.await)
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        reply(
            "PodSandboxStatus",
            Cri::pod_sandbox_status(self, req.into_inner()).await,
        )
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        reply(
            "ListPodSandbox",
            Cri::list_pod_sandbox(self, req.into_inner()).await,
        )
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        reply(
            "CreateContainer",
            Cri::create_container(self, req.into_inner()).await,
        )
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            validate::object_id("container_id", "container", &req.container_id)?;
            self.rt
                .service()?
                .start_container(&req.container_id)
                .await?;
            Ok(cri::StartContainerResponse {})
        };
        reply("StartContainer", r.await)
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            validate::object_id("container_id", "container", &req.container_id)?;
            let timeout = validate::stop_timeout(req.timeout)?;
            self.rt
                .service()?
                .stop_container(&req.container_id, timeout)
                .await?;
            Ok(cri::StopContainerResponse {})
        };
        reply("StopContainer", r.await)
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let req = req.into_inner();
        let r = async {
            validate::object_id("container_id", "container", &req.container_id)?;
            self.rt
                .service()?
                .remove_container(&req.container_id)
                .await?;
            Ok(cri::RemoveContainerResponse {})
        };
        reply("RemoveContainer", r.await)
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        reply(
            "ListContainers",
            Cri::list_containers(self, req.into_inner()).await,
        )
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        reply(
            "ContainerStatus",
            Cri::container_status(self, req.into_inner()).await,
        )
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        reply(
            "UpdateContainerResources",
            Cri::update_container_resources(self, req.into_inner()).await,
        )
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        reply(
            "ReopenContainerLog",
            Cri::reopen_container_log(self, req.into_inner()).await,
        )
    }

    async fn exec_sync(
        &self,
        req: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        reply("ExecSync", Cri::exec_sync(self, req.into_inner()).await)
    }

    async fn exec(
        &self,
        _req: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        unimplemented("Exec", "berth has no exec or streaming server yet")
    }

    async fn attach(
        &self,
        _req: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        unimplemented(
            "Attach",
            "berth has no streaming server yet; read the container log",
        )
    }

    async fn port_forward(
        &self,
        _req: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        unimplemented(
            "PortForward",
            "berth has no streaming server and uses the host network",
        )
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        reply(
            "ContainerStats",
            Cri::container_stats(self, req.into_inner()).await,
        )
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        reply(
            "ListContainerStats",
            Cri::list_container_stats(self, req.into_inner()).await,
        )
    }

    async fn pod_sandbox_stats(
        &self,
        _req: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        unimplemented("PodSandboxStats", "berth collects no statistics yet")
    }

    async fn list_pod_sandbox_stats(
        &self,
        _req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        unimplemented("ListPodSandboxStats", "berth collects no statistics yet")
    }

    async fn update_runtime_config(
        &self,
        _req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // The only setting is the pod CIDR, which host networking does not use.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        req: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        Ok(Response::new(Cri::status(self, req.get_ref())))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        unimplemented(
            "CheckpointContainer",
            "berth cannot checkpoint containers (CRIU) yet",
        )
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        reply("GetContainerEvents", self.events())
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        unimplemented("ListMetricDescriptors", "berth collects no metrics yet")
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        unimplemented("ListPodSandboxMetrics", "berth collects no metrics yet")
    }

    async fn runtime_config(
        &self,
        _req: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}
