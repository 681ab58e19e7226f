//! Why a `berth` command failed.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The socket could not be reached.
    #[error(transparent)]
    Connect(#[from] crate::client::ConnectError),
    /// The runtime refused.
    #[error("{rpc}: {code:?}: {message}")]
    Rpc {
        /// The RPC.
        rpc: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// The request did not finish in time.
    #[error("{rpc}: no answer within {after:?}")]
    Timeout {
        /// The RPC.
        rpc: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// A config file is unreadable or malformed.
    #[error("{path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A required option is missing.
    #[error("{0}")]
    Usage(String),
    /// `berth exec`'s command exited with a non-zero code: `berth` exits with it (and
    /// prints nothing more).
    #[error("the command exited with code {0}")]
    ExecExit(i32),
    /// Reading a log or writing output failed.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}
