//! The REST API, SimpleIM-compatible: every response is `{code, message, data}`;
//! errors carry Quip's stable error code and the matching HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use quip_protocol::json::message_to_json;
use quip_protocol::{ErrorCode, client_frame, ids, pb, server_frame};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::{BridgeState, Identity};
use realtime::{edit, group_online, presence, readers, recall, receipts};

pub mod files;
pub mod realtime;
pub mod social;

type AppState = State<Arc<BridgeState>>;

/// Every REST route; the OpenAPI test checks each one is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/register"),
    ("post", "/api/login"),
    ("post", "/api/refresh"),
    ("get", "/api/me"),
    ("get", "/api/users/by-username/{username}"),
    ("get", "/api/conversations"),
    ("post", "/api/conversations/{conversation_id}/read"),
    ("get", "/api/messages/private/{user_id}"),
    ("get", "/api/messages/group/{group_id}"),
    ("get", "/api/groups/my"),
    ("post", "/api/groups"),
    ("get", "/api/groups/{group_id}"),
    ("post", "/api/groups/{group_id}/join"),
    ("post", "/api/groups/{group_id}/leave"),
    ("get", "/api/groups/{group_id}/members"),
    ("get", "/api/presence"),
    ("get", "/api/groups/{group_id}/online"),
    ("get", "/api/conversations/{conversation_id}/receipts"),
    ("get", "/api/conversations/{conversation_id}/readers"),
    (
        "post",
        "/api/conversations/{conversation_id}/messages/{seq}/recall",
    ),
    (
        "post",
        "/api/conversations/{conversation_id}/messages/{seq}/edit",
    ),
    ("get", "/api/contacts"),
    ("get", "/api/contacts/requests"),
    ("post", "/api/contacts/requests"),
    ("post", "/api/contacts/requests/{user_id}/accept"),
    ("post", "/api/contacts/requests/{user_id}/reject"),
    ("delete", "/api/contacts/requests/{user_id}"),
    ("delete", "/api/contacts/{user_id}"),
    ("get", "/api/contacts/settings"),
    ("put", "/api/contacts/settings"),
    ("get", "/api/blocks"),
    ("post", "/api/blocks"),
    ("delete", "/api/blocks/{user_id}"),
    ("get", "/api/devices"),
    ("post", "/api/devices/{device_id}/logout"),
    ("post", "/api/devices/logout-all"),
    ("get", "/api/admin/users"),
    ("get", "/api/admin/users/{user_id}"),
    ("post", "/api/admin/users/{user_id}/disable"),
    ("post", "/api/admin/users/{user_id}/enable"),
    ("post", "/api/admin/users/{user_id}/password"),
    ("post", "/api/admin/users/{user_id}/role"),
    ("get", "/api/admin/groups"),
    ("post", "/api/admin/groups/{group_id}/dissolve"),
    ("get", "/api/admin/stats"),
    ("post", "/api/files"),
    ("get", "/api/files/{file_id}"),
    ("get", "/api/files/{file_id}/thumbnail"),
    ("get", "/api/files/{file_id}/info"),
    ("get", "/health"),
    ("get", "/api/openapi.json"),
];

pub fn routes() -> Router<Arc<BridgeState>> {
    Router::new()
        .route("/api/register", post(register))
        .route("/api/login", post(login))
        .route("/api/refresh", post(refresh))
        .route("/api/me", get(me))
        .route("/api/users/by-username/{username}", get(user_by_username))
        .route("/api/conversations", get(conversations))
        .route("/api/conversations/{conversation_id}/read", post(mark_read))
        .route("/api/messages/private/{user_id}", get(private_history))
        .route("/api/messages/group/{group_id}", get(group_history))
        .route("/api/groups/my", get(my_groups))
        .route("/api/groups", post(create_group))
        .route("/api/groups/{group_id}", get(get_group))
        .route("/api/groups/{group_id}/join", post(join_group))
        .route("/api/groups/{group_id}/leave", post(leave_group))
        .route("/api/groups/{group_id}/members", get(group_members))
        .route("/api/presence", get(presence))
        .route("/api/groups/{group_id}/online", get(group_online))
        .route(
            "/api/conversations/{conversation_id}/receipts",
            get(receipts),
        )
        .route("/api/conversations/{conversation_id}/readers", get(readers))
        .route(
            "/api/conversations/{conversation_id}/messages/{seq}/recall",
            post(recall),
        )
        .route(
            "/api/conversations/{conversation_id}/messages/{seq}/edit",
            post(edit),
        )
        .route("/api/contacts", get(social::friends))
        .route(
            "/api/contacts/requests",
            get(social::contact_requests).post(social::send_contact_request),
        )
        .route(
            "/api/contacts/requests/{user_id}/accept",
            post(social::accept_contact_request),
        )
        .route(
            "/api/contacts/requests/{user_id}/reject",
            post(social::reject_contact_request),
        )
        .route(
            "/api/contacts/requests/{user_id}",
            delete(social::cancel_contact_request),
        )
        .route(
            "/api/contacts/settings",
            get(social::contact_settings).put(social::set_contact_settings),
        )
        .route("/api/contacts/{user_id}", delete(social::delete_friend))
        .route("/api/blocks", get(social::blocks).post(social::block))
        .route("/api/blocks/{user_id}", delete(social::unblock))
        .route("/api/devices", get(social::devices))
        .route("/api/devices/logout-all", post(social::logout_all))
        .route(
            "/api/devices/{device_id}/logout",
            post(social::logout_device),
        )
        .route("/api/admin/users", get(social::admin_users))
        .route("/api/admin/users/{user_id}", get(social::admin_user))
        .route(
            "/api/admin/users/{user_id}/disable",
            post(social::admin_disable_user),
        )
        .route(
            "/api/admin/users/{user_id}/enable",
            post(social::admin_enable_user),
        )
        .route(
            "/api/admin/users/{user_id}/password",
            post(social::admin_reset_password),
        )
        .route(
            "/api/admin/users/{user_id}/role",
            post(social::admin_set_role),
        )
        .route("/api/admin/groups", get(social::admin_groups))
        .route(
            "/api/admin/groups/{group_id}/dissolve",
            post(social::admin_dissolve_group),
        )
        .route("/api/admin/stats", get(social::admin_stats))
        // Uploads stream to the broker under `max_file_bytes`, not the JSON body limit.
        .route(
            "/api/files",
            post(files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/files/{file_id}", get(files::download))
        .route("/api/files/{file_id}/thumbnail", get(files::thumbnail))
        .route("/api/files/{file_id}/info", get(files::info))
        .route("/health", get(health))
        .route("/api/openapi.json", get(crate::openapi::serve))
}

/// Completes the OpenAPI document with what every `/api/` operation shares: a
/// success answers `{code: 0, message, data}` (`Envelope`), and an error answers
/// `{code, message, error, data: null}` (`Error`) with the status [`status_of`] its
/// code maps to. Each operation gets the `Error` body on the error statuses it
/// documents, a 400 (a malformed parameter or body) and, when it takes a token, a 401,
/// plus a `default` for any other error. File bytes and the document itself are not
/// enveloped. Path parameters that hold ids get the id rules as patterns.
#[derive(Debug)]
pub struct ResponseEnvelopes;

/// `/api/` routes whose success is not a JSON envelope.
const UNENVELOPED: &[&str] = &[
    "/api/openapi.json",
    "/api/files/{file_id}",
    "/api/files/{file_id}/thumbnail",
];

/// The schema of a path parameter that holds an id, from `quip_protocol::ids`' rules
/// (so generated requests reach the handlers instead of the id checks).
fn id_schema(name: &str) -> Option<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    const CHARS: &str = "[A-Za-z0-9_.-]";
    let max = ids::MAX_ID_LEN;
    let user = format!("user_{CHARS}{{1,{}}}", max - ids::USER_PREFIX.len());
    let group = format!("group_{CHARS}{{1,{}}}", max - ids::GROUP_PREFIX.len());
    let pattern = match name {
        "user_id" => format!("^{user}$"),
        "group_id" => format!("^{group}$"),
        "device_id" => format!("^{CHARS}{{1,{max}}}$"),
        "conversation_id" => format!("^(single:{user}:{user}|group:{group})$"),
        "seq" => {
            return Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(1))
                    .build()
                    .into(),
            );
        }
        _ => return None,
    };
    Some(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .build()
            .into(),
    )
}

impl utoipa::Modify for ResponseEnvelopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        use utoipa::openapi::{Content, Ref, RefOr, Response};

        let typed = |kind: Type| ObjectBuilder::new().schema_type(kind);
        let error = ObjectBuilder::new()
            .description(Some("An error: a stable code and its name."))
            .property("code", typed(Type::Integer).description(Some("ErrorCode")))
            .required("code")
            .property(
                "error",
                typed(Type::String).description(Some("the code's name, e.g. NOT_FOUND")),
            )
            .required("error")
            .property("message", typed(Type::String))
            .required("message")
            .property("data", typed(Type::Null))
            .required("data")
            .property(
                "retry_after_ms",
                typed(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("RATE_LIMITED: when to retry")),
            );
        let envelope = ObjectBuilder::new()
            .description(Some("A success: code 0 and the answer in `data`."))
            .property(
                "code",
                typed(Type::Integer).minimum(Some(0)).maximum(Some(0)),
            )
            .required("code")
            .property("message", typed(Type::String))
            .required("message")
            .property(
                "data",
                ObjectBuilder::new().schema_type(SchemaType::AnyValue),
            )
            .required("data");
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("Error".into(), RefOr::T(error.into()));
        components
            .schemas
            .insert("Envelope".into(), RefOr::T(envelope.into()));
        let json_of = |schema: &str| Content::new(Some(Ref::from_schema_name(schema)));
        let error_response = |description: &str| {
            RefOr::T(
                Response::builder()
                    .description(description)
                    .content("application/json", json_of("Error"))
                    .build(),
            )
        };

        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") || path == "/api/openapi.json" {
                continue;
            }
            let enveloped = !UNENVELOPED.contains(&path.as_str());
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.parameter_in == ParameterIn::Path
                        && let Some(schema) = id_schema(&parameter.name)
                    {
                        parameter.schema = Some(RefOr::T(schema));
                    }
                }
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if !response.content.is_empty() {
                        continue;
                    }
                    if status.starts_with('4') || status.starts_with('5') {
                        response
                            .content
                            .insert("application/json".into(), json_of("Error"));
                    } else if status == "200" && enveloped {
                        response
                            .content
                            .insert("application/json".into(), json_of("Envelope"));
                    }
                }
                responses.entry("400".into()).or_insert_with(|| {
                    error_response("INVALID_ARGUMENT: a malformed parameter or body")
                });
                if secured {
                    responses.entry("401".into()).or_insert_with(|| {
                        error_response(
                            "UNAUTHENTICATED, TOKEN_EXPIRED, TOKEN_INVALID or LOGGED_OUT",
                        )
                    });
                }
                responses.entry("default".into()).or_insert_with(|| {
                    error_response(
                        "any other error; the status follows the code (403 FORBIDDEN, 404 \
                         NOT_FOUND, 409 CONFLICT, 413, 429 RATE_LIMITED with Retry-After, 503 \
                         UNAVAILABLE, …)",
                    )
                });
            }
        }
    }
}

/// An error response: the stable code, a readable message, the right HTTP status.
#[derive(Debug)]
pub struct ApiError(pub pb::Error);

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(pb::Error::new(code, message))
    }
}

impl From<pb::Error> for ApiError {
    fn from(error: pb::Error) -> Self {
        ApiError(error)
    }
}

/// The HTTP status for an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidArgument | BadFrame | Unsupported => StatusCode::BAD_REQUEST,
        Unauthenticated | InvalidCredentials | TokenExpired | TokenInvalid | LoggedOut => {
            StatusCode::UNAUTHORIZED
        }
        Forbidden | Muted | AccountDisabled | Blocked | ContactsOnly => StatusCode::FORBIDDEN,
        NotFound => StatusCode::NOT_FOUND,
        UsernameTaken | AlreadyAuthenticated | GroupFull | Conflict => StatusCode::CONFLICT,
        Expired => StatusCode::GONE,
        FrameTooLarge | MessageTooLarge | FileTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RateLimited | TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        Unavailable | ShuttingDown | SlowConsumer | SessionReplaced => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Internal | Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `Retry-After` for a RATE_LIMITED answer: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(retry_after_ms: u64) -> u64 {
    retry_after_ms.div_ceil(1000).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.error_code();
        let mut body = json!({"code": self.0.code, "message": self.0.message, "error": code.name(), "data": null});
        if code == ErrorCode::RateLimited || self.0.retry_after_ms > 0 {
            body["retry_after_ms"] = json!(self.0.retry_after_ms);
        }
        let mut response = (status_of(code), Json(body)).into_response();
        if code == ErrorCode::RateLimited {
            let seconds = retry_after_secs(self.0.retry_after_ms);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn ok(data: Value) -> ApiResult {
    Ok(Json(json!({"code": 0, "message": "success", "data": data})))
}

/// The caller of an authenticated endpoint, from `Authorization: Bearer <token>`.
#[derive(Debug)]
pub struct Authed(pub Identity);

/// The bearer token of a request.
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "missing Authorization: Bearer <token>",
            )
        })
}

impl FromRequestParts<Arc<BridgeState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<BridgeState>,
    ) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        Ok(Authed(state.backend.identify(token).await?))
    }
}

/// A JSON body, with malformed JSON answered in the API's own error format.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                rejection.body_text(),
            )),
        }
    }
}

/// Query parameters, with a malformed query answered in the API's own error format.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::InvalidArgument,
                rejection.body_text(),
            )),
        }
    }
}

async fn call(
    state: &BridgeState,
    identity: &Identity,
    body: client_frame::Body,
) -> Result<server_frame::Body, ApiError> {
    Ok(state.backend.request(identity, body).await?)
}

fn unexpected() -> ApiError {
    ApiError::new(ErrorCode::Internal, "unexpected answer from the broker")
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterBody {
    username: String,
    #[serde(default)]
    nickname: String,
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
    /// Identifies this browser; generated when absent.
    #[serde(default)]
    device_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshBody {
    refresh_token: String,
    device_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReadBody {
    seq: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateGroupBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    avatar: String,
    #[serde(default)]
    member_ids: Vec<String>,
    /// "open" (default), "approval" or "invite_only".
    #[serde(default)]
    join_mode: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct JoinBody {
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// Page size (default 50, at most 200).
    #[serde(default)]
    limit: u32,
    /// Messages with a smaller seq; 0 for the newest page.
    #[serde(default)]
    last_seq: u64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    page_token: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MembersQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    limit: u32,
}

#[utoipa::path(post, path = "/api/register", request_body = RegisterBody,
    responses((status = 200, description = "{user_id, username, nickname}"), (status = 409, description = "username taken")))]
pub async fn register(
    State(state): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(body): Body<RegisterBody>,
) -> ApiResult {
    let hello = pb::Hello {
        auth: Some(pb::hello::Auth::Register(pb::RegisterAuth {
            username: body.username,
            password: body.password,
            nickname: body.nickname,
        })),
        device_id: "web-register".into(),
        client_version: "quip-bridge-ws".into(),
        ..Default::default()
    };
    let hello_ok = state.backend.authenticate(hello, peer.ip()).await?;
    ok(
        json!({"user_id": hello_ok.user_id, "username": hello_ok.username, "nickname": hello_ok.nickname}),
    )
}

fn session_data(hello_ok: &pb::HelloOk, headers: &HeaderMap, quic_port: u16) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let hostname = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let tokens = hello_ok.tokens.clone().unwrap_or_default();
    json!({
        "user_id": hello_ok.user_id,
        "username": hello_ok.username,
        "nickname": hello_ok.nickname,
        "device_id": hello_ok.device_id,
        "role": hello_ok.role,
        "token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_at": tokens.access_expires_at_ms,
        "refresh_expires_at": tokens.refresh_expires_at_ms,
        "websocket_url": format!("ws://{host}/ws"),
        "quic_url": format!("quic://{hostname}:{quic_port}"),
    })
}

#[utoipa::path(post, path = "/api/login", request_body = LoginBody,
    responses((status = 200, description = "{user_id, username, nickname, role, token, refresh_token, expires_at, websocket_url, quic_url, device_id}"),
               (status = 401, description = "wrong username or password")))]
pub async fn login(
    State(state): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body<LoginBody>,
) -> ApiResult {
    let device_id = if body.device_id.is_empty() {
        format!("web-{:016x}", rand::random::<u64>())
    } else {
        body.device_id
    };
    let hello = pb::Hello {
        auth: Some(pb::hello::Auth::Password(pb::PasswordAuth {
            username: body.username,
            password: body.password,
        })),
        device_id,
        client_version: "quip-bridge-ws".into(),
        ..Default::default()
    };
    let hello_ok = state.backend.authenticate(hello, peer.ip()).await?;
    ok(session_data(&hello_ok, &headers, state.config.quic_port))
}

#[utoipa::path(post, path = "/api/refresh", request_body = RefreshBody,
    responses((status = 200, description = "same as login"), (status = 401, description = "refresh token invalid or expired")))]
pub async fn refresh(
    State(state): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body<RefreshBody>,
) -> ApiResult {
    let hello = pb::Hello {
        auth: Some(pb::hello::Auth::RefreshToken(body.refresh_token)),
        device_id: body.device_id,
        client_version: "quip-bridge-ws".into(),
        ..Default::default()
    };
    let hello_ok = state.backend.authenticate(hello, peer.ip()).await?;
    ok(session_data(&hello_ok, &headers, state.config.quic_port))
}

async fn lookup(state: &BridgeState, identity: &Identity, key: pb::lookup_user::Key) -> ApiResult {
    match call(
        state,
        identity,
        client_frame::Body::LookupUser(pb::LookupUser { key: Some(key) }),
    )
    .await?
    {
        server_frame::Body::User(user) => ok(
            json!({"user_id": user.user_id, "username": user.username, "nickname": user.nickname}),
        ),
        _ => Err(unexpected()),
    }
}

#[utoipa::path(get, path = "/api/me", responses((status = 200, description = "{user_id, username, nickname, role}")), security(("bearer" = [])))]
pub async fn me(
    State(state): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult {
    // The token check a QUIC Hello makes answers with the user's current names and
    // role (which `identify` does not carry).
    let token = bearer_token(&headers)?;
    let identity = state.backend.identify(token).await?;
    let hello = pb::Hello {
        auth: Some(pb::hello::Auth::AccessToken(token.to_owned())),
        device_id: identity.device_id,
        client_version: "quip-bridge-ws".into(),
        ..Default::default()
    };
    let hello_ok = state.backend.authenticate(hello, peer.ip()).await?;
    ok(json!({
        "user_id": hello_ok.user_id,
        "username": hello_ok.username,
        "nickname": hello_ok.nickname,
        "role": hello_ok.role,
    }))
}

#[utoipa::path(get, path = "/api/users/by-username/{username}", params(("username" = String, Path)),
    responses((status = 200, description = "{user_id, username, nickname}"), (status = 404, description = "no such user")), security(("bearer" = [])))]
pub async fn user_by_username(
    State(state): AppState,
    Authed(identity): Authed,
    Path(username): Path<String>,
) -> ApiResult {
    lookup(&state, &identity, pb::lookup_user::Key::Username(username)).await
}

#[utoipa::path(get, path = "/api/conversations", params(PageQuery),
    responses((status = 200, description = "{conversations, next_page_token}")), security(("bearer" = [])))]
pub async fn conversations(
    State(state): AppState,
    Authed(identity): Authed,
    Query(query): Query<PageQuery>,
) -> ApiResult {
    let request = pb::ConversationsRequest {
        page_token: query.page_token,
        limit: query.limit,
    };
    let server_frame::Body::Conversations(list) = call(
        &state,
        &identity,
        client_frame::Body::Conversations(request),
    )
    .await?
    else {
        return Err(unexpected());
    };
    let mut conversations = Vec::with_capacity(list.conversations.len());
    for c in &list.conversations {
        let is_group = c.conv_id.starts_with(ids::GROUP_CONV_PREFIX);
        conversations.push(json!({
            "conversation_id": c.conv_id,
            "type": if is_group { 2 } else { 1 },
            "peer_id": c.peer_id,
            "peer_nickname": peer_name(&state, &identity, &c.peer_id, is_group).await,
            "last_message": c.last_message.as_ref().map(message_to_json),
            "last_seq": c.last_seq,
            "read_seq": c.read_seq,
            "unread": c.unread,
            "mentioned": c.mentioned,
        }));
    }
    ok(json!({"conversations": conversations, "next_page_token": list.next_page_token}))
}

/// The display name of a conversation's other side: a user's nickname or a group's
/// name; empty when it cannot be found (the list still renders with the id).
async fn peer_name(
    state: &BridgeState,
    identity: &Identity,
    peer_id: &str,
    is_group: bool,
) -> String {
    let body = if is_group {
        client_frame::Body::Group(pb::GroupRequest {
            op: Some(pb::group_request::Op::Get(pb::GetGroup {
                group_id: peer_id.to_owned(),
            })),
        })
    } else {
        client_frame::Body::LookupUser(pb::LookupUser {
            key: Some(pb::lookup_user::Key::UserId(peer_id.to_owned())),
        })
    };
    match state.backend.request(identity, body).await {
        Ok(server_frame::Body::User(user)) => user.nickname,
        Ok(server_frame::Body::Group(pb::GroupResponse {
            result: Some(pb::group_response::Result::Info(info)),
        })) => info.name,
        _ => String::new(),
    }
}

#[utoipa::path(post, path = "/api/conversations/{conversation_id}/read", params(("conversation_id" = String, Path)), request_body = ReadBody,
    responses((status = 200, description = "{}")), security(("bearer" = [])))]
pub async fn mark_read(
    State(state): AppState,
    Authed(identity): Authed,
    Path(conversation_id): Path<String>,
    Body(body): Body<ReadBody>,
) -> ApiResult {
    let report = pb::ReportCursors {
        reports: vec![pb::CursorReport {
            conv_id: conversation_id,
            delivered_seq: 0,
            read_seq: body.seq,
        }],
    };
    call(&state, &identity, client_frame::Body::Report(report)).await?;
    ok(json!({}))
}

async fn history(
    state: &BridgeState,
    identity: &Identity,
    conv_id: String,
    query: HistoryQuery,
) -> ApiResult {
    let request = pb::HistoryRequest {
        conv_id,
        before_seq: query.last_seq,
        after_seq: None,
        limit: query.limit,
    };
    let server_frame::Body::History(page) =
        call(state, identity, client_frame::Body::History(request)).await?
    else {
        return Err(unexpected());
    };
    let messages: Vec<Value> = page.messages.iter().map(message_to_json).collect();
    ok(json!({"messages": messages, "has_more": page.has_more}))
}

#[utoipa::path(get, path = "/api/messages/private/{user_id}", params(("user_id" = String, Path), HistoryQuery),
    responses((status = 200, description = "{messages, has_more}")), security(("bearer" = [])))]
pub async fn private_history(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    if !ids::is_user_id(&user_id) || user_id == identity.user_id {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "user_id must be another user's id",
        ));
    }
    let conv_id = ids::single_conv_id(&identity.user_id, &user_id);
    history(&state, &identity, conv_id, query).await
}

#[utoipa::path(get, path = "/api/messages/group/{group_id}", params(("group_id" = String, Path), HistoryQuery),
    responses((status = 200, description = "{messages, has_more}")), security(("bearer" = [])))]
pub async fn group_history(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult {
    if !ids::is_group_id(&group_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "malformed group id",
        ));
    }
    history(&state, &identity, ids::group_conv_id(&group_id), query).await
}

/// A `GroupRole` as the JSON API names it; "" for none (not a member).
fn role_name(role: i32) -> &'static str {
    match pb::GroupRole::try_from(role) {
        Ok(pb::GroupRole::Owner) => "owner",
        Ok(pb::GroupRole::Admin) => "admin",
        Ok(pb::GroupRole::Member) => "member",
        _ => "",
    }
}

fn group_json(group: &pb::GroupInfo) -> Value {
    let join_mode = match pb::JoinMode::try_from(group.join_mode) {
        Ok(pb::JoinMode::Approval) => "approval",
        Ok(pb::JoinMode::InviteOnly) => "invite_only",
        _ => "open",
    };
    let my_role = role_name(group.my_role);
    json!({
        "group_id": group.group_id,
        "conversation_id": group.conv_id,
        "name": group.name,
        "description": group.description,
        "avatar": group.avatar_url,
        "owner_id": group.owner_id,
        "member_count": group.member_count,
        "max_members": group.max_members,
        "join_mode": join_mode,
        "mute_all": group.mute_all,
        "my_role": my_role,
        "dissolved": group.dissolved,
        "created_at": group.created_at_ms,
    })
}

async fn group_op(
    state: &BridgeState,
    identity: &Identity,
    op: pb::group_request::Op,
) -> Result<pb::group_response::Result, ApiError> {
    let request = pb::GroupRequest { op: Some(op) };
    match call(state, identity, client_frame::Body::Group(request)).await? {
        server_frame::Body::Group(pb::GroupResponse {
            result: Some(result),
        }) => Ok(result),
        _ => Err(unexpected()),
    }
}

fn changed_json(result: pb::group_response::Result) -> ApiResult {
    match result {
        pb::group_response::Result::Changed(changed) => ok(json!({
            "group": changed.group.as_ref().map(group_json),
            "seq": changed.seq,
            "pending_approval": changed.pending_approval,
        })),
        _ => Err(unexpected()),
    }
}

#[utoipa::path(get, path = "/api/groups/my", responses((status = 200, description = "{total, groups}")), security(("bearer" = [])))]
pub async fn my_groups(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    match group_op(
        &state,
        &identity,
        pb::group_request::Op::ListMine(pb::ListMyGroups {}),
    )
    .await?
    {
        pb::group_response::Result::List(list) => {
            let groups: Vec<Value> = list.groups.iter().map(group_json).collect();
            ok(json!({"total": groups.len(), "groups": groups}))
        }
        _ => Err(unexpected()),
    }
}

#[utoipa::path(post, path = "/api/groups", request_body = CreateGroupBody,
    responses((status = 200, description = "the group")), security(("bearer" = [])))]
pub async fn create_group(
    State(state): AppState,
    Authed(identity): Authed,
    Body(body): Body<CreateGroupBody>,
) -> ApiResult {
    let join_mode = match body.join_mode.as_str() {
        "" | "open" => pb::JoinMode::Open,
        "approval" => pb::JoinMode::Approval,
        "invite_only" => pb::JoinMode::InviteOnly,
        other => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("unknown join_mode {other:?}"),
            ));
        }
    };
    let create = pb::CreateGroup {
        name: body.name,
        description: body.description,
        avatar_url: body.avatar,
        member_ids: body.member_ids,
        join_mode: join_mode as i32,
    };
    match group_op(&state, &identity, pb::group_request::Op::Create(create)).await? {
        pb::group_response::Result::Changed(changed) => ok(changed
            .group
            .as_ref()
            .map(group_json)
            .unwrap_or(Value::Null)),
        _ => Err(unexpected()),
    }
}

#[utoipa::path(get, path = "/api/groups/{group_id}", params(("group_id" = String, Path)),
    responses((status = 200, description = "the group")), security(("bearer" = [])))]
pub async fn get_group(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
) -> ApiResult {
    match group_op(
        &state,
        &identity,
        pb::group_request::Op::Get(pb::GetGroup { group_id }),
    )
    .await?
    {
        pb::group_response::Result::Info(info) => ok(group_json(&info)),
        _ => Err(unexpected()),
    }
}

#[utoipa::path(post, path = "/api/groups/{group_id}/join", params(("group_id" = String, Path)), request_body(content = JoinBody, description = "optional"),
    responses((status = 200, description = "{group, seq, pending_approval}")), security(("bearer" = [])))]
pub async fn join_group(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    // The body is optional (SimpleIM sends none).
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        serde_json::from_slice::<JoinBody>(&body)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("invalid JSON body: {e}"),
                )
            })?
            .message
    };
    changed_json(
        group_op(
            &state,
            &identity,
            pb::group_request::Op::Join(pb::JoinGroup { group_id, message }),
        )
        .await?,
    )
}

#[utoipa::path(post, path = "/api/groups/{group_id}/leave", params(("group_id" = String, Path)),
    responses((status = 200, description = "{group, seq}")), security(("bearer" = [])))]
pub async fn leave_group(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
) -> ApiResult {
    changed_json(
        group_op(
            &state,
            &identity,
            pb::group_request::Op::Leave(pb::LeaveGroup { group_id }),
        )
        .await?,
    )
}

#[utoipa::path(get, path = "/api/groups/{group_id}/members", params(("group_id" = String, Path), MembersQuery),
    responses((status = 200, description = "{members, next_after}")), security(("bearer" = [])))]
pub async fn group_members(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> ApiResult {
    let list = pb::ListMembers {
        group_id,
        after_user_id: query.after,
        limit: query.limit,
    };
    match group_op(&state, &identity, pb::group_request::Op::Members(list)).await? {
        pb::group_response::Result::Members(page) => {
            let members: Vec<Value> = page
                .members
                .iter()
                .map(|m| {
                    json!({"user_id": m.user_id, "nickname": m.nickname, "role": role_name(m.role), "joined_at": m.joined_at_ms, "muted_until": m.muted_until_ms})
                })
                .collect();
            ok(json!({"members": members, "next_after": page.next_after_user_id}))
        }
        _ => Err(unexpected()),
    }
}

/// The most ids or seqs one query may list. The broker has its own, usually smaller,
/// limits (`max_presence_query`, `max_receipt_seqs`), answered the same way; this one
/// only keeps absurd query strings from reaching it.
pub const MAX_QUERY_ITEMS: usize = 1000;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message)
}

/// The items of a comma-separated query parameter, trimmed, empty ones skipped.
fn list_param<'a>(name: &str, value: &'a str) -> Result<Vec<&'a str>, ApiError> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() {
        return Err(invalid(format!(
            "`{name}` is required: a comma-separated list"
        )));
    }
    if items.len() > MAX_QUERY_ITEMS {
        return Err(invalid(format!(
            "`{name}` lists {} items; at most {MAX_QUERY_ITEMS} at once",
            items.len()
        )));
    }
    Ok(items)
}

/// A required positive integer (a seq).
fn seq_param(name: &str, value: &str) -> Result<u64, ApiError> {
    match value.trim().parse::<u64>() {
        Ok(seq) if seq > 0 => Ok(seq),
        _ if value.trim().is_empty() => {
            Err(invalid(format!("`{name}` is required: a positive integer")))
        }
        _ => Err(invalid(format!(
            "`{name}` must be a positive integer, not {value:?}"
        ))),
    }
}

/// An optional page size: 0 (the broker's default) when absent.
fn limit_param(value: &str) -> Result<u32, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(0);
    }
    value.parse::<u32>().map_err(|_| {
        invalid(format!(
            "`limit` must be a non-negative integer, not {value:?}"
        ))
    })
}

fn conversation_param(conversation_id: &str) -> Result<(), ApiError> {
    if ids::Conversation::parse(conversation_id).is_none() {
        return Err(invalid(format!(
            "malformed conversation id {conversation_id:?}: single:<user>:<user> or group:<group_id>"
        )));
    }
    Ok(())
}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "{status: ok}")))]
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
        let error = result.expect_err("refused").0;
        assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
        error.message
    }

    #[test]
    fn query_lists_and_seqs_are_validated_with_clear_messages() {
        assert_eq!(
            list_param("seqs", " 3, 4,,5 ").unwrap(),
            vec!["3", "4", "5"]
        );
        assert!(refused(list_param("seqs", " , ")).contains("`seqs` is required"));
        let many = vec!["1"; MAX_QUERY_ITEMS + 1].join(",");
        assert!(refused(list_param("seqs", &many)).contains("at most"));
        assert_eq!(seq_param("seq", "7").unwrap(), 7);
        assert!(refused(seq_param("seq", "")).contains("required"));
        assert!(refused(seq_param("seqs", "x")).contains("\"x\""));
        assert!(refused(seq_param("seq", "0")).contains("positive"));
        assert_eq!(limit_param("").unwrap(), 0);
        assert!(refused(limit_param("-1")).contains("limit"));
        assert!(conversation_param("group:group_x").is_ok());
        assert!(refused(conversation_param("nope")).contains("malformed"));
    }

    #[test]
    fn every_api_operation_documents_its_envelope_and_errors() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let error = json!({"$ref": "#/components/schemas/Error"});
        let envelope = json!({"$ref": "#/components/schemas/Envelope"});
        assert!(doc["components"]["schemas"]["Error"]["required"].is_array());
        for (method, path) in ROUTES {
            if !path.starts_with("/api/") || *path == "/api/openapi.json" {
                continue;
            }
            let responses = &doc["paths"][path][method]["responses"];
            let body = |status: &str| &responses[status]["content"]["application/json"]["schema"];
            assert_eq!(body("400"), &error, "{method} {path}");
            assert_eq!(body("default"), &error, "{method} {path}");
            let secured = doc["paths"][path][method]["security"].is_array();
            if secured {
                assert_eq!(body("401"), &error, "{method} {path}");
            }
            let enveloped = !UNENVELOPED.contains(path);
            assert_eq!(body("200") == &envelope, enveloped, "{method} {path}");
        }
        let recall = &doc["paths"]["/api/conversations/{conversation_id}/messages/{seq}/recall"];
        let params = recall["post"]["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| {
            p["name"] == "conversation_id"
                && p["schema"]["pattern"]
                    .as_str()
                    .unwrap()
                    .starts_with("^(single:user_")
        }));
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "seq" && p["schema"]["minimum"] == 1)
        );
    }

    #[test]
    fn expired_and_conflict_have_their_own_statuses() {
        assert_eq!(status_of(ErrorCode::Expired), StatusCode::GONE);
        assert_eq!(status_of(ErrorCode::Conflict), StatusCode::CONFLICT);
    }

    #[test]
    fn contact_and_logout_errors_have_their_statuses() {
        assert_eq!(status_of(ErrorCode::Blocked), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::ContactsOnly), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::LoggedOut), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(ErrorCode::AccountDisabled), StatusCode::FORBIDDEN);
    }

    #[test]
    fn rate_limited_answers_say_when_to_retry() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
        let mut error = pb::Error::new(ErrorCode::RateLimited, "slow down");
        error.retry_after_ms = 2500;
        let response = ApiError(error).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let plain = ApiError::new(ErrorCode::Forbidden, "no").into_response();
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }
}
