//! A user's devices: which exist, when they were last seen, and logging them out.
//!
//! A device is recorded when it is first issued tokens and updated whenever a session
//! of it opens (client version, transport) or its last session ends (last seen).
//! Logging a device out closes its sessions with LOGGED_OUT and sets its "tokens
//! valid after" time, which the auth service checks on every token use: its refresh
//! token and any access token it still holds stop working at once.

use std::sync::Arc;

use quip_protocol::{ErrorCode, pb};

use super::auth::now_ms;
use super::{Caller, ServiceError, ServiceResult};
use crate::router::{Router, SessionEvent};
use crate::store::Store;

use pb::account_request::Op;
use pb::account_response::Result as Answer;

#[derive(Debug)]
pub struct AccountService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
}

impl AccountService {
    pub fn new(store: Arc<dyn Store>, router: Arc<Router>) -> Self {
        Self { store, router }
    }

    pub async fn handle(
        &self,
        caller: Caller<'_>,
        request: pb::AccountRequest,
    ) -> ServiceResult<pb::AccountResponse> {
        let result = match request.op {
            None => return Err(ServiceError::invalid("account request has no operation")),
            Some(Op::ListDevices(_)) => Answer::Devices(pb::DeviceList {
                devices: self.devices(caller.user_id, Some(caller.device_id)).await?,
            }),
            Some(Op::LogoutDevice(logout)) => {
                if self
                    .store
                    .device(caller.user_id, &logout.device_id)
                    .await?
                    .is_none()
                {
                    return Err(ServiceError::new(ErrorCode::NotFound, "no such device"));
                }
                let sessions = self
                    .log_out_device(caller.user_id, &logout.device_id)
                    .await?;
                tracing::info!(user = %caller.user_id, device = %logout.device_id, by = %caller.device_id, "device logged out");
                Answer::LoggedOut(pb::LoggedOut {
                    sessions: sessions as u32,
                })
            }
            Some(Op::LogoutEverywhere(everywhere)) => {
                let sessions = if everywhere.keep_current {
                    let mut sessions = 0;
                    for device in self.store.devices(caller.user_id).await? {
                        if device.device_id != caller.device_id {
                            sessions += self
                                .log_out_device(caller.user_id, &device.device_id)
                                .await?;
                        }
                    }
                    sessions
                } else {
                    self.revoke_user(
                        caller.user_id,
                        ErrorCode::LoggedOut,
                        "logged out on every device",
                    )
                    .await?
                };
                tracing::info!(user = %caller.user_id, keep_current = everywhere.keep_current, "logged out everywhere");
                Answer::LoggedOut(pb::LoggedOut {
                    sessions: sessions as u32,
                })
            }
        };
        Ok(pb::AccountResponse {
            result: Some(result),
        })
    }

    /// A user's devices, `current` marked.
    pub async fn devices(
        &self,
        user_id: &str,
        current: Option<&str>,
    ) -> ServiceResult<Vec<pb::DeviceInfo>> {
        let online = self.router.devices_of(user_id);
        Ok(self
            .store
            .devices(user_id)
            .await?
            .into_iter()
            .map(|device| {
                let is_online = online.contains(&device.device_id);
                pb::DeviceInfo {
                    current: current == Some(device.device_id.as_str()),
                    online: is_online,
                    last_seen_ms: if is_online { 0 } else { device.last_seen_ms },
                    device_id: device.device_id,
                    client_version: device.client_version,
                    first_seen_ms: device.first_seen_ms,
                    transport: device.transport,
                }
            })
            .collect())
    }

    /// Records a session of a device opening.
    pub async fn session_opened(
        &self,
        user_id: &str,
        device_id: &str,
        client_version: &str,
        transport: &str,
    ) -> ServiceResult<()> {
        let now = now_ms();
        let client_version: String = client_version.chars().take(64).collect();
        // Field by field: a logout racing this connection keeps its revocation.
        self.store
            .change_device(
                user_id,
                device_id,
                Box::new(move |device| {
                    if device.first_seen_ms == 0 {
                        device.first_seen_ms = now;
                    }
                    device.client_version = client_version.clone();
                    device.transport = transport.to_owned();
                    device.last_seen_ms = 0;
                }),
            )
            .await?;
        Ok(())
    }

    /// Follows session ends: a device whose last session ended was last seen now.
    pub async fn on_session_event(&self, event: &SessionEvent) {
        if event.opened
            || self
                .router
                .session_of_device(&event.user_id, &event.device_id)
                .is_some()
        {
            return;
        }
        let now = now_ms();
        let result = self
            .store
            .change_device(
                &event.user_id,
                &event.device_id,
                Box::new(move |device| device.last_seen_ms = now),
            )
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, user = %event.user_id, "cannot record a device's last seen");
        }
    }

    /// Revokes one device's tokens and closes its sessions.
    pub async fn log_out_device(&self, user_id: &str, device_id: &str) -> ServiceResult<usize> {
        if self.store.device(user_id, device_id).await?.is_some() {
            let now = now_ms();
            self.store
                .change_device(
                    user_id,
                    device_id,
                    Box::new(move |device| device.tokens_valid_after_ms = now),
                )
                .await?;
        }
        Ok(self.router.close_user(
            user_id,
            Some(device_id),
            ErrorCode::LoggedOut,
            "this device was logged out",
        ))
    }

    /// Revokes every token of a user and closes all their sessions with `code`.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        code: ErrorCode,
        reason: &str,
    ) -> ServiceResult<usize> {
        let now = now_ms();
        self.store
            .change_user(
                user_id,
                Box::new(move |user| user.tokens_valid_after_ms = now),
            )
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such user"))?;
        Ok(self.router.close_user(user_id, None, code, reason))
    }
}
