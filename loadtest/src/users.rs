//! Setup: registering a run's users and connecting each over its transport.
//!
//! Registration hashes the password with argon2 on the broker (tens of milliseconds
//! of CPU each, by design), so a few registrations run at once to keep the broker's
//! cores busy while round trips are in flight, with a progress bar for the minutes a
//! large group takes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::conn::{Conn, Incoming, Transport};
use crate::run::Run;
use crate::ws_client::WsClient;

/// Registrations in flight at once: a few per broker core, enough to overlap round
/// trips without piling up argon2 work behind a slow first batch.
const CONCURRENCY: usize = 8;
/// Every load-test account's password.
pub const PASSWORD: &str = "loadtest-password";
/// How long a new connection may take to finish its catch-up (`SyncDone`).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A user to create: its role (a short username prefix), index, transport, and the
/// node it connects to (see [`crate::target::Target::node`]: modulo the node count).
#[derive(Debug, Clone, Copy)]
pub struct UserSpec {
    pub prefix: &'static str,
    pub index: usize,
    pub transport: Transport,
    pub node: usize,
}

/// Registers and connects every user, in order, each once its catch-up is done.
pub async fn connect_all(run: &Run, specs: &[UserSpec]) -> anyhow::Result<Vec<Arc<Conn>>> {
    let unreachable = specs.iter().any(|spec| {
        spec.transport == Transport::Ws && run.target.node(spec.node).http_addr.is_none()
    });
    if unreachable {
        bail!("WebSocket clients need the broker's --http-addr (or --spawn)");
    }
    run.progress.setup("users", specs.len() as u64);
    stream::iter(specs)
        .map(|spec| async move {
            let conn = connect(run, spec)
                .await
                .with_context(|| format!("setting up user {}{}", spec.prefix, spec.index))?;
            run.progress.step();
            anyhow::Ok(Arc::new(conn))
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Closes every connection, concurrently.
pub async fn close_all(conns: &[Arc<Conn>]) {
    futures_util::future::join_all(conns.iter().map(|conn| conn.close())).await;
}

/// Registers over QUIC (which returns tokens at once, with no second argon2 round
/// for a login); a WebSocket user then reconnects over the bridge with its access
/// token on the same device id.
async fn connect(run: &Run, spec: &UserSpec) -> anyhow::Result<Conn> {
    let device_id = format!("{}-{}", spec.prefix, spec.index);
    let username = format!("lt{:08x}{}{}", run.id, spec.prefix, spec.index);
    let node = run.target.node(spec.node);
    let client = run.quic_client(spec.node, &device_id).await?;
    let tokens = client.register(&username, PASSWORD, None).await?;
    let conn = match spec.transport {
        Transport::Quic => Conn::quic(client, username, tokens.access_token),
        Transport::Ws => {
            let user_id = client.user_id().unwrap_or_default();
            client.close().await;
            let http_addr = node.http_addr.context("no --http-addr")?;
            let ws = WsClient::connect(http_addr, &tokens.access_token, &device_id).await?;
            Conn::ws(ws, user_id, username, tokens.access_token)
        }
    };
    wait_for_sync(&conn).await?;
    Ok(conn)
}

/// Connects `spec`'s device again as the user `conn` is, with `access_token`, on a
/// new connection; the broker resumes it from the device's delivered position. The
/// catch-up that follows is left to the connection's reader.
pub async fn reconnect(
    run: &Run,
    spec: &UserSpec,
    conn: &Conn,
    access_token: &str,
) -> anyhow::Result<Conn> {
    let device_id = format!("{}-{}", spec.prefix, spec.index);
    let (user_id, username) = (conn.user_id().to_owned(), conn.username().to_owned());
    match spec.transport {
        Transport::Quic => {
            let client = run.quic_client(spec.node, &device_id).await?;
            client.login_with_token(access_token).await?;
            Ok(Conn::quic_as(
                client,
                user_id,
                username,
                access_token.to_owned(),
            ))
        }
        Transport::Ws => {
            let node = run.target.node(spec.node);
            let http_addr = node.http_addr.context("no --http-addr")?;
            let ws = WsClient::connect(http_addr, access_token, &device_id).await?;
            Ok(Conn::ws(ws, user_id, username, access_token.to_owned()))
        }
    }
}

async fn wait_for_sync(conn: &Conn) -> anyhow::Result<()> {
    let synced = tokio::time::timeout(SYNC_TIMEOUT, async {
        loop {
            match conn.next().await {
                Some(Incoming::SyncDone) => return Ok(()),
                Some(Incoming::Closed(reason)) => bail!("closed before its sync: {reason}"),
                Some(_) => {}
                None => bail!("closed before its sync"),
            }
        }
    })
    .await;
    synced.context("no SyncDone in time")?
}
