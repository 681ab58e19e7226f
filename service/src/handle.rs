//! The async API of the CRI verbs: what berthd and the simulator's clients call.

use std::time::Duration;

use berth_core::{
    Command, ContainerConfig, ContainerId, Event, ExecOutput, Resources, Response, SandboxConfig,
    SandboxId, Target,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::ServiceError;
use crate::read::{ContainerFilter, ContainerView, SandboxFilter, SandboxView};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

/// What a handle asks the driver.
pub(crate) enum Request {
    Command(Command, Reply<Response>),
    /// A command addressed by id or prefix, resolved by the driver.
    ByPrefix(PrefixCommand, String, Reply<Response>),
    ContainerStatus(String, Reply<ContainerView>),
    ListContainers(ContainerFilter, Reply<Vec<ContainerView>>),
    SandboxStatus(String, Reply<SandboxView>),
    ListSandboxes(SandboxFilter, Reply<Vec<SandboxView>>),
    NewContainerId(Reply<ContainerId>),
    NewSandboxId(Reply<SandboxId>),
    CheckInvariants(Reply<Result<(), String>>),
    /// Resource usage of these containers' tasks (all when empty), straight from the
    /// backend: a read, not a lifecycle step.
    TaskMetrics(Vec<ContainerId>, Reply<Vec<berth_backend::TaskMetrics>>),
    ArmedWaits(Reply<Vec<Target>>),
}

/// Commands that take an existing object's id.
#[derive(Debug, Clone)]
pub(crate) enum PrefixCommand {
    Start,
    Stop(Duration),
    Remove,
    Update(Resources),
    ReopenLog,
    /// ExecSync: the driver draws the exec id.
    Exec {
        cmd: Vec<String>,
        timeout: Duration,
    },
    StopSandbox,
    RemoveSandbox,
}

/// A cheap, cloneable handle to a running service.
#[derive(Clone)]
pub struct ServiceHandle {
    pub(crate) requests: mpsc::UnboundedSender<Request>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) ready: watch::Receiver<bool>,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl ServiceHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ServiceError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .map_err(|_| ServiceError::Stopped)?;
        rx.await.map_err(|_| ServiceError::Stopped)?
    }

    /// RunPodSandbox: returns the new sandbox's id once its pause task runs.
    pub async fn run_pod_sandbox(&self, config: SandboxConfig) -> Result<SandboxId, ServiceError> {
        let id = self.ask(Request::NewSandboxId).await?;
        let command = Command::RunPodSandbox {
            id,
            config: Box::new(config),
        };
        match self.ask(|r| Request::Command(command, r)).await? {
            Response::SandboxCreated(id) => Ok(id),
            _ => Err(ServiceError::Stopped),
        }
    }

    /// The resource usage of the tasks of `ids` (every task when empty), sampled now by the
    /// backend (containerd `Tasks.Metrics`) under the call deadline. Containers without a
    /// task are left out; a backend failure is [`ServiceError::Backend`].
    pub async fn task_metrics(
        &self,
        ids: Vec<ContainerId>,
    ) -> Result<Vec<berth_backend::TaskMetrics>, ServiceError> {
        self.ask(|r| Request::TaskMetrics(ids, r)).await
    }

    /// StopPodSandbox (unknown ids succeed).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::StopSandbox, id).await
    }

    /// RemovePodSandbox (unknown ids succeed).
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::RemoveSandbox, id).await
    }

    /// CreateContainer: returns the new container's id.
    pub async fn create_container(
        &self,
        sandbox: &str,
        config: ContainerConfig,
    ) -> Result<ContainerId, ServiceError> {
        let sandbox = self.sandbox_status(sandbox).await?.meta.id;
        let id = self.ask(Request::NewContainerId).await?;
        let command = Command::CreateContainer {
            id,
            sandbox,
            config: Box::new(config),
        };
        match self.ask(|r| Request::Command(command, r)).await? {
            Response::ContainerCreated(id) => Ok(id),
            _ => Err(ServiceError::Stopped),
        }
    }

    /// StartContainer.
    pub async fn start_container(&self, id: &str) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::Start, id).await
    }

    /// StopContainer with a grace period (unknown ids succeed).
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::Stop(timeout), id).await
    }

    /// RemoveContainer (unknown ids succeed).
    pub async fn remove_container(&self, id: &str) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::Remove, id).await
    }

    /// UpdateContainerResources: applies the new limits to the running task or the created
    /// container's record, then records them durably (ContainerStatus reports them).
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: Resources,
    ) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::Update(resources), id).await
    }

    /// ReopenContainerLog: a running container's log file is reopened (after log rotation
    /// moved it); FailedPrecondition in any other state.
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), ServiceError> {
        self.by_prefix(PrefixCommand::ReopenLog, id).await
    }

    /// ExecSync: runs `cmd` in a RUNNING container as an exec process and returns its exit
    /// code (any code: non-zero is an answer, not an error) and its stdout and stderr, each
    /// capped at the core's `exec_output_cap`. Past `timeout` (zero: none) from the process's
    /// start it is killed and the answer is a DeadlineExceeded error. The exec process is
    /// gone once this returns, whatever the outcome.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, ServiceError> {
        let command = PrefixCommand::Exec { cmd, timeout };
        match self
            .ask(|r| Request::ByPrefix(command, id.to_owned(), r))
            .await?
        {
            Response::ExecSync(out) => Ok(out),
            _ => Err(ServiceError::Stopped),
        }
    }

    async fn by_prefix(&self, command: PrefixCommand, id: &str) -> Result<(), ServiceError> {
        self.ask(|r| Request::ByPrefix(command, id.to_owned(), r))
            .await
            .map(|_| ())
    }

    /// ContainerStatus by id or unique prefix.
    pub async fn container_status(&self, id: &str) -> Result<ContainerView, ServiceError> {
        self.ask(|r| Request::ContainerStatus(id.to_owned(), r))
            .await
    }

    /// ListContainers.
    pub async fn list_containers(
        &self,
        filter: ContainerFilter,
    ) -> Result<Vec<ContainerView>, ServiceError> {
        self.ask(|r| Request::ListContainers(filter, r)).await
    }

    /// PodSandboxStatus by id or unique prefix.
    pub async fn sandbox_status(&self, id: &str) -> Result<SandboxView, ServiceError> {
        self.ask(|r| Request::SandboxStatus(id.to_owned(), r)).await
    }

    /// ListPodSandbox.
    pub async fn list_sandboxes(
        &self,
        filter: SandboxFilter,
    ) -> Result<Vec<SandboxView>, ServiceError> {
        self.ask(|r| Request::ListSandboxes(filter, r)).await
    }

    /// Checks the core's invariants over the whole state (for tests and the simulator's
    /// checkers). `Ok(Err(..))` names the first invariant broken; answered even during
    /// recovery once the state exists.
    pub async fn check_invariants(&self) -> Result<Result<(), String>, ServiceError> {
        self.ask(Request::CheckInvariants).await
    }

    /// The objects the core waits on now ([`berth_core::Machine::armed_waits`]: a
    /// `Tasks.Wait` outstanding or a re-sync of a broken one), for tests and the
    /// simulator's checkers; answered even during recovery once the state exists.
    pub async fn armed_waits(&self) -> Result<Vec<Target>, ServiceError> {
        self.ask(Request::ArmedWaits).await
    }

    /// The CRI event stream (created, started, stopped, deleted). A slow receiver misses
    /// events rather than slowing the service down.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// True once recovery has finished.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until recovery has finished.
    pub async fn wait_ready(&self) -> Result<(), ServiceError> {
        let mut ready = self.ready.clone();
        while !*ready.borrow_and_update() {
            ready.changed().await.map_err(|_| ServiceError::Stopped)?;
        }
        Ok(())
    }

    /// Graceful shutdown: no container is killed; exit monitors stop; in-flight requests
    /// get [`ServiceError::Stopped`].
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}
