//! The broker's metrics, served as `GET /metrics` by the browser bridge's HTTP listener
//! in the OpenMetrics text format (which Prometheus scrapes natively).
//!
//! Every metric is defined here, with why it exists. Their values come from two kinds
//! of sources, neither of which takes a lock per message:
//!
//! - counters this module owns, bumped where things happen with one atomic add: sends
//!   accepted and their ACK latency (`dispatch`), errors by code (`dispatch`, `bridge`),
//!   the store writer's batch sizes and queue ([`StoreWriterMetrics`], fed by
//!   `store/writer.rs`);
//! - counters and gauges the rest of the broker keeps anyway, read when scraped: sessions
//!   by transport and slow-consumer closes (router), the store's appends and flushes
//!   (`Store::stats`), the fan-out queue and deliveries (chat), rate-limit refusals
//!   (limits), cluster publish failures.
//!
//! One [`Metrics`] per broker, built in `server.rs` and held in the `BrokerContext`:
//! tests run many brokers in one process, and each must count only its own traffic.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use quip_protocol::ErrorCode;

use crate::context::BrokerContext;

/// ACK latency bucket bounds, in microseconds: 100 µs to 5 s. A healthy `os` broker
/// ACKs in well under a millisecond, `fsync` in a few; seconds mean trouble.
const ACK_LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Appends-per-commit bucket bounds: powers of two up to the largest `store_max_batch`
/// anyone sensibly sets.
const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096];

/// Error codes are small protobuf enum values; this many slots hold all of them with
/// room for codes added later (a code beyond is counted in the last slot).
const ERROR_SLOTS: usize = 64;

/// The metrics of one broker.
#[derive(Debug)]
pub struct Metrics {
    /// The metrics this module owns, registered once.
    registry: Registry,
    messages_in: Counter,
    ack_latency: AtomicHistogram,
    errors: Arc<ErrorCounts>,
    store_writer: Arc<StoreWriterMetrics>,
    /// Reads the cluster's publish failures (cluster mode only).
    cluster_publish_failures: Option<Reader>,
}

/// A counter kept elsewhere, read at scrape time.
struct Reader(Box<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("quip");
        let messages_in = Counter::default();
        // Throughput in: with `messages_out` it shows fan-out, and a drop to 0 while
        // connections stay up is the first sign of a stuck store.
        registry.register(
            "messages_in",
            "Sends accepted: requests answered with a SendAck \
             (resends of a stored message included)",
            messages_in.clone(),
        );
        let ack_latency = AtomicHistogram::new(ACK_LATENCY_BOUNDS_US, 1e6);
        // The latency users feel when they press send: it includes the store's group
        // commit, so it moves with `durability` and disk health.
        registry.register_with_unit(
            "ack_latency",
            "Time from a send request's receipt to its SendAck (stored, fanned out)",
            Unit::Seconds,
            ack_latency.clone(),
        );
        let errors = Arc::new(ErrorCounts::default());
        // Which errors clients see: a rise in UNAVAILABLE or INTERNAL is an outage,
        // in INVALID_CREDENTIALS an attack or a broken client release.
        registry.register(
            "errors",
            "Requests and Hellos answered with an error, by error code",
            ErrorFamily(errors.clone()),
        );
        let store_writer = Arc::new(StoreWriterMetrics::default());
        // Group commit at work: mostly 1 means the store is idle or fsync is fast;
        // batches near `store_max_batch` mean the writer is the bottleneck.
        registry.register(
            "store_batch_appends",
            "Appends made durable together: per fsync (fsync durability) \
             or per applied batch (os); embedded store only",
            store_writer.batch_appends.clone(),
        );
        // Appends waiting for the writer thread: near `store_queue_len`, senders block.
        registry.register(
            "store_queue_length",
            "Appends waiting for the store writer when it last took a batch; \
             embedded store only",
            QueueGauge(store_writer.clone()),
        );
        Self {
            registry,
            messages_in,
            ack_latency,
            errors,
            store_writer,
            cluster_publish_failures: None,
        }
    }

    /// In cluster mode: where `quip_cluster_publish_failures_total` comes from.
    pub fn watch_cluster_publish_failures(
        &mut self,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.cluster_publish_failures = Some(Reader(Box::new(read)));
    }

    /// A send was answered with a SendAck, `latency` after the request arrived.
    pub fn send_acked(&self, latency: Duration) {
        self.messages_in.inc();
        self.ack_latency
            .observe(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// A request (or a Hello) was answered with `code`.
    pub fn error(&self, code: ErrorCode) {
        self.errors.count(code);
    }

    /// What the embedded store's writer reports to (`SledOptions::metrics`).
    pub fn store_writer(&self) -> &Arc<StoreWriterMetrics> {
        &self.store_writer
    }

    /// The exposition: this module's metrics, then everything read from `ctx` now.
    pub fn render(&self, ctx: &BrokerContext) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail; a metric that failed to encode would be a
        // bug in this module, and a partial scrape beats none.
        if let Err(error) = text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &self.live(ctx)))
        {
            tracing::error!(%error, "encoding metrics failed");
        }
        let _ = out.write_str("# EOF\n");
        out
    }

    /// The metrics read from the rest of the broker, as they are at this scrape.
    fn live(&self, ctx: &BrokerContext) -> Registry {
        let mut registry = Registry::with_prefix("quip");
        let sessions = ctx.router.sessions_by_transport();
        let by_transport = ["quic", "websocket"]
            .into_iter()
            .map(|t| (t, sessions.get(t).copied().unwrap_or(0) as u64))
            .collect();
        // Load per node and per transport: capacity planning and the balance of a cluster.
        registry.register(
            "connections",
            "Authenticated sessions on this node, by transport",
            Labelled::gauge("transport", by_transport),
        );
        // Throughput out: deliveries per message in is the average fan-out.
        registry.register(
            "messages_out",
            "Live deliveries handed to sessions' lane queues by fan-out \
             (catch-up reads from the store not included)",
            ConstCounter::new(ctx.chat.deliveries()),
        );
        // Committed messages waiting to be handed to sessions: a growing queue means
        // fan-out (big groups) cannot keep up, and commits will soon wait for it.
        registry.register(
            "fan_out_queue_length",
            "Committed messages waiting for the fan-out thread",
            ConstGauge::new(ctx.chat.fan_out_queue_len() as i64),
        );
        // Devices too slow to take what they are sent: each one reconnects and resumes.
        registry.register(
            "slow_consumer_closes",
            "Sessions closed with SLOW_CONSUMER because their outbound queue was full",
            ConstCounter::new(ctx.router.slow_consumer_closes()),
        );
        let stats = ctx.store.stats();
        // appends / batches is the mean group-commit size; flushes show fsync pressure.
        registry.register(
            "store_appends",
            "Messages the store has appended",
            ConstCounter::new(stats.appends),
        );
        registry.register(
            "store_batches",
            "Batches the store writer has applied",
            ConstCounter::new(stats.batches),
        );
        registry.register(
            "store_flushes",
            "Flushes (fsyncs) the store has made",
            ConstCounter::new(stats.flushes),
        );
        // Abuse, or limits set too tight for real clients.
        registry.register(
            "rate_limited",
            "Requests refused with RATE_LIMITED, by limit: request and message (per connection), \
             rest_request (per user), login_address (per client address), \
             login_delay (after failed passwords)",
            Labelled::counter(
                "kind",
                ctx.limits
                    .refusals()
                    .into_iter()
                    .map(|(kind, n)| (kind.name(), n))
                    .collect(),
            ),
        );
        if let Some(Reader(read)) = &self.cluster_publish_failures {
            // Live deliveries to other nodes that were lost (receivers catch up later).
            registry.register(
                "cluster_publish_failures",
                "Publishes to other nodes that failed (their live deliveries were lost; \
                 receivers catch up from the store)",
                ConstCounter::new(read()),
            );
        }
        if ctx.cluster.spans_nodes() {
            registry.register(
                "cluster_connected",
                "1 while this node's link to the other nodes (Redis pub/sub) is up",
                ConstGauge::new(i64::from(ctx.cluster.is_connected())),
            );
        }
        registry
    }
}

/// Counters by error code: one atomic add per error, no map and no lock.
#[derive(Debug)]
struct ErrorCounts([AtomicU64; ERROR_SLOTS]);

impl Default for ErrorCounts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl ErrorCounts {
    fn count(&self, code: ErrorCode) {
        let slot = usize::try_from(code as i32)
            .unwrap_or(0)
            .min(ERROR_SLOTS - 1);
        self.0[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Every known code with its count, zeros included, so rates start from a series
    /// that exists.
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        (1..ERROR_SLOTS)
            .filter_map(|slot| {
                let code = ErrorCode::try_from(slot as i32).ok()?;
                Some((code.name(), self.0[slot].load(Ordering::Relaxed)))
            })
            .collect()
    }
}

#[derive(Debug)]
struct ErrorFamily(Arc<ErrorCounts>);

impl EncodeMetric for ErrorFamily {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        Labelled::counter("code", self.0.snapshot()).encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Values of one metric by one label, taken at scrape time.
#[derive(Debug)]
struct Labelled {
    kind: MetricType,
    label: &'static str,
    values: Vec<(&'static str, u64)>,
}

impl Labelled {
    fn counter(label: &'static str, values: Vec<(&'static str, u64)>) -> Self {
        Self {
            kind: MetricType::Counter,
            label,
            values,
        }
    }

    fn gauge(label: &'static str, values: Vec<(&'static str, u64)>) -> Self {
        Self {
            kind: MetricType::Gauge,
            label,
            values,
        }
    }
}

impl EncodeMetric for Labelled {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, n) in &self.values {
            let labels = [(self.label, *value)];
            let mut family = encoder.encode_family(&labels)?;
            match self.kind {
                MetricType::Counter => family.encode_counter::<NoLabelSet, _, u64>(n, None)?,
                _ => family.encode_gauge(&i64::try_from(*n).unwrap_or(i64::MAX))?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// A histogram of integer observations with fixed bounds, all atomics: observing is
/// two relaxed adds and a search of a few bounds. (`prometheus_client`'s `Histogram`
/// takes a mutex per observation, which the send path must not.)
#[derive(Debug, Clone)]
pub struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Inclusive upper bounds, ascending, in the observations' unit.
    bounds: &'static [u64],
    /// One more than `bounds`: the last is +Inf.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    /// Observations are divided by this when exposed (1e6: microseconds → seconds).
    divisor: f64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [u64], divisor: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Self(Arc::new(HistogramCells {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            divisor,
        }))
    }

    pub fn observe(&self, value: u64) {
        let cells = &*self.0;
        let slot = cells.bounds.partition_point(|&bound| bound < value);
        cells.buckets[slot].fetch_add(1, Ordering::Relaxed);
        cells.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &*self.0;
        // Per-bucket counts (the encoder accumulates them), read once so the count
        // is their sum.
        let buckets: Vec<(f64, u64)> = cells
            .bounds
            .iter()
            .map(|&bound| bound as f64 / cells.divisor)
            .chain([f64::INFINITY])
            .zip(cells.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = cells.sum.load(Ordering::Relaxed) as f64 / cells.divisor;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// What the embedded store's writer thread reports: how many appends each commit
/// covers, and how many wait for it. Updated once per batch, not per append.
#[derive(Debug)]
pub struct StoreWriterMetrics {
    batch_appends: AtomicHistogram,
    queued: AtomicU64,
}

impl Default for StoreWriterMetrics {
    fn default() -> Self {
        Self {
            batch_appends: AtomicHistogram::new(BATCH_BOUNDS, 1.0),
            queued: AtomicU64::new(0),
        }
    }
}

impl StoreWriterMetrics {
    /// `appends` were made durable together.
    pub fn committed(&self, appends: usize) {
        if appends > 0 {
            self.batch_appends.observe(appends as u64);
        }
    }

    /// `len` appends wait in the writer's queue.
    pub fn queued(&self, len: usize) {
        self.queued.store(len as u64, Ordering::Relaxed);
    }

    /// Commits observed so far.
    pub fn commits(&self) -> u64 {
        self.batch_appends.count()
    }
}

#[derive(Debug)]
struct QueueGauge(Arc<StoreWriterMetrics>);

impl EncodeMetric for QueueGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let len = self.0.queued.load(Ordering::Relaxed);
        encoder.encode_gauge(&i64::try_from(len).unwrap_or(i64::MAX))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metric: impl prometheus_client::registry::Metric) -> String {
        let mut registry = Registry::with_prefix("quip");
        registry.register("m", "test", metric);
        let mut out = String::new();
        text::encode_registry(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let h = AtomicHistogram::new(&[1, 10, 100], 1.0);
        for v in [0, 1, 2, 10, 11, 1_000] {
            h.observe(v);
        }
        assert_eq!(h.count(), 6);
        let text = encoded(h);
        assert!(text.contains("quip_m_bucket{le=\"1.0\"} 2\n"), "{text}");
        assert!(text.contains("quip_m_bucket{le=\"10.0\"} 4\n"), "{text}");
        assert!(text.contains("quip_m_bucket{le=\"100.0\"} 5\n"), "{text}");
        assert!(text.contains("quip_m_bucket{le=\"+Inf\"} 6\n"), "{text}");
        assert!(text.contains("quip_m_count 6\n"), "{text}");
        assert!(text.contains("quip_m_sum 1024.0\n"), "{text}");
    }

    #[test]
    fn latency_is_exposed_in_seconds() {
        let metrics = Metrics::new();
        metrics.send_acked(Duration::from_micros(300));
        metrics.send_acked(Duration::from_secs(60));
        assert_eq!(metrics.ack_latency.count(), 2);
        assert_eq!(metrics.messages_in.get(), 2);
        let mut out = String::new();
        text::encode_registry(&mut out, &metrics.registry).unwrap();
        assert!(
            out.contains("# TYPE quip_ack_latency_seconds histogram\n"),
            "{out}"
        );
        assert!(
            out.contains("quip_ack_latency_seconds_bucket{le=\"0.0001\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("quip_ack_latency_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("quip_ack_latency_seconds_bucket{le=\"5.0\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("quip_ack_latency_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("quip_ack_latency_seconds_sum 60.0003\n"),
            "{out}"
        );
        assert!(out.contains("quip_messages_in_total 2\n"), "{out}");
    }

    #[test]
    fn errors_are_counted_by_code_name() {
        let metrics = Metrics::new();
        metrics.error(ErrorCode::InvalidArgument);
        metrics.error(ErrorCode::InvalidArgument);
        metrics.error(ErrorCode::RateLimited);
        let mut out = String::new();
        text::encode_registry(&mut out, &metrics.registry).unwrap();
        assert!(out.contains("# TYPE quip_errors counter\n"), "{out}");
        assert!(
            out.contains("quip_errors_total{code=\"INVALID_ARGUMENT\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("quip_errors_total{code=\"RATE_LIMITED\"} 1\n"),
            "{out}"
        );
        // Known codes are there from the start, at zero; UNSPECIFIED never is.
        assert!(
            out.contains("quip_errors_total{code=\"NOT_FOUND\"} 0\n"),
            "{out}"
        );
        assert!(!out.contains("UNSPECIFIED"), "{out}");
    }
}
