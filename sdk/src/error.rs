//! The SDK's error type.
//!
//! Callers that need to react to a specific broker refusal match on
//! [`SdkError::code`] (or on [`SdkError::Server`] directly), never on message text.
//! A `RATE_LIMITED` refusal says how long to wait: [`SdkError::retry_after`].

use std::time::Duration;

use quip_protocol::{ErrorCode, FrameError, pb};

/// Result alias used throughout the SDK.
pub type Result<T, E = SdkError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The broker answered with an `Error` frame (or, during `Hello`, closed the
    /// connection with an error code before its `Error` frame could be read).
    #[error("broker refused: {0}")]
    Server(#[from] pb::Error),

    /// The broker closed the connection with an application close code.
    #[error("connection closed by the broker ({}): {reason}", code_name(*.code))]
    ClosedByBroker {
        /// The close code mapped to an [`ErrorCode`]; `None` for codes this SDK does
        /// not know (a newer broker).
        code: Option<ErrorCode>,
        reason: String,
    },

    /// The QUIC connection failed or was lost (timeout, reset, TLS failure, ...).
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),

    /// The connection attempt could not even start (bad server name, config).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),

    /// Writing to a stream failed, normally because the connection went away.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),

    /// Reading from a stream failed, normally because the connection went away.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),

    /// The broker sent bytes that are not a valid frame.
    #[error("bad frame from the broker: {0}")]
    Frame(#[from] FrameError),

    /// TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),

    /// The trust anchor is unusable: unreadable cert file, no certificate in it, a
    /// malformed fingerprint.
    #[error("invalid trust configuration: {0}")]
    InvalidTrust(String),

    /// An option is out of range (e.g. an idle timeout QUIC cannot express).
    #[error("invalid option: {0}")]
    InvalidOption(String),

    /// A method was called with an argument it never accepts; nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Local socket error (binding the client endpoint, reading a cert file).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    /// The request does not fit the broker's frame limit; it was not sent.
    #[error("request of {len} bytes exceeds the broker's frame limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },

    /// No response within `ClientOptions::request_timeout`.
    #[error("request timed out")]
    Timeout,

    /// The call needs an authenticated client: call `login`/`register` first.
    #[error("not authenticated: log in first")]
    NotAuthenticated,

    /// `login`/`register` on a client that is already authenticated.
    #[error("already authenticated")]
    AlreadyAuthenticated,

    /// `refresh` without a refresh token (the client logged in with an access token).
    #[error("no refresh token to refresh with")]
    NoRefreshToken,

    /// The connection was lost while a request that is not safe to resend (ping,
    /// refresh) was in flight.
    #[error("disconnected before the response arrived")]
    Disconnected,

    /// The client was closed (by `close()`, or after a fatal authentication error).
    #[error("client closed")]
    ClientClosed,

    /// The broker answered with a frame that does not fit the request.
    #[error("unexpected response from the broker: {0}")]
    UnexpectedResponse(&'static str),
}

fn code_name(code: Option<ErrorCode>) -> &'static str {
    code.map_or("unknown code", ErrorCode::name)
}

impl SdkError {
    /// The broker's error code, whether it came in an `Error` frame or as the close
    /// code of the connection.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Server(error) => Some(error.error_code()),
            SdkError::ClosedByBroker { code, .. } => *code,
            SdkError::Connection(error) => close_code(error),
            SdkError::FrameTooLarge { .. } => Some(ErrorCode::FrameTooLarge),
            _ => None,
        }
    }

    /// For a `RATE_LIMITED` refusal, how long the broker asks to wait before trying
    /// again (its `retry_after_ms`; zero if it did not say). `None` for every other
    /// error, including a `RATE_LIMITED` close code, which carries no delay.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SdkError::Server(error) if error.error_code() == ErrorCode::RateLimited => {
                Some(Duration::from_millis(error.retry_after_ms))
            }
            _ => None,
        }
    }

    /// Whether the broker ended this device's session for good: logged out (by the
    /// user from another device, or by an administrator), the account disabled, or
    /// another connection with the same device id took over. Reconnecting cannot
    /// help (or, for a replaced session, would fight the other connection).
    pub(crate) fn is_terminal_close(code: Option<ErrorCode>) -> bool {
        matches!(
            code,
            Some(ErrorCode::SessionReplaced | ErrorCode::LoggedOut | ErrorCode::AccountDisabled)
        )
    }

    /// Whether a refused reconnect `Hello` is final: retrying on a new connection
    /// cannot help after authentication refusals (the token cases are only reached
    /// once the refresh token was tried too), a `Hello` the broker finds malformed or
    /// unsupported, or cursors naming a conversation the user is no longer in
    /// (`FORBIDDEN`); nor after local configuration errors.
    pub(crate) fn is_fatal_auth(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ErrorCode::InvalidCredentials
                    | ErrorCode::AccountDisabled
                    | ErrorCode::LoggedOut
                    | ErrorCode::Unauthenticated
                    | ErrorCode::TokenExpired
                    | ErrorCode::TokenInvalid
                    | ErrorCode::InvalidArgument
                    | ErrorCode::Forbidden
                    | ErrorCode::Unsupported
            )
        ) || matches!(
            self,
            SdkError::InvalidTrust(_)
                | SdkError::InvalidOption(_)
                | SdkError::Tls(_)
                | SdkError::Connect(_)
                | SdkError::ClientClosed
        )
    }
}

fn close_code(error: &quinn::ConnectionError) -> Option<ErrorCode> {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ErrorCode::from_close_code(close.error_code.into_inner())
        }
        _ => None,
    }
}

impl From<quinn::ConnectionError> for SdkError {
    /// Application closes carry the broker's reason as an [`ErrorCode`]; keep it
    /// matchable instead of burying it in a transport error.
    fn from(error: quinn::ConnectionError) -> Self {
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => SdkError::ClosedByBroker {
                code: ErrorCode::from_close_code(close.error_code.into_inner()),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            other => SdkError::Connection(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_matchable_from_frames_and_closes() {
        let refused = SdkError::from(pb::Error::new(ErrorCode::InvalidCredentials, "nope"));
        assert_eq!(refused.code(), Some(ErrorCode::InvalidCredentials));
        assert!(refused.is_fatal_auth());

        let closed = SdkError::ClosedByBroker {
            code: ErrorCode::from_close_code(12),
            reason: "slow".into(),
        };
        assert_eq!(closed.code(), Some(ErrorCode::SlowConsumer));
        assert!(!closed.is_fatal_auth());
        assert!(closed.to_string().contains("SLOW_CONSUMER"));
        assert_eq!(SdkError::Timeout.code(), None);
    }

    #[test]
    fn rate_limits_say_how_long_to_wait() {
        let mut error = pb::Error::new(ErrorCode::RateLimited, "slow down");
        error.retry_after_ms = 1500;
        let limited = SdkError::from(error);
        assert_eq!(limited.code(), Some(ErrorCode::RateLimited));
        assert_eq!(limited.retry_after(), Some(Duration::from_millis(1500)));
        assert!(!limited.is_fatal_auth());

        let mut other = pb::Error::new(ErrorCode::NotFound, "no");
        other.retry_after_ms = 1500;
        assert_eq!(SdkError::from(other).retry_after(), None);
        assert_eq!(SdkError::Timeout.retry_after(), None);
    }

    #[test]
    fn logouts_and_disabled_accounts_end_the_client() {
        for code in [
            ErrorCode::SessionReplaced,
            ErrorCode::LoggedOut,
            ErrorCode::AccountDisabled,
        ] {
            assert!(SdkError::is_terminal_close(Some(code)), "{code:?}");
        }
        for code in [ErrorCode::SlowConsumer, ErrorCode::ShuttingDown] {
            assert!(!SdkError::is_terminal_close(Some(code)), "{code:?}");
        }
        assert!(!SdkError::is_terminal_close(None));
        let logged_out = SdkError::from(pb::Error::new(ErrorCode::LoggedOut, "bye"));
        assert!(logged_out.is_fatal_auth());
    }
}
