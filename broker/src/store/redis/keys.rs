//! Key names of the Redis store (the table is in the parent module's docs).
//!
//! Every key that an atomic operation touches together shares one hash tag, so that on
//! Redis Cluster it lives in one slot: `{c:<conv_id>}` for a conversation and, for a
//! group, everything under its conversation's tag (a group change commits in the
//! script that appends the SYSTEM message announcing it); `{u:<user_id>}` for a user;
//! `{f:<file_id>}` for a file. Ids never contain `{` or `}` (ids are `[A-Za-z0-9_.-]`,
//! conversation ids add `:`), so a tag always ends where we mean it to.

use quip_protocol::ids;

/// Sorted set (all scores 0, so ordered by id) of every user id.
pub(super) const USERS: &str = "quip:users";
/// Sorted set (all scores 0) of every group id that was ever created.
pub(super) const GROUPS: &str = "quip:groups";
/// Field of a conversation's mention hash that holds the highest @all seq. User ids
/// start with `user_`, so it cannot clash with one.
pub(super) const MENTION_ALL: &str = "@all";

fn conv(conv_id: &str, suffix: &str) -> String {
    format!("quip:{{c:{conv_id}}}:{suffix}")
}

fn user(user_id: &str, suffix: &str) -> String {
    format!("quip:{{u:{user_id}}}:{suffix}")
}

// --- conversations ---

/// The last seq taken (INCR), a plain integer.
pub(super) fn seq(conv_id: &str) -> String {
    conv(conv_id, "seq")
}

/// Hash seq → Message (protobuf).
pub(super) fn messages(conv_id: &str) -> String {
    conv(conv_id, "msg")
}

/// seq of the message `(sender, client_msg_id)` stored, expiring with the dedup window.
pub(super) fn dedup(conv_id: &str, sender: &str, client_msg_id: &str) -> String {
    conv(conv_id, &format!("dedup:{sender}:{client_msg_id}"))
}

/// Sorted set of RECALL/EDIT events: member `<event seq>:<target seq>`, score the
/// event seq.
pub(super) fn amendments(conv_id: &str) -> String {
    conv(conv_id, "amend")
}

/// Hash user id (or [`MENTION_ALL`]) → highest seq mentioning them.
pub(super) fn mentions(conv_id: &str) -> String {
    conv(conv_id, "mention")
}

/// Hash user id → the user's read seq.
pub(super) fn read_marks(conv_id: &str) -> String {
    conv(conv_id, "read")
}

/// Hash user id → the user's delivered seq (max over devices).
pub(super) fn delivered_marks(conv_id: &str) -> String {
    conv(conv_id, "delivered")
}

// --- groups (under their conversation's tag) ---

/// GroupRecord.
pub(super) fn group(group_id: &str) -> String {
    conv(&ids::group_conv_id(group_id), "group")
}

/// Hash user id → MemberRecord.
pub(super) fn members(group_id: &str) -> String {
    conv(&ids::group_conv_id(group_id), "members")
}

/// Sorted set (scores 0) of member ids: ordered paging with ZRANGEBYLEX.
pub(super) fn member_ids(group_id: &str) -> String {
    conv(&ids::group_conv_id(group_id), "member_ids")
}

/// Hash user id → FormerMemberRecord.
pub(super) fn former_members(group_id: &str) -> String {
    conv(&ids::group_conv_id(group_id), "former")
}

/// Hash user id → JoinRequestRecord.
pub(super) fn join_requests(group_id: &str) -> String {
    conv(&ids::group_conv_id(group_id), "joinreq")
}

// --- users ---

/// lowercase(username) → user id. Not tagged: claimed on its own with SET NX.
pub(super) fn username(name: &str) -> String {
    format!("quip:uname:{}", name.to_lowercase())
}

/// UserRecord.
pub(super) fn user_record(user_id: &str) -> String {
    user(user_id, "user")
}

/// Hash device id → DeviceRecord.
pub(super) fn devices(user_id: &str) -> String {
    user(user_id, "devices")
}

/// Sorted set (scores 0) of the user's conversation ids.
pub(super) fn conversations(user_id: &str) -> String {
    user(user_id, "convs")
}

/// Hash conversation id → the device's delivered seq.
pub(super) fn device_cursors(user_id: &str, device_id: &str) -> String {
    user(user_id, &format!("cursors:{device_id}"))
}

/// When the user's last device went offline (ms).
pub(super) fn last_seen(user_id: &str) -> String {
    user(user_id, "last_seen")
}

/// Hash friend id → since (ms).
pub(super) fn friends(user_id: &str) -> String {
    user(user_id, "friends")
}

/// Hash blocked id → since (ms): whom the user blocked.
pub(super) fn blocks(user_id: &str) -> String {
    user(user_id, "blocks")
}

/// Hash blocker id → since (ms): who blocked the user.
pub(super) fn blockers(user_id: &str) -> String {
    user(user_id, "blockers")
}

/// Hash sender id → ContactRequestRecord: requests to the user.
pub(super) fn requests_in(user_id: &str) -> String {
    user(user_id, "req_in")
}

/// Hash recipient id → ContactRequestRecord: requests from the user.
pub(super) fn requests_out(user_id: &str) -> String {
    user(user_id, "req_out")
}

/// UserSettingsRecord.
pub(super) fn settings(user_id: &str) -> String {
    user(user_id, "settings")
}

/// Conversation id a sender's `client_msg_id` went to, expiring with the dedup window:
/// how [`sent`](crate::store::Store::sent) finds the conversation's dedup key.
pub(super) fn sent(user_id: &str, client_msg_id: &str) -> String {
    user(user_id, &format!("sent:{client_msg_id}"))
}

/// RefreshRecord, expiring (PXAT) a grace period after the token does.
pub(super) fn refresh(hash: &[u8; 32]) -> String {
    format!("quip:refresh:{}", hex::encode(hash))
}

// --- files ---

/// FileRecord.
pub(super) fn file(file_id: &str) -> String {
    format!("quip:{{f:{file_id}}}:file")
}

/// Sorted set (scores 0) of the conversations the file was sent in.
pub(super) fn file_conversations(file_id: &str) -> String {
    format!("quip:{{f:{file_id}}}:convs")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes: between the first `{` and the next `}`.
    fn tag(key: &str) -> &str {
        let start = key.find('{').unwrap() + 1;
        let end = start + key[start..].find('}').unwrap();
        &key[start..end]
    }

    #[test]
    fn a_group_shares_its_conversations_slot() {
        let conv_id = ids::group_conv_id("group_1");
        for key in [
            group("group_1"),
            members("group_1"),
            member_ids("group_1"),
            former_members("group_1"),
            join_requests("group_1"),
        ] {
            assert_eq!(tag(&key), tag(&seq(&conv_id)), "{key}");
        }
        assert_eq!(tag(&dedup(&conv_id, "user_a", "c1")), "c:group:group_1");
    }

    #[test]
    fn user_keys_share_the_users_slot() {
        assert_eq!(tag(&sent("user_a", "c1")), "u:user_a");
        assert_eq!(tag(&device_cursors("user_a", "phone")), "u:user_a");
        assert_eq!(tag(&file_conversations("file_1")), tag(&file("file_1")));
    }
}
