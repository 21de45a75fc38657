//! Runs the `quip-loadtest` binary against a real broker started in this process
//! (127.0.0.1, port 0, temp data dir) for a second per scenario, and checks the
//! JSON result and the HTML report. Checks shapes and that messages flowed, never
//! timings.

use std::path::Path;

use quip_broker::{Broker, Config, Durability};
use serde_json::Value;

/// Short runs: a second of measurement after half a second of warm-up.
const LOAD: [&str; 4] = ["--duration", "1", "--warmup", "0.5"];

struct Harness {
    broker: Broker,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path());
        // The test checks the tool, not the disk.
        config.durability = Durability::Os;
        let broker = Broker::start(config).await.expect("broker starts");
        Harness { broker, dir }
    }

    /// Runs the tool with `scenario` and returns its JSON result and HTML report.
    async fn run(&self, scenario: &[&str]) -> (Value, String) {
        let out = self.dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (json_path, html_path) = (out.join("result.json"), out.join("report.html"));
        let cert = self.dir.path().join("tls").join("cert.pem");
        let http_addr = self.broker.http_addr().expect("the bridge runs");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_quip-loadtest"))
            .env("QUIP_LOG", "warn")
            .args(["--addr", &self.broker.quic_addr().to_string()])
            .args(["--http-addr", &http_addr.to_string()])
            .arg("--cert")
            .arg(&cert)
            .args(["--broker-pid", &std::process::id().to_string()])
            .args(["--durability", "os", "--quiet"])
            .arg("--json")
            .arg(&json_path)
            .arg("--html")
            .arg(&html_path)
            .args(scenario)
            .args(LOAD)
            .output()
            .await
            .expect("the load test runs");
        assert!(
            output.status.success(),
            "{scenario:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
        let result = read_json(&json_path);
        assert_eq!(printed, result, "the file holds what was printed");
        (
            result,
            std::fs::read_to_string(&html_path).expect("HTML written"),
        )
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("JSON written")).expect("valid JSON")
}

/// What every message scenario's result has, and that messages flowed.
fn check_common(result: &Value, scenario: &str, transport: &str) {
    assert_eq!(result["scenario"], scenario);
    assert_eq!(result["transport"], transport);
    for key in [
        "sent",
        "acked",
        "failed",
        "delivered",
        "acked_per_sec",
        "delivered_per_sec",
    ] {
        assert!(result[key].is_number(), "{key} in {result}");
    }
    assert!(
        result["acked"].as_u64() > Some(0),
        "nothing acked: {result}"
    );
    assert!(
        result["delivered"].as_u64() > Some(0),
        "nothing delivered: {result}"
    );
    for latency in ["ack_latency", "end_to_end_latency"] {
        for key in ["count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"] {
            assert!(
                result[latency][key].is_number(),
                "{latency}.{key} in {result}"
            );
        }
    }
    assert!(result["errors"]["total"].is_u64(), "{result}");
    assert_eq!(result["broker"]["durability"], "os");
    assert!(result["command"].is_array());
    let timeline = result["timeline"].as_array().expect("a timeline");
    let point = timeline.first().expect("at least one second sampled");
    for key in ["t_s", "acked_per_sec", "delivered_per_sec", "phase"] {
        assert!(!point[key].is_null(), "{key} in {point}");
    }
    for key in ["ack_p50_ms", "ack_p99_ms", "e2e_p50_ms", "e2e_p99_ms"] {
        assert!(point.get(key).is_some(), "{key} in {point}");
    }
    // This process is the broker: its RSS is sampled through --broker-pid.
    assert!(point["rss_bytes"].as_u64() > Some(0), "{point}");
}

fn check_html(html: &str) {
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg"), "no plot in the report");
    assert!(html.contains("quip-loadtest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_over_quic() {
    let harness = Harness::start().await;
    let (result, html) = harness.run(&["pairs", "--pairs", "2"]).await;
    check_common(&result, "pairs", "quic");
    assert_eq!(result["pairs"], 2);
    check_html(&html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_over_websocket() {
    let harness = Harness::start().await;
    let (result, html) = harness
        .run(&["pairs", "--pairs", "2", "--transport", "ws"])
        .await;
    check_common(&result, "pairs", "ws");
    check_html(&html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_fan_out() {
    let harness = Harness::start().await;
    let (result, html) = harness
        .run(&["group", "--members", "5", "--senders", "2", "--rate", "50"])
        .await;
    check_common(&result, "group", "quic");
    assert_eq!(result["members"], 5);
    assert!(result["deliveries_per_sec"].is_number());
    assert!(result["fan_out"].is_number());
    check_html(&html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_transports() {
    let harness = Harness::start().await;
    let (result, html) = harness
        .run(&["mixed", "--pairs", "2", "--members", "4", "--senders", "2"])
        .await;
    check_common(&result, "mixed", "mixed");
    for transport in ["quic", "ws"] {
        let part = &result["by_transport"][transport];
        assert!(part["acked"].as_u64() > Some(0), "{transport}: {part}");
        assert!(part["delivered"].as_u64() > Some(0), "{transport}: {part}");
    }
    for part in ["pairs", "group"] {
        assert!(result["parts"][part]["acked"].as_u64() > Some(0), "{part}");
    }
    check_html(&html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_with_reconnect_churn() {
    let harness = Harness::start().await;
    let (result, html) = harness
        .run(&[
            "mixed",
            "--pairs",
            "2",
            "--members",
            "4",
            "--senders",
            "2",
            "--rate",
            "100",
            "--churn-every",
            "0.1",
        ])
        .await;
    check_common(&result, "mixed", "mixed");
    let churn = &result["churn"];
    assert!(churn["events"].as_u64() > Some(2), "{churn}");
    assert_eq!(churn["failed"], 0, "{churn}");
    // Replays after a resume are not counted twice, and nothing is lost.
    let delivery = &result["delivery"];
    assert_eq!(delivery["missing"], 0, "{delivery}");
    assert_eq!(delivery["tracked_receivers"], 4, "{delivery}");
    assert!(delivery["expected"].as_u64() > Some(0), "{delivery}");
    assert_eq!(
        delivery["expected"], delivery["delivered_unique"],
        "{delivery}"
    );
    assert_eq!(result["errors"]["total"], 0, "{}", result["errors"]);
    assert!(result["soak"]["rss_fit_samples"].is_u64());
    check_html(&html);
}
