//! The browser JSON format, compatible with SimpleIM (`seeds/000_*`): messages as
//! `{message_id, type, from, to, group_id, content, timestamp, conversation_id}` with
//! SimpleIM's type codes, plus Quip's additions (`seq`, `client_msg_id`, …) as extra
//! fields. Used by the WebSocket bridge and the REST history endpoints.

use serde_json::{Map, Value, json};

use crate::pb::{self, MessageKind};

mod realtime;

pub use realtime::{
    call_event_to_json, call_ok_to_json, call_request_from_json, call_summary_to_json,
    edit_request_from_json, presence_to_json, recall_request_from_json, receipt_to_json,
};

/// SimpleIM's type codes, and Quip's additions (40 and up).
pub mod types {
    pub const SINGLE: i64 = 1;
    pub const GROUP: i64 = 2;
    pub const SYSTEM: i64 = 3;
    pub const IMAGE: i64 = 4;
    pub const VOICE: i64 = 5;
    pub const VIDEO: i64 = 6;
    pub const FILE: i64 = 7;
    /// Quip: a CUSTOM message (`content.json`).
    pub const CUSTOM: i64 = 8;
    pub const ACK: i64 = 30;
    pub const READ_RECEIPT: i64 = 31;
    /// Quip: a delivered report (`conversation_id`, `seq`): the resume point.
    pub const DELIVERED: i64 = 32;
    pub const TYPING: i64 = 33;
    /// Quip: a user's presence changed (pushed; `user_id`, `online`, `last_seen`,
    /// `devices`, `version`).
    pub const PRESENCE: i64 = 34;
    /// Quip: recall a message (client → server), and the RECALL event (a message).
    pub const RECALL: i64 = 35;
    /// Quip: edit a message (client → server), and the EDIT event (a message).
    pub const EDIT: i64 = 36;
    /// Quip: the sync after connecting is complete.
    pub const SYNC_DONE: i64 = 40;
    /// Quip: where the broker resumes this device in a conversation (`conversation_id`,
    /// `seq`): the next message there is `seq + 1`.
    pub const RESUME_FROM: i64 = 41;
    /// Quip: an error answering a frame; the connection stays open.
    pub const ERROR: i64 = 50;
    /// Quip: call signalling, both ways (`action`, `call_id`, …).
    pub const CALL: i64 = 60;
    /// Quip: the answer to a call frame (`call_id`, `ice_servers`).
    pub const CALL_OK: i64 = 61;
    /// Quip: a contact event (pushed; `event`: "request_received", "request_accepted",
    /// "request_cancelled" or "friend_removed", `user_id`, `username`, `nickname`,
    /// `message`).
    pub const CONTACT_EVENT: i64 = 70;
    pub const HEARTBEAT: i64 = 99;
    pub const HEARTBEAT_REPLY: i64 = 100;
}

/// Why a browser frame could not be turned into a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

fn err(message: impl Into<String>) -> JsonError {
    JsonError(message.into())
}

/// A stored message as browser JSON.
pub fn message_to_json(message: &pb::Message) -> Value {
    let kind = MessageKind::try_from(message.kind).unwrap_or(MessageKind::Unspecified);
    let type_code = match kind {
        MessageKind::Text | MessageKind::Unspecified => {
            if message.group_id.is_empty() {
                types::SINGLE
            } else {
                types::GROUP
            }
        }
        MessageKind::System => types::SYSTEM,
        MessageKind::Image => types::IMAGE,
        MessageKind::Voice => types::VOICE,
        MessageKind::Video => types::VIDEO,
        MessageKind::File => types::FILE,
        MessageKind::Custom => types::CUSTOM,
        MessageKind::Recall => types::RECALL,
        MessageKind::Edit => types::EDIT,
    };
    let content = match &message.content {
        Some(pb::message::Content::Text(text)) => json!({
            "text": text.text,
            "at_user_ids": text.mention_user_ids,
            "at_all": text.mention_all,
        }),
        Some(pb::message::Content::File(file)) => json!({
            "file_id": file.file_id,
            "file_name": file.name,
            "file_size": file.size,
            "file_type": file_type(kind),
            "mime_type": file.mime,
            "url": file.url,
            "thumbnail_url": file.thumbnail_url,
            "width": file.width,
            "height": file.height,
            "duration_ms": file.duration_ms,
        }),
        Some(pb::message::Content::Custom(custom)) => json!({ "json": custom.json }),
        Some(pb::message::Content::System(system)) => json!({
            "text": system.text,
            "event": system.event,
            "user_ids": system.user_ids,
            "call": system.call.as_ref().map(call_summary_to_json),
        }),
        Some(pb::message::Content::Amendment(amendment)) => {
            let mut content = json!({
                "target_seq": amendment.target_seq,
                "target_message_id": amendment.target_msg_id,
            });
            if let Some(text) = &amendment.text {
                content["text"] = json!(text.text);
                content["at_user_ids"] = json!(text.mention_user_ids);
                content["at_all"] = json!(text.mention_all);
            }
            content
        }
        None => json!({}),
    };
    json!({
        "message_id": message.msg_id,
        "type": type_code,
        "from": message.from,
        "to": message.to,
        "group_id": message.group_id,
        "content": content,
        "timestamp": message.sent_at_ms,
        "conversation_id": message.conv_id,
        "seq": message.seq,
        "client_msg_id": message.client_msg_id,
        "edited_at": message.edited_at_ms,
        "recalled": message.recalled,
        "recalled_by": message.recalled_by,
    })
}

fn file_type(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Image => "image",
        MessageKind::Voice => "voice",
        MessageKind::Video => "video",
        _ => "file",
    }
}

/// A browser send frame (types 1, 2, 4–8) as a `SendRequest`. A client-set
/// `message_id` serves as the dedup key when `client_msg_id` is absent, as SimpleIM's
/// frontend sets `message_id` itself.
pub fn send_request_from_json(frame: &Map<String, Value>) -> Result<pb::SendRequest, JsonError> {
    let type_code = frame
        .get("type")
        .and_then(Value::as_i64)
        .ok_or_else(|| err("missing type"))?;
    let text_field = |key: &str| frame.get(key).and_then(Value::as_str).unwrap_or_default();
    let to = match type_code {
        types::GROUP => {
            let group_id = text_field("group_id");
            if group_id.is_empty() {
                text_field("to")
            } else {
                group_id
            }
        }
        _ => text_field("to"),
    };
    if to.is_empty() {
        return Err(err("missing `to`"));
    }
    let client_msg_id = match text_field("client_msg_id") {
        "" => text_field("message_id"),
        id => id,
    };
    if client_msg_id.is_empty() {
        return Err(err(
            "set message_id or client_msg_id: it makes resends safe",
        ));
    }
    let content = frame.get("content").cloned().unwrap_or(Value::Null);
    let (kind, content) = match type_code {
        types::SINGLE | types::GROUP => {
            let text = match &content {
                Value::String(text) => text.clone(),
                Value::Object(map) => map
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("content.text is required"))?
                    .to_owned(),
                _ => return Err(err("content must be an object with text")),
            };
            (
                MessageKind::Text,
                pb::send_request::Content::Text(text_content(text, &content)),
            )
        }
        types::IMAGE | types::VOICE | types::VIDEO | types::FILE => {
            let kind = match type_code {
                types::IMAGE => MessageKind::Image,
                types::VOICE => MessageKind::Voice,
                types::VIDEO => MessageKind::Video,
                _ => MessageKind::File,
            };
            let str_of = |key: &str| {
                content
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let num = |key: &str| content.get(key).and_then(Value::as_u64).unwrap_or(0);
            (
                kind,
                pb::send_request::Content::File(pb::FileContent {
                    file_id: str_of("file_id"),
                    name: str_of("file_name"),
                    size: num("file_size"),
                    mime: str_of("mime_type"),
                    url: str_of("url"),
                    thumbnail_url: str_of("thumbnail_url"),
                    width: num("width") as u32,
                    height: num("height") as u32,
                    duration_ms: num("duration_ms") as u32,
                }),
            )
        }
        types::CUSTOM => (
            MessageKind::Custom,
            pb::send_request::Content::Custom(pb::CustomContent {
                json: match content.get("json") {
                    Some(Value::String(json)) => json.clone(),
                    Some(other) => other.to_string(),
                    None => content.to_string(),
                },
            }),
        ),
        other => return Err(err(format!("type {other} is not a message type"))),
    };
    Ok(pb::SendRequest {
        to: to.to_owned(),
        kind: kind as i32,
        content: Some(content),
        client_msg_id: client_msg_id.to_owned(),
    })
}

/// A TextContent from `text` and the mentions in a browser `content` object.
fn text_content(text: String, content: &Value) -> pb::TextContent {
    let mention_user_ids = content
        .get("at_user_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    pb::TextContent {
        text,
        mention_user_ids,
        mention_all: content
            .get("at_all")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// A stored file (an upload's answer, `GET /api/files/{id}/info`) as browser JSON:
/// the names match a file message's content (`file_name`, `file_size`, `mime_type`).
pub fn file_info_to_json(file: &pb::FileInfo) -> Value {
    json!({
        "file_id": file.file_id,
        "file_name": file.name,
        "file_size": file.size,
        "mime_type": file.mime,
        "url": file.url,
        "thumbnail_url": file.thumbnail_url,
        "width": file.width,
        "height": file.height,
        "sha256": file.sha256,
        "uploaded_at": file.uploaded_at_ms,
    })
}

/// The ACK of a browser send: echoes the client's `message_id` (so SimpleIM's client
/// can match it) and carries the stored message's id and seq.
pub fn ack_to_json(client_message_id: &str, ack: &pb::SendAck) -> Value {
    json!({
        "type": types::ACK,
        "message_id": if client_message_id.is_empty() { &ack.client_msg_id } else { client_message_id },
        "client_msg_id": ack.client_msg_id,
        "server_message_id": ack.msg_id,
        "seq": ack.seq,
        "conversation_id": ack.conv_id,
        "timestamp": ack.sent_at_ms,
        "duplicate": ack.duplicate,
        "code": 0,
    })
}

/// An error answering a browser frame; `retry_after_ms` (RATE_LIMITED) when set.
pub fn error_to_json(error: &pb::Error, message_id: Option<&str>) -> Value {
    let mut value = json!({
        "type": types::ERROR,
        "code": error.code,
        "error": error.error_code().name(),
        "message": error.message,
        "message_id": message_id.unwrap_or_default(),
    });
    if error.retry_after_ms > 0 {
        value["retry_after_ms"] = json!(error.retry_after_ms);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn simpleim_frames_become_send_requests() {
        let single = send_request_from_json(&frame(json!({
            "type": 1, "to": "user_b", "message_id": "local-1",
            "content": {"text": "hi", "at_user_ids": ["user_c"], "at_all": false}
        })))
        .unwrap();
        assert_eq!(
            (single.to.as_str(), single.client_msg_id.as_str()),
            ("user_b", "local-1")
        );
        assert_eq!(single.kind, MessageKind::Text as i32);
        let group = send_request_from_json(&frame(json!({
            "type": 2, "group_id": "group_g", "client_msg_id": "c1", "message_id": "ignored",
            "content": {"text": "all", "at_all": true}
        })))
        .unwrap();
        assert_eq!(
            (group.to.as_str(), group.client_msg_id.as_str()),
            ("group_g", "c1")
        );
        match group.content {
            Some(pb::send_request::Content::Text(text)) => assert!(text.mention_all),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        for bad in [
            json!({"type": 1, "content": {"text": "x"}, "message_id": "m"}),
            json!({"type": 1, "to": "user_b", "content": {"text": "x"}}),
            json!({"type": 1, "to": "user_b", "content": 5, "message_id": "m"}),
            json!({"type": 30, "to": "user_b", "message_id": "m"}),
            json!({"to": "user_b"}),
        ] {
            assert!(
                send_request_from_json(&frame(bad.clone())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_carry_retry_after_only_when_set() {
        let plain = error_to_json(&pb::Error::new(crate::ErrorCode::Blocked, "no"), Some("m1"));
        assert_eq!(plain["code"], 26);
        assert_eq!(plain["message_id"], "m1");
        assert!(plain.get("retry_after_ms").is_none());
        let mut limited = pb::Error::new(crate::ErrorCode::RateLimited, "slow down");
        limited.retry_after_ms = 1500;
        let value = error_to_json(&limited, None);
        assert_eq!(value["error"], "RATE_LIMITED");
        assert_eq!(value["retry_after_ms"], 1500);
    }

    #[test]
    fn messages_render_with_simpleim_fields_and_codes() {
        let message = pb::Message {
            msg_id: "msg_1".into(),
            conv_id: "group:group_g".into(),
            seq: 3,
            from: "user_a".into(),
            group_id: "group_g".into(),
            kind: MessageKind::System as i32,
            content: Some(pb::message::Content::System(pb::SystemContent {
                event: "member_joined".into(),
                user_ids: vec!["user_a".into()],
                text: "a joined".into(),
                call: None,
            })),
            sent_at_ms: 42,
            ..Default::default()
        };
        let value = message_to_json(&message);
        assert_eq!(value["type"], 3);
        assert_eq!(value["content"]["event"], "member_joined");
        assert_eq!(value["conversation_id"], "group:group_g");
        assert_eq!(
            (value["seq"].as_u64(), value["timestamp"].as_u64()),
            (Some(3), Some(42))
        );
    }

    #[test]
    fn file_info_renders_with_the_file_message_names() {
        let info = pb::FileInfo {
            file_id: "file_1".into(),
            name: "cat.png".into(),
            size: 1234,
            mime: "image/png".into(),
            url: "/api/files/file_1".into(),
            thumbnail_url: "/api/files/file_1/thumbnail".into(),
            width: 64,
            height: 48,
            sha256: "ab".repeat(32),
            uploaded_at_ms: 42,
        };
        let value = file_info_to_json(&info);
        assert_eq!(
            value,
            json!({
                "file_id": "file_1", "file_name": "cat.png", "file_size": 1234,
                "mime_type": "image/png", "url": "/api/files/file_1",
                "thumbnail_url": "/api/files/file_1/thumbnail", "width": 64, "height": 48,
                "sha256": "ab".repeat(32), "uploaded_at": 42,
            })
        );
    }
}
