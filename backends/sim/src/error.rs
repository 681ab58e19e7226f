//! Errors of the harness hooks (the [`berth_backend::Backend`] and
//! [`berth_backend::CheckpointStore`] methods use the ports' own error types).

use berth_core::SandboxId;

/// Why a harness hook could not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The pod has no live shim.
    #[error("pod {pod}: no live shim")]
    NoLiveShim {
        /// The pod.
        pod: SandboxId,
    },
    /// There is no task with this id.
    #[error("{id}: no task")]
    NoTask {
        /// The containerd id.
        id: String,
    },
    /// The task exists but its process is not running.
    #[error("{id}: the process is not running ({state})")]
    NotRunning {
        /// The containerd id.
        id: String,
        /// What it is instead.
        state: String,
    },
    /// There is no record with this id.
    #[error("{id}: no container record")]
    NoRecord {
        /// The containerd id.
        id: String,
    },
}
