//! The broker as the browser bridge's [`Backend`], in-process.
//!
//! A bridge session behaves like a QUIC connection with one lane: it is registered in
//! the router, catches up from the device's cursors, and then gets live deliveries,
//! all written by the same [`LaneWriter`](crate::lane::LaneWriter) as QUIC lanes,
//! only into a bounded channel instead of a stream. Requests go through the same
//! [`dispatch`](crate::dispatch) as QUIC requests.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quip_bridge_ws::backend::ConnectionSlot;
use quip_bridge_ws::{
    Backend, BackendFuture, BackendSession, ByteStream, Identity, Readiness, ReadinessCheck,
    RequestFuture, SessionRequests,
};
use quip_protocol::{ErrorCode, client_frame, pb, server_frame};
use tokio::sync::{mpsc, oneshot};

use crate::context::BrokerContext;
use crate::dispatch::{Requester, authenticate, dispatch, hello_ok};
use crate::lane::LaneWriter;
use crate::limits::ConnectionLimiter;
use crate::limits::connections::ConnectionLimits;
use crate::router::{Push, Pushed, Session, SessionLink};
use crate::service::ServiceError;

#[derive(Debug)]
pub struct BrokerBackend {
    ctx: Arc<BrokerContext>,
}

impl BrokerBackend {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        Self { ctx }
    }

    /// The wire form of an error the bridge answers with, counted in the metrics.
    /// (Errors from `dispatch` and `authenticate` are counted there.)
    fn refuse(&self, error: ServiceError) -> pb::Error {
        self.ctx.metrics.error(error.code());
        error.to_pb()
    }

    /// The same for an error built here.
    fn refuse_with(&self, code: ErrorCode, message: &str) -> pb::Error {
        self.ctx.metrics.error(code);
        pb::Error::new(code, message)
    }
}

/// How long `GET /ready` waits for the store's answer.
const READY_STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// A bridge session's link: pushes go into the same bounded channel of frames as its
/// lane (a browser has no datagrams), and closing tells the bridge why, once.
#[derive(Debug)]
struct ChannelLink {
    frames: mpsc::Sender<Bytes>,
    closed: Mutex<Option<oneshot::Sender<pb::Error>>>,
}

impl SessionLink for ChannelLink {
    fn push(&self, frame: &Bytes, _how: Push) -> Pushed {
        match self.frames.try_send(frame.clone()) {
            Ok(()) => Pushed::Stream,
            Err(_) => Pushed::Full,
        }
    }

    fn transport(&self) -> &'static str {
        "websocket"
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        let sender = self.closed.lock().ok().and_then(|mut slot| slot.take());
        if let Some(sender) = sender {
            let _ = sender.send(pb::Error::new(code, reason));
        }
    }
}

/// The wire form of an error already counted (by `authenticate`).
fn wire(error: ServiceError) -> pb::Error {
    error.to_pb()
}

impl Backend for BrokerBackend {
    /// WebSockets count against the same connection limits as QUIC connections.
    fn admit(&self, peer: IpAddr) -> Result<ConnectionSlot, pb::Error> {
        let limits = ConnectionLimits::of(&self.ctx.config);
        match self.ctx.limits.connections().try_acquire(peer, limits) {
            Ok(slot) => Ok(Box::new(slot)),
            Err(refused) => {
                tracing::debug!(%peer, %refused, "refusing a WebSocket");
                Err(refused.to_pb())
            }
        }
    }

    fn authenticate(&self, hello: pb::Hello, peer: IpAddr) -> BackendFuture<'_, pb::HelloOk> {
        Box::pin(async move {
            if !quip_protocol::ids::is_device_id(&hello.device_id) {
                return Err(self.refuse_with(
                    ErrorCode::InvalidArgument,
                    "device_id must be 1 to 64 of [A-Za-z0-9_.-]",
                ));
            }
            let authenticated = authenticate(&self.ctx, &hello, Some(peer))
                .await
                .map_err(wire)?;
            // A token check (`/api/me`) is a request like any other REST one.
            if matches!(hello.auth, Some(pb::hello::Auth::AccessToken(_))) {
                self.ctx
                    .limits
                    .user_request(&authenticated.user.user_id)
                    .map_err(|retry| self.refuse(ServiceError::rate_limited(retry)))?;
            }
            Ok(hello_ok(&self.ctx, authenticated, &hello.device_id, 1))
        })
    }

    fn identify<'a>(&'a self, access_token: &'a str) -> BackendFuture<'a, Identity> {
        Box::pin(async move {
            let claims = self
                .ctx
                .auth
                .issuer()
                .verify_access(access_token)
                .map_err(|error| self.refuse(error))?;
            // Also refuses users who were disabled or deleted since the token was issued.
            let authenticated = self
                .ctx
                .auth
                .authenticate_token(access_token, &claims.did)
                .await
                .map_err(|error| self.refuse(error))?;
            Ok(Identity {
                user_id: authenticated.user.user_id,
                device_id: claims.did,
            })
        })
    }

    fn request<'a>(
        &'a self,
        identity: &'a Identity,
        body: client_frame::Body,
    ) -> BackendFuture<'a, server_frame::Body> {
        Box::pin(async move {
            let requester = Arc::new(Requester {
                user_id: identity.user_id.clone(),
                device_id: identity.device_id.clone(),
                session_id: 0,
                // REST: limited per user (`check_rate`).
                limiter: None,
            });
            let frame = pb::ClientFrame {
                req_id: 1,
                body: Some(body),
            };
            let (_, body) = dispatch(&self.ctx, &requester, frame).await.await;
            match body {
                server_frame::Body::Error(error) => Err(error),
                body => Ok(body),
            }
        })
    }

    fn upload<'a>(
        &'a self,
        identity: &'a Identity,
        upload: pb::FileUpload,
        body: ByteStream,
    ) -> BackendFuture<'a, pb::FileInfo> {
        Box::pin(async move {
            self.ctx
                .limits
                .user_request(&identity.user_id)
                .map_err(|retry| self.refuse(ServiceError::rate_limited(retry)))?;
            self.ctx
                .files
                .upload(&identity.user_id, upload, body)
                .await
                .map_err(|error| self.refuse(error))
        })
    }

    fn download<'a>(
        &'a self,
        identity: &'a Identity,
        request: pb::FileDownload,
    ) -> BackendFuture<'a, (pb::FileHeader, ByteStream)> {
        Box::pin(async move {
            self.ctx
                .limits
                .user_request(&identity.user_id)
                .map_err(|retry| self.refuse(ServiceError::rate_limited(retry)))?;
            self.ctx
                .files
                .download(&identity.user_id, &request)
                .await
                .map_err(|error| self.refuse(error))
        })
    }

    fn ready(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>> {
        Box::pin(async move {
            let ctx = &self.ctx;
            // A cheap read: it goes to Redis in cluster mode, to sled otherwise.
            let store = match tokio::time::timeout(
                READY_STORE_TIMEOUT,
                ctx.store.last_seq("readiness-probe"),
            )
            .await
            {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "readiness: the store failed");
                    Some("the store failed to answer a read".to_owned())
                }
                Err(_) => Some(format!(
                    "the store did not answer within {} ms",
                    READY_STORE_TIMEOUT.as_millis()
                )),
            };
            let mut checks = vec![ReadinessCheck {
                name: "store".into(),
                problem: store,
            }];
            if ctx.cluster.spans_nodes() {
                checks.push(ReadinessCheck {
                    name: "cluster".into(),
                    problem: (!ctx.cluster.is_connected())
                        .then(|| "the link to the other nodes (Redis pub/sub) is down".to_owned()),
                });
            }
            Readiness { checks }
        })
    }

    fn metrics(&self) -> String {
        self.ctx.metrics.render(&self.ctx)
    }

    fn open_session(&self, hello: pb::Hello) -> BackendFuture<'_, BackendSession> {
        Box::pin(async move {
            let ctx = &self.ctx;
            let device_id = hello.device_id.clone();
            if !quip_protocol::ids::is_device_id(&device_id) {
                return Err(self.refuse_with(ErrorCode::InvalidArgument, "malformed device_id"));
            }
            // An access token (the socket's): no login limit applies.
            let authenticated = authenticate(ctx, &hello, None).await.map_err(wire)?;
            let user_id = authenticated.user.user_id.clone();
            let (closed_tx, closed) = oneshot::channel();
            // Room for the lane's queue and the control pushes, as a QUIC session has.
            let (frames_tx, frames) =
                mpsc::channel::<Bytes>(ctx.config.lane_queue_len + ctx.config.control_queue_len);
            let (session, mut lanes) = ctx.router.register(
                &user_id,
                &device_id,
                1,
                ctx.config.lane_queue_len,
                Box::new(ChannelLink {
                    frames: frames_tx.clone(),
                    closed: Mutex::new(Some(closed_tx)),
                }),
            );
            let requester = Arc::new(Requester {
                user_id: user_id.clone(),
                device_id: device_id.clone(),
                session_id: session.id,
                limiter: Some(Arc::new(ConnectionLimiter::new(&ctx.rate_limits))),
            });
            if let Err(error) = ctx.auth.still_valid(&authenticated, &device_id).await {
                ctx.router.unregister(&session);
                return Err(self.refuse(error));
            }
            let sync = match ctx
                .chat
                .sync_points(requester.caller(), &hello.cursors)
                .await
            {
                Ok(sync) => sync,
                Err(error) => {
                    ctx.router.unregister(&session);
                    return Err(self.refuse(error));
                }
            };
            if let Err(error) = ctx
                .account
                .session_opened(&user_id, &device_id, &hello.client_version, "websocket")
                .await
            {
                tracing::warn!(%error, "cannot record the device");
            }
            let hello_ok = hello_ok(ctx, authenticated, &device_id, 1);
            let lane = LaneWriter {
                lane: 0,
                send: frames_tx,
                items: lanes.remove(0),
                chat: ctx.chat.clone(),
                user_id: user_id.clone(),
                sync,
                sync_batch: ctx.config.sync_batch,
            };
            tokio::spawn(async move {
                if let Err(error) = lane.run().await {
                    tracing::debug!(%error, "bridge lane ended");
                }
            });
            Ok(BackendSession {
                hello_ok,
                requests: Box::new(BridgeRequests {
                    ctx: ctx.clone(),
                    requester,
                    session,
                }),
                max_inflight: ctx.config.max_inflight_per_connection,
                frames,
                closed,
            })
        })
    }
}

/// The requests of one browser session, run by the bridge's relay task. Dropping it
/// (the socket closed) ends the session.
#[derive(Debug)]
struct BridgeRequests {
    ctx: Arc<BrokerContext>,
    requester: Arc<Requester>,
    session: Arc<Session>,
}

impl SessionRequests for BridgeRequests {
    fn start(
        &self,
        frame: pb::ClientFrame,
    ) -> Pin<Box<dyn Future<Output = RequestFuture> + Send + '_>> {
        Box::pin(dispatch(&self.ctx, &self.requester, frame))
    }
}

impl Drop for BridgeRequests {
    fn drop(&mut self) {
        self.ctx.router.unregister(&self.session);
        tracing::debug!(user = %self.session.user_id, "bridge session ended");
    }
}
