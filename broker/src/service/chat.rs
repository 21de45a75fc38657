//! Sending, history, the conversation list and cursors: design section 4.
//!
//! Transport-free. `send` validates synchronously and enqueues the append before it
//! returns, so a connection that pipelines sends gets seqs in request order; the
//! future it returns resolves after durability, with the fan-out done.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use quip_protocol::ids::{self, Conversation};
use quip_protocol::{ErrorCode, encode_frame_bytes, pb};

use super::error::{ServiceError, ServiceResult};
use super::members::MemberCache;
use crate::router::{Origin, Push, Router};
use crate::store::{Appended, CursorUpdate, MarksMoved, NewMessage, Store};

mod amend;

/// Limits on requests, from the config.
#[derive(Debug, Clone)]
pub struct ChatLimits {
    pub max_text_bytes: usize,
    pub history_default_limit: u32,
    pub history_max_limit: u32,
    pub conversations_max_limit: u32,
    /// Most mentions in one message.
    pub max_mentions: usize,
    /// Most cursor reports in one frame.
    pub max_reports: usize,
    /// How long a typing indicator shows without a new notice.
    pub typing_expires_ms: u32,
    /// How long after sending its sender may recall / edit a message.
    pub recall_window_ms: u64,
    pub edit_window_ms: u64,
}

/// The authenticated device a request comes from.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    /// The session to skip (with an `Advance`) in fan-out; 0 for none.
    pub session_id: u64,
}

/// Where one conversation's catch-up starts and ends for a connecting device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPoint {
    pub conv_id: String,
    /// Highest seq the device holds.
    pub cursor: u64,
    /// Whether the device said so itself in its Hello; if not, the cursor is the
    /// broker's stored one (or a group member's joining) and the device is told with a
    /// `ResumeFrom`.
    pub from_hello: bool,
    /// A former group member gets nothing after this seq (`u64::MAX` otherwise).
    pub cap: u64,
    /// Highest committed seq at the time of the Hello.
    pub last_seq: u64,
}

/// The part of a conversation a user may see: seqs in `floor + 1 ..= cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// A group member sees the conversation from their joining on.
    pub floor: u64,
    /// A former member sees it up to their leaving; `u64::MAX` otherwise.
    pub cap: u64,
}

impl Access {
    pub const ALL: Access = Access {
        floor: 0,
        cap: u64::MAX,
    };
}

#[derive(Debug)]
pub struct ChatService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    members: Arc<MemberCache>,
    limits: ChatLimits,
    /// Committed messages, in commit order, to the fan-out thread.
    fan_out: crossbeam_channel::Sender<FanOut>,
    /// Live deliveries handed to sessions so far (`quip_messages_out_total`).
    deliveries: Arc<AtomicU64>,
}

impl ChatService {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        members: Arc<MemberCache>,
        limits: ChatLimits,
    ) -> Self {
        let deliveries = Arc::new(AtomicU64::new(0));
        Self {
            fan_out: spawn_fan_out(router.clone(), deliveries.clone()),
            deliveries,
            store,
            router,
            members,
            limits,
        }
    }

    pub fn members(&self) -> &Arc<MemberCache> {
        &self.members
    }

    /// Committed messages waiting for the fan-out thread (for `GET /metrics`).
    pub fn fan_out_queue_len(&self) -> usize {
        self.fan_out.len()
    }

    /// Live deliveries handed to sessions on this node so far (for `GET /metrics`).
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Validates a send and enqueues it. The future resolves to the ACK once the
    /// message is durable and queued, in commit order, for delivery to every online
    /// recipient session.
    pub async fn send(
        &self,
        caller: Caller<'_>,
        request: pb::SendRequest,
    ) -> ServiceResult<impl Future<Output = ServiceResult<pb::SendAck>> + Send + 'static> {
        let kind = self.validate_content(&request)?;
        if !ids::is_client_msg_id(&request.client_msg_id) {
            return Err(ServiceError::invalid(
                "client_msg_id must be 1 to 64 of [A-Za-z0-9_.-]",
            ));
        }
        let (conv_id, group_id, recipients) = if ids::is_user_id(&request.to) {
            if request.to == caller.user_id {
                return Err(ServiceError::invalid("cannot send a message to yourself"));
            }
            // Also answers NOT_FOUND for an unknown recipient.
            super::contacts::check_direct(&*self.store, caller.user_id, &request.to).await?;
            if let Some(pb::send_request::Content::Text(text)) = &request.content
                && text.mention_all
            {
                return Err(ServiceError::invalid("@all is for groups"));
            }
            let recipients: Arc<[String]> =
                Arc::from(vec![caller.user_id.to_owned(), request.to.clone()]);
            (
                ids::single_conv_id(caller.user_id, &request.to),
                String::new(),
                recipients,
            )
        } else if ids::is_group_id(&request.to) {
            let recipients = self.check_group_send(caller.user_id, &request).await?;
            (
                ids::group_conv_id(&request.to),
                request.to.clone(),
                recipients,
            )
        } else {
            return Err(ServiceError::invalid("`to` must be a user_… or group_… id"));
        };

        let mut request = request;
        if let Some(pb::send_request::Content::File(file)) = &request.content {
            let stored = super::files::attach(&*self.store, caller.user_id, kind, file).await?;
            // Whoever can read the conversation can read the file (before the append: a
            // recipient may ask for it as soon as the message arrives).
            self.store
                .add_file_conversation(&stored.file_id, &conv_id)
                .await?;
            request.content = Some(pb::send_request::Content::File(stored));
        }
        let message = pb::Message {
            conv_id,
            from: caller.user_id.to_owned(),
            from_device: caller.device_id.to_owned(),
            to: if group_id.is_empty() {
                request.to
            } else {
                String::new()
            },
            group_id,
            kind: kind as i32,
            content: request.content.map(send_content_to_message),
            client_msg_id: request.client_msg_id,
            ..Default::default()
        };
        // Groups: members already have the conversation in their list (added when they
        // joined), so no per-member write happens per message.
        let participants = if message.group_id.is_empty() {
            recipients.to_vec()
        } else {
            Vec::new()
        };
        let posted = self.post(
            NewMessage::new(message, participants),
            recipients,
            Some(caller),
        );
        let store = self.store.clone();
        let user_id = caller.user_id.to_owned();
        Ok(async move {
            let appended = posted.await?;
            Ok(sent(&*store, &user_id, appended).await)
        })
    }

    /// Appends a message (enqueued before this returns) and, once it is durable, hands
    /// it, encoded once, to every online session of `recipients`; the `origin` session
    /// only advances. Used for chat messages and for SYSTEM messages alike.
    pub fn post(
        &self,
        message: NewMessage,
        recipients: Arc<[String]>,
        origin: Option<Caller<'_>>,
    ) -> impl Future<Output = ServiceResult<Appended>> + Send + 'static {
        let origin = origin.map(|c| (c.user_id.to_owned(), c.session_id));
        let on_commit = {
            let (fan_out, recipients, origin) =
                (self.fan_out.clone(), recipients.clone(), origin.clone());
            // Runs on the store's commit thread, in seq order per conversation: it only
            // encodes the frame and queues it for the fan-out thread, so a 10,000-member
            // group does not hold up the commits (and ACKs) of every other chat.
            move |message: &pb::Message| {
                let job = FanOut::of(message, recipients, origin);
                // Blocks while the fan-out thread is FAN_OUT_QUEUE behind: commits (and
                // so senders) slow down rather than queue without bound.
                if fan_out.send(job).is_err() {
                    tracing::warn!("fan-out thread gone; online devices resume from history");
                }
            }
        };
        let appended = self.store.append_then(message, Some(Box::new(on_commit)));
        let (router, deliveries) = (self.router.clone(), self.deliveries.clone());
        async move {
            let appended = appended.await?;
            // A duplicate is fanned out again: if the broker died between committing
            // the first copy and fanning it out, this is how online receivers get it;
            // lanes drop what a device already has.
            if appended.duplicate {
                let delivered = FanOut::of(&appended.message, recipients, origin).deliver(&router);
                deliveries.fetch_add(delivered as u64, Ordering::Relaxed);
            }
            Ok(appended)
        }
    }

    /// Relays a typing notice to the conversation's other online devices. Nothing is
    /// stored. Returns how many sessions it reached.
    pub async fn typing(&self, caller: Caller<'_>, typing: &pb::Typing) -> ServiceResult<usize> {
        let access = self.access(caller.user_id, &typing.conv_id).await?;
        if access.cap != u64::MAX {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "you left this conversation",
            ));
        }
        let recipients: Arc<[String]> = match Conversation::parse(&typing.conv_id) {
            Some(Conversation::Group { group_id }) => self.members.member_ids(group_id).await?,
            Some(conv @ Conversation::Single { low, high }) => {
                // Someone blocked says nothing, and is not told so.
                let peer = conv.peer_of(caller.user_id).unwrap_or_default();
                if self.store.is_blocked(peer, caller.user_id).await? {
                    return Ok(0);
                }
                Arc::from(vec![low.to_owned(), high.to_owned()])
            }
            None => return Err(ServiceError::invalid("malformed conversation id")),
        };
        let kind = match pb::TypingKind::try_from(typing.kind) {
            Ok(pb::TypingKind::Unspecified) | Err(_) => pb::TypingKind::Typing,
            Ok(kind) => kind,
        };
        let frame = encode_frame_bytes(&pb::ServerFrame {
            req_id: 0,
            body: Some(pb::server_frame::Body::Typing(pb::TypingNotice {
                conv_id: typing.conv_id.clone(),
                from: caller.user_id.to_owned(),
                kind: kind as i32,
                expires_in_ms: self.limits.typing_expires_ms,
            })),
        });
        Ok(self
            .router
            .push(&frame, &recipients, caller.session_id, Push::Ephemeral))
    }

    /// Checks that the caller may send this to the group; returns its members.
    async fn check_group_send(
        &self,
        user_id: &str,
        request: &pb::SendRequest,
    ) -> ServiceResult<Arc<[String]>> {
        let member = self.check_group_speaker(user_id, &request.to).await?;
        let privileged = member.role >= pb::GroupRole::Admin as i32;
        let members = self.members.member_ids(&request.to).await?;
        if let Some(pb::send_request::Content::Text(text)) = &request.content {
            if text.mention_all && !privileged {
                return Err(ServiceError::new(
                    ErrorCode::Forbidden,
                    "only owners and admins may mention @all",
                ));
            }
            if let Some(stranger) = text
                .mention_user_ids
                .iter()
                .find(|id| !members.contains(id))
            {
                return Err(ServiceError::invalid(format!(
                    "{stranger} is not a member of this group"
                )));
            }
        }
        Ok(members)
    }

    /// Whether a user may speak in a group now (send, or edit what they sent): the
    /// group exists and is not dissolved, they are a member, and neither they nor
    /// the whole group (for non-admins) is muted. Returns their membership.
    pub(super) async fn check_group_speaker(
        &self,
        user_id: &str,
        group_id: &str,
    ) -> ServiceResult<crate::store::MemberRecord> {
        let group = self
            .store
            .group(group_id)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such group"))?;
        if group.dissolved {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "the group was dissolved",
            ));
        }
        let member = self.store.member(group_id, user_id).await?.ok_or_else(|| {
            ServiceError::new(ErrorCode::Forbidden, "you are not a member of this group")
        })?;
        let privileged = member.role >= pb::GroupRole::Admin as i32;
        if group.mute_all && !privileged {
            return Err(ServiceError::new(
                ErrorCode::Muted,
                "only owners and admins may send now",
            ));
        }
        if member.muted_until_ms > super::auth::now_ms() {
            return Err(ServiceError::new(
                ErrorCode::Muted,
                "you are muted in this group",
            ));
        }
        Ok(member)
    }

    fn validate_content(&self, request: &pb::SendRequest) -> ServiceResult<pb::MessageKind> {
        use pb::send_request::Content;
        let kind = pb::MessageKind::try_from(request.kind)
            .map_err(|_| ServiceError::invalid("unknown message kind"))?;
        match (kind, &request.content) {
            (pb::MessageKind::Text, Some(Content::Text(text))) => {
                if text.text.trim().is_empty() {
                    return Err(ServiceError::invalid("text is empty"));
                }
                if text.text.len() > self.limits.max_text_bytes {
                    return Err(ServiceError::new(
                        ErrorCode::MessageTooLarge,
                        format!("text is longer than {} bytes", self.limits.max_text_bytes),
                    ));
                }
                if text.mention_user_ids.len() > self.limits.max_mentions
                    || !text.mention_user_ids.iter().all(|id| ids::is_user_id(id))
                {
                    return Err(ServiceError::invalid(
                        "mention_user_ids must be valid user ids",
                    ));
                }
            }
            (pb::MessageKind::Custom, Some(Content::Custom(custom))) => {
                if custom.json.len() > self.limits.max_text_bytes {
                    return Err(ServiceError::new(
                        ErrorCode::MessageTooLarge,
                        format!(
                            "custom content is longer than {} bytes",
                            self.limits.max_text_bytes
                        ),
                    ));
                }
            }
            (
                pb::MessageKind::Image
                | pb::MessageKind::Voice
                | pb::MessageKind::Video
                | pb::MessageKind::File,
                Some(Content::File(file)),
            ) => {
                // The file itself is checked (and the content filled in) in `send`.
                if file.file_id.is_empty() {
                    return Err(ServiceError::invalid("a media message needs a file_id"));
                }
            }
            (pb::MessageKind::System, _) => {
                return Err(ServiceError::new(
                    ErrorCode::Forbidden,
                    "clients cannot send system messages",
                ));
            }
            (pb::MessageKind::Unspecified, _) => {
                return Err(ServiceError::invalid("message kind is required"));
            }
            _ => {
                return Err(ServiceError::invalid(
                    "content does not match the message kind",
                ));
            }
        }
        Ok(kind)
    }

    /// One page of a conversation's history, ascending by seq, limited to what the
    /// caller may see (a group from their joining on, up to their leaving).
    pub async fn history(
        &self,
        caller: Caller<'_>,
        request: &pb::HistoryRequest,
    ) -> ServiceResult<pb::HistoryPage> {
        let access = self.access(caller.user_id, &request.conv_id).await?;
        let limit = match request.limit {
            0 => self.limits.history_default_limit,
            n => n.min(self.limits.history_max_limit),
        } as usize;
        let conv_id = &request.conv_id;
        let (messages, has_more) = match (request.before_seq, request.after_seq) {
            (0, Some(after)) => {
                let from = after.max(access.floor).saturating_add(1);
                let mut messages = self
                    .store
                    .range(conv_id, from, access.cap, limit + 1)
                    .await?;
                let has_more = messages.len() > limit;
                messages.truncate(limit);
                (messages, has_more)
            }
            (before, None) => {
                let before = if before == 0 { u64::MAX } else { before };
                let before = before.min(access.cap.saturating_add(1));
                let (mut messages, mut has_more) =
                    self.store.before(conv_id, before, limit).await?;
                messages.retain(|m| m.seq > access.floor);
                has_more &= messages.first().is_some_and(|m| m.seq > access.floor + 1);
                (messages, has_more)
            }
            (_, Some(_)) => {
                return Err(ServiceError::invalid(
                    "give before_seq or after_seq, not both",
                ));
            }
        };
        Ok(pb::HistoryPage {
            conv_id: request.conv_id.clone(),
            messages,
            has_more,
        })
    }

    /// The user's conversations, newest activity first.
    pub async fn conversations(
        &self,
        caller: Caller<'_>,
        request: &pb::ConversationsRequest,
    ) -> ServiceResult<pb::ConversationList> {
        let offset: usize = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse()
                .map_err(|_| ServiceError::invalid("page_token is not one this broker issued"))?
        };
        let limit = match request.limit {
            0 => self.limits.history_default_limit,
            n => n.min(self.limits.conversations_max_limit),
        } as usize;
        let mut summaries = Vec::new();
        for conv_id in self.store.user_conversations(caller.user_id).await? {
            let Ok(access) = self.access(caller.user_id, &conv_id).await else {
                continue;
            };
            let last_seq = self.store.last_seq(&conv_id).await?.min(access.cap);
            let last_message = self
                .last_visible_message(&conv_id, last_seq)
                .await?
                .filter(|m| m.seq > access.floor);
            let read_seq = self
                .store
                .read_seq(caller.user_id, &conv_id)
                .await?
                .max(access.floor)
                .min(last_seq);
            // RECALL/EDIT events are not messages to read.
            let events = self
                .store
                .amendments_in(&conv_id, read_seq + 1, last_seq)
                .await?;
            let mentioned = self.store.mention_seq(caller.user_id, &conv_id).await? > read_seq;
            let peer_id = match Conversation::parse(&conv_id) {
                Some(Conversation::Group { group_id }) => group_id.to_owned(),
                Some(conv) => conv.peer_of(caller.user_id).unwrap_or_default().to_owned(),
                None => continue,
            };
            summaries.push(pb::ConversationSummary {
                conv_id,
                peer_id,
                last_message,
                last_seq,
                read_seq,
                unread: (last_seq - read_seq).saturating_sub(events),
                mentioned,
            });
        }
        let activity =
            |s: &pb::ConversationSummary| s.last_message.as_ref().map_or(0, |m| m.sent_at_ms);
        summaries.sort_by(|a, b| {
            activity(b)
                .cmp(&activity(a))
                .then_with(|| a.conv_id.cmp(&b.conv_id))
        });
        let total = summaries.len();
        let conversations: Vec<_> = summaries.into_iter().skip(offset).take(limit).collect();
        let next_page_token = if offset + conversations.len() < total {
            (offset + conversations.len()).to_string()
        } else {
            String::new()
        };
        Ok(pb::ConversationList {
            conversations,
            next_page_token,
        })
    }

    /// The newest message at or before `last_seq` that is not a RECALL/EDIT event.
    async fn last_visible_message(
        &self,
        conv_id: &str,
        last_seq: u64,
    ) -> ServiceResult<Option<pb::Message>> {
        const LOOK_BACK: usize = 32;
        let (messages, _) = self
            .store
            .before(conv_id, last_seq.saturating_add(1), LOOK_BACK)
            .await?;
        Ok(messages.into_iter().rev().find(|m| !is_amendment(m)))
    }

    /// Stores a device's delivered and read reports. Seqs past the end are clamped.
    /// Returns the user-level marks that moved, for receipts.
    pub async fn report(
        &self,
        caller: Caller<'_>,
        report: pb::ReportCursors,
    ) -> ServiceResult<Vec<MarksMoved>> {
        if report.reports.len() > self.limits.max_reports {
            return Err(ServiceError::invalid(format!(
                "at most {} reports per frame",
                self.limits.max_reports
            )));
        }
        let mut updates = Vec::with_capacity(report.reports.len());
        for entry in report.reports {
            let access = self.access(caller.user_id, &entry.conv_id).await?;
            let last = self.store.last_seq(&entry.conv_id).await?.min(access.cap);
            updates.push(CursorUpdate {
                delivered_seq: entry.delivered_seq.min(last),
                read_seq: entry.read_seq.min(last),
                conv_id: entry.conv_id,
            });
        }
        Ok(self
            .store
            .update_cursors(caller.user_id, caller.device_id, updates)
            .await?)
    }

    /// Where each of the user's conversations stands for a connecting device. Cursors
    /// from the Hello win over the stored ones; cursors past the end are clamped, and
    /// so are cursors before a group member's joining; cursors naming conversations
    /// the user is not in are refused.
    pub async fn sync_points(
        &self,
        caller: Caller<'_>,
        hello_cursors: &[pb::Cursor],
    ) -> ServiceResult<Vec<SyncPoint>> {
        for cursor in hello_cursors {
            self.access(caller.user_id, &cursor.conv_id).await?;
        }
        let stored: std::collections::HashMap<String, u64> = self
            .store
            .device_cursors(caller.user_id, caller.device_id)
            .await?
            .into_iter()
            .collect();
        let mut points = Vec::new();
        for conv_id in self.store.user_conversations(caller.user_id).await? {
            let Ok(access) = self.access(caller.user_id, &conv_id).await else {
                continue;
            };
            let last_seq = self.store.last_seq(&conv_id).await?.min(access.cap);
            let from_hello = hello_cursors
                .iter()
                .find(|c| c.conv_id == conv_id)
                .map(|c| c.seq);
            let cursor = from_hello
                .or_else(|| stored.get(&conv_id).copied())
                .unwrap_or(0)
                .max(access.floor)
                .min(last_seq);
            points.push(SyncPoint {
                from_hello: from_hello == Some(cursor),
                conv_id,
                cursor,
                last_seq,
                cap: access.cap,
            });
        }
        Ok(points)
    }

    /// Committed messages `from..=to` of a conversation, for lane catch-up.
    pub async fn read_range(
        &self,
        conv_id: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> ServiceResult<Vec<pb::Message>> {
        Ok(self.store.range(conv_id, from, to, limit).await?)
    }

    pub async fn last_seq(&self, conv_id: &str) -> ServiceResult<u64> {
        Ok(self.store.last_seq(conv_id).await?)
    }

    /// What part of a conversation the user may see. Refuses malformed ids and
    /// conversations the user never took part in.
    pub async fn access(&self, user_id: &str, conv_id: &str) -> ServiceResult<Access> {
        let forbidden =
            || ServiceError::new(ErrorCode::Forbidden, "you are not in this conversation");
        match Conversation::parse(conv_id) {
            None => Err(ServiceError::invalid(format!(
                "malformed conversation id {conv_id:?}"
            ))),
            Some(conv @ Conversation::Single { .. }) => {
                if conv.is_single_party(user_id) {
                    Ok(Access::ALL)
                } else {
                    Err(forbidden())
                }
            }
            Some(Conversation::Group { group_id }) => {
                if let Some(member) = self.store.member(group_id, user_id).await? {
                    return Ok(Access {
                        floor: member.joined_after_seq,
                        cap: u64::MAX,
                    });
                }
                match self.store.former_member(group_id, user_id).await? {
                    Some(former) => Ok(Access {
                        floor: former.joined_after_seq,
                        cap: former.left_seq,
                    }),
                    None => Err(forbidden()),
                }
            }
        }
    }
}

/// The ACK of an appended message. Sending a message means having read the
/// conversation up to it, so it also moves the sender's read mark.
async fn sent(store: &dyn Store, user_id: &str, appended: Appended) -> pb::SendAck {
    let message = appended.message;
    if let Err(error) = store
        .mark_sent(user_id, &message.conv_id, message.seq)
        .await
    {
        tracing::warn!(%error, "could not move the sender's read mark");
    }
    ack_of(message, appended.duplicate)
}

/// The ACK of a stored message (`duplicate`: for a resend of it).
pub(crate) fn ack_of(message: pb::Message, duplicate: bool) -> pb::SendAck {
    pb::SendAck {
        client_msg_id: message.client_msg_id,
        msg_id: message.msg_id,
        conv_id: message.conv_id,
        seq: message.seq,
        sent_at_ms: message.sent_at_ms,
        duplicate,
    }
}

/// Committed messages the fan-out thread may lag behind by before commits wait.
const FAN_OUT_QUEUE: usize = 65_536;

/// A committed message, encoded once, for every online session of `recipients`; the
/// `origin` session (user id, session id) only advances past it.
struct FanOut {
    conv_id: Arc<str>,
    seq: u64,
    frame: bytes::Bytes,
    recipients: Arc<[String]>,
    origin: Option<(String, u64)>,
}

impl FanOut {
    /// Encodes `message` once for all its recipients.
    fn of(message: &pb::Message, recipients: Arc<[String]>, origin: Option<(String, u64)>) -> Self {
        Self {
            conv_id: Arc::from(message.conv_id.as_str()),
            seq: message.seq,
            frame: deliver_frame(message),
            recipients,
            origin,
        }
    }

    /// Returns how many sessions here got the message.
    fn deliver(&self, router: &Router) -> usize {
        let origin = self.origin.as_ref().map(|(user_id, session_id)| Origin {
            user_id,
            session_id: *session_id,
        });
        router.deliver(
            &self.conv_id,
            self.seq,
            &self.frame,
            &self.recipients,
            origin,
        )
    }
}

/// The thread that hands committed messages to the router, one at a time in commit
/// order (so every lane receives each conversation in seq order). It ends when the
/// chat service is dropped.
fn spawn_fan_out(
    router: Arc<Router>,
    deliveries: Arc<AtomicU64>,
) -> crossbeam_channel::Sender<FanOut> {
    let (tx, rx) = crossbeam_channel::bounded::<FanOut>(FAN_OUT_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("quip-fan-out".into())
        .spawn(move || {
            for job in rx {
                let delivered = job.deliver(&router);
                deliveries.fetch_add(delivered as u64, Ordering::Relaxed);
            }
        });
    if let Err(error) = spawned {
        // Without it the commit hooks find the channel closed and log; devices still
        // get every message when they next sync.
        tracing::error!(%error, "cannot start the fan-out thread");
    }
    tx
}

/// A `Deliver` frame for `message`, encoded once for every recipient.
pub fn deliver_frame(message: &pb::Message) -> bytes::Bytes {
    let frame = pb::ServerFrame {
        req_id: 0,
        body: Some(pb::server_frame::Body::Deliver(pb::Deliver {
            message: Some(message.clone()),
        })),
    };
    debug_assert!(frame.encoded_len() > 0);
    encode_frame_bytes(&frame)
}

/// Whether a message is a RECALL or EDIT event rather than a message to show.
pub fn is_amendment(message: &pb::Message) -> bool {
    message.kind == pb::MessageKind::Recall as i32 || message.kind == pb::MessageKind::Edit as i32
}

fn send_content_to_message(content: pb::send_request::Content) -> pb::message::Content {
    use pb::message::Content as M;
    use pb::send_request::Content as S;
    match content {
        S::Text(text) => M::Text(text),
        S::File(file) => M::File(file),
        S::Custom(custom) => M::Custom(custom),
    }
}
