//! Records stored next to messages, encoded with prost (the same codec as the wire,
//! with no schema file: these never leave the broker).

#[derive(Clone, PartialEq, prost::Message)]
pub struct UserRecord {
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// As chosen at registration; lookups are case-insensitive.
    #[prost(string, tag = "2")]
    pub username: String,
    #[prost(string, tag = "3")]
    pub nickname: String,
    /// PHC string (argon2id, salt and parameters included).
    #[prost(string, tag = "4")]
    pub password_hash: String,
    #[prost(uint64, tag = "5")]
    pub created_at_ms: u64,
    #[prost(bool, tag = "6")]
    pub disabled: bool,
    /// "user" or "admin".
    #[prost(string, tag = "7")]
    pub role: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RefreshRecord {
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// A refresh token only works for the device it was issued to.
    #[prost(string, tag = "2")]
    pub device_id: String,
    #[prost(uint64, tag = "3")]
    pub expires_at_ms: u64,
}

/// What a `(sender, client_msg_id)` resolved to, kept for the dedup window.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DedupRecord {
    #[prost(string, tag = "1")]
    pub conv_id: String,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(uint64, tag = "3")]
    pub expires_at_ms: u64,
}
