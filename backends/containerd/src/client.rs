//! A thin containerd client, like containerd's rust-extensions `Client`: one accessor per
//! service, and requests that carry the namespace header.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient,
    images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Channel;

use crate::error::ConnectError;

/// Largest message berth accepts from or sends to containerd. tonic's default of 4 MiB
/// is too small for a `Containers.List` echoing many records with their extensions.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// gRPC header carrying the containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// gRPC header carrying a lease (resources created under it are protected from GC).
const LEASE_HEADER: &str = "containerd-lease";

/// A connection to one containerd in one namespace. Cloning is cheap (one shared HTTP/2
/// channel). The channel reconnects by itself after containerd restarts; calls made while
/// containerd is down fail fast with `Unavailable`.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    namespace: AsciiMetadataValue,
}

macro_rules! accessor {
    ($(#[$doc:meta])* $name:ident, $ty:ident) => {
        $(#[$doc])*
        pub fn $name(&self) -> $ty<Channel> {
            $ty::new(self.channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        }
    };
}

impl Client {
    /// Dials containerd's socket (fails at once if nothing listens) and checks it answers
    /// `Version` within `timeout`.
    pub async fn connect(
        socket: &Path,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Client, ConnectError> {
        let header = MetadataValue::try_from(namespace).map_err(|_| ConnectError::Namespace {
            namespace: namespace.to_owned(),
        })?;
        let shown = socket.display().to_string();
        let channel = tokio::time::timeout(timeout, containerd_client::connect(socket))
            .await
            .map_err(|_| ConnectError::Dial {
                socket: shown.clone(),
                message: format!("no connection within {timeout:?}"),
            })?
            .map_err(|e| ConnectError::Dial {
                socket: shown.clone(),
                message: error_chain(&e),
            })?;
        let client = Client {
            channel,
            namespace: header,
        };
        let mut version = client.version();
        match tokio::time::timeout(timeout, version.version(Request::new(()))).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(status)) => Err(ConnectError::Handshake {
                socket: shown,
                message: error_chain(&status),
            }),
            Err(_) => Err(ConnectError::Handshake {
                socket: shown,
                message: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// The containerd namespace of every request built by [`Client::request`].
    pub fn namespace(&self) -> &str {
        self.namespace.to_str().unwrap_or_default()
    }

    /// Wraps `msg` in a request carrying the namespace header.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut()
            .insert(NAMESPACE_HEADER, self.namespace.clone());
        req
    }

    /// Wraps `msg` in a request carrying the namespace header and a lease: what the call
    /// creates is protected from containerd's garbage collector while the lease lives.
    /// `lease` must be a valid header value (berth generates it from validated ids).
    pub fn leased_request<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut req = self.request(msg);
        if let Ok(v) = MetadataValue::try_from(lease) {
            req.metadata_mut().insert(LEASE_HEADER, v);
        }
        req
    }

    accessor!(
        /// Containers service (`containerd.services.containers.v1`).
        containers,
        ContainersClient
    );
    accessor!(
        /// Tasks service (`containerd.services.tasks.v1`).
        tasks,
        TasksClient
    );
    accessor!(
        /// Snapshots service (`containerd.services.snapshots.v1`).
        snapshots,
        SnapshotsClient
    );
    accessor!(
        /// Images service (`containerd.services.images.v1`).
        images,
        ImagesClient
    );
    accessor!(
        /// Content service (`containerd.services.content.v1`).
        content,
        ContentClient
    );
    accessor!(
        /// Leases service (`containerd.services.leases.v1`).
        leases,
        LeasesClient
    );
    accessor!(
        /// Version service (`containerd.services.version.v1`).
        version,
        VersionClient
    );
}

/// An error and its sources, joined with ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
