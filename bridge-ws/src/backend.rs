//! What the bridge needs from a broker, as protocol frames. The broker implements it
//! in-process; nothing here knows how messages are stored or routed.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use bytes::Bytes;
use quip_protocol::{client_frame, pb, server_frame};
use tokio::sync::{mpsc, oneshot};

pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, pb::Error>> + Send + 'a>>;

/// The bytes of a file in transfer, in chunks as they arrive (upload) or are read
/// from disk (download); never the whole file in memory.
pub type ByteStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>>;

/// An authenticated device making REST requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub device_id: String,
}

/// A request in progress: resolves with its `req_id` and the answer's body.
pub type RequestFuture = Pin<Box<dyn Future<Output = (u64, server_frame::Body)> + Send>>;

/// The requests of one live session.
pub trait SessionRequests: Send + Sync + std::fmt::Debug {
    /// Starts a request. Awaiting this only enqueues it (a send takes its place in
    /// the conversation here, so pipelined sends keep their order); the returned
    /// future runs it. The relay runs up to [`BackendSession::max_inflight`] at once,
    /// on the socket's own task: no task or channel per session for requests.
    fn start(
        &self,
        frame: pb::ClientFrame,
    ) -> Pin<Box<dyn Future<Output = RequestFuture> + Send + '_>>;
}

/// A live session, like a QUIC connection: requests go in, and everything the broker
/// writes (deliveries, `ResumeFrom`, `SyncDone`) comes out as encoded,
/// length-delimited `ServerFrame`s, in order per conversation. Dropping it ends the
/// session.
#[derive(Debug)]
pub struct BackendSession {
    pub hello_ok: pb::HelloOk,
    pub requests: Box<dyn SessionRequests>,
    /// Requests in progress at once; the relay stops reading the socket at this many.
    pub max_inflight: usize,
    /// Bounded: a bridge that stops reading makes the broker close the session as a
    /// slow consumer.
    pub frames: mpsc::Receiver<Bytes>,
    /// Resolves with the reason when the broker ends the session (slow consumer, the
    /// same device connected again, shutdown).
    pub closed: oneshot::Receiver<pb::Error>,
}

/// A WebSocket's place under the broker's connection limits: held for as long as the
/// socket is open, and dropping it gives the place back.
pub type ConnectionSlot = Box<dyn std::any::Any + Send + Sync>;

/// What `GET /ready` reports: each dependency the broker needs to serve, and what is
/// wrong with it, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    pub checks: Vec<ReadinessCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessCheck {
    /// What was checked, e.g. "store" or "cluster".
    pub name: String,
    /// `None` when it works; else why not, for operators.
    pub problem: Option<String>,
}

impl Readiness {
    /// Ready when every check passed.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|check| check.problem.is_none())
    }
}

pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Admits a new WebSocket from `peer` under the broker's connection limits (in all,
    /// and per client address, shared with its other transports), before anything else
    /// is done for it. Refusals are TOO_MANY_CONNECTIONS. The default admits everyone.
    fn admit(&self, peer: IpAddr) -> Result<ConnectionSlot, pb::Error> {
        let _ = peer;
        Ok(Box::new(()))
    }

    /// Runs a `Hello` without opening a session: registration, login, refresh, or an
    /// access-token check. Returns what a QUIC client would get.
    ///
    /// `peer` is the client's address, for per-address login rate limits.
    fn authenticate(&self, hello: pb::Hello, peer: IpAddr) -> BackendFuture<'_, pb::HelloOk>;

    /// Checks an access token and says whose it is.
    fn identify<'a>(&'a self, access_token: &'a str) -> BackendFuture<'a, Identity>;

    /// One request on behalf of `identity` (REST).
    fn request<'a>(
        &'a self,
        identity: &'a Identity,
        body: client_frame::Body,
    ) -> BackendFuture<'a, server_frame::Body>;

    /// Stores an upload of `identity` streamed from `body`. Fails with FILE_TOO_LARGE
    /// as soon as the body goes over the broker's limit; a body that ends in an error
    /// (the client went away) stores nothing.
    fn upload<'a>(
        &'a self,
        identity: &'a Identity,
        upload: pb::FileUpload,
        body: ByteStream,
    ) -> BackendFuture<'a, pb::FileInfo>;

    /// Opens a file (or its thumbnail, or a range of it) for `identity`, if they may
    /// read it: the header, then the bytes.
    fn download<'a>(
        &'a self,
        identity: &'a Identity,
        request: pb::FileDownload,
    ) -> BackendFuture<'a, (pb::FileHeader, ByteStream)>;

    /// Opens a session for a `Hello` carrying an access token: it syncs everything the
    /// device has not reported delivered, then delivers live.
    fn open_session(&self, hello: pb::Hello) -> BackendFuture<'_, BackendSession>;

    /// Whether the broker can serve requests now (`GET /ready`). Resolves within a
    /// short bound even when a dependency hangs.
    fn ready(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>>;

    /// The broker's metrics in the OpenMetrics text format, which Prometheus scrapes
    /// (`GET /metrics`).
    fn metrics(&self) -> String;
}
