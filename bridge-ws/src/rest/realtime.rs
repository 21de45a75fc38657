//! REST routes of the realtime extras: presence, group online counts, receipts and
//! readers, recall and edit. Each answers exactly as its QUIC request does.

use axum::extract::{Path, State};
use quip_protocol::json::{edit_request_from_json, presence_to_json};
use quip_protocol::{client_frame, ids, pb, server_frame};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{
    ApiError, ApiResult, AppState, Authed, Body, Params, call, conversation_param, invalid,
    limit_param, list_param, ok, seq_param, unexpected,
};
use crate::{BridgeState, Identity};

/// A presence as REST data: the push (type 34) without its type.
fn presence_json(presence: &pb::Presence) -> Value {
    let mut value = presence_to_json(presence);
    if let Value::Object(map) = &mut value {
        map.remove("type");
    }
    value
}

/// The ACK of a recall or edit: the stored event's ids and position.
fn event_ack_json(ack: &pb::SendAck) -> Value {
    json!({
        "client_msg_id": ack.client_msg_id,
        "server_message_id": ack.msg_id,
        "conversation_id": ack.conv_id,
        "seq": ack.seq,
        "timestamp": ack.sent_at_ms,
        "duplicate": ack.duplicate,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PresenceQuery {
    /// Comma-separated user ids, e.g. `user_a,user_b`.
    #[serde(default)]
    user_ids: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct OnlineQuery {
    /// How many online member ids to list (default and max: the broker's
    /// `max_presence_query`).
    #[serde(default)]
    #[param(value_type = Option<u32>)]
    limit: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReceiptsQuery {
    /// Comma-separated seqs, e.g. `3,4,5`.
    #[serde(default)]
    seqs: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReadersQuery {
    /// The message's seq.
    #[serde(default)]
    #[param(value_type = u64)]
    seq: String,
    /// Continue after this user id (`next_after` of the previous page).
    #[serde(default)]
    after: String,
    #[serde(default)]
    #[param(value_type = Option<u32>)]
    limit: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RecallBody {
    /// Makes a resend safe; the broker picks one when absent.
    #[serde(default)]
    client_msg_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EditBody {
    /// The new content: `{text, at_user_ids?, at_all?}` (or the text itself).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    content: Option<Value>,
    /// Shorthand for `content: {text}`.
    #[serde(default)]
    text: Option<String>,
    /// With `text`: the mentioned users.
    #[serde(default)]
    at_user_ids: Option<Vec<String>>,
    /// With `text`: mentions everyone.
    #[serde(default)]
    at_all: Option<bool>,
    /// Makes a resend safe; the broker picks one when absent.
    #[serde(default)]
    client_msg_id: String,
}

#[utoipa::path(get, path = "/api/presence", params(PresenceQuery),
    responses((status = 200, description = "{presences: [{user_id, online, last_seen, devices, version}]}"),
               (status = 400, description = "no user ids, malformed ones, or too many")), security(("bearer" = [])))]
pub async fn presence(
    State(state): AppState,
    Authed(identity): Authed,
    Params(query): Params<PresenceQuery>,
) -> ApiResult {
    let user_ids = list_param("user_ids", &query.user_ids)?;
    if let Some(bad) = user_ids.iter().find(|id| !ids::is_user_id(id)) {
        return Err(invalid(format!("{bad:?} in `user_ids` is not a user id")));
    }
    let request = pb::PresenceRequest {
        user_ids: user_ids.into_iter().map(str::to_owned).collect(),
    };
    let server_frame::Body::Presences(list) =
        call(&state, &identity, client_frame::Body::Presence(request)).await?
    else {
        return Err(unexpected());
    };
    let presences: Vec<Value> = list.presences.iter().map(presence_json).collect();
    ok(json!({"presences": presences}))
}

#[utoipa::path(get, path = "/api/groups/{group_id}/online", params(("group_id" = String, Path), OnlineQuery),
    responses((status = 200, description = "{group_id, member_count, online_count, online_user_ids}"),
               (status = 403, description = "not a member"), (status = 404, description = "no such group")), security(("bearer" = [])))]
pub async fn group_online(
    State(state): AppState,
    Authed(identity): Authed,
    Path(group_id): Path<String>,
    Params(query): Params<OnlineQuery>,
) -> ApiResult {
    if !ids::is_group_id(&group_id) {
        return Err(invalid("malformed group id"));
    }
    let request = pb::GroupPresenceRequest {
        group_id,
        limit: limit_param(&query.limit)?,
    };
    let server_frame::Body::GroupPresence(online) = call(
        &state,
        &identity,
        client_frame::Body::GroupPresence(request),
    )
    .await?
    else {
        return Err(unexpected());
    };
    ok(json!({
        "group_id": online.group_id,
        "member_count": online.member_count,
        "online_count": online.online_count,
        "online_user_ids": online.online_user_ids,
    }))
}

#[utoipa::path(get, path = "/api/conversations/{conversation_id}/receipts", params(("conversation_id" = String, Path), ReceiptsQuery),
    responses((status = 200, description = "{conversation_id, counts: [{seq, read, delivered, recipients}]}"),
               (status = 400, description = "seqs missing, not positive integers, or too many")), security(("bearer" = [])))]
pub async fn receipts(
    State(state): AppState,
    Authed(identity): Authed,
    Path(conversation_id): Path<String>,
    Params(query): Params<ReceiptsQuery>,
) -> ApiResult {
    conversation_param(&conversation_id)?;
    let seqs = list_param("seqs", &query.seqs)?
        .into_iter()
        .map(|seq| seq_param("seqs", seq))
        .collect::<Result<Vec<u64>, ApiError>>()?;
    let request = pb::ReceiptsRequest {
        conv_id: conversation_id,
        seqs,
    };
    let server_frame::Body::ReceiptCounts(counts) =
        call(&state, &identity, client_frame::Body::Receipts(request)).await?
    else {
        return Err(unexpected());
    };
    let items: Vec<Value> = counts
        .counts
        .iter()
        .map(|c| json!({"seq": c.seq, "read": c.read, "delivered": c.delivered, "recipients": c.recipients}))
        .collect();
    ok(json!({"conversation_id": counts.conv_id, "counts": items}))
}

#[utoipa::path(get, path = "/api/conversations/{conversation_id}/readers", params(("conversation_id" = String, Path), ReadersQuery),
    responses((status = 200, description = "{conversation_id, seq, user_ids, next_after}"),
               (status = 400, description = "seq missing or not a positive integer")), security(("bearer" = [])))]
pub async fn readers(
    State(state): AppState,
    Authed(identity): Authed,
    Path(conversation_id): Path<String>,
    Params(query): Params<ReadersQuery>,
) -> ApiResult {
    conversation_param(&conversation_id)?;
    let request = pb::ReadersRequest {
        conv_id: conversation_id,
        seq: seq_param("seq", &query.seq)?,
        after_user_id: query.after,
        limit: limit_param(&query.limit)?,
    };
    let server_frame::Body::Readers(page) =
        call(&state, &identity, client_frame::Body::Readers(request)).await?
    else {
        return Err(unexpected());
    };
    ok(json!({
        "conversation_id": page.conv_id,
        "seq": page.seq,
        "user_ids": page.user_ids,
        "next_after": page.next_after_user_id,
    }))
}

async fn amend(state: &BridgeState, identity: &Identity, body: client_frame::Body) -> ApiResult {
    match call(state, identity, body).await? {
        server_frame::Body::Ack(ack) => ok(event_ack_json(&ack)),
        _ => Err(unexpected()),
    }
}

#[utoipa::path(post, path = "/api/conversations/{conversation_id}/messages/{seq}/recall",
    params(("conversation_id" = String, Path), ("seq" = u64, Path)), request_body(content = RecallBody, description = "optional"),
    responses((status = 200, description = "{client_msg_id, server_message_id, conversation_id, seq, timestamp} of the RECALL event"),
               (status = 403, description = "not the sender nor a group owner/admin"), (status = 404, description = "no such message"),
               (status = 409, description = "already recalled"), (status = 410, description = "the recall window has passed")),
    security(("bearer" = [])))]
pub async fn recall(
    State(state): AppState,
    Authed(identity): Authed,
    Path((conversation_id, seq)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    conversation_param(&conversation_id)?;
    let seq = seq_param("seq", &seq)?;
    // The body is optional.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        RecallBody::default()
    } else {
        serde_json::from_slice::<RecallBody>(&body)
            .map_err(|e| invalid(format!("invalid JSON body: {e}")))?
    };
    let request = pb::RecallRequest {
        conv_id: conversation_id,
        seq,
        client_msg_id: body.client_msg_id,
    };
    amend(&state, &identity, client_frame::Body::Recall(request)).await
}

#[utoipa::path(post, path = "/api/conversations/{conversation_id}/messages/{seq}/edit",
    params(("conversation_id" = String, Path), ("seq" = u64, Path)), request_body = EditBody,
    responses((status = 200, description = "{client_msg_id, server_message_id, conversation_id, seq, timestamp} of the EDIT event"),
               (status = 400, description = "no text, or not a text message"), (status = 403, description = "not the sender"),
               (status = 404, description = "no such message"), (status = 409, description = "the message was recalled"),
               (status = 410, description = "the edit window has passed")),
    security(("bearer" = [])))]
pub async fn edit(
    State(state): AppState,
    Authed(identity): Authed,
    Path((conversation_id, seq)): Path<(String, String)>,
    Body(body): Body<EditBody>,
) -> ApiResult {
    conversation_param(&conversation_id)?;
    let seq = seq_param("seq", &seq)?;
    let content = match (body.content, body.text) {
        (Some(content), _) => content,
        (None, Some(text)) => json!({
            "text": text,
            "at_user_ids": body.at_user_ids.unwrap_or_default(),
            "at_all": body.at_all.unwrap_or(false),
        }),
        (None, None) => {
            return Err(invalid(
                "the body needs content: {text, at_user_ids?, at_all?} or text",
            ));
        }
    };
    let mut frame = serde_json::Map::new();
    frame.insert("conversation_id".into(), json!(conversation_id));
    frame.insert("seq".into(), json!(seq));
    frame.insert("content".into(), content);
    frame.insert("client_msg_id".into(), json!(body.client_msg_id));
    let request = edit_request_from_json(&frame).map_err(|e| invalid(e.0))?;
    amend(&state, &identity, client_frame::Body::Edit(request)).await
}
