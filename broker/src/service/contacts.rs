//! Contacts (friends), friend requests, blocking and the "friends only" setting.
//!
//! Changes are serialized by one lock: they are rare, and it keeps an accept racing a
//! cancel (or two crossing requests) from leaving half a friendship. The checks other
//! services make before a user reaches another one directly (1:1 messages, calls,
//! typing) are [`check_direct`].

use std::sync::Arc;

use quip_protocol::{ErrorCode, encode_frame_bytes, ids, pb};

use super::auth::now_ms;
use super::{Caller, PresenceService, ServiceError, ServiceResult};
use crate::router::{Push, Router};
use crate::store::{ContactRequestRecord, Store, UserRecord, UserSettingsRecord};

use pb::contact_request::Op;
use pb::contact_response::Result as Answer;

/// Whether `sender` may reach `recipient` directly (a 1:1 message, a call): not if
/// either blocked the other, nor if the recipient takes 1:1 messages from friends
/// only and they are not friends.
pub async fn check_direct(store: &dyn Store, sender: &str, recipient: &str) -> ServiceResult<()> {
    let facts = store.direct_facts(sender, recipient).await?;
    if !facts.recipient_exists {
        return Err(ServiceError::new(ErrorCode::NotFound, "no such user"));
    }
    if facts.blocked_by_recipient {
        return Err(ServiceError::new(
            ErrorCode::Blocked,
            "this user does not accept messages from you",
        ));
    }
    if facts.blocked_by_sender {
        return Err(ServiceError::new(
            ErrorCode::Blocked,
            "you blocked this user; unblock them first",
        ));
    }
    if facts.recipient_friends_only && !facts.friends {
        return Err(ServiceError::new(
            ErrorCode::ContactsOnly,
            "this user only takes messages from their contacts; send a friend request",
        ));
    }
    Ok(())
}

#[derive(Debug)]
pub struct ContactService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    presence: Arc<PresenceService>,
    /// Longest friend-request message.
    max_message_bytes: usize,
    changes: tokio::sync::Mutex<()>,
}

impl ContactService {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        presence: Arc<PresenceService>,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            store,
            router,
            presence,
            max_message_bytes,
            changes: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn handle(
        &self,
        caller: Caller<'_>,
        request: pb::ContactRequest,
    ) -> ServiceResult<pb::ContactResponse> {
        let me = caller.user_id;
        let done = |now_friends| Answer::Done(pb::ContactDone { now_friends });
        let result = match request.op {
            None => return Err(ServiceError::invalid("contact request has no operation")),
            Some(Op::ListRequests(_)) => Answer::Requests(self.requests(me).await?),
            Some(Op::ListFriends(_)) => Answer::Friends(self.friends(me).await?),
            Some(Op::ListBlocked(_)) => Answer::Blocked(self.blocked(me).await?),
            Some(Op::GetSettings(_)) => Answer::Settings(self.settings(me).await?),
            Some(Op::SetSettings(set)) => {
                let settings = set.settings.unwrap_or_default();
                self.store
                    .put_user_settings(
                        me,
                        UserSettingsRecord {
                            friends_only_dm: settings.friends_only_dm,
                        },
                    )
                    .await?;
                Answer::Settings(settings)
            }
            Some(Op::SendRequest(send)) => done(self.send_request(me, send).await?),
            Some(Op::Decide(decide)) => {
                self.decide(me, &decide.user_id, decide.accept).await?;
                done(false)
            }
            Some(Op::Cancel(cancel)) => {
                self.cancel(me, &cancel.user_id).await?;
                done(false)
            }
            Some(Op::DeleteFriend(delete)) => {
                self.delete_friend(me, &delete.user_id).await?;
                done(false)
            }
            Some(Op::Block(block)) => {
                let other = self.existing_other(me, &block.user_id).await?;
                let _changes = self.changes.lock().await;
                self.store.block(me, &other.user_id, now_ms()).await?;
                tracing::info!(user = %me, blocked = %other.user_id, "blocked");
                done(false)
            }
            Some(Op::Unblock(unblock)) => {
                let _changes = self.changes.lock().await;
                if !self.store.unblock(me, &unblock.user_id).await? {
                    return Err(ServiceError::new(
                        ErrorCode::NotFound,
                        "you have not blocked this user",
                    ));
                }
                done(false)
            }
        };
        Ok(pb::ContactResponse {
            result: Some(result),
        })
    }

    /// The other user of a contact operation: a valid id, not the caller, existing.
    async fn existing_other(&self, me: &str, user_id: &str) -> ServiceResult<UserRecord> {
        if !ids::is_user_id(user_id) {
            return Err(ServiceError::invalid("user_id must be a user id"));
        }
        if user_id == me {
            return Err(ServiceError::invalid("that is you"));
        }
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such user"))
    }

    async fn send_request(&self, me: &str, send: pb::SendContactRequest) -> ServiceResult<bool> {
        if send.message.len() > self.max_message_bytes {
            return Err(ServiceError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "a friend request message is at most {} bytes",
                    self.max_message_bytes
                ),
            ));
        }
        let other = self.existing_other(me, &send.user_id).await?;
        let _changes = self.changes.lock().await;
        if self.store.is_blocked(&other.user_id, me).await? {
            return Err(ServiceError::new(
                ErrorCode::Blocked,
                "this user does not accept requests from you",
            ));
        }
        if self.store.is_blocked(me, &other.user_id).await? {
            return Err(ServiceError::new(
                ErrorCode::Blocked,
                "you blocked this user; unblock them first",
            ));
        }
        if self.store.is_friend(me, &other.user_id).await? {
            return Err(ServiceError::new(
                ErrorCode::Conflict,
                "you are friends already",
            ));
        }
        // They asked first: this is an accept.
        if self
            .store
            .take_contact_request(&other.user_id, me)
            .await?
            .is_some()
        {
            self.store.add_friends(me, &other.user_id, now_ms()).await?;
            self.notify(
                &other.user_id,
                pb::ContactEventKind::RequestAccepted,
                me,
                "",
            )
            .await;
            return Ok(true);
        }
        self.store
            .put_contact_request(ContactRequestRecord {
                from_user_id: me.to_owned(),
                to_user_id: other.user_id.clone(),
                message: send.message.clone(),
                requested_at_ms: now_ms(),
            })
            .await?;
        self.notify(
            &other.user_id,
            pb::ContactEventKind::RequestReceived,
            me,
            &send.message,
        )
        .await;
        Ok(false)
    }

    async fn decide(&self, me: &str, from: &str, accept: bool) -> ServiceResult<()> {
        let _changes = self.changes.lock().await;
        self.store
            .take_contact_request(from, me)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no request from this user"))?;
        if accept {
            self.store.add_friends(me, from, now_ms()).await?;
            self.notify(from, pb::ContactEventKind::RequestAccepted, me, "")
                .await;
        }
        Ok(())
    }

    async fn cancel(&self, me: &str, to: &str) -> ServiceResult<()> {
        let _changes = self.changes.lock().await;
        self.store
            .take_contact_request(me, to)
            .await?
            .ok_or_else(|| {
                ServiceError::new(ErrorCode::NotFound, "you have no request to this user")
            })?;
        self.notify(to, pb::ContactEventKind::RequestCancelled, me, "")
            .await;
        Ok(())
    }

    async fn delete_friend(&self, me: &str, friend: &str) -> ServiceResult<()> {
        let _changes = self.changes.lock().await;
        if !self.store.remove_friends(me, friend).await? {
            return Err(ServiceError::new(
                ErrorCode::NotFound,
                "this user is not your friend",
            ));
        }
        self.notify(friend, pb::ContactEventKind::FriendRemoved, me, "")
            .await;
        Ok(())
    }

    async fn requests(&self, me: &str) -> ServiceResult<pb::ContactRequestLists> {
        let mut lists = pb::ContactRequestLists::default();
        for (incoming, list) in [(true, &mut lists.incoming), (false, &mut lists.outgoing)] {
            let mut records = self.store.contact_requests(me, incoming).await?;
            records.sort_by_key(|r| std::cmp::Reverse(r.requested_at_ms));
            for record in records {
                let other = if incoming {
                    &record.from_user_id
                } else {
                    &record.to_user_id
                };
                let user = self.store.user_by_id(other).await?.unwrap_or_default();
                list.push(pb::ContactRequestInfo {
                    from_user_id: record.from_user_id,
                    to_user_id: record.to_user_id,
                    message: record.message,
                    requested_at_ms: record.requested_at_ms,
                    username: user.username,
                    nickname: user.nickname,
                });
            }
        }
        Ok(lists)
    }

    async fn friends(&self, me: &str) -> ServiceResult<pb::FriendList> {
        let friends = self.store.friends(me).await?;
        let blocked: std::collections::HashSet<String> = self
            .store
            .blocks(me)
            .await?
            .into_iter()
            .map(|(user, _)| user)
            .collect();
        let ids: Vec<String> = friends.iter().map(|(id, _)| id.clone()).collect();
        let presences = self.presence.snapshot(&ids).await?;
        let mut list = Vec::with_capacity(friends.len());
        for ((user_id, since_ms), presence) in friends.into_iter().zip(presences) {
            let user = self.store.user_by_id(&user_id).await?.unwrap_or_default();
            list.push(pb::Friend {
                blocked: blocked.contains(&user_id),
                user_id,
                username: user.username,
                nickname: user.nickname,
                since_ms,
                presence: Some(presence),
            });
        }
        Ok(pb::FriendList { friends: list })
    }

    async fn blocked(&self, me: &str) -> ServiceResult<pb::BlockedList> {
        let mut blocked = Vec::new();
        for (user_id, blocked_at_ms) in self.store.blocks(me).await? {
            let user = self.store.user_by_id(&user_id).await?.unwrap_or_default();
            blocked.push(pb::BlockedUser {
                user_id,
                username: user.username,
                nickname: user.nickname,
                blocked_at_ms,
            });
        }
        Ok(pb::BlockedList { blocked })
    }

    async fn settings(&self, me: &str) -> ServiceResult<pb::ContactSettings> {
        let settings = self.store.user_settings(me).await?;
        Ok(pb::ContactSettings {
            friends_only_dm: settings.friends_only_dm,
        })
    }

    /// Tells `to`'s online devices what `about` did.
    async fn notify(&self, to: &str, kind: pb::ContactEventKind, about: &str, message: &str) {
        let user = match self.store.user_by_id(about).await {
            Ok(user) => user.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "cannot read a user for a contact event");
                UserRecord::default()
            }
        };
        let frame = encode_frame_bytes(&pb::ServerFrame {
            req_id: 0,
            body: Some(pb::server_frame::Body::ContactEvent(pb::ContactEvent {
                kind: kind as i32,
                user_id: about.to_owned(),
                message: message.to_owned(),
                username: user.username,
                nickname: user.nickname,
            })),
        });
        self.router
            .push(&frame, &[to.to_owned()], 0, Push::Reliable);
    }
}
