//! Differential tests: every scenario in `sim/scenarios/` runs against the simulated
//! containerd (berth-simbackend) and a real one (berth-containerd + a private containerd + FsCheckpointStore), each behind the
//! real berth service; what every `check` saw (CRI state, exit code, reason of every
//! container, state of every pod) must be equal, and every `expect` must hold on both. A
//! disagreement is a bug in the model or in berth.
//!
//! Normal build only (plain tokio; the simulator build has its own tests). The real side
//! needs root, containerd and runc, like the service's integration tests.
#![cfg(not(madsim))]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_backend::{Backend, CheckpointStore, Target};
use berth_containerd::store::FsCheckpointStore;
use berth_containerd::{BackendConfig, ContainerdBackend};
use berth_core::{ContainerConfig, ContainerId, SandboxConfig};
use berth_service::{Service, ServiceConfig, ServiceHandle};
use berth_sim::scenario::{self, Containerd, Observation, Process, Scenario};
use berth_simbackend::{ProcessPlan, SimBackend, SimConfig, SimDisk};
use berth_testkit::PrivateContainerd;

/// How long berth's view must stay unchanged before a check records it.
const QUIET: Duration = Duration::from_millis(1000);

fn scenarios() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sim/scenarios")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    // SIM_SCENARIO=<part of a name> runs only the matching scenarios.
    let only = std::env::var("SIM_SCENARIO").unwrap_or_default();
    files
        .iter()
        .filter(|p| p.to_string_lossy().contains(only.as_str()))
        .map(|p| {
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(p).expect("read scenario");
            Scenario::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn service_config() -> ServiceConfig {
    let mut config = ServiceConfig::default();
    config.core.backoff_initial = Duration::from_millis(100);
    config.core.backoff_max = Duration::from_secs(2);
    config.core.resync_backoff_max = Duration::from_secs(1);
    config.id_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    config
}

/// One berth instance on a runtime of its own: a crash drops every task of it mid-flight.
struct Node {
    rt: Option<tokio::runtime::Runtime>,
    svc: ServiceHandle,
}

impl Node {
    async fn start<B, S, F>(make: F) -> Node
    where
        B: Backend,
        S: CheckpointStore,
        F: Future<Output = (B, S)> + Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("berth runtime");
        let svc = rt
            .spawn(async move {
                let (backend, store) = make.await;
                Service::start(Arc::new(backend), Arc::new(store), service_config())
            })
            .await
            .expect("berth starts");
        Node { rt: Some(rt), svc }
    }

    fn crash(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.crash();
    }
}

/// The simulated containerd.
struct Simulated {
    sim: SimBackend,
    disk: SimDisk,
    node: Node,
}

impl Simulated {
    async fn new(per_container_shims: bool) -> Simulated {
        let sim = SimBackend::with_config(
            1,
            SimConfig {
                shim_per_container: per_container_shims,
                ..SimConfig::default()
            },
        );
        let disk = SimDisk::new(1);
        let node = Simulated::node(&sim, &disk).await;
        Simulated { sim, disk, node }
    }

    async fn node(sim: &SimBackend, disk: &SimDisk) -> Node {
        let (sim, disk) = (sim.clone(), disk.clone());
        Node::start(async move { (sim, disk) }).await
    }
}

#[async_trait]
impl Containerd for Simulated {
    fn berth(&self) -> ServiceHandle {
        self.node.svc.clone()
    }
    async fn crash_berth(&mut self) {
        self.node.crash();
        self.disk.crash(false);
        self.node = Simulated::node(&self.sim, &self.disk).await;
    }
    async fn restart_containerd(&mut self, down: Duration) {
        // A real restart (SIGKILL, start, socket up) takes about half a second.
        self.sim
            .restart_containerd(down + Duration::from_millis(500));
        tokio::time::sleep(down + Duration::from_millis(500)).await;
    }
    async fn kill_shim(&mut self, id: &str, _pod: &str) {
        let target = Target::Container(ContainerId::new(id).expect("an id"));
        self.sim.kill_shim_of(&target).expect("a live shim");
    }
    fn sandbox_config(&self, name: &str) -> SandboxConfig {
        berth_sim::workload::sandbox_config(name)
    }
    fn container_config(&self, name: &str, _process: Process) -> ContainerConfig {
        berth_sim::workload::container_config(name)
    }
    fn created(&mut self, id: &ContainerId, process: Process) {
        let plan = match process {
            Process::Exit { code, after } => ProcessPlan::exit(after, code),
            Process::Forever | Process::OnUsr1 { .. } => ProcessPlan::forever(),
            Process::Stubborn => ProcessPlan::forever().ignoring_term(),
        };
        self.sim.plan(&Target::Container(id.clone()), plan);
    }
    async fn exit(&mut self, id: &ContainerId, _pid: u32, code: i32) {
        self.sim
            .exit_now(&Target::Container(id.clone()), code)
            .expect("the process runs");
    }
}

/// A real private containerd.
struct Real {
    ctd: PrivateContainerd,
    root: tempfile::TempDir,
    logs: tempfile::TempDir,
    node: Node,
}

fn backend_config(ctd: &PrivateContainerd) -> BackendConfig {
    let mut config = BackendConfig::new(ctd.socket());
    config.namespace = ctd.namespace().to_owned();
    config.sandbox_image = ctd.image_ref().to_owned();
    config.sandbox_command = vec!["sleep".into(), "infinity".into()];
    config
}

impl Real {
    async fn new() -> Real {
        berth_testkit::require_root_and_tools().expect("root, containerd and runc");
        let ctd = PrivateContainerd::start()
            .await
            .expect("private containerd");
        let root = berth_testkit::scratch_dir("sim-diff-root").expect("checkpoint dir");
        let logs = berth_testkit::scratch_dir("sim-diff-logs").expect("log dir");
        let node = Real::node(&ctd, root.path()).await;
        Real {
            ctd,
            root,
            logs,
            node,
        }
    }

    async fn node(ctd: &PrivateContainerd, root: &Path) -> Node {
        let (config, root) = (backend_config(ctd), root.to_path_buf());
        Node::start(async move {
            let backend = ContainerdBackend::connect(config)
                .await
                .expect("berth connects to containerd");
            let store = FsCheckpointStore::open(root).expect("checkpoint store");
            (backend, store)
        })
        .await
    }
}

/// Live shim daemons of the containerd at `socket` started with `-id <id>`.
fn shims_of(socket: &Path, id: &str) -> Vec<u32> {
    let sock = socket.to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let shim = args.first().is_some_and(|a| {
                a.rsplit('/')
                    .next()
                    .unwrap_or(a)
                    .starts_with("containerd-shim")
            });
            let ours = args
                .windows(2)
                .any(|w| w[0] == "-address" && (w[1] == sock || w[1] == format!("unix://{sock}")));
            let this = args.windows(2).any(|w| w[0] == "-id" && w[1] == id);
            let daemon = !args.last().is_some_and(|a| a == "start" || a == "delete");
            shim && ours && this && daemon && berth_testkit::process_alive(*pid)
        })
        .collect()
}

/// Every shim daemon's command line (for failure messages).
fn shim_command_lines(socket: &Path) -> Vec<String> {
    let sock = socket.to_string_lossy().into_owned();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            (line.contains("containerd-shim") && line.contains(&sock))
                .then_some(format!("{pid}: {line}"))
        })
        .collect()
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

#[async_trait]
impl Containerd for Real {
    fn berth(&self) -> ServiceHandle {
        self.node.svc.clone()
    }
    async fn crash_berth(&mut self) {
        self.node.crash();
        self.node = Real::node(&self.ctd, self.root.path()).await;
    }
    async fn restart_containerd(&mut self, down: Duration) {
        self.ctd.kill9().expect("SIGKILL containerd");
        tokio::time::sleep(down).await;
        self.ctd
            .start_again()
            .await
            .expect("containerd starts again");
    }
    async fn kill_shim(&mut self, id: &str, pod: &str) {
        // The shim's -id is the task's own id, or its pod's when tasks are grouped.
        let mut pids = shims_of(self.ctd.socket(), id);
        pids.extend(shims_of(self.ctd.socket(), pod));
        pids.sort_unstable();
        pids.dedup();
        assert!(
            !pids.is_empty(),
            "no shim serves {id}; shims of this containerd: {:?}",
            shim_command_lines(self.ctd.socket())
        );
        for &pid in &pids {
            signal(pid, "KILL");
        }
        for _ in 0..100 {
            if pids.iter().all(|p| !berth_testkit::process_alive(*p)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("shims {pids:?} of {id} survived SIGKILL");
    }
    fn sandbox_config(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            log_directory: self.logs.path().join(name).display().to_string(),
            ..berth_sim::workload::sandbox_config(name)
        }
    }
    fn container_config(&self, name: &str, process: Process) -> ContainerConfig {
        let sh = |script: String| vec!["sh".to_owned(), "-c".to_owned(), script];
        let command = match process {
            Process::Exit { code, after } => {
                sh(format!("sleep {}; exit {code}", after.as_secs_f64()))
            }
            Process::Forever => sh("trap 'kill $!; exit 143' TERM; sleep 1000 & wait".into()),
            // Containers share the pod's pid namespace (the pause process is its PID 1), so
            // a plain `sleep` dies of SIGTERM: ignore it explicitly (inherited across exec).
            Process::Stubborn => sh("trap '' TERM; exec sleep 1000".into()),
            Process::OnUsr1 { code } => sh(format!(
                "trap 'exit {code}' USR1; trap 'kill $!; exit 143' TERM; sleep 1000 & wait"
            )),
        };
        ContainerConfig {
            image: self.ctd.image_ref().to_owned(),
            command,
            ..berth_sim::workload::container_config(name)
        }
    }
    fn created(&mut self, _id: &ContainerId, _process: Process) {}
    async fn exit(&mut self, _id: &ContainerId, pid: u32, _code: i32) {
        signal(pid, "USR1");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
}

async fn run_simulated(s: &Scenario, per_container_shims: bool) -> Vec<Observation> {
    let mut world = Simulated::new(per_container_shims).await;
    scenario::run(s, &mut world, QUIET)
        .await
        .unwrap_or_else(|e| panic!("simulated containerd: {e}"))
}

/// Every scenario against the simulated containerd alone: fast, no root needed.
#[test]
fn every_scenario_holds_against_the_simulated_containerd() {
    let all = scenarios();
    let filtered = std::env::var("SIM_SCENARIO").is_ok();
    assert!(filtered || all.len() >= 8, "only {} scenarios", all.len());
    runtime().block_on(async {
        // Independent worlds: all at once.
        let runs: Vec<_> = all
            .iter()
            .map(|s| {
                tokio::spawn({
                    let s = s.clone();
                    async move { (s.name.clone(), run_simulated(&s, false).await) }
                })
            })
            .collect();
        for run in runs {
            let (name, seen) = run.await.expect("scenario task");
            assert!(!seen.is_empty(), "{name}: no check ran");
            println!("{name}: {} checks hold", seen.len());
        }
    });
}

/// The known difference, checked: berth's real backend groups a pod's tasks in one shim
/// (the sandbox-id annotation, as containerd's CRI), like the model's default; a model with
/// one shim per container (a backend without the annotation) disagrees on a shim death:
/// the other container and the pod would live on.
#[test]
fn one_shim_per_container_disagrees_with_berths_real_backend() {
    let s = scenarios()
        .into_iter()
        .find(|s| s.name.ends_with("shim-death"))
        .expect("the shim-death scenario");
    runtime().block_on(async {
        let mut ungrouped = Simulated::new(true).await;
        let err = scenario::run(&s, &mut ungrouped, QUIET)
            .await
            .expect_err("one shim per container leaves c2 running");
        assert!(err.to_string().contains("expected c2 exited"), "{err}");
    });
}

/// The simulated and the real containerd, behind berth, see the same thing at every check.
#[test]
fn simulated_and_real_containerd_agree() {
    runtime().block_on(async {
        let mut disagreements = Vec::new();
        for s in &scenarios() {
            let simulated = run_simulated(s, false).await;
            let mut real = Real::new().await;
            let seen = scenario::run(s, &mut real, QUIET)
                .await
                .unwrap_or_else(|e| panic!("real containerd: {e}"));
            real.node.crash();
            real.ctd.shutdown().await.expect("containerd torn down");
            let diff = scenario::differences(&simulated, &seen);
            println!(
                "{}: {} checks, {}",
                s.name,
                seen.len(),
                if diff.is_empty() {
                    "equal".to_owned()
                } else {
                    format!("{} differences", diff.len())
                }
            );
            for d in diff {
                disagreements.push(format!("{}: {d} (simulated vs real)", s.name));
            }
        }
        assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    });
}
