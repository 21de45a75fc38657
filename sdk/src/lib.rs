//! Async Rust client for the Quip broker over QUIC.
//!
//! ```no_run
//! # async fn demo() -> quip_sdk::Result<()> {
//! use quip_sdk::{Client, Event, Trust};
//!
//! let trust = Trust::fingerprint_hex("<64 hex digits the broker logged>")?;
//! let client = Client::connect("127.0.0.1:4433".parse().unwrap(), trust).await?;
//! client.login("alice", "correct horse").await?;
//! client.send_text("user_0123456789abcdef", "hi").await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(message) = event {
//!         println!("{}: {:?}", message.from, message.content);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Public pieces, one concept per module:
//! - [`Client`] (`client`): connect, authenticate, send, history, events, close.
//! - Groups (`groups`): `Client::create_group`, `join_group`, `invite`, ... one
//!   method per group operation, [`GroupUpdate`]; mutations are never resent after a
//!   reconnect (see the module docs).
//! - Typing (`typing`): `Client::typing` (sent as a QUIC datagram where possible)
//!   and `Client::typing_in` (who is typing now).
//! - Presence (`presence`): `Client::presence`, `group_presence`, `known_presence`;
//!   pushes arrive as [`Event::Presence`].
//! - Receipts (`receipts`): `Client::mark_read`, `receipts` (read by N of M),
//!   `readers`; pushes arrive as [`Event::Receipt`].
//! - Calls (`calls`): WebRTC signalling, `Client::call_invite`, `call_action`,
//!   `call_offer`, `call_answer`, `call_ice`; pushes arrive as [`Event::Call`];
//!   never resent after a reconnect (see the module docs).
//! - Recall and edit (`amend`): `Client::recall`, `edit`, and [`apply_amendment`]
//!   to apply `RECALL` / `EDIT` events to their target.
//! - Contacts (`contacts`): friend requests (`Client::send_contact_request`,
//!   `accept_contact_request`, ...), `friends`, `block` / `unblock`, the
//!   friends-only setting; pushes arrive as [`Event::Contact`]. Changes are never
//!   resent after a reconnect.
//! - Files (`files`): `Client::upload_file`, `upload_reader`, `download_file`,
//!   `download_range`, `download_thumbnail`, `file_info`, and `send_file` for IMAGE,
//!   VOICE, VIDEO and FILE messages; each transfer streams on a QUIC stream of its
//!   own and is never resent after a reconnect (see the module docs).
//! - Devices (`account`): `Client::devices`, `logout_device`, `logout_everywhere`.
//!   A device logged out (or an account disabled) ends with `State(Closed)`.
//! - Back office (`admin`): `Client::admin_list_users`, `admin_user`,
//!   `admin_set_disabled`, ... for users whose [`Client::role`] is `"admin"`.
//! - Rate limits: a `RATE_LIMITED` refusal says how long to wait,
//!   [`SdkError::retry_after`].
//! - [`ClientOptions`] (`options`): device id, lanes, buffers, timeouts, datagrams.
//! - [`Trust`] (`trust`): which broker certificate to accept (file, DER, pinned
//!   fingerprint).
//! - [`dial`], [`TransportOptions`] (`transport`): a raw QUIC connection to a broker.
//! - [`ReconnectPolicy`] (`backoff`): reconnect delays.
//! - [`Event`], [`ConnectionState`] (`events`): what the application receives.
//! - [`SdkError`] (`error`).
//!
//! Internals: `shared` (state shared with background tasks), `inbox` (in-order
//! release and the event queue), `outbox` (requests awaiting responses), `framed`
//! (frames on streams), `handshake` (`Hello`), `session` (one connection's tasks),
//! `driver` (reconnecting), `datagrams` (QUIC datagrams in and out).

mod account;
mod admin;
mod amend;
mod backoff;
mod calls;
mod client;
mod contacts;
mod datagrams;
mod driver;
mod error;
mod events;
mod files;
mod framed;
mod groups;
mod handshake;
mod inbox;
mod options;
mod outbox;
mod presence;
mod receipts;
mod session;
mod shared;
mod transport;
mod trust;
mod typing;

pub use admin::{ROLE_ADMIN, ROLE_USER};
pub use amend::{amendment, apply_amendment};
pub use backoff::ReconnectPolicy;
pub use client::Client;
pub use error::{Result, SdkError};
pub use events::{ConnectionState, Event};
pub use groups::{GroupUpdate, MUTE_INDEFINITELY, UNMUTE};
pub use options::ClientOptions;
pub use transport::{TransportOptions, dial};
pub use trust::{Trust, sha256_fingerprint};

/// The QUIC implementation, re-exported so a shared [`ClientOptions::endpoint`] is
/// built with the same version the SDK uses.
pub use quinn;
/// The wire types the API uses (`Message`, `SendRequest`, `SendAck`, `Tokens`, ...).
pub use quip_protocol::pb;
pub use quip_protocol::pb::{
    AdminGroupPage, AdminUser, BlockedUser, ContactDone, ContactEvent, ContactEventKind,
    ContactRequestInfo, ContactRequestLists, ContactSettings, DeviceInfo, Friend, GroupChanged,
    GroupInfo, GroupMember, GroupRole, JoinMode, JoinRequestInfo, MemberPage, ServerStats,
    UserDetail, UserPage,
};
pub use quip_protocol::{ErrorCode, pb::SendAck, pb::SendRequest, pb::Tokens};
