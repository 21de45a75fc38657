//! The QUIC transport: endpoint, TLS, the control stream and delivery lanes.

mod connection;
mod frames;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::context::BrokerContext;
use crate::shutdown::Shutdown;
use quip_protocol::ErrorCode;

/// Binds the endpoint for `ctx.config.quic_addr`.
pub fn bind(
    ctx: &BrokerContext,
    identity: &tls::TlsIdentity,
) -> Result<quinn::Endpoint, QuicError> {
    let transport = tls::transport_config(Duration::from_millis(ctx.config.idle_timeout_ms));
    let server_config = identity.server_config(transport)?;
    quinn::Endpoint::server(server_config, ctx.config.quic_addr).map_err(|source| QuicError::Bind {
        addr: ctx.config.quic_addr,
        source,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("cannot bind QUIC on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Accepts connections until shutdown. Each connection runs in its own task holding a
/// permit of the connection semaphore, and a clone of `shutdown`'s completion guard so
/// shutdown can wait for it.
pub async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<BrokerContext>, shutdown: Shutdown) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.signalled() => break,
        };
        let Some(incoming) = incoming else { break };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
            incoming.refuse();
            continue;
        };
        let ctx = ctx.clone();
        let guard = shutdown.guard();
        tokio::spawn(
            async move {
                let _permit = permit;
                match incoming.await {
                    Ok(connection) => connection::serve(connection, ctx, guard).await,
                    Err(error) => tracing::debug!(%error, "handshake failed"),
                }
            }
            .instrument(tracing::Span::current()),
        );
    }
    // Stop new handshakes; existing connections are closed by the broker's shutdown.
    endpoint.set_server_config(None);
    tracing::debug!("accept loop stopped");
}

/// Closes every connection of the endpoint with SHUTTING_DOWN.
pub fn close_all(endpoint: &quinn::Endpoint) {
    endpoint.close(
        ErrorCode::ShuttingDown.close_code().into(),
        b"broker shutting down",
    );
}
