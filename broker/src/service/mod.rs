//! Transport-free request handlers. QUIC connections and (later) the WebSocket bridge
//! call these; tests can too, without sockets.

pub mod auth;
pub mod chat;
pub mod error;
pub mod tokens;

pub use auth::{AuthService, Authenticated, CredentialRules};
pub use chat::{Caller, ChatLimits, ChatService, SyncPoint};
pub use error::{ServiceError, ServiceResult};
pub use tokens::TokenIssuer;
