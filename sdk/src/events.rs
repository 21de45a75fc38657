//! What the application receives from [`Client::next_event`](crate::Client::next_event).

use std::time::Duration;

use quip_protocol::pb;

/// One thing that happened, in the order it happened.
// Messages are the common event; boxing them would cost an allocation per message
// and make matching clumsier, for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message from someone else (or from another of this user's devices), exactly
    /// once and in `seq` order within its conversation. Messages this device sent are
    /// not echoed back: their [`SendAck`](pb::SendAck) is the confirmation.
    Message(pb::Message),
    /// The catch-up after a (re)connect is complete: every message that was waiting
    /// for this device has been surfaced. Emitted once per successful connection.
    SyncDone,
    /// The connection changed state.
    State(ConnectionState),
    /// Someone is typing (or recording) in a conversation; show it for
    /// `expires_in_ms` unless another notice comes. Never stored, not replayed.
    Typing(pb::TypingNotice),
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
    /// the broker refused the stored credentials, or another connection with the
    /// same device id replaced this one (`SESSION_REPLACED`). Nothing follows.
    Closed { reason: String },
}
