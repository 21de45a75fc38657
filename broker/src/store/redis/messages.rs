//! Reading a conversation: its seq, messages, mentions and amendment events.
//!
//! Everything an append writes appears at once (one script), so whatever Redis shows
//! is committed: reads are capped at the conversation's seq only because they read it
//! first. Seqs are dense, so a range of messages is one HMGET of the seqs in it, no
//! scan.

use prost::Message as _;
use quip_protocol::pb;

use super::{RedisStore, keys};
use crate::store::StoreError;

/// Most seqs asked for in one HMGET.
const CHUNK: u64 = 1024;

impl RedisStore {
    pub(super) async fn last_seq_now(&self, conv_id: &str) -> Result<u64, StoreError> {
        let seq: Option<u64> = self
            .query(::redis::cmd("GET").arg(keys::seq(conv_id)))
            .await?;
        Ok(seq.unwrap_or(0))
    }

    pub(super) async fn range_now(
        &self,
        conv_id: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<pb::Message>, StoreError> {
        let to = to.min(self.last_seq_now(conv_id).await?);
        let from = from.max(1);
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let count = (to - from + 1).min(limit as u64);
        self.messages_between(conv_id, from, from + count - 1).await
    }

    pub(super) async fn before_now(
        &self,
        conv_id: &str,
        before: u64,
        limit: usize,
    ) -> Result<(Vec<pb::Message>, bool), StoreError> {
        let to = before
            .saturating_sub(1)
            .min(self.last_seq_now(conv_id).await?);
        if to == 0 || limit == 0 {
            return Ok((Vec::new(), false));
        }
        let from = to - to.min(limit as u64) + 1;
        let messages = self.messages_between(conv_id, from, to).await?;
        let has_more = messages.first().is_some_and(|m| m.seq > 1);
        Ok((messages, has_more))
    }

    /// Messages `from..=to` (all below the seq read), ascending.
    async fn messages_between(
        &self,
        conv_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<pb::Message>, StoreError> {
        let key = keys::messages(conv_id);
        let mut messages = Vec::with_capacity((to - from + 1).min(CHUNK) as usize);
        let mut start = from;
        while start <= to {
            let end = to.min(start + CHUNK - 1);
            let seqs: Vec<u64> = (start..=end).collect();
            let raws: Vec<Option<Vec<u8>>> = self
                .query(::redis::cmd("HMGET").arg(&key).arg(seqs))
                .await?;
            for raw in raws.into_iter().flatten() {
                messages.push(pb::Message::decode(raw.as_slice())?);
            }
            start = end + 1;
        }
        Ok(messages)
    }

    /// The sender's `sent:` pointer names the conversation; its dedup key (set by the
    /// append script with the message) names the seq. A pointer whose append failed
    /// finds no dedup key: nothing uncommitted is ever returned.
    pub(super) async fn sent_now(
        &self,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<Option<pb::Message>, StoreError> {
        let conv_id: Option<String> = self
            .query(::redis::cmd("GET").arg(keys::sent(sender, client_msg_id)))
            .await?;
        let Some(conv_id) = conv_id else {
            return Ok(None);
        };
        let seq: Option<u64> = self
            .query(::redis::cmd("GET").arg(keys::dedup(&conv_id, sender, client_msg_id)))
            .await?;
        let Some(seq) = seq else {
            return Ok(None);
        };
        self.hash_record(keys::messages(&conv_id), &seq.to_string())
            .await
    }

    pub(super) async fn mention_seq_now(
        &self,
        user_id: &str,
        conv_id: &str,
    ) -> Result<u64, StoreError> {
        let seqs: Vec<Option<u64>> = self
            .query(
                ::redis::cmd("HMGET")
                    .arg(keys::mentions(conv_id))
                    .arg(user_id)
                    .arg(keys::MENTION_ALL),
            )
            .await?;
        Ok(seqs.into_iter().flatten().max().unwrap_or(0))
    }

    pub(super) async fn amendments_in_now(
        &self,
        conv_id: &str,
        from: u64,
        to: u64,
    ) -> Result<u64, StoreError> {
        if from > to {
            return Ok(0);
        }
        self.query(
            ::redis::cmd("ZCOUNT")
                .arg(keys::amendments(conv_id))
                .arg(from)
                .arg(to),
        )
        .await
    }
}
