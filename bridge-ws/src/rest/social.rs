//! Contacts, blocking, devices and the admin back office over REST: each route is one
//! `ContactRequest`, `AccountRequest` or `AdminRequest` through the backend.

use axum::extract::{Path, State};
use quip_protocol::pb::{account_response, admin_response, contact_response};
use quip_protocol::{client_frame, ids, pb, server_frame};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    ApiError, ApiResult, AppState, Authed, Body, Params, call, group_json, invalid, limit_param,
    ok, unexpected,
};
use crate::{BridgeState, Identity};

/// An op these routes send: a contact, account or admin op, wrapped into its request
/// and unwrapped from its response.
trait Op {
    type Result;
    fn into_body(self) -> client_frame::Body;
    fn result(answer: server_frame::Body) -> Option<Self::Result>;
}

impl Op for pb::contact_request::Op {
    type Result = contact_response::Result;
    fn into_body(self) -> client_frame::Body {
        client_frame::Body::Contact(pb::ContactRequest { op: Some(self) })
    }
    fn result(answer: server_frame::Body) -> Option<Self::Result> {
        match answer {
            server_frame::Body::Contact(response) => response.result,
            _ => None,
        }
    }
}

impl Op for pb::account_request::Op {
    type Result = account_response::Result;
    fn into_body(self) -> client_frame::Body {
        client_frame::Body::Account(pb::AccountRequest { op: Some(self) })
    }
    fn result(answer: server_frame::Body) -> Option<Self::Result> {
        match answer {
            server_frame::Body::Account(response) => response.result,
            _ => None,
        }
    }
}

impl Op for pb::admin_request::Op {
    type Result = admin_response::Result;
    fn into_body(self) -> client_frame::Body {
        client_frame::Body::Admin(pb::AdminRequest { op: Some(self) })
    }
    fn result(answer: server_frame::Body) -> Option<Self::Result> {
        match answer {
            server_frame::Body::Admin(response) => response.result,
            _ => None,
        }
    }
}

/// Sends `op` through the backend and answers with the `data` that `answer` makes of
/// its result; a result `answer` does not expect (`None`) is an unexpected answer.
async fn run<O: Op>(
    state: &BridgeState,
    identity: &Identity,
    op: O,
    answer: impl FnOnce(O::Result) -> Option<Value>,
) -> ApiResult {
    let result = O::result(call(state, identity, op.into_body()).await?).ok_or_else(unexpected)?;
    answer(result).map_or_else(|| Err(unexpected()), ok)
}

/// A change that answers `{}`: a contact change's `ContactDone`.
fn contact_done(result: contact_response::Result) -> Option<Value> {
    matches!(result, contact_response::Result::Done(_)).then(|| json!({}))
}

/// A change that answers `{}`: an admin action's `AdminDone`.
fn admin_done(result: admin_response::Result) -> Option<Value> {
    matches!(result, admin_response::Result::Done(_)).then(|| json!({}))
}

/// The contact settings: `{friends_only_dm}`.
fn settings_json(result: contact_response::Result) -> Option<Value> {
    match result {
        contact_response::Result::Settings(settings) => {
            Some(json!({"friends_only_dm": settings.friends_only_dm}))
        }
        _ => None,
    }
}

/// Sessions closed by a logout: `{sessions}`.
fn logged_out_json(result: account_response::Result) -> Option<Value> {
    match result {
        account_response::Result::LoggedOut(out) => Some(json!({"sessions": out.sessions})),
        _ => None,
    }
}

/// A user id in a path or body: `user_…`.
fn user_param(name: &str, user_id: &str) -> Result<String, ApiError> {
    if user_id.trim().is_empty() {
        return Err(invalid(format!("`{name}` is required: a user id (user_…)")));
    }
    if !ids::is_user_id(user_id) {
        return Err(invalid(format!(
            "`{name}` must be a user id (user_…), not {user_id:?}"
        )));
    }
    Ok(user_id.to_owned())
}

/// Another user's id: the caller cannot befriend or block themselves.
fn other_user_param(identity: &Identity, name: &str, user_id: &str) -> Result<String, ApiError> {
    let user_id = user_param(name, user_id)?;
    if user_id == identity.user_id {
        return Err(invalid(format!(
            "`{name}` must be another user's id, not your own"
        )));
    }
    Ok(user_id)
}

fn group_param(group_id: &str) -> Result<String, ApiError> {
    if !ids::is_group_id(group_id) {
        return Err(invalid(format!(
            "`group_id` must be a group id (group_…), not {group_id:?}"
        )));
    }
    Ok(group_id.to_owned())
}

fn device_param(device_id: &str) -> Result<String, ApiError> {
    if !ids::is_device_id(device_id) {
        return Err(invalid(format!(
            "`device_id` must be 1 to 64 of [A-Za-z0-9_.-], not {device_id:?}"
        )));
    }
    Ok(device_id.to_owned())
}

/// A JSON body that may be absent (or blank): `T::default()` then.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &axum::body::Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<T>(body).map_err(|e| invalid(format!("invalid JSON body: {e}")))
}

fn request_json(request: &pb::ContactRequestInfo) -> Value {
    json!({
        "from_user_id": request.from_user_id,
        "to_user_id": request.to_user_id,
        "message": request.message,
        "requested_at": request.requested_at_ms,
        "username": request.username,
        "nickname": request.nickname,
    })
}

fn friend_json(friend: &pb::Friend) -> Value {
    let presence = friend.presence.clone().unwrap_or_default();
    json!({
        "user_id": friend.user_id,
        "username": friend.username,
        "nickname": friend.nickname,
        "since": friend.since_ms,
        "online": presence.online,
        "last_seen": presence.last_seen_ms,
        "blocked": friend.blocked,
    })
}

fn blocked_json(blocked: &pb::BlockedUser) -> Value {
    json!({
        "user_id": blocked.user_id,
        "username": blocked.username,
        "nickname": blocked.nickname,
        "blocked_at": blocked.blocked_at_ms,
    })
}

fn device_json(device: &pb::DeviceInfo) -> Value {
    json!({
        "device_id": device.device_id,
        "client_version": device.client_version,
        "first_seen": device.first_seen_ms,
        "last_seen": device.last_seen_ms,
        "online": device.online,
        "current": device.current,
        "transport": device.transport,
    })
}

fn admin_user_json(user: &pb::AdminUser) -> Value {
    json!({
        "user_id": user.user_id,
        "username": user.username,
        "nickname": user.nickname,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at_ms,
        "online": user.online,
        "sessions": user.sessions,
        "last_seen": user.last_seen_ms,
    })
}

fn stats_json(stats: &pb::ServerStats) -> Value {
    json!({
        "quic_sessions": stats.quic_sessions,
        "websocket_sessions": stats.websocket_sessions,
        "users_online": stats.users_online,
        "messages_per_second": stats.messages_per_second,
        "messages_since_start": stats.messages_since_start,
        "store_bytes": stats.store_bytes,
        "uptime_ms": stats.uptime_ms,
        "active_calls": stats.active_calls,
        "slow_consumer_closes": stats.slow_consumer_closes,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FriendRequestBody {
    /// The user to befriend.
    #[serde(default)]
    user_id: String,
    /// Shown to them with the request; at most 256 bytes (the broker's
    /// `contact_request_max_bytes`).
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContactSettingsBody {
    /// Only friends may send me 1:1 messages (others get 403 CONTACTS_ONLY).
    friends_only_dm: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BlockBody {
    /// The user to block.
    #[serde(default)]
    user_id: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LogoutAllBody {
    /// Keep the device making this request logged in.
    #[serde(default)]
    keep_current: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordBody {
    #[serde(default)]
    new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleBody {
    /// "user" or "admin".
    #[serde(default)]
    role: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AdminSearchQuery {
    /// A case-insensitive substring (username or nickname; group name); empty: all.
    #[serde(default)]
    query: String,
    /// Continue after this id (`next_after` of the previous page).
    #[serde(default)]
    after: String,
    /// Page size (default 50, at most 200).
    #[serde(default)]
    #[param(value_type = Option<u32>)]
    limit: String,
}

#[utoipa::path(get, path = "/api/contacts",
    responses((status = 200, description = "{friends: [{user_id, username, nickname, since, online, last_seen, blocked}]}")),
    security(("bearer" = [])))]
pub async fn friends(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    let op = pb::contact_request::Op::ListFriends(pb::ListFriends {});
    run(&state, &identity, op, |result| match result {
        contact_response::Result::Friends(list) => {
            let friends: Vec<Value> = list.friends.iter().map(friend_json).collect();
            Some(json!({"friends": friends}))
        }
        _ => None,
    })
    .await
}

#[utoipa::path(get, path = "/api/contacts/requests",
    responses((status = 200, description = "{incoming: [req], outgoing: [req]}, req = {from_user_id, to_user_id, message, requested_at, username, nickname}, newest first")),
    security(("bearer" = [])))]
pub async fn contact_requests(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    let op = pb::contact_request::Op::ListRequests(pb::ListContactRequests {});
    run(&state, &identity, op, |result| match result {
        contact_response::Result::Requests(lists) => {
            let incoming: Vec<Value> = lists.incoming.iter().map(request_json).collect();
            let outgoing: Vec<Value> = lists.outgoing.iter().map(request_json).collect();
            Some(json!({"incoming": incoming, "outgoing": outgoing}))
        }
        _ => None,
    })
    .await
}

#[utoipa::path(post, path = "/api/contacts/requests", request_body = FriendRequestBody,
    responses((status = 200, description = "{now_friends}: true when they had already asked you"),
               (status = 400, description = "no user id, or your own"),
               (status = 413, description = "a message over the limit (256 bytes by default)"),
               (status = 403, description = "BLOCKED: they blocked you"), (status = 404, description = "no such user"),
               (status = 409, description = "already friends")),
    security(("bearer" = [])))]
pub async fn send_contact_request(
    State(state): AppState,
    Authed(identity): Authed,
    Body(body): Body<FriendRequestBody>,
) -> ApiResult {
    // The message's length limit is the broker's (`contact_request_max_bytes`).
    let user_id = other_user_param(&identity, "user_id", &body.user_id)?;
    let send = pb::SendContactRequest {
        user_id,
        message: body.message,
    };
    let op = pb::contact_request::Op::SendRequest(send);
    run(&state, &identity, op, |result| match result {
        contact_response::Result::Done(done) => Some(json!({"now_friends": done.now_friends})),
        _ => None,
    })
    .await
}

async fn decide(
    state: &BridgeState,
    identity: &Identity,
    user_id: &str,
    accept: bool,
) -> ApiResult {
    let user_id = user_param("user_id", user_id)?;
    let decide = pb::DecideContactRequest { user_id, accept };
    run(
        state,
        identity,
        pb::contact_request::Op::Decide(decide),
        contact_done,
    )
    .await
}

#[utoipa::path(post, path = "/api/contacts/requests/{user_id}/accept", params(("user_id" = String, Path, description = "who asked")),
    responses((status = 200, description = "{}: you are friends"), (status = 404, description = "no request from that user")),
    security(("bearer" = [])))]
pub async fn accept_contact_request(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    decide(&state, &identity, &user_id, true).await
}

#[utoipa::path(post, path = "/api/contacts/requests/{user_id}/reject", params(("user_id" = String, Path, description = "who asked")),
    responses((status = 200, description = "{} (they are not told)"), (status = 404, description = "no request from that user")),
    security(("bearer" = [])))]
pub async fn reject_contact_request(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    decide(&state, &identity, &user_id, false).await
}

#[utoipa::path(delete, path = "/api/contacts/requests/{user_id}", params(("user_id" = String, Path, description = "whom you asked")),
    responses((status = 200, description = "{}: your request is withdrawn"), (status = 404, description = "no request of yours to that user")),
    security(("bearer" = [])))]
pub async fn cancel_contact_request(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    let user_id = user_param("user_id", &user_id)?;
    let op = pb::contact_request::Op::Cancel(pb::CancelContactRequest { user_id });
    run(&state, &identity, op, contact_done).await
}

#[utoipa::path(delete, path = "/api/contacts/{user_id}", params(("user_id" = String, Path)),
    responses((status = 200, description = "{}: no longer friends"), (status = 404, description = "not a friend")),
    security(("bearer" = [])))]
pub async fn delete_friend(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    let user_id = user_param("user_id", &user_id)?;
    let op = pb::contact_request::Op::DeleteFriend(pb::DeleteFriend { user_id });
    run(&state, &identity, op, contact_done).await
}

#[utoipa::path(get, path = "/api/contacts/settings",
    responses((status = 200, description = "{friends_only_dm}")), security(("bearer" = [])))]
pub async fn contact_settings(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    let op = pb::contact_request::Op::GetSettings(pb::GetContactSettings {});
    run(&state, &identity, op, settings_json).await
}

#[utoipa::path(put, path = "/api/contacts/settings", request_body = ContactSettingsBody,
    responses((status = 200, description = "{friends_only_dm}: the settings now"), (status = 400, description = "friends_only_dm missing")),
    security(("bearer" = [])))]
pub async fn set_contact_settings(
    State(state): AppState,
    Authed(identity): Authed,
    Body(body): Body<ContactSettingsBody>,
) -> ApiResult {
    let friends_only_dm = body
        .friends_only_dm
        .ok_or_else(|| invalid("`friends_only_dm` is required: true or false"))?;
    let set = pb::SetContactSettings {
        settings: Some(pb::ContactSettings { friends_only_dm }),
    };
    let op = pb::contact_request::Op::SetSettings(set);
    run(&state, &identity, op, settings_json).await
}

#[utoipa::path(get, path = "/api/blocks",
    responses((status = 200, description = "{blocked: [{user_id, username, nickname, blocked_at}]}")),
    security(("bearer" = [])))]
pub async fn blocks(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    let op = pb::contact_request::Op::ListBlocked(pb::ListBlocked {});
    run(&state, &identity, op, |result| match result {
        contact_response::Result::Blocked(list) => {
            let blocked: Vec<Value> = list.blocked.iter().map(blocked_json).collect();
            Some(json!({"blocked": blocked}))
        }
        _ => None,
    })
    .await
}

#[utoipa::path(post, path = "/api/blocks", request_body = BlockBody,
    responses((status = 200, description = "{}"), (status = 400, description = "no user id, or your own"),
               (status = 404, description = "no such user")),
    security(("bearer" = [])))]
pub async fn block(
    State(state): AppState,
    Authed(identity): Authed,
    Body(body): Body<BlockBody>,
) -> ApiResult {
    let user_id = other_user_param(&identity, "user_id", &body.user_id)?;
    let op = pb::contact_request::Op::Block(pb::BlockUser { user_id });
    run(&state, &identity, op, contact_done).await
}

#[utoipa::path(delete, path = "/api/blocks/{user_id}", params(("user_id" = String, Path)),
    responses((status = 200, description = "{}")), security(("bearer" = [])))]
pub async fn unblock(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    let user_id = user_param("user_id", &user_id)?;
    let op = pb::contact_request::Op::Unblock(pb::UnblockUser { user_id });
    run(&state, &identity, op, contact_done).await
}

#[utoipa::path(get, path = "/api/devices",
    responses((status = 200, description = "{devices: [{device_id, client_version, first_seen, last_seen, online, current, transport}]}")),
    security(("bearer" = [])))]
pub async fn devices(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    let op = pb::account_request::Op::ListDevices(pb::ListDevices {});
    run(&state, &identity, op, |result| match result {
        account_response::Result::Devices(list) => {
            let devices: Vec<Value> = list.devices.iter().map(device_json).collect();
            Some(json!({"devices": devices}))
        }
        _ => None,
    })
    .await
}

#[utoipa::path(post, path = "/api/devices/{device_id}/logout", params(("device_id" = String, Path)),
    responses((status = 200, description = "{sessions}: sessions closed (their WebSockets close with 4028); the device's tokens stop working"),
               (status = 404, description = "no such device")),
    security(("bearer" = [])))]
pub async fn logout_device(
    State(state): AppState,
    Authed(identity): Authed,
    Path(device_id): Path<String>,
) -> ApiResult {
    let device_id = device_param(&device_id)?;
    let op = pb::account_request::Op::LogoutDevice(pb::LogoutDevice { device_id });
    run(&state, &identity, op, logged_out_json).await
}

#[utoipa::path(post, path = "/api/devices/logout-all", request_body(content = LogoutAllBody, description = "optional"),
    responses((status = 200, description = "{sessions}: every device logged out (but this one with keep_current)")),
    security(("bearer" = [])))]
pub async fn logout_all(
    State(state): AppState,
    Authed(identity): Authed,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: LogoutAllBody = optional_body(&body)?;
    let op = pb::account_request::Op::LogoutEverywhere(pb::LogoutEverywhere {
        keep_current: body.keep_current,
    });
    run(&state, &identity, op, logged_out_json).await
}

#[utoipa::path(get, path = "/api/admin/users", params(AdminSearchQuery),
    responses((status = 200, description = "{users: [{user_id, username, nickname, role, disabled, created_at, online, sessions, last_seen}], next_after}"),
               (status = 403, description = "not an admin")),
    security(("bearer" = [])))]
pub async fn admin_users(
    State(state): AppState,
    Authed(identity): Authed,
    Params(query): Params<AdminSearchQuery>,
) -> ApiResult {
    let after_user_id = if query.after.is_empty() {
        String::new()
    } else {
        user_param("after", &query.after)?
    };
    let list = pb::ListUsers {
        query: query.query,
        after_user_id,
        limit: limit_param(&query.limit)?,
    };
    let op = pb::admin_request::Op::ListUsers(list);
    run(&state, &identity, op, |result| match result {
        admin_response::Result::Users(page) => {
            let users: Vec<Value> = page.users.iter().map(admin_user_json).collect();
            Some(json!({"users": users, "next_after": page.next_after_user_id}))
        }
        _ => None,
    })
    .await
}

#[utoipa::path(get, path = "/api/admin/users/{user_id}", params(("user_id" = String, Path)),
    responses((status = 200, description = "{user: admin user, devices: [device], groups}"),
               (status = 403, description = "not an admin"), (status = 404, description = "no such user")),
    security(("bearer" = [])))]
pub async fn admin_user(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    let user_id = user_param("user_id", &user_id)?;
    let op = pb::admin_request::Op::GetUser(pb::GetUser { user_id });
    run(&state, &identity, op, |result| match result {
        admin_response::Result::User(detail) => {
            let devices: Vec<Value> = detail.devices.iter().map(device_json).collect();
            Some(json!({
                "user": detail.user.as_ref().map(admin_user_json),
                "devices": devices,
                "groups": detail.groups,
            }))
        }
        _ => None,
    })
    .await
}

async fn set_disabled(
    state: &BridgeState,
    identity: &Identity,
    user_id: &str,
    disabled: bool,
) -> ApiResult {
    let user_id = user_param("user_id", user_id)?;
    let set = pb::SetUserDisabled { user_id, disabled };
    run(
        state,
        identity,
        pb::admin_request::Op::SetDisabled(set),
        admin_done,
    )
    .await
}

#[utoipa::path(post, path = "/api/admin/users/{user_id}/disable", params(("user_id" = String, Path)),
    responses((status = 200, description = "{}: their sessions close (WebSocket 4018), their tokens stop working, login is refused (403 ACCOUNT_DISABLED)"),
               (status = 403, description = "not an admin"), (status = 404, description = "no such user")),
    security(("bearer" = [])))]
pub async fn admin_disable_user(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    set_disabled(&state, &identity, &user_id, true).await
}

#[utoipa::path(post, path = "/api/admin/users/{user_id}/enable", params(("user_id" = String, Path)),
    responses((status = 200, description = "{}"), (status = 403, description = "not an admin"), (status = 404, description = "no such user")),
    security(("bearer" = [])))]
pub async fn admin_enable_user(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
) -> ApiResult {
    set_disabled(&state, &identity, &user_id, false).await
}

#[utoipa::path(post, path = "/api/admin/users/{user_id}/password", params(("user_id" = String, Path)), request_body = PasswordBody,
    responses((status = 200, description = "{}: the password is set, the user's tokens revoked and sessions closed (4028)"),
               (status = 400, description = "password missing or outside the length limits"),
               (status = 403, description = "not an admin"), (status = 404, description = "no such user")),
    security(("bearer" = [])))]
pub async fn admin_reset_password(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
    Body(body): Body<PasswordBody>,
) -> ApiResult {
    let user_id = user_param("user_id", &user_id)?;
    if body.new_password.is_empty() {
        return Err(invalid("`new_password` is required"));
    }
    let reset = pb::ResetPassword {
        user_id,
        new_password: body.new_password,
    };
    let op = pb::admin_request::Op::ResetPassword(reset);
    run(&state, &identity, op, admin_done).await
}

#[utoipa::path(post, path = "/api/admin/users/{user_id}/role", params(("user_id" = String, Path)), request_body = RoleBody,
    responses((status = 200, description = "{}"), (status = 400, description = "role is not \"user\" or \"admin\""),
               (status = 403, description = "not an admin"), (status = 404, description = "no such user")),
    security(("bearer" = [])))]
pub async fn admin_set_role(
    State(state): AppState,
    Authed(identity): Authed,
    Path(user_id): Path<String>,
    Body(body): Body<RoleBody>,
) -> ApiResult {
    let user_id = user_param("user_id", &user_id)?;
    if !matches!(body.role.as_str(), "user" | "admin") {
        return Err(invalid(format!(
            "`role` must be \"user\" or \"admin\", not {:?}",
            body.role
        )));
    }
    let set = pb::SetUserRole {
        user_id,
        role: body.role,
    };
    let op = pb::admin_request::Op::SetRole(set);
    run(&state, &identity, op, admin_done).await
}

#[utoipa::path(get, path = "/api/admin/groups", params(AdminSearchQuery),
    responses((status = 200, description = "{groups: [group JSON], next_after}"), (status = 403, description = "not an admin")),
    security(("bearer" = [])))]
pub async fn admin_groups(
    State(state): AppState,
    Authed(identity): Authed,
    Params(query): Params<AdminSearchQuery>,
) -> ApiResult {
    let after_group_id = if query.after.is_empty() {
        String::new()
    } else {
        group_param(&query.after)
            .map_err(|_| invalid(format!("`after` must be a group id, not {:?}", query.after)))?
    };
    let list = pb::ListAllGroups {
        query: query.query,
        after_group_id,
        limit: limit_param(&query.limit)?,
    };
    let op = pb::admin_request::Op::ListGroups(list);
    run(&state, &identity, op, |result| match result {
        admin_response::Result::Groups(page) => {
            let groups: Vec<Value> = page.groups.iter().map(group_json).collect();
            Some(json!({"groups": groups, "next_after": page.next_after_group_id}))
        }
        _ => None,
    })
    .await
}

#[utoipa::path(post, path = "/api/admin/groups/{group_id}/dissolve", params(("group_id" = String, Path)),
    responses((status = 200, description = "{}: dissolved, with a SYSTEM message to its members"),
               (status = 403, description = "not an admin"), (status = 404, description = "no such group")),
    security(("bearer" = [])))]
pub async fn admin_dissolve_group(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
) -> ApiResult {
    let group_id = group_param(&group_id)?;
    let op = pb::admin_request::Op::DissolveGroup(pb::AdminDissolveGroup { group_id });
    run(&state, &identity, op, admin_done).await
}

#[utoipa::path(get, path = "/api/admin/stats",
    responses((status = 200, description = "{quic_sessions, websocket_sessions, users_online, messages_per_second, messages_since_start, store_bytes, uptime_ms, active_calls, slow_consumer_closes}"),
               (status = 403, description = "not an admin")),
    security(("bearer" = [])))]
pub async fn admin_stats(State(state): AppState, Authed(identity): Authed) -> ApiResult {
    let op = pb::admin_request::Op::Stats(pb::GetServerStats {});
    run(&state, &identity, op, |result| match result {
        admin_response::Result::Stats(stats) => Some(stats_json(&stats)),
        _ => None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use quip_protocol::ErrorCode;

    fn refused<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
        let error = result.expect_err("refused").0;
        assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
        error.message
    }

    #[test]
    fn ids_are_validated_with_clear_messages() {
        let me = Identity {
            user_id: "user_me".into(),
            device_id: "d1".into(),
        };
        assert_eq!(user_param("user_id", "user_x").unwrap(), "user_x");
        assert!(refused(user_param("user_id", "")).contains("required"));
        assert!(refused(user_param("user_id", "bob")).contains("\"bob\""));
        assert!(refused(other_user_param(&me, "user_id", "user_me")).contains("your own"));
        assert!(refused(group_param("user_x")).contains("group id"));
        assert!(refused(device_param("a b")).contains("device_id"));
        assert_eq!(device_param("web-1").unwrap(), "web-1");
        let blank: LogoutAllBody = optional_body(&axum::body::Bytes::from_static(b"  ")).unwrap();
        assert!(!blank.keep_current);
        let keep: LogoutAllBody = optional_body(&axum::body::Bytes::from_static(
            br#"{"keep_current": true}"#,
        ))
        .unwrap();
        assert!(keep.keep_current);
        assert!(
            refused(optional_body::<LogoutAllBody>(
                &axum::body::Bytes::from_static(b"{")
            ))
            .contains("JSON")
        );
    }

    #[test]
    fn answers_render_as_the_contract_says() {
        let friend = friend_json(&pb::Friend {
            user_id: "user_b".into(),
            username: "bob".into(),
            nickname: "Bob".into(),
            since_ms: 5,
            presence: Some(pb::Presence {
                user_id: "user_b".into(),
                online: false,
                last_seen_ms: 9,
                devices: 0,
                version: 1,
            }),
            blocked: true,
        });
        assert_eq!(
            friend,
            json!({"user_id": "user_b", "username": "bob", "nickname": "Bob", "since": 5,
                   "online": false, "last_seen": 9, "blocked": true})
        );
        let stats = stats_json(&pb::ServerStats {
            messages_per_second: 1.5,
            ..Default::default()
        });
        assert_eq!(stats["messages_per_second"], 1.5);
        assert_eq!(stats.as_object().unwrap().len(), 9);
    }
}
