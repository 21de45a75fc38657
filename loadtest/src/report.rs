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
/// timeline, the error log, the [`soak`] figures, the command line, and the broker's
/// peak RSS over the timeline (call after [`with_broker_info`]).
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
        map.insert("soak".into(), soak(timeline));
        map.insert("command".into(), json!(command));
        map.insert("timeline".into(), json!(timeline));
    }
    result
}

const MIB: f64 = 1024.0 * 1024.0;

/// What a long run is judged by, read off the timeline: the broker's RSS at the end
/// of the warm-up (the first measured point without a warm-up), at the end of the
/// measure phase and at its peak; its trend over the measure phase (a least-squares
/// line, in MiB per 10 minutes; flat memory is near 0); a per-minute RSS curve of the
/// measure phase; and errors per minute of the run (setup included) and during the
/// measure phase.
pub fn soak(timeline: &[Point]) -> Value {
    let measured: Vec<&Point> = timeline.iter().filter(|p| p.phase == "measure").collect();
    let after_warmup = timeline
        .iter()
        .rev()
        .find(|p| p.phase == "warm-up")
        .or(measured.first().copied())
        .and_then(|p| p.rss_bytes);
    let rss_mib: Vec<(f64, f64)> = measured
        .iter()
        .filter_map(|p| Some((p.t_s, p.rss_bytes? as f64 / MIB)))
        .collect();
    let slope = least_squares(&rss_mib).map(|(slope, _)| round2(slope * 600.0));
    let mut curve = Vec::new();
    if let Some(start) = measured.first().map(|p| p.t_s) {
        let mut next_minute = 0.0;
        for point in &measured {
            if point.t_s - start >= next_minute * 60.0 {
                if let Some(rss) = point.rss_bytes {
                    curve.push(json!({
                        "minute": next_minute,
                        "t_s": point.t_s,
                        "rss_mib": round2(rss as f64 / MIB),
                    }));
                }
                next_minute += 1.0;
            }
        }
        if let Some(last) = measured
            .last()
            .filter(|p| p.t_s - start > (next_minute - 1.0) * 60.0)
        {
            if let Some(rss) = last.rss_bytes {
                curve.push(json!({
                    "minute": round2((last.t_s - start) / 60.0),
                    "t_s": last.t_s,
                    "rss_mib": round2(rss as f64 / MIB),
                }));
            }
        }
    }
    let mut per_minute: Vec<u64> = Vec::new();
    let mut before = 0;
    for point in timeline {
        let minute = (point.t_s.max(0.0) / 60.0).ceil().max(1.0) as usize - 1;
        if per_minute.len() <= minute {
            per_minute.resize(minute + 1, 0);
        }
        per_minute[minute] += point.errors_total.saturating_sub(before);
        before = point.errors_total;
    }
    let at_measure_start = timeline
        .iter()
        .take_while(|p| p.phase != "measure")
        .last()
        .map_or(0, |p| p.errors_total);
    let at_measure_end = measured.last().map_or(at_measure_start, |p| p.errors_total);
    json!({
        "rss_after_warmup_bytes": after_warmup,
        "rss_end_bytes": measured.last().and_then(|p| p.rss_bytes),
        "rss_max_bytes": timeline.iter().filter_map(|p| p.rss_bytes).max(),
        "rss_max_measured_bytes": measured.iter().filter_map(|p| p.rss_bytes).max(),
        "rss_slope_mib_per_10min": slope,
        "rss_fit_samples": rss_mib.len(),
        "rss_curve": curve,
        "errors_total": timeline.last().map_or(0, |p| p.errors_total),
        "errors_measured": at_measure_end.saturating_sub(at_measure_start),
        "errors_per_minute": per_minute,
    })
}

/// The least-squares line through `points`: (slope, intercept); `None` for fewer
/// than two distinct x.
pub fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    Some((slope, mean_y - slope * mean_x))
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_s: f64, phase: &'static str, rss_mib: f64, errors_total: u64) -> Point {
        Point {
            t_s,
            phase,
            acked_per_sec: 0.0,
            delivered_per_sec: 0.0,
            ack_p50_ms: None,
            ack_p99_ms: None,
            e2e_p50_ms: None,
            e2e_p99_ms: None,
            rss_bytes: Some((rss_mib * MIB) as u64),
            errors_total,
        }
    }

    #[test]
    fn soak_figures_come_from_the_measure_phase() {
        let mut timeline = vec![point(1.0, "setup", 10.0, 0), point(2.0, "warm-up", 50.0, 1)];
        // 1 MiB per minute over 3 minutes of measurement.
        for s in 1..=180 {
            timeline.push(point(
                2.0 + f64::from(s),
                "measure",
                40.0 + f64::from(s) / 60.0,
                1,
            ));
        }
        timeline.push(point(183.5, "drain", 45.0, 3));
        let soak = soak(&timeline);
        assert_eq!(soak["rss_after_warmup_bytes"], (50.0 * MIB) as u64);
        assert_eq!(soak["rss_end_bytes"], (43.0 * MIB) as u64);
        assert_eq!(soak["rss_max_bytes"], (50.0 * MIB) as u64);
        assert_eq!(soak["rss_slope_mib_per_10min"], 10.0);
        assert_eq!(soak["errors_total"], 3);
        assert_eq!(soak["errors_measured"], 0);
        assert_eq!(soak["errors_per_minute"], json!([1, 0, 0, 2]));
        assert_eq!(soak["rss_curve"].as_array().unwrap().len(), 4);
    }
}
