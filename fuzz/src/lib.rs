//! Checks shared by the fuzz targets (and the seed generator in `examples/`).
//!
//! [`check_client_frame`] is what the broker's side of the protocol crate does with a
//! decoded `ClientFrame` before a service sees it: the id rules (`ids::is_*`), the
//! conversation id parser, the lane choice for each Hello cursor, and the re-encoding
//! as a stream frame and as a datagram. Every string anywhere in the frame goes
//! through every id rule, found by walking the protobuf wire encoding, so a new field
//! is covered without touching this file.

use bytes::BytesMut;
use prost::Message;
use quip_protocol::ids::{self, Conversation};
use quip_protocol::{ClientFrame, FrameDecoder, MAX_LANES, client_frame, decode_datagram};

/// How deep [`walk`] follows nested messages; prost itself stops at 100.
const MAX_DEPTH: u32 = 32;

/// Runs the protocol crate's validation over one decoded client frame and checks
/// that it survives re-encoding. Panics (a fuzz failure) when a rule is broken.
pub fn check_client_frame(frame: &ClientFrame) {
    let bytes = frame.encode_to_vec();
    walk(&bytes, 0);

    if let Some(client_frame::Body::Hello(hello)) = &frame.body {
        // What the broker does with the Hello before any service runs.
        let _ = ids::is_device_id(&hello.device_id);
        let lanes = hello.lanes.min(MAX_LANES);
        for cursor in &hello.cursors {
            check_string(&cursor.conv_id);
            for count in [0, 1, lanes, hello.lanes] {
                let lane = quip_protocol::lane_for(&cursor.conv_id, count);
                assert!(lane < count.max(1), "lane {lane} out of {count}");
            }
        }
    }

    // Stream encoding: one frame, consumed whole.
    let mut buf = BytesMut::new();
    quip_protocol::encode_frame(frame, &mut buf);
    let framed = buf.clone().freeze();
    let again = FrameDecoder::new(usize::MAX).decode::<ClientFrame>(&mut buf);
    assert!(
        matches!(&again, Ok(Some(f)) if f == frame),
        "stream re-encoding changed the frame"
    );
    assert!(buf.is_empty(), "stream re-encoding left bytes behind");
    // Datagram encoding: the same bytes, exactly one frame.
    let datagram = decode_datagram::<ClientFrame>(&framed);
    assert!(
        matches!(&datagram, Ok(f) if f == frame),
        "datagram re-encoding changed the frame"
    );
}

/// Every id rule on one string, and the relations between them.
pub fn check_string(s: &str) {
    let user = ids::is_user_id(s);
    let group = ids::is_group_id(s);
    let device = ids::is_device_id(s);
    let client_msg = ids::is_client_msg_id(s);
    assert!(!(user && group), "{s:?} is both a user and a group id");
    if user || group {
        assert!(device, "{s:?} is a prefixed id but not a valid device id");
        assert!(s.len() <= ids::MAX_ID_LEN);
    }
    assert_eq!(device, client_msg);

    match Conversation::parse(s) {
        Some(Conversation::Single { low, high }) => {
            assert!(ids::is_user_id(low) && ids::is_user_id(high) && low < high);
            assert_eq!(ids::single_conv_id(high, low), s);
            let conv = Conversation::parse(s).expect("parsed once");
            assert_eq!(conv.peer_of(low), Some(high));
            assert_eq!(conv.peer_of(high), Some(low));
            assert!(conv.is_single_party(low) && conv.is_single_party(high));
        }
        Some(Conversation::Group { group_id }) => {
            assert!(ids::is_group_id(group_id));
            assert_eq!(ids::group_conv_id(group_id), s);
            let conv = Conversation::parse(s).expect("parsed once");
            assert_eq!(conv.peer_of(group_id), None);
            assert!(!conv.is_single_party(group_id));
        }
        None => {}
    }
    // Lanes for any conversation id, including unparseable ones.
    for lanes in [0, 1, 3, MAX_LANES, u32::MAX] {
        assert!(quip_protocol::lane_for(s, lanes) < lanes.max(1));
    }
}

/// Walks protobuf wire bytes: every length-delimited field that is UTF-8 goes through
/// [`check_string`], and every one that parses as a message is walked in turn. Stops
/// quietly at anything malformed (the bytes came from prost, but nested guesses may
/// not be messages at all).
fn walk(mut bytes: &[u8], depth: u32) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    while !bytes.is_empty() {
        let Some(key) = varint(&mut bytes) else {
            return false;
        };
        if key >> 3 == 0 {
            return false;
        }
        match key & 7 {
            0 => {
                if varint(&mut bytes).is_none() {
                    return false;
                }
            }
            1 => {
                let Some(rest) = bytes.get(8..) else {
                    return false;
                };
                bytes = rest;
            }
            5 => {
                let Some(rest) = bytes.get(4..) else {
                    return false;
                };
                bytes = rest;
            }
            2 => {
                let Some(len) = varint(&mut bytes) else {
                    return false;
                };
                let Ok(len) = usize::try_from(len) else {
                    return false;
                };
                if len > bytes.len() {
                    return false;
                }
                let (field, rest) = bytes.split_at(len);
                bytes = rest;
                if let Ok(text) = std::str::from_utf8(field) {
                    check_string(text);
                }
                walk(field, depth + 1);
            }
            _ => return false,
        }
    }
    true
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    prost::encoding::decode_varint(bytes).ok()
}
