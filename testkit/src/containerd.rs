//! [`PrivateContainerd`]: a containerd of a test's own, on its own socket, root, state and
//! containerd namespace, with the busybox image imported.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::error::HarnessError;
use crate::procs;
use crate::{IMAGE_REF, scripts_dir};

/// How long `start` and `start_again` wait for the socket to answer (a loaded 2-core CI VM
/// answers in 0.1–0.3 s; the margin is for a machine under heavy parallel load).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Size limit of the tmpfs each instance lives on. containerd fsyncs its metadata and
/// content on every import; on the shared, busy ext4 disk of a CI VM that made `start` take
/// 0.2–1 s, on tmpfs it does not cost anything. Pages are only used as written.
pub const INSTANCE_TMPFS_BYTES: u64 = 1 << 30;

/// How long teardown gives containerd to exit on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// How long we wait for SIGKILLed processes to disappear.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where containerd keeps v2 task bundles, relative to its `state` directory.
const TASK_BUNDLES: &str = "io.containerd.runtime.v2.task";

/// runc's state root for containerd's runc shim: `/run/containerd/runc/<ns>/<id>`, shared by
/// every containerd on the host whatever its `state` says.
const RUNC_ROOT: &str = "/run/containerd/runc";

/// Shim sockets: `/run/containerd/s/<hash>`, shared as well.
const SHIM_SOCKETS: &str = "/run/containerd/s";

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(0);

/// The private containerd config (v2), the one `scripts/containerd-private.sh` writes too:
/// own root, state, gRPC/ttrpc/debug sockets and opt dir under `dir`, CRI plugin off,
/// metrics off; cgroups are runc's default cgroupfs driver.
pub fn config_toml(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = "{d}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

/// A containerd of this test's own.
///
/// Guarantees:
/// - everything it owns is under [`dir`](Self::dir) (`/tmp/bt-<pid>-<n>`, short enough for
///   the 108-byte socket limit, a tmpfs of its own: see [`INSTANCE_TMPFS_BYTES`]) except what containerd always puts under `/run/containerd`
///   (shim sockets, runc state), which is why every instance has its own containerd
///   namespace `berth-test-<pid>-<n>`;
/// - after [`start`](Self::start) the socket answers and [`IMAGE_REF`] is imported into
///   [`namespace`](Self::namespace) and unpacked into the `overlayfs` snapshotter;
/// - dropping it (or [`shutdown`](Self::shutdown)) stops containerd, kills every shim started
///   by it and every process of its tasks, unmounts their rootfs, removes their runc state,
///   shim sockets and cgroups, and removes the directory. Drop blocks for that (usually a few
///   ms; up to a few seconds if containerd ignores SIGTERM).
#[derive(Debug)]
pub struct PrivateContainerd {
    dir: PathBuf,
    socket: PathBuf,
    namespace: String,
    child: Option<Child>,
    pid: u32,
    torn_down: bool,
}

impl PrivateContainerd {
    /// Installs missing tools (see [`crate::require_root_and_tools`]), creates a fresh
    /// directory and config, starts containerd, waits until its socket answers (at most
    /// [`READY_TIMEOUT`]; the error carries the log tail) and imports the busybox image.
    pub async fn start() -> Result<PrivateContainerd, HarnessError> {
        crate::require_root_and_tools()?;
        let (dir, n) = make_instance_dir()?;
        let namespace = format!("berth-test-{}-{n}", std::process::id());
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(&dir))
            .map_err(|e| HarnessError::io("write config", &config, e))?;
        let mut me = PrivateContainerd {
            socket: dir.join("containerd.sock"),
            dir,
            namespace,
            child: None,
            pid: 0,
            torn_down: false,
        };
        // On any error below, dropping `me` tears down what was started.
        me.spawn_and_wait().await?;
        me.import_image().await?;
        Ok(me)
    }

    /// The gRPC socket (`<dir>/containerd.sock`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// This instance's containerd namespace (`berth-test-<pid>-<n>`), unique on the host.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The imported busybox image ([`IMAGE_REF`]), unpacked for `overlayfs`.
    pub fn image_ref(&self) -> &str {
        IMAGE_REF
    }

    /// The instance's directory: `config.toml`, `containerd.log`, `root/`, `state/`, sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the containerd started last (still that pid after [`kill9`](Self::kill9)).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// containerd's log file (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The last `lines` lines of containerd's log (empty if unreadable).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// True while the containerd we started has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs `ctr -a <socket> -n <namespace> <args>`; returns its stdout, or
    /// [`HarnessError::Command`] with its output if it fails.
    pub async fn ctr(&self, args: &[&str]) -> Result<String, HarnessError> {
        let mut cmd = tokio::process::Command::new("ctr");
        cmd.arg("-a")
            .arg(&self.socket)
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        let shown = format!(
            "ctr -a {} -n {} {}",
            self.socket.display(),
            self.namespace,
            args.join(" ")
        );
        run(cmd, shown).await
    }

    /// SIGKILLs containerd and reaps it. Its shims and tasks keep running (as after a crash).
    /// Ok if it is not running.
    pub fn kill9(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            // Err only if it already exited; wait() reaps it either way.
            let _ = child.kill();
            child
                .wait()
                .map_err(|e| HarnessError::io("wait for containerd of", &self.dir, e))?;
        }
        Ok(())
    }

    /// Starts containerd again with the same config (same root, state, socket) and waits
    /// until the socket answers. [`HarnessError::AlreadyRunning`] if it still runs.
    pub async fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Err(HarnessError::AlreadyRunning {
                dir: self.dir.clone(),
                pid: self.pid,
            });
        }
        self.spawn_and_wait().await
    }

    /// [`kill9`](Self::kill9) then [`start_again`](Self::start_again): a containerd crash and
    /// restart, tasks surviving.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill9()?;
        self.start_again().await
    }

    /// Live (non-zombie) shim daemons started by this instance (`containerd-shim*` whose
    /// `-address` is our socket), sorted. Short-lived `start`/`delete` invocations of the shim
    /// binary (containerd runs one to clean up after a dead shim) are not counted.
    pub fn shim_pids(&self) -> Vec<u32> {
        procs::shims_of(&self.socket, true)
    }

    /// SIGKILLs every shim of this instance (as a shim crash) and waits until they are gone.
    /// Their container processes are not signalled: a running containerd reaps them, as in
    /// a real shim crash. Returns the pids killed.
    pub async fn kill_shims(&self) -> Result<Vec<u32>, HarnessError> {
        let pids = self.shim_pids();
        for &p in &pids {
            procs::signal(p, Signal::KILL);
        }
        let survivors = procs::wait_gone(&pids, KILL_GRACE).await;
        if !survivors.is_empty() {
            return Err(HarnessError::Survived {
                what: format!("shims of {}", self.namespace),
                pids: survivors,
                waited: KILL_GRACE,
            });
        }
        Ok(pids)
    }

    /// Tears the instance down now (see the type's guarantees) and reports anything left
    /// behind as [`HarnessError::Cleanup`]. Dropping does the same but can only print.
    pub async fn shutdown(mut self) -> Result<(), HarnessError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || self.teardown())
            .await
            .unwrap_or_else(|join| {
                Err(HarnessError::Cleanup {
                    dir,
                    problems: vec![format!("teardown task failed: {join}")],
                })
            })
    }

    async fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HarnessError::io("open log", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| HarnessError::io("open log", &log_path, e))?;
        let config = self.dir.join("config.toml");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| HarnessError::Spawn {
                program: "containerd".into(),
                source: e,
            })?;
        self.pid = child.id();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(HarnessError::Exited {
                    pid: self.pid,
                    socket: self.socket.clone(),
                    status: status.to_string(),
                    log_tail: self.log_tail(30),
                });
            }
            // containerd loads every plugin (and reconnects to surviving shims) before it
            // listens, so a connection that is accepted means it is ready.
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                return Ok(());
            }
            if started.elapsed() >= READY_TIMEOUT {
                return Err(HarnessError::NotReady {
                    pid: self.pid,
                    socket: self.socket.clone(),
                    waited: started.elapsed(),
                    log_tail: self.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn import_image(&self) -> Result<(), HarnessError> {
        let script = scripts_dir().join("build-image.sh");
        let mut cmd = tokio::process::Command::new(&script);
        cmd.arg("import").arg(&self.socket).arg(&self.namespace);
        let shown = format!(
            "{} import {} {}",
            script.display(),
            self.socket.display(),
            self.namespace
        );
        let out = run(cmd, shown.clone()).await?;
        if out.trim() != IMAGE_REF {
            return Err(HarnessError::Command {
                command: shown,
                status: "exit status: 0".into(),
                output: format!("printed {:?}, expected {IMAGE_REF:?}", out.trim()),
            });
        }
        Ok(())
    }

    /// Every (namespace, task id, bundle dir) containerd of this instance has a bundle for.
    fn bundles(&self) -> Vec<(String, String, PathBuf)> {
        let mut found = Vec::new();
        let base = self.dir.join("state").join(TASK_BUNDLES);
        let Ok(namespaces) = std::fs::read_dir(&base) else {
            return found;
        };
        for ns in namespaces.flatten() {
            let Ok(ids) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for id in ids.flatten() {
                found.push((
                    ns.file_name().to_string_lossy().into_owned(),
                    id.file_name().to_string_lossy().into_owned(),
                    id.path(),
                ));
            }
        }
        found
    }

    fn teardown(&mut self) -> Result<(), HarnessError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut problems = Vec::new();

        // 1. containerd: SIGTERM, then SIGKILL (it does not touch shims either way).
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                procs::signal(self.pid, Signal::TERM);
                let deadline = Instant::now() + TERM_GRACE;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = child.kill();
            }
            if let Err(e) = child.wait() {
                problems.push(format!("wait for containerd {}: {e}", self.pid));
            }
        }

        // 2. Every shim it started, their descendants (the containers), and anything left in
        //    the cgroups of our namespaces. Containers first, so none is re-parented mid-way.
        let bundles = self.bundles();
        let mut namespaces: Vec<&str> = bundles.iter().map(|(ns, _, _)| ns.as_str()).collect();
        namespaces.push(&self.namespace);
        namespaces.sort_unstable();
        namespaces.dedup();
        let mut survivors = Vec::new();
        for _ in 0..3 {
            let shims = procs::shims_of(&self.socket, false);
            let mut victims = procs::descendants(&shims);
            victims.extend(procs::all_pids().into_iter().filter(|&p| {
                procs::process_alive(p)
                    && namespaces
                        .iter()
                        .any(|ns| procs::in_namespace_cgroup(p, ns))
            }));
            if victims.is_empty() && shims.is_empty() {
                survivors.clear();
                break;
            }
            for &p in &victims {
                procs::signal(p, Signal::KILL);
            }
            for &p in &shims {
                procs::signal(p, Signal::KILL);
            }
            victims.extend(shims);
            survivors = procs::wait_gone_blocking(&victims, KILL_GRACE);
        }
        if !survivors.is_empty() {
            problems.push(format!("pids {survivors:?} survived SIGKILL"));
        }

        // 3. What the shims would have cleaned up: rootfs mounts, shim sockets, runc state,
        //    cgroups.
        for (_, _, bundle) in &bundles {
            if let Ok(addr) = std::fs::read_to_string(bundle.join("address")) {
                let path = Path::new(addr.trim().trim_start_matches("unix://"));
                if path.starts_with(SHIM_SOCKETS) {
                    remove_file_quiet(path, &mut problems);
                }
            }
        }
        problems.extend(procs::unmount_all_under(&self.dir));
        for (ns, id, _) in &bundles {
            remove_dir_all_quiet(&Path::new(RUNC_ROOT).join(ns).join(id), &mut problems);
            for root in cgroup_roots() {
                rmdir_quiet(&root.join(ns).join(id), &mut problems);
            }
        }
        for ns in &namespaces {
            let _ = std::fs::remove_dir(Path::new(RUNC_ROOT).join(ns));
            for root in cgroup_roots() {
                let _ = std::fs::remove_dir(root.join(ns));
            }
        }

        // 4. The directory (its tmpfs went with the unmounts above; remove_dir_all also
        //    covers a directory whose mount had failed half-way).
        remove_dir_all_quiet(&self.dir, &mut problems);

        if problems.is_empty() {
            Ok(())
        } else {
            Err(HarnessError::Cleanup {
                dir: self.dir.clone(),
                problems,
            })
        }
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("berth-testkit: {e}");
        }
    }
}

/// Creates `/tmp/bt-<pid>-<n>` (0700) with the next free `n` and mounts a tmpfs of
/// [`INSTANCE_TMPFS_BYTES`] on it.
fn make_instance_dir() -> Result<(PathBuf, u32), HarnessError> {
    use std::os::unix::fs::DirBuilderExt;
    loop {
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/bt-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            // A leftover of an earlier process that had our pid: never reuse it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(HarnessError::io("create dir", dir, e)),
        }
        let data = format!("size={INSTANCE_TMPFS_BYTES},mode=0700");
        let data = std::ffi::CString::new(data).unwrap_or_default();
        let mounted = rustix::mount::mount(
            "tmpfs",
            &dir,
            "tmpfs",
            rustix::mount::MountFlags::NODEV,
            data.as_c_str(),
        );
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir(&dir);
            return Err(HarnessError::io("mount tmpfs on", dir, e.into()));
        }
        return Ok((dir, n));
    }
}

/// Directories under which runc creates `/<ns>/<id>` cgroups: the v2 root and each v1
/// controller hierarchy.
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut roots = vec![base.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(base) {
        roots.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    roots
}

fn remove_file_quiet(path: &Path, problems: &mut Vec<String>) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            problems.push(format!("remove {}: {e}", path.display()))
        }
        _ => {}
    }
}

fn remove_dir_all_quiet(path: &Path, problems: &mut Vec<String>) {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            problems.push(format!("remove {}: {e}", path.display()))
        }
        _ => {}
    }
}

fn rmdir_quiet(path: &Path, problems: &mut Vec<String>) {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            problems.push(format!("rmdir {}: {e}", path.display()))
        }
        _ => {}
    }
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(raw) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&raw);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a command to completion; its stdout, or [`HarnessError::Command`] with the tail of
/// its output.
pub(crate) async fn run(
    mut cmd: tokio::process::Command,
    shown: String,
) -> Result<String, HarnessError> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let program = shown.split(' ').next().unwrap_or_default().to_owned();
    let out = cmd
        .output()
        .await
        .map_err(|e| HarnessError::Spawn { program, source: e })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut output = format!("{} {}", stderr.trim(), stdout.trim())
        .trim()
        .to_owned();
    if output.len() > 4000 {
        let mut cut = output.len() - 4000;
        while !output.is_char_boundary(cut) {
            cut += 1;
        }
        output = format!("…{}", &output[cut..]);
    }
    Err(HarnessError::Command {
        command: shown,
        status: out.status.to_string(),
        output,
    })
}
