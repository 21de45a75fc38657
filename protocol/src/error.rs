//! Stable error codes (`quip.v1.ErrorCode`) and the [`pb::Error`](crate::pb::Error)
//! frame built from them.
//!
//! The numeric values are the contract: they appear in `Error` frames, as QUIC
//! application close codes, and as the `code` field of the browser JSON API.

pub use crate::pb::ErrorCode;

impl ErrorCode {
    /// The QUIC application error code used when the broker closes a connection
    /// because of this error.
    pub fn close_code(self) -> u32 {
        self as u32
    }

    /// Maps a QUIC application close code back to an error code.
    pub fn from_close_code(code: u64) -> Option<ErrorCode> {
        i32::try_from(code)
            .ok()
            .and_then(|c| ErrorCode::try_from(c).ok())
    }

    /// The code's stable SCREAMING_CASE name, e.g. `"FRAME_TOO_LARGE"`.
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }
}

impl crate::pb::Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code as i32,
            message: message.into(),
            retry_after_ms: 0,
        }
    }

    /// The code, with unknown values (from a newer peer) read as unspecified.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::try_from(self.code).unwrap_or(ErrorCode::Unspecified)
    }
}

impl std::fmt::Display for crate::pb::Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_code().name(), self.message)
    }
}

impl std::error::Error for crate::pb::Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip() {
        for code in [
            ErrorCode::BadFrame,
            ErrorCode::SlowConsumer,
            ErrorCode::Unsupported,
        ] {
            assert_eq!(
                ErrorCode::from_close_code(code.close_code().into()),
                Some(code)
            );
        }
        assert_eq!(ErrorCode::FrameTooLarge.name(), "FRAME_TOO_LARGE");
    }
}
