//! Routes for operators rather than users: `GET /ready` for load balancers and
//! orchestrators, `GET /metrics` for Prometheus. (Liveness, `GET /health`, is with the
//! SimpleIM routes in `rest.rs`: it answers whenever this listener serves.)
//!
//! Neither needs a token: a probe has none. Neither says anything about users.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::BridgeState;

/// Every route here, for the OpenAPI completeness test.
pub const ROUTES: &[(&str, &str)] = &[("get", "/ready"), ("get", "/metrics")];

/// The content type of `/metrics`: OpenMetrics text, which Prometheus scrapes natively.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn routes() -> Router<Arc<BridgeState>> {
    Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// Readiness: 200 when the broker can serve (its store answers a read and, in a
/// cluster, its link to the other nodes is up), else 503 naming what is down.
#[utoipa::path(get, path = "/ready",
    responses((status = 200, description = "{status: \"ready\", checks: {store: \"ok\", cluster: \"ok\"}} (cluster only in cluster mode)"),
              (status = 503, description = "{status: \"unavailable\", down: [\"store\"], checks: {store: \"<what is wrong>\", …}}")))]
pub async fn ready(State(state): State<Arc<BridgeState>>) -> Response {
    let readiness = state.backend.ready().await;
    let mut checks = Map::new();
    let mut down = Vec::new();
    for check in &readiness.checks {
        let value = match &check.problem {
            None => "ok".to_owned(),
            Some(problem) => {
                down.push(Value::from(check.name.clone()));
                problem.clone()
            }
        };
        checks.insert(check.name.clone(), Value::from(value));
    }
    let (status, body) = if readiness.is_ready() {
        (StatusCode::OK, json!({"status": "ready", "checks": checks}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "down": down, "checks": checks}),
        )
    };
    (status, axum::Json(body)).into_response()
}

/// Metrics in the OpenMetrics text format (connections, messages in and out, ACK
/// latency, store batches, queues, errors by code, rate limits).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "OpenMetrics text exposition (Prometheus scrapes it); metric names start with quip_",
               content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<Arc<BridgeState>>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.backend.metrics(),
    )
        .into_response()
}
