//! Inputs found by fuzzing (`fuzz/`, see fuzz/README.md) and the edge cases around
//! them, kept as ordinary tests so CI replays them without a nightly toolchain. Each
//! feeds the input the way the broker, the bridge or the SDK would and asserts a clean
//! answer: no panic, and an error where the input is bad.

use bytes::BytesMut;
use quip_protocol::json::{
    call_event_to_json, call_request_from_json, edit_request_from_json, recall_request_from_json,
    send_request_from_json,
};
use quip_protocol::order::{Offer, Reorderer};
use quip_protocol::{
    ClientFrame, FrameDecoder, FrameError, decode_datagram, encode_frame_bytes, pb,
};
use serde_json::{Map, Value};

/// `browser_json` (fuzz/artifacts/browser_json/crash-a32c5902…): an ICE candidate
/// object holding a 118-digit number. The mapping never panicked; the fuzz target's
/// exact round-trip assertion failed because serde_json's default float parser may
/// read such a number back one ulp off. The candidate is relayed as JSON text and
/// parsed again for the peer: it must still parse, to (almost) the same number.
#[test]
fn ice_candidate_with_a_huge_number_is_relayed() {
    let input = concat!(
        r#"{"type":60,"action":"ice","call_id":"call_1","candidate":{"canype":60,"#,
        r#""action":"ice","call_id":99999977777777777777777777777777777777777777777777777777777"#,
        r#"77777777777777777777777777777777777777777777777777777777775"#,
        "\n",
        r#","candididatex":1}}"#,
    );
    let frame = object(input);
    every_parser(&frame);
    let request = call_request_from_json(&frame).expect("a valid ICE frame");
    assert_eq!(request.action, pb::CallAction::Ice as i32);
    let event = pb::CallEvent {
        call_id: request.call_id.clone(),
        action: request.action,
        candidate: request.candidate.clone(),
        ..Default::default()
    };
    let relayed = call_event_to_json(&event);
    let number = relayed["candidate"]["call_id"]
        .as_f64()
        .expect("the number survives as a number");
    let sent = 9.999_997_777_777_777e117_f64;
    assert!((number - sent).abs() <= 4.0 * f64::EPSILON * sent);
    assert_eq!(relayed["candidate"]["candididatex"], 1);
    // And the text the browser gets parses again.
    let text = serde_json::to_string(&relayed).unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_ok());
}

/// Browser frames of every odd shape get an error from each parser, never a panic.
#[test]
fn odd_browser_frames_are_refused_cleanly() {
    for input in [
        r#"{}"#,
        r#"{"type":null}"#,
        r#"{"type":1.5,"to":"user_b","message_id":"m","content":"x"}"#,
        r#"{"type":-1,"to":"user_b","message_id":"m","content":"x"}"#,
        r#"{"type":9223372036854775807,"to":"user_b","message_id":"m"}"#,
        r#"{"type":4,"to":"user_b","message_id":"m","content":{"file_size":-1,"width":1e300,"height":18446744073709551615}}"#,
        r#"{"type":8,"to":"group_g","message_id":"m","content":[[[[[[[[[]]]]]]]]]}"#,
        r#"{"type":35,"conversation_id":"c","seq":-1}"#,
        r#"{"type":35,"conversation_id":"c","seq":18446744073709551616}"#,
        r#"{"type":36,"conversation_id":"c","seq":1,"content":{"text":7}}"#,
        r#"{"type":60,"action":"","media":"video"}"#,
        r#"{"type":60,"action":"ice","candidate":"\u0000\ud83d\ude00"}"#,
    ] {
        every_parser(&object(input));
    }
}

/// The SDK's in-order release with a cursor at `u64::MAX` (a `ResumeFrom` from a
/// broker, or a cursor an application persisted): `set_cursor` computed `seq + 1`,
/// and releasing computed `cursor + 1`, both overflowing (a panic in debug builds).
#[test]
fn reorderer_cursor_at_the_last_seq() {
    let mut r = Reorderer::new(8);
    assert!(matches!(r.offer("c", 5, 5u64), Offer::Buffered { .. }));
    r.set_cursor("c", u64::MAX);
    assert_eq!(r.cursor("c"), u64::MAX);
    assert_eq!(
        r.pending_len("c"),
        0,
        "nothing is pending above the last seq"
    );
    assert!(r.release_ready("c").is_empty());
    assert_eq!(r.missing("c"), None);
    assert_eq!(r.offer("c", u64::MAX, 0), Offer::Duplicate);
    assert_eq!(r.offer("c", 1, 0), Offer::Duplicate);

    // One below the end: the last seq is still released.
    let mut r = Reorderer::new(8);
    r.set_cursor("d", u64::MAX - 1);
    assert_eq!(r.offer("d", u64::MAX, 7u64), Offer::Released(vec![7]));
    assert!(r.release_ready("d").is_empty());
}

/// Datagrams and stream frames at the edges of the length prefix: clean errors.
#[test]
fn malformed_datagrams_and_prefixes_are_clean_errors() {
    let bad = |bytes: &[u8]| {
        assert!(
            matches!(
                decode_datagram::<ClientFrame>(bytes),
                Err(FrameError::Bad(_))
            ),
            "{bytes:?}"
        );
    };
    bad(&[]);
    bad(&[0x80]);
    bad(&[0xff; 11]);
    bad(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    bad(&[2, 0x08]);
    bad(&[1, 0x08, 0x01]);
    bad(&[2, 0x0a, 0x05]);

    // The largest prefix there is: refused before any body arrives.
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
    assert!(matches!(
        FrameDecoder::new(1 << 20).decode::<ClientFrame>(&mut buf),
        Err(FrameError::TooLarge { .. })
    ));

    // A whole frame is a valid datagram, and one byte more or less is not.
    let frame = ClientFrame {
        req_id: 7,
        body: Some(pb::client_frame::Body::Ping(pb::Ping { client_time_ms: 1 })),
    };
    let bytes = encode_frame_bytes(&frame);
    assert_eq!(decode_datagram::<ClientFrame>(&bytes), Ok(frame));
    bad(&bytes[..bytes.len() - 1]);
    let mut longer = bytes.to_vec();
    longer.push(0);
    bad(&longer);
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        other => panic!("not a JSON object: {other:?}"),
    }
}

/// Runs every browser-frame parser on `frame` (whatever its type, as the fuzz target
/// does); each may refuse it but none may panic.
fn every_parser(frame: &Map<String, Value>) {
    let _ = send_request_from_json(frame);
    let _ = recall_request_from_json(frame);
    let _ = edit_request_from_json(frame);
    if let Ok(call) = call_request_from_json(frame) {
        let event = pb::CallEvent {
            candidate: call.candidate,
            sdp: call.sdp,
            ..Default::default()
        };
        let _ = call_event_to_json(&event);
    }
}
