//! The `Hello` exchange that authenticates a new connection.
//!
//! A refused `Hello` makes the broker send an `Error` frame and close the
//! connection, so every attempt here consumes its connection: a retry (another
//! password, a refresh token) needs a new one.

use std::time::{Duration, Instant};

use quip_protocol::pb::{self, ErrorCode};
use quip_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME_BYTES, client_frame, encode_frame_bytes, server_frame,
};

use crate::error::{Result, SdkError};
use crate::framed::FrameReader;
use crate::transport::Link;

/// An authenticated connection, ready to become a session.
#[derive(Debug)]
pub(crate) struct Established {
    pub(crate) link: Link,
    pub(crate) send: quinn::SendStream,
    /// The control stream, positioned after `HelloOk` (it may hold further bytes).
    pub(crate) reader: FrameReader,
    pub(crate) hello_ok: pb::HelloOk,
    pub(crate) since: Instant,
}

impl Established {
    /// The broker's frame size limit, or the default if it did not announce one.
    pub(crate) fn max_frame_bytes(&self) -> usize {
        match self.hello_ok.max_frame_bytes {
            0 => DEFAULT_MAX_FRAME_BYTES,
            n => n as usize,
        }
    }
}

/// Opens the control stream on `link`, sends `hello`, and waits for `HelloOk`.
pub(crate) async fn handshake(
    link: Link,
    hello: pb::Hello,
    req_id: u64,
    timeout: Duration,
) -> Result<Established> {
    let exchange = async {
        let (mut send, recv) = link.connection.open_bi().await?;
        let frame = ClientFrame {
            req_id,
            body: Some(client_frame::Body::Hello(hello)),
        };
        send.write_all(&encode_frame_bytes(&frame)).await?;
        let mut reader = FrameReader::new(recv, DEFAULT_MAX_FRAME_BYTES);
        loop {
            let frame = reader.next().await?.ok_or(SdkError::UnexpectedResponse(
                "control stream ended before HelloOk",
            ))?;
            match frame.body {
                Some(server_frame::Body::HelloOk(hello_ok)) => {
                    return Ok((send, reader, hello_ok));
                }
                Some(server_frame::Body::Error(error)) => return Err(SdkError::Server(error)),
                other => {
                    tracing::warn!(?other, "ignoring frame before HelloOk");
                }
            }
        }
    };
    // Bound to a local so the exchange's borrow of `link` ends before `link` moves.
    let outcome = tokio::time::timeout(timeout, exchange).await;
    match outcome {
        Ok(Ok((send, reader, hello_ok))) => {
            let mut established = Established {
                link,
                send,
                reader,
                hello_ok,
                since: Instant::now(),
            };
            let max = established.max_frame_bytes();
            established.reader.set_max_frame_bytes(max);
            Ok(established)
        }
        Ok(Err(error)) => Err(refusal(error, &link)),
        Err(_) => {
            link.connection
                .close(0u32.into(), b"no answer to Hello in time");
            Err(SdkError::Timeout)
        }
    }
}

/// A failed `Hello` as the caller should see it. The broker sends `Error` and then
/// closes with the same code; if the close overtook the frame, rebuild the error from
/// the close code so callers can match the [`ErrorCode`] either way.
fn refusal(error: SdkError, link: &Link) -> SdkError {
    if matches!(error, SdkError::Server(_)) {
        return error;
    }
    if let Some(quinn::ConnectionError::ApplicationClosed(close)) = link.connection.close_reason() {
        if let Some(code) = ErrorCode::from_close_code(close.error_code.into_inner()) {
            if code != ErrorCode::Unspecified {
                return SdkError::Server(pb::Error::new(
                    code,
                    String::from_utf8_lossy(&close.reason).into_owned(),
                ));
            }
        }
    }
    error
}
