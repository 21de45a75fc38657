//! The `--html` report: one self-contained file (inline CSS and SVG, nothing to
//! fetch) with the headline numbers, the command line, and plots of throughput,
//! latency and broker memory over the run.
//!
//! It is rendered from the JSON result, so every scenario gets a report and the two
//! never disagree; sections whose data a scenario does not produce say so.

use std::fmt::Write as _;

use serde_json::Value;

use crate::chart::{Chart, Line};

/// Headline figures, in this order, when the result has them (dotted paths).
const HEADLINE: &[&str] = &[
    "scenario",
    "transport",
    "seconds",
    "sent_per_sec",
    "acked_per_sec",
    "delivered_per_sec",
    "deliveries_per_sec",
    "fan_out",
    "failed",
    "errors.total",
    "ack_latency",
    "end_to_end_latency",
    "catch_up_latency",
    "median_resume_ms",
    "broker.target",
    "broker.durability",
    "broker.peak_rss_bytes",
    "churn.events",
    "churn.failed",
    "delivery.missing",
    "delivery.duplicates",
    "soak.rss_after_warmup_bytes",
    "soak.rss_end_bytes",
    "soak.rss_max_bytes",
    "soak.rss_slope_mib_per_10min",
    "soak.errors_measured",
];
/// The percentile fields of a latency object and their axis names.
const PERCENTILES: [(&str, &str); 5] = [
    ("p50_ms", "p50"),
    ("p90_ms", "p90"),
    ("p99_ms", "p99"),
    ("p999_ms", "p99.9"),
    ("max_ms", "max"),
];
const MIB: f64 = 1024.0 * 1024.0;
/// Rates further apart than this get a chart each (see [`comparable`]).
const SHARED_AXIS_RATIO: f64 = 5.0;

/// The report for `result`, run as `command`.
pub fn render(result: &Value, command: &[String]) -> String {
    let timeline = result["timeline"].as_array().map_or(&[][..], Vec::as_slice);
    let title = format!(
        "quip-loadtest: {} ({})",
        result["scenario"].as_str().unwrap_or("?"),
        result["transport"].as_str().unwrap_or("?"),
    );
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n",
        title = escape(&title),
    );
    let _ = write!(
        html,
        "<h2>Command</h2>\n<pre>{}</pre>\n",
        escape(&shell_words(command))
    );
    html.push_str("<h2>Headline</h2>\n");
    html.push_str(&table(HEADLINE.iter().filter_map(|path| {
        lookup(result, path).map(|value| ((*path).to_owned(), value))
    })));

    html.push_str("<h2>Throughput</h2>\n");
    html.push_str(SHADING_NOTE);
    let bands = unmeasured_bands(timeline);
    let acked = timeline_line(timeline, "acked/s", "acked_per_sec", 1.0);
    let delivered = timeline_line(timeline, "delivered/s", "delivered_per_sec", 1.0);
    let throughput = |title, lines| Chart {
        title,
        x_desc: "seconds since start",
        y_desc: "messages/s",
        lines,
        bands: bands.clone(),
        ..Chart::default()
    };
    if comparable(&acked, &delivered) {
        let chart = throughput("Messages per second", vec![acked, delivered]);
        section(&mut html, chart, "no timeline");
    } else {
        // A group's deliveries are its sends times its members: on one axis the
        // ACK line would be flat at zero.
        section(
            &mut html,
            throughput("ACKs per second", vec![acked]),
            "no timeline",
        );
        let chart = throughput("Deliveries per second", vec![delivered]);
        section(&mut html, chart, "no timeline");
    }

    html.push_str("<h2>Latency</h2>\n");
    section(
        &mut html,
        Chart {
            title: "Latency per second",
            x_desc: "seconds since start",
            y_desc: "ms",
            lines: ["ack_p50_ms", "ack_p99_ms", "e2e_p50_ms", "e2e_p99_ms"]
                .iter()
                .map(|key| {
                    let label = key.trim_end_matches("_ms").replace('_', " ");
                    timeline_line(timeline, &label, key, 1.0)
                })
                .collect(),
            bands: bands.clone(),
            ..Chart::default()
        },
        "no latency samples",
    );
    let names: Vec<&str> = PERCENTILES.iter().map(|(_, name)| *name).collect();
    section(
        &mut html,
        Chart {
            title: "Latency percentiles (measure phase)",
            x_desc: "percentile",
            y_desc: "ms",
            lines: latency_lines(result),
            categories: &names,
            ..Chart::default()
        },
        "no measured latencies",
    );

    html.push_str("<h2>Broker memory</h2>\n");
    section(
        &mut html,
        Chart {
            title: "Broker resident set size",
            x_desc: "seconds since start",
            y_desc: "MiB",
            lines: rss_lines(timeline),
            bands,
            ..Chart::default()
        },
        "RSS unknown: the broker was not spawned and no --broker-pid was given",
    );
    if let Some(errors) = result["soak"]["errors_per_minute"].as_array() {
        let counts: Vec<String> = errors.iter().map(Value::to_string).collect();
        let _ = writeln!(
            html,
            "<h2>Errors per minute</h2>\n<p>Minutes since the run started (setup included): {}</p>",
            escape(&counts.join(" · "))
        );
    }

    html.push_str("<h2>All figures</h2>\n");
    let mut all = Vec::new();
    flatten("", result, &mut all);
    html.push_str(&table(all.into_iter()));
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}\
    table{border-collapse:collapse;margin:.5em 0}td{border:1px solid #ccc;padding:.2em .6em}\
    td:first-child{font-family:monospace}pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap}\
    .none{color:#888;font-style:italic}svg{max-width:100%;height:auto}";
const SHADING_NOTE: &str =
    "<p>Grey: setup, warm-up and drain, which do not count towards the result.</p>\n";

/// The chart, or a note saying why there is none.
fn section(html: &mut String, chart: Chart<'_>, missing: &str) {
    if !chart.has_data() {
        let _ = writeln!(html, "<p class=\"none\">{}</p>", escape(missing));
        return;
    }
    match chart.render() {
        Ok(svg) => {
            html.push_str(&svg);
            html.push('\n');
        }
        Err(error) => {
            let _ = writeln!(html, "<p class=\"none\">{}</p>", escape(&error.to_string()));
        }
    }
}

/// One timeline field over time (points without it are skipped), times `scale`.
fn timeline_line(timeline: &[Value], label: &str, key: &str, scale: f64) -> Line {
    let points = timeline
        .iter()
        .filter_map(|point| Some((point["t_s"].as_f64()?, point[key].as_f64()? * scale)))
        .collect();
    Line {
        label: label.to_owned(),
        points,
    }
}

/// The RSS over time in MiB and, over the measure phase, its least-squares line
/// (the soak slope).
fn rss_lines(timeline: &[Value]) -> Vec<Line> {
    let rss = timeline_line(timeline, "RSS", "rss_bytes", 1.0 / MIB);
    let measured: Vec<(f64, f64)> = timeline
        .iter()
        .filter(|point| point["phase"].as_str() == Some("measure"))
        .filter_map(|point| Some((point["t_s"].as_f64()?, point["rss_bytes"].as_f64()? / MIB)))
        .collect();
    let mut lines = vec![rss];
    if let (Some((slope, intercept)), Some(first), Some(last)) = (
        crate::report::least_squares(&measured),
        measured.first(),
        measured.last(),
    ) {
        lines.push(Line {
            label: "trend (measure)".to_owned(),
            points: [first.0, last.0]
                .iter()
                .map(|&t| (t, intercept + slope * t))
                .collect(),
        });
    }
    lines
}

/// Whether two lines read well on one linear axis: their peaks within a factor of
/// [`SHARED_AXIS_RATIO`].
fn comparable(a: &Line, b: &Line) -> bool {
    let peak = |line: &Line| line.points.iter().map(|p| p.1).fold(0.0, f64::max);
    let (a, b) = (peak(a), peak(b));
    a.max(b) <= SHARED_AXIS_RATIO * a.min(b).max(1.0)
}

/// The x ranges of timeline points outside the measure phase. Each point covers the
/// second before its `t_s`.
fn unmeasured_bands(timeline: &[Value]) -> Vec<(f64, f64)> {
    let mut bands: Vec<(f64, f64)> = Vec::new();
    let mut previous = 0.0;
    for point in timeline {
        let Some(t) = point["t_s"].as_f64() else {
            continue;
        };
        if point["phase"].as_str() != Some("measure") {
            match bands.last_mut() {
                Some(band) if band.1 == previous => band.1 = t,
                _ => bands.push((previous, t)),
            }
        }
        previous = t;
    }
    bands
}

/// One line per top-level latency object (`ack_latency`, …) with samples.
fn latency_lines(result: &Value) -> Vec<Line> {
    let Some(map) = result.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(key, value)| key.ends_with("_latency") && value["count"].as_u64() > Some(0))
        .map(|(key, value)| Line {
            label: key.trim_end_matches("_latency").replace('_', " "),
            points: PERCENTILES
                .iter()
                .enumerate()
                .filter_map(|(i, (field, _))| Some((i as f64, value[field].as_f64()?)))
                .collect(),
        })
        .collect()
}

/// The value at a dotted path.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |value, key| value.get(key))
        .filter(|value| !value.is_null())
}

/// Every leaf of the result as (dotted path, value), latency objects kept whole;
/// the timeline and the command line are shown elsewhere.
fn flatten<'a>(prefix: &str, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) if !is_percentiles(value) => {
            for (key, value) in map {
                if prefix.is_empty() && (key == "timeline" || key == "command") {
                    continue;
                }
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        _ => out.push((prefix.to_owned(), value)),
    }
}

fn is_percentiles(value: &Value) -> bool {
    value.get("p50_ms").is_some() && value.get("max_ms").is_some()
}

fn table<'a>(rows: impl Iterator<Item = (String, &'a Value)>) -> String {
    let mut html = String::from("<table>\n");
    for (name, value) in rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&name),
            escape(&show(&name, value))
        );
    }
    html.push_str("</table>\n");
    html
}

/// A value as a reader wants it: percentiles on one line, bytes also in MiB.
fn show(name: &str, value: &Value) -> String {
    if is_percentiles(value) {
        let figures: Vec<String> = PERCENTILES
            .iter()
            .map(|(field, label)| format!("{label} {}", value[field]))
            .collect();
        return format!("{} ms (n = {})", figures.join(" · "), value["count"]);
    }
    match value {
        Value::String(text) => text.clone(),
        Value::Number(n) if name.ends_with("_bytes") => match n.as_f64() {
            Some(bytes) => format!("{n} ({:.1} MiB)", bytes / MIB),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The command line as it could be pasted into a shell.
fn shell_words(command: &[String]) -> String {
    command
        .iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@".contains(&b));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result() -> Value {
        json!({
            "scenario": "pairs",
            "transport": "quic",
            "seconds": 2.0,
            "acked_per_sec": 100.0,
            "ack_latency": {"count": 200, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "p999_ms": 4.0, "max_ms": 5.0},
            "end_to_end_latency": {"count": 0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0},
            "broker": {"durability": "os", "peak_rss_bytes": 10_485_760},
            "errors": {"total": 0, "kinds": {}},
            "timeline": [
                {"t_s": 1.0, "phase": "setup", "acked_per_sec": 0.0, "delivered_per_sec": 0.0, "rss_bytes": 1_048_576},
                {"t_s": 2.0, "phase": "warm-up", "acked_per_sec": 90.0, "delivered_per_sec": 88.0, "ack_p99_ms": 3.5, "rss_bytes": 2_097_152},
                {"t_s": 3.0, "phase": "measure", "acked_per_sec": 100.0, "delivered_per_sec": 99.0, "ack_p99_ms": 3.0, "rss_bytes": 2_097_152},
            ],
        })
    }

    #[test]
    fn the_report_has_plots_headline_and_command() {
        let html = render(&result(), &["quip-loadtest".into(), "<pairs>".into()]);
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<svg").count(), 4, "{html}");
        assert!(html.contains("quip-loadtest &#39;&lt;pairs&gt;&#39;"));
        assert!(html.contains("<td>acked_per_sec</td><td>100.0</td>"));
        assert!(html.contains("10.0 MiB"));
        assert!(html.contains("p50 1.0 · p90 2.0"));
    }

    #[test]
    fn sections_without_data_say_so() {
        let html = render(&json!({"scenario": "idle"}), &[]);
        assert!(!html.contains("<svg"));
        assert!(html.contains("no timeline"));
        assert!(html.contains("RSS unknown"));
    }

    #[test]
    fn rates_far_apart_get_a_chart_each() {
        let mut group = result();
        for point in group["timeline"].as_array_mut().unwrap() {
            point["delivered_per_sec"] = json!(point["acked_per_sec"].as_f64().unwrap() * 99.0);
        }
        let html = render(&group, &[]);
        assert_eq!(html.matches("<svg").count(), 5);
        assert!(html.contains("Deliveries per second"));
    }

    #[test]
    fn unmeasured_phases_become_one_band() {
        let bands = unmeasured_bands(result()["timeline"].as_array().unwrap());
        assert_eq!(bands, vec![(0.0, 2.0)]);
    }
}
