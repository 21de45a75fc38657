//! What `compare` and `baseline` share: payload time stamps, latency histograms, the
//! measurement window every task checks, and the plain-text table both print.
//! (`baseline` includes this file with `#[path]`: binaries of one crate cannot import
//! each other, and the crate's library holds the criterion fixtures.)

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Width of the decimal send time stamp that starts every payload.
pub const STAMP_LEN: usize = 20;

/// Microseconds since the epoch: the send time stamp carried in payloads. Wall-clock
/// rather than `Instant` because the subscriber reading it may be another connection
/// (in `compare`, the same process; the time base is the machine's clock either way).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A payload of `size` bytes (at least [`STAMP_LEN`]): the current time stamp in
/// decimal, then `x` padding. Text rather than binary so that Quip, whose messages are
/// UTF-8 text, carries byte for byte the same payload as NATS and MQTT.
pub fn payload(size: usize) -> Vec<u8> {
    let mut body = format!("{:0width$}", now_micros(), width = STAMP_LEN).into_bytes();
    body.resize(size.max(STAMP_LEN), b'x');
    body
}

/// The send time stamp at the start of a payload made by [`payload`], if it is one
/// (group system messages and the like are not).
pub fn sent_micros(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload.get(..STAMP_LEN)?)
        .ok()?
        .parse()
        .ok()
}

/// Microseconds from `sent` (a payload's time stamp) to now, for a latency histogram.
pub fn since_micros(sent: u64) -> u64 {
    now_micros().saturating_sub(sent).max(1)
}

/// A latency histogram in microseconds: 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The percentiles a table row and the JSON result show.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// When the run measures: everything that happens in `[measure_from, stop_at)` is
/// counted, the warm-up before it is not. Tasks ask the clock rather than a shared
/// flag, so no coordinator task is needed and no task can miss a flip.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub stop_at: Instant,
}

impl Window {
    /// A window starting `warmup` from now and lasting `duration`.
    pub fn starting_in(warmup: Duration, duration: Duration) -> Window {
        let measure_from = Instant::now() + warmup;
        Window {
            measure_from,
            stop_at: measure_from + duration,
        }
    }

    /// Whether an event happening now is counted.
    pub fn measuring(&self) -> bool {
        let now = Instant::now();
        now >= self.measure_from && now < self.stop_at
    }

    /// Whether senders should stop sending.
    pub fn over(&self) -> bool {
        Instant::now() >= self.stop_at
    }

    pub fn seconds(&self) -> f64 {
        (self.stop_at - self.measure_from).as_secs_f64()
    }
}

/// Prints rows as columns padded to their widest cell: the first column left-aligned
/// (names), the others right-aligned (numbers).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                out.push_str("  ");
            }
            if i < 2 {
                out.push_str(&format!("{cell:<width$}"));
            } else {
                out.push_str(&format!("{cell:>width$}"));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    println!("{}", "-".repeat(total));
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A rate for the table: whole numbers with thousands separators.
pub fn rate(per_sec: f64) -> String {
    let whole = per_sec.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_its_stamp_and_has_the_size() {
        let body = payload(64);
        assert_eq!(body.len(), 64);
        let sent = sent_micros(&body).unwrap();
        assert!(sent > 0 && sent <= now_micros());
        assert_eq!(payload(5).len(), STAMP_LEN);
        assert_eq!(sent_micros(b"group created"), None);
    }

    #[test]
    fn rates_get_separators() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(999.4), "999");
        assert_eq!(rate(1234.0), "1,234");
        assert_eq!(rate(1_234_567.0), "1,234,567");
    }
}
