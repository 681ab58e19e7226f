//! Latency of berth's containerd backend, measured end to end against a private containerd
//! (berth-testkit) with real runc tasks. Prints p50 / p99 / max per operation.
//!
//! ```sh
//! cargo run --release -p berth-containerd --example containerd-bench -- [containers=100] [list-rounds=200]
//! ```
//!
//! Needs root (runc). Every container runs `sleep 1000` in one pod; all are deleted at the end.

use std::time::{Duration, Instant};

use berth_backend::{Backend, ContainerMeta, SandboxMeta, Target, TaskState};
use berth_containerd::{BackendConfig, ContainerdBackend};
use berth_core::{ContainerConfig, ContainerId, SandboxConfig, SandboxId};
use berth_testkit::PrivateContainerd;
use containerd_client::services::v1::ListTasksRequest;

/// Task status reads per container.
const STATUS_READS: usize = 5;

/// Collected samples of one operation.
struct Series {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Series {
            name,
            samples: Vec::new(),
        }
    }

    fn row(&mut self) -> String {
        self.samples.sort();
        let n = self.samples.len();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |p: usize| self.samples[((n * p).div_ceil(100)).clamp(1, n) - 1];
        format!(
            "{:<36} {:>6} {:>9.2} {:>9.2} {:>9.2}",
            self.name,
            n,
            ms(at(50)),
            ms(at(99)),
            ms(self.samples[n - 1])
        )
    }
}

async fn timed<T, E: std::fmt::Debug>(
    series: &mut Series,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    let t = Instant::now();
    let out = f.await;
    series.samples.push(t.elapsed());
    out.unwrap_or_else(|e| panic!("{}: {e:?}", series.name))
}

fn meta(id: &str, pod: &str, image: &str) -> ContainerMeta {
    ContainerMeta {
        id: ContainerId::new(id).unwrap(),
        sandbox_id: SandboxId::new(pod).unwrap(),
        name: format!("{id}_{pod}_bench_uid_0"),
        config: ContainerConfig {
            name: id.into(),
            image: image.into(),
            command: vec!["sleep".into(), "1000".into()],
            ..ContainerConfig::default()
        },
        log_path: String::new(),
        stop_signal: 15,
        image: Default::default(),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);

    let ctd = PrivateContainerd::start()
        .await
        .expect("private containerd");
    let mut config = BackendConfig::new(ctd.socket());
    config.namespace = ctd.namespace().to_owned();
    config.sandbox_image = ctd.image_ref().to_owned();
    config.sandbox_command = vec!["sleep".into(), "infinity".into()];
    let b = ContainerdBackend::connect(config).await.expect("connect");
    let image = ctd.image_ref().to_owned();
    let pod = "benchpod";
    let pod_t = Target::Sandbox(SandboxId::new(pod).unwrap());
    b.create_sandbox(&SandboxMeta {
        id: SandboxId::new(pod).unwrap(),
        name: "benchpod_bench_uid_0".into(),
        config: SandboxConfig {
            name: pod.into(),
            hostname: pod.into(),
            ..SandboxConfig::default()
        },
        created_at: 1,
    })
    .await
    .expect("create sandbox");
    b.create_task(&pod_t).await.expect("pause task");
    b.start_task(&pod_t).await.expect("pause start");
    let load_before = loadavg();

    // Warm-up cycle (image cache, shim binary in page cache), not counted.
    let warm = Target::Container(ContainerId::new("warmup").unwrap());
    b.create_container(&meta("warmup", pod, &image))
        .await
        .unwrap();
    b.create_task(&warm).await.unwrap();
    b.start_task(&warm).await.unwrap();
    b.delete_task(&warm, true).await.unwrap();
    b.delete_container(&warm).await.unwrap();

    let mut create = Series::new("create container");
    let mut start = Series::new("create+start task");
    let mut status = Series::new("get task (task_status)");
    let mut list = Series::new("list (Backend::list)");
    let mut tasks_list = Series::new("Tasks.List (raw client)");
    let mut delete = Series::new("delete (task with kill + container)");

    let targets: Vec<Target> = (0..n)
        .map(|i| Target::Container(ContainerId::new(format!("bench-{i}")).unwrap()))
        .collect();
    for (i, t) in targets.iter().enumerate() {
        timed(
            &mut create,
            b.create_container(&meta(t.as_str(), pod, &image)),
        )
        .await;
        timed(&mut start, async {
            b.create_task(t).await?;
            b.start_task(t).await
        })
        .await;
        for _ in 0..STATUS_READS {
            let s = timed(&mut status, b.task_status(t)).await;
            assert!(matches!(s, TaskState::Running { .. }), "bench-{i}: {s:?}");
        }
    }
    for _ in 0..rounds {
        let l = timed(&mut list, b.list()).await;
        assert_eq!(l.containers.len(), n);
    }
    let c = b.client();
    for _ in 0..rounds.div_ceil(4) {
        let reply = timed(
            &mut tasks_list,
            c.tasks().list(c.request(ListTasksRequest::default())),
        )
        .await;
        assert_eq!(reply.into_inner().tasks.len(), n + 1);
    }
    for t in &targets {
        timed(&mut delete, async {
            b.delete_task(t, true).await?;
            b.delete_container(t).await
        })
        .await;
    }
    b.delete_task(&pod_t, true)
        .await
        .expect("delete pause task");
    b.delete_container(&pod_t).await.expect("delete sandbox");
    let load_after = loadavg();
    ctd.shutdown().await.expect("shutdown");

    println!(
        "berth-containerd bench: {n} containers (sleep 1000, one pod), list with {n} records / {} tasks",
        n + 1
    );
    println!("load average before {load_before}, after {load_after}\n");
    println!(
        "{:<36} {:>6} {:>9} {:>9} {:>9}",
        "operation", "n", "p50 ms", "p99 ms", "max ms"
    );
    for s in [
        &mut create,
        &mut start,
        &mut status,
        &mut list,
        &mut tasks_list,
        &mut delete,
    ] {
        println!("{}", s.row());
    }
}
