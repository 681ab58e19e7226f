//! A CRI client over berthd's unix socket (tonic channel with a unix-socket connector).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Largest message the client sends or accepts (a ListContainers of thousands of
/// containers exceeds tonic's 4 MiB default).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Why the client could not connect.
#[derive(Debug, thiserror::Error)]
#[error("connect to the CRI socket {socket}: {message}")]
pub struct ConnectError {
    /// The socket.
    pub socket: PathBuf,
    /// What went wrong, with its causes.
    pub message: String,
}

/// A CRI runtime client.
pub type CriClient = RuntimeServiceClient<Channel>;

/// Dials the CRI socket at `path` (fails at once if nothing listens). The channel
/// reconnects by itself if the server restarts.
pub async fn connect(path: impl AsRef<Path>) -> Result<CriClient, ConnectError> {
    let path = path.as_ref().to_path_buf();
    let fail = |e: &dyn std::error::Error| {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        ConnectError {
            socket: path.clone(),
            message,
        }
    };
    let target = path.clone();
    // The URI is required by tonic and ignored by the connector.
    let endpoint = Endpoint::try_from("http://[::]:0").map_err(|e| fail(&e))?;
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let target = target.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(target).await?,
                ))
            }
        }))
        .await
        .map_err(|e| fail(&e))?;
    Ok(RuntimeServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
