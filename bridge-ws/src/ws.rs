//! The browser WebSocket: SimpleIM's JSON frames over a backend session.
//!
//! One task per socket relays both ways. Browser frames become protocol requests
//! (each with a `req_id` remembered with the browser's `message_id`, so the ACK can
//! echo it); protocol frames from the broker become JSON. Bad frames get an error
//! frame and the socket stays usable; an oversized frame closes it with 1009.
//!
//! Browser → broker: sends (1, 2, 4–8), read / delivered reports (31, 32), typing (33,
//! no answer), recall (35) and edit (36) answered with an ACK (30), call signalling
//! (60) answered with 61, heartbeats (99). Broker → browser, besides answers:
//! deliveries (RECALL / EDIT events render as 35 / 36), receipts (31, 32), typing
//! (33), presence (34), call events (60) and contact events (70), all pushed without
//! a request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use quip_protocol::json::{
    ack_to_json, call_event_to_json, call_ok_to_json, call_request_from_json,
    edit_request_from_json, error_to_json, message_to_json, presence_to_json,
    recall_request_from_json, receipt_to_json, send_request_from_json, types,
};
use quip_protocol::{ErrorCode, client_frame, ids, pb, server_frame};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::BridgeState;
use crate::backend::{BackendSession, RequestFuture};
use crate::rest::ApiError;

/// WebSocket close codes: 1009 for an oversized message, and 4000 + the Quip error
/// code when the broker ends the session (e.g. 4012 slow consumer, 4020 replaced,
/// 4028 logged out, 4018 account disabled).
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_IDLE: u16 = 1001;
pub const CLOSE_APP_BASE: u16 = 4000;

/// The socket's read buffer. tungstenite's default is 128 KiB, zero-filled on the
/// first read: 128 KiB resident per idle browser. Chat frames are far smaller, and a
/// larger frame is read in one piece anyway: once its header is parsed, the buffer
/// reserves the whole payload.
const READ_BUFFER_BYTES: usize = 512;
/// How long a closing socket waits for the peer's Close before dropping the connection.
const CLOSE_HANDSHAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: String,
    /// Defaults to the device the token was issued to.
    #[serde(default)]
    device_id: String,
}

/// `GET /ws?token=…`: checks the origin, takes a place under the connection limits
/// (else 429 with TOO_MANY_CONNECTIONS), checks the token, opens the session, upgrades.
pub async fn upgrade(
    State(state): State<Arc<BridgeState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&state.config.allowed_origins, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    // Held until the socket closes (or the upgrade fails: the closure below is dropped).
    let slot = match state.backend.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(error) => return ApiError(error).into_response(),
    };
    let identity = match state.backend.identify(&query.token).await {
        Ok(identity) => identity,
        Err(error) => return ApiError(error).into_response(),
    };
    let device_id = if query.device_id.is_empty() {
        identity.device_id
    } else {
        query.device_id
    };
    let hello = pb::Hello {
        auth: Some(pb::hello::Auth::AccessToken(query.token)),
        device_id,
        client_version: "browser".into(),
        lanes: 1,
        ..Default::default()
    };
    let session = match state.backend.open_session(hello).await {
        Ok(session) => session,
        Err(error) => return ApiError(error).into_response(),
    };
    let limit = state.config.ws_max_message_bytes;
    // The library enforces a hard cap above ours so that we see (and answer with 1009)
    // messages just over the limit ourselves.
    ws.max_message_size(limit.saturating_mul(2))
        .max_frame_size(limit.saturating_mul(2))
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            // One span per socket, like QUIC connections: every log line of the relay
            // names its user and device.
            let span = tracing::info_span!(
                "ws",
                user = %session.hello_ok.user_id,
                device = %session.hello_ok.device_id
            );
            async move {
                let _slot = slot;
                relay(socket, session, state).await;
            }
            .instrument(span)
        })
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| allowed.iter().any(|a| a == origin))
}

/// What an answered request was, to render its response.
enum Awaiting {
    /// A send, recall or edit; the browser's `message_id` to echo in the ACK (30) or
    /// the error (50).
    Send(String),
    /// A call frame; the browser's `message_id` to echo in the CALL_OK (61) or the
    /// error (50), and whether it was an INVITE.
    Call { message_id: String, invite: bool },
    /// A read or delivered report: only errors are shown.
    Report,
}

struct Relay {
    session: BackendSession,
    /// Requests in progress, run on this task.
    inflight: FuturesUnordered<RequestFuture>,
    awaiting: HashMap<u64, Awaiting>,
    /// INVITEs waiting for their CALL_OK. The broker answers an invite with its call id
    /// before any event of that call (e.g. ENDED at once when the callee is offline),
    /// but the answer and the push reach this task by different paths; call events
    /// are held back while an invite is in flight so the browser learns the call id
    /// first.
    invites_in_flight: usize,
    deferred_call_events: Vec<Value>,
    next_req_id: u64,
    max_message_bytes: usize,
}

enum Step {
    Continue,
    Close(u16, String),
}

async fn relay(socket: WebSocket, session: BackendSession, state: Arc<BridgeState>) {
    let (mut sink, mut stream) = socket.split();
    let mut relay = Relay {
        session,
        inflight: FuturesUnordered::new(),
        awaiting: HashMap::new(),
        invites_in_flight: 0,
        deferred_call_events: Vec::new(),
        next_req_id: 1,
        max_message_bytes: state.config.ws_max_message_bytes,
    };
    let mut ping = tokio::time::interval(state.config.ws_ping_interval);
    ping.tick().await;
    let mut last_seen = Instant::now();
    let close = loop {
        let outgoing: Vec<Value>;
        let max_inflight = relay.session.max_inflight;
        tokio::select! {
            // At `max_inflight` requests in progress, stop reading: TCP pushes back.
            incoming = stream.next(), if relay.inflight.len() < max_inflight => {
                last_seen = Instant::now();
                let (out, step) = match incoming {
                    Some(Ok(Message::Text(text))) => relay.handle_browser_frame(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => (vec![invalid("binary frames are not supported; send JSON text", None)], Step::Continue),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => (Vec::new(), Step::Continue),
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(error)) => {
                        let text = error.to_string();
                        if text.to_lowercase().contains("too long") || text.contains("Space limit") {
                            (Vec::new(), Step::Close(CLOSE_TOO_BIG, "message too big".into()))
                        } else {
                            tracing::debug!(%error, "websocket read failed");
                            break None;
                        }
                    }
                };
                if let Step::Close(code, reason) = step {
                    break Some((code, reason));
                }
                outgoing = out;
            }
            frame = relay.session.frames.recv() => {
                let Some(frame) = frame else {
                    break Some((CLOSE_APP_BASE + ErrorCode::Unavailable as u16, "session ended".into()));
                };
                outgoing = relay.handle_broker_frame(&frame);
            }
            Some((req_id, body)) = relay.inflight.next(), if !relay.inflight.is_empty() => {
                if req_id == 0 {
                    continue; // no answer expected (typing), not even an error
                }
                outgoing = relay.handle_server_frame(pb::ServerFrame { req_id, body: Some(body) });
            }
            reason = &mut relay.session.closed => {
                let reason = reason.unwrap_or_else(|_| pb::Error::new(ErrorCode::Unavailable, "session ended"));
                break Some((CLOSE_APP_BASE + reason.code as u16, reason.message));
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > state.config.ws_idle_timeout {
                    break Some((CLOSE_IDLE, "idle".into()));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
                continue;
            }
        }
        for value in outgoing {
            if sink
                .send(Message::Text(Utf8Bytes::from(value.to_string())))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    if let Some((code, reason)) = close {
        let sent = sink
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            })))
            .await;
        // The closing handshake: give the browser a moment to read our Close and
        // answer it, so it sees the code rather than a reset connection.
        if sent.is_ok() {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
    tracing::debug!("websocket closed");
}

/// A browser typing frame's `kind`: "typing" (also when absent), "recording_voice" or
/// "stopped".
fn typing_kind_from_json(kind: Option<&Value>) -> Result<pb::TypingKind, String> {
    match kind {
        None | Some(Value::Null) => Ok(pb::TypingKind::Typing),
        Some(Value::String(name)) => match name.as_str() {
            "" | "typing" => Ok(pb::TypingKind::Typing),
            "recording_voice" => Ok(pb::TypingKind::RecordingVoice),
            "stopped" => Ok(pb::TypingKind::Stopped),
            other => Err(format!(
                "typing kind must be \"typing\", \"recording_voice\" or \"stopped\", not {other:?}"
            )),
        },
        Some(other) => Err(format!(
            "typing kind must be \"typing\", \"recording_voice\" or \"stopped\", not {other}"
        )),
    }
}

/// A typing notice's kind as the browser sees it.
fn typing_kind_name(kind: i32) -> &'static str {
    match pb::TypingKind::try_from(kind) {
        Ok(pb::TypingKind::RecordingVoice) => "recording_voice",
        Ok(pb::TypingKind::Stopped) => "stopped",
        _ => "typing",
    }
}

/// A contact event's kind as the browser sees it.
fn contact_event_name(kind: i32) -> &'static str {
    match pb::ContactEventKind::try_from(kind) {
        Ok(pb::ContactEventKind::RequestReceived) => "request_received",
        Ok(pb::ContactEventKind::RequestAccepted) => "request_accepted",
        Ok(pb::ContactEventKind::RequestCancelled) => "request_cancelled",
        Ok(pb::ContactEventKind::FriendRemoved) => "friend_removed",
        _ => "unspecified",
    }
}

/// `{type: 70, event, user_id, username, nickname, message}`.
fn contact_event_to_json(event: &pb::ContactEvent) -> Value {
    json!({
        "type": types::CONTACT_EVENT,
        "event": contact_event_name(event.kind),
        "user_id": event.user_id,
        "username": event.username,
        "nickname": event.nickname,
        "message": event.message,
    })
}

fn invalid(message: &str, message_id: Option<&str>) -> Value {
    error_to_json(
        &pb::Error::new(ErrorCode::InvalidArgument, message),
        message_id,
    )
}

impl Relay {
    /// One browser frame: returns frames to send back at once, and whether to close.
    async fn handle_browser_frame(&mut self, text: &str) -> (Vec<Value>, Step) {
        if text.len() > self.max_message_bytes {
            return (
                Vec::new(),
                Step::Close(CLOSE_TOO_BIG, "message too big".into()),
            );
        }
        let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
            return (
                vec![invalid(
                    "invalid JSON: send one JSON object per frame",
                    None,
                )],
                Step::Continue,
            );
        };
        let message_id = frame
            .get("message_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(type_code) = frame.get("type").and_then(Value::as_i64) else {
            return (
                vec![invalid("missing numeric `type`", message_id.as_deref())],
                Step::Continue,
            );
        };
        let (body, awaiting) = match type_code {
            types::SINGLE
            | types::GROUP
            | types::IMAGE
            | types::VOICE
            | types::VIDEO
            | types::FILE
            | types::CUSTOM => match send_request_from_json(&frame) {
                Ok(request) => {
                    let echo = message_id
                        .clone()
                        .unwrap_or_else(|| request.client_msg_id.clone());
                    (client_frame::Body::Send(request), Awaiting::Send(echo))
                }
                Err(error) => {
                    return (
                        vec![invalid(&error.0, message_id.as_deref())],
                        Step::Continue,
                    );
                }
            },
            types::READ_RECEIPT | types::DELIVERED => {
                let conv_id = frame
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(seq) = frame.get("seq").and_then(Value::as_u64) else {
                    return (
                        vec![invalid("`seq` is required", message_id.as_deref())],
                        Step::Continue,
                    );
                };
                let report = if type_code == types::READ_RECEIPT {
                    pb::CursorReport {
                        conv_id: conv_id.into(),
                        delivered_seq: 0,
                        read_seq: seq,
                    }
                } else {
                    pb::CursorReport {
                        conv_id: conv_id.into(),
                        delivered_seq: seq,
                        read_seq: 0,
                    }
                };
                (
                    client_frame::Body::Report(pb::ReportCursors {
                        reports: vec![report],
                    }),
                    Awaiting::Report,
                )
            }
            types::TYPING => {
                let Some(conv_id) = self.typing_conversation(&frame) else {
                    return (
                        vec![invalid(
                            "typing needs conversation_id (or to / group_id)",
                            message_id.as_deref(),
                        )],
                        Step::Continue,
                    );
                };
                let kind = match typing_kind_from_json(frame.get("kind")) {
                    Ok(kind) => kind,
                    Err(message) => {
                        return (
                            vec![invalid(&message, message_id.as_deref())],
                            Step::Continue,
                        );
                    }
                };
                let typing = pb::Typing {
                    conv_id,
                    kind: kind as i32,
                };
                // req_id 0: no response.
                let frame = pb::ClientFrame {
                    req_id: 0,
                    body: Some(client_frame::Body::Typing(typing)),
                };
                let pending = self.session.requests.start(frame).await;
                self.inflight.push(pending);
                return (Vec::new(), Step::Continue);
            }
            types::RECALL => match recall_request_from_json(&frame) {
                Ok(request) => {
                    let echo = message_id
                        .clone()
                        .unwrap_or_else(|| request.client_msg_id.clone());
                    (client_frame::Body::Recall(request), Awaiting::Send(echo))
                }
                Err(error) => {
                    return (
                        vec![invalid(&error.0, message_id.as_deref())],
                        Step::Continue,
                    );
                }
            },
            types::EDIT => match edit_request_from_json(&frame) {
                Ok(request) => {
                    let echo = message_id
                        .clone()
                        .unwrap_or_else(|| request.client_msg_id.clone());
                    (client_frame::Body::Edit(request), Awaiting::Send(echo))
                }
                Err(error) => {
                    return (
                        vec![invalid(&error.0, message_id.as_deref())],
                        Step::Continue,
                    );
                }
            },
            types::CALL => match call_request_from_json(&frame) {
                Ok(request) => {
                    let invite = request.action == pb::CallAction::Invite as i32;
                    if invite {
                        self.invites_in_flight += 1;
                    }
                    let message_id = message_id.clone().unwrap_or_default();
                    (
                        client_frame::Body::Call(request),
                        Awaiting::Call { message_id, invite },
                    )
                }
                Err(error) => {
                    return (
                        vec![invalid(&error.0, message_id.as_deref())],
                        Step::Continue,
                    );
                }
            },
            types::HEARTBEAT => {
                let content = frame.get("content").cloned().unwrap_or(json!({}));
                return (
                    vec![json!({"type": types::HEARTBEAT_REPLY, "content": content})],
                    Step::Continue,
                );
            }
            other => {
                let message = format!("unknown type {other}");
                return (
                    vec![invalid(&message, message_id.as_deref())],
                    Step::Continue,
                );
            }
        };
        let req_id = self.next_req_id;
        self.next_req_id += 1;
        self.awaiting.insert(req_id, awaiting);
        let frame = pb::ClientFrame {
            req_id,
            body: Some(body),
        };
        let pending = self.session.requests.start(frame).await;
        self.inflight.push(pending);
        (Vec::new(), Step::Continue)
    }

    /// The conversation a typing frame is about: `conversation_id`, or derived from
    /// `group_id` / `to` as SimpleIM clients send them.
    fn typing_conversation(&self, frame: &serde_json::Map<String, Value>) -> Option<String> {
        let field = |key: &str| {
            frame
                .get(key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        if let Some(conv_id) = field("conversation_id") {
            return Some(conv_id.to_owned());
        }
        if let Some(group_id) = field("group_id") {
            return Some(ids::group_conv_id(group_id));
        }
        let to = field("to")?;
        if ids::is_group_id(to) {
            Some(ids::group_conv_id(to))
        } else {
            Some(ids::single_conv_id(&self.session.hello_ok.user_id, to))
        }
    }

    /// One frame from the broker, as zero or more browser frames.
    fn handle_broker_frame(&mut self, frame: &[u8]) -> Vec<Value> {
        let Ok(frame) = pb::ServerFrame::decode_length_delimited(frame) else {
            tracing::warn!("undecodable frame from the backend");
            return Vec::new();
        };
        self.handle_server_frame(frame)
    }

    /// A frame for the browser: a delivery, a sync mark, or a request's answer.
    fn handle_server_frame(&mut self, frame: pb::ServerFrame) -> Vec<Value> {
        let awaiting = self.awaiting.remove(&frame.req_id);
        let answered_invite = matches!(awaiting, Some(Awaiting::Call { invite: true, .. }));
        let mut out = self.render(frame.body, awaiting);
        if answered_invite {
            self.invites_in_flight -= 1;
            if self.invites_in_flight == 0 {
                out.append(&mut self.deferred_call_events);
            }
        }
        out
    }

    /// A frame's body as browser frames, given what request (if any) it answers.
    fn render(
        &mut self,
        body: Option<server_frame::Body>,
        awaiting: Option<Awaiting>,
    ) -> Vec<Value> {
        match (body, awaiting) {
            (Some(server_frame::Body::Deliver(deliver)), _) => deliver
                .message
                .as_ref()
                .map(message_to_json)
                .into_iter()
                .collect(),
            (Some(server_frame::Body::SyncDone(_)), _) => vec![json!({"type": types::SYNC_DONE})],
            (Some(server_frame::Body::Typing(notice)), _) => vec![json!({
                "type": types::TYPING,
                "conversation_id": notice.conv_id,
                "from": notice.from,
                "kind": typing_kind_name(notice.kind),
                "expires_in_ms": notice.expires_in_ms,
            })],
            (Some(server_frame::Body::Presence(presence)), _) => vec![presence_to_json(&presence)],
            (Some(server_frame::Body::ContactEvent(event)), _) => {
                vec![contact_event_to_json(&event)]
            }
            (Some(server_frame::Body::Receipt(receipt)), _) => receipt_to_json(&receipt),
            (Some(server_frame::Body::CallEvent(event)), _) => {
                let event = call_event_to_json(&event);
                if self.invites_in_flight > 0 {
                    self.deferred_call_events.push(event);
                    return Vec::new();
                }
                vec![event]
            }
            (Some(server_frame::Body::CallOk(ok)), Some(Awaiting::Call { message_id, .. })) => {
                vec![call_ok_to_json(&message_id, &ok)]
            }
            (Some(server_frame::Body::ResumeFrom(resume)), _) => {
                vec![
                    json!({"type": types::RESUME_FROM, "conversation_id": resume.conv_id, "seq": resume.seq}),
                ]
            }
            (Some(server_frame::Body::Ack(ack)), Some(Awaiting::Send(message_id))) => {
                vec![ack_to_json(&message_id, &ack)]
            }
            (
                Some(server_frame::Body::Error(error)),
                Some(Awaiting::Send(message_id) | Awaiting::Call { message_id, .. }),
            ) => vec![error_to_json(&error, Some(&message_id))],
            (Some(server_frame::Body::Error(error)), _) => vec![error_to_json(&error, None)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_kinds_round_trip_by_name() {
        for (name, kind) in [
            ("typing", pb::TypingKind::Typing),
            ("recording_voice", pb::TypingKind::RecordingVoice),
            ("stopped", pb::TypingKind::Stopped),
        ] {
            assert_eq!(typing_kind_from_json(Some(&json!(name))), Ok(kind));
            assert_eq!(typing_kind_name(kind as i32), name);
        }
        assert_eq!(typing_kind_from_json(None), Ok(pb::TypingKind::Typing));
        assert!(typing_kind_from_json(Some(&json!("dancing"))).is_err());
        assert!(typing_kind_from_json(Some(&json!(2))).is_err());
        assert_eq!(typing_kind_name(0), "typing");
    }

    #[test]
    fn contact_events_render_as_type_70() {
        let event = pb::ContactEvent {
            kind: pb::ContactEventKind::RequestReceived as i32,
            user_id: "user_a".into(),
            message: "hi".into(),
            username: "alice".into(),
            nickname: "Alice".into(),
        };
        assert_eq!(
            contact_event_to_json(&event),
            json!({"type": 70, "event": "request_received", "user_id": "user_a",
                   "username": "alice", "nickname": "Alice", "message": "hi"})
        );
        for (kind, name) in [
            (pb::ContactEventKind::RequestAccepted, "request_accepted"),
            (pb::ContactEventKind::RequestCancelled, "request_cancelled"),
            (pb::ContactEventKind::FriendRemoved, "friend_removed"),
        ] {
            assert_eq!(contact_event_name(kind as i32), name);
        }
    }
}
