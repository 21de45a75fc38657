//! Who is online where, and fan-out.
//!
//! Sessions live in a DashMap keyed by user (sharded: no global lock). Each session
//! has one bounded queue per delivery lane. Fan-out pushes an already encoded frame
//! (`Bytes`, shared by every recipient) with `try_send`: it never waits. A full queue
//! means the device stopped reading; it is closed with `SLOW_CONSUMER` and resumes
//! from its cursor later, so one slow device never slows anyone else and nothing is
//! lost.
//!
//! The router is a plain struct that tests drive directly; it knows nothing of QUIC.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use quip_protocol::{ErrorCode, lane_for};

use crate::queue::{self, QueueReceiver, QueueSender};

/// What a lane writer receives.
#[derive(Debug, Clone)]
pub enum LaneItem {
    /// Write this frame (a `Deliver` of message `seq` of `conv_id`).
    Deliver {
        conv_id: Arc<str>,
        seq: u64,
        frame: Bytes,
    },
    /// The device already holds `seq` (it sent it): move the lane's position past it
    /// without writing anything.
    Advance { conv_id: Arc<str>, seq: u64 },
    /// A frame outside the conversation's sequence (typing): written as is, never
    /// caught up; dropped rather than queued when the lane is full.
    Ephemeral { conv_id: Arc<str>, frame: Bytes },
}

impl LaneItem {
    pub fn conv_id(&self) -> &Arc<str> {
        match self {
            LaneItem::Deliver { conv_id, .. }
            | LaneItem::Advance { conv_id, .. }
            | LaneItem::Ephemeral { conv_id, .. } => conv_id,
        }
    }

    /// The item's seq; 0 for ephemeral items.
    pub fn seq(&self) -> u64 {
        match self {
            LaneItem::Deliver { seq, .. } | LaneItem::Advance { seq, .. } => *seq,
            LaneItem::Ephemeral { .. } => 0,
        }
    }
}

/// How the router ends a session; implemented by each transport.
pub trait SessionCloser: Send + Sync + std::fmt::Debug {
    fn close(&self, code: ErrorCode, reason: &str);
}

/// One authenticated connection of one device.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub user_id: String,
    pub device_id: String,
    lanes: Vec<QueueSender<LaneItem>>,
    closer: Box<dyn SessionCloser>,
}

impl Session {
    pub fn lane_count(&self) -> u32 {
        self.lanes.len() as u32
    }

    /// Queues an item on the conversation's lane; false when the lane is full or gone.
    fn push(&self, item: LaneItem) -> bool {
        let lane = lane_for(item.conv_id(), self.lane_count()) as usize;
        self.lanes[lane].try_send(item).is_ok()
    }

    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.closer.close(code, reason);
    }
}

/// The sending session of a message, which gets an `Advance` instead of the frame.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub user_id: &'a str,
    pub session_id: u64,
}

#[derive(Debug, Default)]
pub struct Router {
    sessions: DashMap<String, Vec<Arc<Session>>>,
    next_session_id: AtomicU64,
    slow_consumer_closes: AtomicU64,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a session and returns it with the receiving ends of its lanes. An
    /// older session of the same user and device is closed with `SESSION_REPLACED`:
    /// one device, one position in each conversation.
    pub fn register(
        &self,
        user_id: &str,
        device_id: &str,
        lanes: u32,
        lane_queue_len: usize,
        closer: Box<dyn SessionCloser>,
    ) -> (Arc<Session>, Vec<QueueReceiver<LaneItem>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes.max(1))
            .map(|_| queue::bounded(lane_queue_len))
            .unzip();
        let session = Arc::new(Session {
            id: self.next_session_id.fetch_add(1, Ordering::Relaxed) + 1,
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            lanes: senders,
            closer,
        });
        let replaced = {
            let mut entry = self.sessions.entry(user_id.to_owned()).or_default();
            let (old, keep): (Vec<_>, Vec<_>) =
                entry.drain(..).partition(|s| s.device_id == device_id);
            *entry = keep;
            entry.push(session.clone());
            old
        };
        for old in replaced {
            old.close(
                ErrorCode::SessionReplaced,
                "the same device connected again",
            );
        }
        (session, receivers)
    }

    /// Removes a session (if still registered) when its connection ends.
    pub fn unregister(&self, session: &Session) {
        self.sessions.remove_if_mut(&session.user_id, |_, list| {
            list.retain(|s| s.id != session.id);
            list.is_empty()
        });
    }

    /// Number of sessions of a user online on this node.
    pub fn sessions_of(&self, user_id: &str) -> usize {
        self.sessions.get(user_id).map_or(0, |list| list.len())
    }

    pub fn session_count(&self) -> usize {
        self.sessions.iter().map(|entry| entry.len()).sum()
    }

    pub fn slow_consumer_closes(&self) -> u64 {
        self.slow_consumer_closes.load(Ordering::Relaxed)
    }

    /// Hands message `seq` of `conv_id`, encoded once as `frame`, to every session of
    /// every user in `recipients`. The origin session gets an `Advance` instead.
    /// Returns how many sessions got the frame.
    pub fn deliver(
        &self,
        conv_id: &Arc<str>,
        seq: u64,
        frame: &Bytes,
        recipients: &[String],
        origin: Option<Origin<'_>>,
    ) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        for user_id in recipients {
            let Some(list) = self.sessions.get(user_id.as_str()) else {
                continue;
            };
            for session in list.iter() {
                let is_origin =
                    origin.is_some_and(|o| o.session_id == session.id && o.user_id == user_id);
                let item = if is_origin {
                    LaneItem::Advance {
                        conv_id: conv_id.clone(),
                        seq,
                    }
                } else {
                    LaneItem::Deliver {
                        conv_id: conv_id.clone(),
                        seq,
                        frame: frame.clone(),
                    }
                };
                if session.push(item) {
                    delivered += usize::from(!is_origin);
                } else {
                    slow.push(session.clone());
                }
            }
        }
        // Close outside the shard lock: closing may run transport code.
        for session in slow {
            self.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(user_id = %session.user_id, device_id = %session.device_id, "closing slow consumer");
            self.unregister(&session);
            session.close(
                ErrorCode::SlowConsumer,
                "outbound queue full; resume from your cursors",
            );
        }
        delivered
    }

    /// Hands an ephemeral frame (typing) to every session of `recipients` except the
    /// origin session. Best effort: a full lane drops it, since it expires anyway and
    /// must never cost a device its session.
    pub fn ephemeral(
        &self,
        conv_id: &Arc<str>,
        frame: &Bytes,
        recipients: &[String],
        origin_session: u64,
    ) -> usize {
        let mut sent = 0;
        for user_id in recipients {
            let Some(list) = self.sessions.get(user_id.as_str()) else {
                continue;
            };
            for session in list.iter().filter(|s| s.id != origin_session) {
                let item = LaneItem::Ephemeral {
                    conv_id: conv_id.clone(),
                    frame: frame.clone(),
                };
                sent += usize::from(session.push(item));
            }
        }
        sent
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self, code: ErrorCode, reason: &str) {
        let all: Vec<Arc<Session>> = self
            .sessions
            .iter()
            .flat_map(|entry| entry.value().clone())
            .collect();
        for session in all {
            session.close(code, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default, Clone)]
    struct RecordingCloser(Arc<Mutex<Vec<ErrorCode>>>);

    impl SessionCloser for RecordingCloser {
        fn close(&self, code: ErrorCode, _reason: &str) {
            self.0.lock().unwrap().push(code);
        }
    }

    fn frame() -> Bytes {
        Bytes::from_static(b"frame")
    }

    #[test]
    fn fan_out_reaches_every_session_and_advances_the_origin() {
        let router = Router::new();
        let (a1, mut a1_lanes) =
            router.register("user_a", "a1", 1, 8, Box::new(RecordingCloser::default()));
        let (_a2, mut a2_lanes) =
            router.register("user_a", "a2", 1, 8, Box::new(RecordingCloser::default()));
        let (_b1, mut b1_lanes) =
            router.register("user_b", "b1", 2, 8, Box::new(RecordingCloser::default()));
        let conv: Arc<str> = Arc::from("single:user_a:user_b");
        let recipients = vec!["user_a".to_owned(), "user_b".to_owned()];
        let origin = Origin {
            user_id: "user_a",
            session_id: a1.id,
        };
        assert_eq!(
            router.deliver(&conv, 1, &frame(), &recipients, Some(origin)),
            2
        );
        assert!(matches!(
            a1_lanes[0].try_recv(),
            Some(LaneItem::Advance { seq: 1, .. })
        ));
        assert!(matches!(
            a2_lanes[0].try_recv(),
            Some(LaneItem::Deliver { seq: 1, .. })
        ));
        let lane = lane_for(&conv, 2) as usize;
        assert!(matches!(
            b1_lanes[lane].try_recv(),
            Some(LaneItem::Deliver { seq: 1, .. })
        ));
    }

    #[test]
    fn full_queue_closes_only_that_session() {
        let router = Router::new();
        let slow = RecordingCloser::default();
        let (_s, _slow_lanes) = router.register("user_s", "s1", 1, 2, Box::new(slow.clone()));
        let (_f, mut fast_lanes) =
            router.register("user_f", "f1", 1, 64, Box::new(RecordingCloser::default()));
        let conv: Arc<str> = Arc::from("group:group_x");
        let recipients = vec!["user_s".to_owned(), "user_f".to_owned()];
        for seq in 1..=3 {
            router.deliver(&conv, seq, &frame(), &recipients, None);
        }
        assert_eq!(*slow.0.lock().unwrap(), vec![ErrorCode::SlowConsumer]);
        assert_eq!(router.sessions_of("user_s"), 0);
        assert_eq!(router.slow_consumer_closes(), 1);
        for seq in 1..=3 {
            assert_eq!(fast_lanes[0].try_recv().unwrap().seq(), seq);
        }
    }

    #[test]
    fn same_device_replaces_the_older_session() {
        let router = Router::new();
        let first = RecordingCloser::default();
        let (old, _) = router.register("user_a", "phone", 1, 8, Box::new(first.clone()));
        let (_new, _) = router.register(
            "user_a",
            "phone",
            1,
            8,
            Box::new(RecordingCloser::default()),
        );
        assert_eq!(*first.0.lock().unwrap(), vec![ErrorCode::SessionReplaced]);
        assert_eq!(router.sessions_of("user_a"), 1);
        router.unregister(&old);
        assert_eq!(
            router.sessions_of("user_a"),
            1,
            "unregistering the old one keeps the new"
        );
    }
}
