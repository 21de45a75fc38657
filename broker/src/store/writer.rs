//! The single writer thread and its flusher: where group commit happens.
//!
//! sled is a synchronous API, so appends leave the async workers over a crossbeam
//! channel. One thread owns seq assignment and dedup (so a conversation's appends are
//! atomic without any lock), applies each batch of queued appends as one atomic sled
//! batch, and hands the batch to the flusher. In `fsync` mode the flusher takes every
//! batch that queued up while its previous flush ran and covers them all with one
//! flush: that is the group commit, and it pipelines with the writer applying the next
//! batch. Only after that flush are the conversations' committed seqs raised and the
//! appends answered.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use dashmap::DashMap;
use prost::Message as _;
use quip_protocol::{ids, pb};
use tokio::sync::oneshot;

use super::records::{DedupRecord, FormerMemberRecord};
use super::{
    Amend, AmendChange, Appended, Durability, GroupWrite, NewMessage, OnCommit, StoreError,
    StoreStats, keys,
};
use crate::metrics::StoreWriterMetrics;

/// Caps the writer's caches; past this many entries they are cleared and refilled
/// from the tree on demand.
const CACHE_CAP: usize = 1 << 20;

/// Where an append's outcome goes, and what runs first when it committed.
pub(crate) struct AppendReply {
    pub tx: oneshot::Sender<Result<Appended, StoreError>>,
    pub on_commit: Option<OnCommit>,
}

pub(crate) struct AppendJob {
    pub message: NewMessage,
    pub reply: AppendReply,
}

/// State shared between the writer, the flusher and readers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Highest durable seq of every conversation the writer has touched since start.
    /// A conversation absent here has not been written since start, so all of it that
    /// is in the tree is durable.
    pub committed: DashMap<String, u64>,
    pub appends: AtomicU64,
    pub flushes: AtomicU64,
    pub batches: AtomicU64,
}

impl Shared {
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            appends: self.appends.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, commits: &[(String, u64)]) {
        for (conv_id, seq) in commits {
            let mut entry = self.committed.entry(conv_id.clone()).or_insert(0);
            if *entry < *seq {
                *entry = *seq;
            }
        }
    }
}

/// One applied batch on its way to the flusher.
struct Applied {
    replies: Vec<(AppendReply, Result<Appended, StoreError>)>,
    commits: Vec<(String, u64)>,
}

pub(crate) struct WriterConfig {
    pub durability: Durability,
    pub dedup_window_ms: u64,
    pub max_batch: usize,
    /// Batch sizes and queue length for `GET /metrics`, when the broker opened us.
    pub metrics: Option<Arc<StoreWriterMetrics>>,
}

/// Starts the writer (and, for fsync, the flusher) thread. Both stop when every
/// sender of the returned channel is dropped, after finishing the queued work.
pub(crate) fn spawn(
    db: sled::Db,
    tree: sled::Tree,
    shared: Arc<Shared>,
    config: WriterConfig,
    queue_len: usize,
) -> std::io::Result<(Sender<AppendJob>, Vec<std::thread::JoinHandle<()>>)> {
    let (tx, rx) = crossbeam_channel::bounded(queue_len);
    let mut threads = Vec::new();
    let metrics = config.metrics.clone();
    let flush_tx = match config.durability {
        Durability::Os => None,
        Durability::Fsync => {
            // Bounded: if flushes fall behind, the writer waits, and so do senders.
            let (flush_tx, flush_rx) = crossbeam_channel::bounded::<Applied>(64);
            let shared = shared.clone();
            let metrics = metrics.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("quip-store-flusher".into())
                    .spawn(move || flusher_loop(db, flush_rx, shared, metrics))?,
            );
            Some(flush_tx)
        }
    };
    let mut writer = Writer {
        tree,
        shared,
        config,
        last_seq: HashMap::new(),
        known_user_convs: HashSet::new(),
        metrics,
    };
    threads.push(
        std::thread::Builder::new()
            .name("quip-store-writer".into())
            .spawn(move || writer.run(rx, flush_tx))?,
    );
    Ok((tx, threads))
}

struct Writer {
    tree: sled::Tree,
    shared: Arc<Shared>,
    config: WriterConfig,
    /// Highest assigned seq per conversation (may be ahead of committed).
    last_seq: HashMap<String, u64>,
    /// `u` keys known to exist, to skip re-inserting them on every message.
    known_user_convs: HashSet<Vec<u8>>,
    metrics: Option<Arc<StoreWriterMetrics>>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<AppendJob>, flush_tx: Option<Sender<Applied>>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = Vec::with_capacity(64);
            jobs.push(first);
            while jobs.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if let Some(metrics) = &self.metrics {
                metrics.queued(rx.len());
            }
            let applied = self.apply(jobs);
            match &flush_tx {
                Some(flush_tx) => {
                    if let Err(crossbeam_channel::SendError(applied)) = flush_tx.send(applied) {
                        // The flusher is gone: nothing can be made durable any more,
                        // so nothing may be acknowledged.
                        tracing::error!("store flusher stopped; refusing appends");
                        fail(applied.replies, "store flusher stopped");
                    }
                }
                None => {
                    if let Some(metrics) = &self.metrics {
                        metrics.committed(applied.commits.len());
                    }
                    self.shared.publish(&applied.commits);
                    answer(applied.replies);
                }
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn apply(&mut self, jobs: Vec<AppendJob>) -> Applied {
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut replies = Vec::with_capacity(jobs.len());
        let mut commits = Vec::with_capacity(jobs.len());
        // Dedup within this batch, before its records reach the tree.
        let mut in_batch: HashMap<Vec<u8>, pb::Message> = HashMap::new();
        let mut new_user_convs = Vec::new();
        // Messages rewritten by amendments in this batch, by message key, and the
        // amendment events appended in it: later amendments must see both.
        let mut rewritten: HashMap<Vec<u8>, pb::Message> = HashMap::new();
        let mut batch_amendments: Vec<(String, u64, u64)> = Vec::new();

        for AppendJob { message, reply } in jobs {
            let NewMessage {
                mut message,
                participants,
                group_writes,
                amend,
            } = message;
            let dedup_key = keys::dedup(&message.from, &message.client_msg_id);
            if let Some(original) = in_batch.get(&dedup_key) {
                replies.push((reply, Ok(duplicate(original.clone()))));
                continue;
            }
            match self.stored_duplicate(&dedup_key, now) {
                Ok(Some(original)) => {
                    replies.push((reply, Ok(duplicate(original))));
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    replies.push((reply, Err(error)));
                    continue;
                }
            }
            // Checked before a seq is taken, so a refused amendment leaves no gap.
            let rewrites = match &amend {
                None => Vec::new(),
                Some(amend) => {
                    let context = BatchView {
                        rewritten: &rewritten,
                        in_batch: &in_batch,
                        amendments: &batch_amendments,
                    };
                    match self.amend(&context, &message, amend, now) {
                        Ok(rewrites) => rewrites,
                        Err(error) => {
                            replies.push((reply, Err(error)));
                            continue;
                        }
                    }
                }
            };
            let seq = match self.next_seq(&message.conv_id) {
                Ok(seq) => seq,
                Err(error) => {
                    replies.push((reply, Err(error)));
                    continue;
                }
            };
            message.seq = seq;
            message.sent_at_ms = now;
            message.msg_id = ids::new_msg_id(now, rand::random());
            if let Some(amend) = &amend {
                batch.insert(
                    keys::amendment(&message.conv_id, seq),
                    &amend.target_seq.to_be_bytes()[..],
                );
                batch_amendments.push((message.conv_id.clone(), seq, amend.target_seq));
                for rewrite in rewrites {
                    let key = keys::message(&rewrite.conv_id, rewrite.seq);
                    batch.insert(key.clone(), rewrite.encode_to_vec());
                    rewritten.insert(key, rewrite);
                }
            }
            batch.insert(
                keys::message(&message.conv_id, seq),
                message.encode_to_vec(),
            );
            let record = DedupRecord {
                conv_id: message.conv_id.clone(),
                seq,
                expires_at_ms: now.saturating_add(self.config.dedup_window_ms),
            };
            batch.insert(dedup_key.clone(), record.encode_to_vec());
            for user_id in &participants {
                let key = keys::user_conv(user_id, &message.conv_id);
                if !self.known_user_convs.contains(&key) {
                    batch.insert(key.clone(), &[][..]);
                    new_user_convs.push(key);
                }
            }
            record_mentions(&mut batch, &message);
            for write in group_writes {
                apply_group_write(&mut batch, write, seq);
            }
            commits.push((message.conv_id.clone(), seq));
            in_batch.insert(dedup_key, message.clone());
            replies.push((
                reply,
                Ok(Appended {
                    message,
                    duplicate: false,
                }),
            ));
        }

        if commits.is_empty() {
            return Applied { replies, commits };
        }
        if let Err(error) = self.tree.apply_batch(batch) {
            tracing::error!(%error, "store batch failed");
            // Forget assigned seqs: they were not stored and must be reused.
            for (conv_id, _) in &commits {
                self.last_seq.remove(conv_id);
            }
            // Fail every reply of the batch, duplicates included: a duplicate found in
            // this batch points at an original that was just lost. Clients retry with
            // the same client_msg_id.
            let message = error.to_string();
            let replies = replies
                .into_iter()
                .map(|(reply, _)| (reply, Err(StoreError::Unavailable(message.clone()))))
                .collect();
            return Applied {
                replies,
                commits: Vec::new(),
            };
        }
        if self.known_user_convs.len() > CACHE_CAP {
            self.known_user_convs.clear();
        }
        self.known_user_convs.extend(new_user_convs);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared
            .appends
            .fetch_add(commits.len() as u64, Ordering::Relaxed);
        Applied { replies, commits }
    }

    fn stored_duplicate(
        &self,
        dedup_key: &[u8],
        now: u64,
    ) -> Result<Option<pb::Message>, StoreError> {
        stored_duplicate(&self.tree, dedup_key, now)
    }

    /// The messages an amendment rewrites (its target, and for a recall the EDIT
    /// events that carried the target's text), checked against their state now.
    fn amend(
        &self,
        view: &BatchView<'_>,
        event: &pb::Message,
        amend: &Amend,
        now: u64,
    ) -> Result<Vec<pb::Message>, StoreError> {
        let conv_id = &event.conv_id;
        let mut target = view
            .message(&self.tree, conv_id, amend.target_seq)?
            .ok_or_else(|| StoreError::Conflict("no such message".into()))?;
        super::amend::rewrite_target(&mut target, &amend.change, now)?;
        let mut rewrites = Vec::new();
        match &amend.change {
            AmendChange::Edit { .. } => {}
            AmendChange::Recall { .. } => {
                for edit_seq in view.edits_of(&self.tree, conv_id, amend.target_seq)? {
                    let Some(mut edit) = view.message(&self.tree, conv_id, edit_seq)? else {
                        continue;
                    };
                    super::amend::erase_edit_text(&mut edit);
                    rewrites.push(edit);
                }
            }
        }
        rewrites.push(target);
        Ok(rewrites)
    }

    fn next_seq(&mut self, conv_id: &str) -> Result<u64, StoreError> {
        if let Some(last) = self.last_seq.get_mut(conv_id) {
            *last += 1;
            return Ok(*last);
        }
        if self.last_seq.len() > CACHE_CAP {
            self.last_seq.clear();
        }
        let last = last_stored_seq(&self.tree, conv_id)?;
        // Readers consult `committed` first; entering the conversation before anything
        // new is applied keeps them from reading a not-yet-durable message.
        self.shared
            .committed
            .entry(conv_id.to_owned())
            .or_insert(last);
        self.last_seq.insert(conv_id.to_owned(), last + 1);
        Ok(last + 1)
    }
}

/// The original message of a `(sender, client_msg_id)` still inside its window, as
/// the tree has it (possibly not durable yet: callers outside the writer must check
/// the committed seq).
pub(crate) fn stored_duplicate(
    tree: &sled::Tree,
    dedup_key: &[u8],
    now: u64,
) -> Result<Option<pb::Message>, StoreError> {
    let Some(raw) = tree.get(dedup_key)? else {
        return Ok(None);
    };
    let record = DedupRecord::decode(raw.as_ref())?;
    if record.expires_at_ms <= now {
        return Ok(None);
    }
    let Some(raw) = tree.get(keys::message(&record.conv_id, record.seq))? else {
        return Ok(None);
    };
    Ok(Some(pb::Message::decode(raw.as_ref())?))
}

/// The tree as the batch being built will leave it, for amendments.
struct BatchView<'a> {
    rewritten: &'a HashMap<Vec<u8>, pb::Message>,
    /// Messages appended in this batch, by dedup key.
    in_batch: &'a HashMap<Vec<u8>, pb::Message>,
    /// (conv, event seq, target seq) of amendment events appended in this batch.
    amendments: &'a [(String, u64, u64)],
}

impl BatchView<'_> {
    fn message(
        &self,
        tree: &sled::Tree,
        conv_id: &str,
        seq: u64,
    ) -> Result<Option<pb::Message>, StoreError> {
        let key = keys::message(conv_id, seq);
        if let Some(message) = self.rewritten.get(&key) {
            return Ok(Some(message.clone()));
        }
        // Amendments are rare: a linear look through this batch's appends is fine.
        if let Some(message) = self
            .in_batch
            .values()
            .find(|m| m.seq == seq && m.conv_id == conv_id)
        {
            return Ok(Some(message.clone()));
        }
        Ok(match tree.get(&key)? {
            Some(raw) => Some(pb::Message::decode(raw.as_ref())?),
            None => None,
        })
    }

    /// Seqs of the amendment events of `target_seq` (all of them: recalls refuse a
    /// recalled target, so any found are edits).
    fn edits_of(
        &self,
        tree: &sled::Tree,
        conv_id: &str,
        target_seq: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut seqs = Vec::new();
        let start = keys::amendment(conv_id, target_seq.saturating_add(1));
        let prefix = keys::amendment_prefix(conv_id);
        for entry in tree.range(start..) {
            let (key, value) = entry?;
            if !key.starts_with(&prefix) {
                break;
            }
            if super::cursor_buffer::read_u64(Some(value)) == target_seq {
                seqs.push(keys::seq_of_message_key(&key));
            }
        }
        seqs.extend(
            self.amendments
                .iter()
                .filter(|(conv, _, target)| conv == conv_id && *target == target_seq)
                .map(|(_, seq, _)| *seq),
        );
        Ok(seqs)
    }
}

/// Mention marks, so the conversation list can say "mentioned me" without scanning.
fn record_mentions(batch: &mut sled::Batch, message: &pb::Message) {
    let Some(pb::message::Content::Text(text)) = &message.content else {
        return;
    };
    let seq = message.seq.to_be_bytes();
    for user_id in &text.mention_user_ids {
        batch.insert(keys::mention(user_id, &message.conv_id), &seq[..]);
    }
    if text.mention_all {
        batch.insert(keys::mention_all(&message.conv_id), &seq[..]);
    }
}

fn apply_group_write(batch: &mut sled::Batch, write: GroupWrite, seq: u64) {
    match write {
        GroupWrite::Group(group) => {
            batch.insert(keys::group(&group.group_id), group.encode_to_vec())
        }
        GroupWrite::Join(mut member) => {
            member.joined_after_seq = seq - 1;
            batch.remove(keys::former_member(&member.group_id, &member.user_id));
            batch.remove(keys::join_request(&member.group_id, &member.user_id));
            batch.insert(
                keys::member(&member.group_id, &member.user_id),
                member.encode_to_vec(),
            );
        }
        GroupWrite::Update(member) => batch.insert(
            keys::member(&member.group_id, &member.user_id),
            member.encode_to_vec(),
        ),
        GroupWrite::Leave {
            group_id,
            user_id,
            joined_after_seq,
        } => {
            batch.remove(keys::member(&group_id, &user_id));
            let former = FormerMemberRecord {
                joined_after_seq,
                left_seq: seq,
            };
            batch.insert(
                keys::former_member(&group_id, &user_id),
                former.encode_to_vec(),
            );
        }
    }
}

fn flusher_loop(
    db: sled::Db,
    rx: Receiver<Applied>,
    shared: Arc<Shared>,
    metrics: Option<Arc<StoreWriterMetrics>>,
) {
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let flushed = db.flush();
        shared.flushes.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &metrics {
            metrics.committed(pending.iter().map(|applied| applied.commits.len()).sum());
        }
        for applied in pending {
            match &flushed {
                Ok(_) => {
                    shared.publish(&applied.commits);
                    answer(applied.replies);
                }
                Err(error) => {
                    tracing::error!(%error, "store flush failed");
                    // The batch may still reach the disk later; the client retries with
                    // the same client_msg_id and dedup answers it then.
                    fail(applied.replies, &error.to_string());
                }
            }
        }
    }
    tracing::debug!("store flusher stopped");
}

/// Answers appends in commit order, running each new message's commit hook first.
fn answer(replies: impl IntoIterator<Item = (AppendReply, Result<Appended, StoreError>)>) {
    for (
        AppendReply {
            tx: reply,
            on_commit,
        },
        result,
    ) in replies
    {
        if let (Some(on_commit), Ok(appended)) = (on_commit, &result)
            && !appended.duplicate
        {
            // A panicking hook must not take the commit thread (and with it every
            // later ACK) down.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                on_commit(&appended.message);
            }));
            if ran.is_err() {
                tracing::error!(seq = appended.message.seq, "commit hook panicked");
            }
        }
        // The requester may have gone away; the message is stored regardless.
        let _ = reply.send(result);
    }
}

/// Answers every append of a batch with UNAVAILABLE; no commit hook runs.
fn fail(replies: Vec<(AppendReply, Result<Appended, StoreError>)>, message: &str) {
    for (reply, _) in replies {
        let _ = reply
            .tx
            .send(Err(StoreError::Unavailable(message.to_owned())));
    }
}

fn duplicate(message: pb::Message) -> Appended {
    Appended {
        message,
        duplicate: true,
    }
}

/// The highest seq stored for a conversation, by reading its last message key.
pub(crate) fn last_stored_seq(tree: &sled::Tree, conv_id: &str) -> Result<u64, StoreError> {
    Ok(tree
        .scan_prefix(keys::message_prefix(conv_id))
        .next_back()
        .transpose()?
        .map_or(0, |(key, _)| keys::seq_of_message_key(&key)))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
