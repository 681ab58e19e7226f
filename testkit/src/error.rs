//! The harness's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// Why the test harness could not do what a test asked. Every variant names the file,
/// command or process involved, so a failing test's message says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The tests need root: containerd, runc and mount do.
    #[error("berth's integration tests must run as root (euid 0), not euid {euid}")]
    NotRoot {
        /// The effective uid we run as.
        euid: u32,
    },
    /// A file-system operation of the harness failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the harness was doing ("create dir", "write config", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started at all (not installed, not executable).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line, as shown to a human.
        command: String,
        /// How it ended ("exit status: 1", "signal: 9").
        status: String,
        /// The tail of its stderr and stdout.
        output: String,
    },
    /// containerd was started but its socket did not answer in time.
    #[error(
        "containerd (pid {pid}) did not answer on {} within {waited:?}; log tail:\n{log_tail}",
        socket.display()
    )]
    NotReady {
        /// containerd's pid.
        pid: u32,
        /// The gRPC socket we polled.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// The last lines of containerd's log.
        log_tail: String,
    },
    /// containerd exited while we waited for its socket.
    #[error(
        "containerd (pid {pid}) exited ({status}) before answering on {}; log tail:\n{log_tail}",
        socket.display()
    )]
    Exited {
        /// containerd's pid.
        pid: u32,
        /// The gRPC socket we polled.
        socket: PathBuf,
        /// How it ended.
        status: String,
        /// The last lines of containerd's log.
        log_tail: String,
    },
    /// `start_again` on an instance whose containerd still runs.
    #[error("containerd of {} is already running (pid {pid})", dir.display())]
    AlreadyRunning {
        /// The instance's directory.
        dir: PathBuf,
        /// The running containerd.
        pid: u32,
    },
    /// Processes that were sent SIGKILL are still alive after the grace period.
    #[error("{what}: pids {pids:?} still alive after SIGKILL and {waited:?}")]
    Survived {
        /// Which processes ("shims of berth-test-1-0", ...).
        what: String,
        /// The survivors.
        pids: Vec<u32>,
        /// How long we waited.
        waited: Duration,
    },
    /// Teardown did its best but something was left behind.
    #[error("cleanup of {} left problems: {}", dir.display(), problems.join("; "))]
    Cleanup {
        /// The instance's directory.
        dir: PathBuf,
        /// One line per problem.
        problems: Vec<String>,
    },
}

impl HarnessError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HarnessError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
