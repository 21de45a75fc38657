//! Property tests for the decoder on a stream that arrives in pieces, as QUIC stream
//! reads do: frames come out in order, each exactly when its last byte arrives (never
//! early, never late), an oversized frame is refused as soon as its length prefix is
//! complete, and no input, however malformed, makes the decoder panic.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use quip_protocol::codec::put_varint;
use quip_protocol::pb::{self, hello, send_request};
use quip_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME_BYTES, FrameDecoder, FrameError, ServerFrame, client_frame,
    encode_frame,
};

// ---------------------------------------------------------------------------------
// Strategies. Smaller than the ones in roundtrip.rs (which cover every field); here
// what matters is a realistic mix of frame kinds and sizes, including empty frames
// (a default ClientFrame encodes to a single 0x00 prefix byte) and multi-byte prefixes.
// Boxed so the nested value trees stay off the test thread's stack.
// ---------------------------------------------------------------------------------

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        1 => Just(String::new()),
        3 => "[a-z0-9_:]{1,16}",
        2 => vec(any::<char>(), 0..12).prop_map(String::from_iter),
        // Long enough to push the body past 127 and 16383 bytes: 2- and 3-byte prefixes.
        1 => "[a-zé😀]{100,6000}",
    ]
    .boxed()
}

fn client_frame() -> BoxedStrategy<ClientFrame> {
    use client_frame::Body;
    let hello = (
        text(),
        text(),
        any::<u32>(),
        vec((text(), any::<u64>()), 0..4),
    )
        .prop_map(|(token, device_id, lanes, cursors)| {
            Body::Hello(pb::Hello {
                auth: Some(hello::Auth::AccessToken(token)),
                device_id,
                client_version: "0.1.0".into(),
                lanes,
                cursors: cursors
                    .into_iter()
                    .map(|(conv_id, seq)| pb::Cursor { conv_id, seq })
                    .collect(),
            })
        });
    let send = (text(), text(), text()).prop_map(|(to, text, client_msg_id)| {
        Body::Send(pb::SendRequest {
            to,
            kind: pb::MessageKind::Text as i32,
            content: Some(send_request::Content::Text(pb::TextContent {
                text,
                mention_user_ids: Vec::new(),
                mention_all: false,
            })),
            client_msg_id,
        })
    });
    let refresh =
        text().prop_map(|refresh_token| Body::Refresh(pb::RefreshRequest { refresh_token }));
    let history = (text(), any::<u64>(), any::<u32>()).prop_map(|(conv_id, before_seq, limit)| {
        Body::History(pb::HistoryRequest {
            conv_id,
            before_seq,
            after_seq: None,
            limit,
        })
    });
    let conversations = (text(), any::<u32>()).prop_map(|(page_token, limit)| {
        Body::Conversations(pb::ConversationsRequest { page_token, limit })
    });
    let report = vec((text(), any::<u64>(), any::<u64>()), 0..4).prop_map(|reports| {
        Body::Report(pb::ReportCursors {
            reports: reports
                .into_iter()
                .map(|(conv_id, delivered_seq, read_seq)| pb::CursorReport {
                    conv_id,
                    delivered_seq,
                    read_seq,
                })
                .collect(),
        })
    });
    let ping = any::<u64>().prop_map(|client_time_ms| Body::Ping(pb::Ping { client_time_ms }));
    let body = prop_oneof![
        1 => Just(None),
        2 => hello.prop_map(Some),
        4 => send.prop_map(Some),
        1 => refresh.prop_map(Some),
        1 => history.prop_map(Some),
        1 => conversations.prop_map(Some),
        1 => report.prop_map(Some),
        2 => ping.prop_map(Some),
    ];
    (prop_oneof![Just(0u64), any::<u64>()], body)
        .prop_map(|(req_id, body)| ClientFrame { req_id, body })
        .boxed()
}

/// Chunk sizes 1..=256, with single bytes and tiny reads weighted in.
fn chunk_size() -> BoxedStrategy<usize> {
    prop_oneof![
        3 => Just(1usize),
        4 => 1..=8usize,
        3 => 1..=256usize,
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// `frames` encoded back to back, and the offset just past each frame.
fn encode_all(frames: &[ClientFrame]) -> (BytesMut, Vec<usize>) {
    let mut wire = BytesMut::new();
    let mut ends = Vec::with_capacity(frames.len());
    for frame in frames {
        encode_frame(frame, &mut wire);
        ends.push(wire.len());
    }
    (wire, ends)
}

/// What [`feed_in_chunks`] got out of a stream.
struct Fed {
    frames: Vec<ClientFrame>,
    /// The error that ended the stream, and how many bytes had been fed when it came.
    error: Option<(FrameError, usize)>,
}

/// Feeds `wire` to `decoder` in chunks of the given sizes (cycled), calling decode after
/// every chunk until it returns `Ok(None)`. Checks after every chunk that exactly the
/// frames whose last byte has arrived have come out, and that the buffer holds exactly
/// the bytes not yet consumed.
fn feed_in_chunks(
    decoder: FrameDecoder,
    wire: &[u8],
    ends: &[usize],
    chunks: &[usize],
) -> Result<Fed, TestCaseError> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Vec::new();
    let mut sizes = chunks.iter().copied().cycle();
    while fed < wire.len() {
        let size = sizes.next().expect("chunk sizes are never empty");
        prop_assert!(size >= 1);
        let end = (fed + size).min(wire.len());
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        loop {
            match decoder.decode::<ClientFrame>(&mut buf) {
                Ok(Some(frame)) => {
                    prop_assert!(out.len() < ends.len(), "decoded more frames than were sent");
                    prop_assert!(
                        ends[out.len()] <= fed,
                        "frame {} came out after {} bytes but ends at byte {}",
                        out.len(),
                        fed,
                        ends[out.len()]
                    );
                    out.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    return Ok(Fed {
                        frames: out,
                        error: Some((e, fed)),
                    });
                }
            }
        }
        let complete = ends.iter().take_while(|&&e| e <= fed).count();
        prop_assert_eq!(out.len(), complete, "a complete frame was held back");
        let consumed = if complete == 0 { 0 } else { ends[complete - 1] };
        prop_assert_eq!(&buf[..], &wire[consumed..fed]);
    }
    Ok(Fed {
        frames: out,
        error: None,
    })
}

/// Decodes `buf` with `decode` until `Ok(None)` or an error, checking that every frame
/// consumes bytes and that `Ok(None)` leaves the buffer untouched.
fn drain<M, F>(buf: &mut BytesMut, mut decode: F) -> Result<(), TestCaseError>
where
    F: FnMut(&mut BytesMut) -> Result<Option<M>, FrameError>,
{
    loop {
        let before = buf.clone();
        match decode(buf) {
            Ok(Some(_)) => prop_assert!(buf.len() < before.len(), "a frame consumed nothing"),
            Ok(None) => {
                prop_assert_eq!(&buf[..], &before[..], "Ok(None) consumed bytes");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_survive_any_chunking(
        frames in vec(client_frame(), 0..16),
        chunks in vec(chunk_size(), 1..32),
    ) {
        let (wire, ends) = encode_all(&frames);
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let Fed { frames: out, error } = feed_in_chunks(decoder, &wire, &ends, &chunks)?;
        prop_assert_eq!(error, None);
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn frames_survive_one_byte_at_a_time(frames in vec(client_frame(), 1..8)) {
        let (wire, ends) = encode_all(&frames);
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let Fed { frames: out, error } = feed_in_chunks(decoder, &wire, &ends, &[1])?;
        prop_assert_eq!(error, None);
        prop_assert_eq!(out, frames);
    }

    /// The limit is inclusive: a frame of exactly `max_frame_bytes` decodes, one byte
    /// less of limit refuses it.
    #[test]
    fn limit_is_inclusive(frame in client_frame()) {
        let (wire, _) = encode_all(std::slice::from_ref(&frame));
        let len = prost::Message::encoded_len(&frame);
        let mut buf = wire.clone();
        prop_assert_eq!(FrameDecoder::new(len).decode::<ClientFrame>(&mut buf), Ok(Some(frame)));
        if len > 0 {
            let mut buf = wire.clone();
            prop_assert_eq!(
                FrameDecoder::new(len - 1).decode::<ClientFrame>(&mut buf),
                Err(FrameError::TooLarge { len: len as u64, max: len - 1 })
            );
        }
    }

    /// An oversized frame is refused once its prefix is complete: not before (an
    /// incomplete prefix is `Ok(None)`), and without waiting for, or buffering, the
    /// body. Huge announced lengths (up to u64::MAX) must not make it allocate.
    #[test]
    fn oversized_prefix_is_refused_as_soon_as_complete(
        max in prop_oneof![0usize..=4096, Just(1usize << 16), Just(DEFAULT_MAX_FRAME_BYTES)],
        excess in prop_oneof![1..=16u64, any::<u64>()],
        body_start in vec(any::<u8>(), 0..64),
    ) {
        let len = (max as u64).saturating_add(excess.max(1));
        let mut prefix = BytesMut::new();
        put_varint(len, &mut prefix);
        let decoder = FrameDecoder::new(max);
        let too_large = FrameError::TooLarge { len, max };

        let mut buf = BytesMut::new();
        for (i, byte) in prefix.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let result = decoder.decode::<ClientFrame>(&mut buf);
            if i + 1 < prefix.len() {
                prop_assert_eq!(
                    result,
                    Ok(None),
                    "refused after {} of {} prefix bytes",
                    i + 1,
                    prefix.len()
                );
            } else {
                prop_assert_eq!(result, Err(too_large.clone()));
            }
        }
        // Part of the body arriving does not change the verdict, for either direction.
        buf.extend_from_slice(&body_start);
        prop_assert_eq!(decoder.decode::<ServerFrame>(&mut buf), Err(too_large.clone()));
        prop_assert_eq!(decoder.decode_raw(&mut buf), Err(too_large));
    }

    /// Valid frames ahead of an oversized one all come out, in order, and the error
    /// arrives exactly when the oversized frame's prefix is complete.
    #[test]
    fn oversized_frame_after_valid_frames(
        frames in vec(client_frame(), 0..6),
        chunks in vec(chunk_size(), 1..16),
        excess in 1..=1_000_000u64,
    ) {
        let (mut wire, ends) = encode_all(&frames);
        let max = DEFAULT_MAX_FRAME_BYTES;
        let len = max as u64 + excess;
        let prefix_end = wire.len() + prost::length_delimiter_len(len as usize);
        put_varint(len, &mut wire);
        wire.extend_from_slice(&[0xab; 32]);

        let decoder = FrameDecoder::new(max);
        let Fed { frames: out, error } = feed_in_chunks(decoder, &wire, &ends, &chunks)?;
        prop_assert_eq!(out, frames);
        let Some((error, fed)) = error else {
            return Err(TestCaseError::fail("oversized frame was not refused"));
        };
        prop_assert_eq!(error, FrameError::TooLarge { len, max });
        // Refused in the very chunk that completed the prefix: the bytes fed before that
        // chunk did not complete it yet.
        prop_assert!(fed >= prefix_end);
        let mut before_last_chunk = 0;
        for size in chunks.iter().cycle() {
            if before_last_chunk + size >= fed {
                break;
            }
            before_last_chunk += size;
        }
        prop_assert!(
            before_last_chunk < prefix_end,
            "prefix was complete at byte {} but refused only at {}",
            prefix_end,
            fed
        );
    }

    /// Random bytes never panic the decoder, whole or in chunks, as either frame type.
    #[test]
    fn garbage_never_panics(
        bytes in vec(any::<u8>(), 0..1024),
        max in prop_oneof![0usize..64, Just(1usize << 16), Just(DEFAULT_MAX_FRAME_BYTES)],
        chunks in vec(chunk_size(), 1..16),
    ) {
        let decoder = FrameDecoder::new(max);
        drain(&mut BytesMut::from(&bytes[..]), |b| decoder.decode::<ClientFrame>(b))?;
        drain(&mut BytesMut::from(&bytes[..]), |b| decoder.decode::<ServerFrame>(b))?;
        drain(&mut BytesMut::from(&bytes[..]), |b| decoder.decode_raw(b))?;

        let mut buf = BytesMut::new();
        let mut rest = &bytes[..];
        for size in chunks.iter().copied().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            buf.extend_from_slice(chunk);
            let before = buf.clone();
            match decoder.decode::<ClientFrame>(&mut buf) {
                Ok(Some(_)) => prop_assert!(buf.len() < before.len()),
                Ok(None) => prop_assert_eq!(&buf[..], &before[..]),
                Err(_) => break,
            }
        }
    }

    /// Well-framed garbage: valid length prefixes around random bodies. The framing
    /// layer hands back exactly those bodies; decoding them as protobuf may fail with
    /// `Bad`, but never with `TooLarge` and never by panicking.
    #[test]
    fn framed_garbage_never_panics(bodies in vec(vec(any::<u8>(), 0..96), 0..8)) {
        let mut wire = BytesMut::new();
        for body in &bodies {
            put_varint(body.len() as u64, &mut wire);
            wire.extend_from_slice(body);
        }
        let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);

        let mut buf = wire.clone();
        for body in &bodies {
            let raw = decoder.decode_raw(&mut buf)?;
            prop_assert_eq!(raw.as_deref(), Some(&body[..]));
        }
        prop_assert_eq!(decoder.decode_raw(&mut buf)?, None);

        for client in [true, false] {
            let mut buf = wire.clone();
            loop {
                let result = if client {
                    decoder.decode::<ClientFrame>(&mut buf).map(|f| f.is_some())
                } else {
                    decoder.decode::<ServerFrame>(&mut buf).map(|f| f.is_some())
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        prop_assert!(matches!(e, FrameError::Bad(_)), "unexpected {:?}", e);
                        break;
                    }
                }
            }
        }
    }
}
