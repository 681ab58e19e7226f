//! berth-containerd: the production backend.
//!
//! - [`ContainerdBackend`]: berth's [`berth_backend::Backend`] over a real containerd
//!   (containerd-client 0.9, gRPC on its unix socket), configured by [`BackendConfig`].
//!   Containers get an overlayfs snapshot on top of their unpacked image, a
//!   containerd-default-like OCI spec, berth's labels ([`LABEL_MANAGED`], [`LABEL_KIND`],
//!   [`LABEL_SANDBOX`]) and berth's metadata as a container extension
//!   ([`CONTAINER_EXTENSION`], [`SANDBOX_EXTENSION`]).
//! - [`Client`]: the thin client underneath (one accessor per containerd service, requests
//!   carrying the namespace header).
//! - [`map_status`]: the one function that turns containerd's errors into
//!   [`berth_backend::BackendError`]s ([`map_log_error`] does it for the log copier's).
//! - [`store::FsCheckpointStore`]: checkpoints on the local file system.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use berth_backend::{Backend, Target};
//! use berth_containerd::{BackendConfig, ContainerdBackend};
//! let mut config = BackendConfig::new("/run/containerd/containerd.sock");
//! config.sandbox_image = "docker.io/library/busybox:latest".into();
//! config.sandbox_command = vec!["sleep".into(), "infinity".into()];
//! let backend = ContainerdBackend::connect(config).await?;
//! let listing = backend.list().await?;
//! for c in &listing.containers {
//!     let state = backend.task_status(&Target::Container(c.id.parse()?)).await?;
//!     println!("{} {state:?}", c.id);
//! }
//! # Ok(()) }
//! ```

mod backend;
mod client;
mod config;
mod container;
mod error;
mod exec;
mod image;
pub mod logio;
pub mod spec;
pub mod store;
mod task;
mod time;
mod update;

pub use backend::ContainerdBackend;
pub use client::{Client, MAX_MESSAGE_BYTES};
pub use config::{
    BackendConfig, DEFAULT_NAMESPACE, DEFAULT_RUNTIME, DEFAULT_SANDBOX_IMAGE, DEFAULT_SNAPSHOTTER,
};
pub use container::{
    CONTAINER_EXTENSION, CONTAINER_META_TYPE_URL, KIND_CONTAINER, KIND_SANDBOX, LABEL_KIND,
    LABEL_MANAGED, LABEL_SANDBOX, MANAGED_FILTER, SANDBOX_EXTENSION, SANDBOX_META_TYPE_URL,
};
pub use error::{ConnectError, deadline_exceeded, map_log_error, map_status};
pub use image::{ImageConfig, ResolvedImage, chain_id};
pub use time::unix_nanos;
pub use update::{LINUX_RESOURCES_TYPE_URL, oci_resources};
