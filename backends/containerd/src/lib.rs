//! berth-containerd: the production backend.
//!
//! - [`store::FsCheckpointStore`]: checkpoints on the local file system.

pub mod store;
