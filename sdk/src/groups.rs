//! Groups: one typed [`Client`] method per `GroupRequest` operation, plus sending to
//! groups and sending with mentions.
//!
//! # Resending across reconnects
//!
//! Reads (`my_groups`, `group_info`, `group_members`, `join_requests`) are idempotent,
//! so they are written again on the next connection if the current one drops, like
//! history requests. Mutations are **not**: the broker has no dedup key for them, and
//! a `create_group` resent after a reconnect could create a second group (an `invite`
//! could post a second SYSTEM message, ...). If the connection drops while a mutation
//! is in flight it fails with [`SdkError::Disconnected`] and the outcome is unknown:
//! check with a read (e.g. [`my_groups`](Client::my_groups)) before retrying.
//!
//! Every mutation answers with [`GroupChanged`](pb::GroupChanged): the group as it is
//! now and the seq of the SYSTEM message that recorded the change in the group
//! conversation (`group:<group_id>`). Every member's devices, including the one that
//! made the change, also receive that SYSTEM message as an
//! [`Event::Message`](crate::Event::Message), in order with the chat.

use quip_protocol::pb::{self, group_request::Op, group_response::Result as GroupResult};
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

/// Pass to [`Client::mute_member`] to mute until explicitly unmuted.
pub const MUTE_INDEFINITELY: u64 = u64::MAX;

/// Pass to [`Client::mute_member`] to unmute.
pub const UNMUTE: u64 = 0;

/// The changes of [`Client::update_group`]; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub avatar_url: Option<String>,
    pub join_mode: Option<pb::JoinMode>,
}

impl GroupUpdate {
    /// The wire request for `group_id` (an unset join mode is "unspecified", which
    /// the broker reads as unchanged).
    fn into_request(self, group_id: &str) -> pb::UpdateGroup {
        pb::UpdateGroup {
            group_id: group_id.to_string(),
            name: self.name,
            description: self.description,
            avatar_url: self.avatar_url,
            join_mode: self.join_mode.unwrap_or(pb::JoinMode::Unspecified) as i32,
        }
    }
}

/// Whether an operation may be written again on a new connection (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Mutation,
}

impl Kind {
    fn resend(self) -> bool {
        self == Kind::Read
    }
}

impl Client {
    /// Creates a group owned by this user with `member_ids` as its first members
    /// (each must be an existing user, else `NOT_FOUND`; the creator may be left
    /// out). `JoinMode::Unspecified` means open.
    pub async fn create_group(
        &self,
        name: &str,
        description: &str,
        member_ids: &[String],
        join_mode: pb::JoinMode,
    ) -> Result<pb::GroupChanged> {
        let op = Op::Create(pb::CreateGroup {
            name: name.to_string(),
            description: description.to_string(),
            avatar_url: String::new(),
            member_ids: member_ids.to_vec(),
            join_mode: join_mode as i32,
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// The groups this user is a member of, sorted by name.
    pub async fn my_groups(&self) -> Result<Vec<pb::GroupInfo>> {
        let op = Op::ListMine(pb::ListMyGroups {});
        match self.group_request(op, Kind::Read).await? {
            GroupResult::List(list) => Ok(list.groups),
            _ => Err(unexpected("expected GroupResponse.list")),
        }
    }

    /// One group (also for non-members: `my_role` is then unspecified).
    pub async fn group_info(&self, group_id: &str) -> Result<pb::GroupInfo> {
        let op = Op::Get(pb::GetGroup {
            group_id: group_id.to_string(),
        });
        info(self.group_request(op, Kind::Read).await?)
    }

    /// A page of members ordered by user id, starting after `after_user_id` (empty:
    /// from the start); `limit` 0 is the broker's default. Continue with the page's
    /// `next_after_user_id` until it is empty.
    pub async fn group_members(
        &self,
        group_id: &str,
        after_user_id: &str,
        limit: u32,
    ) -> Result<pb::MemberPage> {
        let op = Op::Members(pb::ListMembers {
            group_id: group_id.to_string(),
            after_user_id: after_user_id.to_string(),
            limit,
        });
        match self.group_request(op, Kind::Read).await? {
            GroupResult::Members(page) => Ok(page),
            _ => Err(unexpected("expected GroupResponse.members")),
        }
    }

    /// Joins a group. In an approval-mode group this files a request instead
    /// (`pending_approval` is set, `seq` is 0) and `message` is shown to the approvers.
    pub async fn join_group(&self, group_id: &str, message: &str) -> Result<pb::GroupChanged> {
        let op = Op::Join(pb::JoinGroup {
            group_id: group_id.to_string(),
            message: message.to_string(),
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Leaves a group (an owner must transfer ownership or dissolve instead).
    pub async fn leave_group(&self, group_id: &str) -> Result<pb::GroupChanged> {
        let op = Op::Leave(pb::LeaveGroup {
            group_id: group_id.to_string(),
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Adds users to a group directly.
    pub async fn invite(&self, group_id: &str, user_ids: &[String]) -> Result<pb::GroupChanged> {
        let op = Op::Invite(pb::InviteMembers {
            group_id: group_id.to_string(),
            user_ids: user_ids.to_vec(),
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Removes a member (owners and admins).
    pub async fn kick(&self, group_id: &str, user_id: &str) -> Result<pb::GroupChanged> {
        let op = Op::Kick(pb::KickMember {
            group_id: group_id.to_string(),
            user_id: user_id.to_string(),
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Ends the group for everyone (owner only); afterwards it can no longer change.
    pub async fn dissolve_group(&self, group_id: &str) -> Result<pb::GroupChanged> {
        let op = Op::Dissolve(pb::DissolveGroup {
            group_id: group_id.to_string(),
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Makes another member the owner; the previous owner becomes an admin.
    pub async fn transfer_group(
        &self,
        group_id: &str,
        new_owner_id: &str,
    ) -> Result<pb::GroupChanged> {
        let op = Op::Transfer(pb::TransferOwnership {
            group_id: group_id.to_string(),
            new_owner_id: new_owner_id.to_string(),
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Changes the group's name, description, avatar or join mode.
    pub async fn update_group(
        &self,
        group_id: &str,
        update: GroupUpdate,
    ) -> Result<pb::GroupChanged> {
        let op = Op::Update(update.into_request(group_id));
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Makes a member an admin or a plain member (`MEMBER` or `ADMIN`; ownership
    /// moves only with [`transfer_group`](Self::transfer_group)).
    pub async fn set_member_role(
        &self,
        group_id: &str,
        user_id: &str,
        role: pb::GroupRole,
    ) -> Result<pb::GroupChanged> {
        let op = Op::SetRole(pb::SetMemberRole {
            group_id: group_id.to_string(),
            user_id: user_id.to_string(),
            role: role as i32,
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Mutes a member until `until_ms` (Unix milliseconds); [`UNMUTE`] (0) unmutes,
    /// [`MUTE_INDEFINITELY`] (`u64::MAX`) mutes until unmuted.
    pub async fn mute_member(
        &self,
        group_id: &str,
        user_id: &str,
        until_ms: u64,
    ) -> Result<pb::GroupChanged> {
        let op = Op::Mute(pb::MuteMember {
            group_id: group_id.to_string(),
            user_id: user_id.to_string(),
            until_ms,
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// While set, only owners and admins may send to the group.
    pub async fn set_mute_all(&self, group_id: &str, mute_all: bool) -> Result<pb::GroupChanged> {
        let op = Op::MuteAll(pb::SetMuteAll {
            group_id: group_id.to_string(),
            mute_all,
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Pending join requests of an approval-mode group (owners and admins).
    pub async fn join_requests(&self, group_id: &str) -> Result<Vec<pb::JoinRequestInfo>> {
        let op = Op::JoinRequests(pb::ListJoinRequests {
            group_id: group_id.to_string(),
        });
        match self.group_request(op, Kind::Read).await? {
            GroupResult::JoinRequests(list) => Ok(list.requests),
            _ => Err(unexpected("expected GroupResponse.join_requests")),
        }
    }

    /// Accepts (the user becomes a member) or rejects a pending join request.
    pub async fn decide_join_request(
        &self,
        group_id: &str,
        user_id: &str,
        accept: bool,
    ) -> Result<pb::GroupChanged> {
        let op = Op::Decide(pb::DecideJoinRequest {
            group_id: group_id.to_string(),
            user_id: user_id.to_string(),
            accept,
        });
        changed(self.group_request(op, Kind::Mutation).await?)
    }

    /// Sends a text message to a group (`group_…`). Fails with `MUTED` while the
    /// sender is muted or the group is muted for members.
    pub async fn send_group_text(&self, group_id: &str, text: &str) -> Result<pb::SendAck> {
        self.send_text(group_id, text).await
    }

    /// Sends a text that mentions users by id and/or everyone (`mention_all`); the
    /// mentioned users' conversation summaries get `mentioned` set until they read it.
    /// Like every send, it is resent safely across reconnects.
    pub async fn send_text_with_mentions(
        &self,
        to: &str,
        text: &str,
        mention_user_ids: &[String],
        mention_all: bool,
    ) -> Result<pb::SendAck> {
        self.send(pb::SendRequest {
            to: to.to_string(),
            kind: pb::MessageKind::Text as i32,
            content: Some(pb::send_request::Content::Text(pb::TextContent {
                text: text.to_string(),
                mention_user_ids: mention_user_ids.to_vec(),
                mention_all,
            })),
            client_msg_id: String::new(),
        })
        .await
    }

    async fn group_request(&self, op: Op, kind: Kind) -> Result<GroupResult> {
        let body = client_frame::Body::Group(pb::GroupRequest { op: Some(op) });
        group_result(self.shared.request(body, kind.resend()).await?)
    }
}

/// The `GroupResponse` result of a response body.
fn group_result(body: server_frame::Body) -> Result<GroupResult> {
    match body {
        server_frame::Body::Group(pb::GroupResponse {
            result: Some(result),
        }) => Ok(result),
        server_frame::Body::Group(_) => Err(SdkError::UnexpectedResponse(
            "GroupResponse without a result",
        )),
        _ => Err(SdkError::UnexpectedResponse("expected GroupResponse")),
    }
}

fn changed(result: GroupResult) -> Result<pb::GroupChanged> {
    match result {
        GroupResult::Changed(changed) => Ok(changed),
        _ => Err(unexpected("expected GroupResponse.changed")),
    }
}

fn info(result: GroupResult) -> Result<pb::GroupInfo> {
    match result {
        GroupResult::Info(info) => Ok(info),
        _ => Err(unexpected("expected GroupResponse.info")),
    }
}

/// The response was a `GroupResponse`, but not the variant the operation answers with.
fn unexpected(expected: &'static str) -> SdkError {
    SdkError::UnexpectedResponse(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quip_protocol::ErrorCode;

    fn group(id: &str) -> pb::GroupInfo {
        pb::GroupInfo {
            group_id: id.into(),
            conv_id: format!("group:{id}"),
            name: "team".into(),
            ..pb::GroupInfo::default()
        }
    }

    #[test]
    fn group_bodies_unwrap_to_their_result() {
        let body = server_frame::Body::Group(pb::GroupResponse {
            result: Some(GroupResult::Info(group("group_1"))),
        });
        let result = group_result(body).unwrap();
        assert_eq!(info(result).unwrap().group_id, "group_1");
    }

    #[test]
    fn other_bodies_and_empty_results_are_unexpected() {
        let pong = server_frame::Body::Pong(pb::Pong::default());
        assert!(matches!(
            group_result(pong),
            Err(SdkError::UnexpectedResponse("expected GroupResponse"))
        ));
        let empty = server_frame::Body::Group(pb::GroupResponse { result: None });
        assert!(matches!(
            group_result(empty),
            Err(SdkError::UnexpectedResponse(_))
        ));
    }

    #[test]
    fn the_wrong_variant_is_unexpected() {
        let list = GroupResult::List(pb::GroupList::default());
        let error = changed(list).unwrap_err();
        assert!(matches!(error, SdkError::UnexpectedResponse(_)));
        assert!(error.to_string().contains("changed"), "{error}");
        assert_eq!(error.code(), None);

        let page = GroupResult::Members(pb::MemberPage::default());
        assert!(matches!(
            info(page),
            Err(SdkError::UnexpectedResponse("expected GroupResponse.info"))
        ));
    }

    #[test]
    fn changed_keeps_seq_and_pending_flag() {
        let result = GroupResult::Changed(pb::GroupChanged {
            group: Some(group("group_2")),
            seq: 7,
            pending_approval: true,
        });
        let changed = changed(result).unwrap();
        assert_eq!(changed.seq, 7);
        assert!(changed.pending_approval);
        assert_eq!(changed.group.unwrap().conv_id, "group:group_2");
    }

    #[test]
    fn broker_errors_stay_matchable() {
        // The request path turns an Error frame into SdkError::Server before the
        // group helpers run; callers match on the new codes.
        let muted = SdkError::from(pb::Error::new(ErrorCode::Muted, "muted"));
        assert_eq!(muted.code(), Some(ErrorCode::Muted));
        let full = SdkError::from(pb::Error::new(ErrorCode::GroupFull, "full"));
        assert_eq!(full.code(), Some(ErrorCode::GroupFull));
    }

    #[test]
    fn update_leaves_unset_fields_unchanged() {
        let request = GroupUpdate {
            name: Some("renamed".into()),
            ..GroupUpdate::default()
        }
        .into_request("group_3");
        assert_eq!(request.group_id, "group_3");
        assert_eq!(request.name.as_deref(), Some("renamed"));
        assert_eq!(request.description, None);
        assert_eq!(request.avatar_url, None);
        assert_eq!(request.join_mode, pb::JoinMode::Unspecified as i32);

        let request = GroupUpdate {
            description: Some(String::new()),
            join_mode: Some(pb::JoinMode::Approval),
            ..GroupUpdate::default()
        }
        .into_request("group_3");
        // Some("") clears the description rather than leaving it.
        assert_eq!(request.description.as_deref(), Some(""));
        assert_eq!(request.join_mode, pb::JoinMode::Approval as i32);
    }

    #[test]
    fn only_reads_are_resent() {
        // A resent create could make a second group: see the module docs.
        assert!(Kind::Read.resend());
        assert!(!Kind::Mutation.resend());
    }
}
