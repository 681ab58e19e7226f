//! berth-cli: `berth`, a small CRI client (crictl's verbs and tables) for nodes without
//! crictl, and the two pieces of a CRI client that berthd's tests and benchmark share with it.
//!
//! # Contract
//!
//! - [`client::connect`] gives a CRI client over a unix socket (the CLI, berth-daemon's tests
//!   and its `cri-bench` example use it).
//! - [`crilog`] parses the CRI log format back (`berth logs` prints it; berth-daemon's tests
//!   check what berthd wrote).
//! - [`run`] carries out one parsed command line ([`args::Cli`]) against the runtime at its
//!   socket: version, info, runp, stopp, rmp, pods, inspectp, create, start, stop, rm, ps,
//!   inspect, logs. Tables like crictl's, or JSON with `--output json`; pod and container
//!   configs come from flags or from a crictl-style JSON (or TOML) file, flags override the
//!   file. Every failure is a [`CliError`].
//!
//! The crate links no server code (no berth-daemon, berth-service, berth-containerd or
//! containerd-client): it speaks the CRI to any runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_cri::v1::VersionRequest;
//! let mut cri = berth_cli::client::connect("/run/berth/berth.sock").await?;
//! let v = cri.version(VersionRequest::default()).await?.into_inner();
//! println!("{} {}", v.runtime_name, v.runtime_version);
//! # Ok(()) }
//! ```

pub mod args;
pub mod client;
pub mod crilog;
mod error;
mod files;
mod requests;
mod table;
mod verbs;

pub use error::CliError;
pub use verbs::run;
