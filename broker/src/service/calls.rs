//! WebRTC call signalling between two users (design section 3; GoChat's calls).
//!
//! The broker keeps each call's state in memory: who calls whom from which device,
//! which of the callee's devices ring, and which one accepted. That is what lets the
//! first accepting device win (the others are told to stop ringing), what makes a
//! second call to a user in a call end as busy, and what times calls out. Signalling
//! goes on the control stream (reliable), to one device per side once accepted. Media
//! never passes through the broker. Every call ends in a SYSTEM message (event "call")
//! in the 1:1 conversation, which is how its outcome reaches history and offline
//! devices.
//!
//! Calls live on one node and do not survive a broker restart: the devices' sessions
//! end with it, and the peers' media connection is theirs to keep or drop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use quip_protocol::{ErrorCode, encode_frame_bytes, ids, pb};

use super::auth::now_ms;
use super::{Caller, ChatService, ServiceError, ServiceResult};
use crate::cluster::Cluster;
use crate::router::{Push, Router, SessionEvent};
use crate::store::{NewMessage, Store};

use pb::{CallAction as Action, CallEndReason as Reason};

/// Limits and ICE configuration, from the config.
#[derive(Clone)]
pub struct CallLimits {
    pub ring_timeout: Duration,
    pub reconnect_grace: Duration,
    pub max_signal_bytes: usize,
    pub ice_servers: Vec<String>,
    pub turn_secret: Option<String>,
    pub turn_credential_ttl_secs: u64,
}

impl std::fmt::Debug for CallLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the TURN secret: whether one is set.
        let Self {
            ring_timeout,
            reconnect_grace,
            max_signal_bytes,
            ice_servers,
            turn_secret,
            turn_credential_ttl_secs,
        } = self;
        f.debug_struct("CallLimits")
            .field("ring_timeout", ring_timeout)
            .field("reconnect_grace", reconnect_grace)
            .field("max_signal_bytes", max_signal_bytes)
            .field("ice_servers", ice_servers)
            .field("turn_secret", &turn_secret.as_ref().map(|_| "<redacted>"))
            .field("turn_credential_ttl_secs", turn_credential_ttl_secs)
            .finish()
    }
}

#[derive(Debug)]
struct Call {
    id: String,
    media: pb::CallMedia,
    caller: String,
    caller_device: String,
    callee: String,
    /// Callee devices the invite went to that may still accept.
    ringing: Vec<String>,
    /// The callee device that accepted, and when.
    accepted: Option<(String, u64)>,
}

impl Call {
    fn summary(&self, reason: Reason, duration_ms: u64) -> pb::CallSummary {
        pb::CallSummary {
            call_id: self.id.clone(),
            media: self.media as i32,
            caller: self.caller.clone(),
            callee: self.callee.clone(),
            reason: reason as i32,
            duration_ms,
        }
    }
}

#[derive(Debug, Default)]
struct Calls {
    by_id: HashMap<String, Call>,
    /// The call each user is in (as caller or callee).
    by_user: HashMap<String, String>,
}

#[derive(Debug)]
pub struct CallService {
    router: Arc<Router>,
    cluster: Arc<dyn Cluster>,
    store: Arc<dyn Store>,
    chat: Arc<ChatService>,
    limits: CallLimits,
    calls: Mutex<Calls>,
    /// For the timers a call starts.
    me: Weak<CallService>,
}

/// Which side of a call a device is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Callee,
}

impl CallService {
    pub fn new(
        router: Arc<Router>,
        cluster: Arc<dyn Cluster>,
        store: Arc<dyn Store>,
        chat: Arc<ChatService>,
        limits: CallLimits,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            router,
            cluster,
            store,
            chat,
            limits,
            calls: Mutex::new(Calls::default()),
            me: me.clone(),
        })
    }

    /// Call state lives in one node's memory: in a cluster, a callee connected only
    /// to other nodes is refused clearly rather than reported as missed.
    async fn check_same_node(&self, callee: &str) -> ServiceResult<()> {
        if !self.cluster.spans_nodes() || self.router.sessions_of(callee) > 0 {
            return Ok(());
        }
        let elsewhere = self
            .cluster
            .devices_elsewhere(&[callee.to_owned()])
            .await
            .map_err(|error| ServiceError::new(ErrorCode::Unavailable, error.to_string()))?;
        if elsewhere.first().copied().unwrap_or(0) > 0 {
            return Err(ServiceError::new(
                ErrorCode::Unavailable,
                "the callee is connected to another node of the cluster: calls across nodes \
                 are not supported yet",
            ));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls in progress (ringing or connected), for metrics and tests.
    pub fn active(&self) -> usize {
        self.lock().by_id.len()
    }

    pub async fn handle(
        &self,
        caller: Caller<'_>,
        request: pb::CallRequest,
    ) -> ServiceResult<pb::CallOk> {
        let action = Action::try_from(request.action)
            .map_err(|_| ServiceError::invalid("unknown call action"))?;
        if request.sdp.len() > self.limits.max_signal_bytes
            || request.candidate.len() > self.limits.max_signal_bytes
        {
            return Err(ServiceError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "call signalling is limited to {} bytes",
                    self.limits.max_signal_bytes
                ),
            ));
        }
        match action {
            Action::Invite => self.invite(caller, &request).await,
            Action::Ringing
            | Action::Accept
            | Action::Reject
            | Action::Busy
            | Action::Cancel
            | Action::Offer
            | Action::Answer
            | Action::Ice
            | Action::Hangup => {
                let ended = self.act(caller, action, request)?;
                if let Some((call, reason, duration_ms)) = ended {
                    self.record(&call, reason, duration_ms).await;
                }
                Ok(pb::CallOk::default())
            }
            Action::Unspecified | Action::Ended | Action::AnsweredElsewhere => Err(
                ServiceError::invalid("that call action is not one a client sends"),
            ),
        }
    }

    async fn invite(
        &self,
        caller: Caller<'_>,
        request: &pb::CallRequest,
    ) -> ServiceResult<pb::CallOk> {
        if !ids::is_user_id(&request.to) {
            return Err(ServiceError::invalid("`to` must be a user id"));
        }
        if request.to == caller.user_id {
            return Err(ServiceError::invalid("cannot call yourself"));
        }
        if self.store.user_by_id(&request.to).await?.is_none() {
            return Err(ServiceError::new(ErrorCode::NotFound, "no such user"));
        }
        super::contacts::check_direct(&*self.store, caller.user_id, &request.to).await?;
        let media = match pb::CallMedia::try_from(request.media) {
            Ok(pb::CallMedia::Video) => pb::CallMedia::Video,
            Ok(pb::CallMedia::Audio | pb::CallMedia::Unspecified) => pb::CallMedia::Audio,
            Err(_) => return Err(ServiceError::invalid("unknown call media")),
        };
        self.check_same_node(&request.to).await?;
        let call_id = format!("call_{:032x}", rand::random::<u128>());
        let ice_servers = self.ice_servers(caller.user_id);
        let call = Call {
            id: call_id.clone(),
            media,
            caller: caller.user_id.to_owned(),
            caller_device: caller.device_id.to_owned(),
            callee: request.to.clone(),
            ringing: self.router.devices_of(&request.to),
            accepted: None,
        };
        let immediate_end = {
            let mut calls = self.lock();
            if calls.by_user.contains_key(caller.user_id) {
                return Err(ServiceError::new(
                    ErrorCode::Conflict,
                    "you are already in a call",
                ));
            }
            if calls.by_user.contains_key(&call.callee) {
                Some((Reason::CalleeBusy, call))
            } else if call.ringing.is_empty() {
                Some((Reason::Missed, call))
            } else {
                calls.by_user.insert(call.caller.clone(), call_id.clone());
                calls.by_user.insert(call.callee.clone(), call_id.clone());
                let invite = pb::CallEvent {
                    call_id: call_id.clone(),
                    action: Action::Invite as i32,
                    from: call.caller.clone(),
                    from_device: call.caller_device.clone(),
                    media: media as i32,
                    ice_servers: self.ice_servers(&call.callee),
                    peer: call.caller.clone(),
                    ..Default::default()
                };
                for device in &call.ringing {
                    self.send(&call.callee, device, &invite);
                }
                calls.by_id.insert(call_id.clone(), call);
                None
            }
        };
        let ended_at_once = match immediate_end {
            Some((reason, call)) => {
                self.send(&call.caller, &call.caller_device, &ended(&call, reason, 0));
                self.record(&call, reason, 0).await;
                reason as i32
            }
            None => {
                self.after(self.limits.ring_timeout, call_id.clone(), |service, id| {
                    service.ring_timeout(id)
                });
                0
            }
        };
        Ok(pb::CallOk {
            call_id,
            ice_servers,
            ended: ended_at_once,
        })
    }

    /// Every action on an existing call. Returns the call if the action ended it.
    fn act(
        &self,
        caller: Caller<'_>,
        action: Action,
        request: pb::CallRequest,
    ) -> ServiceResult<Option<(Call, Reason, u64)>> {
        let mut calls = self.lock();
        let call = calls
            .by_id
            .get_mut(&request.call_id)
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such call, or it ended"))?;
        let side = if caller.user_id == call.caller && caller.device_id == call.caller_device {
            Side::Caller
        } else if caller.user_id == call.callee {
            Side::Callee
        } else {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "this device is not in that call",
            ));
        };
        let accepted_device = call.accepted.as_ref().map(|(device, _)| device.clone());
        let media = call.media as i32;
        let conflict = |message: &str| Err(ServiceError::new(ErrorCode::Conflict, message));
        // After the accept, only the accepting device speaks for the callee.
        if side == Side::Callee
            && accepted_device
                .as_deref()
                .is_some_and(|device| device != caller.device_id)
        {
            return conflict("the call was answered on another device");
        }
        let relay = |action: Action| pb::CallEvent {
            call_id: request.call_id.clone(),
            action: action as i32,
            from: caller.user_id.to_owned(),
            from_device: caller.device_id.to_owned(),
            media,
            sdp: request.sdp.clone(),
            candidate: request.candidate.clone(),
            peer: caller.user_id.to_owned(),
            ..Default::default()
        };
        let end_reason = match (side, action, &accepted_device) {
            (Side::Callee, Action::Ringing, None) => {
                self.send(&call.caller, &call.caller_device, &relay(Action::Ringing));
                None
            }
            (Side::Callee, Action::Accept, None) => {
                call.accepted = Some((caller.device_id.to_owned(), now_ms()));
                self.send(&call.caller, &call.caller_device, &relay(Action::Accept));
                let elsewhere = relay(Action::AnsweredElsewhere);
                for device in call.ringing.drain(..) {
                    if device != caller.device_id {
                        self.send(&call.callee, &device, &elsewhere);
                    }
                }
                None
            }
            (Side::Callee, Action::Accept, Some(_)) => return Ok(None),
            (Side::Callee, Action::Reject, None) => Some(Reason::Rejected),
            (Side::Callee, Action::Busy, None) => Some(Reason::CalleeBusy),
            (Side::Caller, Action::Cancel, None) => Some(Reason::Cancelled),
            (Side::Caller, Action::Hangup, None) => Some(Reason::Cancelled),
            (Side::Callee, Action::Hangup, None) => Some(Reason::Rejected),
            (_, Action::Hangup, Some(_)) => Some(Reason::Completed),
            (_, Action::Offer | Action::Answer | Action::Ice, Some(accepted)) => {
                let event = relay(action);
                match side {
                    Side::Caller => self.send(&call.callee, accepted, &event),
                    Side::Callee => self.send(&call.caller, &call.caller_device, &event),
                }
                None
            }
            (_, Action::Offer | Action::Answer | Action::Ice, None) => {
                return conflict("the call is not connected yet: wait for the accept");
            }
            (Side::Caller, Action::Ringing | Action::Accept | Action::Reject | Action::Busy, _) => {
                return Err(ServiceError::new(
                    ErrorCode::Forbidden,
                    "only the callee's devices do that",
                ));
            }
            (Side::Callee, Action::Cancel, _) => {
                return Err(ServiceError::new(
                    ErrorCode::Forbidden,
                    "only the caller cancels; hang up or reject instead",
                ));
            }
            (_, _, Some(_)) => return conflict("the call is already connected"),
            _ => return Err(ServiceError::invalid("that call action is not valid here")),
        };
        Ok(match end_reason {
            Some(reason) => self.finish(&mut calls, &request.call_id, reason),
            None => None,
        })
    }

    /// Removes a call and tells every device still in it that it ended.
    fn finish(
        &self,
        calls: &mut Calls,
        call_id: &str,
        reason: Reason,
    ) -> Option<(Call, Reason, u64)> {
        let call = calls.by_id.remove(call_id)?;
        calls.by_user.remove(&call.caller);
        calls.by_user.remove(&call.callee);
        let duration_ms = match (&call.accepted, reason) {
            (Some((_, since)), Reason::Completed | Reason::Disconnected) => {
                now_ms().saturating_sub(*since)
            }
            _ => 0,
        };
        let event = ended(&call, reason, duration_ms);
        self.send(&call.caller, &call.caller_device, &event);
        match &call.accepted {
            Some((device, _)) => self.send(&call.callee, device, &event),
            None => {
                for device in &call.ringing {
                    self.send(&call.callee, device, &event);
                }
            }
        }
        Some((call, reason, duration_ms))
    }

    fn ring_timeout(&self, call_id: String) -> Option<(Call, Reason, u64)> {
        let mut calls = self.lock();
        let unanswered = calls
            .by_id
            .get(&call_id)
            .is_some_and(|call| call.accepted.is_none());
        if !unanswered {
            return None;
        }
        self.finish(&mut calls, &call_id, Reason::Missed)
    }

    /// Follows devices dropping out: a ringing callee device stops counting; the
    /// caller's device or the accepted one gets `reconnect_grace` to come back before
    /// the call ends as disconnected.
    pub fn on_session_event(&self, event: &SessionEvent) {
        if event.opened {
            self.ring_new_device(event);
            return;
        }
        let watch = {
            let mut calls = self.lock();
            let Some(call_id) = calls.by_user.get(&event.user_id).cloned() else {
                return;
            };
            let Some(call) = calls.by_id.get_mut(&call_id) else {
                return;
            };
            let is_caller = call.caller == event.user_id && call.caller_device == event.device_id;
            let is_accepted = call.callee == event.user_id
                && call
                    .accepted
                    .as_ref()
                    .is_some_and(|(device, _)| *device == event.device_id);
            if call.callee == event.user_id {
                call.ringing.retain(|device| *device != event.device_id);
            }
            (is_caller || is_accepted).then_some(call_id)
        };
        if let Some(call_id) = watch {
            let (user_id, device_id) = (event.user_id.clone(), event.device_id.clone());
            self.after(
                self.limits.reconnect_grace,
                call_id,
                move |service, call_id| {
                    if service
                        .router
                        .session_of_device(&user_id, &device_id)
                        .is_some()
                    {
                        return None;
                    }
                    let mut calls = service.lock();
                    let answered = calls
                        .by_id
                        .get(&call_id)
                        .is_some_and(|call| call.accepted.is_some());
                    let reason = if answered {
                        Reason::Disconnected
                    } else {
                        Reason::Cancelled
                    };
                    service.finish(&mut calls, &call_id, reason)
                },
            );
        }
    }

    /// A callee device that connects while its user's call is still ringing rings
    /// too (a phone coming back from a dead spot should not miss the call).
    fn ring_new_device(&self, event: &SessionEvent) {
        let mut calls = self.lock();
        let Some(call_id) = calls.by_user.get(&event.user_id).cloned() else {
            return;
        };
        let Some(call) = calls.by_id.get_mut(&call_id) else {
            return;
        };
        if call.callee != event.user_id
            || call.accepted.is_some()
            || call.ringing.contains(&event.device_id)
        {
            return;
        }
        call.ringing.push(event.device_id.clone());
        let invite = pb::CallEvent {
            call_id: call.id.clone(),
            action: Action::Invite as i32,
            from: call.caller.clone(),
            from_device: call.caller_device.clone(),
            media: call.media as i32,
            ice_servers: self.ice_servers(&call.callee),
            peer: call.caller.clone(),
            ..Default::default()
        };
        self.send(&event.user_id, &event.device_id, &invite);
    }

    /// Runs `then` after `delay` on a call, and records the call if it ended it.
    fn after(
        &self,
        delay: Duration,
        call_id: String,
        then: impl FnOnce(&CallService, String) -> Option<(Call, Reason, u64)> + Send + 'static,
    ) {
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(service) = me.upgrade() else {
                return;
            };
            if let Some((call, reason, duration_ms)) = then(&service, call_id) {
                service.record(&call, reason, duration_ms).await;
            }
        });
    }

    /// Stores the outcome as a SYSTEM message in the 1:1 conversation.
    async fn record(&self, call: &Call, reason: Reason, duration_ms: u64) {
        let kind = match call.media {
            pb::CallMedia::Video => "video",
            _ => "voice",
        };
        let text = match reason {
            Reason::Completed | Reason::Disconnected => {
                let seconds = duration_ms / 1000;
                let mut text = format!(
                    "{} call · {}:{:02}",
                    capitalized(kind),
                    seconds / 60,
                    seconds % 60
                );
                if reason == Reason::Disconnected {
                    text.push_str(" (disconnected)");
                }
                text
            }
            Reason::Missed => format!("Missed {kind} call"),
            Reason::Rejected => format!("Declined {kind} call"),
            Reason::CalleeBusy => format!("{} call: busy", capitalized(kind)),
            Reason::Cancelled => format!("Cancelled {kind} call"),
            Reason::Unspecified => format!("{} call", capitalized(kind)),
        };
        let message = pb::Message {
            conv_id: ids::single_conv_id(&call.caller, &call.callee),
            from: call.caller.clone(),
            to: call.callee.clone(),
            kind: pb::MessageKind::System as i32,
            content: Some(pb::message::Content::System(pb::SystemContent {
                event: "call".into(),
                user_ids: vec![call.caller.clone(), call.callee.clone()],
                text,
                call: Some(call.summary(reason, duration_ms)),
            })),
            client_msg_id: format!("call-{}", call.id),
            ..Default::default()
        };
        let parties = vec![call.caller.clone(), call.callee.clone()];
        let posted = self
            .chat
            .post(
                NewMessage::new(message, parties.clone()),
                Arc::from(parties),
                None,
            )
            .await;
        if let Err(error) = posted {
            tracing::warn!(%error, call = %call.id, "cannot store the call's outcome");
        }
    }

    /// Pushes a call event to one device of a user, if it is connected.
    fn send(&self, user_id: &str, device_id: &str, event: &pb::CallEvent) {
        let Some(session) = self.router.session_of_device(user_id, device_id) else {
            return;
        };
        let frame = encode_frame_bytes(&pb::ServerFrame {
            req_id: 0,
            body: Some(pb::server_frame::Body::CallEvent(event.clone())),
        });
        self.router.push_to(&session, &frame, Push::Reliable);
    }

    /// The STUN/TURN servers for a user: STUN URLs as they are; TURN URLs with
    /// time-limited credentials when a TURN secret is configured (the TURN REST API
    /// convention: username "<expiry>:<user>", password base64(HMAC-SHA1(secret,
    /// username))).
    fn ice_servers(&self, user_id: &str) -> Vec<pb::IceServer> {
        let (turn, stun): (Vec<&String>, Vec<&String>) = self
            .limits
            .ice_servers
            .iter()
            .partition(|url| url.starts_with("turn:") || url.starts_with("turns:"));
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(pb::IceServer {
                urls: stun.into_iter().cloned().collect(),
                ..Default::default()
            });
        }
        if !turn.is_empty() {
            let mut server = pb::IceServer {
                urls: turn.into_iter().cloned().collect(),
                ..Default::default()
            };
            if let Some(secret) = &self.limits.turn_secret {
                let expiry = now_ms() / 1000 + self.limits.turn_credential_ttl_secs;
                server.username = format!("{expiry}:{user_id}");
                server.credential = turn_password(secret, &server.username);
            }
            servers.push(server);
        }
        servers
    }
}

fn ended(call: &Call, reason: Reason, duration_ms: u64) -> pb::CallEvent {
    pb::CallEvent {
        call_id: call.id.clone(),
        action: Action::Ended as i32,
        media: call.media as i32,
        reason: reason as i32,
        duration_ms,
        ..Default::default()
    }
}

fn turn_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_passwords_follow_the_turn_rest_api() {
        // RFC 2104 HMAC-SHA1 test case 2, base64-encoded.
        assert_eq!(
            turn_password("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }
}
