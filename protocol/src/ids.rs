//! Identifier rules. Ids on the wire are strings with a type prefix, as in SimpleIM:
//! `user_…`, `group_…`, `msg_…`. Conversations are `single:<lower>:<higher>` (the two
//! user ids in byte order, so both sides name it the same) and `group:<group_id>`.
//!
//! Generators take their randomness and time as arguments: this crate reads no clock.

/// Longest id of any kind, in bytes.
pub const MAX_ID_LEN: usize = 64;

pub const USER_PREFIX: &str = "user_";
pub const GROUP_PREFIX: &str = "group_";
pub const MSG_PREFIX: &str = "msg_";
pub const SINGLE_CONV_PREFIX: &str = "single:";
pub const GROUP_CONV_PREFIX: &str = "group:";

/// A new user id from 64 random bits.
pub fn new_user_id(random: u64) -> String {
    format!("{USER_PREFIX}{random:016x}")
}

/// A new group id from 64 random bits.
pub fn new_group_id(random: u64) -> String {
    format!("{GROUP_PREFIX}{random:016x}")
}

/// A new message id that sorts by creation time: milliseconds, then 32 random bits.
pub fn new_msg_id(now_ms: u64, random: u32) -> String {
    format!("{MSG_PREFIX}{now_ms:012x}{random:08x}")
}

fn has_id_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn is_prefixed_id(s: &str, prefix: &str) -> bool {
    s.len() > prefix.len() && s.len() <= MAX_ID_LEN && s.starts_with(prefix) && has_id_chars(s)
}

pub fn is_user_id(s: &str) -> bool {
    is_prefixed_id(s, USER_PREFIX)
}

pub fn is_group_id(s: &str) -> bool {
    is_prefixed_id(s, GROUP_PREFIX)
}

/// Device ids are chosen by clients: 1..=64 of `[A-Za-z0-9_.-]`.
pub fn is_device_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && has_id_chars(s)
}

/// Client message ids (dedup keys): 1..=64 of `[A-Za-z0-9_.-]`.
pub fn is_client_msg_id(s: &str) -> bool {
    is_device_id(s)
}

/// A parsed conversation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversation<'a> {
    /// A 1:1 conversation; `low < high` in byte order.
    Single {
        low: &'a str,
        high: &'a str,
    },
    Group {
        group_id: &'a str,
    },
}

impl<'a> Conversation<'a> {
    /// Parses and validates a conversation id. A single conversation must name two
    /// distinct valid user ids in ascending order, so each pair has exactly one id.
    pub fn parse(conv_id: &'a str) -> Option<Self> {
        if let Some(rest) = conv_id.strip_prefix(SINGLE_CONV_PREFIX) {
            let (low, high) = rest.split_once(':')?;
            (is_user_id(low) && is_user_id(high) && low < high)
                .then_some(Conversation::Single { low, high })
        } else {
            let group_id = conv_id.strip_prefix(GROUP_CONV_PREFIX)?;
            is_group_id(group_id).then_some(Conversation::Group { group_id })
        }
    }

    /// Whether `user_id` is one of the two sides of a single conversation (always false
    /// for groups, whose membership lives in the store).
    pub fn is_single_party(&self, user_id: &str) -> bool {
        matches!(self, Conversation::Single { low, high } if *low == user_id || *high == user_id)
    }

    /// For a single conversation, the side that is not `user_id`.
    pub fn peer_of(&self, user_id: &str) -> Option<&'a str> {
        match *self {
            Conversation::Single { low, high } if low == user_id => Some(high),
            Conversation::Single { low, high } if high == user_id => Some(low),
            _ => None,
        }
    }
}

/// The conversation id of two users' 1:1 chat; the same whichever side asks.
pub fn single_conv_id(a: &str, b: &str) -> String {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    format!("{SINGLE_CONV_PREFIX}{low}:{high}")
}

pub fn group_conv_id(group_id: &str) -> String {
    format!("{GROUP_CONV_PREFIX}{group_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_conv_is_symmetric_and_parses() {
        let id = single_conv_id("user_b", "user_a");
        assert_eq!(id, "single:user_a:user_b");
        assert_eq!(id, single_conv_id("user_a", "user_b"));
        let conv = Conversation::parse(&id).unwrap();
        assert_eq!(conv.peer_of("user_a"), Some("user_b"));
        assert!(conv.is_single_party("user_b"));
        assert!(!conv.is_single_party("user_c"));
    }

    #[test]
    fn malformed_conversations_are_refused() {
        for bad in [
            "",
            "single:user_b:user_a",
            "single:user_a:user_a",
            "single:user_a",
            "single:user_a:group_b",
            "group:user_a",
            "group:",
            "dm:user_a:user_b",
            "group:group_a b",
        ] {
            assert_eq!(Conversation::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Conversation::parse("group:group_x"),
            Some(Conversation::Group {
                group_id: "group_x"
            })
        );
    }

    #[test]
    fn generated_ids_are_valid() {
        assert!(is_user_id(&new_user_id(u64::MAX)));
        assert!(is_group_id(&new_group_id(7)));
        assert!(new_msg_id(2, 1) < new_msg_id(3, 0));
        assert!(!is_device_id(""));
        assert!(!is_device_id(&"a".repeat(65)));
    }
}
