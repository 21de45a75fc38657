//! The one error type of the service layer: a stable wire code plus a message for
//! humans. Transports turn it into an `Error` frame (QUIC) or a JSON error (browser).

use quip_protocol::{ErrorCode, pb};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused; `code` says why.
    #[error("{code:?}: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too fast: RATE_LIMITED, with how long to wait.
    #[error("rate limited; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Refused {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn rate_limited(retry: crate::limits::RetryAfter) -> Self {
        ServiceError::RateLimited {
            retry_after_ms: retry.as_millis(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Refused { code, .. } => *code,
            ServiceError::RateLimited { .. } => ErrorCode::RateLimited,
            ServiceError::Store(StoreError::UsernameTaken) => ErrorCode::UsernameTaken,
            ServiceError::Store(StoreError::Unavailable(_) | StoreError::Closed) => {
                ErrorCode::Unavailable
            }
            ServiceError::Store(StoreError::Corrupt(_)) => ErrorCode::Internal,
            ServiceError::Store(StoreError::Conflict(_)) => ErrorCode::Conflict,
        }
    }

    /// The wire form. Store internals are not echoed to clients.
    pub fn to_pb(&self) -> pb::Error {
        let message = match self {
            ServiceError::Refused { message, .. } => message.clone(),
            ServiceError::RateLimited { retry_after_ms } => {
                let mut error = pb::Error::new(
                    ErrorCode::RateLimited,
                    format!("too many requests; retry in {retry_after_ms} ms"),
                );
                error.retry_after_ms = *retry_after_ms;
                return error;
            }
            ServiceError::Store(StoreError::UsernameTaken) => "username is taken".into(),
            ServiceError::Store(StoreError::Corrupt(_)) => "internal error".into(),
            ServiceError::Store(StoreError::Conflict(reason)) => reason.clone(),
            ServiceError::Store(_) => "store unavailable, nothing was stored; retry".into(),
        };
        pb::Error::new(self.code(), message)
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
