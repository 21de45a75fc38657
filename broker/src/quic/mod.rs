//! The QUIC transport: endpoint, TLS, the control stream and delivery lanes.

mod connection;
mod frames;
pub mod tls;
mod transfer;

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
    let transport = tls::transport_config(
        Duration::from_millis(ctx.config.idle_timeout_ms),
        ctx.config.datagrams,
        ctx.config.max_transfers_per_connection,
    );
    let server_config = identity.server_config(transport)?;
    let addr = ctx.config.quic_addr;
    let socket = udp_socket(addr, ctx.config.udp_buffer_bytes)
        .map_err(|source| QuicError::Bind { addr, source })?;
    let runtime = quinn::default_runtime().ok_or_else(|| QuicError::Bind {
        addr,
        source: std::io::Error::other("no async runtime"),
    })?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config),
        socket,
        runtime,
    )
    .map_err(|source| QuicError::Bind { addr, source })
}

/// The endpoint's UDP socket, with `buffer_bytes` of receive and send buffer (or as
/// much as the kernel allows, which is logged).
fn udp_socket(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Like quinn's own binding: an IPv6 socket also serves IPv4 where it can.
        let _ = socket.set_only_v6(false);
    }
    if let Err(error) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::warn!(%error, buffer_bytes, "cannot set the UDP receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::warn!(%error, buffer_bytes, "cannot set the UDP send buffer");
    }
    socket.bind(&addr.into())?;
    tracing::debug!(
        recv = socket.recv_buffer_size().unwrap_or_default(),
        send = socket.send_buffer_size().unwrap_or_default(),
        "QUIC socket buffers (the kernel caps them at net.core.rmem_max / wmem_max)"
    );
    Ok(socket.into())
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
