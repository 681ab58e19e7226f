//! cri-bench: drives a real berthd over its CRI socket, on a private containerd, and prints
//! latency percentiles per RPC, lifecycle throughput with 1 and 8 clients, recovery time
//! after `kill -9` with N running containers, and berthd's memory.
//!
//! ```sh
//! cargo build --release -p berth-daemon --bins --examples
//! $CARGO_TARGET_DIR/release/examples/cri-bench            # defaults below
//! $CARGO_TARGET_DIR/release/examples/cri-bench --iterations 20 --recovery 50
//! ```
//!
//! Figures are printed, never asserted. Needs root (runc).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_cli::client::{CriClient, connect};
use berth_testkit::PrivateContainerd;
use k8s_cri::v1 as cri;

struct Opts {
    berthd: PathBuf,
    iterations: usize,
    list_size: usize,
    clients: Vec<usize>,
    cycles_per_client: usize,
    recovery: Vec<usize>,
}

fn parse_opts() -> Opts {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/examples/cri-bench -> target/<profile>/berthd
    let sibling = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berthd"))
        .unwrap_or_default();
    let mut o = Opts {
        berthd: sibling,
        iterations: 50,
        list_size: 100,
        clients: vec![1, 8],
        cycles_per_client: 0,
        recovery: vec![50, 200],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |s: &str| -> Vec<usize> { s.split(',').filter_map(|n| n.parse().ok()).collect() };
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--berthd" => o.berthd = PathBuf::from(v),
            "--iterations" => o.iterations = v.parse().unwrap_or(o.iterations),
            "--list-size" => o.list_size = v.parse().unwrap_or(o.list_size),
            "--clients" => o.clients = list(&v),
            "--cycles-per-client" => o.cycles_per_client = v.parse().unwrap_or(0),
            "--recovery" => o.recovery = list(&v),
            other => {
                eprintln!(
                    "unknown argument {other}; use --berthd PATH --iterations N --list-size N \
                     --clients 1,8 --cycles-per-client N --recovery 50,200"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    o
}

struct Berthd {
    child: Child,
}

impl Berthd {
    fn spawn(bin: &Path, args: &[String], log: &Path) -> Berthd {
        let file = std::fs::File::create(log).expect("berthd log");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawn {}: {e} (build it: cargo build --release -p berth-daemon --bins)",
                    bin.display()
                )
            });
        Berthd { child }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

/// Waits until berthd answers ListContainers (recovery finished).
async fn ready(socket: &Path) -> CriClient {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(mut c) = connect(socket).await
            && c.list_containers(cri::ListContainersRequest { filter: None })
                .await
                .is_ok()
        {
            return c;
        }
        assert!(Instant::now() < deadline, "berthd never became ready");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
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

fn pod(name: &str, logs: &Path) -> cri::RunPodSandboxRequest {
    cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("{name}-uid"),
                namespace: "bench".into(),
                attempt: 0,
            }),
            log_directory: logs.join(name).display().to_string(),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

fn sleeper(name: &str, image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "100000".into()],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

async fn timed<T, E: std::fmt::Debug>(
    s: &mut Samples,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    let t = Instant::now();
    let r = f.await.expect("RPC failed");
    s.push(t.elapsed());
    r
}

async fn create_start(c: &mut CriClient, pod: &str, name: &str, image: &str) -> String {
    let id = c
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(sleeper(name, image)),
            sandbox_config: None,
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    c.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

/// Starts `n` running containers in `pod` with 8 concurrent clients.
async fn fill(c: &CriClient, pod: &str, n: usize, prefix: &str, image: &str) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut c = c.clone();
        let (pod, prefix, image) = (pod.to_owned(), prefix.to_owned(), image.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                create_start(&mut c, &pod, &format!("{prefix}{i}"), &image).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("filler");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = parse_opts();
    let ctd = PrivateContainerd::start()
        .await
        .expect("private containerd");
    let image = ctd.image_ref().to_owned();
    let dir = berth_testkit::scratch_dir("bench").expect("scratch");
    let d = dir.path();
    let socket = d.join("berth.sock");
    let logs = d.join("logs");
    let args: Vec<String> = vec![
        "--socket".into(),
        socket.display().to_string(),
        "--containerd-socket".into(),
        ctd.socket().display().to_string(),
        "--containerd-namespace".into(),
        ctd.namespace().into(),
        "--root-dir".into(),
        d.join("root").display().to_string(),
        "--state-dir".into(),
        d.join("state").display().to_string(),
        "--sandbox-image".into(),
        image.clone(),
        "--sandbox-command".into(),
        "sleep infinity".into(),
        "--log-level".into(),
        "warn".into(),
        "--recovery-timeout".into(),
        "60s".into(),
    ];
    let log = d.join("berthd.log");
    println!(
        "cri-bench: berthd {} on a private containerd (namespace {})",
        o.berthd.display(),
        ctd.namespace()
    );
    let mut berthd = Berthd::spawn(&o.berthd, &args, &log);
    let mut c = ready(&socket).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle = berthd.rss_kib();

    // ---- latency per RPC ----
    let n = o.iterations;
    let mut run_pod = Samples::default();
    let mut pods = Vec::new();
    for i in 0..n {
        let r = timed(
            &mut run_pod,
            c.run_pod_sandbox(pod(&format!("lat{i}"), &logs)),
        )
        .await;
        pods.push(r.into_inner().pod_sandbox_id);
    }
    let main_pod = pods[0].clone();
    let (mut create, mut start, mut stop, mut remove, mut status) = Default::default();
    for i in 0..n {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: main_pod.clone(),
            config: Some(sleeper(&format!("c{i}"), &image)),
            sandbox_config: None,
        };
        let id = timed(&mut create, c.create_container(req))
            .await
            .into_inner()
            .container_id;
        timed(
            &mut start,
            c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }),
        )
        .await;
        for _ in 0..3 {
            timed(
                &mut status,
                c.container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                }),
            )
            .await;
        }
        timed(
            &mut stop,
            c.stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 10,
            }),
        )
        .await;
        timed(
            &mut remove,
            c.remove_container(cri::RemoveContainerRequest { container_id: id }),
        )
        .await;
    }
    // ListContainers with list_size containers (created, not started: listing does not
    // depend on the task).
    let mut ids = Vec::new();
    for i in 0..o.list_size {
        let id = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: main_pod.clone(),
                config: Some(sleeper(&format!("l{i}"), &image)),
                sandbox_config: None,
            })
            .await
            .expect("create")
            .into_inner()
            .container_id;
        ids.push(id);
    }
    let mut list = Samples::default();
    for _ in 0..n.max(20) {
        let r = timed(
            &mut list,
            c.list_containers(cri::ListContainersRequest { filter: None }),
        )
        .await;
        assert_eq!(r.into_inner().containers.len(), o.list_size);
    }
    for id in ids {
        c.remove_container(cri::RemoveContainerRequest { container_id: id })
            .await
            .expect("rm");
    }
    for p in &pods[1..] {
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.clone(),
        })
        .await
        .expect("rmp");
    }
    println!();
    println!("latency over the CRI socket, {n} samples each (ms)");
    println!("{:<34} {:>8} {:>8}", "RPC", "p50", "p99");
    for (name, s) in [
        ("RunPodSandbox", &run_pod),
        ("CreateContainer", &create),
        ("StartContainer", &start),
        ("StopContainer (SIGTERM ends it)", &stop),
        ("RemoveContainer", &remove),
        ("ContainerStatus", &status),
        (
            &*format!("ListContainers ({} containers)", o.list_size),
            &list,
        ),
    ] {
        println!("{:<34} {:>8} {:>8}", name, ms(s.pct(50)), ms(s.pct(99)));
    }

    // ---- throughput: whole lifecycles (create, start, stop, remove) ----
    println!();
    println!("throughput: container lifecycles (create+start+stop+remove) per second");
    for &k in &o.clients {
        let per = if o.cycles_per_client > 0 {
            o.cycles_per_client
        } else {
            (40 / k).max(5)
        };
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..k {
            let mut c = c.clone();
            let (pod, image) = (main_pod.clone(), image.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    let id = create_start(&mut c, &pod, &format!("t{k}-{w}-{i}"), &image).await;
                    c.stop_container(cri::StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 10,
                    })
                    .await
                    .expect("stop");
                    c.remove_container(cri::RemoveContainerRequest { container_id: id })
                        .await
                        .expect("rm");
                }
            }));
        }
        for t in tasks {
            t.await.expect("client");
        }
        let total = k * per;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  {k} client(s): {total} lifecycles in {secs:.2} s = {:.1} lifecycles/s ({:.1} RPC/s)",
            total as f64 / secs,
            4.0 * total as f64 / secs
        );
    }

    // ---- recovery after kill -9 with N running containers ----
    println!();
    println!("recovery: berthd kill -9, then a new berthd until ListContainers answers");
    let mut running = 0;
    let mut rss_loaded = (0, 0);
    for &target in &o.recovery {
        if target > running {
            fill(
                &c,
                &main_pod,
                target - running,
                &format!("r{target}-"),
                &image,
            )
            .await;
            running = target;
        }
        rss_loaded = (running, berthd.rss_kib());
        berthd.kill9();
        let t = Instant::now();
        berthd = Berthd::spawn(&o.berthd, &args, &log);
        c = ready(&socket).await;
        let took = t.elapsed();
        let listed = c
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerRunning as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .expect("list")
            .into_inner()
            .containers
            .len();
        println!(
            "  {running} running containers: ready after {} ms (process start included); {listed} RUNNING after recovery",
            ms(took)
        );
    }
    let rss_after_recovery = berthd.rss_kib();
    println!();
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "berthd RSS: idle {:.1} MiB; with {} running containers {:.1} MiB (after a recovery: {:.1} MiB)",
        mib(rss_idle),
        rss_loaded.0,
        mib(rss_loaded.1),
        mib(rss_after_recovery),
    );

    // ---- cleanup ----
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: main_pod,
    })
    .await
    .expect("rmp");
    berthd.terminate();
    ctd.shutdown().await.expect("containerd teardown");
}
