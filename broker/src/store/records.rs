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
    /// Tokens issued before this (ms) are refused: set by "log out everywhere", a
    /// password reset, or disabling the account.
    #[prost(uint64, tag = "8")]
    pub tokens_valid_after_ms: u64,
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
    /// When it was issued: checked against the user's and the device's
    /// `tokens_valid_after_ms` (0 for records from before devices were tracked).
    #[prost(uint64, tag = "4")]
    pub issued_at_ms: u64,
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

/// A group's settings. Stored under `g` group_id in the `chat` tree, so that changes
/// commit atomically with the SYSTEM message announcing them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupRecord {
    #[prost(string, tag = "1")]
    pub group_id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub avatar_url: String,
    #[prost(string, tag = "5")]
    pub owner_id: String,
    /// `quip.v1.JoinMode`.
    #[prost(int32, tag = "6")]
    pub join_mode: i32,
    #[prost(bool, tag = "7")]
    pub mute_all: bool,
    #[prost(uint64, tag = "8")]
    pub created_at_ms: u64,
    #[prost(bool, tag = "9")]
    pub dissolved: bool,
    #[prost(uint32, tag = "10")]
    pub member_count: u32,
}

/// One member of a group: `G` group_id 0 user_id in the `chat` tree.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberRecord {
    #[prost(string, tag = "1")]
    pub group_id: String,
    #[prost(string, tag = "2")]
    pub user_id: String,
    /// `quip.v1.GroupRole`.
    #[prost(int32, tag = "3")]
    pub role: i32,
    #[prost(uint64, tag = "4")]
    pub joined_at_ms: u64,
    /// The member sees the group conversation from seq `joined_after_seq + 1` on (the
    /// SYSTEM message of their joining). Set by the store when the member is added.
    #[prost(uint64, tag = "5")]
    pub joined_after_seq: u64,
    #[prost(uint64, tag = "6")]
    pub muted_until_ms: u64,
}

/// A member who left or was removed keeps the history up to and including `left_seq`
/// (the SYSTEM message of their leaving): `F` group_id 0 user_id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FormerMemberRecord {
    #[prost(uint64, tag = "1")]
    pub joined_after_seq: u64,
    #[prost(uint64, tag = "2")]
    pub left_seq: u64,
}

/// A pending request to join an approval-mode group: `Q` group_id 0 user_id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinRequestRecord {
    #[prost(string, tag = "1")]
    pub group_id: String,
    #[prost(string, tag = "2")]
    pub user_id: String,
    #[prost(string, tag = "3")]
    pub message: String,
    #[prost(uint64, tag = "4")]
    pub requested_at_ms: u64,
}

/// One device of a user: `v` user 0 device in the `accounts` tree.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceRecord {
    #[prost(string, tag = "1")]
    pub device_id: String,
    #[prost(string, tag = "2")]
    pub client_version: String,
    /// "quic" or "websocket": the transport of its last session.
    #[prost(string, tag = "3")]
    pub transport: String,
    #[prost(uint64, tag = "4")]
    pub first_seen_ms: u64,
    /// When its last session ended (0: never ended yet).
    #[prost(uint64, tag = "5")]
    pub last_seen_ms: u64,
    /// Tokens of this device issued before this (ms) are refused ("log out").
    #[prost(uint64, tag = "6")]
    pub tokens_valid_after_ms: u64,
}

/// A pending friend request: `q` to 0 from (incoming) and `o` from 0 to (outgoing)
/// in the `social` tree.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContactRequestRecord {
    #[prost(string, tag = "1")]
    pub from_user_id: String,
    #[prost(string, tag = "2")]
    pub to_user_id: String,
    #[prost(string, tag = "3")]
    pub message: String,
    #[prost(uint64, tag = "4")]
    pub requested_at_ms: u64,
}

/// A user's settings: `S` user in the `social` tree.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserSettingsRecord {
    /// Only friends may send this user 1:1 messages (and call).
    #[prost(bool, tag = "1")]
    pub friends_only_dm: bool,
}

/// A stored upload: `f` file_id in the `files` tree. The bytes are in
/// `files/<sha256>`, shared by every upload of the same content.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileRecord {
    #[prost(string, tag = "1")]
    pub file_id: String,
    /// Hex SHA-256 of the content: its file name in the files directory.
    #[prost(string, tag = "2")]
    pub sha256: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint64, tag = "4")]
    pub size: u64,
    #[prost(string, tag = "5")]
    pub mime: String,
    #[prost(string, tag = "6")]
    pub uploader: String,
    #[prost(uint64, tag = "7")]
    pub uploaded_at_ms: u64,
    #[prost(uint32, tag = "8")]
    pub width: u32,
    #[prost(uint32, tag = "9")]
    pub height: u32,
    /// `files/<sha256>.thumb.jpg` exists.
    #[prost(bool, tag = "10")]
    pub has_thumbnail: bool,
}
