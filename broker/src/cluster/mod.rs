//! Several brokers acting as one, joined by Redis (design section 6).
//!
//! A single node needs none of this: [`LocalCluster`] forwards nothing and sees no
//! one elsewhere. With `--redis`, [`RedisCluster`] makes each node:
//!
//! - **announce presence**: `quip:online:{user}` is a hash of node id → "expiry
//!   devices", written on every session change of the user on that node and
//!   refreshed while connected, so a node that dies drops out after the TTL;
//! - **route**: what the router hands to local sessions ([`Outbound`]) is also
//!   published, once per node where other recipients are connected, on that node's
//!   channel `quip:node:{node_id}`, carrying the encoded frame and the target users.
//!   Where users are is cached briefly and dropped when their presence changes
//!   (`quip:presence` channel);
//! - **broadcast** what every node must hear (a group's membership changed, a user's
//!   sessions must close) on `quip:broadcast`.
//!
//! Live delivery across nodes is best effort; correctness does not rest on it. A
//! cached route can be stale for a moment when a user arrives on a node, and
//! published messages are lost while a node's subscription is down. Both cases end
//! with a catch-up ([`LaneItem::Reached`](crate::router::LaneItem::Reached)): the
//! node re-reads the last seq of the affected users' conversations and each lane
//! fetches from the store whatever its device misses. The store (Redis) is the one
//! source of truth, so nothing acknowledged is ever lost, only possibly late.

mod envelope;
mod presence;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use quip_protocol::ErrorCode;

pub use self::redis::{RedisCluster, RedisClusterOptions};
use crate::router::{Push, SessionEvent};

/// A boxed future, so the trait stays object-safe (`Arc<dyn Cluster>`).
pub type ClusterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster link unavailable: {0}")]
    Unavailable(String),
}

impl From<::redis::RedisError> for ClusterError {
    fn from(error: ::redis::RedisError) -> Self {
        ClusterError::Unavailable(error.to_string())
    }
}

/// What this node hands to the others.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Message `seq` of `conv_id`, encoded once as `frame`, for every session of
    /// `recipients`.
    Deliver {
        conv_id: Arc<str>,
        seq: u64,
        frame: Bytes,
        recipients: Arc<[String]>,
    },
    /// A push outside the conversations' sequence (typing, presence, receipts).
    Push {
        frame: Bytes,
        recipients: Arc<[String]>,
        how: Push,
    },
    /// Ends a user's sessions (one device's, or all): logout, a disabled account, a
    /// removed device. Sent to every node: a stale route must not keep a revoked
    /// session alive.
    Close {
        user_id: String,
        device_id: Option<String>,
        code: ErrorCode,
        reason: String,
    },
    /// A group's membership changed: every node drops its cached member list.
    MembersChanged { group_id: String },
}

/// The rest of the cluster, as one node sees it.
pub trait Cluster: Send + Sync + std::fmt::Debug + 'static {
    fn node_id(&self) -> &str;

    /// Hands `outbound` to the nodes that need it. Never waits.
    fn forward(&self, outbound: Outbound);

    /// Follows a session opening or closing on this node (presence in the cluster).
    /// Called in event order, before presence decides whether the user went online
    /// or offline.
    fn on_session_event<'a>(&'a self, event: &'a SessionEvent) -> ClusterFuture<'a, ()>;

    /// How many devices each of `users` has connected to *other* nodes.
    fn devices_elsewhere<'a>(
        &'a self,
        users: &'a [String],
    ) -> ClusterFuture<'a, Result<Vec<u32>, ClusterError>>;

    /// Whether the link to the other nodes works right now.
    fn is_connected(&self) -> bool;

    /// True when there are other nodes at all (false for [`LocalCluster`]).
    fn spans_nodes(&self) -> bool;
}

/// The single node: nothing to forward, nobody elsewhere.
#[derive(Debug, Default)]
pub struct LocalCluster;

impl Cluster for LocalCluster {
    fn node_id(&self) -> &str {
        "local"
    }

    fn forward(&self, _outbound: Outbound) {}

    fn on_session_event<'a>(&'a self, _event: &'a SessionEvent) -> ClusterFuture<'a, ()> {
        Box::pin(async {})
    }

    fn devices_elsewhere<'a>(
        &'a self,
        users: &'a [String],
    ) -> ClusterFuture<'a, Result<Vec<u32>, ClusterError>> {
        Box::pin(async move { Ok(vec![0; users.len()]) })
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn spans_nodes(&self) -> bool {
        false
    }
}
