//! The cluster-mode store: everything in Redis, so that several brokers share one
//! state. Same observable behaviour as [`SledStore`](super::SledStore) (same return
//! values, ordering and errors), so the services run unchanged on either.
//!
//! Needs Redis 6.2 or later (GETDEL, RESP3). The connection speaks RESP3 so that the
//! connection manager hears of a dropped connection at once and reconnects before the
//! next command needs it.
//!
//! # Keys
//!
//! Everything is prefixed `quip:`. Keys that one atomic operation touches share a
//! hash tag (one Redis Cluster slot): `{c:C}` for conversation `C` (a group's records
//! live under its conversation's tag, `group:G`, so a group change commits in the
//! script that appends the SYSTEM message announcing it), `{u:U}` for user `U`,
//! `{f:F}` for file `F`.
//!
//! | key | type | value |
//! |---|---|---|
//! | `quip:{c:C}:seq` | string | last seq taken (INCR) |
//! | `quip:{c:C}:msg` | hash | seq → Message (protobuf) |
//! | `quip:{c:C}:dedup:<sender>:<client_msg_id>` | string, PX dedup window | seq |
//! | `quip:{c:C}:amend` | sorted set | `<event seq>:<target seq>` scored by event seq: RECALL/EDIT events |
//! | `quip:{c:C}:mention` | hash | user id (or `@all`) → highest seq mentioning them |
//! | `quip:{c:C}:read`, `quip:{c:C}:delivered` | hash | user id → read / delivered mark |
//! | `quip:{c:group:G}:group` | string | GroupRecord |
//! | `quip:{c:group:G}:members` | hash | user id → MemberRecord |
//! | `quip:{c:group:G}:member_ids` | sorted set, scores 0 | member ids (ZRANGEBYLEX paging) |
//! | `quip:{c:group:G}:former` | hash | user id → FormerMemberRecord |
//! | `quip:{c:group:G}:joinreq` | hash | user id → JoinRequestRecord |
//! | `quip:groups` | sorted set, scores 0 | every group id (admin listing) |
//! | `quip:uname:<lowercase username>` | string | user id (claimed with SET NX) |
//! | `quip:users` | sorted set, scores 0 | every user id (admin listing) |
//! | `quip:{u:U}:user` | string | UserRecord |
//! | `quip:{u:U}:devices` | hash | device id → DeviceRecord |
//! | `quip:{u:U}:convs` | sorted set, scores 0 | the user's conversation ids |
//! | `quip:{u:U}:cursors:<device>` | hash | conv id → the device's delivered seq |
//! | `quip:{u:U}:last_seen` | string | ms |
//! | `quip:{u:U}:friends` | hash | friend id → since (ms) |
//! | `quip:{u:U}:blocks`, `quip:{u:U}:blockers` | hash | blocked / blocker id → since (ms) |
//! | `quip:{u:U}:req_in`, `quip:{u:U}:req_out` | hash | other user id → ContactRequestRecord |
//! | `quip:{u:U}:settings` | string | UserSettingsRecord |
//! | `quip:{u:U}:sent:<client_msg_id>` | string, PX dedup window | conv id the message went to |
//! | `quip:refresh:<hex sha256>` | string, PXAT expiry + 1 day | RefreshRecord |
//! | `quip:{f:F}:file` | string | FileRecord |
//! | `quip:{f:F}:convs` | sorted set, scores 0 | conversations the file was sent in |
//!
//! # What is atomic
//!
//! - **An append** is one Lua script on its conversation's slot: dedup check, seq,
//!   message, dedup key, mentions, an amendment's rewrites and group writes, all or
//!   nothing ([`append`]). The writes it does not need to be atomic with are
//!   idempotent and go *before* it in the same pipeline: participants' (and joining
//!   members') conversation lists, the `quip:groups` index and the sender's `sent:`
//!   pointer. A failure between can leave an empty conversation in a list (or a group
//!   id without a record, which listings skip), never a message missing from a list.
//! - **Amendments** (recall, edit) rewrite their target with compare-and-set: the
//!   rewrites are computed in Rust from the target as read, and the script refuses
//!   (and the writer retries) if the target or its amendment events changed meanwhile.
//! - **Two-user changes** (friend requests, friendships, blocks) are one MULTI/EXEC:
//!   atomic on one Redis; on Redis Cluster the users' keys are in different slots and
//!   the transaction would have to become two writes.
//! - **Accounts**: the username is claimed with SET NX (two registrations cannot both
//!   get a name); the user record is written before and the `quip:users` index after
//!   the claim. A crash after the claim leaves the user out of the admin listing until
//!   its next [`update_user`](Store::update_user), which re-adds it.
//! - Cursor and mark raises are one small script each (only ever forward).
//!
//! # Differences from sled (by design)
//!
//! - Dedup is per conversation: the same `client_msg_id` from the same sender in
//!   another conversation is a new message (sled answers with the first one). Clients
//!   never reuse one across conversations.
//! - `sent_at_ms` comes from the clock of the broker that appends: with several
//!   brokers, clock skew can make it go back a little within a conversation.
//!
//! # Durability
//!
//! An append is acknowledged once Redis has executed its script: durability is Redis's
//! own. ACK-after-fsync needs Redis with `appendonly yes` and `appendfsync always`;
//! with `everysec` a Redis crash can lose the last second of acknowledged writes.
//! [`flush`](Store::flush) is therefore a no-op and
//! [`size_on_disk`](Store::size_on_disk) is 0 (the store has no local files).
//!
//! # Failures
//!
//! Every Redis error, a refused connection and a reply that takes longer than
//! [`RESPONSE_TIMEOUT`] are [`StoreError::Unavailable`]: the services answer
//! UNAVAILABLE and the client resends (dedup makes that safe), never a false ACK. The
//! connection manager reconnects by itself with backoff; the store works again as soon
//! as Redis is back, without being rebuilt.

mod accounts;
mod append;
mod cursors;
mod files;
mod groups;
mod keys;
mod messages;
mod social;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, ProtocolVersion, Value};
use quip_protocol::pb;
use tokio::sync::{mpsc, oneshot};

use super::{
    Appended, ContactRequestRecord, CursorUpdate, DeviceRecord, FileRecord, FormerMemberRecord,
    GroupRecord, JoinRequestRecord, MarksMoved, MemberRecord, NewMessage, OnCommit, RefreshRecord,
    Store, StoreError, StoreFuture, StoreStats, UserRecord, UserSettingsRecord,
};

/// Evaluates `$call` (an awaited Redis call), and once more when the connection was
/// refused: a refused command was never sent (so the retry cannot apply it twice), and
/// the connection manager starts a new reconnection only on the call that finds the
/// last one failed, so without this the first call after Redis came back would fail.
macro_rules! with_retry {
    ($call:expr) => {
        match $call {
            Err(error) if error.is_connection_refusal() => $call,
            result => result,
        }
    };
}
use with_retry;

/// Longest wait for one reply: past it the call fails (UNAVAILABLE) instead of hanging.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one connection attempt.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff: from this...
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// ...doubling up to this...
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// ...this many times, after which the waiting calls fail (and the next call starts
/// over): bounds how long a call waits while Redis is down.
const RECONNECT_RETRIES: usize = 3;

/// Settings of the Redis store.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// How long `(sender, client_msg_id)` stays deduplicated.
    pub dedup_window_ms: u64,
}

/// The URL may hold a password: never printed.
impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &"<redacted>")
            .field("dedup_window_ms", &self.dedup_window_ms)
            .finish()
    }
}

/// The scripts the store runs, loaded at connect and again when Redis lost them (a
/// restart empties its script cache).
#[derive(Debug)]
struct Scripts {
    append: ::redis::Script,
    raise: ::redis::Script,
    cas: ::redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            append: ::redis::Script::new(include_str!("redis/append.lua")),
            raise: ::redis::Script::new(include_str!("redis/raise.lua")),
            cas: ::redis::Script::new(include_str!("redis/cas.lua")),
        }
    }

    async fn load(&self, conn: &mut ConnectionManager) -> Result<(), StoreError> {
        for script in [&self.append, &self.raise, &self.cas] {
            with_retry!(script.load_async(conn).await)?;
        }
        Ok(())
    }
}

/// The Redis store. See the module docs.
pub struct RedisStore {
    /// Reads and the small writes.
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    /// To the writer task, which has its own connection (appends queue behind each
    /// other, not behind reads). Dropped with the store, which stops the writer once
    /// it has answered every queued append.
    appends: mpsc::UnboundedSender<append::Job>,
    stats: Arc<append::Stats>,
    dedup_window_ms: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisStore")
            .field("dedup_window_ms", &self.dedup_window_ms)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl From<::redis::RedisError> for StoreError {
    fn from(error: ::redis::RedisError) -> Self {
        StoreError::Unavailable(format!("redis: {error}"))
    }
}

impl RedisStore {
    /// Connects (fails with StoreError::Unavailable if Redis cannot be reached at start).
    pub async fn connect(options: RedisOptions) -> Result<Self, StoreError> {
        let info = options.url.as_str().into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = ::redis::Client::open(info.set_redis_settings(settings))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_number_of_retries(RECONNECT_RETRIES);
        let mut conn = client
            .get_connection_manager_with_config(config.clone())
            .await?;
        let writer_conn = client.get_connection_manager_with_config(config).await?;
        let scripts = Arc::new(Scripts::new());
        // Also proves at start that Redis runs our scripts.
        scripts.load(&mut conn).await?;
        let stats = Arc::new(append::Stats::default());
        let dedup_window_ms = options.dedup_window_ms.max(1);
        let appends = append::spawn(writer_conn, scripts.clone(), stats.clone(), dedup_window_ms);
        Ok(Self {
            conn,
            scripts,
            appends,
            stats,
            dedup_window_ms,
        })
    }

    /// Runs one command.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        Ok(with_retry!(cmd.query_async(&mut conn).await)?)
    }

    /// [`query`](Self::query) as a store future, for a command built in place.
    fn query_boxed<T: FromRedisValue + Send + 'static>(&self, cmd: &Cmd) -> StoreFuture<'_, T> {
        let cmd = cmd.clone();
        Box::pin(async move { self.query(&cmd).await })
    }

    /// Runs a pipeline (or, `atomic`, a MULTI/EXEC transaction).
    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        Ok(with_retry!(pipe.query_async(&mut conn).await)?)
    }

    /// Runs `commands` (EVALSHAs of our scripts among them) as one pipeline.
    async fn run_commands(&self, commands: &[Cmd]) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.conn.clone();
        run_commands(&mut conn, &self.scripts, commands).await
    }

    /// A protobuf record stored as a string.
    async fn get_record<T: prost::Message + Default>(
        &self,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<Vec<u8>> = self.query(::redis::cmd("GET").arg(key)).await?;
        decode_opt(raw)
    }

    /// A protobuf record stored in a hash field.
    async fn hash_record<T: prost::Message + Default>(
        &self,
        key: String,
        field: &str,
    ) -> Result<Option<T>, StoreError> {
        let raw: Option<Vec<u8>> = self.query(::redis::cmd("HGET").arg(key).arg(field)).await?;
        decode_opt(raw)
    }

    /// Every field of a hash, ordered by field (ids sort as bytes, like sled's keys).
    async fn hash_all(&self, key: String) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let map: std::collections::BTreeMap<String, Vec<u8>> =
            self.query(::redis::cmd("HGETALL").arg(key)).await?;
        Ok(map.into_iter().collect())
    }

    /// Every field of a hash of numbers, ordered by field.
    async fn hash_numbers(&self, key: String) -> Result<Vec<(String, u64)>, StoreError> {
        let map: std::collections::BTreeMap<String, u64> =
            self.query(::redis::cmd("HGETALL").arg(key)).await?;
        Ok(map.into_iter().collect())
    }

    /// Ids of a sorted set (scores 0) strictly after `after` ("" from the start), at
    /// most `limit`.
    async fn ids_after(
        &self,
        key: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = if after.is_empty() {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        // A negative count is "all of them".
        let count = i64::try_from(limit).unwrap_or(-1);
        self.query(
            ::redis::cmd("ZRANGEBYLEX")
                .arg(key)
                .arg(start)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(count),
        )
        .await
    }

    /// A page of records listed by an id index (`quip:users`, `quip:groups`): ids
    /// strictly after `after`, skipping ids whose record is missing (an index entry
    /// written before a write that failed), so that a short page means the end.
    async fn indexed_page<T: prost::Message + Default>(
        &self,
        index: &str,
        record_key: impl Fn(&str) -> String,
        after: &str,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let mut records = Vec::new();
        let mut after = after.to_owned();
        while records.len() < limit {
            let want = (limit - records.len()).min(1024);
            let ids = self.ids_after(index, &after, want).await?;
            let Some(last) = ids.last() else {
                break;
            };
            after = last.clone();
            let mut pipe = ::redis::pipe();
            for id in &ids {
                pipe.cmd("GET").arg(record_key(id));
            }
            let raws: Vec<Option<Vec<u8>>> = self.query_pipe(&pipe).await?;
            for raw in raws.into_iter().flatten() {
                records.push(T::decode(raw.as_slice())?);
            }
            if ids.len() < want {
                break;
            }
        }
        Ok(records)
    }
}

/// Runs `commands` as one pipeline on `conn` and returns every reply (a failed
/// command's reply is its `Value::ServerError`). EVALSHAs that Redis answered NOSCRIPT
/// (its script cache is empty after a restart) were not run: the scripts are loaded
/// and those commands sent again, in their order.
async fn run_commands(
    conn: &mut ConnectionManager,
    scripts: &Scripts,
    commands: &[Cmd],
) -> Result<Vec<Value>, StoreError> {
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    for cmd in commands {
        pipe.add_command(cmd.clone());
    }
    let mut replies: Vec<Value> = with_retry!(pipe.query_async(conn).await)?;
    let missing: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, reply)| is_noscript(reply))
        .map(|(i, _)| i)
        .collect();
    if missing.is_empty() {
        return Ok(replies);
    }
    scripts.load(conn).await?;
    let mut again = ::redis::pipe();
    again.ignore_errors();
    for &i in &missing {
        again.add_command(commands[i].clone());
    }
    let retried: Vec<Value> = with_retry!(again.query_async(conn).await)?;
    for (i, reply) in missing.into_iter().zip(retried) {
        replies[i] = reply;
    }
    Ok(replies)
}

fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(error)
        if error.kind() == Some(::redis::ServerErrorKind::NoScript))
}

/// A command's reply, or its server error as Unavailable.
fn reply_ok(reply: Value) -> Result<Value, StoreError> {
    match reply {
        Value::ServerError(error) => Err(StoreError::Unavailable(format!("redis: {error}"))),
        reply => Ok(reply),
    }
}

fn decode_opt<T: prost::Message + Default>(raw: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    raw.map(|raw| T::decode(raw.as_slice()).map_err(StoreError::from))
        .transpose()
}

impl Store for RedisStore {
    fn create_user(&self, user: UserRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.create_user_now(&user).await })
    }

    fn user_by_id<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(self.get_record(keys::user_record(user_id)))
    }

    fn user_by_username<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(self.user_by_username_now(username))
    }

    fn update_user(&self, user: UserRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.update_user_now(&user).await })
    }

    fn change_user<'a>(
        &'a self,
        user_id: &'a str,
        change: crate::store::RecordChange<'a, UserRecord>,
    ) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(self.change_record(keys::user_record(user_id), None, None, change))
    }

    fn change_device<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
        change: crate::store::RecordChange<'a, DeviceRecord>,
    ) -> StoreFuture<'a, DeviceRecord> {
        Box::pin(async move {
            let start = DeviceRecord {
                device_id: device_id.to_owned(),
                ..Default::default()
            };
            self.change_record(keys::devices(user_id), Some(device_id), Some(start), change)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a device change returned nothing".into()))
        })
    }

    fn users<'a>(
        &'a self,
        after_user_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<UserRecord>> {
        Box::pin(self.indexed_page(keys::USERS, keys::user_record, after_user_id, limit))
    }

    fn put_device<'a>(&'a self, user_id: &'a str, device: DeviceRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.put_device_now(user_id, &device).await })
    }

    fn device<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
    ) -> StoreFuture<'a, Option<DeviceRecord>> {
        Box::pin(self.hash_record(keys::devices(user_id), device_id))
    }

    fn devices<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<DeviceRecord>> {
        Box::pin(self.devices_now(user_id))
    }

    fn put_refresh(&self, token_hash: [u8; 32], record: RefreshRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.put_refresh_now(&token_hash, &record).await })
    }

    fn take_refresh(&self, token_hash: [u8; 32]) -> StoreFuture<'_, Option<RefreshRecord>> {
        Box::pin(async move { self.take_refresh_now(&token_hash).await })
    }

    fn append_then(
        &self,
        message: NewMessage,
        on_commit: Option<OnCommit>,
    ) -> StoreFuture<'static, Appended> {
        let (tx, answer) = oneshot::channel();
        // Enqueued now, not when the future is first polled: call order is seq order.
        let sent = self.appends.send(append::Job {
            message,
            on_commit,
            tx,
        });
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
        Box::pin(self.sent_now(sender, client_msg_id))
    }

    fn last_seq<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.last_seq_now(conv_id))
    }

    fn range<'a>(
        &'a self,
        conv_id: &'a str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<pb::Message>> {
        Box::pin(self.range_now(conv_id, from, to, limit))
    }

    fn before<'a>(
        &'a self,
        conv_id: &'a str,
        before: u64,
        limit: usize,
    ) -> StoreFuture<'a, (Vec<pb::Message>, bool)> {
        Box::pin(self.before_now(conv_id, before, limit))
    }

    fn user_conversations<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<String>> {
        self.query_boxed(
            ::redis::cmd("ZRANGE")
                .arg(keys::conversations(user_id))
                .arg(0)
                .arg(-1),
        )
    }

    fn mention_seq<'a>(&'a self, user_id: &'a str, conv_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.mention_seq_now(user_id, conv_id))
    }

    fn group<'a>(&'a self, group_id: &'a str) -> StoreFuture<'a, Option<GroupRecord>> {
        Box::pin(self.get_record(keys::group(group_id)))
    }

    fn member<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<MemberRecord>> {
        Box::pin(self.hash_record(keys::members(group_id), user_id))
    }

    fn former_member<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<FormerMemberRecord>> {
        Box::pin(self.hash_record(keys::former_members(group_id), user_id))
    }

    fn members<'a>(
        &'a self,
        group_id: &'a str,
        after_user_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<MemberRecord>> {
        Box::pin(self.members_now(group_id, after_user_id, limit))
    }

    fn put_join_request(&self, request: JoinRequestRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.put_join_request_now(&request).await })
    }

    fn take_join_request<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<JoinRequestRecord>> {
        Box::pin(self.take_join_request_now(group_id, user_id))
    }

    fn join_requests<'a>(&'a self, group_id: &'a str) -> StoreFuture<'a, Vec<JoinRequestRecord>> {
        Box::pin(self.join_requests_now(group_id))
    }

    fn groups<'a>(
        &'a self,
        after_group_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<GroupRecord>> {
        Box::pin(self.indexed_page(keys::GROUPS, keys::group, after_group_id, limit))
    }

    fn put_contact_request(&self, request: ContactRequestRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.put_contact_request_now(&request).await })
    }

    fn take_contact_request<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> StoreFuture<'a, Option<ContactRequestRecord>> {
        Box::pin(self.take_contact_request_now(from, to))
    }

    fn contact_requests<'a>(
        &'a self,
        user_id: &'a str,
        incoming: bool,
    ) -> StoreFuture<'a, Vec<ContactRequestRecord>> {
        Box::pin(self.contact_requests_now(user_id, incoming))
    }

    fn add_friends<'a>(&'a self, a: &'a str, b: &'a str, since_ms: u64) -> StoreFuture<'a, ()> {
        Box::pin(self.add_friends_now(a, b, since_ms))
    }

    fn remove_friends<'a>(&'a self, a: &'a str, b: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.remove_friends_now(a, b))
    }

    fn friends<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.hash_numbers(keys::friends(user_id)))
    }

    fn is_friend<'a>(&'a self, a: &'a str, b: &'a str) -> StoreFuture<'a, bool> {
        self.query_boxed(::redis::cmd("HEXISTS").arg(keys::friends(a)).arg(b))
    }

    fn block<'a>(&'a self, blocker: &'a str, blocked: &'a str, at_ms: u64) -> StoreFuture<'a, ()> {
        Box::pin(self.block_now(blocker, blocked, at_ms))
    }

    fn unblock<'a>(&'a self, blocker: &'a str, blocked: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.unblock_now(blocker, blocked))
    }

    fn blocks<'a>(&'a self, blocker: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.hash_numbers(keys::blocks(blocker)))
    }

    fn blockers_of<'a>(&'a self, blocked: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            Ok(self
                .hash_numbers(keys::blockers(blocked))
                .await?
                .into_iter()
                .map(|(user_id, _)| user_id)
                .collect())
        })
    }

    fn direct_facts<'a>(
        &'a self,
        sender: &'a str,
        recipient: &'a str,
    ) -> StoreFuture<'a, crate::store::DirectFacts> {
        Box::pin(async move {
            let mut pipe = ::redis::pipe();
            pipe.cmd("EXISTS")
                .arg(keys::user_record(recipient))
                .cmd("HEXISTS")
                .arg(keys::blocks(recipient))
                .arg(sender)
                .cmd("HEXISTS")
                .arg(keys::blocks(sender))
                .arg(recipient)
                .cmd("GET")
                .arg(keys::settings(recipient))
                .cmd("HEXISTS")
                .arg(keys::friends(recipient))
                .arg(sender);
            let (exists, blocked_by_recipient, blocked_by_sender, settings, friends): (
                bool,
                bool,
                bool,
                Option<Vec<u8>>,
                bool,
            ) = self.query_pipe(&pipe).await?;
            let settings: Option<UserSettingsRecord> = decode_opt(settings)?;
            Ok(crate::store::DirectFacts {
                recipient_exists: exists,
                blocked_by_recipient,
                blocked_by_sender,
                recipient_friends_only: settings.is_some_and(|s| s.friends_only_dm),
                friends,
            })
        })
    }

    fn is_blocked<'a>(&'a self, blocker: &'a str, blocked: &'a str) -> StoreFuture<'a, bool> {
        self.query_boxed(
            ::redis::cmd("HEXISTS")
                .arg(keys::blocks(blocker))
                .arg(blocked),
        )
    }

    fn user_settings<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, UserSettingsRecord> {
        Box::pin(async move {
            Ok(self
                .get_record(keys::settings(user_id))
                .await?
                .unwrap_or_default())
        })
    }

    fn put_user_settings<'a>(
        &'a self,
        user_id: &'a str,
        settings: UserSettingsRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.put_user_settings_now(user_id, &settings).await })
    }

    fn put_file(&self, file: FileRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.put_file_now(&file).await })
    }

    fn file<'a>(&'a self, file_id: &'a str) -> StoreFuture<'a, Option<FileRecord>> {
        Box::pin(self.get_record(keys::file(file_id)))
    }

    fn add_file_conversation<'a>(
        &'a self,
        file_id: &'a str,
        conv_id: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.add_file_conversation_now(file_id, conv_id))
    }

    fn file_conversations<'a>(&'a self, file_id: &'a str) -> StoreFuture<'a, Vec<String>> {
        self.query_boxed(
            ::redis::cmd("ZRANGE")
                .arg(keys::file_conversations(file_id))
                .arg(0)
                .arg(-1),
        )
    }

    fn update_cursors<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
        updates: Vec<CursorUpdate>,
    ) -> StoreFuture<'a, Vec<MarksMoved>> {
        Box::pin(async move { self.update_cursors_now(user_id, device_id, &updates).await })
    }

    fn device_cursors<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
    ) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.hash_numbers(keys::device_cursors(user_id, device_id)))
    }

    fn read_seq<'a>(&'a self, user_id: &'a str, conv_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let seq: Option<u64> = self
                .query(
                    ::redis::cmd("HGET")
                        .arg(keys::read_marks(conv_id))
                        .arg(user_id),
                )
                .await?;
            Ok(seq.unwrap_or(0))
        })
    }

    fn read_marks<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.hash_numbers(keys::read_marks(conv_id)))
    }

    fn delivered_marks<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.hash_numbers(keys::delivered_marks(conv_id)))
    }

    fn amendments_in<'a>(&'a self, conv_id: &'a str, from: u64, to: u64) -> StoreFuture<'a, u64> {
        Box::pin(self.amendments_in_now(conv_id, from, to))
    }

    fn set_last_seen<'a>(&'a self, user_id: &'a str, at_ms: u64) -> StoreFuture<'a, ()> {
        self.query_boxed(::redis::cmd("SET").arg(keys::last_seen(user_id)).arg(at_ms))
    }

    fn last_seen<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let at: Option<u64> = self
                .query(::redis::cmd("GET").arg(keys::last_seen(user_id)))
                .await?;
            Ok(at.unwrap_or(0))
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        // Acknowledged writes are as durable as Redis's appendfsync makes them; there
        // is nothing of ours to write out.
        Box::pin(std::future::ready(Ok(())))
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    fn size_on_disk(&self) -> u64 {
        // The data lives in Redis; this broker keeps no files of its own.
        0
    }
}
