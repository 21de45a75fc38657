//! File transfers over QUIC: one bidirectional stream each, opened by the client
//! after its control stream, so a large upload never delays chat.
//!
//! The client writes one `StreamRequest` frame, then (upload) the raw bytes and
//! finishes; the broker answers one `StreamResponse` frame, then (download) the raw
//! bytes, and finishes. Bytes flow in chunks between the stream and the file service:
//! QUIC flow control is the backpressure, and no file is held in memory.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use quip_protocol::{ErrorCode, FrameDecoder, encode_frame_bytes, pb};

use crate::context::BrokerContext;
use crate::limits::ConnectionLimiter;
use crate::service::ServiceError;

/// Largest request frame (the request is small: a name and a few numbers).
const MAX_REQUEST_BYTES: usize = 4096;
/// Bytes read from the stream at a time.
const CHUNK: usize = 64 * 1024;

/// Serves one transfer stream of `user_id`'s connection until it ends.
pub(crate) async fn serve(
    ctx: Arc<BrokerContext>,
    user_id: String,
    limiter: Option<Arc<ConnectionLimiter>>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // A transfer is a request like any other of the connection's.
    if let Some(Err(retry)) = limiter.as_ref().map(|limiter| limiter.request()) {
        respond_error(&mut send, &ServiceError::rate_limited(retry)).await;
        let _ = recv.stop(ErrorCode::RateLimited.close_code().into());
        return;
    }
    let (request, leftover) = match read_request(&mut recv).await {
        Ok(request) => request,
        Err(error) => {
            respond_error(&mut send, &error).await;
            let _ = recv.stop(error.code().close_code().into());
            return;
        }
    };
    match request.request {
        Some(pb::stream_request::Request::Upload(upload)) => {
            let body = upload_body(recv, leftover);
            let result = ctx.files.upload(&user_id, upload, body).await;
            let response = match result {
                Ok(info) => pb::stream_response::Response::Uploaded(info),
                Err(error) => pb::stream_response::Response::Error(error.to_pb()),
            };
            write_response(&mut send, response).await;
        }
        Some(pb::stream_request::Request::Download(download)) => {
            let _ = recv.stop(0u32.into());
            match ctx.files.download(&user_id, &download).await {
                Ok((header, mut bytes)) => {
                    let frame = response_frame(pb::stream_response::Response::Download(header));
                    if send.write_all(&frame).await.is_err() {
                        return;
                    }
                    while let Some(chunk) = bytes.next().await {
                        let sent = match chunk {
                            Ok(chunk) => send.write_chunk(chunk).await.is_ok(),
                            Err(error) => {
                                tracing::warn!(%error, "reading a stored file failed");
                                false
                            }
                        };
                        if !sent {
                            // The client learns it from the reset (and the short count).
                            let _ = send.reset(ErrorCode::Internal.close_code().into());
                            return;
                        }
                    }
                    let _ = send.finish();
                }
                Err(error) => respond_error(&mut send, &error).await,
            }
        }
        None => {
            let error = ServiceError::invalid("the stream request is empty");
            respond_error(&mut send, &error).await;
        }
    }
}

/// Reads the request frame; returns it with the bytes that came after it (the
/// upload's first bytes).
async fn read_request(
    recv: &mut quinn::RecvStream,
) -> Result<(pb::StreamRequest, Bytes), ServiceError> {
    let decoder = FrameDecoder::new(MAX_REQUEST_BYTES);
    let mut buf = BytesMut::new();
    loop {
        match decoder.decode::<pb::StreamRequest>(&mut buf) {
            Ok(Some(request)) => return Ok((request, buf.freeze())),
            Ok(None) => {}
            Err(error) => {
                return Err(ServiceError::new(error.code(), error.to_string()));
            }
        }
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(ServiceError::new(
                    ErrorCode::BadFrame,
                    "the stream ended before its request",
                ));
            }
            Err(error) => {
                return Err(ServiceError::new(
                    ErrorCode::BadFrame,
                    format!("the stream failed: {error}"),
                ));
            }
        }
    }
}

/// The upload's bytes: what came with the request, then the rest of the stream. A
/// stream the client resets is an error, so the file service stores nothing.
fn upload_body(recv: quinn::RecvStream, first: Bytes) -> crate::service::files::ByteStream {
    let first = (!first.is_empty()).then_some(first);
    Box::pin(futures_util::stream::unfold(
        (recv, first, false),
        |(mut recv, first, done)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (recv, None, false)));
            }
            if done {
                return None;
            }
            match recv.read_chunk(CHUNK, true).await {
                Ok(Some(chunk)) => Some((Ok(chunk.bytes), (recv, None, false))),
                Ok(None) => None,
                Err(error) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        error.to_string(),
                    )),
                    (recv, None, true),
                )),
            }
        },
    ))
}

fn response_frame(response: pb::stream_response::Response) -> Bytes {
    encode_frame_bytes(&pb::StreamResponse {
        response: Some(response),
    })
}

async fn write_response(send: &mut quinn::SendStream, response: pb::stream_response::Response) {
    if send.write_all(&response_frame(response)).await.is_ok() {
        let _ = send.finish();
    }
}

async fn respond_error(send: &mut quinn::SendStream, error: &ServiceError) {
    write_response(send, pb::stream_response::Response::Error(error.to_pb())).await;
}
