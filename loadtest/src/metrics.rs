//! What a run measures while it runs: counters and latency histograms, grouped in
//! named series (one per transport, or per part and transport in `mixed`).
//!
//! Every sample lands twice: in an interval histogram that the sampler empties each
//! second (the timeline and the progress bar), and, while the run is in its measure
//! phase, in the series' measured totals (the result). Counters are atomics;
//! histograms are sharded behind short `std` mutexes that are never held across an
//! `.await`, so thousands of client tasks record without contending on one lock.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::report::{Percentiles, histogram, now_micros};

/// Histogram shards per latency kind: more than the cores of the machines this runs
/// on, so two recording tasks rarely meet on one lock.
const SHARDS: usize = 8;

/// Distinct error messages kept by name; further kinds are counted under
/// [`OTHER_ERRORS`] so a storm of unique messages cannot grow the log without bound.
const MAX_ERROR_KINDS: usize = 32;
const OTHER_ERRORS: &str = "(other kinds)";

/// Where a run is. Samples count towards the result only in [`Phase::Measure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Registering users and connecting them.
    Setup = 0,
    /// Load is applied but not measured, so caches, connections and the store warm up.
    Warmup = 1,
    Measure = 2,
    /// Load has stopped; in-flight sends complete and clients close.
    Drain = 3,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Warmup => "warm-up",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
        }
    }

    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Setup,
        }
    }
}

/// All of a run's measurements.
#[derive(Debug)]
pub struct Metrics {
    /// Read on every sample, so an atomic; `phase_changes` tells the sampler.
    phase: AtomicU8,
    phase_changes: watch::Sender<Phase>,
    series: Mutex<Vec<Arc<Series>>>,
    errors: ErrorLog,
    next_shard: AtomicUsize,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            phase: AtomicU8::new(Phase::Setup as u8),
            phase_changes: watch::Sender::new(Phase::Setup),
            series: Mutex::new(Vec::new()),
            errors: ErrorLog::default(),
            next_shard: AtomicUsize::new(0),
        })
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.phase_changes.send_replace(phase);
    }

    /// Phase changes, for cutting the timeline at phase boundaries.
    pub fn phase_changes(&self) -> watch::Receiver<Phase> {
        self.phase_changes.subscribe()
    }

    fn measuring(&self) -> bool {
        self.phase() == Phase::Measure
    }

    /// A recorder into the series `name` (created on first use). Each recorder is
    /// pinned to one histogram shard, so give every client task its own.
    pub fn recorder(self: &Arc<Self>, name: &str) -> Recorder {
        let series = {
            let mut all = lock(&self.series);
            match all.iter().find(|s| s.name == name) {
                Some(series) => series.clone(),
                None => {
                    let series = Arc::new(Series::new(name));
                    all.push(series.clone());
                    series
                }
            }
        };
        Recorder {
            metrics: self.clone(),
            series,
            shard: self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS,
        }
    }

    /// Records an error that is not a failed send (a dropped connection, an error
    /// frame): it shows in the result's `errors`.
    pub fn error(&self, error: impl Display) {
        self.errors.add(error.to_string());
    }

    /// Everything recorded since the previous call (latencies), and the counters'
    /// running totals (the caller takes differences): one timeline step.
    pub fn take_interval(&self) -> Interval {
        let mut interval = Interval {
            acked_total: 0,
            delivered_total: 0,
            ack: histogram(),
            e2e: histogram(),
        };
        for series in lock(&self.series).iter() {
            interval.acked_total += series.acked.all.load(Ordering::Relaxed);
            interval.delivered_total += series.delivered.all.load(Ordering::Relaxed);
            series.ack.drain_interval_into(&mut interval.ack);
            series.e2e.drain_interval_into(&mut interval.e2e);
        }
        interval
    }

    /// The measured totals of the series whose names `include` accepts, as rates
    /// over `seconds` of measurement.
    pub fn summary(&self, include: impl Fn(&str) -> bool, seconds: f64) -> Summary {
        let mut counts = [0u64; 4];
        let (mut ack, mut e2e) = (histogram(), histogram());
        for series in lock(&self.series).iter().filter(|s| include(&s.name)) {
            let counters = [
                &series.sent,
                &series.acked,
                &series.failed,
                &series.delivered,
            ];
            for (total, counter) in counts.iter_mut().zip(counters) {
                *total += counter.measured.load(Ordering::Relaxed);
            }
            series.ack.add_measured_into(&mut ack);
            series.e2e.add_measured_into(&mut e2e);
        }
        let [sent, acked, failed, delivered] = counts;
        let per_sec = |n: u64| {
            if seconds > 0.0 {
                (n as f64 / seconds).round()
            } else {
                0.0
            }
        };
        Summary {
            sent,
            acked,
            failed,
            delivered,
            sent_per_sec: per_sec(sent),
            acked_per_sec: per_sec(acked),
            delivered_per_sec: per_sec(delivered),
            ack_latency: Percentiles::of(&ack),
            end_to_end_latency: Percentiles::of(&e2e),
        }
    }

    /// Errors recorded so far (every phase).
    pub fn error_total(&self) -> u64 {
        self.errors.total.load(Ordering::Relaxed)
    }

    /// The error log as JSON: `{"total": n, "kinds": {"message": count, …}}`,
    /// counting every phase (an error during warm-up is still worth knowing about).
    pub fn errors_json(&self) -> Value {
        self.errors.to_json()
    }
}

/// One second's worth of the sampler's view.
#[derive(Debug)]
pub struct Interval {
    /// Running totals over every phase.
    pub acked_total: u64,
    pub delivered_total: u64,
    /// Latencies recorded since the previous interval (all series).
    pub ack: Histogram<u64>,
    pub e2e: Histogram<u64>,
}

/// A result's figures for a set of series over the measure phase.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Sends started.
    pub sent: u64,
    /// Sends the broker acknowledged (stored).
    pub acked: u64,
    /// Sends that failed (an error answer, a timeout, a dropped connection).
    pub failed: u64,
    /// Load-test messages received by their recipients' devices.
    pub delivered: u64,
    pub sent_per_sec: f64,
    pub acked_per_sec: f64,
    pub delivered_per_sec: f64,
    /// From a send's (scheduled) start to its ACK.
    pub ack_latency: Percentiles,
    /// From the send timestamp in the body to the recipient surfacing the message.
    pub end_to_end_latency: Percentiles,
}

impl Summary {
    /// The summary's fields, to merge into a result object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A handle that client tasks record through.
#[derive(Debug, Clone)]
pub struct Recorder {
    metrics: Arc<Metrics>,
    series: Arc<Series>,
    shard: usize,
}

impl Recorder {
    pub fn sent(&self) {
        self.series.sent.add(self.metrics.measuring());
    }

    /// A send was acknowledged `latency` after it started (or was due to start).
    pub fn acked(&self, latency: Duration) {
        let measuring = self.metrics.measuring();
        self.series.acked.add(measuring);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.series.ack.record(self.shard, micros, measuring);
    }

    pub fn failed(&self, error: impl Display) {
        self.series.failed.add(self.metrics.measuring());
        self.metrics.error(error);
    }

    /// A load-test message arrived that was sent at `sent_micros` (epoch µs), which
    /// gives its end-to-end latency; `None` counts it without one.
    pub fn delivered(&self, sent_micros: Option<u64>) {
        let measuring = self.metrics.measuring();
        self.series.delivered.add(measuring);
        if let Some(sent) = sent_micros {
            let micros = now_micros().saturating_sub(sent);
            self.series.e2e.record(self.shard, micros, measuring);
        }
    }

    pub fn error(&self, error: impl Display) {
        self.metrics.error(error);
    }
}

/// The measurements of one group of clients.
#[derive(Debug)]
struct Series {
    name: String,
    sent: Counter,
    acked: Counter,
    failed: Counter,
    delivered: Counter,
    ack: Latency,
    e2e: Latency,
}

impl Series {
    fn new(name: &str) -> Series {
        Series {
            name: name.to_owned(),
            sent: Counter::default(),
            acked: Counter::default(),
            failed: Counter::default(),
            delivered: Counter::default(),
            ack: Latency::new(),
            e2e: Latency::new(),
        }
    }
}

/// A count over the whole run (for per-second rates) and over the measure phase.
#[derive(Debug, Default)]
struct Counter {
    all: AtomicU64,
    measured: AtomicU64,
}

impl Counter {
    fn add(&self, measuring: bool) {
        self.all.fetch_add(1, Ordering::Relaxed);
        if measuring {
            self.measured.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Latency {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Debug)]
struct Shard {
    interval: Histogram<u64>,
    measured: Histogram<u64>,
}

impl Latency {
    fn new() -> Latency {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    interval: histogram(),
                    measured: histogram(),
                })
            })
            .collect();
        Latency { shards }
    }

    fn record(&self, shard: usize, micros: u64, measuring: bool) {
        // The histogram's lowest value is 1 µs; anything faster (or a clock step
        // backwards) is recorded as that. Values past its top saturate.
        let micros = micros.max(1);
        let mut shard = lock(&self.shards[shard % SHARDS]);
        shard.interval.saturating_record(micros);
        if measuring {
            shard.measured.saturating_record(micros);
        }
    }

    fn drain_interval_into(&self, into: &mut Histogram<u64>) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = into.add(&shard.interval);
            shard.interval.reset();
        }
    }

    fn add_measured_into(&self, into: &mut Histogram<u64>) {
        for shard in &self.shards {
            let _ = into.add(&lock(shard).measured);
        }
    }
}

/// Error messages and how often each occurred.
#[derive(Debug, Default)]
struct ErrorLog {
    total: AtomicU64,
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl ErrorLog {
    fn add(&self, message: String) {
        self.total.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%message, "load-test error");
        let mut kinds = lock(&self.kinds);
        if let Some(count) = kinds.get_mut(&message) {
            *count += 1;
        } else if kinds.len() < MAX_ERROR_KINDS {
            kinds.insert(message, 1);
        } else {
            *kinds.entry(OTHER_ERRORS.to_owned()).or_default() += 1;
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "total": self.total.load(Ordering::Relaxed),
            "kinds": *lock(&self.kinds),
        })
    }
}

/// Locks a mutex that no code panics while holding; a poisoned one still holds
/// valid counts, so it is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_measure_phase_counts_towards_the_summary() {
        let metrics = Metrics::new();
        let recorder = metrics.recorder("quic");
        metrics.set_phase(Phase::Warmup);
        recorder.sent();
        recorder.acked(Duration::from_millis(5));
        metrics.set_phase(Phase::Measure);
        recorder.sent();
        recorder.acked(Duration::from_millis(2));
        recorder.delivered(Some(now_micros()));
        recorder.delivered(None);
        recorder.failed("boom");
        metrics.set_phase(Phase::Drain);
        recorder.acked(Duration::from_millis(9));

        let summary = metrics.summary(|_| true, 2.0);
        assert_eq!((summary.sent, summary.acked, summary.failed), (1, 1, 1));
        assert_eq!(summary.delivered, 2);
        assert_eq!(summary.end_to_end_latency.count, 1);
        assert_eq!(summary.acked_per_sec, 1.0);
        assert_eq!(summary.ack_latency.count, 1);
        assert!((summary.ack_latency.max_ms - 2.0).abs() < 0.01);

        // The timeline sees every phase, and each sample once.
        let interval = metrics.take_interval();
        assert_eq!(interval.acked_total, 3);
        assert_eq!(interval.ack.len(), 3);
        assert_eq!(metrics.take_interval().ack.len(), 0);
    }

    #[test]
    fn summaries_select_series_by_name() {
        let metrics = Metrics::new();
        metrics.set_phase(Phase::Measure);
        metrics.recorder("pairs.quic").sent();
        metrics.recorder("pairs.ws").sent();
        metrics.recorder("group.ws").sent();
        assert_eq!(metrics.summary(|n| n.ends_with(".ws"), 1.0).sent, 2);
        assert_eq!(metrics.summary(|n| n.starts_with("pairs."), 1.0).sent, 2);
        assert_eq!(metrics.summary(|_| true, 1.0).sent, 3);
    }

    #[test]
    fn the_error_log_caps_distinct_kinds() {
        let metrics = Metrics::new();
        for i in 0..MAX_ERROR_KINDS + 5 {
            metrics.error(format!("error {i}"));
        }
        metrics.error("error 0");
        let errors = metrics.errors_json();
        assert_eq!(errors["total"], MAX_ERROR_KINDS as u64 + 6);
        assert_eq!(errors["kinds"]["error 0"], 2);
        assert_eq!(errors["kinds"][OTHER_ERRORS], 5);
    }
}
