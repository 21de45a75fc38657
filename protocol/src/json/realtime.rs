//! Browser JSON for the realtime extras: presence (34), receipts (31, 32), recall
//! (35), edit (36) and call signalling (60, 61). Enum values travel as lowercase
//! names ("invite", "video", "missed"), which a browser can switch on without a table
//! of numbers.

use serde_json::{Map, Value, json};

use super::{JsonError, err, text_content, types};
use crate::pb;

fn str_field<'a>(frame: &'a Map<String, Value>, key: &str) -> &'a str {
    frame.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn conversation_and_seq(frame: &Map<String, Value>) -> Result<(String, u64), JsonError> {
    let conv_id = str_field(frame, "conversation_id");
    if conv_id.is_empty() {
        return Err(err("missing conversation_id"));
    }
    let seq = frame
        .get("seq")
        .and_then(Value::as_u64)
        .filter(|seq| *seq > 0)
        .ok_or_else(|| err("seq must be a positive integer"))?;
    Ok((conv_id.to_owned(), seq))
}

/// The dedup key of a recall or edit frame: `client_msg_id`, else `message_id`, else
/// empty (the broker picks one).
fn client_msg_id(frame: &Map<String, Value>) -> String {
    match str_field(frame, "client_msg_id") {
        "" => str_field(frame, "message_id").to_owned(),
        id => id.to_owned(),
    }
}

/// `{type: 35, conversation_id, seq, message_id?}`.
pub fn recall_request_from_json(
    frame: &Map<String, Value>,
) -> Result<pb::RecallRequest, JsonError> {
    let (conv_id, seq) = conversation_and_seq(frame)?;
    Ok(pb::RecallRequest {
        conv_id,
        seq,
        client_msg_id: client_msg_id(frame),
    })
}

/// `{type: 36, conversation_id, seq, content: {text, at_user_ids?, at_all?}, message_id?}`
/// (`content` may also be the text itself).
pub fn edit_request_from_json(frame: &Map<String, Value>) -> Result<pb::EditRequest, JsonError> {
    let (conv_id, seq) = conversation_and_seq(frame)?;
    let content = frame.get("content").cloned().unwrap_or(Value::Null);
    let text = match &content {
        Value::String(text) => text.clone(),
        Value::Object(map) => map
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| err("content.text is required"))?
            .to_owned(),
        _ => return Err(err("content must be an object with text")),
    };
    Ok(pb::EditRequest {
        conv_id,
        seq,
        text: Some(text_content(text, &content)),
        client_msg_id: client_msg_id(frame),
    })
}

fn action_name(action: pb::CallAction) -> &'static str {
    use pb::CallAction as A;
    match action {
        A::Unspecified => "",
        A::Invite => "invite",
        A::Ringing => "ringing",
        A::Accept => "accept",
        A::Reject => "reject",
        A::Busy => "busy",
        A::Cancel => "cancel",
        A::Offer => "offer",
        A::Answer => "answer",
        A::Ice => "ice",
        A::Hangup => "hangup",
        A::Ended => "ended",
        A::AnsweredElsewhere => "answered_elsewhere",
    }
}

fn action_from_name(name: &str) -> Option<pb::CallAction> {
    use pb::CallAction as A;
    [
        A::Invite,
        A::Ringing,
        A::Accept,
        A::Reject,
        A::Busy,
        A::Cancel,
        A::Offer,
        A::Answer,
        A::Ice,
        A::Hangup,
    ]
    .into_iter()
    .find(|action| action_name(*action) == name)
}

fn media_name(media: i32) -> &'static str {
    match pb::CallMedia::try_from(media) {
        Ok(pb::CallMedia::Audio) => "audio",
        Ok(pb::CallMedia::Video) => "video",
        _ => "",
    }
}

fn reason_name(reason: i32) -> &'static str {
    use pb::CallEndReason as R;
    match R::try_from(reason) {
        Ok(R::Completed) => "completed",
        Ok(R::Missed) => "missed",
        Ok(R::Rejected) => "rejected",
        Ok(R::CalleeBusy) => "busy",
        Ok(R::Cancelled) => "cancelled",
        Ok(R::Disconnected) => "disconnected",
        Ok(R::Unspecified) | Err(_) => "",
    }
}

/// `{type: 60, action, call_id?, to?, media?, sdp?, candidate?, message_id?}`. The
/// candidate may be an object (an RTCIceCandidateInit) or its JSON text.
pub fn call_request_from_json(frame: &Map<String, Value>) -> Result<pb::CallRequest, JsonError> {
    let action_text = str_field(frame, "action");
    let action = action_from_name(action_text)
        .ok_or_else(|| err(format!("unknown call action {action_text:?}")))?;
    let media = match str_field(frame, "media") {
        "audio" | "" => pb::CallMedia::Audio,
        "video" => pb::CallMedia::Video,
        other => return Err(err(format!("media must be audio or video, not {other:?}"))),
    };
    let candidate = match frame.get("candidate") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    Ok(pb::CallRequest {
        call_id: str_field(frame, "call_id").to_owned(),
        action: action as i32,
        to: str_field(frame, "to").to_owned(),
        media: media as i32,
        sdp: str_field(frame, "sdp").to_owned(),
        candidate,
    })
}

fn ice_servers_to_json(servers: &[pb::IceServer]) -> Value {
    servers
        .iter()
        .map(|server| {
            let mut entry = json!({ "urls": server.urls });
            if !server.username.is_empty() {
                entry["username"] = json!(server.username);
                entry["credential"] = json!(server.credential);
            }
            entry
        })
        .collect()
}

/// A call event pushed to the browser (type 60). `ice_servers` is in the shape
/// `RTCPeerConnection` takes.
pub fn call_event_to_json(event: &pb::CallEvent) -> Value {
    let action = pb::CallAction::try_from(event.action).unwrap_or(pb::CallAction::Unspecified);
    let candidate = if event.candidate.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&event.candidate).unwrap_or_else(|_| json!(event.candidate))
    };
    json!({
        "type": types::CALL,
        "action": action_name(action),
        "call_id": event.call_id,
        "from": event.from,
        "from_device": event.from_device,
        "peer": event.peer,
        "media": media_name(event.media),
        "sdp": event.sdp,
        "candidate": candidate,
        "reason": reason_name(event.reason),
        "duration_ms": event.duration_ms,
        "ice_servers": ice_servers_to_json(&event.ice_servers),
    })
}

/// The answer to a browser call frame (type 61).
pub fn call_ok_to_json(message_id: &str, ok: &pb::CallOk) -> Value {
    json!({
        "type": types::CALL_OK,
        "message_id": message_id,
        "call_id": ok.call_id,
        "ice_servers": ice_servers_to_json(&ok.ice_servers),
    })
}

/// A call's outcome, inside a SYSTEM message's content (`content.call`).
pub fn call_summary_to_json(summary: &pb::CallSummary) -> Value {
    json!({
        "call_id": summary.call_id,
        "media": media_name(summary.media),
        "caller": summary.caller,
        "callee": summary.callee,
        "reason": reason_name(summary.reason),
        "duration_ms": summary.duration_ms,
    })
}

/// A presence change (type 34).
pub fn presence_to_json(presence: &pb::Presence) -> Value {
    json!({
        "type": types::PRESENCE,
        "user_id": presence.user_id,
        "online": presence.online,
        "last_seen": presence.last_seen_ms,
        "devices": presence.devices,
        "version": presence.version,
    })
}

/// A receipt as browser frames: a read receipt (31) and/or a delivered receipt (32),
/// each `{type, conversation_id, user_id, seq}`.
pub fn receipt_to_json(receipt: &pb::Receipt) -> Vec<Value> {
    let mut frames = Vec::new();
    if receipt.read_seq > 0 {
        frames.push(json!({
            "type": types::READ_RECEIPT,
            "conversation_id": receipt.conv_id,
            "user_id": receipt.user_id,
            "seq": receipt.read_seq,
        }));
    }
    if receipt.delivered_seq > 0 {
        frames.push(json!({
            "type": types::DELIVERED,
            "conversation_id": receipt.conv_id,
            "user_id": receipt.user_id,
            "seq": receipt.delivered_seq,
        }));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn call_frames_round_trip_through_names() {
        let request = call_request_from_json(&frame(json!({
            "type": 60, "action": "ice", "call_id": "call_1",
            "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
        })))
        .unwrap();
        assert_eq!(request.action, pb::CallAction::Ice as i32);
        let event = pb::CallEvent {
            call_id: request.call_id.clone(),
            action: request.action,
            candidate: request.candidate.clone(),
            ..Default::default()
        };
        let json = call_event_to_json(&event);
        assert_eq!(json["action"], "ice");
        assert_eq!(json["candidate"]["sdpMid"], "0");
        assert!(call_request_from_json(&frame(json!({"action": "dance"}))).is_err());
        assert!(
            call_request_from_json(&frame(json!({"action": "invite", "media": "hologram"})))
                .is_err()
        );
    }

    #[test]
    fn recall_and_edit_need_a_conversation_and_a_seq() {
        assert!(recall_request_from_json(&frame(json!({"conversation_id": "c"}))).is_err());
        let edit = edit_request_from_json(&frame(json!({
            "conversation_id": "c", "seq": 3, "content": {"text": "fixed", "at_user_ids": ["user_x"]},
            "message_id": "m1"
        })))
        .unwrap();
        assert_eq!(edit.seq, 3);
        assert_eq!(edit.client_msg_id, "m1");
        assert_eq!(edit.text.unwrap().mention_user_ids, vec!["user_x"]);
    }

    #[test]
    fn receipts_become_one_frame_per_mark() {
        let receipt = pb::Receipt {
            conv_id: "c".into(),
            user_id: "user_a".into(),
            read_seq: 4,
            delivered_seq: 6,
        };
        let frames = receipt_to_json(&receipt);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["type"], types::READ_RECEIPT);
        assert_eq!(frames[1]["seq"], 6);
    }
}
