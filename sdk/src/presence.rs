//! Presence: whether users are online (at least one device connected).
//!
//! The broker pushes a [`Presence`](pb::Presence) to this user's devices whenever a
//! 1:1 partner's presence changes ([`Event::Presence`](crate::Event::Presence)), as a
//! QUIC datagram where possible, so pushes may be lost or reordered. Each carries a
//! `version` that only grows: [`PresenceTracker`] keeps the newest per user and drops
//! older ones. Group members' presence is never pushed; ask with
//! [`Client::group_presence`].

use std::collections::HashMap;

use quip_protocol::pb;
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

/// The newest presence seen per user.
#[derive(Debug, Default)]
pub(crate) struct PresenceTracker {
    latest: HashMap<String, pb::Presence>,
}

impl PresenceTracker {
    /// Records `presence` unless an older version than the one held; returns whether
    /// it was recorded (i.e. is not stale).
    pub(crate) fn accept(&mut self, presence: &pb::Presence) -> bool {
        match self.latest.get(&presence.user_id) {
            Some(held) if held.version > presence.version => false,
            _ => {
                self.latest
                    .insert(presence.user_id.clone(), presence.clone());
                true
            }
        }
    }

    pub(crate) fn get(&self, user_id: &str) -> Option<pb::Presence> {
        self.latest.get(user_id).cloned()
    }
}

impl Client {
    /// The presence of these users now (online, connected devices, last seen), in the
    /// broker's order. At most the broker's `max_presence_query` users per call (else
    /// `INVALID_ARGUMENT`). Any user may be asked about; unknown ids come back offline
    /// with `last_seen_ms` 0. A read: resent after a reconnect. The answers also
    /// update [`known_presence`](Self::known_presence).
    pub async fn presence(&self, user_ids: &[&str]) -> Result<Vec<pb::Presence>> {
        let body = client_frame::Body::Presence(pb::PresenceRequest {
            user_ids: user_ids.iter().map(|id| (*id).to_string()).collect(),
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::Presences(list) => {
                let mut tracker = self.shared.presence_tracker();
                for presence in &list.presences {
                    tracker.accept(presence);
                }
                Ok(list.presences)
            }
            _ => Err(SdkError::UnexpectedResponse("expected PresenceList")),
        }
    }

    /// How many members of a group are online, and who: at most `limit` ids (0: the
    /// broker's default, `max_presence_query`, which is also the maximum), ordered by
    /// user id. Members only (else `FORBIDDEN`). A read: resent after a reconnect.
    pub async fn group_presence(&self, group_id: &str, limit: u32) -> Result<pb::GroupPresence> {
        let body = client_frame::Body::GroupPresence(pb::GroupPresenceRequest {
            group_id: group_id.to_string(),
            limit,
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::GroupPresence(presence) => Ok(presence),
            _ => Err(SdkError::UnexpectedResponse("expected GroupPresence")),
        }
    }

    /// The newest presence this client has seen for a user, from pushes
    /// ([`Event::Presence`](crate::Event::Presence)) or [`presence`](Self::presence)
    /// answers; `None` if none yet. Pushes may be lost, so this can be stale: query
    /// when it matters.
    pub fn known_presence(&self, user_id: &str) -> Option<pb::Presence> {
        self.shared.presence_tracker().get(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(user: &str, online: bool, version: u64) -> pb::Presence {
        pb::Presence {
            user_id: user.into(),
            online,
            version,
            ..Default::default()
        }
    }

    #[test]
    fn older_versions_are_dropped_per_user() {
        let mut tracker = PresenceTracker::default();
        assert!(tracker.accept(&presence("user_a", true, 5)));
        assert!(!tracker.accept(&presence("user_a", false, 4)), "reordered");
        assert!(tracker.accept(&presence("user_b", false, 1)), "other user");
        assert!(tracker.accept(&presence("user_a", true, 5)), "same version");
        assert!(tracker.accept(&presence("user_a", false, 9)));
        assert_eq!(tracker.get("user_a"), Some(presence("user_a", false, 9)));
        assert_eq!(tracker.get("user_c"), None);
    }
}
