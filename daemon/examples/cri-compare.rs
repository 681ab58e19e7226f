//! cri-compare: the same CRI workload against several runtime endpoints in one run, side by
//! side: berthd and containerd's own CRI plugin on the same containerd, for example
//! (`scripts/bench-vs-containerd.sh` starts both and runs this).
//!
//! ```sh
//! cri-compare --endpoint berthd=/path/berthd.sock --endpoint containerd=/path/containerd.sock \
//!             --image registry.k8s.io/e2e-test-images/busybox:1.29-2 [--iterations 100]
//! ```
//!
//! Per endpoint, in a pod of its own (host network: no CNI in the measurement): CreateContainer
//! of a plain container, StartContainer, and ExecSync of `true` and of `echo` on a running
//! container; the endpoints take turns (one round each, `--iterations` rounds) so that a
//! slow phase of the machine hits both. Prints p50 and p99 per RPC and endpoint, and the
//! ratio of the first endpoint's p50 to each other's. Figures are printed, never asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_cli::client::{CriClient, connect};
use k8s_cri::v1 as cri;

struct Endpoint {
    name: String,
    socket: PathBuf,
}

struct Opts {
    endpoints: Vec<Endpoint>,
    image: String,
    iterations: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: cri-compare --endpoint NAME=SOCKET [--endpoint NAME=SOCKET ...] --image REF \
         [--iterations N]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        endpoints: Vec::new(),
        image: String::new(),
        iterations: 100,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--endpoint" => {
                let (name, socket) = v.split_once('=').unwrap_or_else(|| usage());
                o.endpoints.push(Endpoint {
                    name: name.to_owned(),
                    socket: PathBuf::from(socket.trim_start_matches("unix://")),
                });
            }
            "--image" => o.image = v,
            "--iterations" => o.iterations = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if o.endpoints.is_empty() || o.image.is_empty() || o.iterations == 0 {
        usage();
    }
    o
}

#[derive(Default, Clone)]
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: usize) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[(v.len() * p / 100).min(v.len() - 1)]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The RPCs measured, in print order.
const RPCS: [&str; 4] = [
    "CreateContainer",
    "StartContainer",
    "ExecSync `true`",
    "ExecSync `echo` (1 line)",
];

struct Runtime {
    name: String,
    client: CriClient,
    pod: String,
    sleeper: String,
    samples: [Samples; 4],
    created: Vec<String>,
}

fn pod_config(tag: &str, logs: &std::path::Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("compare-{tag}"),
            uid: format!("compare-{tag}-uid"),
            namespace: "cri-compare".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn timed<T>(
    s: &mut Samples,
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    let t = Instant::now();
    let r = f
        .await
        .unwrap_or_else(|e| panic!("{what}: {} {}", e.code(), e.message()));
    s.0.push(t.elapsed());
    r.into_inner()
}

impl Runtime {
    async fn open(e: &Endpoint, image: &str, logs: &std::path::Path) -> Runtime {
        let mut client = connect(&e.socket)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", e.name));
        let logs = logs.join(&e.name);
        std::fs::create_dir_all(&logs).expect("log dir");
        let config = pod_config(&e.name, &logs);
        let pod = client
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|err| panic!("{}: RunPodSandbox: {err}", e.name))
            .into_inner()
            .pod_sandbox_id;
        let sleeper = client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container("sleeper", image, &["sleep", "100000"])),
                sandbox_config: Some(config),
            })
            .await
            .unwrap_or_else(|err| panic!("{}: CreateContainer: {err}", e.name))
            .into_inner()
            .container_id;
        client
            .start_container(cri::StartContainerRequest {
                container_id: sleeper.clone(),
            })
            .await
            .unwrap_or_else(|err| panic!("{}: StartContainer: {err}", e.name));
        Runtime {
            name: e.name.clone(),
            client,
            pod,
            sleeper,
            samples: Default::default(),
            created: Vec::new(),
        }
    }

    /// One round: a container created and started; two ExecSyncs in the sleeper.
    async fn round(&mut self, i: usize, image: &str, logs: &std::path::Path) {
        let c = &mut self.client;
        let config = pod_config(&self.name, &logs.join(&self.name));
        let id = timed(
            &mut self.samples[0],
            "CreateContainer",
            c.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: self.pod.clone(),
                config: Some(container(&format!("c{i}"), image, &["sleep", "100000"])),
                sandbox_config: Some(config),
            }),
        )
        .await
        .container_id;
        timed(
            &mut self.samples[1],
            "StartContainer",
            c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }),
        )
        .await;
        self.created.push(id);
        for (k, cmd) in [(2, vec!["true"]), (3, vec!["echo", "hello"])] {
            let r = timed(
                &mut self.samples[k],
                "ExecSync",
                c.exec_sync(cri::ExecSyncRequest {
                    container_id: self.sleeper.clone(),
                    cmd: cmd.iter().map(|s| s.to_string()).collect(),
                    timeout: 5,
                }),
            )
            .await;
            assert_eq!(r.exit_code, 0, "{}: ExecSync {cmd:?}", self.name);
        }
    }

    /// Removes the pod (its containers with it).
    async fn close(mut self) {
        let c = &mut self.client;
        for id in self.created.iter().chain([&self.sleeper]) {
            let _ = c
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await;
        }
        let _ = c
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: self.pod.clone(),
            })
            .await;
        if let Err(e) = c
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: self.pod.clone(),
            })
            .await
        {
            eprintln!("{}: RemovePodSandbox: {e}", self.name);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = parse_opts();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let logs = scratch.path();
    let mut runtimes = Vec::new();
    for e in &o.endpoints {
        runtimes.push(Runtime::open(e, &o.image, logs).await);
    }
    for i in 0..o.iterations {
        for r in &mut runtimes {
            r.round(i, &o.image, logs).await;
        }
    }
    println!(
        "cri-compare: {} rounds, image {}, endpoints taking turns",
        o.iterations, o.image
    );
    let mut header = String::from("| RPC |");
    let mut rule = String::from("|---|");
    for r in &runtimes {
        header.push_str(&format!(" {} p50 ms | {} p99 ms |", r.name, r.name));
        rule.push_str("---|---|");
    }
    if runtimes.len() > 1 {
        for r in &runtimes[1..] {
            header.push_str(&format!(" p50 {} / {} |", runtimes[0].name, r.name));
            rule.push_str("---|");
        }
    }
    println!("{header}\n{rule}");
    for (k, rpc) in RPCS.iter().enumerate() {
        let mut line = format!("| {rpc} |");
        for r in &runtimes {
            let s = &r.samples[k];
            line.push_str(&format!(" {} | {} |", ms(s.pct(50)), ms(s.pct(99))));
        }
        if runtimes.len() > 1 {
            let base = runtimes[0].samples[k].pct(50).as_secs_f64();
            for r in &runtimes[1..] {
                let other = r.samples[k].pct(50).as_secs_f64();
                let ratio = if other > 0.0 { base / other } else { 0.0 };
                line.push_str(&format!(" {ratio:.2}× |"));
            }
        }
        println!("{line}");
    }
    for r in runtimes {
        r.close().await;
    }
}
