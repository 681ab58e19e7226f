//! berth-testkit: the harness of berth's integration tests.
//!
//! Contract:
//! - [`require_root_and_tools`] first: it fails with [`HarnessError::NotRoot`] unless we are
//!   root, and installs containerd, runc, busybox-static and protoc with
//!   `scripts/install-deps.sh` when one is missing (Debian 12).
//! - [`PrivateContainerd::start`] gives a test a containerd of its own (own socket, root,
//!   state, containerd namespace) with the busybox image [`IMAGE_REF`] imported and unpacked
//!   for `overlayfs`; it can be crashed ([`PrivateContainerd::kill9`]), restarted, and its
//!   shims killed; dropping it leaves nothing running and nothing mounted.
//! - [`scratch_dir`] and [`TmpfsMount`] give tests temporary directories, the latter on a
//!   small tmpfs that can be filled or remounted read-only.
//!
//! Everything works offline: the image is built locally by `scripts/build-image.sh` from
//! Debian's static busybox and cached under `~/.cache/berth/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_testkit::HarnessError> {
//! use berth_testkit::PrivateContainerd;
//! let ctd = PrivateContainerd::start().await?;
//! let out = ctd
//!     .ctr(&["run", "--rm", "--snapshotter", "overlayfs", ctd.image_ref(), "demo", "echo", "hi"])
//!     .await?;
//! assert_eq!(out.trim(), "hi");
//! # Ok(()) }
//! ```

mod containerd;
mod error;
mod procs;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use containerd::{INSTANCE_TMPFS_BYTES, PrivateContainerd, READY_TIMEOUT, config_toml};
pub use error::HarnessError;
pub use procs::process_alive;

/// The reference of the busybox test image (`scripts/build-image.sh ref`).
pub const IMAGE_REF: &str = "docker.io/library/berth-busybox:latest";

/// Programs the harness and the containerd backend's build need on `PATH`.
const TOOLS: &[&str] = &[
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "protoc",
];

/// The repository's `scripts/` directory: `$BERTH_SCRIPTS_DIR` if set, else the nearest
/// `scripts/` with `build-image.sh` above the current directory (cargo runs tests in their
/// package's directory), else the one this crate was compiled from. Looking at run time
/// matters: several checkouts may share one cargo target directory, and an artifact built
/// in another checkout must not run that checkout's scripts.
pub fn scripts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_SCRIPTS_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let candidate = dir.join("scripts");
            if candidate.join("build-image.sh").is_file() {
                return candidate;
            }
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
}

static TOOLS_CHECKED: Mutex<bool> = Mutex::new(false);

/// Ok if we run as root and every tool is present; installs missing tools once per process
/// by running `scripts/install-deps.sh` (apt-get). Call it first in every integration test.
pub fn require_root_and_tools() -> Result<(), HarnessError> {
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 {
        return Err(HarnessError::NotRoot { euid });
    }
    // One installer at a time: concurrent apt-get runs would fight over dpkg's lock.
    let mut checked = TOOLS_CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if *checked {
        return Ok(());
    }
    if !tools_present() {
        let script = scripts_dir().join("install-deps.sh");
        let out = std::process::Command::new(&script)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| HarnessError::Spawn {
                program: script.display().to_string(),
                source: e,
            })?;
        if !out.status.success() || !tools_present() {
            return Err(HarnessError::Command {
                command: script.display().to_string(),
                status: out.status.to_string(),
                output: format!(
                    "{} {}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
            });
        }
    }
    *checked = true;
    Ok(())
}

fn tools_present() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |tool: &str| std::env::split_paths(&path).any(|d| d.join(tool).is_file());
    TOOLS.iter().all(|t| on_path(t))
        && Path::new("/bin/busybox").is_file()
        // The static build: the dynamic `busybox` package ships /bin/busybox as well.
        && Path::new("/var/lib/dpkg/info/busybox-static.list").is_file()
}

/// A fresh temporary directory `/tmp/bt-<label>-XXXXXX`, removed when the value is dropped.
/// Short on purpose: tests put unix sockets and FIFOs in it.
pub fn scratch_dir(label: &str) -> Result<tempfile::TempDir, HarnessError> {
    tempfile::Builder::new()
        .prefix(&format!("bt-{label}-"))
        .tempdir_in("/tmp")
        .map_err(|e| HarnessError::io("create scratch dir in", "/tmp", e))
}

/// The cached OCI image tar of [`IMAGE_REF`], built first if needed (`scripts/build-image.sh`).
pub async fn image_tar() -> Result<PathBuf, HarnessError> {
    let script = scripts_dir().join("build-image.sh");
    let out = containerd::run(
        tokio::process::Command::new(&script),
        script.display().to_string(),
    )
    .await?;
    Ok(PathBuf::from(out.trim()))
}

/// A tmpfs of a fixed size mounted on a fresh scratch directory, for tests of full and
/// read-only file systems. Unmounted (lazily, so an open file cannot block it) and its
/// directory removed on drop. Needs root; mounting failures are errors, never skipped.
#[derive(Debug)]
pub struct TmpfsMount {
    path: PathBuf,
    // Declared after `path` and removed after Drop::drop has unmounted.
    _dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_bytes` (rounded up to whole pages by the kernel), mode 0755.
    pub fn new(size_bytes: u64) -> Result<TmpfsMount, HarnessError> {
        use rustix::mount::{MountFlags, mount};
        let dir = scratch_dir("tmpfs")?;
        let path = dir.path().to_path_buf();
        let data = std::ffi::CString::new(format!("size={size_bytes},mode=0755"))
            .map_err(|e| HarnessError::io("mount tmpfs on", &path, std::io::Error::other(e)))?;
        mount(
            "tmpfs",
            &path,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            data.as_c_str(),
        )
        .map_err(|e| HarnessError::io("mount tmpfs on", &path, e.into()))?;
        Ok(TmpfsMount { path, _dir: dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts read-only: every later write fails with EROFS. Files already open for
    /// writing make the kernel refuse (EBUSY).
    pub fn remount_ro(&self) -> Result<(), HarnessError> {
        self.remount(rustix::mount::MountFlags::RDONLY)
    }

    /// Remounts read-write.
    pub fn remount_rw(&self) -> Result<(), HarnessError> {
        self.remount(rustix::mount::MountFlags::empty())
    }

    fn remount(&self, extra: rustix::mount::MountFlags) -> Result<(), HarnessError> {
        use rustix::mount::{MountFlags, mount_remount};
        mount_remount(
            &self.path,
            MountFlags::NOSUID | MountFlags::NODEV | extra,
            "",
        )
        .map_err(|e| HarnessError::io("remount tmpfs", &self.path, e.into()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH) {
            eprintln!("berth-testkit: umount {}: {e}", self.path.display());
        }
    }
}
