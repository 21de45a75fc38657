//! Key layout. Strings are separated by 0x00 (ids never contain it) and numbers are
//! big-endian, so sled's byte order is the order we scan in.
//!
//! Tree `chat` holds everything an append writes, so that one atomic batch covers it:
//!
//! | key | value |
//! |---|---|
//! | `m` conv 0 seq | Message (protobuf) |
//! | `d` sender 0 client_msg_id | DedupRecord |
//! | `u` user 0 conv | empty: the user takes part in conv |
//! | `g` group | GroupRecord |
//! | `G` group 0 user | MemberRecord |
//! | `F` group 0 user | FormerMemberRecord (left, keeps history up to a seq) |
//! | `Q` group 0 user | JoinRequestRecord |
//! | `M` user 0 conv | highest seq mentioning the user |
//! | `A` conv | highest seq mentioning everyone (@all) |
//! | `e` conv 0 seq | target seq: message `seq` is a RECALL or EDIT event |
//!
//! Tree `accounts`: `n` lowercase(username) → user id; `i` user id → UserRecord;
//! `r` sha256(refresh token) → RefreshRecord; `s` user id → last seen (ms).
//!
//! Tree `accounts` also: `v` user 0 device → DeviceRecord.
//!
//! Tree `social`: `f` user 0 friend → since (ms), both directions; `q` to 0 from and
//! `o` from 0 to → ContactRequestRecord; `b` blocker 0 blocked → since (ms) and its
//! reverse `B` blocked 0 blocker; `S` user → UserSettingsRecord.
//!
//! Tree `cursors`: `c` user 0 device 0 conv → a device's delivered seq; `R` conv 0 user
//! → the user's read seq; `D` conv 0 user → the user's delivered seq (max over
//! devices). Marks are keyed by conversation first, so "read by N" is one prefix scan.

pub(crate) fn message(conv_id: &str, seq: u64) -> Vec<u8> {
    let mut key = message_prefix(conv_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn message_prefix(conv_id: &str) -> Vec<u8> {
    join(b'm', &[conv_id])
}

/// The seq at the end of a message key.
pub(crate) fn seq_of_message_key(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..]
        .try_into()
        .expect("message keys end in a seq");
    u64::from_be_bytes(tail)
}

pub(crate) fn dedup(sender: &str, client_msg_id: &str) -> Vec<u8> {
    join(b'd', &[sender, client_msg_id])
}

pub(crate) fn user_conv(user_id: &str, conv_id: &str) -> Vec<u8> {
    join(b'u', &[user_id, conv_id])
}

pub(crate) fn user_conv_prefix(user_id: &str) -> Vec<u8> {
    let mut key = join(b'u', &[user_id]);
    key.push(0);
    key
}

pub(crate) fn group(group_id: &str) -> Vec<u8> {
    join(b'g', &[group_id])
}

pub(crate) fn member(group_id: &str, user_id: &str) -> Vec<u8> {
    join(b'G', &[group_id, user_id])
}

/// Prefix of a group's members; a member key is this plus the user id.
pub(crate) fn member_prefix(group_id: &str) -> Vec<u8> {
    let mut key = join(b'G', &[group_id]);
    key.push(0);
    key
}

pub(crate) fn former_member(group_id: &str, user_id: &str) -> Vec<u8> {
    join(b'F', &[group_id, user_id])
}

pub(crate) fn join_request(group_id: &str, user_id: &str) -> Vec<u8> {
    join(b'Q', &[group_id, user_id])
}

pub(crate) fn join_request_prefix(group_id: &str) -> Vec<u8> {
    let mut key = join(b'Q', &[group_id]);
    key.push(0);
    key
}

pub(crate) fn mention(user_id: &str, conv_id: &str) -> Vec<u8> {
    join(b'M', &[user_id, conv_id])
}

pub(crate) fn mention_all(conv_id: &str) -> Vec<u8> {
    join(b'A', &[conv_id])
}

pub(crate) fn username(name: &str) -> Vec<u8> {
    join(b'n', &[&name.to_lowercase()])
}

pub(crate) fn user(user_id: &str) -> Vec<u8> {
    join(b'i', &[user_id])
}

pub(crate) fn refresh(hash: &[u8; 32]) -> Vec<u8> {
    let mut key = vec![b'r'];
    key.extend_from_slice(hash);
    key
}

pub(crate) fn delivered(user_id: &str, device_id: &str, conv_id: &str) -> Vec<u8> {
    join(b'c', &[user_id, device_id, conv_id])
}

pub(crate) fn delivered_prefix(user_id: &str, device_id: &str) -> Vec<u8> {
    let mut key = join(b'c', &[user_id, device_id]);
    key.push(0);
    key
}

pub(crate) fn read_mark(conv_id: &str, user_id: &str) -> Vec<u8> {
    join(b'R', &[conv_id, user_id])
}

pub(crate) fn delivered_mark(conv_id: &str, user_id: &str) -> Vec<u8> {
    join(b'D', &[conv_id, user_id])
}

/// Prefix of a conversation's read (`R`) or delivered (`D`) marks; a key is this plus
/// the user id.
pub(crate) fn mark_prefix(tag: u8, conv_id: &str) -> Vec<u8> {
    let mut key = join(tag, &[conv_id]);
    key.push(0);
    key
}

pub(crate) fn last_seen(user_id: &str) -> Vec<u8> {
    join(b's', &[user_id])
}

pub(crate) fn device(user_id: &str, device_id: &str) -> Vec<u8> {
    join(b'v', &[user_id, device_id])
}

/// Keys of one user under `tag` in the `social` tree (`f`, `q`, `o`, `b`, `B`), or
/// the `accounts` tree (`v`): this plus the other user (or device) id.
pub(crate) fn pair_prefix(tag: u8, user_id: &str) -> Vec<u8> {
    let mut key = join(tag, &[user_id]);
    key.push(0);
    key
}

pub(crate) fn pair(tag: u8, user_id: &str, other: &str) -> Vec<u8> {
    join(tag, &[user_id, other])
}

pub(crate) fn settings(user_id: &str) -> Vec<u8> {
    join(b'S', &[user_id])
}

pub(crate) fn amendment(conv_id: &str, seq: u64) -> Vec<u8> {
    let mut key = amendment_prefix(conv_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn amendment_prefix(conv_id: &str) -> Vec<u8> {
    let mut key = join(b'e', &[conv_id]);
    key.push(0);
    key
}

fn join(tag: u8, parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    key.push(tag);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part.as_bytes());
    }
    if tag == b'm' {
        key.push(0);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_by_conv_then_seq() {
        assert!(message("group:group_1", 2) < message("group:group_1", 10));
        assert!(message("group:group_1", u64::MAX) < message("group:group_10", 1));
        assert!(message("group:group_1", 5).starts_with(&message_prefix("group:group_1")));
        assert!(!message("group:group_10", 5).starts_with(&message_prefix("group:group_1")));
        assert_eq!(seq_of_message_key(&message("single:user_a:user_b", 42)), 42);
    }

    #[test]
    fn user_conv_prefix_is_exact() {
        assert!(user_conv("user_a", "x").starts_with(&user_conv_prefix("user_a")));
        assert!(!user_conv("user_ab", "x").starts_with(&user_conv_prefix("user_a")));
    }
}
