//! This user's devices: list them, log one (or all) out.
//!
//! The broker records every device at each `Hello` (client version, transport, first
//! and last seen). Logging a device out closes its sessions with `LOGGED_OUT` and
//! revokes its tokens: a [`Client`] logged out this way ends with
//! `State(Closed)` instead of reconnecting, and that device must log in with a
//! password again.
//!
//! [`devices`](Client::devices) is a read, resent after a reconnect; the logouts are
//! not (if the connection drops while one is in flight it fails with
//! [`SdkError::Disconnected`]; logging out again is harmless).

use quip_protocol::pb::{self, account_request::Op, account_response::Result as AccountResult};
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

impl Client {
    /// This user's devices; the one asking has `current` set.
    pub async fn devices(&self) -> Result<Vec<pb::DeviceInfo>> {
        let op = Op::ListDevices(pb::ListDevices {});
        match self.account_request(op, true).await? {
            AccountResult::Devices(list) => Ok(list.devices),
            _ => Err(SdkError::UnexpectedResponse(
                "expected AccountResponse.devices",
            )),
        }
    }

    /// Logs one of this user's devices out (closing its sessions, revoking its
    /// tokens); returns how many sessions were closed. An unknown device is
    /// `NOT_FOUND`. Logging out this client's own device ends this client too.
    pub async fn logout_device(&self, device_id: &str) -> Result<u32> {
        let op = Op::LogoutDevice(pb::LogoutDevice {
            device_id: device_id.to_string(),
        });
        logged_out(self.account_request(op, false).await?)
    }

    /// Logs out every device of this user, except this one if `keep_current`;
    /// returns how many sessions were closed. Without `keep_current` this client is
    /// closed too (the answer may then be lost with the connection:
    /// [`SdkError::Disconnected`] or [`SdkError::ClientClosed`]).
    pub async fn logout_everywhere(&self, keep_current: bool) -> Result<u32> {
        let op = Op::LogoutEverywhere(pb::LogoutEverywhere { keep_current });
        logged_out(self.account_request(op, false).await?)
    }

    async fn account_request(&self, op: Op, resend: bool) -> Result<AccountResult> {
        let body = client_frame::Body::Account(pb::AccountRequest { op: Some(op) });
        account_result(self.shared.request(body, resend).await?)
    }
}

/// The `AccountResponse` result of a response body.
fn account_result(body: server_frame::Body) -> Result<AccountResult> {
    match body {
        server_frame::Body::Account(pb::AccountResponse {
            result: Some(result),
        }) => Ok(result),
        server_frame::Body::Account(_) => Err(SdkError::UnexpectedResponse(
            "AccountResponse without a result",
        )),
        _ => Err(SdkError::UnexpectedResponse("expected AccountResponse")),
    }
}

fn logged_out(result: AccountResult) -> Result<u32> {
    match result {
        AccountResult::LoggedOut(out) => Ok(out.sessions),
        _ => Err(SdkError::UnexpectedResponse(
            "expected AccountResponse.logged_out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_bodies_unwrap_to_their_result() {
        let body = server_frame::Body::Account(pb::AccountResponse {
            result: Some(AccountResult::LoggedOut(pb::LoggedOut { sessions: 2 })),
        });
        assert_eq!(logged_out(account_result(body).unwrap()).unwrap(), 2);

        let empty = server_frame::Body::Account(pb::AccountResponse { result: None });
        assert!(account_result(empty).is_err());
        let pong = server_frame::Body::Pong(pb::Pong::default());
        assert!(account_result(pong).is_err());
        let devices = AccountResult::Devices(pb::DeviceList::default());
        assert!(matches!(
            logged_out(devices),
            Err(SdkError::UnexpectedResponse(_))
        ));
    }
}
