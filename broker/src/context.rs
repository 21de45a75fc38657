//! Everything a connection handler needs, built once by the server.

use std::sync::Arc;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::limits::{RateLimits, SharedLimiter};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::service::{
    AccountService, AdminService, AuthService, CallService, ChatService, ContactService,
    FileService, GroupService, PresenceService, ReceiptService,
};
use crate::store::Store;

#[derive(Debug)]
pub struct BrokerContext {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub router: Arc<Router>,
    /// The other nodes (nobody on a single node).
    pub cluster: Arc<dyn Cluster>,
    pub auth: AuthService,
    pub chat: Arc<ChatService>,
    pub groups: Arc<GroupService>,
    pub presence: Arc<PresenceService>,
    pub receipts: ReceiptService,
    pub calls: Arc<CallService>,
    pub contacts: ContactService,
    pub account: Arc<AccountService>,
    pub admin: AdminService,
    pub files: FileService,
    /// Limits shared by all connections: REST requests per user, logins per address
    /// and per username.
    pub limits: SharedLimiter,
    /// What each new connection's `ConnectionLimiter` is made from.
    pub rate_limits: RateLimits,
    /// What `GET /metrics` shows; counters bumped by dispatch and the bridge.
    pub metrics: Metrics,
}
