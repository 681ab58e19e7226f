//! How to reach containerd and what to create there.

use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::ContainerdBackend`] needs to know about its containerd.
///
/// [`BackendConfig::new`] fills in the defaults; set the fields you need after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// containerd's gRPC socket (e.g. `/run/containerd/containerd.sock`).
    pub socket: PathBuf,
    /// The containerd namespace every request carries (default `berth`).
    pub namespace: String,
    /// Snapshotter for container root file systems (default `overlayfs`).
    pub snapshotter: String,
    /// Runtime of every container (default `io.containerd.runc.v2`).
    pub runtime: String,
    /// Image of the sandbox (pause) containers; it must be in containerd's image store and
    /// unpacked for [`BackendConfig::snapshotter`].
    pub sandbox_image: String,
    /// Command line of the pause process (e.g. `["sleep", "infinity"]` for busybox); empty =
    /// the image's entrypoint and cmd.
    pub sandbox_command: Vec<String>,
    /// Deadline of each call but `Tasks.Wait` and `Tasks.Create` (default 10 s).
    pub call_timeout: Duration,
    /// Deadline of `Tasks.Create`, which starts a shim and runs `runc create` (default 60 s).
    pub task_create_timeout: Duration,
    /// How long a lease protects a freshly prepared snapshot from containerd's garbage
    /// collector if berth dies before the container record exists (default 10 min).
    pub lease_expiry: Duration,
}

/// Default containerd namespace.
pub const DEFAULT_NAMESPACE: &str = "berth";
/// Default snapshotter.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// Default runtime.
pub const DEFAULT_RUNTIME: &str = "io.containerd.runc.v2";
/// Default sandbox image.
pub const DEFAULT_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.9";

impl BackendConfig {
    /// A configuration for the containerd at `socket`, with every other field at its
    /// default.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        BackendConfig {
            socket: socket.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            snapshotter: DEFAULT_SNAPSHOTTER.to_owned(),
            runtime: DEFAULT_RUNTIME.to_owned(),
            sandbox_image: DEFAULT_SANDBOX_IMAGE.to_owned(),
            sandbox_command: Vec::new(),
            call_timeout: Duration::from_secs(10),
            task_create_timeout: Duration::from_secs(60),
            lease_expiry: Duration::from_secs(600),
        }
    }
}
