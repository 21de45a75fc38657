//! Transport-free request handlers. QUIC connections and (later) the WebSocket bridge
//! call these; tests can too, without sockets.

pub mod account;
pub mod admin;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod contacts;
pub mod error;
pub mod files;
pub mod groups;
pub mod members;
pub mod presence;
pub mod receipts;
pub mod tokens;

pub use account::AccountService;
pub use admin::AdminService;
pub use auth::{AuthService, Authenticated, CredentialRules};
pub use calls::{CallLimits, CallService};
pub use chat::{Access, Caller, ChatLimits, ChatService, SyncPoint};
pub use contacts::ContactService;
pub use error::{ServiceError, ServiceResult};
pub use files::{FileDirs, FileLimits, FileService};
pub use groups::{GroupLimits, GroupService};
pub use members::MemberCache;
pub use presence::PresenceService;
pub use receipts::ReceiptService;
pub use tokens::TokenIssuer;
