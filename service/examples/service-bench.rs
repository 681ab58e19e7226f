//! berth-service end to end against a private containerd (berth-testkit) with real runc
//! tasks: StartContainer latency through the service, and recovery time after a crash
//! (restart → `wait_ready()` returns) with 50 and 200 running containers. Prints a table;
//! asserts nothing.
//!
//! ```sh
//! cargo run --release -p berth-service --example service-bench -- [rounds=5]
//! ```
//!
//! Needs root (runc). Containers run `sleep 1000`, spread over 10 pods; StartContainer is
//! measured one request at a time (latency, not throughput). A crash is the service's
//! runtime shut down without any cleanup, as in the integration tests; each recovery round
//! crashes the previous instance and times a new one on the same checkpoint directory and
//! containerd namespace. Everything is removed at the end.

#[cfg(madsim)]
fn main() {
    eprintln!("service-bench drives a real containerd: build it without --cfg madsim");
}

#[cfg(not(madsim))]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    bench::run().await
}

#[cfg(not(madsim))]
mod bench {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use berth_containerd::store::FsCheckpointStore;
    use berth_containerd::{BackendConfig, ContainerdBackend};
    use berth_core::{ContainerConfig, ErrorCode, SandboxConfig, SandboxId};
    use berth_service::{SandboxFilter, Service, ServiceConfig, ServiceError, ServiceHandle};
    use berth_testkit::PrivateContainerd;

    const PODS: usize = 10;
    const SIZES: [usize; 2] = [50, 200];

    /// Samples of one measured operation.
    struct Series {
        name: String,
        samples: Vec<Duration>,
    }

    impl Series {
        fn new(name: impl Into<String>) -> Self {
            Series {
                name: name.into(),
                samples: Vec::new(),
            }
        }

        fn row(&mut self) -> String {
            self.samples.sort();
            let n = self.samples.len();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let at = |p: usize| self.samples[((n * p).div_ceil(100)).clamp(1, n) - 1];
            format!(
                "{:<44} {:>5} {:>9.2} {:>9.2} {:>9.2}",
                self.name,
                n,
                ms(at(50)),
                ms(at(99)),
                ms(self.samples[n - 1])
            )
        }
    }

    /// One service instance on a runtime of its own (a "berthd process").
    struct Node {
        rt: tokio::runtime::Runtime,
        svc: ServiceHandle,
    }

    impl Node {
        /// Starts an instance; returns it and how long its recovery took (Service::start →
        /// ready), the connection to containerd excluded.
        async fn start(config: BackendConfig, root: std::path::PathBuf) -> (Node, Duration) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("service runtime");
            let (svc, took) = rt
                .spawn(async move {
                    let backend = ContainerdBackend::connect(config)
                        .await
                        .expect("connect to containerd");
                    let store = FsCheckpointStore::open(root).expect("checkpoint store");
                    let service = ServiceConfig {
                        id_seed: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos() as u64)
                            .unwrap_or(1),
                        ..ServiceConfig::default()
                    };
                    let t = Instant::now();
                    let svc = Service::start(Arc::new(backend), Arc::new(store), service);
                    svc.wait_ready().await.expect("recovery");
                    (svc, t.elapsed())
                })
                .await
                .expect("service start");
            (Node { rt, svc }, took)
        }

        fn crash(self) {
            self.rt.shutdown_background();
        }
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    /// Retries a request the service answers Unavailable (the kubelet's behaviour).
    async fn retried<F, Fut>(what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), ServiceError>>,
    {
        for _ in 0..100 {
            match f().await {
                Ok(()) => return,
                Err(ServiceError::Command(e)) if e.code() == ErrorCode::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{what}: {e}"),
            }
        }
        panic!("{what}: still unavailable after 100 tries");
    }

    pub async fn run() {
        let rounds: usize = std::env::args()
            .nth(1)
            .map(|a| a.parse().expect("rounds: a number"))
            .unwrap_or(5);
        berth_testkit::require_root_and_tools().expect("root and tools");
        let ctd = PrivateContainerd::start()
            .await
            .expect("private containerd");
        let root = berth_testkit::scratch_dir("bench-root").expect("checkpoint dir");
        let mut config = BackendConfig::new(ctd.socket());
        config.namespace = ctd.namespace().to_owned();
        config.sandbox_image = ctd.image_ref().to_owned();
        config.sandbox_command = vec!["sleep".into(), "infinity".into()];

        let (mut node, _) = Node::start(config.clone(), root.path().to_path_buf()).await;
        let mut pods: Vec<SandboxId> = Vec::new();
        for p in 0..PODS {
            let pod = node
                .svc
                .run_pod_sandbox(SandboxConfig {
                    name: format!("bench{p}"),
                    uid: format!("uid-bench{p}"),
                    namespace: "bench".into(),
                    ..SandboxConfig::default()
                })
                .await
                .expect("RunPodSandbox");
            pods.push(pod);
        }

        let mut create = Series::new("CreateContainer");
        let mut start = Series::new("StartContainer");
        let mut recovery = Vec::new();
        let mut restart = Vec::new();
        let mut running = 0;
        for size in SIZES {
            while running < size {
                let pod = &pods[running % PODS];
                let cfg = ContainerConfig {
                    name: format!("c{running}"),
                    image: ctd.image_ref().to_owned(),
                    command: vec!["sleep".into(), "1000".into()],
                    ..ContainerConfig::default()
                };
                let t = Instant::now();
                let id = node
                    .svc
                    .create_container(pod.as_str(), cfg)
                    .await
                    .expect("CreateContainer");
                create.samples.push(t.elapsed());
                let t = Instant::now();
                node.svc
                    .start_container(id.as_str())
                    .await
                    .expect("StartContainer");
                start.samples.push(t.elapsed());
                running += 1;
            }
            let mut rec = Series::new(format!("recovery, {size} running (start → ready)"));
            let mut rst = Series::new(format!("restart, {size} running (+ connect)"));
            for _ in 0..rounds {
                node.crash();
                let t = Instant::now();
                let (next, took) = Node::start(config.clone(), root.path().to_path_buf()).await;
                rst.samples.push(t.elapsed());
                rec.samples.push(took);
                node = next;
                let listed = node
                    .svc
                    .list_containers(Default::default())
                    .await
                    .expect("ListContainers");
                assert_eq!(listed.len(), size, "every container recovered");
            }
            recovery.push(rec);
            restart.push(rst);
        }

        println!(
            "berth-service against containerd {} (runc), {} pods, load {}",
            ctd.namespace(),
            PODS,
            loadavg()
        );
        println!(
            "{:<44} {:>5} {:>9} {:>9} {:>9}",
            "operation", "n", "p50 ms", "p99 ms", "max ms"
        );
        println!("{}", create.row());
        println!("{}", start.row());
        for (mut rec, mut rst) in recovery.into_iter().zip(restart) {
            println!("{}", rec.row());
            println!("{}", rst.row());
        }

        let pods = node
            .svc
            .list_sandboxes(SandboxFilter::default())
            .await
            .expect("ListPodSandbox");
        for p in pods {
            let id = p.meta.id.to_string();
            let svc = node.svc.clone();
            retried(&format!("RemovePodSandbox {id}"), || {
                let (svc, id) = (svc.clone(), id.clone());
                async move { svc.remove_pod_sandbox(&id).await }
            })
            .await;
        }
        node.svc.shutdown();
        node.crash();
        ctd.shutdown().await.expect("containerd shutdown");
    }
}
