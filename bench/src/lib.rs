//! Fixtures shared by the criterion benches in `benches/` (codec, fan-out, store):
//! typical frames and messages, the settings every bench runs with, and a session
//! closer that does nothing. See `README.md` for the commands.

use std::time::Duration;

use quip_broker::router::{Push, Pushed, SessionLink};
use quip_broker::store::NewMessage;
use quip_protocol::{ErrorCode, ids, pb};

/// Samples per benchmark: enough for criterion's statistics, few enough that
/// `cargo bench -p quip-bench` takes minutes on a 2-core machine.
pub const SAMPLE_SIZE: usize = 20;
/// Measured time per benchmark (overridable with `-- --measurement-time N`).
pub const MEASUREMENT_TIME: Duration = Duration::from_secs(3);
/// Warm-up time per benchmark (overridable with `-- --warm-up-time N`).
pub const WARM_UP_TIME: Duration = Duration::from_secs(1);

/// A typical chat line: exactly 100 bytes of text.
pub const TEXT_100: &str = "Running ten minutes late, the train is stuck outside the station. \
                            Start without me, I'll be there :)";

/// The group every fan-out bench delivers to.
pub const GROUP_ID: &str = "group_00000000000000b0";

/// The `i`th bench user (`user_` and 16 hex digits, like real ids).
pub fn user_id(i: u64) -> String {
    ids::new_user_id(i)
}

/// A stored 100-byte text message as the store hands it out: every field the store
/// fills in (msg_id, seq, sent_at_ms) is set, so frames have their real size.
pub fn text_message(conv_id: &str, seq: u64) -> pb::Message {
    let sent_at_ms = 1_750_000_000_000 + seq;
    pb::Message {
        msg_id: ids::new_msg_id(sent_at_ms, 0x5eed_0000 ^ seq as u32),
        conv_id: conv_id.to_owned(),
        seq,
        from: user_id(1),
        group_id: GROUP_ID.to_owned(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::message::Content::Text(pb::TextContent {
            text: TEXT_100.to_owned(),
            ..Default::default()
        })),
        client_msg_id: format!("c-{seq:016x}"),
        sent_at_ms,
        from_device: "phone".to_owned(),
        ..Default::default()
    }
}

/// The `Deliver` frame a lane writes for `message`.
pub fn deliver_server_frame(message: pb::Message) -> pb::ServerFrame {
    pb::ServerFrame {
        req_id: 0,
        body: Some(pb::server_frame::Body::Deliver(pb::Deliver {
            message: Some(message),
        })),
    }
}

/// A client's `SendRequest` of a 100-byte text to another user.
pub fn send_client_frame(req_id: u64) -> pb::ClientFrame {
    pb::ClientFrame {
        req_id,
        body: Some(pb::client_frame::Body::Send(pb::SendRequest {
            to: user_id(2),
            kind: pb::MessageKind::Text as i32,
            content: Some(pb::send_request::Content::Text(pb::TextContent {
                text: TEXT_100.to_owned(),
                ..Default::default()
            })),
            client_msg_id: format!("c-{req_id:016x}"),
        })),
    }
}

/// An append of a 100-byte text from `from` to `to` in their 1:1 conversation, as
/// the chat service builds it. `client_msg_id` must be unique per sender, or the store
/// answers from its dedup record instead of appending.
pub fn new_text(from: &str, to: &str, client_msg_id: u64) -> NewMessage {
    let message = pb::Message {
        conv_id: ids::single_conv_id(from, to),
        from: from.to_owned(),
        to: to.to_owned(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::message::Content::Text(pb::TextContent {
            text: TEXT_100.to_owned(),
            ..Default::default()
        })),
        client_msg_id: format!("c-{client_msg_id:016x}"),
        from_device: "phone".to_owned(),
        ..Default::default()
    };
    NewMessage::new(message, vec![from.to_owned(), to.to_owned()])
}

/// A transport that is never closed: the fan-out benches size their lanes so that no
/// session becomes a slow consumer (they assert it).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopCloser;

impl SessionLink for NoopCloser {
    fn push(&self, _frame: &bytes::Bytes, _how: Push) -> Pushed {
        Pushed::Stream
    }
    fn close(&self, _code: ErrorCode, _reason: &str) {}
    fn transport(&self) -> &'static str {
        "bench"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_100_bytes() {
        assert_eq!(TEXT_100.len(), 100);
    }
}
