//! Where users are connected, as the cluster stores it in Redis.
//!
//! `quip:online:{user}` is a hash: node id → "`expires_at_ms` `devices`". A node
//! writes its field on every session change of the user there and rewrites it for
//! all its users every third of the TTL. Readers ignore expired fields, so a node
//! that dies without cleaning up drops out of everyone's view after the TTL, and
//! the key itself expires once no live node refreshes it. The braces make the user
//! id the key's hash tag (Redis Cluster slot).

use std::collections::HashMap;

pub(super) fn key(user_id: &str) -> String {
    format!("quip:online:{{{user_id}}}")
}

/// The value of one node's field.
pub(super) fn field_value(expires_at_ms: u64, devices: usize) -> String {
    format!("{expires_at_ms} {devices}")
}

/// The nodes other than `me` where the user has devices now, with how many.
pub(super) fn live_elsewhere(
    fields: &HashMap<String, String>,
    me: &str,
    now_ms: u64,
) -> Vec<(String, u32)> {
    let mut nodes: Vec<(String, u32)> = fields
        .iter()
        .filter(|(node, _)| node.as_str() != me)
        .filter_map(|(node, value)| {
            let (expires, devices) = value.split_once(' ')?;
            let (expires, devices) = (expires.parse::<u64>().ok()?, devices.parse::<u32>().ok()?);
            (expires > now_ms && devices > 0).then(|| (node.clone(), devices))
        })
        .collect();
    nodes.sort();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_empty_own_and_garbled_fields_do_not_count() {
        let fields: HashMap<String, String> = [
            ("node-a", field_value(2_000, 2)),
            ("node-b", field_value(500, 1)),
            ("node-c", field_value(2_000, 0)),
            ("me", field_value(2_000, 3)),
            ("node-d", "nonsense".to_owned()),
            ("node-e", field_value(3_000, 1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            live_elsewhere(&fields, "me", 1_000),
            vec![("node-a".to_owned(), 2), ("node-e".to_owned(), 1)]
        );
        assert_eq!(key("user_1"), "quip:online:{user_1}");
    }
}
