//! Requests, independent of the transport: authentication of a `Hello`, and the
//! dispatch of every other `ClientFrame` to its service. QUIC connections and
//! in-process bridge sessions both go through here, so they behave the same.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use quip_protocol::{ErrorCode, client_frame, pb, server_frame};

use crate::context::BrokerContext;
use crate::limits::{ConnectionLimiter, LimitKind};
use crate::service::{Authenticated, Caller, ServiceError, ServiceResult};

/// A request in flight: resolves to the response body and the `req_id` it answers.
pub type Pending = Pin<Box<dyn Future<Output = (u64, server_frame::Body)> + Send>>;

/// What a successful `Hello` answers, on any transport.
pub fn hello_ok(
    ctx: &BrokerContext,
    authenticated: Authenticated,
    device_id: &str,
    lanes: u32,
) -> pb::HelloOk {
    pb::HelloOk {
        user_id: authenticated.user.user_id,
        username: authenticated.user.username,
        nickname: authenticated.user.nickname,
        device_id: device_id.to_owned(),
        tokens: authenticated.tokens,
        lanes,
        max_frame_bytes: ctx.config.max_frame_bytes as u32,
        server_time_ms: crate::service::auth::now_ms(),
        role: authenticated.user.role,
    }
}

/// Who a request comes from: an authenticated device, and the session to skip (with
/// an `Advance`) when fanning out its own messages (0: none, e.g. a REST request).
#[derive(Debug, Clone)]
pub struct Requester {
    pub user_id: String,
    pub device_id: String,
    pub session_id: u64,
    /// The connection's rate limits; `None` for REST requests, which are limited per
    /// user instead.
    pub limiter: Option<Arc<ConnectionLimiter>>,
}

impl Requester {
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            user_id: &self.user_id,
            device_id: &self.device_id,
            session_id: self.session_id,
        }
    }
}

/// Runs a Hello's credentials. Password logins, registrations and refreshes are
/// limited per client address (`peer`) and, after failed passwords, per username.
/// A refusal is counted in the metrics (errors by code).
pub async fn authenticate(
    ctx: &BrokerContext,
    hello: &pb::Hello,
    peer: Option<IpAddr>,
) -> ServiceResult<Authenticated> {
    let result = check_credentials(ctx, hello, peer).await;
    if let Err(error) = &result {
        ctx.metrics.error(error.code());
    }
    result
}

async fn check_credentials(
    ctx: &BrokerContext,
    hello: &pb::Hello,
    peer: Option<IpAddr>,
) -> ServiceResult<Authenticated> {
    use pb::hello::Auth;
    let device = &hello.device_id;
    let attempt = |username: &str| match peer {
        Some(ip) => ctx
            .limits
            .login_attempt(ip, username)
            .map_err(ServiceError::rate_limited),
        None => Ok(()),
    };
    match &hello.auth {
        Some(Auth::AccessToken(token)) => ctx.auth.authenticate_token(token, device).await,
        Some(Auth::Password(p)) => {
            attempt(&p.username)?;
            let result = ctx.auth.login(&p.username, &p.password, device).await;
            match &result {
                Ok(_) => ctx.limits.login_succeeded(&p.username),
                Err(error) if error.code() == ErrorCode::InvalidCredentials => {
                    ctx.limits.login_failed(&p.username);
                }
                Err(_) => {}
            }
            result
        }
        Some(Auth::Register(r)) => {
            attempt("")?;
            ctx.auth
                .register(&r.username, &r.password, &r.nickname, device)
                .await
        }
        Some(Auth::RefreshToken(token)) => {
            attempt("")?;
            ctx.auth.refresh(token, device).await
        }
        None => Err(ServiceError::new(
            ErrorCode::Unauthenticated,
            "Hello carries no credentials",
        )),
    }
}

/// The rate limits a request passes first: per connection (per user for REST), and
/// for what stores a message, the message rate too.
fn check_rate(
    ctx: &BrokerContext,
    requester: &Requester,
    body: &client_frame::Body,
) -> ServiceResult<()> {
    // A call invite counts as a message: one that ends at once stores its outcome.
    let stores_a_message = match body {
        client_frame::Body::Send(_)
        | client_frame::Body::Recall(_)
        | client_frame::Body::Edit(_) => true,
        client_frame::Body::Call(call) => call.action == pb::CallAction::Invite as i32,
        _ => false,
    };
    match &requester.limiter {
        Some(limiter) => {
            let refused = |kind| {
                move |retry| {
                    ctx.limits.count_refusal(kind);
                    ServiceError::rate_limited(retry)
                }
            };
            limiter.request().map_err(refused(LimitKind::Request))?;
            if stores_a_message {
                limiter.message().map_err(refused(LimitKind::Message))?;
            }
        }
        None => ctx
            .limits
            .user_request(&requester.user_id)
            .map_err(ServiceError::rate_limited)?,
    }
    Ok(())
}

/// Starts one request. Returns the future that answers it. Answers are counted in
/// the metrics: sends and their ACK latency, errors by code.
pub async fn dispatch(
    ctx: &Arc<BrokerContext>,
    requester: &Arc<Requester>,
    frame: pb::ClientFrame,
) -> Pending {
    let received = Instant::now();
    let req_id = frame.req_id;
    let caller = requester.caller();
    let Some(body) = frame.body else {
        return refuse(ctx, req_id, ServiceError::invalid("frame has no body"));
    };
    if let Err(error) = check_rate(ctx, requester, &body) {
        return refuse(ctx, req_id, error);
    }
    let owned = (ctx.clone(), requester.clone());
    let pending: Pending = match body {
        client_frame::Body::Send(request) => match ctx.chat.send(caller, request).await {
            // The hot path: counted here, without the extra future of `counted`.
            Ok(ack) => {
                let ctx = owned.0;
                return Box::pin(async move {
                    let result = ack.await;
                    match &result {
                        Ok(_) => ctx.metrics.send_acked(received.elapsed()),
                        Err(error) => ctx.metrics.error(error.code()),
                    }
                    answer(req_id, result.map(server_frame::Body::Ack))
                });
            }
            Err(error) => return refuse(ctx, req_id, error),
        },
        client_frame::Body::Hello(_) => ready(
            req_id,
            Err(ServiceError::new(
                ErrorCode::AlreadyAuthenticated,
                "already authenticated",
            )),
        ),
        client_frame::Body::Ping(ping) => ready(
            req_id,
            Ok(server_frame::Body::Pong(pb::Pong {
                client_time_ms: ping.client_time_ms,
                server_time_ms: crate::service::auth::now_ms(),
            })),
        ),
        client_frame::Body::History(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.chat.history(session.caller(), &request).await;
            answer(req_id, result.map(server_frame::Body::History))
        }),
        client_frame::Body::Conversations(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.chat.conversations(session.caller(), &request).await;
            answer(req_id, result.map(server_frame::Body::Conversations))
        }),
        client_frame::Body::Report(report) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.receipts.report(session.caller(), report).await;
            answer(
                req_id,
                result.map(|()| server_frame::Body::ReportOk(pb::ReportOk {})),
            )
        }),
        client_frame::Body::Group(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.groups.handle(session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::Group))
        }),
        client_frame::Body::Typing(typing) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.chat.typing(session.caller(), &typing).await;
            answer(
                req_id,
                result.map(|_| server_frame::Body::ReportOk(pb::ReportOk {})),
            )
        }),
        client_frame::Body::Presence(request) => Box::pin(async move {
            let (ctx, _) = owned;
            let result = ctx.presence.query(&request).await;
            answer(req_id, result.map(server_frame::Body::Presences))
        }),
        client_frame::Body::GroupPresence(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.presence.group(session.caller(), &request).await;
            answer(req_id, result.map(server_frame::Body::GroupPresence))
        }),
        client_frame::Body::Receipts(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.receipts.counts(session.caller(), &request).await;
            answer(req_id, result.map(server_frame::Body::ReceiptCounts))
        }),
        client_frame::Body::Readers(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.receipts.readers(session.caller(), &request).await;
            answer(req_id, result.map(server_frame::Body::Readers))
        }),
        client_frame::Body::Call(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.calls.handle(session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::CallOk))
        }),
        client_frame::Body::Recall(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.chat.recall(session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::Ack))
        }),
        client_frame::Body::Edit(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.chat.edit(session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::Ack))
        }),
        client_frame::Body::Contact(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.contacts.handle(session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::Contact))
        }),
        client_frame::Body::Account(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.account.handle(session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::Account))
        }),
        client_frame::Body::Admin(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.admin.handle(&ctx.auth, session.caller(), request).await;
            answer(req_id, result.map(server_frame::Body::Admin))
        }),
        client_frame::Body::FileInfo(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx.files.info(&session.user_id, &request.file_id).await;
            answer(req_id, result.map(server_frame::Body::FileInfo))
        }),
        client_frame::Body::LookupUser(lookup) => Box::pin(async move {
            let (ctx, _) = owned;
            let result = match &lookup.key {
                Some(key) => ctx.auth.lookup(key).await,
                None => Err(ServiceError::invalid("give a user_id or a username")),
            };
            answer(req_id, result.map(server_frame::Body::User))
        }),
        client_frame::Body::Refresh(request) => Box::pin(async move {
            let (ctx, session) = owned;
            let result = ctx
                .auth
                .refresh(&request.refresh_token, &session.device_id)
                .await;
            let tokens = result.and_then(|a| {
                a.tokens
                    .ok_or_else(|| ServiceError::new(ErrorCode::Internal, "no tokens issued"))
            });
            answer(req_id, tokens.map(server_frame::Body::Tokens))
        }),
    };
    counted(ctx.clone(), pending)
}

/// Answers at once with `error`, counted.
fn refuse(ctx: &BrokerContext, req_id: u64, error: ServiceError) -> Pending {
    ctx.metrics.error(error.code());
    ready(req_id, Err(error))
}

/// Counts the answer of `pending` if it is an error.
fn counted(ctx: Arc<BrokerContext>, pending: Pending) -> Pending {
    Box::pin(async move {
        let (req_id, body) = pending.await;
        if let server_frame::Body::Error(error) = &body {
            ctx.metrics.error(error.error_code());
        }
        (req_id, body)
    })
}

pub fn ready(req_id: u64, result: ServiceResult<server_frame::Body>) -> Pending {
    Box::pin(std::future::ready(answer(req_id, result)))
}

pub fn answer(req_id: u64, result: ServiceResult<server_frame::Body>) -> (u64, server_frame::Body) {
    match result {
        Ok(body) => (req_id, body),
        Err(error) => {
            if error.code() == ErrorCode::Unavailable || error.code() == ErrorCode::Internal {
                tracing::warn!(%error, "request failed");
            }
            (req_id, server_frame::Body::Error(error.to_pb()))
        }
    }
}

pub fn response(req_id: u64, body: server_frame::Body) -> pb::ServerFrame {
    pb::ServerFrame {
        req_id,
        body: Some(body),
    }
}
