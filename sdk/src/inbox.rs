//! Everything between "a frame arrived" and "the application took an event": in-order
//! release ([`Reorderer`]), the bounded event queue, gap bookkeeping, sync progress and
//! the delivered cursors to report.
//!
//! Pure: no I/O, time comes in as an argument, so it is unit-tested directly. The
//! async parts (lanes, control stream, `next_event`) lock it briefly and never across
//! an `.await`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use quip_protocol::order::{Offer, Reorderer};
use quip_protocol::pb;

use crate::events::{ConnectionState, Event};

/// Out-of-order messages one conversation may hold while a gap is open. Past this,
/// further ones are dropped and fetched from history once the gap is filled.
pub(crate) const MAX_PENDING_PER_CONV: usize = 1024;

/// After this many messages taken by the application, report cursors without waiting
/// for the next report tick.
pub(crate) const REPORT_AFTER_MESSAGES: usize = 256;

/// What the reorderer holds for a seq.
// Nearly every held item is a message; `Own` is the rare small one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Held {
    /// A seq this device sent (its `SendAck`, or its own message replayed during a
    /// resume): it advances the cursor but is not surfaced.
    Own,
    Message(pb::Message),
}

/// A conversation that may need a history fetch.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// When to fetch if the gap is still open.
    due: Instant,
    /// A message was dropped (reorder buffer full): fetch even if the gap below it
    /// closes by itself, because nothing else will bring the dropped one back.
    must_fetch: bool,
}

/// Sync progress of the current connection.
#[derive(Debug, Clone, Copy)]
struct SyncProgress {
    lanes: u32,
    done: u32,
}

#[derive(Debug)]
pub(crate) struct Inbox {
    reorderer: Reorderer<Held>,
    queue: VecDeque<Event>,
    /// Soft bound on `queue`: lane readers wait while it is reached. Pushes that must
    /// not wait (own ACKs releasing held messages, state changes) may exceed it by a
    /// bounded amount.
    capacity: usize,
    /// This device, to recognize its own messages: (user id, device id).
    me: Option<(String, String)>,
    /// Open gaps, and when to fetch them from history if they are still open.
    gap_due: HashMap<String, Gap>,
    /// Conversations whose history fetch is running.
    filling: HashSet<String>,
    /// Delivered cursors as last reported to the broker.
    reported: HashMap<String, u64>,
    taken_since_report: usize,
    sync: Option<SyncProgress>,
    /// No event will ever be pushed again (closed); `pop` returning `None` is final.
    finished: bool,
}

impl Inbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            reorderer: Reorderer::new(MAX_PENDING_PER_CONV),
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            me: None,
            gap_due: HashMap::new(),
            filling: HashSet::new(),
            reported: HashMap::new(),
            taken_since_report: 0,
            sync: None,
            finished: false,
        }
    }

    /// A new connection is authenticated: remember who we are, queue
    /// `State(Connected)`, and expect one `SyncDone` per lane.
    pub(crate) fn connected(&mut self, user_id: &str, device_id: &str, lanes: u32) {
        self.me = Some((user_id.to_owned(), device_id.to_owned()));
        self.queue
            .push_back(Event::State(ConnectionState::Connected));
        self.sync = Some(SyncProgress { lanes, done: 0 });
        // The previous connection may have died before its last report arrived.
        self.reported.clear();
        if lanes == 0 {
            self.sync_done();
        }
    }

    /// The connection is gone: history fetches died with it. Open gaps stay recorded;
    /// the resume (Hello cursors) normally closes them.
    pub(crate) fn disconnected(&mut self) {
        self.filling.clear();
        self.sync = None;
    }

    pub(crate) fn push_state(&mut self, state: ConnectionState) {
        self.queue.push_back(Event::State(state));
    }

    /// An event that may be lost anyway (typing, presence); dropped when the queue is
    /// full, because reading datagrams does not wait for the application. Returns
    /// whether it was queued.
    pub(crate) fn push_ephemeral(&mut self, event: Event) -> bool {
        if self.finished || self.queue.len() >= self.capacity {
            return false;
        }
        self.queue.push_back(event);
        true
    }

    /// A push that must not be lost (receipts, call events). The control stream also
    /// carries responses, so its reader cannot wait for room: these may exceed the
    /// soft bound, by as many as the broker pushes while the application is not
    /// taking events (the broker bounds its own push queue per session).
    pub(crate) fn push_reliable(&mut self, event: Event) {
        if !self.finished {
            self.queue.push_back(event);
        }
    }

    /// Queues `State(Closed)` as the very last event.
    pub(crate) fn finish(&mut self, reason: String) {
        if !self.finished {
            self.queue
                .push_back(Event::State(ConnectionState::Closed { reason }));
            self.finished = true;
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn has_space(&self) -> bool {
        self.queue.len() < self.capacity
    }

    /// Takes the next event for the application.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        let event = self.queue.pop_front()?;
        if matches!(event, Event::Message(_)) {
            self.taken_since_report += 1;
        }
        Some(event)
    }

    /// Whether enough messages were taken to report cursors now.
    pub(crate) fn report_due(&self) -> bool {
        self.taken_since_report >= REPORT_AFTER_MESSAGES
    }

    /// A message this device sent itself (its SendAck was the confirmation). SYSTEM
    /// messages are never "own": a group change made on this device is announced to
    /// it like to everyone else, so every device renders the same conversation.
    fn is_own(&self, message: &pb::Message) -> bool {
        message.kind != pb::MessageKind::System as i32
            && self.me.as_ref().is_some_and(|(user, device)| {
                message.from == *user && message.from_device == *device
            })
    }

    /// A message from a lane or a history page. Returns whether events were queued.
    pub(crate) fn offer_message(
        &mut self,
        message: pb::Message,
        now: Instant,
        grace: Duration,
    ) -> bool {
        let (conv, seq) = (message.conv_id.clone(), message.seq);
        let held = if self.is_own(&message) {
            Held::Own
        } else {
            Held::Message(message)
        };
        self.offer(&conv, seq, held, now, grace)
    }

    /// The ACK of this device's own send: the seq is held, nothing is surfaced (but
    /// messages waiting behind it may be). Returns whether events were queued.
    pub(crate) fn offer_own(
        &mut self,
        conv_id: &str,
        seq: u64,
        now: Instant,
        grace: Duration,
    ) -> bool {
        self.offer(conv_id, seq, Held::Own, now, grace)
    }

    fn offer(
        &mut self,
        conv_id: &str,
        seq: u64,
        held: Held,
        now: Instant,
        grace: Duration,
    ) -> bool {
        match self.reorderer.offer(conv_id, seq, held) {
            Offer::Duplicate => false,
            Offer::Released(items) => {
                let before = self.queue.len();
                self.queue
                    .extend(items.into_iter().filter_map(|item| match item {
                        Held::Own => None,
                        Held::Message(message) => Some(Event::Message(message)),
                    }));
                if self.reorderer.missing(conv_id).is_none()
                    && self.gap_due.get(conv_id).is_some_and(|gap| !gap.must_fetch)
                {
                    self.gap_due.remove(conv_id);
                }
                self.queue.len() > before
            }
            Offer::Buffered { missing } => {
                if !self.gap_due.contains_key(conv_id) {
                    tracing::debug!(
                        conv_id,
                        ?missing,
                        "gap in conversation; waiting before fetching history"
                    );
                    self.gap_due.insert(
                        conv_id.to_owned(),
                        Gap {
                            due: now + grace,
                            must_fetch: false,
                        },
                    );
                }
                false
            }
            Offer::Overflow => {
                // A dropped item must be fetched: no point in waiting.
                tracing::debug!(conv_id, seq, "reorder buffer full; fetching history now");
                self.gap_due.insert(
                    conv_id.to_owned(),
                    Gap {
                        due: now,
                        must_fetch: true,
                    },
                );
                false
            }
        }
    }

    /// The broker resumes a conversation this device did not name in its `Hello` from
    /// the broker's stored cursor (`ResumeFrom`): start there, so the next delivery
    /// (`seq + 1`) is not mistaken for a gap. Returns whether events were queued
    /// (held messages that became contiguous).
    pub(crate) fn resume_from(&mut self, conv_id: &str, seq: u64) -> bool {
        self.reorderer.set_cursor(conv_id, seq);
        let before = self.queue.len();
        self.queue.extend(
            self.reorderer
                .release_ready(conv_id)
                .into_iter()
                .filter_map(|item| match item {
                    Held::Own => None,
                    Held::Message(message) => Some(Event::Message(message)),
                }),
        );
        if self.reorderer.missing(conv_id).is_none()
            && self.gap_due.get(conv_id).is_some_and(|gap| !gap.must_fetch)
        {
            self.gap_due.remove(conv_id);
        }
        self.queue.len() > before
    }

    /// A lane finished its catch-up. Returns whether that completed the sync (and
    /// queued [`Event::SyncDone`]).
    pub(crate) fn sync_done(&mut self) -> bool {
        let Some(sync) = self.sync.as_mut() else {
            return false;
        };
        if sync.done >= sync.lanes && sync.lanes > 0 {
            // A lane repeating itself; the sync was already reported.
            return false;
        }
        sync.done += 1;
        if sync.done >= sync.lanes {
            self.queue.push_back(Event::SyncDone);
            return true;
        }
        false
    }

    /// Whether any conversation has a gap waiting for its grace period or a fetch.
    pub(crate) fn has_open_gaps(&self) -> bool {
        !self.gap_due.is_empty()
    }

    /// Conversations whose gap has been open past its grace and has no fetch running;
    /// they are marked as being filled. Gaps that closed meanwhile are forgotten.
    pub(crate) fn due_gap_fills(&mut self, now: Instant) -> Vec<String> {
        let reorderer = &self.reorderer;
        self.gap_due
            .retain(|conv, gap| gap.must_fetch || reorderer.missing(conv).is_some());
        let due: Vec<String> = self
            .gap_due
            .iter()
            .filter(|(conv, gap)| gap.due <= now && !self.filling.contains(*conv))
            .map(|(conv, _)| conv.clone())
            .collect();
        for conv in &due {
            self.filling.insert(conv.clone());
        }
        due
    }

    /// A history fetch for `conv_id` ended. If a gap is still open (or a fetch
    /// failed), try again after another grace period.
    pub(crate) fn fill_finished(
        &mut self,
        conv_id: &str,
        complete: bool,
        now: Instant,
        grace: Duration,
    ) {
        self.filling.remove(conv_id);
        if complete && self.reorderer.missing(conv_id).is_none() {
            self.gap_due.remove(conv_id);
        } else if let Some(gap) = self.gap_due.get_mut(conv_id) {
            gap.due = now + grace;
        } else {
            self.gap_due.insert(
                conv_id.to_owned(),
                Gap {
                    due: now + grace,
                    must_fetch: !complete,
                },
            );
        }
    }

    pub(crate) fn cursor(&self, conv_id: &str) -> u64 {
        self.reorderer.cursor(conv_id)
    }

    /// Resume points for `Hello`: everything this device holds in order, including
    /// events queued but not yet taken (they survive the reconnect in memory).
    pub(crate) fn hello_cursors(&self) -> Vec<pb::Cursor> {
        let mut cursors: Vec<pb::Cursor> = self
            .reorderer
            .cursors()
            .map(|(conv_id, seq)| pb::Cursor {
                conv_id: conv_id.to_owned(),
                seq,
            })
            .collect();
        cursors.sort_by(|a, b| a.conv_id.cmp(&b.conv_id));
        cursors
    }

    /// Delivered cursors that moved since the last report, and marks them reported.
    ///
    /// "Delivered" is what the application has taken (or this device sent): a message
    /// still in the queue is not delivered, so a crash of the application process
    /// does not make the broker skip it when the device comes back.
    pub(crate) fn take_cursor_reports(&mut self) -> Vec<pb::CursorReport> {
        let mut first_queued: HashMap<&str, u64> = HashMap::new();
        for event in &self.queue {
            if let Event::Message(message) = event {
                first_queued
                    .entry(message.conv_id.as_str())
                    .and_modify(|seq| *seq = (*seq).min(message.seq))
                    .or_insert(message.seq);
            }
        }
        let mut reports = Vec::new();
        for (conv_id, cursor) in self.reorderer.cursors() {
            let delivered = match first_queued.get(conv_id) {
                Some(first) => cursor.min(first.saturating_sub(1)),
                None => cursor,
            };
            let reported = self.reported.get(conv_id).copied().unwrap_or(0);
            if delivered > reported {
                reports.push(pb::CursorReport {
                    conv_id: conv_id.to_owned(),
                    delivered_seq: delivered,
                    read_seq: 0,
                });
            }
        }
        for report in &reports {
            self.reported
                .insert(report.conv_id.clone(), report.delivered_seq);
        }
        reports.sort_by(|a, b| a.conv_id.cmp(&b.conv_id));
        self.taken_since_report = 0;
        reports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_millis(500);

    fn message(conv: &str, seq: u64, from: &str, device: &str) -> pb::Message {
        pb::Message {
            conv_id: conv.into(),
            seq,
            from: from.into(),
            from_device: device.into(),
            ..pb::Message::default()
        }
    }

    fn theirs(conv: &str, seq: u64) -> pb::Message {
        message(conv, seq, "user_bob", "phone")
    }

    fn connected_inbox(lanes: u32) -> Inbox {
        let mut inbox = Inbox::new(16);
        inbox.connected("user_me", "laptop", lanes);
        assert_eq!(inbox.pop(), Some(Event::State(ConnectionState::Connected)));
        inbox
    }

    fn seqs(inbox: &mut Inbox) -> Vec<u64> {
        std::iter::from_fn(|| inbox.pop())
            .map(|event| match event {
                Event::Message(message) => message.seq,
                other => panic!("expected a message, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn own_ack_holds_its_seq_and_releases_what_waited_behind_it() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        assert!(inbox.offer_message(theirs("c", 1), now, GRACE));
        // Bob's seq 3 overtakes the ACK of our seq 2.
        assert!(!inbox.offer_message(theirs("c", 3), now, GRACE));
        assert!(inbox.offer_own("c", 2, now, GRACE));
        assert_eq!(seqs(&mut inbox), vec![1, 3]);
        assert_eq!(inbox.cursor("c"), 3);
        assert!(inbox.due_gap_fills(now + GRACE).is_empty());
    }

    #[test]
    fn own_device_messages_advance_the_cursor_silently() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        assert!(!inbox.offer_message(message("c", 1, "user_me", "laptop"), now, GRACE));
        // Same user, another device: surfaced.
        assert!(inbox.offer_message(message("c", 2, "user_me", "phone"), now, GRACE));
        assert_eq!(seqs(&mut inbox), vec![2]);
        assert_eq!(inbox.cursor("c"), 2);
        assert!(
            !inbox.offer_message(theirs("c", 2), now, GRACE),
            "duplicate"
        );
    }

    #[test]
    fn sync_done_follows_the_last_lane() {
        let now = Instant::now();
        let mut inbox = connected_inbox(2);
        inbox.offer_message(theirs("a", 1), now, GRACE);
        assert!(!inbox.sync_done());
        inbox.offer_message(theirs("b", 1), now, GRACE);
        assert!(inbox.sync_done());
        assert!(!inbox.sync_done(), "a repeated SyncDone is ignored");
        let events: Vec<Event> = std::iter::from_fn(|| inbox.pop()).collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2], Event::SyncDone);

        let mut no_lanes = Inbox::new(4);
        no_lanes.connected("user_me", "laptop", 0);
        assert_eq!(
            no_lanes.pop(),
            Some(Event::State(ConnectionState::Connected))
        );
        assert_eq!(no_lanes.pop(), Some(Event::SyncDone));
    }

    #[test]
    fn gaps_are_fetched_after_the_grace_period() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        inbox.offer_message(theirs("c", 1), now, GRACE);
        inbox.offer_message(theirs("c", 4), now, GRACE);
        assert!(inbox.due_gap_fills(now).is_empty());
        assert_eq!(inbox.due_gap_fills(now + GRACE), vec!["c".to_string()]);
        // Already being filled: not handed out twice.
        assert!(inbox.due_gap_fills(now + GRACE * 2).is_empty());
        // History brings 2 and 3.
        inbox.offer_message(theirs("c", 2), now, GRACE);
        inbox.offer_message(theirs("c", 3), now, GRACE);
        inbox.fill_finished("c", true, now, GRACE);
        assert!(inbox.due_gap_fills(now + GRACE * 10).is_empty());
        assert_eq!(seqs(&mut inbox), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_gap_that_closes_by_itself_is_not_fetched() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        inbox.offer_message(theirs("c", 2), now, GRACE);
        inbox.offer_message(theirs("c", 1), now, GRACE);
        assert!(inbox.due_gap_fills(now + GRACE).is_empty());
    }

    #[test]
    fn a_failed_fill_is_retried_later() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        inbox.offer_message(theirs("c", 2), now, GRACE);
        assert_eq!(inbox.due_gap_fills(now + GRACE).len(), 1);
        inbox.fill_finished("c", false, now + GRACE, GRACE);
        assert!(inbox.due_gap_fills(now + GRACE).is_empty());
        assert_eq!(inbox.due_gap_fills(now + GRACE * 2).len(), 1);
        // A reconnect forgets running fills; the gap is handed out again.
        inbox.disconnected();
        assert_eq!(inbox.due_gap_fills(now + GRACE * 2).len(), 1);
    }

    #[test]
    fn overflow_forces_a_fetch_even_after_the_gap_closes() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        for seq in 2..=(MAX_PENDING_PER_CONV as u64 + 2) {
            inbox.offer_message(theirs("c", seq), now, GRACE);
        }
        // The last one overflowed: due now, no grace.
        assert_eq!(inbox.due_gap_fills(now), vec!["c".to_string()]);
        inbox.fill_finished("c", false, now, GRACE);
        // Seq 1 arrives and closes the gap; the dropped seq still has to be fetched.
        inbox.offer_message(theirs("c", 1), now, GRACE);
        assert_eq!(inbox.cursor("c"), MAX_PENDING_PER_CONV as u64 + 1);
        assert_eq!(inbox.due_gap_fills(now + GRACE), vec!["c".to_string()]);
        inbox.offer_message(theirs("c", MAX_PENDING_PER_CONV as u64 + 2), now, GRACE);
        inbox.fill_finished("c", true, now + GRACE, GRACE);
        assert!(inbox.due_gap_fills(now + GRACE * 10).is_empty());
    }

    #[test]
    fn delivered_cursors_count_only_what_the_application_took() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        for seq in 1..=3 {
            inbox.offer_message(theirs("c", seq), now, GRACE);
        }
        inbox.offer_own("d", 1, now, GRACE);
        // Nothing of "c" taken yet; "d" holds only our own message.
        let reports = inbox.take_cursor_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(
            (reports[0].conv_id.as_str(), reports[0].delivered_seq),
            ("d", 1)
        );
        inbox.pop();
        inbox.pop();
        let reports = inbox.take_cursor_reports();
        assert_eq!(
            (reports[0].conv_id.as_str(), reports[0].delivered_seq),
            ("c", 2)
        );
        assert!(
            inbox.take_cursor_reports().is_empty(),
            "unchanged: nothing to report"
        );
        assert_eq!(
            inbox.hello_cursors(),
            vec![
                pb::Cursor {
                    conv_id: "c".into(),
                    seq: 3
                },
                pb::Cursor {
                    conv_id: "d".into(),
                    seq: 1
                },
            ]
        );
        // A new connection reports everything again.
        inbox.connected("user_me", "laptop", 1);
        assert_eq!(inbox.take_cursor_reports().len(), 2);
    }

    #[test]
    fn resume_from_starts_a_conversation_at_the_brokers_cursor() {
        let now = Instant::now();
        let mut inbox = connected_inbox(1);
        assert!(!inbox.resume_from("c", 40));
        assert_eq!(inbox.cursor("c"), 40);
        assert!(inbox.offer_message(theirs("c", 41), now, GRACE));
        assert!(
            !inbox.offer_message(theirs("c", 39), now, GRACE),
            "below the resume point"
        );
        // Never backwards.
        inbox.resume_from("c", 10);
        assert_eq!(inbox.cursor("c"), 41);
        // A message held behind a gap that the resume point closes is released.
        inbox.offer_message(theirs("d", 6), now, GRACE);
        assert!(inbox.resume_from("d", 5));
        assert_eq!(seqs(&mut inbox), vec![41, 6]);
        assert!(inbox.due_gap_fills(now + GRACE).is_empty());
    }

    #[test]
    fn many_taken_messages_make_a_report_due() {
        let now = Instant::now();
        let mut inbox = Inbox::new(10_000);
        inbox.connected("user_me", "laptop", 1);
        for seq in 1..=REPORT_AFTER_MESSAGES as u64 {
            inbox.offer_message(theirs("c", seq), now, GRACE);
        }
        while inbox.pop().is_some() {}
        assert!(inbox.report_due());
        inbox.take_cursor_reports();
        assert!(!inbox.report_due());
    }

    #[test]
    fn capacity_and_finish() {
        let now = Instant::now();
        let mut inbox = Inbox::new(2);
        inbox.connected("user_me", "laptop", 1);
        assert!(inbox.has_space());
        inbox.offer_message(theirs("c", 1), now, GRACE);
        assert!(!inbox.has_space());
        inbox.finish("bye".into());
        inbox.finish("twice".into());
        assert!(inbox.is_finished());
        let events: Vec<Event> = std::iter::from_fn(|| inbox.pop()).collect();
        assert_eq!(
            events.last(),
            Some(&Event::State(ConnectionState::Closed {
                reason: "bye".into()
            }))
        );
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn ephemeral_events_yield_to_a_full_queue_reliable_ones_do_not() {
        let mut inbox = Inbox::new(2);
        inbox.connected("user_me", "laptop", 1);
        let typing = || Event::Typing(pb::TypingNotice::default());
        assert!(inbox.push_ephemeral(typing()));
        assert!(
            !inbox.push_ephemeral(typing()),
            "Connected + typing fill it"
        );
        inbox.push_reliable(Event::Receipt(pb::Receipt::default()));
        inbox.push_reliable(Event::Call(pb::CallEvent::default()));
        assert_eq!(std::iter::from_fn(|| inbox.pop()).count(), 4);
        inbox.finish("bye".into());
        inbox.push_reliable(Event::Receipt(pb::Receipt::default()));
        assert!(!inbox.push_ephemeral(typing()));
        let events: Vec<Event> = std::iter::from_fn(|| inbox.pop()).collect();
        assert_eq!(events.len(), 1, "nothing after Closed: {events:?}");
    }
}
