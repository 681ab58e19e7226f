//! berth-daemon: `berthd`, berth's CRI v1 RuntimeService on a unix socket. The `berth` CLI,
//! a small CRI client for nodes without crictl, is the crate berth-cli.
//!
//! # Contract
//!
//! - [`daemon::run`] serves the CRI v1 `RuntimeService` ([`server::Cri`]) on
//!   [`config::Config::socket`] (mode 0660; a stale socket file is replaced, a live one
//!   refused, see [`socket`]) on top of berth-service, the containerd backend and the file
//!   checkpoint store. It answers `Unavailable` until it is connected to containerd and
//!   recovery has finished, and shuts down gracefully on SIGTERM or SIGINT: containers keep
//!   running and their logs are picked up again by the next berthd.
//! - Every request is validated before the service sees it ([`validate`]): a malformed
//!   request is `InvalidArgument` naming the CRI field and changes nothing.
//! - Every failure is an [`error::ApiError`]; [`error::to_status`] is the one place where it
//!   becomes a gRPC status.
//! - Container stdout/stderr reach the CRI log path in the CRI log format
//!   (`berth_containerd::logio`); `berth_cli::crilog` parses that format back.
//! - Clients talk to it over the socket, e.g. with `berth_cli::client::connect` (the CLI,
//!   this crate's tests and its `cri-bench` example use it):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_cri::v1::VersionRequest;
//! let mut cri = berth_cli::client::connect("/run/berth/berth.sock").await?;
//! let v = cri.version(VersionRequest::default()).await?.into_inner();
//! println!("{} {}", v.runtime_name, v.runtime_version);
//! # Ok(()) }
//! ```

pub mod config;
pub mod convert;
pub mod daemon;
pub mod error;
pub mod server;
pub mod socket;
pub mod stats;
pub mod validate;

/// The runtime name berthd reports in `Version`.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version berthd serves.
pub const CRI_API_VERSION: &str = "v1";
/// The only runtime handler berthd knows (runc through containerd's runc shim v2).
pub const RUNTIME_HANDLER: &str = "runc";
