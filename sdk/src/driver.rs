//! Keeps an authenticated client connected: runs a session, and when it ends,
//! reconnects with backoff and resumes from the cursors, until `close()`, a fatal
//! authentication error, or the broker ending this device's session for good:
//! another connection taking over this device (`SESSION_REPLACED`), the device
//! logged out (`LOGGED_OUT`) or the account disabled (`ACCOUNT_DISABLED`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quip_protocol::pb::{ErrorCode, hello};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::error::{Result, SdkError};
use crate::events::ConnectionState;
use crate::handshake::{Established, handshake};
use crate::session;
use crate::shared::{Shared, shut_down};
use crate::transport::dial_with;

/// Runs until the client is closed or cannot reconnect. Started after the first
/// successful authentication with that connection.
pub(crate) async fn drive(shared: Arc<Shared>, first: Established) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Backoff::new(shared.options.reconnect.clone());
    let mut established = first;
    loop {
        let end = session::run(&shared, established, shutdown.clone()).await;
        if end.closed_by_client || shared.is_shut_down() {
            shared.finish("closed by client".into());
            return;
        }
        if SdkError::is_terminal_close(end.broker_code) {
            // Another client with this device id took over (reconnecting would
            // replace it in turn, and the two would fight forever), or the device was
            // logged out or the account disabled (its tokens are revoked: only a new
            // password login helps).
            let what = match end.broker_code {
                Some(ErrorCode::SessionReplaced) => "session replaced",
                Some(ErrorCode::LoggedOut) => "logged out",
                _ => "account disabled",
            };
            shared.finish(format!("{what}: {}", end.reason));
            return;
        }
        if !backoff.policy().enabled {
            shared.finish(format!("connection lost: {}", end.reason));
            return;
        }
        backoff.connection_ended(end.lived);
        match reconnect_with_backoff(&shared, &mut backoff, &mut shutdown, end.reason).await {
            Ok(next) => established = next,
            Err(reason) => {
                shared.finish(reason);
                return;
            }
        }
    }
}

/// Retries until a new connection is authenticated. `Err` carries the reason the
/// client stops (closed, or credentials refused).
async fn reconnect_with_backoff(
    shared: &Shared,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
    mut reason: String,
) -> std::result::Result<Established, String> {
    // A RATE_LIMITED refusal says how long to wait at least.
    let mut at_least = Duration::ZERO;
    loop {
        let (attempt, after) = backoff.next_delay();
        let after = after.max(at_least);
        tracing::info!(attempt, ?after, %reason, "reconnecting");
        shared.push_state(ConnectionState::Reconnecting {
            attempt,
            after,
            reason: reason.clone(),
        });
        let outcome = tokio::select! {
            _ = shut_down(shutdown) => return Err("closed by client".into()),
            outcome = async {
                tokio::time::sleep(after).await;
                reconnect(shared).await
            } => outcome,
        };
        match outcome {
            Ok(established) => return Ok(established),
            Err(error) if error.is_fatal_auth() => {
                tracing::warn!(%error, "reconnect refused; giving up");
                return Err(format!("authentication refused: {error}"));
            }
            Err(error) => {
                tracing::debug!(%error, "reconnect attempt failed");
                at_least = error.retry_after().unwrap_or(Duration::ZERO);
                reason = error.to_string();
            }
        }
    }
}

/// One reconnect: `Hello` with the access token; if the broker says it expired (or
/// is unknown), a second connection exchanges the refresh token for new tokens.
async fn reconnect(shared: &Shared) -> Result<Established> {
    let tokens = shared.account().tokens.clone().unwrap_or_default();
    let first = connect(shared, hello::Auth::AccessToken(tokens.access_token)).await;
    let error = match first {
        Ok(established) => return Ok(established),
        Err(error) => error,
    };
    let token_refused = matches!(
        error.code(),
        Some(ErrorCode::TokenExpired | ErrorCode::TokenInvalid)
    );
    if !token_refused || tokens.refresh_token.is_empty() {
        return Err(error);
    }
    tracing::debug!("access token refused; refreshing");
    connect(shared, hello::Auth::RefreshToken(tokens.refresh_token)).await
}

/// Dials and authenticates a new connection, storing what `HelloOk` says.
pub(crate) async fn connect(shared: &Shared, auth: hello::Auth) -> Result<Established> {
    if shared.is_shut_down() {
        return Err(SdkError::ClientClosed);
    }
    let current = shared.current_addr.load(Ordering::Relaxed);
    let addr = shared.addrs[current % shared.addrs.len()];
    let link = match dial_with(
        &shared.quic,
        addr,
        &shared.options.server_name,
        shared.options.endpoint.as_ref(),
    )
    .await
    {
        Ok(link) => link,
        Err(error) => {
            // Unreachable: the next attempt tries the next node of the cluster.
            let _ = shared.current_addr.compare_exchange(
                current,
                (current + 1) % shared.addrs.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return Err(error);
        }
    };
    let hello = shared.hello(auth);
    let established = handshake(
        link,
        hello,
        shared.next_req_id(),
        shared.options.request_timeout,
    )
    .await?;
    shared.authenticated(&established.hello_ok);
    Ok(established)
}
