//! WebRTC call signalling: one typed [`Client`] method per thing a device can say
//! about a call. Media never passes through the broker; it relays signalling between
//! the caller's device and the callee's devices and keeps the call's state.
//!
//! # A call
//!
//! 1. The caller: [`call_invite`](Client::call_invite) → [`CallOk`](pb::CallOk) with the
//!    call's id and the STUN/TURN servers to use. Every online device of the callee
//!    gets an [`Event::Call`](crate::Event::Call) `INVITE` (with `peer` = the caller,
//!    `media`, `ice_servers`). If the callee is already in a call, or has no device
//!    online, the caller gets `ENDED` (`CALLEE_BUSY` / `MISSED`) right after the
//!    `CallOk`.
//! 2. A callee device: [`call_action`](Client::call_action) `RINGING` (relayed to the
//!    caller), then `ACCEPT` (the first accept wins: the caller gets `ACCEPT` with its
//!    `from_device`, the callee's other devices get `ANSWERED_ELSEWHERE`, a later
//!    accept fails with `CONFLICT`), or `REJECT` / `BUSY` (ends the call). The caller
//!    may `CANCEL` before an accept.
//! 3. After the accept, each side's one device exchanges
//!    [`call_offer`](Client::call_offer) / [`call_answer`](Client::call_answer) /
//!    [`call_ice`](Client::call_ice), relayed to the other side.
//! 4. `HANGUP` from either side ends it. Every end (hangup, reject, cancel, ring
//!    timeout → `MISSED`, a device gone past the broker's reconnect grace →
//!    `DISCONNECTED`) sends `ENDED` with `reason` and `duration_ms` to every device
//!    still involved, and stores a SYSTEM message (event "call", `system.call`) in the
//!    1:1 conversation.
//!
//! Unknown or ended calls → `NOT_FOUND`; an action the call's state or the caller's
//! role does not allow → `CONFLICT` or `FORBIDDEN`; an SDP or candidate over the
//! broker's `call_max_signal_bytes` → `MESSAGE_TOO_LARGE`.
//!
//! # Not resent
//!
//! Call requests have no dedup key (an `INVITE` written twice would ring twice), so
//! like group mutations they are never written again after a reconnect: if the
//! connection drops while one is in flight it fails with
//! [`SdkError::Disconnected`] and its outcome is unknown. Signalling is time-bound
//! anyway; the application decides whether to retry.

use quip_protocol::pb;
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

impl Client {
    /// Calls a user (`user_…`) with audio or video: answers with the call's id and
    /// the ICE servers; the callee's devices are ringing (or, if the callee is busy
    /// or offline, an `ENDED` follows at once). Watch
    /// [`Event::Call`](crate::Event::Call) for what happens next.
    pub async fn call_invite(&self, to: &str, media: pb::CallMedia) -> Result<pb::CallOk> {
        self.call_request(pb::CallRequest {
            action: pb::CallAction::Invite as i32,
            to: to.to_string(),
            media: media as i32,
            ..pb::CallRequest::default()
        })
        .await
    }

    /// A state change of a call: `RINGING`, `ACCEPT`, `REJECT`, `BUSY` (callee
    /// devices), `CANCEL` (caller, before an accept), `HANGUP` (either side). Other
    /// actions have their own methods (`INVITE`, `OFFER`, `ANSWER`, `ICE`) or are the
    /// broker's (`ENDED`, `ANSWERED_ELSEWHERE`) and are refused here with
    /// [`SdkError::InvalidArgument`], without asking the broker.
    pub async fn call_action(&self, call_id: &str, action: pb::CallAction) -> Result<pb::CallOk> {
        use pb::CallAction::{Accept, Busy, Cancel, Hangup, Reject, Ringing};
        if !matches!(action, Ringing | Accept | Reject | Busy | Cancel | Hangup) {
            return Err(SdkError::InvalidArgument(format!(
                "call_action takes RINGING, ACCEPT, REJECT, BUSY, CANCEL or HANGUP, not {}",
                action.as_str_name()
            )));
        }
        self.call_request(pb::CallRequest {
            call_id: call_id.to_string(),
            action: action as i32,
            ..pb::CallRequest::default()
        })
        .await
    }

    /// Sends an SDP offer to the other side's device (after the accept).
    pub async fn call_offer(&self, call_id: &str, sdp: &str) -> Result<pb::CallOk> {
        self.call_request(pb::CallRequest {
            call_id: call_id.to_string(),
            action: pb::CallAction::Offer as i32,
            sdp: sdp.to_string(),
            ..pb::CallRequest::default()
        })
        .await
    }

    /// Sends an SDP answer to the other side's device (after the accept).
    pub async fn call_answer(&self, call_id: &str, sdp: &str) -> Result<pb::CallOk> {
        self.call_request(pb::CallRequest {
            call_id: call_id.to_string(),
            action: pb::CallAction::Answer as i32,
            sdp: sdp.to_string(),
            ..pb::CallRequest::default()
        })
        .await
    }

    /// Sends an ICE candidate (an `RTCIceCandidateInit` as JSON text, relayed as is)
    /// to the other side's device (after the accept).
    pub async fn call_ice(&self, call_id: &str, candidate_json: &str) -> Result<pb::CallOk> {
        self.call_request(pb::CallRequest {
            call_id: call_id.to_string(),
            action: pb::CallAction::Ice as i32,
            candidate: candidate_json.to_string(),
            ..pb::CallRequest::default()
        })
        .await
    }

    /// Any call request as is (the typed methods above build these). Never resent
    /// after a reconnect (see the module docs).
    pub async fn call_request(&self, request: pb::CallRequest) -> Result<pb::CallOk> {
        match self
            .shared
            .request(client_frame::Body::Call(request), false)
            .await?
        {
            server_frame::Body::CallOk(ok) => Ok(ok),
            _ => Err(SdkError::UnexpectedResponse("expected CallOk")),
        }
    }
}
