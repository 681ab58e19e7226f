//! [`run`]: berthd's main task.
//!
//! 1. Create the root and state directories, fix the log settings (FIFOs under
//!    `<state_dir>/io`), bind the CRI socket ([`crate::socket::bind`]) and serve at once:
//!    until the next steps are done every RPC but Version, Status and RuntimeConfig
//!    answers `Unavailable`.
//! 2. Connect to containerd, retrying with backoff until it answers.
//! 3. Start berth-service on the containerd backend and the file checkpoint store; it
//!    recovers (containers that ran on, exited or vanished meanwhile) and then serves.
//! 4. On SIGTERM or SIGINT: refuse new requests, end event streams, give in-flight requests
//!    [`Config::shutdown_timeout`], stop the service (no container is touched), detach the
//!    log copiers (their FIFOs stay for the next berthd), remove the socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_containerd::ContainerdBackend;
use berth_containerd::logio::{LogSettings, configure_logs};
use berth_containerd::store::FsCheckpointStore;
use berth_service::{Service, ServiceConfig};
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::server::{Connected, Cri, Runtime};
use crate::socket::{self, SocketError};

/// Largest CRI request berthd decodes (tonic's default is 4 MiB; configs are checked to be
/// far smaller, so a larger message is refused by tonic before it costs anything).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Largest CRI reply berthd encodes: a ListContainers of thousands of containers exceeds
/// tonic's 4 MiB default. It is the limit berth's CRI client accepts
/// (`berth_cli::client::MAX_MESSAGE_BYTES`, checked equal by a test), so no reply berthd
/// sends is too large for it.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// Why berthd stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The CRI socket could not be bound.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// A directory could not be created.
    #[error("create {what} {path}: {source}")]
    Dir {
        /// Which directory.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The checkpoint store could not be opened.
    #[error("open the checkpoint store in {path}: {error}")]
    Store {
        /// The root directory.
        path: PathBuf,
        /// The store's error.
        error: berth_backend::StoreError,
    },
    /// Signal handlers could not be installed.
    #[error("install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The gRPC server failed.
    #[error("CRI server: {0}")]
    Serve(String),
}

/// A random seed for the service's id generator.
fn random_seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Connects to containerd, retrying with backoff (100 ms doubling to 5 s) until it answers
/// or `stop` fires.
async fn connect(config: &Config, stop: &mut watch::Receiver<bool>) -> Option<ContainerdBackend> {
    let mut delay = Duration::from_millis(100);
    loop {
        match ContainerdBackend::connect(config.backend()).await {
            Ok(b) => return Some(b),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "containerd is not reachable yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs berthd until SIGTERM or SIGINT (see the module docs). Must run inside a
/// multi-threaded tokio runtime.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    for (what, path) in [
        ("root directory", &config.root_dir),
        ("state directory", &config.state_dir),
    ] {
        std::fs::create_dir_all(path).map_err(|source| DaemonError::Dir {
            what,
            path: path.clone(),
            source,
        })?;
    }
    if !configure_logs(LogSettings {
        fifo_root: config.fifo_root(),
        max_line_bytes: config.max_log_line_bytes,
    }) {
        tracing::warn!("log settings were fixed already; keeping them");
    }
    let term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        let name = termination(term, int).await;
        tracing::info!(
            signal = name,
            "shutting down gracefully; containers keep running"
        );
        stop_tx.send_replace(true);
    });

    let mut bound = socket::bind(&config.socket)?;
    let listener = bound
        .take_listener()
        .ok_or_else(|| DaemonError::Serve("the socket's listener is gone".into()))?;
    let rt = Runtime::new(&config);
    let svc = RuntimeServiceServer::new(Cri::new(rt.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REPLY_BYTES);
    let (server_stop_tx, server_stop) = watch::channel(false);
    let mut server = tokio::spawn(async move {
        let mut server_stop = server_stop;
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(socket = %config.socket.display(), "serving CRI (Unavailable until recovery has finished)");

    let mut handle = None;
    if let Some(backend) = connect(&config, &mut stop).await {
        tracing::info!(
            containerd = %config.containerd_socket.display(),
            namespace = %config.containerd_namespace,
            "connected to containerd"
        );
        let store = FsCheckpointStore::open(config.root_dir.clone()).map_err(|error| {
            DaemonError::Store {
                path: config.root_dir.clone(),
                error,
            }
        })?;
        let service = Service::start(
            Arc::new(backend.clone()),
            Arc::new(store),
            ServiceConfig {
                call_timeout: config.call_timeout,
                recovery_timeout: config.recovery_timeout,
                recovery_parallelism: config.recovery_parallelism,
                id_seed: random_seed(),
                ..ServiceConfig::default()
            },
        );
        rt.set_connected(Connected {
            service: service.clone(),
        });
        let ready = service.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            if ready.wait_ready().await.is_ok() {
                tracing::info!(took = ?started.elapsed(), "recovery finished: ready");
            }
        });
        handle = Some((service, backend));
    }

    // Serve until a signal (or the server failing).
    let served = tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        r = &mut server => Some(r),
    };
    if let Some(r) = served {
        let message = match r {
            Ok(Ok(())) => "the server stopped by itself".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        return Err(DaemonError::Serve(message));
    }
    rt.begin_shutdown();
    server_stop_tx.send_replace(true);
    if tokio::time::timeout(config.shutdown_timeout, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(waited = ?config.shutdown_timeout, "in-flight requests did not finish; dropping them");
        server.abort();
    }
    if let Some((service, backend)) = handle {
        service.shutdown();
        backend.detach_logs().await;
    }
    drop(bound);
    tracing::info!("berthd stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn berths_client_accepts_every_reply_berthd_sends() {
        assert_eq!(super::MAX_REPLY_BYTES, berth_cli::client::MAX_MESSAGE_BYTES);
    }
}
