//! Persistence behind one trait, so that the single-node default (sled, embedded) and
//! the cluster engine (Redis, later) are interchangeable.
//!
//! # Guarantees every implementation gives
//!
//! - **Append is atomic with seq assignment**: a conversation's seqs start at 1 and have
//!   no gaps; the message, its dedup record and the senders' conversation-list entries
//!   become visible (and durable) together or not at all.
//! - **Submission order is call order**: [`Store::append`] enqueues the request before
//!   it returns, so appends from one connection get seqs in the order they were made.
//! - **Dedup is exact within the dedup window**: a second append with the same
//!   `(sender, client_msg_id)` stores nothing and returns the original message.
//! - **Durable before acknowledged**: the append future resolves only once the message
//!   is on disk (`fsync` durability) or in the store's memory (`os`).
//! - **Reads see every acknowledged write, and only committed ones**: reads are capped
//!   at the conversation's committed seq, so a message that a crash could still take
//!   back is never handed to a reader (its seq could otherwise be reused).

mod amend;
mod cursor_buffer;
mod keys;
mod records;
pub mod redis;
pub mod sled;
mod writer;

use std::future::Future;
use std::pin::Pin;

use quip_protocol::pb;

pub use records::{
    ContactRequestRecord, DeviceRecord, FileRecord, FormerMemberRecord, GroupRecord,
    JoinRequestRecord, MemberRecord, RefreshRecord, UserRecord, UserSettingsRecord,
};
pub use redis::{RedisOptions, RedisStore};
pub use sled::SledStore;

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username is taken")]
    UsernameTaken,
    #[error("store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("store is shut down")]
    Closed,
    /// An amendment found its target in a state that forbids it (already recalled).
    #[error("{0}")]
    Conflict(String),
}

impl From<::sled::Error> for StoreError {
    fn from(error: ::sled::Error) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

impl From<prost::DecodeError> for StoreError {
    fn from(error: prost::DecodeError) -> Self {
        StoreError::Corrupt(error.to_string())
    }
}

/// When an append counts as done.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// ACK once the message is on disk; one flush covers every append that arrived
    /// while the previous flush ran (group commit).
    Fsync,
    /// ACK once the store holds the message in memory; the OS writes it out soon after.
    Os,
}

/// A change to one stored record, applied by the store against the record as it is
/// at that moment, atomically. It may run more than once (when the record moved under
/// it), so it only sets the fields it is about: whatever another writer did to the
/// other fields meanwhile is kept (a device's last-seen time never undoes its logout).
pub type RecordChange<'a, T> = Box<dyn Fn(&mut T) + Send + Sync + 'a>;

/// What [`Store::append_then`] runs once a message is durable.
pub type OnCommit = Box<dyn FnOnce(&pb::Message) + Send>;

/// A message to append; the store assigns `seq`, `msg_id` and `sent_at_ms`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Everything but seq, msg_id and sent_at_ms, which the store fills in.
    pub message: pb::Message,
    /// Users whose conversation list must contain this conversation afterwards.
    pub participants: Vec<String>,
    /// Group state changes that this (SYSTEM) message announces. They commit in the
    /// same atomic batch as the message, with its seq, so the conversation and the
    /// group's state can never disagree, not even after a crash.
    pub group_writes: Vec<GroupWrite>,
    /// For a RECALL or EDIT event: the change to its target, applied in the same
    /// atomic batch (see [`Amend`]).
    pub amend: Option<Amend>,
}

impl NewMessage {
    pub fn new(message: pb::Message, participants: Vec<String>) -> Self {
        Self {
            message,
            participants,
            group_writes: Vec::new(),
            amend: None,
        }
    }
}

/// What a RECALL or EDIT event does to message `target_seq` of its conversation. The
/// store applies it at commit time, against the target as it is then: an edit racing
/// a recall can never bring recalled content back.
#[derive(Debug, Clone)]
pub struct Amend {
    pub target_seq: u64,
    pub change: AmendChange,
}

#[derive(Debug, Clone)]
pub enum AmendChange {
    /// Marks the target recalled by this user and removes its content, and the text
    /// that earlier EDIT events of it carried.
    Recall { by: String },
    /// Replaces the target's text and sets its `edited_at_ms` to the event's time.
    Edit { text: pb::TextContent },
}

/// A change to a group, applied with the SYSTEM message that announces it.
#[derive(Debug, Clone)]
pub enum GroupWrite {
    /// Creates or replaces the group's record.
    Group(GroupRecord),
    /// Adds a member, who will see the conversation from this message on: the store
    /// sets `joined_after_seq` to the message's seq - 1 and clears any former-member
    /// record and pending join request.
    Join(MemberRecord),
    /// Replaces an existing member's record (role, mute) as given.
    Update(MemberRecord),
    /// Removes a member, who keeps the history up to and including this message.
    Leave {
        group_id: String,
        user_id: String,
        joined_after_seq: u64,
    },
}

/// The result of an append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The stored message (for a duplicate: the original one).
    pub message: pb::Message,
    /// True when `(sender, client_msg_id)` had been stored before.
    pub duplicate: bool,
}

/// One device's resume point and one user's read mark in a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorUpdate {
    pub conv_id: String,
    /// 0 leaves the stored value alone; cursors only move forward.
    pub delivered_seq: u64,
    pub read_seq: u64,
}

/// A user's marks that a cursor update moved (0: not moved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarksMoved {
    pub conv_id: String,
    /// The user's read mark (max over devices), when it moved.
    pub read_seq: u64,
    /// The user's delivered mark (max over devices), when it moved.
    pub delivered_seq: u64,
}

/// What a 1:1 send must know about its two users, read together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectFacts {
    pub recipient_exists: bool,
    /// The recipient blocked the sender.
    pub blocked_by_recipient: bool,
    /// The sender blocked the recipient.
    pub blocked_by_sender: bool,
    /// The recipient takes direct messages from friends only.
    pub recipient_friends_only: bool,
    pub friends: bool,
}

/// Counters that show the group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub appends: u64,
    pub flushes: u64,
    pub batches: u64,
}

/// The broker's persistence. See the module docs for the guarantees.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // --- accounts ---

    /// Creates a user; fails with `UsernameTaken` when the (case-folded) name exists.
    fn create_user(&self, user: UserRecord) -> StoreFuture<'_, ()>;
    fn user_by_id<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<UserRecord>>;
    fn user_by_username<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserRecord>>;

    /// Replaces an existing user's record (the username does not change).
    fn update_user(&self, user: UserRecord) -> StoreFuture<'_, ()>;
    /// Applies `change` to an existing user's record, atomically (see
    /// [`RecordChange`]), and returns the result; `None` if there is no such user.
    fn change_user<'a>(
        &'a self,
        user_id: &'a str,
        change: RecordChange<'a, UserRecord>,
    ) -> StoreFuture<'a, Option<UserRecord>>;
    /// Users ordered by user id, starting after `after_user_id` ("" from the start).
    fn users<'a>(
        &'a self,
        after_user_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<UserRecord>>;

    /// Creates or replaces the record of one of a user's devices.
    fn put_device<'a>(&'a self, user_id: &'a str, device: DeviceRecord) -> StoreFuture<'a, ()>;
    fn device<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
    ) -> StoreFuture<'a, Option<DeviceRecord>>;
    /// Applies `change` to one device's record, atomically (see [`RecordChange`]); a
    /// device without a record starts from an empty one with its id.
    fn change_device<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
        change: RecordChange<'a, DeviceRecord>,
    ) -> StoreFuture<'a, DeviceRecord>;
    /// A user's devices, ordered by device id.
    fn devices<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<DeviceRecord>>;

    /// Stores a refresh token under the hash of its value.
    fn put_refresh(&self, token_hash: [u8; 32], record: RefreshRecord) -> StoreFuture<'_, ()>;
    /// Removes and returns a refresh token record: a token works once (rotation).
    fn take_refresh(&self, token_hash: [u8; 32]) -> StoreFuture<'_, Option<RefreshRecord>>;

    // --- messages ---

    /// Enqueues an append now (so call order is seq order for one caller) and returns a
    /// future that resolves once the message is durable per the configured durability.
    fn append(&self, message: NewMessage) -> StoreFuture<'static, Appended> {
        self.append_then(message, None)
    }

    /// [`append`](Store::append), and once the message is durable, before the future
    /// resolves, `on_commit` runs with the stored message: in seq order within each
    /// conversation, whichever task appended. Fan-out uses it, so that live deliveries
    /// leave the broker in order even when several connections post to one group (out
    /// of order, every lane behind would have to fetch the missing messages from the
    /// store). It runs on the store's commit thread, delaying every later commit:
    /// keep it short (hand the work to another thread; blocking there is only right
    /// as backpressure).
    /// It does not run for a duplicate or a failed append.
    fn append_then(
        &self,
        message: NewMessage,
        on_commit: Option<OnCommit>,
    ) -> StoreFuture<'static, Appended>;

    /// The committed message a sender stored under `client_msg_id`, if still inside
    /// the dedup window: lets a service answer a resend with its original ACK before
    /// checks that the first attempt changed the outcome of (a recall resent after it
    /// took effect).
    fn sent<'a>(
        &'a self,
        sender: &'a str,
        client_msg_id: &'a str,
    ) -> StoreFuture<'a, Option<pb::Message>>;

    /// Highest committed seq of a conversation (0 when empty).
    fn last_seq<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, u64>;

    /// Messages with `from <= seq <= to` (to capped at the committed seq), ascending,
    /// at most `limit`.
    fn range<'a>(
        &'a self,
        conv_id: &'a str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<pb::Message>>;

    /// The newest `limit` messages with seq < `before` (ascending order), and whether
    /// older ones exist.
    fn before<'a>(
        &'a self,
        conv_id: &'a str,
        before: u64,
        limit: usize,
    ) -> StoreFuture<'a, (Vec<pb::Message>, bool)>;

    /// Conversations a user takes part in (groups they left included).
    fn user_conversations<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<String>>;

    /// Highest seq of a conversation that mentions the user, by id or @all (0: none).
    fn mention_seq<'a>(&'a self, user_id: &'a str, conv_id: &'a str) -> StoreFuture<'a, u64>;

    // --- groups (changes go through `append` with `GroupWrite`s) ---

    fn group<'a>(&'a self, group_id: &'a str) -> StoreFuture<'a, Option<GroupRecord>>;
    fn member<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<MemberRecord>>;
    fn former_member<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<FormerMemberRecord>>;
    /// Members ordered by user id, starting after `after_user_id` ("" from the start).
    fn members<'a>(
        &'a self,
        group_id: &'a str,
        after_user_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<MemberRecord>>;
    /// Records (or replaces) a pending join request.
    fn put_join_request(&self, request: JoinRequestRecord) -> StoreFuture<'_, ()>;
    /// Removes and returns a pending join request.
    fn take_join_request<'a>(
        &'a self,
        group_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<JoinRequestRecord>>;
    fn join_requests<'a>(&'a self, group_id: &'a str) -> StoreFuture<'a, Vec<JoinRequestRecord>>;

    /// Groups ordered by group id, starting after `after_group_id` ("" from the start).
    fn groups<'a>(
        &'a self,
        after_group_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<GroupRecord>>;

    // --- contacts and blocks (the contact service serializes changes) ---

    /// Records (or replaces) a pending friend request.
    fn put_contact_request(&self, request: ContactRequestRecord) -> StoreFuture<'_, ()>;
    /// Removes and returns the pending request `from` → `to`.
    fn take_contact_request<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
    ) -> StoreFuture<'a, Option<ContactRequestRecord>>;
    /// Pending requests to (`incoming`) or from the user.
    fn contact_requests<'a>(
        &'a self,
        user_id: &'a str,
        incoming: bool,
    ) -> StoreFuture<'a, Vec<ContactRequestRecord>>;
    /// Makes two users friends, dropping any requests between them, atomically.
    fn add_friends<'a>(&'a self, a: &'a str, b: &'a str, since_ms: u64) -> StoreFuture<'a, ()>;
    /// Ends a friendship; false if there was none.
    fn remove_friends<'a>(&'a self, a: &'a str, b: &'a str) -> StoreFuture<'a, bool>;
    /// A user's friends with the time they became friends, by user id.
    fn friends<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>>;
    fn is_friend<'a>(&'a self, a: &'a str, b: &'a str) -> StoreFuture<'a, bool>;
    /// Blocks `blocked` for `blocker`, dropping any requests between them, atomically.
    fn block<'a>(&'a self, blocker: &'a str, blocked: &'a str, at_ms: u64) -> StoreFuture<'a, ()>;
    /// False if there was no such block.
    fn unblock<'a>(&'a self, blocker: &'a str, blocked: &'a str) -> StoreFuture<'a, bool>;
    /// Whom `blocker` blocked, with when, by user id.
    fn blocks<'a>(&'a self, blocker: &'a str) -> StoreFuture<'a, Vec<(String, u64)>>;
    /// Who blocked `blocked`.
    fn blockers_of<'a>(&'a self, blocked: &'a str) -> StoreFuture<'a, Vec<String>>;
    fn is_blocked<'a>(&'a self, blocker: &'a str, blocked: &'a str) -> StoreFuture<'a, bool>;
    fn user_settings<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, UserSettingsRecord>;
    /// Everything a 1:1 send from `sender` to `recipient` checks. One call, so that a
    /// networked store can answer it in one round trip rather than five.
    fn direct_facts<'a>(
        &'a self,
        sender: &'a str,
        recipient: &'a str,
    ) -> StoreFuture<'a, DirectFacts> {
        Box::pin(async move {
            let recipient_friends_only = self.user_settings(recipient).await?.friends_only_dm;
            Ok(DirectFacts {
                recipient_exists: self.user_by_id(recipient).await?.is_some(),
                blocked_by_recipient: self.is_blocked(recipient, sender).await?,
                blocked_by_sender: self.is_blocked(sender, recipient).await?,
                recipient_friends_only,
                // Only asked when it matters (a read for the embedded store).
                friends: recipient_friends_only && self.is_friend(recipient, sender).await?,
            })
        })
    }
    fn put_user_settings<'a>(
        &'a self,
        user_id: &'a str,
        settings: UserSettingsRecord,
    ) -> StoreFuture<'a, ()>;

    // --- files (the bytes live beside the store, in `files/<sha256>`) ---

    fn put_file(&self, file: FileRecord) -> StoreFuture<'_, ()>;
    fn file<'a>(&'a self, file_id: &'a str) -> StoreFuture<'a, Option<FileRecord>>;
    /// Records that a message referencing the file is (about to be) sent in
    /// `conv_id`: who can read that conversation can read the file.
    fn add_file_conversation<'a>(
        &'a self,
        file_id: &'a str,
        conv_id: &'a str,
    ) -> StoreFuture<'a, ()>;
    fn file_conversations<'a>(&'a self, file_id: &'a str) -> StoreFuture<'a, Vec<String>>;

    // --- cursors ---

    /// Moves a device's delivered cursors and the user's read and delivered marks
    /// forward. Returns the user-level marks that moved.
    fn update_cursors<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
        updates: Vec<CursorUpdate>,
    ) -> StoreFuture<'a, Vec<MarksMoved>>;
    /// Raises a sender's read mark to the message they just sent (sending means having
    /// read the conversation up to it). Reports nothing: no receipt is pushed for it.
    fn mark_sent<'a>(
        &'a self,
        user_id: &'a str,
        conv_id: &'a str,
        seq: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let read = CursorUpdate {
                conv_id: conv_id.to_owned(),
                delivered_seq: 0,
                read_seq: seq,
            };
            self.update_cursors(user_id, "", vec![read])
                .await
                .map(|_| ())
        })
    }
    /// A device's stored delivered cursors, by conversation.
    fn device_cursors<'a>(
        &'a self,
        user_id: &'a str,
        device_id: &'a str,
    ) -> StoreFuture<'a, Vec<(String, u64)>>;
    /// The user's read seq in a conversation (max over devices).
    fn read_seq<'a>(&'a self, user_id: &'a str, conv_id: &'a str) -> StoreFuture<'a, u64>;
    /// Every user's read marks in a conversation, ordered by user id.
    fn read_marks<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>>;
    /// Every user's delivered marks in a conversation, ordered by user id.
    fn delivered_marks<'a>(&'a self, conv_id: &'a str) -> StoreFuture<'a, Vec<(String, u64)>>;

    // --- amendments (written through `append` with `NewMessage::amend`) ---

    /// How many RECALL/EDIT events a conversation has with `from <= seq <= to`.
    fn amendments_in<'a>(&'a self, conv_id: &'a str, from: u64, to: u64) -> StoreFuture<'a, u64>;

    // --- presence ---

    /// Records when the user's last device went offline.
    fn set_last_seen<'a>(&'a self, user_id: &'a str, at_ms: u64) -> StoreFuture<'a, ()>;
    fn last_seen<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, u64>;

    // --- lifecycle ---

    /// Makes everything written so far durable.
    fn flush(&self) -> StoreFuture<'_, ()>;
    fn stats(&self) -> StoreStats;
    /// Bytes the store takes on disk.
    fn size_on_disk(&self) -> u64;
}
