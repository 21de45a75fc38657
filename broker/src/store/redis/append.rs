//! The writer task: where appends get their seqs, in call order, in batches.
//!
//! [`RedisStore::append_then`](crate::store::Store::append_then) queues each append on
//! an unbounded channel before it returns (so one caller's appends keep their order;
//! every append future waits for its answer, so the queue is bounded by the appends in
//! flight). One task takes everything queued, sends it as one pipeline on its own
//! connection (Redis runs a connection's commands in order), and when the replies are
//! back runs the commit hooks and answers, in order. The next batch goes when the
//! previous one returned, so batches grow with load, like sled's group commit.
//!
//! Each append is one run of `append.lua` on its conversation's slot, which does all of
//! it atomically. The script cannot edit protobuf in general, so Rust fills in
//! `msg_id` and `sent_at_ms`, encodes the message without its seq, and the script
//! appends the seq field to the bytes (protobuf keeps the last value of a scalar
//! field); the same for a joining member's `joined_after_seq` and a leaving member's
//! `left_seq`.
//!
//! Amendments (recall, edit) must rewrite their target, so Rust reads it, computes the
//! new bytes as the sled writer does, and passes the expected old bytes along: the
//! script refuses ("retry") when the target changed meanwhile (another broker amended
//! it), and the writer computes again. Each amendment is sent on its own, after the
//! appends queued before it committed, so it sees their effects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::redis::aio::ConnectionManager;
use ::redis::{Cmd, Value};
use prost::Message as _;
use quip_protocol::{ids, pb};
use tokio::sync::{mpsc, oneshot};

use super::{Scripts, keys, run_commands, with_retry};
use crate::store::writer::now_ms;
use crate::store::{
    AmendChange, Appended, FormerMemberRecord, GroupWrite, NewMessage, OnCommit, StoreError,
    StoreStats,
};

/// Most appends sent as one pipeline.
const MAX_BATCH: usize = 1024;
/// How often an amendment is computed again when its target keeps changing under it.
const AMEND_ATTEMPTS: usize = 16;

/// One queued append.
pub(crate) struct Job {
    pub message: NewMessage,
    pub on_commit: Option<OnCommit>,
    pub tx: oneshot::Sender<Result<Appended, StoreError>>,
}

#[derive(Debug, Default)]
pub(super) struct Stats {
    appends: AtomicU64,
    batches: AtomicU64,
}

impl Stats {
    /// `flushes` counts the batches too: a batch is durable once Redis ran it.
    pub fn snapshot(&self) -> StoreStats {
        let batches = self.batches.load(Ordering::Relaxed);
        StoreStats {
            appends: self.appends.load(Ordering::Relaxed),
            flushes: batches,
            batches,
        }
    }
}

/// Starts the writer task; it stops when the sender is dropped, after answering
/// everything queued.
pub(super) fn spawn(
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    stats: Arc<Stats>,
    dedup_window_ms: u64,
) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Writer {
        conn,
        scripts,
        stats,
        dedup_window_ms,
    };
    tokio::spawn(writer.run(rx));
    tx
}

struct Writer {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    stats: Arc<Stats>,
    dedup_window_ms: u64,
}

/// An append made ready to send: the message as stored (seq 0 until the script
/// answers), the idempotent writes that go before the script, and the script call.
struct Prepared {
    message: pb::Message,
    before: Vec<Cmd>,
    script: Cmd,
}

/// What the script did with one append.
enum Outcome {
    Committed(u64),
    Duplicate(Box<pb::Message>),
    /// An amendment's target changed since it was read; nothing was written.
    Retry,
    Failed(StoreError),
}

/// The rewrites an amendment makes, computed from what was read.
struct AmendPlan {
    target_seq: u64,
    /// Amendment events after the target when it was read.
    later_events: u64,
    /// (seq, bytes as read, new bytes).
    rewrites: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

enum Planned {
    Amend(AmendPlan),
    /// The amendment event itself was stored before (a resend).
    Duplicate(Box<pb::Message>),
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut jobs = Vec::with_capacity(64);
            jobs.push(first);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut segment = Vec::new();
            for job in jobs {
                if job.message.amend.is_some() {
                    // An amendment must see what the appends before it did.
                    if !segment.is_empty() {
                        self.commit(std::mem::take(&mut segment)).await;
                    }
                    self.commit_amendment(job).await;
                } else {
                    segment.push(job);
                }
            }
            if !segment.is_empty() {
                self.commit(segment).await;
            }
        }
        tracing::debug!("redis store writer stopped");
    }

    /// Sends plain appends as one pipeline and answers them in order.
    async fn commit(&mut self, jobs: Vec<Job>) {
        let now = now_ms();
        let prepared: Vec<Prepared> = jobs
            .iter()
            .map(|job| self.prepare(&job.message, now, None))
            .collect();
        let outcomes = self.execute(&prepared).await;
        self.answer(
            jobs.into_iter()
                .zip(prepared)
                .zip(outcomes)
                .map(|((job, prepared), outcome)| (job, prepared.message, outcome)),
        );
    }

    /// Sends one amendment, computing it again while its target changes under it.
    async fn commit_amendment(&mut self, job: Job) {
        for _ in 0..AMEND_ATTEMPTS {
            let now = now_ms();
            let plan = match self.plan_amendment(&job.message, now).await {
                Ok(Planned::Amend(plan)) => plan,
                Ok(Planned::Duplicate(original)) => {
                    let _ = job.tx.send(Ok(Appended {
                        message: *original,
                        duplicate: true,
                    }));
                    return;
                }
                Err(error) => {
                    let _ = job.tx.send(Err(error));
                    return;
                }
            };
            let prepared = self.prepare(&job.message, now, Some(&plan));
            let outcome = self
                .execute(std::slice::from_ref(&prepared))
                .await
                .pop()
                .unwrap_or_else(|| Outcome::Failed(StoreError::Unavailable("no reply".into())));
            if matches!(outcome, Outcome::Retry) {
                continue;
            }
            self.answer([(job, prepared.message, outcome)]);
            return;
        }
        let _ = job.tx.send(Err(StoreError::Unavailable(
            "the amended message kept changing; try again".into(),
        )));
    }

    /// Runs the commit hooks of new messages and answers every append, in order.
    fn answer(&self, results: impl IntoIterator<Item = (Job, pb::Message, Outcome)>) {
        let mut committed = 0;
        for (job, mut message, outcome) in results {
            let result = match outcome {
                Outcome::Committed(seq) => {
                    committed += 1;
                    message.seq = seq;
                    if let Some(on_commit) = job.on_commit {
                        // A panicking hook must not take the writer (and with it every
                        // later ACK) down.
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            on_commit(&message);
                        }));
                        if ran.is_err() {
                            tracing::error!(seq, "commit hook panicked");
                        }
                    }
                    Ok(Appended {
                        message,
                        duplicate: false,
                    })
                }
                Outcome::Duplicate(message) => Ok(Appended {
                    message: *message,
                    duplicate: true,
                }),
                Outcome::Retry => Err(StoreError::Unavailable(
                    "the amended message changed; try again".into(),
                )),
                Outcome::Failed(error) => Err(error),
            };
            // The requester may have gone away; the message is stored regardless.
            let _ = job.tx.send(result);
        }
        if committed > 0 {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.appends.fetch_add(committed, Ordering::Relaxed);
        }
    }

    /// Sends prepared appends as one pipeline: each one's writes before its script,
    /// then the script.
    async fn execute(&mut self, batch: &[Prepared]) -> Vec<Outcome> {
        let mut commands = Vec::new();
        for prepared in batch {
            commands.extend(prepared.before.iter().cloned());
            commands.push(prepared.script.clone());
        }
        let replies = match run_commands(&mut self.conn, &self.scripts, &commands).await {
            Ok(replies) if replies.len() == commands.len() => replies,
            Ok(replies) => {
                let error = format!("{} replies to {} commands", replies.len(), commands.len());
                return fail_all(batch.len(), StoreError::Unavailable(error));
            }
            Err(error) => {
                tracing::warn!(%error, appends = batch.len(), "redis append batch failed");
                return fail_all(batch.len(), error);
            }
        };
        let mut replies = replies.into_iter();
        batch
            .iter()
            .map(|prepared| {
                let before_failed = replies
                    .by_ref()
                    .take(prepared.before.len())
                    .find_map(|reply| super::reply_ok(reply).err());
                let outcome = match replies.next() {
                    Some(reply) => outcome_of(reply),
                    None => Outcome::Failed(StoreError::Unavailable("no reply".into())),
                };
                match (outcome, before_failed) {
                    // A conversation list (or the sent pointer) may lack the message:
                    // no ACK, so the client resends, gets the dedup answer, and the
                    // resend writes them again.
                    (Outcome::Committed(_), Some(error)) => Outcome::Failed(error),
                    (outcome, _) => outcome,
                }
            })
            .collect()
    }

    /// The message as it will be stored and the commands that store it.
    fn prepare(&self, new: &NewMessage, now: u64, plan: Option<&AmendPlan>) -> Prepared {
        let mut message = new.message.clone();
        message.seq = 0;
        message.sent_at_ms = now;
        message.msg_id = ids::new_msg_id(now, rand::random());
        let conv_id = message.conv_id.clone();

        // Idempotent writes that must not lag behind the message: before the script.
        let mut before = Vec::new();
        let mut listed: Vec<&str> = new.participants.iter().map(String::as_str).collect();
        for write in &new.group_writes {
            match write {
                GroupWrite::Join(member) => listed.push(&member.user_id),
                GroupWrite::Group(group) => {
                    let mut cmd = ::redis::cmd("ZADD");
                    cmd.arg(keys::GROUPS).arg(0).arg(&group.group_id);
                    before.push(cmd);
                }
                GroupWrite::Update(_) | GroupWrite::Leave { .. } => {}
            }
        }
        listed.sort_unstable();
        listed.dedup();
        for user_id in listed {
            let mut cmd = ::redis::cmd("ZADD");
            cmd.arg(keys::conversations(user_id)).arg(0).arg(&conv_id);
            before.push(cmd);
        }
        let mut sent = ::redis::cmd("SET");
        sent.arg(keys::sent(&message.from, &message.client_msg_id))
            .arg(&conv_id)
            .arg("PX")
            .arg(self.dedup_window_ms);
        before.push(sent);

        let mut script = ::redis::cmd("EVALSHA");
        script
            .arg(self.scripts.append.get_hash())
            .arg(5 + 5 * new.group_writes.len())
            .arg(keys::seq(&conv_id))
            .arg(keys::messages(&conv_id))
            .arg(keys::dedup(&conv_id, &message.from, &message.client_msg_id))
            .arg(keys::amendments(&conv_id))
            .arg(keys::mentions(&conv_id));
        for write in &new.group_writes {
            let group_id = match write {
                GroupWrite::Group(group) => &group.group_id,
                GroupWrite::Join(member) | GroupWrite::Update(member) => &member.group_id,
                GroupWrite::Leave { group_id, .. } => group_id,
            };
            script
                .arg(keys::group(group_id))
                .arg(keys::members(group_id))
                .arg(keys::member_ids(group_id))
                .arg(keys::former_members(group_id))
                .arg(keys::join_requests(group_id));
        }

        script
            .arg(message.encode_to_vec())
            .arg(self.dedup_window_ms);
        let mentions = mention_fields(&message);
        script.arg(mentions.len()).arg(mentions);
        match plan {
            None => {
                script.arg("0");
            }
            Some(plan) => {
                script
                    .arg("1")
                    .arg(plan.target_seq)
                    .arg(plan.later_events)
                    .arg(plan.rewrites.len());
                for (seq, old, new) in &plan.rewrites {
                    script.arg(*seq).arg(old.as_slice()).arg(new.as_slice());
                }
            }
        }
        script.arg(new.group_writes.len());
        for write in &new.group_writes {
            match write {
                GroupWrite::Group(group) => {
                    script.arg("G").arg(group.encode_to_vec()).arg("");
                }
                GroupWrite::Join(member) => {
                    // The script appends joined_after_seq (seq - 1).
                    let mut member = member.clone();
                    member.joined_after_seq = 0;
                    script
                        .arg("J")
                        .arg(&member.user_id)
                        .arg(member.encode_to_vec());
                }
                GroupWrite::Update(member) => {
                    script
                        .arg("U")
                        .arg(&member.user_id)
                        .arg(member.encode_to_vec());
                }
                GroupWrite::Leave {
                    user_id,
                    joined_after_seq,
                    ..
                } => {
                    // The script appends left_seq (this message's seq).
                    let former = FormerMemberRecord {
                        joined_after_seq: *joined_after_seq,
                        left_seq: 0,
                    };
                    script.arg("L").arg(user_id).arg(former.encode_to_vec());
                }
            }
        }
        Prepared {
            message,
            before,
            script,
        }
    }

    /// Reads an amendment's target (and, for a recall, the edit events that carry its
    /// text) and computes their rewrites as the sled writer does.
    async fn plan_amendment(&mut self, new: &NewMessage, now: u64) -> Result<Planned, StoreError> {
        let Some(amend) = &new.amend else {
            return Err(StoreError::Conflict("not an amendment".into()));
        };
        let message = &new.message;
        let conv_id = &message.conv_id;
        let messages = keys::messages(conv_id);
        let mut pipe = ::redis::pipe();
        pipe.cmd("GET")
            .arg(keys::dedup(conv_id, &message.from, &message.client_msg_id))
            .cmd("HGET")
            .arg(&messages)
            .arg(amend.target_seq)
            .cmd("ZRANGEBYSCORE")
            .arg(keys::amendments(conv_id))
            .arg(format!("({}", amend.target_seq))
            .arg("+inf");
        let (original_seq, target_raw, later): (Option<u64>, Option<Vec<u8>>, Vec<String>) =
            with_retry!(pipe.query_async(&mut self.conn).await)?;
        // Checked first, as sled does: a resent recall gets its original answer even
        // though its target is recalled now.
        if let Some(seq) = original_seq {
            let raw: Option<Vec<u8>> = self.hget(&messages, seq).await?;
            if let Some(raw) = raw {
                let original = pb::Message::decode(raw.as_slice())?;
                return Ok(Planned::Duplicate(Box::new(original)));
            }
        }
        let raw = target_raw.ok_or_else(|| StoreError::Conflict("no such message".into()))?;
        let mut target = pb::Message::decode(raw.as_slice())?;
        crate::store::amend::rewrite_target(&mut target, &amend.change, now)?;
        let mut rewrites = Vec::new();
        match &amend.change {
            AmendChange::Edit { .. } => {}
            AmendChange::Recall { .. } => {
                // Recalls refuse a recalled target, so every event of it is an edit.
                let edits: Vec<u64> = later
                    .iter()
                    .filter_map(|member| member.split_once(':'))
                    .filter(|(_, of)| of.parse() == Ok(amend.target_seq))
                    .filter_map(|(seq, _)| seq.parse().ok())
                    .collect();
                if !edits.is_empty() {
                    let raws: Vec<Option<Vec<u8>>> = {
                        let mut cmd = ::redis::cmd("HMGET");
                        cmd.arg(&messages).arg(&edits);
                        with_retry!(cmd.query_async(&mut self.conn).await)?
                    };
                    for (seq, raw) in edits.into_iter().zip(raws) {
                        let Some(raw) = raw else { continue };
                        let mut edit = pb::Message::decode(raw.as_slice())?;
                        crate::store::amend::erase_edit_text(&mut edit);
                        rewrites.push((seq, raw, edit.encode_to_vec()));
                    }
                }
            }
        }
        rewrites.push((amend.target_seq, raw, target.encode_to_vec()));
        Ok(Planned::Amend(AmendPlan {
            target_seq: amend.target_seq,
            later_events: later.len() as u64,
            rewrites,
        }))
    }

    async fn hget(&mut self, key: &str, field: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = ::redis::cmd("HGET");
        cmd.arg(key).arg(field);
        Ok(with_retry!(cmd.query_async(&mut self.conn).await)?)
    }
}

/// The mention hash fields a message sets: its mentioned users, and `@all`.
fn mention_fields(message: &pb::Message) -> Vec<&str> {
    let Some(pb::message::Content::Text(text)) = &message.content else {
        return Vec::new();
    };
    let mut fields: Vec<&str> = text.mention_user_ids.iter().map(String::as_str).collect();
    if text.mention_all {
        fields.push(keys::MENTION_ALL);
    }
    fields
}

/// Reads the script's answer: `{"ok", seq}`, `{"dup", message}` or `{"retry"}`.
fn outcome_of(reply: Value) -> Outcome {
    let items = match super::reply_ok(reply) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return Outcome::Failed(StoreError::Unavailable(format!(
                "unexpected append reply {other:?}"
            )));
        }
        Err(error) => return Outcome::Failed(error),
    };
    let mut items = items.into_iter();
    let tag = match items.next() {
        Some(Value::BulkString(tag)) => tag,
        Some(Value::SimpleString(tag)) => tag.into_bytes(),
        other => {
            return Outcome::Failed(StoreError::Unavailable(format!(
                "unexpected append reply {other:?}"
            )));
        }
    };
    match (tag.as_slice(), items.next()) {
        (b"ok", Some(Value::Int(seq))) if seq > 0 => Outcome::Committed(seq as u64),
        (b"dup", Some(Value::BulkString(raw))) => match pb::Message::decode(raw.as_slice()) {
            Ok(message) => Outcome::Duplicate(Box::new(message)),
            Err(error) => Outcome::Failed(error.into()),
        },
        (b"retry", None) => Outcome::Retry,
        (tag, value) => Outcome::Failed(StoreError::Unavailable(format!(
            "unexpected append reply {:?} {value:?}",
            String::from_utf8_lossy(tag)
        ))),
    }
}

fn fail_all(n: usize, error: StoreError) -> Vec<Outcome> {
    let message = match error {
        StoreError::Unavailable(message) => message,
        other => other.to_string(),
    };
    (0..n)
        .map(|_| Outcome::Failed(StoreError::Unavailable(message.clone())))
        .collect()
}
