//! Frames over quinn streams: a reader that buffers until a whole frame is in, and a
//! writer that coalesces several frames into one stream write.

use bytes::BytesMut;
use prost::Message;
use quip_protocol::{FrameDecoder, FrameError, encode_frame};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error(transparent)]
    Stream(#[from] quinn::ReadError),
}

/// Reads length-delimited frames from a receive stream.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

/// Most bytes taken from the stream per read.
const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    pub fn new(recv: quinn::RecvStream, max_frame_bytes: usize) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame_bytes),
        }
    }

    /// The next frame, or `None` when the peer finished the stream between frames.
    /// Cancel-safe: bytes already read stay buffered in `self`.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(ReadError::Truncated),
            }
        }
    }
}

/// Writes frames to a send stream; `push` buffers, `flush` writes everything buffered
/// in one call.
#[derive(Debug)]
pub struct FrameWriter {
    send: quinn::SendStream,
    buf: BytesMut,
}

impl FrameWriter {
    pub fn new(send: quinn::SendStream) -> Self {
        Self {
            send,
            buf: BytesMut::new(),
        }
    }

    pub fn push<M: Message>(&mut self, frame: &M) {
        encode_frame(frame, &mut self.buf);
    }

    /// Queues a frame that is already encoded (length prefix included).
    pub fn push_encoded(&mut self, frame: &[u8]) {
        self.buf.extend_from_slice(frame);
    }

    pub async fn flush(&mut self) -> Result<(), quinn::WriteError> {
        if !self.buf.is_empty() {
            let bytes = self.buf.split().freeze();
            self.send.write_all(&bytes).await?;
        }
        Ok(())
    }

    pub async fn send<M: Message>(&mut self, frame: &M) -> Result<(), quinn::WriteError> {
        self.push(frame);
        self.flush().await
    }

    /// Finishes the stream and waits (bounded) for the peer to acknowledge it, so a
    /// final error frame is not lost to the connection close that follows.
    pub async fn finish_and_wait(&mut self, wait: std::time::Duration) {
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(wait, self.send.stopped()).await;
        }
    }
}
