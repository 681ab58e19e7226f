//! Shared set-up of the service's integration tests: a private containerd (berth-testkit),
//! service instances that each run on a tokio runtime of their own (so that a crash is
//! `Runtime::shutdown_background`: every task of the instance dies mid-flight, nothing is
//! cleaned up), backend and checkpoint-store wrappers that stop the service at a chosen
//! step, and an observer connection to containerd that tells the truth.

#![allow(dead_code)] // each test binary uses a different part

pub mod wrappers;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_backend::{Backend, CheckpointStore, Target, TaskState};
use berth_containerd::store::FsCheckpointStore;
use berth_containerd::{BackendConfig, ContainerdBackend};
use berth_core::{
    CommandError, ContainerConfig, ContainerId, ContainerState, ErrorCode, SandboxConfig, SandboxId,
};
use berth_service::{
    ContainerFilter, ContainerView, SandboxFilter, SandboxView, Service, ServiceConfig,
    ServiceError, ServiceHandle,
};
use berth_testkit::{PrivateContainerd, process_alive};
use futures::StreamExt;

/// How long a test waits for a condition before it fails (generous: a loaded 2-core VM).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Grace period of StopContainer calls in the tests.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A command that prints `ready` once its TERM trap is set, then idles in `wait` (a
/// trapped signal interrupts `wait` at once) and exits with `code` on SIGTERM.
pub fn exits_on_term(code: i32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("trap 'kill $!; exit {code}' TERM; echo ready; sleep 1000 & wait"),
    ]
}

/// `sleep 1000`.
pub fn sleeper() -> Vec<String> {
    vec!["sleep".into(), "1000".into()]
}

/// Wall clock in unix ns.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Polls `probe` until it returns `Ok`, at most [`PATIENCE`]; then panics with `what` and
/// the last `Err` it returned.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => {
                if tokio::time::Instant::now() >= deadline {
                    panic!("{what}: still not true after {PATIENCE:?}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the host process `pid` is no longer alive; panics with `what` after
/// [`PATIENCE`].
pub async fn await_process_gone(what: &str, pid: u32) {
    eventually(what, || async {
        if process_alive(pid) {
            Err(format!("pid {pid} alive"))
        } else {
            Ok(())
        }
    })
    .await
}

/// True exactly when `answer` is the service's ContainerNotFound.
pub fn is_container_not_found<T>(answer: &Result<T, ServiceError>) -> bool {
    matches!(
        answer,
        Err(ServiceError::Command(
            CommandError::ContainerNotFound { .. }
        ))
    )
}

/// Sends `signal` to a host pid (ignoring a process that is already gone).
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, signal);
    }
}

/// Polls a log file until it contains `needle`.
pub async fn await_log(path: &str, needle: &str) {
    eventually(&format!("{path} contains {needle:?}"), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            Ok(())
        } else {
            Err(format!("it holds {text:?}"))
        }
    })
    .await
}

/// The service's tunables in the tests: production values but shorter backoffs, so that
/// retries after a containerd outage or a dead shim do not make the suite slow.
pub fn service_config() -> ServiceConfig {
    let mut config = ServiceConfig::default();
    config.core.backoff_initial = Duration::from_millis(100);
    config.core.backoff_max = Duration::from_secs(2);
    config.core.resync_backoff_max = Duration::from_secs(1);
    config.id_seed = now_ns() as u64;
    config
}

static NODES: AtomicUsize = AtomicUsize::new(0);

/// One service instance ("berthd process") on a tokio runtime of its own.
pub struct Node {
    rt: Option<tokio::runtime::Runtime>,
    /// The runtime's thread name: the threads of a crashed instance are gone when no thread
    /// of this process carries it any more.
    thread_name: String,
    /// The service.
    pub svc: ServiceHandle,
}

impl std::ops::Deref for Node {
    type Target = ServiceHandle;
    fn deref(&self) -> &ServiceHandle {
        &self.svc
    }
}

impl Node {
    /// Builds a runtime, runs `make` on it (backend connections must be made inside the
    /// runtime that will own them) and starts the service there.
    pub async fn spawn<B, S, F>(make: F, config: ServiceConfig) -> Node
    where
        B: Backend,
        S: CheckpointStore,
        F: Future<Output = (B, S)> + Send + 'static,
    {
        let n = NODES.fetch_add(1, Ordering::Relaxed);
        let thread_name = format!("bsvc-{n}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(thread_name.clone())
            .enable_all()
            .build()
            .expect("service runtime");
        let svc = rt
            .spawn(async move {
                let (backend, store) = make.await;
                Service::start(Arc::new(backend), Arc::new(store), config)
            })
            .await
            .expect("service start");
        Node {
            rt: Some(rt),
            thread_name,
            svc,
        }
    }

    /// A crash: the runtime is shut down without waiting, every task (driver, calls,
    /// checkpoint writes, waits) dies wherever it was; no cleanup of any kind runs. Returns
    /// once every thread of the instance has gone (as a killed process's would).
    pub async fn crash(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        let name = self.thread_name.clone();
        eventually(&format!("the threads of {name} are gone"), || {
            let name = name.clone();
            async move {
                let n = threads_named(&name);
                if n == 0 {
                    Ok(())
                } else {
                    Err(format!("{n} threads left"))
                }
            }
        })
        .await;
    }

    /// Graceful shutdown through the service's own API; returns once the service answers
    /// nothing any more, then tears the runtime down.
    pub async fn shut_down(self) {
        self.svc.shutdown();
        eventually("the service stops answering after shutdown", || async {
            match self.svc.list_containers(ContainerFilter::default()).await {
                Err(ServiceError::Stopped) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        self.crash().await;
    }

    /// ContainerStatus, which must succeed.
    pub async fn status_of(&self, id: &str) -> ContainerView {
        self.svc
            .container_status(id)
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
    }

    /// Every container, by id.
    pub async fn containers(&self) -> BTreeMap<String, ContainerView> {
        self.svc
            .list_containers(ContainerFilter::default())
            .await
            .expect("ListContainers")
            .into_iter()
            .map(|c| (c.meta.id.to_string(), c))
            .collect()
    }

    /// Every sandbox (ListPodSandbox, which must succeed).
    pub async fn sandboxes(&self) -> Vec<SandboxView> {
        self.svc
            .list_sandboxes(SandboxFilter::default())
            .await
            .expect("ListPodSandbox")
    }

    /// Polls ContainerStatus (which must succeed) until the container is in `state`;
    /// returns that view. Panics with `what` and the last view after [`PATIENCE`].
    pub async fn await_state(&self, what: &str, id: &str, state: ContainerState) -> ContainerView {
        eventually(what, || async {
            let v = self.status_of(id).await;
            if v.state == state {
                Ok(v)
            } else {
                Err(format!("{v:?}"))
            }
        })
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Never blocks (a test may drop a node from async code or while unwinding).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// How many threads of this process are named `name`.
fn threads_named(name: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .count()
}

/// A private containerd, a checkpoint directory, a log directory, and an observer (a
/// backend connection of the test's own, on the test's runtime) that reports what
/// containerd really holds.
pub struct ServiceFixture {
    /// The private containerd.
    pub ctd: PrivateContainerd,
    /// The test's own connection to it.
    pub observer: ContainerdBackend,
    root: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl ServiceFixture {
    /// Starts containerd; panics with the harness's words if the machine cannot.
    pub async fn start() -> ServiceFixture {
        berth_testkit::require_root_and_tools().expect("root and tools");
        let ctd = PrivateContainerd::start()
            .await
            .expect("private containerd");
        let root = berth_testkit::scratch_dir("svc-root").expect("checkpoint dir");
        let logs = berth_testkit::scratch_dir("svc-logs").expect("log dir");
        // Connections belong to the runtime that made them: the observer's is the test's.
        let observer = ContainerdBackend::connect(backend_config(&ctd))
            .await
            .expect("observer connection");
        ServiceFixture {
            ctd,
            observer,
            root,
            logs,
        }
    }

    /// The backend configuration every service instance uses.
    pub fn backend_config(&self) -> BackendConfig {
        backend_config(&self.ctd)
    }

    /// The checkpoint store's root.
    pub fn root(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }

    /// The checkpoint store, opened by the test (to read or damage files).
    pub fn store(&self) -> FsCheckpointStore {
        FsCheckpointStore::open(self.root()).expect("open checkpoint store")
    }

    /// A service instance with the production backend and store.
    pub async fn node(&self) -> Node {
        self.node_with(|b, s| (b, s)).await
    }

    /// A service instance whose backend and store are wrapped by `wrap`.
    pub async fn node_with<B, S, W>(&self, wrap: W) -> Node
    where
        B: Backend,
        S: CheckpointStore,
        W: FnOnce(ContainerdBackend, FsCheckpointStore) -> (B, S) + Send + 'static,
    {
        let config = self.backend_config();
        let root = self.root();
        Node::spawn(
            async move {
                let backend = ContainerdBackend::connect(config)
                    .await
                    .expect("service connection");
                let store = FsCheckpointStore::open(root).expect("open checkpoint store");
                wrap(backend, store)
            },
            service_config(),
        )
        .await
    }

    /// A service instance on the production backend wrapped in a [`wrappers::GatedBackend`]
    /// steered by `knobs`. It is not waited for: a gate armed beforehand may hold its
    /// recovery.
    pub async fn gated_node(&self, knobs: &Arc<wrappers::Knobs>) -> Node {
        let knobs = knobs.clone();
        self.node_with(move |b, s| (wrappers::GatedBackend::new(b, knobs), s))
            .await
    }

    /// A ready service instance on a [`wrappers::GatedBackend`] with every gate open, and
    /// the knobs that steer it.
    pub async fn ready_gated_node(&self) -> (Node, Arc<wrappers::Knobs>) {
        let knobs = wrappers::Knobs::new();
        let node = self.gated_node(&knobs).await;
        node.wait_ready().await.expect("recovery finishes");
        (node, knobs)
    }

    /// A ready service instance with the production backend and store.
    pub async fn ready_node(&self) -> Node {
        let node = self.node().await;
        node.wait_ready().await.expect("recovery finishes");
        node
    }

    /// A pod config whose logs go under the test's log directory.
    pub fn pod_config(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "berth-test".into(),
            hostname: name.into(),
            log_directory: self.logs.path().join(name).display().to_string(),
            ..SandboxConfig::default()
        }
    }

    /// A container config running `command`, logging to `<pod log dir>/<name>.log`.
    pub fn container_config(&self, name: &str, command: Vec<String>) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            image: self.ctd.image_ref().to_owned(),
            command,
            log_path: format!("{name}.log"),
            ..ContainerConfig::default()
        }
    }

    /// RunPodSandbox.
    pub async fn pod(&self, node: &Node, name: &str) -> SandboxId {
        node.run_pod_sandbox(self.pod_config(name))
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"))
    }

    /// CreateContainer.
    pub async fn create(
        &self,
        node: &Node,
        pod: &SandboxId,
        name: &str,
        command: Vec<String>,
    ) -> ContainerId {
        node.create_container(pod.as_str(), self.container_config(name, command))
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
    }

    /// CreateContainer + StartContainer; returns the id and the pid the service reports.
    pub async fn run(
        &self,
        node: &Node,
        pod: &SandboxId,
        name: &str,
        command: Vec<String>,
    ) -> (ContainerId, u32) {
        let id = self.create(node, pod, name, command).await;
        node.start_container(id.as_str())
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        let view = node.status_of(id.as_str()).await;
        assert_eq!(view.state, ContainerState::Running, "{name}: {view:?}");
        assert!(view.status.pid > 0, "{name}: {view:?}");
        (id, view.status.pid)
    }

    /// What containerd says of `target`'s task; the observer's call must succeed.
    async fn observed_task(&self, target: &Target) -> TaskState {
        self.observer
            .task_status(target)
            .await
            .unwrap_or_else(|e| panic!("observer: task status of {target}: {e}"))
    }

    /// What containerd says of a container's task.
    pub async fn task(&self, id: &ContainerId) -> TaskState {
        self.observed_task(&Target::Container(id.clone())).await
    }

    /// What containerd says of a sandbox's pause task.
    pub async fn pause_task(&self, id: &SandboxId) -> TaskState {
        self.observed_task(&Target::Sandbox(id.clone())).await
    }

    /// Waits until containerd has no task for the container (NotFound); panics with
    /// `what` and the last state seen after [`PATIENCE`].
    pub async fn await_no_task(&self, what: &str, id: &ContainerId) {
        eventually(what, || async {
            match self.task(id).await {
                TaskState::NotFound => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Waits until containerd reports the container's task stopped; returns its exit.
    pub async fn await_task_stopped(&self, id: &ContainerId) -> berth_core::ExitStatus {
        eventually(
            &format!("containerd reports {id}'s task stopped"),
            || async {
                match self.task(id).await {
                    TaskState::Stopped(exit) => Ok(exit),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await
    }

    /// Every task containerd holds for a berth record (records without a task left out),
    /// by `container <id>` / `sandbox <id>`.
    pub async fn live_tasks(&self) -> BTreeMap<String, TaskState> {
        let listing = self.observer.list().await.expect("observer: list");
        let targets = listing
            .containers
            .iter()
            .map(|l| Target::Container(ContainerId::new(&l.id).expect("listed id")))
            .chain(
                listing
                    .sandboxes
                    .iter()
                    .map(|l| Target::Sandbox(SandboxId::new(&l.id).expect("listed id"))),
            );
        let mut tasks = BTreeMap::new();
        for t in targets {
            let state = self.observed_task(&t).await;
            if state != TaskState::NotFound {
                tasks.insert(t.to_string(), state);
            }
        }
        tasks
    }

    /// Removes every pod (and so every container) through `node`, checks that nothing is
    /// left in the service, in containerd or in the checkpoint directory, shuts the service
    /// down and then containerd.
    pub async fn finish(self, node: Node) {
        let ctd = &self.ctd;
        let containers = node.containers().await;
        futures::stream::iter(containers.keys())
            .for_each_concurrent(8, |id| {
                let node = &node;
                async move {
                    let what = format!("cleanup: RemoveContainer {id}");
                    like_a_kubelet(&what, ctd, || node.remove_container(id)).await;
                }
            })
            .await;
        let pods = node.sandboxes().await;
        futures::stream::iter(pods.iter())
            .for_each_concurrent(8, |p| {
                let node = &node;
                async move {
                    let id = p.meta.id.as_str();
                    let what = format!("cleanup: RemovePodSandbox {id}");
                    like_a_kubelet(&what, ctd, || node.remove_pod_sandbox(id)).await;
                }
            })
            .await;
        assert!(node.containers().await.is_empty(), "containers left");
        let pods = node.sandboxes().await;
        assert!(pods.is_empty(), "sandboxes left: {pods:?}");
        let listing = self.observer.list().await.expect("observer: list");
        assert!(
            listing.containers.is_empty() && listing.sandboxes.is_empty(),
            "containerd records left: {listing:?}"
        );
        let dirs = dir_names(&self.root().join("containers"));
        assert!(dirs.is_empty(), "checkpoint directories left: {dirs:?}");
        node.shut_down().await;
        self.ctd.shutdown().await.expect("containerd shutdown");
    }
}

/// True for an error CRI tells the caller to retry (gRPC Unavailable): containerd was
/// briefly unreachable, or a shim was going away under the call.
pub fn is_transient(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Command(c) if c.code() == ErrorCode::Unavailable)
}

/// Runs `request` until it succeeds, retrying transient errors as a kubelet does (each
/// retry is printed); any other error fails the test with containerd's log tail.
pub async fn like_a_kubelet<F, Fut>(what: &str, ctd: &PrivateContainerd, mut request: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ServiceError>>,
{
    eventually(what, || {
        let attempt = request();
        async move {
            match attempt.await {
                Ok(()) => Ok(()),
                Err(e) if is_transient(&e) => {
                    eprintln!("{what}: transient error, retrying: {e}");
                    Err(e.to_string())
                }
                Err(e) => panic!("{what}: {e}\ncontainerd log:\n{}", ctd.log_tail(40)),
            }
        }
    })
    .await
}

fn backend_config(ctd: &PrivateContainerd) -> BackendConfig {
    let mut config = BackendConfig::new(ctd.socket());
    config.namespace = ctd.namespace().to_owned();
    config.sandbox_image = ctd.image_ref().to_owned();
    config.sandbox_command = vec!["sleep".into(), "infinity".into()];
    config
}

/// Names of the entries of a directory (empty if it does not exist).
pub fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts container `id` in the background with the `container_start` gate of a
/// [`wrappers::GatedBackend`] armed, and returns once the StartContainer is held just
/// before `Tasks.Start` (its task created, not started).
pub async fn start_held_at_gate(
    node: &Node,
    id: &ContainerId,
    knobs: &wrappers::Knobs,
) -> tokio::task::JoinHandle<Result<(), ServiceError>> {
    start_held_at(
        node,
        id,
        &knobs.container_start,
        "StartContainer reaches Tasks.Start",
    )
    .await
}

/// Arms `gate` (one that the service's StartContainer passes: a
/// [`wrappers::GatedBackend`]'s `container_start`, or a [`wrappers::HoldingStore`]'s gate
/// of RUNNING writes), starts container `id` in the background, and returns once that
/// StartContainer is held at the gate; `what` names the step in the panic if it never
/// gets there.
pub async fn start_held_at(
    node: &Node,
    id: &ContainerId,
    gate: &wrappers::Gate,
    what: &str,
) -> tokio::task::JoinHandle<Result<(), ServiceError>> {
    gate.arm();
    let start = {
        let (svc, id) = (node.svc.clone(), id.clone());
        tokio::spawn(async move { svc.start_container(id.as_str()).await })
    };
    gate.await_one(what).await;
    start
}
