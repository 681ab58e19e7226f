//! The one boundary where containerd's errors become berth's [`BackendError`].

use std::error::Error as _;
use std::time::Duration;

use berth_backend::{BackendError, BackendErrorKind};
use tonic::Code;

use crate::logio::LogError;

/// Fragments of a status message that mean the connection to containerd (or from
/// containerd to a shim) broke, whatever code tonic gave them: measured as `Unknown:
/// transport error` (containerd killed during a call), `Unknown: h2 protocol error`
/// (stream cut), `Unknown: ttrpc: closed` (shim killed during a wait), `Unavailable:
/// Connection refused` (containerd down).
const BROKEN_CONNECTION: &[&str] = &[
    "transport error",
    "h2 protocol error",
    "ttrpc: closed",
    "connection refused",
    "connection reset",
    "broken pipe",
    "error trying to connect",
    "connection closed",
];

/// Fragments of an `Unknown` status that the shim uses for "not in a state that allows
/// this": a second `Tasks.Start` (`cannot start a running process`, `cannot start a stopped
/// process`) and `Tasks.Delete` of a running task, which containerd 1.6.20 answered here
/// with `Unknown: failed to delete task: cannot delete a running process` (not the
/// `FailedPrecondition: task must be stopped before deletion` of docs/containerd-behaviour.md
/// §9.1).
const WRONG_STATE: &[&str] = &["cannot start a ", "cannot delete a running process"];

/// Maps a containerd reply to a [`BackendError`] for `verb` on `target`. The only place
/// where a containerd status is interpreted.
///
/// - `NotFound`, `AlreadyExists`, `FailedPrecondition`, `DeadlineExceeded` keep their kind;
/// - `Unavailable`, `Cancelled` and any status whose message shows a broken connection
///   ([`BROKEN_CONNECTION`]) are `Unavailable`: the caller must re-sync, never assume an
///   exit;
/// - `Unknown` statuses that say the process is in the wrong state ([`WRONG_STATE`]) are
///   `FailedPrecondition`;
/// - everything else is `Other`.
///
/// The message keeps containerd's words and the transport's error chain.
pub fn map_status(status: &tonic::Status, verb: &str, target: &str) -> BackendError {
    let mut message = format!("{:?}: {}", status.code(), status.message());
    let mut source = status.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    let lower = message.to_ascii_lowercase();
    let broken = BROKEN_CONNECTION.iter().any(|f| lower.contains(f));
    let kind = match status.code() {
        Code::NotFound => BackendErrorKind::NotFound,
        Code::AlreadyExists => BackendErrorKind::AlreadyExists,
        Code::FailedPrecondition => BackendErrorKind::FailedPrecondition,
        Code::DeadlineExceeded => BackendErrorKind::DeadlineExceeded,
        Code::Unavailable | Code::Cancelled => BackendErrorKind::Unavailable,
        _ if broken => BackendErrorKind::Unavailable,
        Code::Unknown if WRONG_STATE.iter().any(|f| lower.contains(f)) => {
            BackendErrorKind::FailedPrecondition
        }
        _ => BackendErrorKind::Other,
    };
    BackendError::new(kind, verb, target, message)
}

/// The error of a call that did not answer within `after`.
pub fn deadline_exceeded(verb: &str, target: &str, after: Duration) -> BackendError {
    BackendError::new(
        BackendErrorKind::DeadlineExceeded,
        verb,
        target,
        format!("no answer from containerd within {after:?}"),
    )
}

/// Maps a failure of berth's log copier (`crate::logio`) to a [`BackendError`] for `verb`
/// on `target`: no copier serving the container (no log path, or no running task) is
/// `FailedPrecondition`; a copier that does not answer and a file that cannot be reopened
/// are `Other`.
pub fn map_log_error(error: &LogError, verb: &str, target: &str) -> BackendError {
    let kind = match error {
        LogError::NotAttached { .. } => BackendErrorKind::FailedPrecondition,
        LogError::Reopen { .. } | LogError::CopierGone { .. } | LogError::Fifo { .. } => {
            BackendErrorKind::Other
        }
    };
    BackendError::new(kind, verb, target, error.to_string())
}

/// An error of berth's own making (bad input, unreadable image, local I/O).
pub(crate) fn local(
    kind: BackendErrorKind,
    verb: &str,
    target: &str,
    message: impl Into<String>,
) -> BackendError {
    BackendError::new(kind, verb, target, message)
}

/// Why [`crate::ContainerdBackend::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The namespace cannot travel in a gRPC header.
    #[error("containerd namespace {namespace:?} is not a valid header value")]
    Namespace {
        /// The namespace given.
        namespace: String,
    },
    /// The socket could not be dialled.
    #[error("cannot connect to containerd at {socket}: {message}")]
    Dial {
        /// The socket path.
        socket: String,
        /// The transport's words.
        message: String,
    },
    /// The socket answered but containerd's version call failed or timed out.
    #[error("containerd at {socket} does not answer: {message}")]
    Handshake {
        /// The socket path.
        socket: String,
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: Code, msg: &str) -> BackendErrorKind {
        map_status(&tonic::Status::new(code, msg), "Tasks.Get", "c1").kind
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind(Code::NotFound, "task c1 not found"),
            BackendErrorKind::NotFound
        );
        assert_eq!(
            kind(Code::AlreadyExists, "container \"c1\": already exists"),
            BackendErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(
                Code::FailedPrecondition,
                "task must be stopped before deletion: running"
            ),
            BackendErrorKind::FailedPrecondition
        );
        assert_eq!(
            kind(Code::DeadlineExceeded, "x"),
            BackendErrorKind::DeadlineExceeded
        );
        assert_eq!(
            kind(Code::Unavailable, "Connection refused (os error 111)"),
            BackendErrorKind::Unavailable
        );
        assert_eq!(
            kind(Code::InvalidArgument, "bad id"),
            BackendErrorKind::Other
        );
        assert_eq!(kind(Code::Unknown, "runc failed"), BackendErrorKind::Other);
    }

    #[test]
    fn broken_streams_are_unavailable_never_exits() {
        for msg in [
            "transport error",
            "h2 protocol error: error reading a body from connection",
            "ttrpc: closed",
        ] {
            assert_eq!(
                kind(Code::Unknown, msg),
                BackendErrorKind::Unavailable,
                "{msg}"
            );
        }
        assert_eq!(
            kind(Code::Internal, "h2 protocol error"),
            BackendErrorKind::Unavailable
        );
    }

    #[test]
    fn wrong_process_state_is_a_failed_precondition() {
        assert_eq!(
            kind(
                Code::Unknown,
                "failed to delete task: cannot delete a running process: unknown"
            ),
            BackendErrorKind::FailedPrecondition
        );
        assert_eq!(
            kind(Code::Unknown, "cannot start a running process"),
            BackendErrorKind::FailedPrecondition
        );
        assert_eq!(
            kind(Code::Unknown, "cannot start a stopped process"),
            BackendErrorKind::FailedPrecondition
        );
    }

    #[test]
    fn message_names_verb_target_and_containerd_words() {
        let e = map_status(
            &tonic::Status::new(Code::NotFound, "task c1 not found"),
            "Tasks.Kill",
            "c1",
        );
        assert_eq!(e.verb, "Tasks.Kill");
        assert_eq!(e.target, "c1");
        assert!(e.message.contains("task c1 not found"), "{}", e.message);
        let d = deadline_exceeded("Tasks.Get", "c2", Duration::from_secs(10));
        assert_eq!(d.kind, BackendErrorKind::DeadlineExceeded);
        assert_eq!(d.target, "c2");
    }

    #[test]
    fn log_errors_map_to_kinds() {
        let id = "c1".to_owned();
        let e = map_log_error(
            &LogError::NotAttached { id: id.clone() },
            "Logs.Reopen",
            "c1",
        );
        assert_eq!(e.kind, BackendErrorKind::FailedPrecondition);
        assert!(
            e.message.contains("no log is being written"),
            "{}",
            e.message
        );
        let e = map_log_error(
            &LogError::CopierGone { id: id.clone() },
            "Logs.Reopen",
            "c1",
        );
        assert_eq!(e.kind, BackendErrorKind::Other);
        let reopen = LogError::Reopen {
            id,
            path: "/var/log/c1.log".into(),
            message: "Permission denied".into(),
        };
        let e = map_log_error(&reopen, "Logs.Reopen", "c1");
        assert_eq!(
            (e.kind, e.verb.as_str()),
            (BackendErrorKind::Other, "Logs.Reopen")
        );
        assert!(e.message.contains("/var/log/c1.log"), "{}", e.message);
    }
}
