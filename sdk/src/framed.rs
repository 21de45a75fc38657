//! Frames over QUIC streams: reading `ServerFrame`s from a receive stream, writing
//! pre-encoded `ClientFrame`s to the control stream, and reading the one frame a
//! file transfer stream starts with.

use bytes::{Bytes, BytesMut};
use prost::Message;
use quip_protocol::{FrameDecoder, FrameError, ServerFrame};
use tokio::sync::mpsc;

use crate::error::{Result, SdkError};

/// Largest chunk taken from quinn per read.
const READ_CHUNK: usize = 64 * 1024;

/// Frames written to the socket in one go at most; batching keeps a burst of
/// requests from costing one stream write each.
const WRITE_BATCH: usize = 64;

/// Reads length-delimited `ServerFrame`s from one stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream, max_frame_bytes: usize) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame_bytes),
        }
    }

    /// Applies the broker's announced limit (from `HelloOk`).
    pub(crate) fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.decoder = FrameDecoder::new(max_frame_bytes);
    }

    /// The next frame; `Ok(None)` when the broker finished the stream cleanly at a
    /// frame boundary.
    pub(crate) async fn next(&mut self) -> Result<Option<ServerFrame>> {
        loop {
            if let Some(frame) = self.decoder.decode::<ServerFrame>(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(SdkError::Frame(FrameError::Bad(
                        "stream ended inside a frame".into(),
                    )));
                }
            }
        }
    }
}

/// Reads one frame of type `M` from `recv`, buffering in `buf`: bytes that follow
/// the frame (a download's data) stay in `buf`. `Ok(None)` when the stream ended
/// cleanly before any byte of a frame.
pub(crate) async fn read_one<M: Message + Default>(
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
    decoder: FrameDecoder,
) -> Result<Option<M>> {
    loop {
        if let Some(message) = decoder.decode::<M>(buf)? {
            return Ok(Some(message));
        }
        match recv.read_chunk(READ_CHUNK, true).await? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None if buf.is_empty() => return Ok(None),
            None => {
                return Err(SdkError::Frame(FrameError::Bad(
                    "stream ended inside a frame".into(),
                )));
            }
        }
    }
}

/// Writes every frame from `frames` to the control stream until the channel closes
/// (then finishes the stream) or the stream fails.
pub(crate) async fn write_loop(
    mut send: quinn::SendStream,
    mut frames: mpsc::Receiver<Bytes>,
) -> Result<()> {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = frames.recv().await {
        batch.push(first);
        while batch.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        send.write_all_chunks(&mut batch).await?;
        batch.clear();
    }
    // Nobody writes any more: tell the broker cleanly.
    let _ = send.finish();
    Ok(())
}
