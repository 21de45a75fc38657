//! The timeline: once a second, the rates and latency percentiles of the last second
//! and the broker's memory, for the JSON result, the HTML plots and the progress bar.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::metrics::Metrics;
use crate::progress::{Progress, Status};
use crate::report::total_rss_bytes;

const EVERY: Duration = Duration::from_secs(1);
/// An interval cut shorter than this (two phase changes in a row) is merged into
/// the next: its rates would be noise.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the run started (setup included), at the end of the interval.
    /// Intervals are a second long, except where a phase begins or the run ends.
    pub t_s: f64,
    /// The phase the interval belongs to.
    pub phase: &'static str,
    pub acked_per_sec: f64,
    pub delivered_per_sec: f64,
    /// Percentiles of the interval's samples; `None` when it had none.
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// The broker's resident set size (a cluster's: the sum over its nodes); `None`
    /// without a local broker pid.
    pub rss_bytes: Option<u64>,
    /// Errors recorded since the run started (a running total).
    pub errors_total: u64,
}

/// The running sampler task.
#[derive(Debug)]
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Point>>,
}

impl Sampler {
    /// Starts sampling `metrics` (and the brokers' RSS, summed over `broker_pids`)
    /// every second.
    pub fn start(metrics: Arc<Metrics>, broker_pids: Vec<u32>, progress: Progress) -> Sampler {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sample(metrics, broker_pids, progress, stopped));
        Sampler { stop, task }
    }

    /// Stops sampling (recording a final partial interval) and returns the timeline.
    pub async fn finish(self) -> Vec<Point> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn sample(
    metrics: Arc<Metrics>,
    broker_pids: Vec<u32>,
    progress: Progress,
    mut stopped: oneshot::Receiver<()>,
) -> Vec<Point> {
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at((started + EVERY).into(), EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut phases = metrics.phase_changes();
    let mut phase = *phases.borrow_and_update();
    let mut timeline = Vec::new();
    let mut previous = (started, 0u64, 0u64);
    loop {
        let cut = tokio::select! {
            _ = ticks.tick() => Cut::Tick,
            Ok(()) = phases.changed() => Cut::PhaseChange,
            _ = &mut stopped => Cut::Stop,
        };
        let now = Instant::now();
        let seconds = now.duration_since(previous.0);
        if seconds >= MIN_INTERVAL {
            let interval = metrics.take_interval();
            let rate = |total: u64, before: u64| {
                (total.saturating_sub(before) as f64 / seconds.as_secs_f64()).round()
            };
            let point = Point {
                t_s: round_ms(now.duration_since(started).as_secs_f64()),
                phase: phase.name(),
                acked_per_sec: rate(interval.acked_total, previous.1),
                delivered_per_sec: rate(interval.delivered_total, previous.2),
                ack_p50_ms: quantile_ms(&interval.ack, 0.5),
                ack_p99_ms: quantile_ms(&interval.ack, 0.99),
                e2e_p50_ms: quantile_ms(&interval.e2e, 0.5),
                e2e_p99_ms: quantile_ms(&interval.e2e, 0.99),
                rss_bytes: total_rss_bytes(&broker_pids),
                errors_total: metrics.error_total(),
            };
            progress.status(Status {
                phase: metrics.phase(),
                acked_per_sec: point.acked_per_sec,
                delivered_per_sec: point.delivered_per_sec,
                ack_p99_ms: point.ack_p99_ms,
                e2e_p99_ms: point.e2e_p99_ms,
            });
            timeline.push(point);
            previous = (now, interval.acked_total, interval.delivered_total);
        }
        match cut {
            Cut::Tick => {}
            Cut::PhaseChange => {
                // The next intervals are whole seconds of the new phase.
                phase = *phases.borrow_and_update();
                ticks.reset();
            }
            Cut::Stop => break,
        }
    }
    timeline
}

/// Why an interval ends.
enum Cut {
    Tick,
    /// Intervals never straddle phases, so each point's rates and latencies belong
    /// to exactly one phase.
    PhaseChange,
    Stop,
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(quantile) as f64 / 1000.0)
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
