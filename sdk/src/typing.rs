//! Typing indicators: sending them (as a QUIC datagram where possible) and knowing
//! who is typing where right now.
//!
//! Notices are ephemeral: never stored, never replayed after a reconnect, and they may
//! be lost. Each says how long it holds (`expires_in_ms`, the broker's
//! `typing_expires_ms`); a `STOPPED` notice ends it early. [`TypingTracker`] keeps the
//! latest notice per (conversation, user) and filters expired ones when read, so no
//! timer runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quip_protocol::pb;
use quip_protocol::{ClientFrame, client_frame, encode_frame_bytes};

use crate::client::Client;
use crate::error::Result;

/// Who is typing where: (conversation, user) → (kind, until when).
#[derive(Debug, Default)]
pub(crate) struct TypingTracker {
    active: HashMap<(String, String), (pb::TypingKind, Instant)>,
}

impl TypingTracker {
    /// Applies a notice received at `now`.
    pub(crate) fn notice(&mut self, notice: &pb::TypingNotice, now: Instant) {
        // Forget what expired, so the map holds only what could still show.
        self.active.retain(|_, (_, until)| *until > now);
        let key = (notice.conv_id.clone(), notice.from.clone());
        let kind = pb::TypingKind::try_from(notice.kind).unwrap_or(pb::TypingKind::Typing);
        match kind {
            pb::TypingKind::Stopped => {
                self.active.remove(&key);
            }
            pb::TypingKind::Unspecified => {
                self.active.insert(
                    key,
                    (pb::TypingKind::Typing, expiry(now, notice.expires_in_ms)),
                );
            }
            kind => {
                self.active
                    .insert(key, (kind, expiry(now, notice.expires_in_ms)));
            }
        }
    }

    /// The users typing in `conv_id` at `now`, ordered by user id.
    pub(crate) fn typing_in(&self, conv_id: &str, now: Instant) -> Vec<(String, pb::TypingKind)> {
        let mut typing: Vec<(String, pb::TypingKind)> = self
            .active
            .iter()
            .filter(|((conv, _), (_, until))| conv == conv_id && *until > now)
            .map(|((_, user), (kind, _))| (user.clone(), *kind))
            .collect();
        typing.sort();
        typing
    }

    /// Everything is forgotten when the client closes.
    pub(crate) fn clear(&mut self) {
        self.active.clear();
    }
}

fn expiry(now: Instant, expires_in_ms: u32) -> Instant {
    now + Duration::from_millis(u64::from(expires_in_ms))
}

impl Client {
    /// Tells the conversation's other online devices (the other members', and this
    /// user's other devices) that this user is typing, recording a voice message, or
    /// stopped. Call it at most every few seconds while typing; the indicator expires
    /// by itself after the broker's `typing_expires_ms`.
    ///
    /// Fire and forget, like the notice itself: it goes as one QUIC datagram when the
    /// connection supports them and it fits (see
    /// [`ClientOptions::datagrams`](crate::ClientOptions::datagrams)), else on the
    /// control stream with no response expected. The broker answers nothing, so a
    /// refusal (e.g. not a member of the conversation) is not reported here, and a
    /// notice may be lost. Between connections it is queued for the next one (a few
    /// at most; typing is stale soon anyway). Fails only before login
    /// ([`NotAuthenticated`](crate::SdkError::NotAuthenticated)) or after close
    /// ([`ClientClosed`](crate::SdkError::ClientClosed)).
    pub async fn typing(&self, conv_id: &str, kind: pb::TypingKind) -> Result<()> {
        let frame = encode_frame_bytes(&ClientFrame {
            req_id: 0,
            body: Some(client_frame::Body::Typing(pb::Typing {
                conv_id: conv_id.to_string(),
                kind: kind as i32,
            })),
        });
        self.shared.send_ephemeral(frame).await
    }

    /// Who is typing (or recording) in `conv_id` now, by user id, from the notices
    /// received: each holds until its `expires_in_ms` passes or a `STOPPED` notice
    /// from that user comes. Includes this user if another of their devices is
    /// typing. Kept across reconnects (notices expire by themselves).
    pub fn typing_in(&self, conv_id: &str) -> Vec<(String, pb::TypingKind)> {
        self.shared.typing().typing_in(conv_id, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(conv: &str, from: &str, kind: pb::TypingKind, ms: u32) -> pb::TypingNotice {
        pb::TypingNotice {
            conv_id: conv.into(),
            from: from.into(),
            kind: kind as i32,
            expires_in_ms: ms,
        }
    }

    #[test]
    fn notices_hold_until_they_expire_or_stop() {
        let start = Instant::now();
        let mut tracker = TypingTracker::default();
        tracker.notice(&notice("c", "user_b", pb::TypingKind::Typing, 300), start);
        tracker.notice(
            &notice("c", "user_a", pb::TypingKind::RecordingVoice, 1000),
            start,
        );
        tracker.notice(
            &notice("other", "user_c", pb::TypingKind::Typing, 1000),
            start,
        );
        assert_eq!(
            tracker.typing_in("c", start),
            vec![
                ("user_a".to_string(), pb::TypingKind::RecordingVoice),
                ("user_b".to_string(), pb::TypingKind::Typing),
            ]
        );
        let later = start + Duration::from_millis(300);
        assert_eq!(
            tracker.typing_in("c", later),
            vec![("user_a".to_string(), pb::TypingKind::RecordingVoice)]
        );
        tracker.notice(&notice("c", "user_a", pb::TypingKind::Stopped, 0), later);
        assert!(tracker.typing_in("c", later).is_empty());
        assert_eq!(tracker.typing_in("other", later).len(), 1);
    }

    #[test]
    fn a_new_notice_renews_and_unknown_kinds_count_as_typing() {
        let start = Instant::now();
        let mut tracker = TypingTracker::default();
        tracker.notice(&notice("c", "user_b", pb::TypingKind::Typing, 100), start);
        let renewed = start + Duration::from_millis(90);
        let mut odd = notice("c", "user_b", pb::TypingKind::Typing, 100);
        odd.kind = 99;
        tracker.notice(&odd, renewed);
        assert_eq!(
            tracker.typing_in("c", start + Duration::from_millis(150)),
            vec![("user_b".to_string(), pb::TypingKind::Typing)]
        );
        assert!(
            tracker
                .typing_in("c", start + Duration::from_millis(190))
                .is_empty()
        );
        tracker.clear();
        assert!(tracker.active.is_empty());
    }
}
