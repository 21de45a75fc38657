//! Operating a broker: `/health`, `/ready` and `/metrics` on the HTTP listener, JSON
//! logs, and production mode refusing generated credentials.

use std::collections::HashMap;
use std::time::Duration;

use quip_broker::quic::tls::TlsIdentity;
use quip_broker::{Broker, Config, StartError};
use quip_protocol::ErrorCode;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::common::redis::RedisServer;
use crate::common::web::{self, Web};
use crate::common::{PASSWORD, TestBroker, WAIT, messages};

/// Every sample of a scrape, keyed by the series as exposed (`name{labels}`).
type Samples = HashMap<String, f64>;

async fn scrape(web: &Web) -> Samples {
    let response = web
        .http
        .get(format!("{}/metrics", web.base))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "a complete exposition:\n{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Scrapes until `done` holds (what other threads count lands a moment after the
/// client sees its effect); bounded by WAIT.
async fn scrape_until(web: &Web, done: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let samples = scrape(web).await;
        if done(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never got there: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn get(samples: &Samples, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} is exposed: {samples:#?}"))
}

async fn ready(web: &Web) -> (u16, Value) {
    web.call(Method::GET, "/ready", None, None).await
}

#[tokio::test]
async fn health_ready_and_metrics_follow_the_traffic() {
    let broker = web::start(|_| {}).await;
    let web = Web::new(&broker);

    let (status, body) = web.call(Method::GET, "/health", None, None).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    let (status, body) = ready(&web).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "ready", "checks": {"store": "ok"}}));

    let before = scrape(&web).await;
    assert_eq!(get(&before, "quip_messages_in_total"), 0.0);
    assert_eq!(get(&before, "quip_ack_latency_seconds_count"), 0.0);
    assert_eq!(get(&before, r#"quip_connections{transport="quic"}"#), 0.0);
    assert!(
        !before
            .keys()
            .any(|series| series.starts_with("quip_cluster_")),
        "no cluster metrics on a single node"
    );

    // Two devices over QUIC, three messages from one to the other.
    let alice = broker.user("alice", "alice-phone").await;
    let bob = broker.user("bob", "bob-phone").await;
    let bob_id = bob.user_id().unwrap();
    for text in ["one", "two", "three"] {
        alice.send_text(&bob_id, text).await.unwrap();
    }
    messages(&bob, 3).await;
    // A browser.
    let carol = web.account("carol").await;
    let _socket = web.synced_socket(&carol).await;
    // Bad requests: a message to oneself over QUIC, a forged token over REST.
    let own_id = alice.user_id().unwrap();
    let refused = alice.send_text(&own_id, "me").await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument));
    let (status, _) = web
        .call(Method::GET, "/api/me", Some("forged.access.token"), None)
        .await;
    assert_eq!(status, 401);

    // Deliveries are counted by the fan-out thread, just after it hands them over.
    let after = scrape_until(&web, |s| get(s, "quip_messages_out_total") >= 3.0).await;
    assert_eq!(get(&after, "quip_messages_in_total"), 3.0);
    assert_eq!(get(&after, "quip_messages_out_total"), 3.0);
    assert_eq!(get(&after, "quip_ack_latency_seconds_count"), 3.0);
    assert!(get(&after, "quip_ack_latency_seconds_sum") > 0.0);
    assert_eq!(
        get(&after, r#"quip_ack_latency_seconds_bucket{le="+Inf"}"#),
        3.0
    );
    assert_eq!(get(&after, r#"quip_connections{transport="quic"}"#), 2.0);
    assert_eq!(
        get(&after, r#"quip_connections{transport="websocket"}"#),
        1.0
    );
    assert_eq!(
        get(&after, r#"quip_errors_total{code="INVALID_ARGUMENT"}"#),
        1.0
    );
    assert_eq!(
        get(&after, r#"quip_errors_total{code="TOKEN_INVALID"}"#),
        1.0
    );
    assert_eq!(get(&after, r#"quip_errors_total{code="NOT_FOUND"}"#), 0.0);
    // The store committed the three messages, in one or more batches.
    assert!(get(&after, "quip_store_appends_total") >= 3.0);
    assert!(get(&after, "quip_store_flushes_total") >= 1.0);
    let commits = get(&after, "quip_store_batch_appends_count");
    assert!(commits >= 1.0, "{after:#?}");
    assert_eq!(get(&after, "quip_store_batch_appends_sum"), 3.0);
    for gauge in ["quip_store_queue_length", "quip_fan_out_queue_length"] {
        assert!(get(&after, gauge) >= 0.0);
    }
    assert_eq!(get(&after, "quip_slow_consumer_closes_total"), 0.0);
    assert_eq!(
        get(&after, r#"quip_rate_limited_total{kind="request"}"#),
        0.0
    );
}

#[tokio::test]
async fn refusals_are_counted_by_limit_and_code() {
    // One wrong password delays the next attempt by a minute.
    let broker = web::start(|c| {
        c.login_failures_before_delay = 1;
        c.login_delay_base_ms = 60_000;
        c.login_delay_max_ms = 60_000;
    })
    .await;
    let web = Web::new(&broker);
    web.account("dave").await;
    let (status, _) = web.login_with("dave", "not the password", "dave-web").await;
    assert_eq!(status, 401);
    let (status, body) = web.login_with("dave", PASSWORD, "dave-web").await;
    assert_eq!(status, 429, "{body}");

    let samples = scrape(&web).await;
    assert_eq!(
        get(&samples, r#"quip_rate_limited_total{kind="login_delay"}"#),
        1.0
    );
    assert_eq!(
        get(&samples, r#"quip_rate_limited_total{kind="login_address"}"#),
        0.0
    );
    assert_eq!(
        get(&samples, r#"quip_errors_total{code="RATE_LIMITED"}"#),
        1.0
    );
    assert_eq!(
        get(&samples, r#"quip_errors_total{code="INVALID_CREDENTIALS"}"#),
        1.0
    );
}

#[tokio::test]
async fn ready_names_what_is_down_in_cluster_mode() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let broker = TestBroker::start_with(|c| {
        c.redis = Some(url);
        c.node_id = Some("ops-node".into());
    })
    .await;
    let web = Web::new(&broker);
    let (status, body) = ready(&web).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"], json!({"store": "ok", "cluster": "ok"}));
    let samples = scrape(&web).await;
    assert_eq!(get(&samples, "quip_cluster_connected"), 1.0);
    assert_eq!(get(&samples, "quip_cluster_publish_failures_total"), 0.0);

    redis.stop();
    let body = ready_until(&web, 503).await;
    assert_eq!(body["status"], "unavailable", "{body}");
    let down = body["down"].as_array().unwrap();
    assert!(down.contains(&json!("store")), "{body}");
    assert_ne!(body["checks"]["store"], "ok", "{body}");
    // Liveness does not depend on Redis: the process still serves.
    let (status, _) = web.call(Method::GET, "/health", None, None).await;
    assert_eq!(status, 200);

    redis.restart();
    let body = ready_until(&web, 200).await;
    assert_eq!(body["checks"], json!({"store": "ok", "cluster": "ok"}));
}

/// Polls `/ready` until it answers `status` (Redis and the cluster link take a moment
/// to notice a change); bounded by WAIT.
async fn ready_until(web: &Web, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (got, body) = ready(web).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready stayed at {got}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn production_mode_refuses_generated_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        production: true,
        ..Config::for_tests(dir.path())
    };
    // A JWT secret is configured, but no certificate.
    let refused = Broker::start(config.clone()).await.unwrap_err();
    assert!(matches!(refused, StartError::Production(_)), "{refused}");
    assert!(refused.to_string().contains("--cert"), "{refused}");
    assert!(!refused.to_string().contains("JWT"), "{refused}");
    // Neither: both are named, and nothing was generated.
    config.jwt_secret = None;
    let refused = Broker::start(config.clone()).await.unwrap_err();
    let why = refused.to_string();
    assert!(
        why.contains("--cert") && why.contains("JWT secret"),
        "{why}"
    );
    assert!(!dir.path().join("tls").exists());
    assert!(!dir.path().join("jwt.key").exists());

    // A certificate from elsewhere and a configured secret: it starts.
    let issued = tempfile::tempdir().unwrap();
    TlsIdentity::load_or_generate(None, None, issued.path()).unwrap();
    config.cert = Some(issued.path().join("tls/cert.pem"));
    config.key = Some(issued.path().join("tls/key.pem"));
    config.jwt_secret = Some("production-secret-production-secret".into());
    let broker = Broker::start(config)
        .await
        .expect("production broker starts");
    broker.shutdown().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_quip-broker"))
        .args([
            "--log-format",
            "json",
            "--no-http",
            "--quic-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("QUIP_JWT_SECRET", "json-logs-secret-json-logs-secret")
        .env("QUIP_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("broker binary starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut logged = Vec::new();
    let listening = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // The one plain line is the banner with the certificate fingerprint.
            if line.starts_with("quip broker on quic://") {
                continue;
            }
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if event["message"] == "quip broker listening" {
                return event;
            }
            logged.push(event);
        }
        panic!("the broker exited; it logged {logged:#?}");
    })
    .await
    .expect("the broker logs that it listens");
    assert_eq!(listening["level"], "INFO", "{listening}");
    assert!(listening["timestamp"].is_string(), "{listening}");
    // Event fields sit at the top level, next to the message.
    assert!(
        listening["quic_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{listening}"
    );
    child.kill().await.unwrap();
}
