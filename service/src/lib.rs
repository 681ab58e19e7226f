//! berth-service: the async driver that runs berth's pure core against a [`Backend`] and a
//! [`CheckpointStore`]. The same code runs in production (tokio) and in the simulator
//! (madsim, through the `madsim-tokio` package).
//!
//! One task owns the [`berth_core::Machine`]. Commands from [`ServiceHandle`]s, call
//! results, checkpoint outcomes and timers feed in; effects run out: calls run concurrently,
//! each under a deadline (waits excepted); checkpoint writes of one container run one at a
//! time in order, so a write is durable before any later effect of that container and
//! before its reply. The driver makes no lifecycle decision: everything it does is an
//! effect the core emitted, plus recovery's gathering of facts (list, load, observe) and
//! the orphan sweep.
//!
//! ```no_run
//! # async fn demo<B: berth_backend::Backend, S: berth_backend::CheckpointStore>(backend: B, store: S) {
//! use std::sync::Arc;
//! use berth_service::{Service, ServiceConfig};
//! let handle = Service::start(Arc::new(backend), Arc::new(store), ServiceConfig::default());
//! handle.wait_ready().await.unwrap();
//! let pods = handle.list_sandboxes(Default::default()).await.unwrap();
//! # let _ = pods;
//! # }
//! ```

mod driver;
mod handle;
mod read;
mod recover;

use std::time::Duration;

pub use handle::ServiceHandle;
pub use read::{ContainerFilter, ContainerView, SandboxFilter, SandboxView};

use berth_backend::{Backend, CheckpointStore};
use berth_core::CommandError;
use std::sync::Arc;

/// Tunables of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The core's tunables (backoffs).
    pub core: berth_core::Config,
    /// Deadline of every backend call but waits (containerd's CRI uses 10 s-ish bounds).
    pub call_timeout: Duration,
    /// Deadline of observing one task during recovery (containerd: `loadContainerTimeout`).
    pub recovery_timeout: Duration,
    /// How many tasks recovery observes at once (containerd 1.7+: unbounded).
    pub recovery_parallelism: usize,
    /// Seed of the id generator (production: random; simulation: from the run's seed).
    pub id_seed: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            core: berth_core::Config::default(),
            call_timeout: Duration::from_secs(10),
            recovery_timeout: Duration::from_secs(10),
            recovery_parallelism: 32,
            id_seed: 0,
        }
    }
}

/// Why a service request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The core refused or failed the request (while recovery has not finished:
    /// [`CommandError::Recovering`]).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The service has shut down.
    #[error("berth service is not running")]
    Stopped,
    /// A read that goes to containerd without a lifecycle step (stats) failed.
    #[error(transparent)]
    Backend(#[from] berth_core::BackendError),
}

/// Entry point.
pub struct Service;

impl Service {
    /// Starts the driver task: recovery first (requests are answered
    /// [`CommandError::Recovering`] meanwhile), then serving. Must be called inside a
    /// tokio (or madsim) runtime.
    pub fn start<B: Backend, S: CheckpointStore>(
        backend: Arc<B>,
        store: Arc<S>,
        config: ServiceConfig,
    ) -> ServiceHandle {
        driver::spawn(backend, store, config)
    }
}
