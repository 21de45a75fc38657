//! QUIC datagrams: the broker's typing and presence pushes in, typing notices out.
//!
//! A datagram carries exactly one frame in the stream encoding (varint length prefix,
//! then the protobuf), so it is decoded with the same codec as the streams. Datagrams
//! may be lost, duplicated or reordered; only ephemeral frames travel this way, and
//! anything else (or anything undecodable) is ignored rather than ending the session.

use std::sync::Arc;

use bytes::Bytes;
use quip_protocol::{ServerFrame, decode_datagram, server_frame};

use crate::error::Result;
use crate::shared::Shared;

/// Reads the broker's datagrams until the connection ends (then returns its error,
/// like the other session tasks). Only started when
/// [`ClientOptions::datagrams`](crate::ClientOptions::datagrams) is on.
pub(crate) async fn datagram_loop(
    shared: Arc<Shared>,
    connection: quinn::Connection,
) -> Result<()> {
    loop {
        let datagram = connection.read_datagram().await?;
        match decode(&datagram) {
            Some(ServerFrame {
                body: Some(server_frame::Body::Typing(notice)),
                ..
            }) => shared.push_typing(notice),
            Some(ServerFrame {
                body: Some(server_frame::Body::Presence(presence)),
                ..
            }) => shared.push_presence(presence),
            Some(other) => tracing::debug!(?other, "unexpected frame in a datagram; ignored"),
            None => tracing::debug!(len = datagram.len(), "undecodable datagram; ignored"),
        }
    }
}

/// The one frame a datagram holds; `None` if it holds anything else (a partial frame,
/// trailing bytes, garbage). A datagram is small by nature (about a path MTU), so no
/// frame size limit applies.
fn decode(datagram: &[u8]) -> Option<ServerFrame> {
    decode_datagram::<ServerFrame>(datagram).ok()
}

/// Sends an encoded frame as one datagram if the connection can take it now. `false`
/// means use the control stream: the peer offered no datagrams, the frame is larger
/// than the current maximum, or the connection is going away.
pub(crate) fn try_send(connection: &quinn::Connection, frame: &Bytes) -> bool {
    match connection.max_datagram_size() {
        Some(max) if frame.len() <= max => match connection.send_datagram(frame.clone()) {
            Ok(()) => {
                tracing::trace!(len = frame.len(), "sent as a datagram");
                true
            }
            Err(error) => {
                tracing::debug!(%error, "datagram not sent; using the control stream");
                false
            }
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quip_protocol::{encode_frame_bytes, pb};

    fn typing_frame() -> ServerFrame {
        ServerFrame {
            req_id: 0,
            body: Some(server_frame::Body::Typing(pb::TypingNotice {
                conv_id: "single:user_a:user_b".into(),
                from: "user_a".into(),
                kind: pb::TypingKind::Typing as i32,
                expires_in_ms: 5000,
            })),
        }
    }

    #[test]
    fn a_datagram_is_exactly_one_stream_encoded_frame() {
        let bytes = encode_frame_bytes(&typing_frame());
        assert_eq!(decode(&bytes), Some(typing_frame()));

        // Trailing bytes, a truncated frame, garbage, an empty datagram: ignored.
        let mut two = bytes.to_vec();
        two.extend_from_slice(&bytes);
        assert_eq!(decode(&two), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(&[0xff, 0xff, 0xff]), None);
        assert_eq!(decode(&[]), None);
    }
}
