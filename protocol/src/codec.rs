//! Length-delimited frames: a protobuf varint length, then that many bytes of one
//! protobuf message.
//!
//! The decoder works on a growing buffer: call [`FrameDecoder::decode`] after every
//! read. `Ok(None)` means "incomplete, read more" and is not an error.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Why a frame could not be decoded. Both variants are fatal for the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    /// The length prefix is not a valid varint, or the body is not valid protobuf.
    #[error("undecodable frame: {0}")]
    Bad(String),
}

impl FrameError {
    /// The stable wire code for this error.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            FrameError::TooLarge { .. } => crate::ErrorCode::FrameTooLarge,
            FrameError::Bad(_) => crate::ErrorCode::BadFrame,
        }
    }
}

/// Appends `message` as one frame to `buf`.
pub fn encode_frame<M: Message>(message: &M, buf: &mut BytesMut) {
    let len = message.encoded_len();
    buf.reserve(len + prost::length_delimiter_len(len));
    // Both calls only fail when the buffer lacks capacity, which was just reserved.
    prost::encoding::encode_varint(len as u64, buf);
    message.encode(buf).expect("buffer capacity reserved above");
}

/// Encodes `message` as one frame into its own buffer, ready to be shared between
/// many sessions by cloning the `Bytes` handle (encode once, fan out many).
pub fn encode_frame_bytes<M: Message>(message: &M) -> Bytes {
    let mut buf = BytesMut::new();
    encode_frame(message, &mut buf);
    buf.freeze()
}

/// Splits a byte stream into frames, enforcing a maximum frame size.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Returns the next complete frame's body, removing it (and its prefix) from `buf`,
    /// or `Ok(None)` when `buf` does not yet hold a whole frame. The size limit is
    /// checked as soon as the prefix is readable, before the body arrives, so an
    /// oversized frame is refused without buffering it.
    pub fn decode_raw(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some((len, prefix_len)) = peek_varint(buf)? else {
            return Ok(None);
        };
        if len > self.max_frame_bytes as u64 {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let len = len as usize;
        if buf.len() < prefix_len + len {
            buf.reserve(prefix_len + len - buf.len());
            return Ok(None);
        }
        buf.advance(prefix_len);
        Ok(Some(buf.split_to(len).freeze()))
    }

    /// Like [`decode_raw`](Self::decode_raw), then decodes the body as `M`.
    pub fn decode<M: Message + Default>(
        &self,
        buf: &mut BytesMut,
    ) -> Result<Option<M>, FrameError> {
        match self.decode_raw(buf)? {
            None => Ok(None),
            Some(body) => M::decode(body)
                .map(Some)
                .map_err(|e| FrameError::Bad(e.to_string())),
        }
    }
}

/// Decodes a QUIC datagram, which holds exactly one frame in the stream encoding.
/// Anything else (a partial frame, trailing bytes, bad protobuf) is `Bad`.
pub fn decode_datagram<M: Message + Default>(datagram: &[u8]) -> Result<M, FrameError> {
    let Some((len, prefix_len)) = peek_varint(datagram)? else {
        return Err(FrameError::Bad(
            "datagram ends inside the length prefix".into(),
        ));
    };
    if datagram.len() - prefix_len != len as usize {
        return Err(FrameError::Bad(
            "a datagram must hold exactly one whole frame".into(),
        ));
    }
    M::decode(&datagram[prefix_len..]).map_err(|e| FrameError::Bad(e.to_string()))
}

/// Reads a varint at the start of `buf` without consuming it: `Ok(None)` if more bytes
/// are needed, an error if it runs past 10 bytes or overflows 64 bits.
fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate() {
        if i == 9 && *byte > 1 {
            return Err(FrameError::Bad("length prefix overflows 64 bits".into()));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Ok(None)
}

/// Appends a varint to `buf`; exposed for tests and tools that build raw frames.
pub fn put_varint(value: u64, buf: &mut impl BufMut) {
    prost::encoding::encode_varint(value, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_prefix_and_body_are_not_errors() {
        let decoder = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0x85u8][..]);
        assert_eq!(decoder.decode_raw(&mut buf), Ok(None));
        let mut buf = BytesMut::from(&[3u8, 1, 2][..]);
        assert_eq!(decoder.decode_raw(&mut buf), Ok(None));
        buf.extend_from_slice(&[3]);
        assert_eq!(
            decoder.decode_raw(&mut buf).unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_body() {
        let decoder = FrameDecoder::new(16);
        let mut buf = BytesMut::new();
        put_varint(17, &mut buf);
        assert_eq!(
            decoder.decode_raw(&mut buf),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
    }

    #[test]
    fn overlong_varint_is_bad() {
        let decoder = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0xffu8; 11][..]);
        assert!(matches!(
            decoder.decode_raw(&mut buf),
            Err(FrameError::Bad(_))
        ));
    }
}
