//! The embedded default store: sled 0.34, with appends through the group-commit writer
//! thread ([`super::writer`]) and reads straight from the trees.

use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::Sender;
use prost::Message as _;
use quip_protocol::pb;
use tokio::sync::oneshot;

mod files;
mod social;

use super::cursor_buffer::{CursorBuffer, read_u64};
use super::records::DedupRecord;
use super::writer::{self, AppendJob, AppendReply, Shared, WriterConfig, now_ms};
use super::{
    Appended, ContactRequestRecord, CursorUpdate, DeviceRecord, Durability, FileRecord,
    FormerMemberRecord, GroupRecord, JoinRequestRecord, MarksMoved, MemberRecord, NewMessage,
    OnCommit, RecordChange, RefreshRecord, Store, StoreError, StoreFuture, StoreStats, UserRecord,
    UserSettingsRecord, keys,
};

/// Settings of the sled store.
#[derive(Debug, Clone)]
pub struct SledOptions {
    pub durability: Durability,
    /// How long `(sender, client_msg_id)` stays deduplicated.
    pub dedup_window_ms: u64,
    /// Most appends applied as one sled batch.
    pub max_batch: usize,
    /// Appends that may wait for the writer before senders wait too.
    pub queue_len: usize,
    /// sled's page cache.
    pub cache_bytes: u64,
    /// Where the writer reports batch sizes and its queue (`GET /metrics`), if anywhere.
    pub metrics: Option<Arc<crate::metrics::StoreWriterMetrics>>,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Fsync,
            dedup_window_ms: 24 * 3600 * 1000,
            max_batch: 1024,
            queue_len: 16 * 1024,
            cache_bytes: 256 << 20,
            metrics: None,
        }
    }
}

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    chat: sled::Tree,
    accounts: sled::Tree,
    /// Contacts, requests, blocks and settings.
    social: sled::Tree,
    /// Who has blocked anyone, and who takes 1:1 messages from friends only: every
    /// 1:1 send asks both, and for nearly every user the answer is "no" without a read.
    blockers: dashmap::DashSet<String>,
    friends_only: dashmap::DashSet<String>,
    /// File records and which conversations each file was sent in.
    files: sled::Tree,
    /// The cursors tree, behind its write-behind buffer.
    cursors: Arc<CursorBuffer>,
    durability: Durability,
    shared: Arc<Shared>,
    /// Taken on drop, which stops the writer after it drains its queue.
    appends: Option<Sender<AppendJob>>,
    /// Writer and flusher, joined on drop so the database is closed when we return.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.appends.take();
        self.cursors.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Err(error) = self.cursors.write_out() {
            tracing::error!(%error, "writing the last cursors failed");
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            // Durability comes from our explicit flushes; sled's own periodic flush
            // only bounds what `os` durability can lose.
            .flush_every_ms(Some(500));
        let db = open_waiting_for_lock(&config)?;
        let chat = db.open_tree("chat")?;
        let accounts = db.open_tree("accounts")?;
        let social = db.open_tree("social")?;
        let files = db.open_tree("files")?;
        let (cursors, cursor_thread) = CursorBuffer::start(db.open_tree("cursors")?)
            .map_err(|e| StoreError::Unavailable(format!("cannot start cursor writer: {e}")))?;
        let shared = Arc::new(Shared::default());
        let (appends, mut threads) = writer::spawn(
            db.clone(),
            chat.clone(),
            shared.clone(),
            WriterConfig {
                durability: options.durability,
                dedup_window_ms: options.dedup_window_ms,
                max_batch: options.max_batch.max(1),
                metrics: options.metrics.clone(),
            },
            options.queue_len.max(1),
        )
        .map_err(|e| {
            // Stop the cursor thread, which holds the tree (and so sled's file lock).
            cursors.stop();
            StoreError::Unavailable(format!("cannot start store writer: {e}"))
        })?;
        threads.push(cursor_thread);
        let (blockers, friends_only) = social::load_restrictions(&social)?;
        Ok(Self {
            db,
            chat,
            accounts,
            blockers,
            friends_only,
            social,
            files,
            cursors,
            durability: options.durability,
            shared,
            appends: Some(appends),
            threads,
        })
    }

    /// Removes dedup records whose window has passed. Runs a full scan: call it rarely
    /// (the broker does hourly) and off the async workers.
    pub fn sweep_expired_dedup(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut removed = 0;
        for entry in self.chat.scan_prefix([b'd']) {
            let (key, value) = entry?;
            let record = DedupRecord::decode(value.as_ref())?;
            if record.expires_at_ms <= now
                && self
                    .chat
                    .compare_and_swap(&key, Some(value), None as Option<&[u8]>)?
                    .is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The committed seq: the writer's view if it touched the conversation, else the
    /// tree's (all of which is durable). See `Shared::committed` for the race this
    /// re-check closes.
    fn committed_seq(&self, conv_id: &str) -> Result<u64, StoreError> {
        if let Some(seq) = self.shared.committed.get(conv_id) {
            return Ok(*seq);
        }
        let stored = writer::last_stored_seq(&self.chat, conv_id)?;
        Ok(match self.shared.committed.get(conv_id) {
            Some(seq) => stored.min(*seq),
            None => stored,
        })
    }

    fn get_record<T: prost::Message + Default>(
        &self,
        key: Vec<u8>,
    ) -> Result<Option<T>, StoreError> {
        decode_opt(self.chat.get(key)?)
    }

    /// A conversation's `R` (read) or `D` (delivered) marks, by user id.
    fn marks(&self, tag: u8, conv_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = keys::mark_prefix(tag, conv_id);
        Ok(self
            .cursors
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(key, value)| {
                let user_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                (user_id, value)
            })
            .collect())
    }

    fn sync_flush(&self) -> StoreFuture<'_, ()> {
        let db = self.db.clone();
        let durability = self.durability;
        Box::pin(async move {
            if durability == Durability::Fsync {
                db.flush_async().await?;
            }
            Ok(())
        })
    }

    fn scan_messages(
        &self,
        conv_id: &str,
        from: u64,
        to: u64,
    ) -> impl DoubleEndedIterator<Item = Result<pb::Message, StoreError>> + '_ {
        self.chat
            .range(keys::message(conv_id, from)..=keys::message(conv_id, to))
            .map(|entry| {
                let (_, value) = entry?;
                Ok(pb::Message::decode(value.as_ref())?)
            })
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

fn decode_opt<T: prost::Message + Default>(
    raw: Option<sled::IVec>,
) -> Result<Option<T>, StoreError> {
    raw.map(|raw| T::decode(raw.as_ref()).map_err(StoreError::from))
        .transpose()
}

/// How long [`SledStore::open`] waits for a previous handle's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the database, waiting while another handle in this process still holds its
/// lock: sled releases it only when its last internal reference is gone, and some
/// are freed lazily (epoch-based reclamation), shortly after the store was dropped.
/// A second process holding the lock is refused after [`LOCK_WAIT`].
fn open_waiting_for_lock(config: &sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            // sled reports it as an `Other` I/O error with this text.
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

impl Store for SledStore {
    fn create_user(&self, user: UserRecord) -> StoreFuture<'_, ()> {
        let name_key = keys::username(&user.username);
        let user_key = keys::user(&user.user_id);
        let result = self.accounts.transaction(|tx| {
            if tx.get(&name_key)?.is_some() {
                return sled::transaction::abort(StoreError::UsernameTaken);
            }
            tx.insert(name_key.as_slice(), user.user_id.as_bytes())?;
            tx.insert(user_key.as_slice(), user.encode_to_vec())?;
            Ok(())
        });
        match result {
            Ok(()) => self.sync_flush(),
            Err(sled::transaction::TransactionError::Abort(error)) => ready(Err(error)),
            Err(sled::transaction::TransactionError::Storage(error)) => ready(Err(error.into())),
        }
    }

    fn put_file(&self, file: FileRecord) -> StoreFuture<'_, ()> {
        match self.put_file_now(&file) {
            Ok(()) => self.sync_flush(),
            Err(error) => ready(Err(error)),
        }
    }

    fn file<'a>(&'a self, file_id: &'a str) -> StoreFuture<'a, Option<FileRecord>> {
        ready(self.file_now(file_id))
    }

    fn add_file_conversation<'a>(
        &'a self,
        file_id: &'a str,
        conv_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        ready(self.add_file_conversation_now(file_id, conv_id))
    }

    fn file_conversations<'a>(&'a self, file_id: &'a str) -> StoreFuture<'a, Vec<String>> {
        ready(self.file_conversations_now(file_id))
    }

    fn update_user(&self, user: UserRecord) -> StoreFuture<'_, ()> {
        match self.update_user_now(&user) {
            Ok(()) => self.sync_flush(),
            Err(error) => ready(Err(error)),
        }
    }

    fn change_user<'a>(
        &'a self,
        user_id: &'a str,
        change: RecordChange<'a, UserRecord>,
    ) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(async move {
            let changed = self.change_user_now(user_id, &*change)?;
            self.sync_flush().await?;
            Ok(changed)
        })
    }

    fn change_device<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
        change: RecordChange<'a, DeviceRecord>,
    ) -> StoreFuture<'a, DeviceRecord> {
        ready(self.change_device_now(user_id, device_id, &*change))
    }

    fn users<'a>(
        &'a self,
        after_user_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<UserRecord>> {
        ready(self.users_page(after_user_id, limit))
    }

    fn put_device<'a>(&'a self, user_id: &'a str, device: DeviceRecord) -> StoreFuture<'a, ()> {
        ready(self.put_device_now(user_id, &device))
    }

    fn device<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
    ) -> StoreFuture<'a, Option<DeviceRecord>> {
        ready(self.device_now(user_id, device_id))
    }

    fn devices<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<DeviceRecord>> {
        ready(self.devices_now(user_id))
    }

    fn groups<'a>(
        &'a self,
        after_group_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<GroupRecord>> {
        ready(self.groups_page(after_group_id, limit))
    }

    fn put_contact_request(&self, request: ContactRequestRecord) -> StoreFuture<'_, ()> {
        ready(self.put_contact_request_now(&request))
    }

    fn take_contact_request<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> StoreFuture<'a, Option<ContactRequestRecord>> {
        ready(self.take_contact_request_now(from, to))
    }

    fn contact_requests<'a>(
        &'a self,
        user_id: &'a str,
        incoming: bool,
    ) -> StoreFuture<'a, Vec<ContactRequestRecord>> {
        ready(self.contact_requests_now(user_id, incoming))
    }

    fn add_friends<'a>(&'a self, a: &'a str, b: &'a str, since_ms: u64) -> StoreFuture<'a, ()> {
        ready(self.add_friends_now(a, b, since_ms))
    }

    fn remove_friends<'a>(&'a self, a: &'a str, b: &'a str) -> StoreFuture<'a, bool> {
        ready(self.remove_friends_now(a, b))
    }

    fn friends<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        ready(self.pairs(b'f', user_id))
    }

    fn is_friend<'a>(&'a self, a: &'a str, b: &'a str) -> StoreFuture<'a, bool> {
        ready(self.has_pair(b'f', a, b))
    }

    fn block<'a>(&'a self, blocker: &'a str, blocked: &'a str, at_ms: u64) -> StoreFuture<'a, ()> {
        ready(self.block_now(blocker, blocked, at_ms))
    }

    fn unblock<'a>(&'a self, blocker: &'a str, blocked: &'a str) -> StoreFuture<'a, bool> {
        ready(self.unblock_now(blocker, blocked))
    }

    fn blocks<'a>(&'a self, blocker: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        ready(self.pairs(b'b', blocker))
    }

    fn blockers_of<'a>(&'a self, blocked: &'a str) -> StoreFuture<'a, Vec<String>> {
        ready(
            self.pairs(b'B', blocked)
                .map(|pairs| pairs.into_iter().map(|(user, _)| user).collect()),
        )
    }

    fn is_blocked<'a>(&'a self, blocker: &'a str, blocked: &'a str) -> StoreFuture<'a, bool> {
        ready(self.is_blocked_now(blocker, blocked))
    }

    fn user_settings<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, UserSettingsRecord> {
        ready(self.user_settings_now(user_id))
    }

    fn put_user_settings<'a>(
        &'a self,
        user_id: &'a str,
        settings: UserSettingsRecord,
    ) -> StoreFuture<'a, ()> {
        ready(self.put_user_settings_now(user_id, &settings))
    }

    fn user_by_id<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        ready(
            self.accounts
                .get(keys::user(user_id))
                .map_err(StoreError::from)
                .and_then(decode_opt),
        )
    }

    fn user_by_username<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        let lookup = || -> Result<Option<UserRecord>, StoreError> {
            let Some(user_id) = self.accounts.get(keys::username(username))? else {
                return Ok(None);
            };
            decode_opt(
                self.accounts
                    .get(keys::user(&String::from_utf8_lossy(&user_id)))?,
            )
        };
        ready(lookup())
    }

    fn put_refresh(&self, token_hash: [u8; 32], record: RefreshRecord) -> StoreFuture<'_, ()> {
        match self
            .accounts
            .insert(keys::refresh(&token_hash), record.encode_to_vec())
        {
            Ok(_) => self.sync_flush(),
            Err(error) => ready(Err(error.into())),
        }
    }

    fn take_refresh(&self, token_hash: [u8; 32]) -> StoreFuture<'_, Option<RefreshRecord>> {
        ready(
            self.accounts
                .remove(keys::refresh(&token_hash))
                .map_err(StoreError::from)
                .and_then(decode_opt),
        )
    }

    fn append_then(
        &self,
        message: NewMessage,
        on_commit: Option<OnCommit>,
    ) -> StoreFuture<'static, Appended> {
        let (tx, answer) = oneshot::channel();
        let reply = AppendReply { tx, on_commit };
        // Enqueue now, not when the future is first polled: call order is seq order.
        let sent = match &self.appends {
            Some(appends) => appends.send(AppendJob { message, reply }).map_err(|_| ()),
            None => Err(()),
        };
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn sent<'a>(
        &'a self,
        sender: &'a str,
        client_msg_id: &'a str,
    ) -> StoreFuture<'a, Option<pb::Message>> {
        let read = || -> Result<Option<pb::Message>, StoreError> {
            let key = keys::dedup(sender, client_msg_id);
            let Some(message) = writer::stored_duplicate(&self.chat, &key, now_ms())? else {
                return Ok(None);
            };
            // Applied is not durable: only a committed message may be acknowledged.
            let committed = self.committed_seq(&message.conv_id)?;
            Ok((message.seq <= committed).then_some(message))
        };
        ready(read())
    }

    fn last_seq<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, u64> {
        ready(self.committed_seq(conv_id))
    }

    fn range<'a>(
        &'a self,
        conv_id: &'a str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<pb::Message>> {
        let read = || -> Result<Vec<pb::Message>, StoreError> {
            let to = to.min(self.committed_seq(conv_id)?);
            if from > to || limit == 0 {
                return Ok(Vec::new());
            }
            self.scan_messages(conv_id, from.max(1), to)
                .take(limit)
                .collect()
        };
        ready(read())
    }

    fn before<'a>(
        &'a self,
        conv_id: &'a str,
        before: u64,
        limit: usize,
    ) -> StoreFuture<'a, (Vec<pb::Message>, bool)> {
        let read = || -> Result<(Vec<pb::Message>, bool), StoreError> {
            let committed = self.committed_seq(conv_id)?;
            let to = before.saturating_sub(1).min(committed);
            if to == 0 || limit == 0 {
                return Ok((Vec::new(), false));
            }
            let mut newest_first = self
                .scan_messages(conv_id, 1, to)
                .rev()
                .take(limit)
                .collect::<Result<Vec<_>, _>>()?;
            newest_first.reverse();
            let has_more = newest_first.first().is_some_and(|m| m.seq > 1);
            Ok((newest_first, has_more))
        };
        ready(read())
    }

    fn user_conversations<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<String>> {
        let prefix = keys::user_conv_prefix(user_id);
        let read = || -> Result<Vec<String>, StoreError> {
            self.chat
                .scan_prefix(&prefix)
                .map(|entry| {
                    let (key, _) = entry?;
                    Ok(String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
                })
                .collect()
        };
        ready(read())
    }

    fn mention_seq<'a>(&'a self, user_id: &'a str, conv_id: &'a str) -> StoreFuture<'a, u64> {
        let read = || -> Result<u64, StoreError> {
            let direct = read_u64(self.chat.get(keys::mention(user_id, conv_id))?);
            let all = read_u64(self.chat.get(keys::mention_all(conv_id))?);
            Ok(direct.max(all).min(self.committed_seq(conv_id)?))
        };
        ready(read())
    }

    fn group<'a>(&'a self, group_id: &'a str) -> StoreFuture<'a, Option<GroupRecord>> {
        ready(self.get_record(keys::group(group_id)))
    }

    fn member<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<MemberRecord>> {
        ready(self.get_record(keys::member(group_id, user_id)))
    }

    fn former_member<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<FormerMemberRecord>> {
        ready(self.get_record(keys::former_member(group_id, user_id)))
    }

    fn members<'a>(
        &'a self,
        group_id: &'a str,
        after_user_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<MemberRecord>> {
        let prefix = keys::member_prefix(group_id);
        let mut start = prefix.clone();
        start.extend_from_slice(after_user_id.as_bytes());
        // Strictly after `after_user_id`: append a 0 byte, the smallest possible suffix.
        if !after_user_id.is_empty() {
            start.push(0);
        }
        let read = || -> Result<Vec<MemberRecord>, StoreError> {
            self.chat
                .range(start..)
                .take_while(|entry| {
                    entry
                        .as_ref()
                        .map_or(true, |(key, _)| key.starts_with(&prefix))
                })
                .take(limit)
                .map(|entry| {
                    let (_, value) = entry?;
                    Ok(MemberRecord::decode(value.as_ref())?)
                })
                .collect()
        };
        ready(read())
    }

    fn put_join_request(&self, request: JoinRequestRecord) -> StoreFuture<'_, ()> {
        let key = keys::join_request(&request.group_id, &request.user_id);
        match self.chat.insert(key, request.encode_to_vec()) {
            Ok(_) => self.sync_flush(),
            Err(error) => ready(Err(error.into())),
        }
    }

    fn take_join_request<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<JoinRequestRecord>> {
        ready(
            self.chat
                .remove(keys::join_request(group_id, user_id))
                .map_err(StoreError::from)
                .and_then(decode_opt),
        )
    }

    fn join_requests<'a>(&'a self, group_id: &'a str) -> StoreFuture<'a, Vec<JoinRequestRecord>> {
        let read = || -> Result<Vec<JoinRequestRecord>, StoreError> {
            self.chat
                .scan_prefix(keys::join_request_prefix(group_id))
                .map(|entry| {
                    let (_, value) = entry?;
                    Ok(JoinRequestRecord::decode(value.as_ref())?)
                })
                .collect()
        };
        ready(read())
    }

    fn update_cursors<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
        updates: Vec<CursorUpdate>,
    ) -> StoreFuture<'a, Vec<MarksMoved>> {
        let run = || -> Result<Vec<MarksMoved>, StoreError> {
            let mut moved = Vec::new();
            for update in &updates {
                // Most updates move one mark only (a send moves the read mark): build
                // only the keys that change.
                let mut marks = MarksMoved {
                    conv_id: String::new(),
                    read_seq: 0,
                    delivered_seq: 0,
                };
                if update.delivered_seq > 0 {
                    self.cursors.raise(
                        keys::delivered(user_id, device_id, &update.conv_id),
                        update.delivered_seq,
                    );
                    if self.cursors.raise_reporting(
                        keys::delivered_mark(&update.conv_id, user_id),
                        update.delivered_seq,
                    )? {
                        marks.delivered_seq = update.delivered_seq;
                    }
                }
                if update.read_seq > 0
                    && self.cursors.raise_reporting(
                        keys::read_mark(&update.conv_id, user_id),
                        update.read_seq,
                    )?
                {
                    marks.read_seq = update.read_seq;
                }
                if marks.read_seq > 0 || marks.delivered_seq > 0 {
                    marks.conv_id = update.conv_id.clone();
                    moved.push(marks);
                }
            }
            Ok(moved)
        };
        ready(run())
    }

    fn mark_sent<'a>(
        &'a self,
        user_id: &'a str,
        conv_id: &'a str,
        seq: u64,
    ) -> StoreFuture<'a, ()> {
        // The hot path of every send: a buffered raise, no read.
        self.cursors.raise(keys::read_mark(conv_id, user_id), seq);
        ready(Ok(()))
    }

    fn device_cursors<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
    ) -> StoreFuture<'a, Vec<(String, u64)>> {
        let prefix = keys::delivered_prefix(user_id, device_id);
        ready(self.cursors.scan_prefix(&prefix).map(|entries| {
            entries
                .into_iter()
                .map(|(key, value)| {
                    let conv_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                    (conv_id, value)
                })
                .collect()
        }))
    }

    fn read_seq<'a>(&'a self, user_id: &'a str, conv_id: &'a str) -> StoreFuture<'a, u64> {
        ready(self.cursors.get(&keys::read_mark(conv_id, user_id)))
    }

    fn read_marks<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        ready(self.marks(b'R', conv_id))
    }

    fn delivered_marks<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        ready(self.marks(b'D', conv_id))
    }

    fn amendments_in<'a>(&'a self, conv_id: &'a str, from: u64, to: u64) -> StoreFuture<'a, u64> {
        let count = || -> Result<u64, StoreError> {
            if from > to {
                return Ok(0);
            }
            let range = keys::amendment(conv_id, from)..=keys::amendment(conv_id, to);
            let mut count = 0;
            for entry in self.chat.range(range) {
                entry?;
                count += 1;
            }
            Ok(count)
        };
        ready(count())
    }

    fn set_last_seen<'a>(&'a self, user_id: &'a str, at_ms: u64) -> StoreFuture<'a, ()> {
        ready(
            self.accounts
                .insert(keys::last_seen(user_id), &at_ms.to_be_bytes()[..])
                .map(|_| ())
                .map_err(StoreError::from),
        )
    }

    fn last_seen<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, u64> {
        ready(
            self.accounts
                .get(keys::last_seen(user_id))
                .map(read_u64)
                .map_err(StoreError::from),
        )
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        let db = self.db.clone();
        let cursors = self.cursors.write_out();
        Box::pin(async move {
            cursors?;
            db.flush_async().await?;
            Ok(())
        })
    }

    fn stats(&self) -> StoreStats {
        self.shared.stats()
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}
