//! Contacts: friend requests, friends, blocking and the "friends only" setting, one
//! typed [`Client`] method per `ContactRequest` operation.
//!
//! # Friends
//!
//! [`send_contact_request`](Client::send_contact_request) files a request (with a
//! short message) that waits until the other user
//! [accepts](Client::accept_contact_request) or
//! [rejects](Client::reject_contact_request) it, or the sender
//! [cancels](Client::cancel_contact_request) it. Asking someone who already asked you
//! makes you friends at once ([`ContactDone::now_friends`](pb::ContactDone)); asking
//! again replaces the message. The other side hears of it as an
//! [`Event::Contact`](crate::Event::Contact): `REQUEST_RECEIVED`, `REQUEST_ACCEPTED`
//! (to the requester), `REQUEST_CANCELLED`, `FRIEND_REMOVED`; rejections and blocks
//! are never told. [`friends`](Client::friends) carries each friend's presence.
//!
//! # Blocking
//!
//! One-sided: a user this user [blocked](Client::block) gets `BLOCKED` for 1:1
//! messages, friend requests and call invites to this user (and this user gets
//! `BLOCKED` sending to them: unblock first); their presence and typing no longer
//! arrive here; pending requests between the two are dropped. Groups are not
//! affected. A friendship survives a block, and [`unblock`](Client::unblock)
//! restores things as they were.
//!
//! With [`ContactSettings::friends_only_dm`](pb::ContactSettings) on, 1:1 messages
//! and call invites from non-friends are refused with `CONTACTS_ONLY`.
//!
//! # Resending across reconnects
//!
//! Reads (`contact_requests`, `friends`, `blocked`, `contact_settings`) are written
//! again on the next connection if the current one drops. Changes are not (like group
//! mutations): if the connection drops while one is in flight it fails with
//! [`SdkError::Disconnected`] and its outcome is unknown; check with a read first.

use quip_protocol::pb::{self, contact_request::Op, contact_response::Result as ContactResult};
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

impl Client {
    /// Asks `user_id` to become friends, with a `message` (at most 256 bytes) shown to
    /// them. `now_friends` is set when they had already asked this user. Refused with
    /// `INVALID_ARGUMENT` for oneself, `NOT_FOUND` for an unknown user, `CONFLICT` if
    /// already friends, `BLOCKED` if they blocked this user.
    pub async fn send_contact_request(
        &self,
        user_id: &str,
        message: &str,
    ) -> Result<pb::ContactDone> {
        let op = Op::SendRequest(pb::SendContactRequest {
            user_id: user_id.to_string(),
            message: message.to_string(),
        });
        done(self.contact_request(op, false).await?)
    }

    /// Pending friend requests: to this user (`incoming`) and from it (`outgoing`),
    /// newest first.
    pub async fn contact_requests(&self) -> Result<pb::ContactRequestLists> {
        let op = Op::ListRequests(pb::ListContactRequests {});
        match self.contact_request(op, true).await? {
            ContactResult::Requests(lists) => Ok(lists),
            _ => Err(SdkError::UnexpectedResponse(
                "expected ContactResponse.requests",
            )),
        }
    }

    /// Accepts the request `user_id` sent this user: they are friends now (and the
    /// requester gets `REQUEST_ACCEPTED`).
    pub async fn accept_contact_request(&self, user_id: &str) -> Result<()> {
        self.decide_contact_request(user_id, true).await
    }

    /// Rejects the request `user_id` sent this user (the requester is not told).
    pub async fn reject_contact_request(&self, user_id: &str) -> Result<()> {
        self.decide_contact_request(user_id, false).await
    }

    async fn decide_contact_request(&self, user_id: &str, accept: bool) -> Result<()> {
        let op = Op::Decide(pb::DecideContactRequest {
            user_id: user_id.to_string(),
            accept,
        });
        done(self.contact_request(op, false).await?).map(drop)
    }

    /// Withdraws this user's pending request to `user_id` (who gets
    /// `REQUEST_CANCELLED`).
    pub async fn cancel_contact_request(&self, user_id: &str) -> Result<()> {
        let op = Op::Cancel(pb::CancelContactRequest {
            user_id: user_id.to_string(),
        });
        done(self.contact_request(op, false).await?).map(drop)
    }

    /// Ends a friendship (the former friend gets `FRIEND_REMOVED`).
    pub async fn delete_friend(&self, user_id: &str) -> Result<()> {
        let op = Op::DeleteFriend(pb::DeleteFriend {
            user_id: user_id.to_string(),
        });
        done(self.contact_request(op, false).await?).map(drop)
    }

    /// This user's friends, each with their presence (and whether this user blocked
    /// them).
    pub async fn friends(&self) -> Result<Vec<pb::Friend>> {
        let op = Op::ListFriends(pb::ListFriends {});
        match self.contact_request(op, true).await? {
            ContactResult::Friends(list) => Ok(list.friends),
            _ => Err(SdkError::UnexpectedResponse(
                "expected ContactResponse.friends",
            )),
        }
    }

    /// Blocks `user_id` (see the module docs for what that does).
    pub async fn block(&self, user_id: &str) -> Result<()> {
        let op = Op::Block(pb::BlockUser {
            user_id: user_id.to_string(),
        });
        done(self.contact_request(op, false).await?).map(drop)
    }

    /// Lifts a block.
    pub async fn unblock(&self, user_id: &str) -> Result<()> {
        let op = Op::Unblock(pb::UnblockUser {
            user_id: user_id.to_string(),
        });
        done(self.contact_request(op, false).await?).map(drop)
    }

    /// The users this user blocked.
    pub async fn blocked(&self) -> Result<Vec<pb::BlockedUser>> {
        let op = Op::ListBlocked(pb::ListBlocked {});
        match self.contact_request(op, true).await? {
            ContactResult::Blocked(list) => Ok(list.blocked),
            _ => Err(SdkError::UnexpectedResponse(
                "expected ContactResponse.blocked",
            )),
        }
    }

    /// This user's contact settings.
    pub async fn contact_settings(&self) -> Result<pb::ContactSettings> {
        let op = Op::GetSettings(pb::GetContactSettings {});
        match self.contact_request(op, true).await? {
            ContactResult::Settings(settings) => Ok(settings),
            _ => Err(SdkError::UnexpectedResponse(
                "expected ContactResponse.settings",
            )),
        }
    }

    /// Replaces this user's contact settings; answers with the settings now in force.
    pub async fn set_contact_settings(
        &self,
        settings: pb::ContactSettings,
    ) -> Result<pb::ContactSettings> {
        let op = Op::SetSettings(pb::SetContactSettings {
            settings: Some(settings),
        });
        match self.contact_request(op, false).await? {
            ContactResult::Settings(now) => Ok(now),
            // A broker that only acknowledges the change.
            ContactResult::Done(_) => Ok(settings),
            _ => Err(SdkError::UnexpectedResponse(
                "expected ContactResponse.settings",
            )),
        }
    }

    async fn contact_request(&self, op: Op, resend: bool) -> Result<ContactResult> {
        let body = client_frame::Body::Contact(pb::ContactRequest { op: Some(op) });
        contact_result(self.shared.request(body, resend).await?)
    }
}

/// The `ContactResponse` result of a response body.
fn contact_result(body: server_frame::Body) -> Result<ContactResult> {
    match body {
        server_frame::Body::Contact(pb::ContactResponse {
            result: Some(result),
        }) => Ok(result),
        server_frame::Body::Contact(_) => Err(SdkError::UnexpectedResponse(
            "ContactResponse without a result",
        )),
        _ => Err(SdkError::UnexpectedResponse("expected ContactResponse")),
    }
}

fn done(result: ContactResult) -> Result<pb::ContactDone> {
    match result {
        ContactResult::Done(done) => Ok(done),
        _ => Err(SdkError::UnexpectedResponse(
            "expected ContactResponse.done",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_bodies_unwrap_to_their_result() {
        let body = server_frame::Body::Contact(pb::ContactResponse {
            result: Some(ContactResult::Done(pb::ContactDone { now_friends: true })),
        });
        assert!(done(contact_result(body).unwrap()).unwrap().now_friends);
    }

    #[test]
    fn other_bodies_empty_results_and_wrong_variants_are_unexpected() {
        let pong = server_frame::Body::Pong(pb::Pong::default());
        assert!(matches!(
            contact_result(pong),
            Err(SdkError::UnexpectedResponse("expected ContactResponse"))
        ));
        let empty = server_frame::Body::Contact(pb::ContactResponse { result: None });
        assert!(matches!(
            contact_result(empty),
            Err(SdkError::UnexpectedResponse(_))
        ));
        let friends = ContactResult::Friends(pb::FriendList::default());
        assert!(matches!(
            done(friends),
            Err(SdkError::UnexpectedResponse(
                "expected ContactResponse.done"
            ))
        ));
    }
}
