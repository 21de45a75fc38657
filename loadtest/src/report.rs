//! Results: latency histograms and the JSON document a run prints.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use crate::sampler::Point;
use crate::target::Target;

/// Microseconds since the epoch: the send timestamp carried in payloads, comparable
/// between processes on one machine.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: histogram.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: histogram.max() as f64 / 1000.0,
        }
    }
}

/// Resident set size of a process, from /proc (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The summed resident set size of `pids` (a cluster's nodes); `None` when none
/// could be read.
pub fn total_rss_bytes(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .filter_map(|&pid| rss_bytes(pid))
        .reduce(|a, b| a + b)
}

/// Adds what was loaded: `target` describes it ("cluster of N nodes on Redis", …),
/// `addr` is the first node's, `nodes` every node's; `rss_bytes` is summed over the
/// nodes, and a spawned cluster's Redis is reported on its own.
pub fn with_broker_info(mut result: Value, target: &Target) -> Value {
    if let Value::Object(map) = &mut result {
        let mut broker = json!({
            "target": target.description,
            "addr": target.node(0).addr.to_string(),
            "nodes": target
                .nodes()
                .iter()
                .map(|node| json!({"name": node.name, "addr": node.addr.to_string()}))
                .collect::<Vec<_>>(),
            "durability": target.durability,
            "rss_bytes": total_rss_bytes(&target.pids()),
        });
        if let Some(pid) = target.redis_pid() {
            broker["redis_rss_bytes"] = json!(rss_bytes(pid));
        }
        map.insert("broker".into(), broker);
    }
    result
}

/// JSON objects merged left to right (a later key wins): a result built from parts.
pub fn merged<const N: usize>(parts: [Value; N]) -> Value {
    let mut all = serde_json::Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            all.extend(map);
        }
    }
    Value::Object(all)
}

/// Adds what every result carries besides the scenario's own figures: the
/// timeline, the error log, the command line, and the broker's peak RSS over the
/// timeline (call after [`with_broker_info`]).
pub fn with_run_info(
    mut result: Value,
    timeline: &[Point],
    errors: Value,
    command: &[String],
) -> Value {
    if let Value::Object(map) = &mut result {
        let peak = timeline.iter().filter_map(|p| p.rss_bytes).max();
        if let Some(Value::Object(broker)) = map.get_mut("broker") {
            broker.insert("peak_rss_bytes".into(), json!(peak));
        }
        map.insert("errors".into(), errors);
        map.insert("command".into(), json!(command));
        map.insert("timeline".into(), json!(timeline));
    }
    result
}
