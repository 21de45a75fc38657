//! Who is online where, and fan-out.
//!
//! Sessions live in a DashMap keyed by user (sharded: no global lock). Each session
//! has one bounded queue per delivery lane. Fan-out pushes an already encoded frame
//! (`Bytes`, shared by every recipient) with `try_send`: it never waits. A full queue
//! means the device stopped reading; it is closed with `SLOW_CONSUMER` and resumes
//! from its cursor later, so one slow device never slows anyone else and nothing is
//! lost.
//!
//! Pushes outside the conversations' sequence (typing, presence, receipts, call
//! signalling) go through each session's [`SessionLink`]: ephemeral ones as QUIC
//! datagrams where possible and dropped rather than queued without bound; reliable
//! ones on the control stream, where a full queue is a slow consumer like a full lane.
//!
//! The router also reports every session that opens or closes, with the user's device
//! count after it, to whoever [`subscribes`](Router::session_events): presence and
//! calls follow devices that way, with no polling.
//!
//! The router is a plain struct that tests drive directly; it knows nothing of QUIC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dashmap::DashMap;
use quip_protocol::{ErrorCode, lane_for};

use crate::cluster::{Cluster, Outbound};
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
    /// The conversation has committed up to `seq`: read from the store whatever the
    /// device misses up to it. Cluster mode sends it when a live delivery may have
    /// missed this node (see `cluster`).
    Reached { conv_id: Arc<str>, seq: u64 },
}

impl LaneItem {
    pub fn conv_id(&self) -> &Arc<str> {
        match self {
            LaneItem::Deliver { conv_id, .. }
            | LaneItem::Advance { conv_id, .. }
            | LaneItem::Reached { conv_id, .. } => conv_id,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            LaneItem::Deliver { seq, .. }
            | LaneItem::Advance { seq, .. }
            | LaneItem::Reached { seq, .. } => *seq,
        }
    }
}

/// How a push may travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// May be lost (typing, presence): a datagram if the peer takes them and it fits,
    /// else the control stream; dropped when that is full.
    Ephemeral,
    /// Must arrive while the session lives (receipts, call signalling): the control
    /// stream; a full queue closes the session as a slow consumer.
    Reliable,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Datagram,
    Stream,
    /// The session's push queue is full (or the session is gone).
    Full,
}

/// A session's way back to its device, implemented by each transport: pushes outside
/// the lanes, and ending the session.
pub trait SessionLink: Send + Sync + std::fmt::Debug {
    /// Hands an encoded `ServerFrame` (req_id 0) to the device. Never waits.
    fn push(&self, frame: &Bytes, how: Push) -> Pushed;
    fn close(&self, code: ErrorCode, reason: &str);
    /// "quic" or "websocket", for stats and the device list.
    fn transport(&self) -> &'static str;
}

/// Ephemeral pushes by how they travelled, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    pub datagrams: u64,
    pub streamed: u64,
    pub dropped: u64,
}

/// A session opened or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub user_id: String,
    pub device_id: String,
    pub session_id: u64,
    pub opened: bool,
    /// The user's sessions on this node right after the event.
    pub devices: usize,
    /// Orders the events of all users (taken under the user's map entry lock), so a
    /// presence change computed from an older event never wins over a newer one.
    pub version: u64,
}

/// One authenticated connection of one device.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub user_id: String,
    pub device_id: String,
    lanes: Vec<QueueSender<LaneItem>>,
    link: Box<dyn SessionLink>,
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
        self.link.close(code, reason);
    }

    pub fn transport(&self) -> &'static str {
        self.link.transport()
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
    /// Source of `SessionEvent::version`.
    presence_version: AtomicU64,
    /// Taken by [`Router::end_session_events`], which lets the subscriber finish.
    session_events: Mutex<Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>>,
    datagrams: AtomicU64,
    streamed: AtomicU64,
    dropped: AtomicU64,
    /// When users whose last session just ended went offline, until presence has
    /// stored it as their last-seen time (so a query in between does not say "never").
    recently_offline: DashMap<String, u64>,
    /// The other nodes, in cluster mode: deliveries, pushes and closes for users
    /// connected elsewhere go there too. Weak: the cluster holds the router.
    cluster: std::sync::OnceLock<std::sync::Weak<dyn Cluster>>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the router to a cluster: from now on, what it hands to local sessions is
    /// also forwarded to the nodes where other recipients are connected.
    pub fn join_cluster(&self, cluster: std::sync::Weak<dyn Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster, when this node is part of one.
    fn cluster(&self) -> Option<Arc<dyn Cluster>> {
        self.cluster.get()?.upgrade()
    }

    /// Every session opened or closed from now on, in an unbounded channel (its rate
    /// is the connection rate). Only one subscriber: `None` after the first call.
    pub fn session_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<SessionEvent>> {
        let mut slot = self.events_slot();
        if slot.is_some() {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *slot = Some(tx);
        Some(rx)
    }

    /// Stops reporting session events: the subscriber gets the ones already sent,
    /// then the end of the channel (shutdown, once every session is gone).
    pub fn end_session_events(&self) {
        self.events_slot().take();
    }

    fn events_slot(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<tokio::sync::mpsc::UnboundedSender<SessionEvent>>> {
        self.session_events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current presence version: every later change gets a higher one.
    pub fn presence_version(&self) -> u64 {
        self.presence_version.load(Ordering::SeqCst)
    }

    fn emit(&self, event: SessionEvent) {
        if let Some(events) = self.events_slot().as_ref() {
            let _ = events.send(event);
        }
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
        link: Box<dyn SessionLink>,
    ) -> (Arc<Session>, Vec<QueueReceiver<LaneItem>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes.max(1))
            .map(|_| queue::bounded(lane_queue_len))
            .unzip();
        let session = Arc::new(Session {
            id: self.next_session_id.fetch_add(1, Ordering::Relaxed) + 1,
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            lanes: senders,
            link,
        });
        let (replaced, devices, version) = {
            let mut entry = self.sessions.entry(user_id.to_owned()).or_default();
            let (old, keep): (Vec<_>, Vec<_>) =
                entry.drain(..).partition(|s| s.device_id == device_id);
            *entry = keep;
            entry.push(session.clone());
            let version = self.presence_version.fetch_add(1, Ordering::SeqCst) + 1;
            (old, entry.len(), version)
        };
        for old in &replaced {
            self.emit(SessionEvent {
                user_id: user_id.to_owned(),
                device_id: device_id.to_owned(),
                session_id: old.id,
                opened: false,
                devices,
                version,
            });
        }
        self.emit(SessionEvent {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            session_id: session.id,
            opened: true,
            devices,
            version,
        });
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
        let mut removed = None;
        self.sessions.remove_if_mut(&session.user_id, |_, list| {
            let before = list.len();
            list.retain(|s| s.id != session.id);
            if list.len() < before {
                let version = self.presence_version.fetch_add(1, Ordering::SeqCst) + 1;
                removed = Some((list.len(), version));
            }
            list.is_empty()
        });
        if let Some((devices, version)) = removed {
            if devices == 0 {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                self.recently_offline.insert(session.user_id.clone(), now);
            }
            self.emit(SessionEvent {
                user_id: session.user_id.clone(),
                device_id: session.device_id.clone(),
                session_id: session.id,
                opened: false,
                devices,
                version,
            });
        }
    }

    /// When the user went offline, if their last session ended and presence has not
    /// stored it yet.
    pub fn recently_offline(&self, user_id: &str) -> Option<u64> {
        self.recently_offline.get(user_id).map(|at| *at)
    }

    /// Presence stored the user's last-seen time: forget the in-memory copy (unless
    /// a newer end replaced it meanwhile).
    pub fn forget_offline(&self, user_id: &str, at_ms: u64) {
        self.recently_offline
            .remove_if(user_id, |_, at| *at <= at_ms);
    }

    /// The user's session on `device_id`, if connected here.
    pub fn session_of_device(&self, user_id: &str, device_id: &str) -> Option<Arc<Session>> {
        self.sessions
            .get(user_id)?
            .iter()
            .find(|s| s.device_id == device_id)
            .cloned()
    }

    /// Ids of the devices of a user online on this node.
    pub fn devices_of(&self, user_id: &str) -> Vec<String> {
        self.sessions.get(user_id).map_or_else(Vec::new, |list| {
            list.iter().map(|s| s.device_id.clone()).collect()
        })
    }

    /// Ends every session of a user (or only those of `device_id`), e.g. on logout or
    /// when an administrator disables the account, on every node. Returns how many
    /// were closed on this one.
    pub fn close_user(
        &self,
        user_id: &str,
        device_id: Option<&str>,
        code: ErrorCode,
        reason: &str,
    ) -> usize {
        if let Some(cluster) = self.cluster() {
            cluster.forward(Outbound::Close {
                user_id: user_id.to_owned(),
                device_id: device_id.map(str::to_owned),
                code,
                reason: reason.to_owned(),
            });
        }
        self.close_user_here(user_id, device_id, code, reason)
    }

    /// [`close_user`](Router::close_user) on this node only.
    pub fn close_user_here(
        &self,
        user_id: &str,
        device_id: Option<&str>,
        code: ErrorCode,
        reason: &str,
    ) -> usize {
        let sessions: Vec<Arc<Session>> =
            self.sessions.get(user_id).map_or_else(Vec::new, |list| {
                list.iter()
                    .filter(|s| device_id.is_none_or(|device| s.device_id == device))
                    .cloned()
                    .collect()
            });
        for session in &sessions {
            self.unregister(session);
            session.close(code, reason);
        }
        sessions.len()
    }

    /// Sessions on this node by transport name.
    pub fn sessions_by_transport(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for entry in self.sessions.iter() {
            for session in entry.value() {
                *counts.entry(session.transport()).or_default() += 1;
            }
        }
        counts
    }

    /// Users with at least one session on this node.
    pub fn users_online(&self) -> usize {
        self.sessions.len()
    }

    /// Every user with sessions on this node, with how many.
    pub fn local_users(&self) -> Vec<(String, usize)> {
        self.sessions
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().len()))
            .collect()
    }

    /// Tells every session of `user_id` here that `conv_id` has committed up to
    /// `seq`: each lane reads from the store whatever its device misses.
    pub fn reached(&self, user_id: &str, conv_id: &Arc<str>, seq: u64) {
        let mut slow = Vec::new();
        if let Some(list) = self.sessions.get(user_id) {
            for session in list.iter() {
                let item = LaneItem::Reached {
                    conv_id: conv_id.clone(),
                    seq,
                };
                if !session.push(item) {
                    slow.push(session.clone());
                }
            }
        }
        self.close_slow(slow);
    }

    pub fn push_stats(&self) -> PushStats {
        PushStats {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            streamed: self.streamed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
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
    /// every user in `recipients`, on this node and (in a cluster) the others. The
    /// origin session gets an `Advance` instead. Returns how many sessions here got
    /// the frame.
    pub fn deliver(
        &self,
        conv_id: &Arc<str>,
        seq: u64,
        frame: &Bytes,
        recipients: &Arc<[String]>,
        origin: Option<Origin<'_>>,
    ) -> usize {
        if let Some(cluster) = self.cluster() {
            cluster.forward(Outbound::Deliver {
                conv_id: conv_id.clone(),
                seq,
                frame: frame.clone(),
                recipients: recipients.clone(),
            });
        }
        self.deliver_here(conv_id, seq, frame, recipients, origin)
    }

    /// [`deliver`](Router::deliver) to the sessions on this node only.
    pub fn deliver_here(
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
        self.close_slow(slow);
        delivered
    }

    /// Pushes `frame` to every session of `recipients` except `skip_session` (0:
    /// none), here and (in a cluster) on the other nodes. Returns how many sessions
    /// here took it. A reliable push that finds a session's queue full closes that
    /// session as a slow consumer; an ephemeral one is dropped, since it must never
    /// cost a device its session.
    pub fn push(
        &self,
        frame: &Bytes,
        recipients: &[String],
        skip_session: u64,
        how: Push,
    ) -> usize {
        if let Some(cluster) = self.cluster() {
            cluster.forward(Outbound::Push {
                frame: frame.clone(),
                recipients: Arc::from(recipients),
                how,
            });
        }
        self.push_here(frame, recipients, skip_session, how)
    }

    /// [`push`](Router::push) to the sessions on this node only.
    pub fn push_here(
        &self,
        frame: &Bytes,
        recipients: &[String],
        skip_session: u64,
        how: Push,
    ) -> usize {
        let mut sent = 0;
        let mut slow = Vec::new();
        for user_id in recipients {
            let Some(list) = self.sessions.get(user_id.as_str()) else {
                continue;
            };
            for session in list.iter().filter(|s| s.id != skip_session) {
                if self.push_one(session, frame, how) {
                    sent += 1;
                } else if how == Push::Reliable {
                    slow.push(session.clone());
                }
            }
        }
        self.close_slow(slow);
        sent
    }

    /// Pushes `frame` to one session; false if it could not take it (a reliable push
    /// then closes it as a slow consumer).
    pub fn push_to(&self, session: &Arc<Session>, frame: &Bytes, how: Push) -> bool {
        let taken = self.push_one(session, frame, how);
        if !taken && how == Push::Reliable {
            self.close_slow(vec![session.clone()]);
        }
        taken
    }

    fn push_one(&self, session: &Session, frame: &Bytes, how: Push) -> bool {
        let pushed = session.link.push(frame, how);
        if how == Push::Ephemeral {
            let counter = match pushed {
                Pushed::Datagram => &self.datagrams,
                Pushed::Stream => &self.streamed,
                Pushed::Full => &self.dropped,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        pushed != Pushed::Full
    }

    fn close_slow(&self, slow: Vec<Arc<Session>>) {
        for session in slow {
            self.slow_consumer_closes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(user_id = %session.user_id, device_id = %session.device_id, "closing slow consumer");
            self.unregister(&session);
            session.close(
                ErrorCode::SlowConsumer,
                "outbound queue full; resume from your cursors",
            );
        }
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

    impl SessionLink for RecordingCloser {
        fn push(&self, _frame: &Bytes, _how: Push) -> Pushed {
            Pushed::Full
        }
        fn transport(&self) -> &'static str {
            "test"
        }
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
            router.deliver_here(&conv, 1, &frame(), &recipients, Some(origin)),
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
            router.deliver_here(&conv, seq, &frame(), &recipients, None);
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

    #[test]
    fn session_events_count_devices_in_order() {
        let router = Router::new();
        let mut events = router.session_events().unwrap();
        assert!(router.session_events().is_none(), "one subscriber");
        let (phone, _) = router.register(
            "user_a",
            "phone",
            1,
            8,
            Box::new(RecordingCloser::default()),
        );
        let (laptop, _) = router.register(
            "user_a",
            "laptop",
            1,
            8,
            Box::new(RecordingCloser::default()),
        );
        router.unregister(&phone);
        router.unregister(&phone);
        router.unregister(&laptop);
        let seen: Vec<(String, bool, usize)> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| (e.device_id, e.opened, e.devices))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("phone".to_owned(), true, 1),
                ("laptop".to_owned(), true, 2),
                ("phone".to_owned(), false, 1),
                ("laptop".to_owned(), false, 0),
            ],
            "unregistering twice reports once"
        );
    }

    #[test]
    fn a_reliable_push_that_finds_the_queue_full_closes_the_session() {
        let router = Router::new();
        let closer = RecordingCloser::default();
        let (_s, _lanes) = router.register("user_a", "phone", 1, 8, Box::new(closer.clone()));
        let recipients = vec!["user_a".to_owned()];
        // RecordingCloser takes no pushes: ephemeral ones are dropped quietly...
        assert_eq!(router.push(&frame(), &recipients, 0, Push::Ephemeral), 0);
        assert_eq!(router.push_stats().dropped, 1);
        assert!(closer.0.lock().unwrap().is_empty());
        // ...reliable ones cost the session.
        assert_eq!(router.push(&frame(), &recipients, 0, Push::Reliable), 0);
        assert_eq!(*closer.0.lock().unwrap(), vec![ErrorCode::SlowConsumer]);
        assert_eq!(router.sessions_of("user_a"), 0);
    }
}
