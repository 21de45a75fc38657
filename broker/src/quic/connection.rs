//! One QUIC connection: Hello on the control stream, then requests until it ends.
//!
//! Requests are processed concurrently (up to `max_inflight_per_connection`) and
//! answered as they complete, each echoing its `req_id`. Sends are enqueued to the
//! store in the order they arrive, so pipelined sends get seqs in request order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use quip_protocol::{ErrorCode, FrameError, client_frame, lane_for, pb, server_frame};
use tracing::Instrument;

use super::frames::{FrameReader, FrameWriter, ReadError};
use crate::context::BrokerContext;
use crate::dispatch::{Pending, Requester, authenticate, dispatch, hello_ok, response};
use crate::lane::LaneWriter;
use crate::limits::ConnectionLimiter;
use crate::queue::{QueueReceiver, QueueSender};
use crate::router::{Push, Pushed, Session, SessionLink};
use crate::service::{Caller, ServiceError};
use crate::shutdown::ShutdownGuard;

/// How long a final error frame may take to reach the peer before we close anyway.
const FINAL_FRAME_WAIT: Duration = Duration::from_millis(500);

/// A session's link to its QUIC connection: ephemeral pushes as datagrams when the
/// peer takes them and they fit, everything else through a bounded queue that the
/// control loop writes to the control stream. Closing closes the connection with a
/// Quip error code as the application close code.
#[derive(Debug)]
struct QuicLink {
    connection: quinn::Connection,
    control: QueueSender<bytes::Bytes>,
    datagrams: bool,
}

impl SessionLink for QuicLink {
    fn push(&self, frame: &bytes::Bytes, how: Push) -> Pushed {
        if how == Push::Ephemeral
            && self.datagrams
            && self
                .connection
                .max_datagram_size()
                .is_some_and(|max| frame.len() <= max)
            && self.connection.send_datagram(frame.clone()).is_ok()
        {
            return Pushed::Datagram;
        }
        match self.control.try_send(frame.clone()) {
            Ok(()) => Pushed::Stream,
            Err(_) => Pushed::Full,
        }
    }

    fn close(&self, code: ErrorCode, reason: &str) {
        self.connection
            .close(code.close_code().into(), reason.as_bytes());
    }

    fn transport(&self) -> &'static str {
        "quic"
    }
}

/// Serves one accepted connection until it ends.
pub(crate) async fn serve(
    connection: quinn::Connection,
    ctx: Arc<BrokerContext>,
    guard: ShutdownGuard,
) {
    let span = tracing::info_span!(
        "conn",
        remote = %connection.remote_address(),
        user = tracing::field::Empty,
        device = tracing::field::Empty,
    );
    async move {
        tracing::debug!("connected");
        match run(&connection, &ctx, &guard).await {
            Ok(()) => tracing::debug!("closed"),
            Err(reason) => tracing::debug!(%reason, "ended"),
        }
    }
    .instrument(span)
    .await;
}

async fn run(
    connection: &quinn::Connection,
    ctx: &Arc<BrokerContext>,
    guard: &ShutdownGuard,
) -> Result<(), String> {
    // Boxed: the Hello phase's state is large and needed once, while this task lives
    // as long as the connection.
    let Established {
        mut reader,
        mut writer,
        session,
        lane_receivers,
        sync_points,
        pushes,
    } = Box::pin(establish(connection, ctx)).await?;
    let result = match open_lanes(
        connection,
        ctx,
        &session,
        lane_receivers,
        sync_points,
        guard,
    )
    .await
    {
        Ok(()) => {
            let mut control = Control {
                connection,
                ctx,
                session: &session,
                reader: &mut reader,
                writer: &mut writer,
            };
            control.run(pushes).await
        }
        Err(error) => Err(error),
    };
    ctx.router.unregister(&session);
    result
}

/// An authenticated, registered session whose `HelloOk` went out.
struct Established {
    reader: FrameReader,
    writer: FrameWriter,
    session: Arc<Session>,
    lane_receivers: Vec<crate::queue::QueueReceiver<crate::router::LaneItem>>,
    sync_points: Vec<crate::service::SyncPoint>,
    /// Pushes for the control stream (see `QuicLink`).
    pushes: QueueReceiver<bytes::Bytes>,
}

/// The control stream and the Hello: authenticates, registers the session, reads
/// where each conversation stands and answers `HelloOk`.
async fn establish(
    connection: &quinn::Connection,
    ctx: &Arc<BrokerContext>,
) -> Result<Established, String> {
    let config = &ctx.config;
    let hello_timeout = Duration::from_millis(config.hello_timeout_ms);
    let deadline = tokio::time::Instant::now() + hello_timeout;

    let (send, recv) = match tokio::time::timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => {
            close(
                connection,
                ErrorCode::Unauthenticated,
                "no control stream in time",
            );
            return Err("hello timeout".into());
        }
    };
    let mut reader = FrameReader::new(recv, config.max_frame_bytes);
    let mut writer = FrameWriter::new(send);

    let first = match tokio::time::timeout_at(deadline, reader.next::<pb::ClientFrame>()).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return Err("control stream ended before Hello".into()),
        Ok(Err(error)) => return Err(refuse_read_error(connection, &mut writer, error).await),
        Err(_) => {
            close(connection, ErrorCode::Unauthenticated, "no Hello in time");
            return Err("hello timeout".into());
        }
    };
    let req_id = first.req_id;
    let Some(client_frame::Body::Hello(hello)) = first.body else {
        let error = ServiceError::new(ErrorCode::Unauthenticated, "the first frame must be Hello");
        return Err(refuse(connection, &mut writer, req_id, error).await);
    };
    if !quip_protocol::ids::is_device_id(&hello.device_id) {
        let error = ServiceError::invalid("device_id must be 1 to 64 of [A-Za-z0-9_.-]");
        return Err(refuse(connection, &mut writer, req_id, error).await);
    }
    let peer = connection.remote_address().ip();
    let authenticated = match authenticate(ctx, &hello, Some(peer)).await {
        Ok(authenticated) => authenticated,
        Err(error) => return Err(refuse(connection, &mut writer, req_id, error).await),
    };
    let user_id = authenticated.user.user_id.clone();
    let device_id = hello.device_id.clone();
    let span = tracing::Span::current();
    span.record("user", user_id.as_str());
    span.record("device", device_id.as_str());

    let lanes = match hello.lanes {
        0 => config.default_lanes,
        n => n.min(config.max_lanes),
    };
    // Register before reading where each conversation ends, so that a message
    // committed in between is either delivered live or found by the catch-up.
    let (control, pushes) = crate::queue::bounded(config.control_queue_len);
    let (session, lane_receivers) = ctx.router.register(
        &user_id,
        &device_id,
        lanes,
        config.lane_queue_len,
        Box::new(QuicLink {
            connection: connection.clone(),
            control,
            datagrams: config.datagrams,
        }),
    );
    let caller = Caller {
        user_id: &user_id,
        device_id: &device_id,
        session_id: session.id,
    };
    if let Err(error) = ctx.auth.still_valid(&authenticated, &device_id).await {
        ctx.router.unregister(&session);
        return Err(refuse(connection, &mut writer, req_id, error).await);
    }
    let sync_points = match ctx.chat.sync_points(caller, &hello.cursors).await {
        Ok(points) => points,
        Err(error) => {
            ctx.router.unregister(&session);
            return Err(refuse(connection, &mut writer, req_id, error).await);
        }
    };

    if let Err(error) = ctx
        .account
        .session_opened(&user_id, &device_id, &hello.client_version, "quic")
        .await
    {
        tracing::warn!(%error, "cannot record the device");
    }
    let hello_ok = hello_ok(ctx, authenticated, &device_id, lanes);

    let reply = response(req_id, server_frame::Body::HelloOk(hello_ok));
    if let Err(error) = writer.send(&reply).await {
        ctx.router.unregister(&session);
        return Err(error.to_string());
    }
    tracing::info!(
        lanes,
        conversations = sync_points.len(),
        client_version = %hello.client_version,
        "authenticated"
    );

    Ok(Established {
        reader,
        writer,
        session,
        lane_receivers,
        sync_points,
        pushes,
    })
}

/// Opens the session's lanes and starts their writers.
async fn open_lanes(
    connection: &quinn::Connection,
    ctx: &Arc<BrokerContext>,
    session: &Arc<Session>,
    receivers: Vec<crate::queue::QueueReceiver<crate::router::LaneItem>>,
    sync_points: Vec<crate::service::SyncPoint>,
    guard: &ShutdownGuard,
) -> Result<(), String> {
    let lanes = session.lane_count();
    let mut per_lane: Vec<Vec<_>> = (0..lanes).map(|_| Vec::new()).collect();
    for point in sync_points {
        per_lane[lane_for(&point.conv_id, lanes) as usize].push(point);
    }
    for (lane, (items, sync)) in receivers.into_iter().zip(per_lane).enumerate() {
        let send = connection.open_uni().await.map_err(|e| e.to_string())?;
        let writer = LaneWriter {
            lane: lane as u32,
            send,
            items,
            chat: ctx.chat.clone(),
            user_id: session.user_id.clone(),
            sync,
            sync_batch: ctx.config.sync_batch,
        };
        let connection = connection.clone();
        let guard = guard.clone();
        tokio::spawn(
            async move {
                let _guard = guard;
                if let Err(error) = writer.run().await {
                    tracing::debug!(%error, lane, "lane ended");
                    // A lane that cannot write makes the session useless: end it so
                    // the device reconnects and resumes.
                    if matches!(error, crate::lane::LaneError::Service(_)) {
                        close(
                            &connection,
                            ErrorCode::Unavailable,
                            "delivery failed; resume",
                        );
                    }
                }
            }
            .in_current_span(),
        );
    }
    Ok(())
}

/// The control stream after the Hello: requests in, responses and pushes out, and
/// typing notices arriving as datagrams.
struct Control<'a> {
    connection: &'a quinn::Connection,
    ctx: &'a Arc<BrokerContext>,
    session: &'a Arc<Session>,
    reader: &'a mut FrameReader,
    writer: &'a mut FrameWriter,
}

impl Control<'_> {
    async fn run(&mut self, mut pushes: QueueReceiver<bytes::Bytes>) -> Result<(), String> {
        let max_inflight = self.ctx.config.max_inflight_per_connection;
        let requester = Arc::new(Requester {
            user_id: self.session.user_id.clone(),
            device_id: self.session.device_id.clone(),
            session_id: self.session.id,
            limiter: Some(Arc::new(ConnectionLimiter::new(&self.ctx.rate_limits))),
        });
        let datagrams = self.ctx.config.datagrams;
        let mut inflight: FuturesUnordered<Pending> = FuturesUnordered::new();
        loop {
            tokio::select! {
                frame = self.reader.next::<pb::ClientFrame>(), if inflight.len() < max_inflight => {
                    match frame {
                        Ok(Some(frame)) => {
                            let pending = dispatch(self.ctx, &requester, frame).await;
                            inflight.push(pending);
                        }
                        Ok(None) => {
                            close(self.connection, ErrorCode::Unspecified, "control stream finished");
                            return Ok(());
                        }
                        Err(error) => {
                            return Err(refuse_read_error(self.connection, self.writer, error).await);
                        }
                    }
                }
                Some((req_id, body)) = inflight.next(), if !inflight.is_empty() => {
                    // req_id 0: the client expects no response (e.g. typing).
                    if req_id != 0 {
                        self.writer.push(&response(req_id, body));
                    }
                    // Coalesce whatever else is already done into the same write.
                    while let Some(Some((req_id, body))) = inflight.next().now_or_never() {
                        if req_id != 0 {
                            self.writer.push(&response(req_id, body));
                        }
                    }
                    self.writer.flush().await.map_err(|e| e.to_string())?;
                }
                Some(frame) = pushes.recv() => {
                    self.writer.push_encoded(&frame);
                    while let Some(frame) = pushes.try_recv() {
                        self.writer.push_encoded(&frame);
                    }
                    self.writer.flush().await.map_err(|e| e.to_string())?;
                }
                stream = self.connection.accept_bi() => {
                    match stream {
                        // A file transfer: on its own task, so chat goes on meanwhile.
                        Ok((send, recv)) => {
                            let transfer = super::transfer::serve(
                                self.ctx.clone(),
                                self.session.user_id.clone(),
                                requester.limiter.clone(),
                                send,
                                recv,
                            );
                            tokio::spawn(transfer.in_current_span());
                        }
                        Err(error) => return Err(error.to_string()),
                    }
                }
                datagram = self.connection.read_datagram(), if datagrams => {
                    match datagram {
                        Ok(datagram) => self.datagram(&requester, datagram).await,
                        // The connection is over; the reader will say how.
                        Err(error) => return Err(error.to_string()),
                    }
                }
            }
        }
    }

    /// A datagram from the client: one `ClientFrame` carrying a `Typing`. Anything
    /// else is ignored, since datagrams carry only what may be lost and have no answer.
    async fn datagram(&self, requester: &Arc<Requester>, datagram: bytes::Bytes) {
        let frame = match quip_protocol::decode_datagram::<pb::ClientFrame>(&datagram) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::debug!(%error, "ignoring an undecodable datagram");
                return;
            }
        };
        // Over the request rate, a datagram is dropped: it has no answer to carry
        // RATE_LIMITED, and a typing notice may be lost anyway.
        if requester
            .limiter
            .as_ref()
            .is_some_and(|limiter| limiter.request().is_err())
        {
            tracing::debug!("dropping a typing datagram over the request rate");
            return;
        }
        match frame.body {
            Some(client_frame::Body::Typing(typing)) => {
                if let Err(error) = self.ctx.chat.typing(requester.caller(), &typing).await {
                    tracing::debug!(%error, "typing datagram refused");
                }
            }
            _ => tracing::debug!("ignoring a datagram that is not a typing notice"),
        }
    }
}

/// Answers with an error, then closes the connection with the error's code.
async fn refuse(
    connection: &quinn::Connection,
    writer: &mut FrameWriter,
    req_id: u64,
    error: ServiceError,
) -> String {
    let code = error.code();
    let wire = error.to_pb();
    let reason = wire.message.clone();
    writer.push(&response(req_id, server_frame::Body::Error(wire)));
    if writer.flush().await.is_ok() {
        writer.finish_and_wait(FINAL_FRAME_WAIT).await;
    }
    close(connection, code, &reason);
    format!("refused: {}: {reason}", code.name())
}

/// A frame that could not be read: BAD_FRAME or FRAME_TOO_LARGE, then close.
async fn refuse_read_error(
    connection: &quinn::Connection,
    writer: &mut FrameWriter,
    error: ReadError,
) -> String {
    let service_error = match &error {
        ReadError::Frame(frame_error @ FrameError::TooLarge { .. }) => {
            ServiceError::new(ErrorCode::FrameTooLarge, frame_error.to_string())
        }
        ReadError::Frame(frame_error) => {
            ServiceError::new(ErrorCode::BadFrame, frame_error.to_string())
        }
        ReadError::Truncated => {
            ServiceError::new(ErrorCode::BadFrame, "stream ended inside a frame")
        }
        ReadError::Stream(stream_error) => return stream_error.to_string(),
    };
    tracing::info!(%error, "refusing connection");
    refuse(connection, writer, 0, service_error).await
}

fn close(connection: &quinn::Connection, code: ErrorCode, reason: &str) {
    connection.close(code.close_code().into(), reason.as_bytes());
}
