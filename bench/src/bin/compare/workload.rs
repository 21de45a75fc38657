//! The two workloads every system runs, and the tally their tasks add to.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::{Latency, Window, histogram};

/// Which workload a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// N publishers, each with W unacknowledged messages in flight to its own subscriber.
    Pairs,
    /// K publishers with W in flight each, to one topic that M subscribers receive.
    Group,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Pairs => "pairs",
            Workload::Group => "group",
        }
    }
}

/// The shape of a run, the same for every system.
#[derive(Debug, Clone, Serialize)]
pub struct Spec {
    /// Publisher/subscriber pairs of the pairs workload.
    pub pairs: usize,
    /// Unacknowledged messages in flight per publisher.
    pub window: usize,
    /// Payload bytes (the send time stamp and padding).
    pub size: usize,
    /// Unmeasured seconds before the measured ones (connections warm, caches full).
    pub warmup: f64,
    /// Measured seconds.
    pub duration: f64,
    /// Subscribers of the group workload.
    pub members: usize,
    /// Publishers of the group workload.
    pub senders: usize,
}

impl Spec {
    /// A fresh measurement window for a run whose clients are all connected now.
    pub fn window(&self) -> Window {
        Window::starting_in(
            Duration::from_secs_f64(self.warmup),
            Duration::from_secs_f64(self.duration),
        )
    }

    /// Publishers of `workload`.
    pub fn publishers(&self, workload: Workload) -> usize {
        match workload {
            Workload::Pairs => self.pairs,
            Workload::Group => self.senders,
        }
    }

    /// Subscribers of `workload`.
    pub fn subscribers(&self, workload: Workload) -> usize {
        match workload {
            Workload::Pairs => self.pairs,
            Workload::Group => self.members,
        }
    }
}

/// Counters and histograms shared by a run's tasks. Counters are bumped per event;
/// each task fills its own histogram and merges it once at its end, so the locks are
/// never contended on the hot path (and never held across an `.await`).
#[derive(Debug)]
pub struct Tally {
    acked: AtomicU64,
    delivered: AtomicU64,
    errors: AtomicU64,
    e2e: Mutex<Histogram<u64>>,
    ack: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            e2e: Mutex::new(histogram()),
            ack: Mutex::new(histogram()),
            first_error: Mutex::new(None),
        }
    }

    /// `n` messages acknowledged to their publisher.
    pub fn acked(&self, n: u64) {
        self.acked.fetch_add(n, Ordering::Relaxed);
    }

    /// The outcome of one acknowledged publish (`what` names the acknowledgement in
    /// error notes): counted, with its latency, while `window` is measuring.
    pub fn ack_outcome<T, E: std::fmt::Display>(
        &self,
        window: &Window,
        ack_latency: &mut Histogram<u64>,
        result: Result<T, E>,
        took: Duration,
        what: &str,
    ) {
        match result {
            Ok(_) if window.measuring() => {
                self.acked(1);
                let _ = ack_latency.record(took.as_micros().max(1) as u64);
            }
            Ok(_) => {}
            Err(e) => self.error(format!("{what}: {e}")),
        }
    }

    /// One message received by a subscriber.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed publish or a broken subscription; the first message is kept for the notes.
    pub fn error(&self, message: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| message.to_string());
        }
    }

    /// Merges a task's end-to-end latencies (µs).
    pub fn merge_e2e(&self, local: &Histogram<u64>) {
        if let Ok(mut all) = self.e2e.lock() {
            let _ = all.add(local);
        }
    }

    /// Merges a task's publish-to-ack latencies (µs).
    pub fn merge_ack(&self, local: &Histogram<u64>) {
        if let Ok(mut all) = self.ack.lock() {
            let _ = all.add(local);
        }
    }

    pub fn outcome(&self, window: &Window) -> Outcome {
        let lock_latency = |h: &Mutex<Histogram<u64>>| {
            h.lock()
                .map_or_else(|_| Latency::default(), |h| Latency::of(&h))
        };
        Outcome {
            seconds: window.seconds(),
            acked: self.acked.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error.lock().ok().and_then(|e| e.clone()),
            e2e: lock_latency(&self.e2e),
            ack: lock_latency(&self.ack),
        }
    }
}

/// What one system did in one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub seconds: f64,
    /// Messages acknowledged to publishers in the measured window.
    pub acked: u64,
    /// Messages received by subscribers in the measured window (every subscriber's copy).
    pub delivered: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Payload time stamp to subscriber, in the measured window.
    pub e2e: Latency,
    /// Publish to acknowledgement, where the client exposes it per message.
    pub ack: Latency,
}

impl Outcome {
    pub fn acked_per_sec(&self) -> f64 {
        self.acked as f64 / self.seconds
    }

    pub fn delivered_per_sec(&self) -> f64 {
        self.delivered as f64 / self.seconds
    }

    /// The headline rate: acknowledged messages for pairs (each is delivered once), all
    /// subscribers' deliveries for the group (the fan-out is the work).
    pub fn msgs_per_sec(&self, workload: Workload) -> f64 {
        match workload {
            Workload::Pairs => self.acked_per_sec(),
            Workload::Group => self.delivered_per_sec(),
        }
    }
}
