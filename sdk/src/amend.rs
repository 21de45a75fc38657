//! Recalling and editing messages, and applying such changes to stored messages.
//!
//! A recall or an edit is itself a message: kind `RECALL` or `EDIT`, content
//! [`Amendment`](pb::Amendment) naming the target by seq (and msg id), with a seq of
//! its own in the conversation. So every device receives it in order with the chat,
//! live or at sync after being offline, as an [`Event::Message`](crate::Event::Message),
//! and applies it to its copy of the target with [`apply_amendment`] instead of
//! showing it. History returns targets in their final state (recalled: `recalled`,
//! `recalled_by`, no content; edited: the new text and `edited_at_ms`), and the
//! conversation list's unread count and `last_message` skip these events.
//!
//! Like sends, the device that recalls or edits gets no copy of its own event: the
//! [`SendAck`](pb::SendAck) is the confirmation, and the application applies the change
//! itself.

use quip_protocol::pb;
use quip_protocol::{client_frame, server_frame};

use crate::client::{Client, new_client_msg_id};
use crate::error::{Result, SdkError};

/// The change a `RECALL` or `EDIT` message makes; `None` for any other message.
pub fn amendment(event: &pb::Message) -> Option<&pb::Amendment> {
    let kind = pb::MessageKind::try_from(event.kind).ok()?;
    match (kind, &event.content) {
        (
            pb::MessageKind::Recall | pb::MessageKind::Edit,
            Some(pb::message::Content::Amendment(a)),
        ) => Some(a),
        _ => None,
    }
}

/// Applies a `RECALL` or `EDIT` event to the message it targets, as the broker does
/// in storage:
/// - recall: `recalled = true`, `recalled_by` = the event's sender (the message's
///   sender, or a group owner/admin), content removed;
/// - edit: the content becomes the event's new text, `edited_at_ms` = the event's
///   `sent_at_ms` (the kind stays `TEXT`).
///
/// Returns `false`, leaving `target` unchanged, when `event` is not a recall or edit,
/// or targets another message (other conversation or seq, or another msg id when the
/// event names one), or is an edit of a recalled message.
///
/// ```
/// use quip_sdk::{apply_amendment, pb};
///
/// let mut target = pb::Message {
///     conv_id: "single:user_a:user_b".into(),
///     seq: 3,
///     kind: pb::MessageKind::Text as i32,
///     content: Some(pb::message::Content::Text(pb::TextContent {
///         text: "helo".into(),
///         ..Default::default()
///     })),
///     ..Default::default()
/// };
/// let edit = pb::Message {
///     conv_id: target.conv_id.clone(),
///     seq: 4,
///     kind: pb::MessageKind::Edit as i32,
///     content: Some(pb::message::Content::Amendment(pb::Amendment {
///         target_seq: 3,
///         text: Some(pb::TextContent { text: "hello".into(), ..Default::default() }),
///         ..Default::default()
///     })),
///     sent_at_ms: 1_700_000_000_000,
///     ..Default::default()
/// };
/// assert!(apply_amendment(&mut target, &edit));
/// assert_eq!(target.edited_at_ms, 1_700_000_000_000);
/// ```
pub fn apply_amendment(target: &mut pb::Message, event: &pb::Message) -> bool {
    let Some(change) = amendment(event) else {
        return false;
    };
    if event.conv_id != target.conv_id
        || change.target_seq != target.seq
        || (!change.target_msg_id.is_empty()
            && !target.msg_id.is_empty()
            && change.target_msg_id != target.msg_id)
    {
        return false;
    }
    if event.kind == pb::MessageKind::Recall as i32 {
        target.recalled = true;
        target.recalled_by = event.from.clone();
        target.content = None;
        true
    } else if target.recalled {
        false
    } else {
        target.content = Some(pb::message::Content::Text(
            change.text.clone().unwrap_or_default(),
        ));
        target.edited_at_ms = event.sent_at_ms;
        true
    }
}

impl Client {
    /// Recalls message `seq` of a conversation: its content is removed from storage
    /// and every member's devices receive a `RECALL` event (see the module docs).
    /// Allowed for the sender within the broker's `recall_window_ms` (default 2
    /// minutes; later → `EXPIRED`), and for a group's owner or admins on members'
    /// messages at any time; anyone else → `FORBIDDEN`. Already recalled →
    /// `CONFLICT`; only TEXT/IMAGE/VOICE/VIDEO/FILE/CUSTOM messages can be recalled
    /// (else `INVALID_ARGUMENT`).
    ///
    /// Answers with the [`SendAck`](pb::SendAck) of the RECALL event once it is
    /// stored. Resent after a reconnect like a send: a random `client_msg_id` makes
    /// the broker apply it at most once.
    pub async fn recall(&self, conv_id: &str, seq: u64) -> Result<pb::SendAck> {
        self.recall_with(pb::RecallRequest {
            conv_id: conv_id.to_string(),
            seq,
            client_msg_id: String::new(),
        })
        .await
    }

    /// [`recall`](Self::recall) with a request built by the caller (e.g. its own
    /// `client_msg_id`, so a retry after a restart stays deduplicated); an empty
    /// `client_msg_id` gets a random one.
    pub async fn recall_with(&self, mut request: pb::RecallRequest) -> Result<pb::SendAck> {
        if request.client_msg_id.is_empty() {
            request.client_msg_id = new_client_msg_id();
        }
        self.amend(client_frame::Body::Recall(request)).await
    }

    /// Replaces the text of one's own TEXT message `seq`; every member's devices
    /// receive an `EDIT` event (see the module docs). Sender only (else
    /// `FORBIDDEN`), TEXT messages only (else `INVALID_ARGUMENT`), within the broker's
    /// `edit_window_ms` (default 24 h; later → `EXPIRED`); a recalled message →
    /// `CONFLICT`.
    ///
    /// Answers with the [`SendAck`](pb::SendAck) of the EDIT event once it is stored.
    /// Resent after a reconnect like a send (deduplicated by `client_msg_id`).
    pub async fn edit(&self, conv_id: &str, seq: u64, text: &str) -> Result<pb::SendAck> {
        self.edit_with(pb::EditRequest {
            conv_id: conv_id.to_string(),
            seq,
            text: Some(pb::TextContent {
                text: text.to_string(),
                ..pb::TextContent::default()
            }),
            client_msg_id: String::new(),
        })
        .await
    }

    /// [`edit`](Self::edit) with a request built by the caller (mentions, its own
    /// `client_msg_id`); an empty `client_msg_id` gets a random one.
    pub async fn edit_with(&self, mut request: pb::EditRequest) -> Result<pb::SendAck> {
        if request.client_msg_id.is_empty() {
            request.client_msg_id = new_client_msg_id();
        }
        self.amend(client_frame::Body::Edit(request)).await
    }

    async fn amend(&self, body: client_frame::Body) -> Result<pb::SendAck> {
        // The ACK holds the event's seq for this device (the control stream reader
        // does that for every SendAck), as for a send.
        match self.shared.request(body, true).await? {
            server_frame::Body::Ack(ack) => Ok(ack),
            _ => Err(SdkError::UnexpectedResponse("expected SendAck")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_message(seq: u64, text: &str) -> pb::Message {
        pb::Message {
            msg_id: format!("msg_{seq}"),
            conv_id: "group:group_1".into(),
            seq,
            from: "user_a".into(),
            kind: pb::MessageKind::Text as i32,
            content: Some(pb::message::Content::Text(pb::TextContent {
                text: text.into(),
                ..Default::default()
            })),
            sent_at_ms: 1000,
            ..Default::default()
        }
    }

    fn event(kind: pb::MessageKind, seq: u64, target: u64, text: Option<&str>) -> pb::Message {
        pb::Message {
            msg_id: format!("msg_{seq}"),
            conv_id: "group:group_1".into(),
            seq,
            from: "user_owner".into(),
            kind: kind as i32,
            content: Some(pb::message::Content::Amendment(pb::Amendment {
                target_seq: target,
                target_msg_id: format!("msg_{target}"),
                text: text.map(|text| pb::TextContent {
                    text: text.into(),
                    ..Default::default()
                }),
            })),
            sent_at_ms: 5000 + seq,
            ..Default::default()
        }
    }

    #[test]
    fn edits_replace_the_text_and_recalls_remove_the_content() {
        let mut target = text_message(1, "helo");
        assert!(apply_amendment(
            &mut target,
            &event(pb::MessageKind::Edit, 2, 1, Some("hello"))
        ));
        assert_eq!(
            target.content,
            text_message(1, "hello").content,
            "new text, kind unchanged"
        );
        assert_eq!(target.edited_at_ms, 5002);
        assert_eq!(target.kind, pb::MessageKind::Text as i32);

        assert!(apply_amendment(
            &mut target,
            &event(pb::MessageKind::Recall, 3, 1, None)
        ));
        assert!(target.recalled);
        assert_eq!(target.recalled_by, "user_owner");
        assert_eq!(target.content, None);

        // An edit cannot bring a recalled message back.
        let before = target.clone();
        assert!(!apply_amendment(
            &mut target,
            &event(pb::MessageKind::Edit, 4, 1, Some("again"))
        ));
        assert_eq!(target, before);
    }

    #[test]
    fn only_amendments_of_this_very_message_apply() {
        let original = text_message(1, "hi");
        let mut target = original.clone();
        let other_seq = event(pb::MessageKind::Recall, 3, 2, None);
        let mut other_conv = event(pb::MessageKind::Recall, 3, 1, None);
        other_conv.conv_id = "group:group_2".into();
        let mut other_id = event(pb::MessageKind::Recall, 3, 1, None);
        if let Some(pb::message::Content::Amendment(a)) = other_id.content.as_mut() {
            a.target_msg_id = "msg_other".into();
        }
        let not_an_event = text_message(3, "plain");
        let mut mislabelled = event(pb::MessageKind::Recall, 3, 1, None);
        mislabelled.kind = pb::MessageKind::Text as i32;
        for wrong in [other_seq, other_conv, other_id, not_an_event, mislabelled] {
            assert!(!apply_amendment(&mut target, &wrong), "{wrong:?}");
            assert_eq!(target, original);
        }
        assert_eq!(amendment(&text_message(1, "x")), None);
        assert_eq!(
            amendment(&event(pb::MessageKind::Edit, 2, 1, None)).map(|a| a.target_seq),
            Some(1)
        );
    }
}
