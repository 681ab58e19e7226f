//! The end-to-end harness: a private containerd (berth-testkit), a real `berthd` process
//! on a socket of its own, and a CRI client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_cli::client::{CriClient, connect};
use berth_testkit::PrivateContainerd;
use k8s_cri::v1 as cri;

/// The berthd binary under test.
pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

/// How long a test waits for something that must happen (a bound, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 20 ms until it gives `Some`, for at most [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A berthd process.
pub struct Berthd {
    child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Berthd {
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit; returns whether it exited with status 0.
    pub fn terminate(mut self) -> bool {
        signal(self.child.id(), rustix::process::Signal::TERM);
        self.child.wait().is_ok_and(|s| s.success())
    }

    /// Waits for the exit (for a berthd expected to fail at start).
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for berthd")
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid` (errors ignored: the process may be gone).
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// True while `/proc/<pid>` exists (zombies included).
pub fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Spawns berthd with `args` (stderr to `log`).
pub fn spawn_berthd(args: &[String], log: &Path) -> Berthd {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open berthd log");
    let child = Command::new(BERTHD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log"))
        .stderr(file)
        .spawn()
        .expect("spawn berthd");
    Berthd {
        child,
        log: log.to_owned(),
    }
}

/// A private containerd with a berthd in front of it.
pub struct Env {
    /// The containerd.
    pub ctd: PrivateContainerd,
    /// Scratch directory: socket, root and state dirs, logs.
    pub dir: tempfile::TempDir,
    /// The running berthd, if any.
    pub berthd: Option<Berthd>,
    /// Extra berthd flags.
    pub extra: Vec<String>,
}

impl Env {
    /// Starts containerd and berthd, and waits until berthd is ready.
    pub async fn start(label: &str, extra: &[&str]) -> Env {
        let ctd = PrivateContainerd::start()
            .await
            .expect("private containerd");
        let dir = berth_testkit::scratch_dir(label).expect("scratch dir");
        let mut env = Env {
            ctd,
            dir,
            berthd: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        env.start_berthd().await;
        env
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }

    /// Pod log directories live here.
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// berthd's flags.
    pub fn args(&self) -> Vec<String> {
        let d = self.dir.path();
        let mut a: Vec<String> = vec![
            "--socket".into(),
            self.socket().display().to_string(),
            "--containerd-socket".into(),
            self.ctd.socket().display().to_string(),
            "--containerd-namespace".into(),
            self.ctd.namespace().into(),
            "--root-dir".into(),
            d.join("root").display().to_string(),
            "--state-dir".into(),
            d.join("state").display().to_string(),
            "--sandbox-image".into(),
            self.ctd.image_ref().into(),
            "--sandbox-command".into(),
            "sleep infinity".into(),
            "--log-level".into(),
            "debug".into(),
        ];
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts berthd and waits until it reports RuntimeReady.
    pub async fn start_berthd(&mut self) {
        assert!(self.berthd.is_none(), "berthd runs already");
        let log = self.dir.path().join("berthd.log");
        self.berthd = Some(spawn_berthd(&self.args(), &log));
        self.wait_ready().await;
    }

    /// Waits until berthd answers and its RuntimeReady condition is true.
    pub async fn wait_ready(&self) {
        let socket = self.socket();
        wait_for("berthd to be ready", || {
            let socket = socket.clone();
            async move {
                let mut c = connect(&socket).await.ok()?;
                let s = c
                    .status(cri::StatusRequest { verbose: false })
                    .await
                    .ok()?
                    .into_inner();
                s.status?
                    .conditions
                    .iter()
                    .any(|c| c.r#type == "RuntimeReady" && c.status)
                    .then_some(())
            }
        })
        .await
    }

    /// A fresh CRI client.
    pub async fn cri(&self) -> CriClient {
        connect(self.socket()).await.expect("connect to berthd")
    }

    /// SIGKILLs berthd.
    pub fn kill9_berthd(&mut self) {
        self.berthd.take().expect("berthd runs").kill9();
    }

    /// berthd's log so far.
    pub fn berthd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// Stops berthd (SIGTERM) and containerd; fails if anything is left behind.
    pub async fn finish(mut self) {
        if let Some(b) = self.berthd.take() {
            assert!(b.terminate(), "berthd exited non-zero on SIGTERM");
        }
        self.ctd.shutdown().await.expect("containerd teardown");
    }

    /// The ids `ctr <kind> ls -q` prints for our namespace; `ctr` must succeed.
    async fn ctr_ids(&self, kind: &str) -> Vec<String> {
        self.ctd
            .ctr(&[kind, "ls", "-q"])
            .await
            .unwrap_or_else(|e| panic!("ctr {kind} ls: {e}"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Task ids containerd has in our namespace.
    pub async fn tasks(&self) -> Vec<String> {
        self.ctr_ids("tasks").await
    }

    /// Container record ids containerd has in our namespace.
    pub async fn records(&self) -> Vec<String> {
        self.ctr_ids("containers").await
    }

    /// Waits until containerd holds no task and no container record in our namespace
    /// and, with `shims_too`, no shim process is left either.
    pub async fn wait_all_gone(&self, shims_too: bool) {
        let what = if shims_too {
            "tasks, records and shims to be gone"
        } else {
            "tasks and records to be gone"
        };
        wait_for(what, || async {
            (self.tasks().await.is_empty()
                && self.records().await.is_empty()
                && (!shims_too || self.ctd.shim_pids().is_empty()))
            .then_some(())
        })
        .await
    }
}

/// A pod config with a log directory under `logs`.
pub fn pod_config(name: &str, logs: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.join(name).display().to_string(),
        labels: [("app".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

/// A container config running `sh -c script`, logging to `<name>.log`.
pub fn shell(name: &str, image: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        labels: [("name".to_owned(), name.to_owned())].into(),
        ..Default::default()
    }
}

/// RunPodSandbox; returns the id.
pub async fn run_pod(cri: &mut CriClient, config: cri::PodSandboxConfig) -> String {
    cri.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

/// CreateContainer + StartContainer; returns the id.
pub async fn run_container(cri: &mut CriClient, pod: &str, config: cri::ContainerConfig) -> String {
    let id = create_container(cri, pod, config).await;
    cri.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

/// CreateContainer; returns the id.
pub async fn create_container(
    cri: &mut CriClient,
    pod: &str,
    config: cri::ContainerConfig,
) -> String {
    cri.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(config),
        sandbox_config: None,
    })
    .await
    .expect("CreateContainer")
    .into_inner()
    .container_id
}

/// StopContainer, which must succeed.
pub async fn stop_container(cri: &mut CriClient, id: &str, timeout: i64) {
    cri.stop_container(cri::StopContainerRequest {
        container_id: id.into(),
        timeout,
    })
    .await
    .unwrap_or_else(|e| panic!("StopContainer {id}: {e:?}"));
}

/// RemoveContainer, which must succeed.
pub async fn remove_container(cri: &mut CriClient, id: &str) {
    cri.remove_container(cri::RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e:?}"));
}

/// Gives `config` a memory limit of `bytes` (memory and swap: no swapping past it).
pub fn limit_memory(config: &mut cri::ContainerConfig, bytes: i64) {
    config.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            memory_swap_limit_in_bytes: bytes,
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// StopPodSandbox, which must succeed.
pub async fn stop_pod(cri: &mut CriClient, pod: &str) {
    cri.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("StopPodSandbox {pod}: {e:?}"));
}

/// RemovePodSandbox, which must succeed.
pub async fn remove_pod(cri: &mut CriClient, pod: &str) {
    cri.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("RemovePodSandbox {pod}: {e:?}"));
}

/// The pod's state from a (non-verbose) PodSandboxStatus, which must succeed.
pub async fn pod_state(cri: &mut CriClient, pod: &str) -> i32 {
    cri.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    })
    .await
    .unwrap_or_else(|e| panic!("PodSandboxStatus {pod}: {e:?}"))
    .into_inner()
    .status
    .expect("status")
    .state
}

/// Every pod (unfiltered ListPodSandbox, which must succeed).
pub async fn list_pods(cri: &mut CriClient) -> Vec<cri::PodSandbox> {
    cri.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

/// ContainerStatus (verbose) and the pid from its info.
pub async fn status(cri: &mut CriClient, id: &str) -> (cri::ContainerStatus, u32) {
    let r = cri
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(r.info.get("info").expect("verbose info")).expect("info is JSON");
    let pid = info["pid"].as_u64().expect("info.pid") as u32;
    (r.status.expect("status"), pid)
}

/// Waits until the container is in `state`; returns its status.
pub async fn wait_state(
    cri: &CriClient,
    id: &str,
    state: cri::ContainerState,
) -> cri::ContainerStatus {
    wait_for(
        &format!("container {id} to be {}", state.as_str_name()),
        || {
            let mut c = cri.clone();
            async move {
                let (s, _) = status(&mut c, id).await;
                (s.state == state as i32).then_some(s)
            }
        },
    )
    .await
}

/// Waits until `path` contains `needle`; returns the content.
pub async fn wait_log(path: &str, needle: &str) -> String {
    wait_for(&format!("{needle:?} in {path}"), || async move {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle).then_some(text)
    })
    .await
}

/// The lines the container wrote, from its CRI log (P records joined).
pub fn log_lines(path: &str) -> Vec<(berth_cli::crilog::Stream, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (lines, bad) = berth_cli::crilog::join(&text);
    assert_eq!(bad, 0, "malformed records in {path}: {text:?}");
    lines.into_iter().map(|(s, _, l)| (s, l)).collect()
}
