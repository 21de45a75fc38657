//! Read and delivered receipts.
//!
//! Devices report how far they have received and read (`ReportCursors`); the store
//! keeps one read and one delivered mark per user and conversation (the max over the
//! user's devices). When a report moves a user's mark, a `Receipt` is pushed on the
//! control stream to: the user's other devices (their unread counts follow), the 1:1
//! partner, and in a group the senders of the messages just read. Nobody else in a
//! group is pushed to: "read by N of M" is a query, one scan of the conversation's
//! marks, rather than N×M pushes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use quip_protocol::ids::Conversation;
use quip_protocol::{encode_frame_bytes, pb};

use super::chat::is_amendment;
use super::{Caller, ChatService, ServiceError, ServiceResult};
use crate::router::{Push, Router};
use crate::store::{MarksMoved, Store};

/// Newest messages looked at to find whom a group read receipt concerns.
const SENDERS_LOOK_BACK: usize = 50;

#[derive(Debug)]
pub struct ReceiptService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    chat: Arc<ChatService>,
    /// Most seqs per count query, and most readers per page.
    max_seqs: usize,
}

impl ReceiptService {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        chat: Arc<ChatService>,
        max_seqs: usize,
    ) -> Self {
        Self {
            store,
            router,
            chat,
            max_seqs,
        }
    }

    /// Stores a device's report and pushes receipts for the marks it moved.
    pub async fn report(&self, caller: Caller<'_>, report: pb::ReportCursors) -> ServiceResult<()> {
        for moved in self.chat.report(caller, report).await? {
            if let Err(error) = self.push(caller, &moved).await {
                tracing::warn!(%error, conv = %moved.conv_id, "cannot push a receipt");
            }
        }
        Ok(())
    }

    async fn push(&self, caller: Caller<'_>, moved: &MarksMoved) -> ServiceResult<()> {
        let conv = Conversation::parse(&moved.conv_id)
            .ok_or_else(|| ServiceError::invalid("malformed conversation id"))?;
        let mut recipients = vec![caller.user_id.to_owned()];
        let mut receipt = pb::Receipt {
            conv_id: moved.conv_id.clone(),
            user_id: caller.user_id.to_owned(),
            read_seq: moved.read_seq,
            delivered_seq: moved.delivered_seq,
        };
        match conv {
            Conversation::Single { .. } => {
                recipients.extend(conv.peer_of(caller.user_id).map(str::to_owned));
            }
            Conversation::Group { .. } => {
                // Delivered marks in groups are for the counts only.
                receipt.delivered_seq = 0;
                if receipt.read_seq == 0 {
                    return Ok(());
                }
                let (recent, _) = self
                    .store
                    .before(&moved.conv_id, moved.read_seq + 1, SENDERS_LOOK_BACK)
                    .await?;
                for message in recent {
                    if !message.from.is_empty()
                        && !is_amendment(&message)
                        && !recipients.contains(&message.from)
                    {
                        recipients.push(message.from);
                    }
                }
            }
        }
        let frame = encode_frame_bytes(&pb::ServerFrame {
            req_id: 0,
            body: Some(pb::server_frame::Body::Receipt(receipt)),
        });
        self.router
            .push(&frame, &recipients, caller.session_id, Push::Reliable);
        Ok(())
    }

    /// "Read by N of M" (and delivered to N) for some messages, the sender excluded.
    pub async fn counts(
        &self,
        caller: Caller<'_>,
        request: &pb::ReceiptsRequest,
    ) -> ServiceResult<pb::ReceiptCounts> {
        if request.seqs.len() > self.max_seqs {
            return Err(ServiceError::invalid(format!(
                "at most {} seqs per query",
                self.max_seqs
            )));
        }
        let access = self.chat.access(caller.user_id, &request.conv_id).await?;
        let audience = self.audience(&request.conv_id).await?;
        let reads: HashMap<String, u64> = self
            .store
            .read_marks(&request.conv_id)
            .await?
            .into_iter()
            .collect();
        let delivered: HashMap<String, u64> = self
            .store
            .delivered_marks(&request.conv_id)
            .await?
            .into_iter()
            .collect();
        let mut counts = Vec::with_capacity(request.seqs.len());
        for &seq in &request.seqs {
            let mut count = pb::ReceiptCount {
                seq,
                ..Default::default()
            };
            if seq > access.floor && seq <= access.cap {
                if let Some(message) = self.store.range(&request.conv_id, seq, seq, 1).await?.pop()
                {
                    for (user_id, joined_after_seq) in &audience {
                        if *user_id == message.from || *joined_after_seq >= seq {
                            continue;
                        }
                        count.recipients += 1;
                        let read = reads.get(user_id).is_some_and(|r| *r >= seq);
                        count.read += u32::from(read);
                        // Reading implies having received.
                        count.delivered +=
                            u32::from(read || delivered.get(user_id).is_some_and(|d| *d >= seq));
                    }
                }
            }
            counts.push(count);
        }
        Ok(pb::ReceiptCounts {
            conv_id: request.conv_id.clone(),
            counts,
        })
    }

    /// Who has read message `seq`, by user id, the sender excluded.
    pub async fn readers(
        &self,
        caller: Caller<'_>,
        request: &pb::ReadersRequest,
    ) -> ServiceResult<pb::Readers> {
        let access = self.chat.access(caller.user_id, &request.conv_id).await?;
        let limit = match request.limit as usize {
            0 => self.max_seqs,
            n => n.min(self.max_seqs),
        };
        let mut user_ids = Vec::new();
        let mut next_after_user_id = String::new();
        let message = if request.seq > access.floor && request.seq <= access.cap {
            self.store
                .range(&request.conv_id, request.seq, request.seq, 1)
                .await?
                .pop()
        } else {
            None
        };
        if let Some(message) = message {
            let audience: HashSet<String> = self
                .audience(&request.conv_id)
                .await?
                .into_iter()
                .filter(|(_, joined_after)| *joined_after < request.seq)
                .map(|(user_id, _)| user_id)
                .collect();
            for (user_id, read) in self.store.read_marks(&request.conv_id).await? {
                if read < request.seq
                    || user_id == message.from
                    || user_id.as_str() <= request.after_user_id.as_str()
                    || !audience.contains(&user_id)
                {
                    continue;
                }
                if user_ids.len() == limit {
                    next_after_user_id = user_ids.last().cloned().unwrap_or_default();
                    break;
                }
                user_ids.push(user_id);
            }
        }
        Ok(pb::Readers {
            conv_id: request.conv_id.clone(),
            seq: request.seq,
            user_ids,
            next_after_user_id,
        })
    }

    /// Who can read a conversation now, with the seq they see it after.
    async fn audience(&self, conv_id: &str) -> ServiceResult<Vec<(String, u64)>> {
        match Conversation::parse(conv_id) {
            Some(Conversation::Single { low, high }) => {
                Ok(vec![(low.to_owned(), 0), (high.to_owned(), 0)])
            }
            Some(Conversation::Group { group_id }) => {
                const PAGE: usize = 1000;
                let mut audience = Vec::new();
                let mut after = String::new();
                loop {
                    let page = self.store.members(group_id, &after, PAGE).await?;
                    let full = page.len() == PAGE;
                    for member in page {
                        after = member.user_id.clone();
                        audience.push((member.user_id, member.joined_after_seq));
                    }
                    if !full {
                        return Ok(audience);
                    }
                }
            }
            None => Err(ServiceError::invalid("malformed conversation id")),
        }
    }
}
