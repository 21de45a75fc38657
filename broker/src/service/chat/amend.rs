//! Recall and edit: events that change an earlier message.
//!
//! Each is a message of its own (kind RECALL or EDIT, content `Amendment`) with the
//! conversation's next seq, so every device applies it in order, live or at its next
//! sync, exactly like any message; the store rewrites the target in the same atomic
//! batch, so history shows the final state. A recall removes the content from the
//! target and from the EDIT events that carried its text.

use std::sync::Arc;

use quip_protocol::ids::{self, Conversation};
use quip_protocol::{ErrorCode, pb};

use super::{ChatService, sent};
use crate::service::auth::now_ms;
use crate::service::{Caller, ServiceError, ServiceResult};
use crate::store::{Amend, AmendChange, NewMessage};

impl ChatService {
    /// Recalls a message: its sender within the recall window, or a group owner or
    /// admin for a member of lower role, at any time; never in a dissolved group.
    pub async fn recall(
        &self,
        caller: Caller<'_>,
        request: pb::RecallRequest,
    ) -> ServiceResult<pb::SendAck> {
        if let Some(ack) = self.resent(caller, &request.client_msg_id).await? {
            return Ok(ack);
        }
        let target = self
            .amendable_target(caller, &request.conv_id, request.seq)
            .await?;
        // A dissolved group is read-only: a recall would be a new message in it.
        if !target.group_id.is_empty()
            && self
                .store
                .group(&target.group_id)
                .await?
                .is_some_and(|group| group.dissolved)
        {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "the group was dissolved",
            ));
        }
        let own = target.from == caller.user_id;
        let in_window = now_ms().saturating_sub(target.sent_at_ms) <= self.limits.recall_window_ms;
        let allowed = (own && in_window) || self.outranks_sender(caller.user_id, &target).await?;
        if !allowed {
            return Err(if own {
                ServiceError::new(
                    ErrorCode::Expired,
                    format!(
                        "messages can be recalled for {} s after sending",
                        self.limits.recall_window_ms / 1000
                    ),
                )
            } else {
                ServiceError::new(
                    ErrorCode::Forbidden,
                    "only the sender (or a group owner or admin) may recall a message",
                )
            });
        }
        let amendment = pb::Amendment {
            target_seq: target.seq,
            target_msg_id: target.msg_id.clone(),
            text: None,
        };
        let change = AmendChange::Recall {
            by: caller.user_id.to_owned(),
        };
        self.post_amendment(
            caller,
            &target,
            pb::MessageKind::Recall,
            amendment,
            change,
            request.client_msg_id,
        )
        .await
    }

    /// Replaces the text of the caller's own TEXT message within the edit window.
    pub async fn edit(
        &self,
        caller: Caller<'_>,
        request: pb::EditRequest,
    ) -> ServiceResult<pb::SendAck> {
        if let Some(ack) = self.resent(caller, &request.client_msg_id).await? {
            return Ok(ack);
        }
        let text = request
            .text
            .ok_or_else(|| ServiceError::invalid("an edit needs the new text"))?;
        let target = self
            .amendable_target(caller, &request.conv_id, request.seq)
            .await?;
        if target.from != caller.user_id {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "only the sender may edit a message",
            ));
        }
        if target.kind != pb::MessageKind::Text as i32 {
            return Err(ServiceError::invalid("only text messages can be edited"));
        }
        if now_ms().saturating_sub(target.sent_at_ms) > self.limits.edit_window_ms {
            return Err(ServiceError::new(
                ErrorCode::Expired,
                format!(
                    "messages can be edited for {} s after sending",
                    self.limits.edit_window_ms / 1000
                ),
            ));
        }
        self.validate_content(&pb::SendRequest {
            kind: pb::MessageKind::Text as i32,
            content: Some(pb::send_request::Content::Text(text.clone())),
            ..Default::default()
        })?;
        // An edit reaches everyone again: the rules of sending apply (blocks and
        // friends-only DMs, a dissolved group, mutes, @all for admins only).
        if target.group_id.is_empty() {
            let peer = Conversation::parse(&target.conv_id)
                .and_then(|conv| conv.peer_of(caller.user_id).map(str::to_owned))
                .unwrap_or_default();
            crate::service::contacts::check_direct(&*self.store, caller.user_id, &peer).await?;
        } else {
            let member = self
                .check_group_speaker(caller.user_id, &target.group_id)
                .await?;
            if text.mention_all && member.role < pb::GroupRole::Admin as i32 {
                return Err(ServiceError::new(
                    ErrorCode::Forbidden,
                    "only owners and admins may mention @all",
                ));
            }
        }
        if !target.group_id.is_empty() {
            let members = self.members.member_ids(&target.group_id).await?;
            if let Some(stranger) = text
                .mention_user_ids
                .iter()
                .find(|id| !members.contains(id))
            {
                return Err(ServiceError::invalid(format!(
                    "{stranger} is not a member of this group"
                )));
            }
        } else if text.mention_all {
            return Err(ServiceError::invalid("@all is for groups"));
        }
        let amendment = pb::Amendment {
            target_seq: target.seq,
            target_msg_id: target.msg_id.clone(),
            text: Some(text.clone()),
        };
        self.post_amendment(
            caller,
            &target,
            pb::MessageKind::Edit,
            amendment,
            AmendChange::Edit { text },
            request.client_msg_id,
        )
        .await
    }

    /// The original ACK of a resent recall or edit. Checked first: the first attempt
    /// may have made the checks fail since (the message is recalled now, the window
    /// has passed), and a resend must still get its ACK.
    async fn resent(
        &self,
        caller: Caller<'_>,
        client_msg_id: &str,
    ) -> ServiceResult<Option<pb::SendAck>> {
        if client_msg_id.is_empty() {
            return Ok(None);
        }
        let Some(message) = self.store.sent(caller.user_id, client_msg_id).await? else {
            return Ok(None);
        };
        Ok(Some(super::ack_of(message, true)))
    }

    /// The message a caller may recall or edit: one they can see in a conversation
    /// they are still in, and an ordinary message (not a SYSTEM message or an event).
    async fn amendable_target(
        &self,
        caller: Caller<'_>,
        conv_id: &str,
        seq: u64,
    ) -> ServiceResult<pb::Message> {
        let access = self.access(caller.user_id, conv_id).await?;
        if access.cap != u64::MAX {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "you left this conversation",
            ));
        }
        let not_found = || ServiceError::new(ErrorCode::NotFound, "no such message");
        if seq <= access.floor {
            return Err(not_found());
        }
        let target = self
            .store
            .range(conv_id, seq, seq, 1)
            .await?
            .pop()
            .ok_or_else(not_found)?;
        let kind = pb::MessageKind::try_from(target.kind).unwrap_or(pb::MessageKind::Unspecified);
        if matches!(
            kind,
            pb::MessageKind::System
                | pb::MessageKind::Recall
                | pb::MessageKind::Edit
                | pb::MessageKind::Unspecified
        ) {
            return Err(ServiceError::invalid(
                "system messages and recall/edit events cannot be changed",
            ));
        }
        // Whether it was recalled meanwhile is the store's to say, at commit time and
        // after its dedup check: a resent recall gets its original ACK, not CONFLICT.
        Ok(target)
    }

    /// In a group, whether the caller's role is above the target's sender's (an owner
    /// over admins and members, an admin over members).
    async fn outranks_sender(&self, user_id: &str, target: &pb::Message) -> ServiceResult<bool> {
        if target.group_id.is_empty() || target.from == user_id {
            return Ok(false);
        }
        let Some(caller) = self.store.member(&target.group_id, user_id).await? else {
            return Ok(false);
        };
        let sender_role = self
            .store
            .member(&target.group_id, &target.from)
            .await?
            .map_or(pb::GroupRole::Member as i32, |m| m.role);
        Ok(caller.role >= pb::GroupRole::Admin as i32 && caller.role > sender_role)
    }

    async fn post_amendment(
        &self,
        caller: Caller<'_>,
        target: &pb::Message,
        kind: pb::MessageKind,
        amendment: pb::Amendment,
        change: AmendChange,
        client_msg_id: String,
    ) -> ServiceResult<pb::SendAck> {
        let client_msg_id = if client_msg_id.is_empty() {
            format!("amend-{:032x}", rand::random::<u128>())
        } else if ids::is_client_msg_id(&client_msg_id) {
            client_msg_id
        } else {
            return Err(ServiceError::invalid(
                "client_msg_id must be 1 to 64 of [A-Za-z0-9_.-]",
            ));
        };
        let recipients: Arc<[String]> = match Conversation::parse(&target.conv_id) {
            Some(Conversation::Group { group_id }) => self.members.member_ids(group_id).await?,
            Some(Conversation::Single { low, high }) => {
                Arc::from(vec![low.to_owned(), high.to_owned()])
            }
            None => return Err(ServiceError::invalid("malformed conversation id")),
        };
        let to = if target.group_id.is_empty() {
            Conversation::parse(&target.conv_id)
                .and_then(|conv| conv.peer_of(caller.user_id).map(str::to_owned))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let message = pb::Message {
            conv_id: target.conv_id.clone(),
            from: caller.user_id.to_owned(),
            from_device: caller.device_id.to_owned(),
            to,
            group_id: target.group_id.clone(),
            kind: kind as i32,
            content: Some(pb::message::Content::Amendment(amendment)),
            client_msg_id,
            ..Default::default()
        };
        let new_message = NewMessage {
            amend: Some(Amend {
                target_seq: target.seq,
                change,
            }),
            ..NewMessage::new(message, Vec::new())
        };
        let appended = self.post(new_message, recipients, Some(caller)).await?;
        Ok(sent(&*self.store, caller.user_id, appended).await)
    }
}
