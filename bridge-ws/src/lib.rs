//! `quip-bridge-ws`: how browsers reach Quip. It speaks SimpleIM's contract
//! (`seeds/000_*`): a REST API with `{code, message, data}` responses, a WebSocket with
//! SimpleIM's JSON frames and type codes, and it serves the web client. See
//! `CONTRACT.md`.
//!
//! The bridge never imports the broker: it talks to a [`Backend`], which the broker
//! implements in-process (and an SDK-based gateway could implement remotely).
//!
//! - [`backend`]: the `Backend` trait: authenticate, identify, request, open a session.
//! - [`rest`]: the REST handlers.
//! - [`ws`]: the WebSocket session.
//! - [`web`]: the embedded web client.
//! - [`openapi`]: the OpenAPI document.
//! - [`ops`]: for operators: readiness and metrics.

pub mod backend;
pub mod openapi;
pub mod ops;
pub mod rest;
pub mod web;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

pub use backend::{
    Backend, BackendFuture, BackendSession, ByteStream, Identity, Readiness, ReadinessCheck,
    RequestFuture, SessionRequests,
};

/// Limits and public addresses of the bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Largest WebSocket message; bigger ones close the connection with 1009.
    pub ws_max_message_bytes: usize,
    /// A WebSocket silent for this long is closed.
    pub ws_idle_timeout: Duration,
    /// How often the server pings idle WebSockets.
    pub ws_ping_interval: Duration,
    /// Browser origins allowed to open WebSockets; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Largest REST request body (JSON); file uploads have their own limit.
    pub max_body_bytes: usize,
    /// Largest file upload (`POST /api/files`): a bigger `Content-Length` is refused
    /// before any byte is read. The broker enforces the same limit while streaming.
    pub max_file_bytes: u64,
    /// The QUIC port, to build `quic_url` in login responses.
    pub quic_port: u16,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            ws_max_message_bytes: 64 * 1024,
            ws_idle_timeout: Duration::from_secs(75),
            ws_ping_interval: Duration::from_secs(30),
            allowed_origins: Vec::new(),
            max_body_bytes: 1 << 20,
            max_file_bytes: 100 << 20,
            quic_port: 4433,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct BridgeState {
    pub backend: Arc<dyn Backend>,
    pub config: BridgeConfig,
}

/// The bridge's HTTP routes: REST under `/api`, the WebSocket at `/ws`, `/health`,
/// `/ready` and `/metrics`, and the web client at `/`.
pub fn router(backend: Arc<dyn Backend>, config: BridgeConfig) -> axum::Router {
    let max_body = config.max_body_bytes;
    let state = Arc::new(BridgeState { backend, config });
    rest::routes()
        .merge(ops::routes())
        .route("/ws", axum::routing::get(ws::upgrade))
        .fallback(web::serve)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}
