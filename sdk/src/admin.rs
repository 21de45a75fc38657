//! The back office: typed [`Client`] methods for `AdminRequest`, for users with the
//! `"admin"` role ([`Client::role`]); anyone else gets `FORBIDDEN`. The broker logs
//! every action with the admin who did it.
//!
//! Reads (`admin_list_users`, `admin_user`, `admin_list_groups`, `admin_stats`) are
//! resent after a reconnect; changes are not (if the connection drops while one is in
//! flight it fails with [`SdkError::Disconnected`]: check with a read first).

use quip_protocol::pb::{self, admin_request::Op, admin_response::Result as AdminResult};
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

/// The role of an ordinary user, for [`Client::admin_set_role`].
pub const ROLE_USER: &str = "user";

/// The role of an administrator, for [`Client::admin_set_role`].
pub const ROLE_ADMIN: &str = "admin";

impl Client {
    /// Users whose username or nickname contains `query` (case-insensitive; empty:
    /// everyone), by user id, after `after_user_id` (empty: from the start). `limit`
    /// 0 means the broker's default (50; at most 200). Continue with the page's
    /// `next_after_user_id` while it is not empty.
    pub async fn admin_list_users(
        &self,
        query: &str,
        after_user_id: &str,
        limit: u32,
    ) -> Result<pb::UserPage> {
        let op = Op::ListUsers(pb::ListUsers {
            query: query.to_string(),
            after_user_id: after_user_id.to_string(),
            limit,
        });
        match self.admin_request(op, true).await? {
            AdminResult::Users(page) => Ok(page),
            _ => Err(SdkError::UnexpectedResponse("expected AdminResponse.users")),
        }
    }

    /// One user, with their devices and how many groups they are in.
    pub async fn admin_user(&self, user_id: &str) -> Result<pb::UserDetail> {
        let op = Op::GetUser(pb::GetUser {
            user_id: user_id.to_string(),
        });
        match self.admin_request(op, true).await? {
            AdminResult::User(detail) => Ok(detail),
            _ => Err(SdkError::UnexpectedResponse("expected AdminResponse.user")),
        }
    }

    /// Disables (closing their sessions with `ACCOUNT_DISABLED`, revoking their
    /// tokens; logins are refused) or enables a user.
    pub async fn admin_set_disabled(&self, user_id: &str, disabled: bool) -> Result<()> {
        let op = Op::SetDisabled(pb::SetUserDisabled {
            user_id: user_id.to_string(),
            disabled,
        });
        self.admin_change(op).await
    }

    /// Sets a user's password; their tokens are revoked and sessions closed
    /// (`LOGGED_OUT`).
    pub async fn admin_reset_password(&self, user_id: &str, new_password: &str) -> Result<()> {
        let op = Op::ResetPassword(pb::ResetPassword {
            user_id: user_id.to_string(),
            new_password: new_password.to_string(),
        });
        self.admin_change(op).await
    }

    /// Sets a user's role: [`ROLE_USER`] or [`ROLE_ADMIN`].
    pub async fn admin_set_role(&self, user_id: &str, role: &str) -> Result<()> {
        let op = Op::SetRole(pb::SetUserRole {
            user_id: user_id.to_string(),
            role: role.to_string(),
        });
        self.admin_change(op).await
    }

    /// Groups whose name contains `query` (case-insensitive; empty: all), by group
    /// id, after `after_group_id`; paged like [`admin_list_users`](Self::admin_list_users).
    pub async fn admin_list_groups(
        &self,
        query: &str,
        after_group_id: &str,
        limit: u32,
    ) -> Result<pb::AdminGroupPage> {
        let op = Op::ListGroups(pb::ListAllGroups {
            query: query.to_string(),
            after_group_id: after_group_id.to_string(),
            limit,
        });
        match self.admin_request(op, true).await? {
            AdminResult::Groups(page) => Ok(page),
            _ => Err(SdkError::UnexpectedResponse(
                "expected AdminResponse.groups",
            )),
        }
    }

    /// Dissolves any group, as its owner could (the members get the SYSTEM message).
    pub async fn admin_dissolve_group(&self, group_id: &str) -> Result<()> {
        let op = Op::DissolveGroup(pb::AdminDissolveGroup {
            group_id: group_id.to_string(),
        });
        self.admin_change(op).await
    }

    /// The broker's counters now.
    pub async fn admin_stats(&self) -> Result<pb::ServerStats> {
        match self
            .admin_request(Op::Stats(pb::GetServerStats {}), true)
            .await?
        {
            AdminResult::Stats(stats) => Ok(stats),
            _ => Err(SdkError::UnexpectedResponse("expected AdminResponse.stats")),
        }
    }

    async fn admin_change(&self, op: Op) -> Result<()> {
        match self.admin_request(op, false).await? {
            AdminResult::Done(_) => Ok(()),
            _ => Err(SdkError::UnexpectedResponse("expected AdminResponse.done")),
        }
    }

    async fn admin_request(&self, op: Op, resend: bool) -> Result<AdminResult> {
        let body = client_frame::Body::Admin(pb::AdminRequest { op: Some(op) });
        admin_result(self.shared.request(body, resend).await?)
    }
}

/// The `AdminResponse` result of a response body.
fn admin_result(body: server_frame::Body) -> Result<AdminResult> {
    match body {
        server_frame::Body::Admin(pb::AdminResponse {
            result: Some(result),
        }) => Ok(result),
        server_frame::Body::Admin(_) => Err(SdkError::UnexpectedResponse(
            "AdminResponse without a result",
        )),
        _ => Err(SdkError::UnexpectedResponse("expected AdminResponse")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_bodies_unwrap_to_their_result() {
        let body = server_frame::Body::Admin(pb::AdminResponse {
            result: Some(AdminResult::Stats(pb::ServerStats {
                quic_sessions: 3,
                ..pb::ServerStats::default()
            })),
        });
        assert!(matches!(
            admin_result(body).unwrap(),
            AdminResult::Stats(pb::ServerStats {
                quic_sessions: 3,
                ..
            })
        ));
        let empty = server_frame::Body::Admin(pb::AdminResponse { result: None });
        assert!(admin_result(empty).is_err());
        let pong = server_frame::Body::Pong(pb::Pong::default());
        assert!(matches!(
            admin_result(pong),
            Err(SdkError::UnexpectedResponse("expected AdminResponse"))
        ));
    }
}
