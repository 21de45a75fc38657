//! Feeds arbitrary bytes to the browser JSON mapping as the WebSocket bridge does with
//! each text message: parse one JSON object, then turn it into a request with every
//! `*_from_json` function of `quip_protocol::json` (whatever its `type`, so each
//! parser sees every shape). None may panic. Every request they accept must be a
//! valid protobuf `ClientFrame` body that passes the protocol crate's checks
//! (`quip_protocol_fuzz::check_client_frame`), and what the broker relays back from
//! it (a call's SDP and ICE candidate in a `CallEvent`, a sent message as stored, an
//! error echoing the client's `message_id`) must render to JSON that parses again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quip_protocol::json::{
    call_event_to_json, call_request_from_json, edit_request_from_json, error_to_json,
    message_to_json, recall_request_from_json, send_request_from_json,
};
use quip_protocol::{ClientFrame, ErrorCode, client_frame::Body, pb};
use quip_protocol_fuzz::check_client_frame;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let message_id = frame.get("message_id").and_then(Value::as_str);
    rendered(&error_to_json(
        &pb::Error::new(ErrorCode::InvalidArgument, text),
        message_id,
    ));

    if let Ok(send) = send_request_from_json(&frame) {
        let stored = pb::Message {
            to: send.to.clone(),
            kind: send.kind,
            client_msg_id: send.client_msg_id.clone(),
            content: send.content.clone().map(|content| match content {
                pb::send_request::Content::Text(text) => pb::message::Content::Text(text),
                pb::send_request::Content::File(file) => pb::message::Content::File(file),
                pb::send_request::Content::Custom(custom) => pb::message::Content::Custom(custom),
            }),
            ..Default::default()
        };
        rendered(&message_to_json(&stored));
        request(Body::Send(send));
    }
    if let Ok(recall) = recall_request_from_json(&frame) {
        request(Body::Recall(recall));
    }
    if let Ok(edit) = edit_request_from_json(&frame) {
        request(Body::Edit(edit));
    }
    if let Ok(call) = call_request_from_json(&frame) {
        let event = pb::CallEvent {
            call_id: call.call_id.clone(),
            action: call.action,
            media: call.media,
            sdp: call.sdp.clone(),
            candidate: call.candidate.clone(),
            ..Default::default()
        };
        rendered(&call_event_to_json(&event));
        request(Body::Call(call));
    }
});

fn request(body: Body) {
    check_client_frame(&ClientFrame {
        req_id: 1,
        body: Some(body),
    });
}

/// Rendered JSON must serialize and parse back to the same value. Floats may come
/// back one ulp off: serde_json's default float parser is not exact (its
/// `float_roundtrip` feature is), which is harmless for what the browser gets.
fn rendered(value: &Value) {
    let text = serde_json::to_string(value).expect("a Value always serializes");
    let again: Value = serde_json::from_str(&text).expect("rendered JSON parses");
    assert!(
        same(&again, value),
        "rendered JSON changed on a round trip: {value} became {again}"
    );
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same(x, y)))
        }
        _ => a == b,
    }
}
