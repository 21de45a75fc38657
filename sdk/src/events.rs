//! What the application receives from [`Client::next_event`](crate::Client::next_event).

use std::time::Duration;

use quip_protocol::pb;

/// One thing that happened, in the order it happened.
///
/// Non-exhaustive: new kinds of events come with new broker features, so match with
/// a `_ => {}` arm.
// Messages are the common event; boxing them would cost an allocation per message
// and make matching clumsier, for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A message from someone else (or from another of this user's devices), exactly
    /// once and in `seq` order within its conversation. Messages this device sent are
    /// not echoed back: their [`SendAck`](pb::SendAck) is the confirmation.
    ///
    /// Kinds `RECALL` and `EDIT` are events that change an earlier message of the
    /// conversation (content `amendment`): apply them to their target with
    /// [`apply_amendment`](crate::apply_amendment) rather than showing them. They come
    /// in seq order like everything else, live or at sync.
    Message(pb::Message),
    /// The catch-up after a (re)connect is complete: every message that was waiting
    /// for this device has been surfaced. Emitted once per successful connection.
    SyncDone,
    /// The connection changed state.
    State(ConnectionState),
    /// Someone is typing (or recording) in a conversation; show it for
    /// `expires_in_ms` unless another notice comes (`STOPPED` ends it). Never stored,
    /// not replayed, and may be lost (it travels as a QUIC datagram where possible).
    /// [`Client::typing_in`](crate::Client::typing_in) keeps the current state, so
    /// an application may poll that instead of tracking these.
    Typing(pb::TypingNotice),
    /// A 1:1 partner's presence changed (first device online, last device offline).
    /// May be lost or reordered in transit; the SDK drops any older (lower `version`)
    /// than the last one seen for that user, so what arrives is always newer.
    /// Query with [`Client::presence`](crate::Client::presence) for the current state.
    Presence(pb::Presence),
    /// A read (or delivered) mark moved: another of this user's devices read a
    /// conversation, a 1:1 partner read it, or group members read messages this user
    /// sent. Reliable and in order with other pushes, but not with messages.
    Receipt(pb::Receipt),
    /// Call signalling for this device: an incoming `INVITE`, the other side's
    /// `RINGING` / `ACCEPT` / `OFFER` / `ANSWER` / `ICE`, `ANSWERED_ELSEWHERE` when
    /// another device of this user took the call, and `ENDED` (with `reason` and
    /// `duration_ms`) when it is over. Reliable, in the order the broker relayed them.
    Call(pb::CallEvent),
    /// Something about this user's contacts that another user did: a friend request
    /// arrived (`REQUEST_RECEIVED`, with its `message`), was accepted
    /// (`REQUEST_ACCEPTED`: you are friends now) or withdrawn (`REQUEST_CANCELLED`), or
    /// a friend removed you (`FRIEND_REMOVED`). Rejections and blocks are never told.
    /// Reliable, sent to every online device; not replayed after a reconnect (ask
    /// [`Client::contact_requests`](crate::Client::contact_requests) /
    /// [`friends`](crate::Client::friends) for the current state).
    Contact(pb::ContactEvent),
}

/// The connection's lifecycle as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Authenticated on a (new) connection. The sync's messages and then
    /// [`Event::SyncDone`] follow.
    Connected,
    /// The connection was lost; attempt number `attempt` (1-based, reset after a
    /// healthy connection) starts after `after`.
    Reconnecting {
        attempt: u32,
        after: Duration,
        reason: String,
    },
    /// The client stopped for good: `close()` was called, reconnecting is disabled,
    /// the broker refused the stored credentials, another connection with the
    /// same device id replaced this one (`SESSION_REPLACED`), this device was logged
    /// out (`LOGGED_OUT`, by the user from another device or by an administrator) or
    /// the account was disabled (`ACCOUNT_DISABLED`). Nothing follows.
    Closed { reason: String },
}
