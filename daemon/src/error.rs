//! [`ApiError`], every way a CRI request can fail, and [`to_status`], the one function that
//! turns it into a gRPC status.

use berth_core::ErrorCode;
use berth_service::ServiceError;
use tonic::{Code, Status};

/// Why a CRI request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A request field is missing or malformed; nothing was created or changed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The CRI field, e.g. `config.metadata.name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// An RPC berth does not serve yet.
    #[error("{rpc} is not implemented by berth yet: {detail}")]
    Unimplemented {
        /// The RPC.
        rpc: &'static str,
        /// What to do instead.
        detail: &'static str,
    },
    /// berthd has not reached containerd yet.
    #[error("berthd is not connected to containerd at {socket} yet; try again")]
    NotConnected {
        /// containerd's socket.
        socket: String,
    },
    /// berthd is shutting down.
    #[error("berthd is shutting down")]
    ShuttingDown,
}

impl ApiError {
    /// An [`ApiError::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The gRPC code of a core [`ErrorCode`] (the core maps backend failures to those in one
/// place, `BackendErrorKind::code`).
fn code_of(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
    }
}

/// The gRPC status of an [`ApiError`]: the only place berthd chooses a code. The message is
/// the error's text, which names the ids and fields involved.
pub fn to_status(error: &ApiError) -> Status {
    let code = match error {
        ApiError::InvalidArgument { .. } => Code::InvalidArgument,
        ApiError::Service(ServiceError::Stopped) => Code::Unavailable,
        ApiError::Service(ServiceError::Command(e)) => code_of(e.code()),
        ApiError::Service(ServiceError::Backend(e)) => code_of(e.kind.code()),
        ApiError::Unimplemented { .. } => Code::Unimplemented,
        ApiError::NotConnected { .. } | ApiError::ShuttingDown => Code::Unavailable,
    };
    Status::new(code, error.to_string())
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        to_status(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{CommandError, ContainerId, ContainerState};

    #[test]
    fn codes() {
        let id = ContainerId::new("c1").unwrap();
        let cases = [
            (
                ApiError::invalid("config.metadata", "missing"),
                Code::InvalidArgument,
            ),
            (
                ServiceError::Command(CommandError::Recovering).into(),
                Code::Unavailable,
            ),
            (ServiceError::Stopped.into(), Code::Unavailable),
            (
                ApiError::Service(ServiceError::Command(CommandError::ContainerNotFound {
                    id: id.clone(),
                })),
                Code::NotFound,
            ),
            (
                ApiError::Service(ServiceError::Command(CommandError::InvalidState {
                    id,
                    op: berth_core::Operation::StartContainer,
                    state: ContainerState::Exited,
                })),
                Code::FailedPrecondition,
            ),
            (
                ApiError::Unimplemented {
                    rpc: "Exec",
                    detail: "x",
                },
                Code::Unimplemented,
            ),
        ];
        for (e, want) in cases {
            let s = to_status(&e);
            assert_eq!(s.code(), want, "{e}");
            assert_eq!(s.message(), e.to_string());
        }
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let s = to_status(&ApiError::invalid(
            "config.metadata.name",
            "must not be empty",
        ));
        assert_eq!(
            s.message(),
            "invalid config.metadata.name: must not be empty"
        );
    }
}
