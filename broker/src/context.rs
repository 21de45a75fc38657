//! Everything a connection handler needs, built once by the server.

use std::sync::Arc;

use crate::config::Config;
use crate::router::Router;
use crate::service::{
    AuthService, CallService, ChatService, GroupService, PresenceService, ReceiptService,
};
use crate::store::Store;

#[derive(Debug)]
pub struct BrokerContext {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub router: Arc<Router>,
    pub auth: AuthService,
    pub chat: Arc<ChatService>,
    pub groups: GroupService,
    pub presence: PresenceService,
    pub receipts: ReceiptService,
    pub calls: Arc<CallService>,
}
