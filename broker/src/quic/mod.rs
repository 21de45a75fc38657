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
use crate::limits::connections::{ConnectionCounter, ConnectionLimits, Refused};
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
        tls::FlowWindows::of(&ctx.config),
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

/// Refused connections whose handshake may run at once so that the client is told
/// TOO_MANY_CONNECTIONS (a close code needs a finished handshake); beyond this many, a
/// refusal is a bare QUIC CONNECTION_REFUSED, which costs no handshake.
const MAX_REFUSALS_IN_PROGRESS: usize = 64;

/// Accepts connections until shutdown. Each connection runs in its own task holding a
/// slot of the broker's connection counter (shared with WebSockets, see
/// [`crate::limits::connections`]) and a clone of `shutdown`'s completion guard so
/// shutdown can wait for it.
///
/// Admission of each `Incoming`, cheapest answer first:
/// 1. Retry: with `quic_retry_above_handshakes` or more handshakes in progress (0:
///    always), a client whose address is not validated yet is sent a stateless Retry;
///    it comes back with a token proving it receives at its address. Spoofed floods
///    then cost a packet each, no handshake.
/// 2. Limits: over `max_connections` or `max_connections_per_ip`, the connection is
///    refused with TOO_MANY_CONNECTIONS (its handshake completes, then the broker closes
///    with that application code, so the SDK reports it). A refused client whose address
///    is not validated is first sent a Retry too, so refusals (which cost a handshake)
///    only ever go to real addresses.
/// 3. Accepted: the handshake runs, counted while in progress.
pub async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<BrokerContext>, shutdown: Shutdown) {
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_PROGRESS));
    let limits = ConnectionLimits::of(&ctx.config);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.signalled() => break,
        };
        let Some(incoming) = incoming else { break };
        let counter = ctx.limits.connections();
        let validated = incoming.remote_address_validated();
        if !validated && counter.handshakes() >= ctx.config.quic_retry_above_handshakes {
            retry(incoming, counter);
            continue;
        }
        let remote = incoming.remote_address();
        let slot = match counter.try_acquire(remote.ip(), limits) {
            Ok(slot) => slot,
            Err(_) if !validated => {
                retry(incoming, counter);
                continue;
            }
            Err(refused) => {
                match refused {
                    Refused::Total => {
                        tracing::warn!(%remote, "connection limit reached; refusing");
                    }
                    Refused::PerAddress => {
                        tracing::debug!(%remote, "connection limit per address reached; refusing");
                    }
                }
                refuse(incoming, refused, counter, &refusals);
                continue;
            }
        };
        let ctx = ctx.clone();
        let guard = shutdown.guard();
        let handshake = counter.handshake();
        tokio::spawn(
            async move {
                let _slot = slot;
                let connected = incoming.await;
                drop(handshake);
                match connected {
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

/// Answers with a Retry packet (stateless: nothing is kept for the client until it
/// comes back with the token).
fn retry(incoming: quinn::Incoming, counter: &ConnectionCounter) {
    match incoming.retry() {
        Ok(()) => counter.retry_sent(),
        // Only when the address was validated already, which callers rule out.
        Err(error) => error.into_incoming().refuse(),
    }
}

/// Refuses a connection: with TOO_MANY_CONNECTIONS as the close code when few refusals
/// are in progress, else with a bare CONNECTION_REFUSED.
fn refuse(
    incoming: quinn::Incoming,
    refused: Refused,
    counter: &ConnectionCounter,
    refusals: &Arc<Semaphore>,
) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        incoming.refuse();
        return;
    };
    let handshake = counter.handshake();
    tokio::spawn(
        async move {
            let _permit = permit;
            // Bounded by the handshake's idle timeout.
            let connected = incoming.await;
            drop(handshake);
            match connected {
                Ok(connection) => connection.close(
                    ErrorCode::TooManyConnections.close_code().into(),
                    refused.reason().as_bytes(),
                ),
                Err(error) => tracing::debug!(%error, "refused handshake failed"),
            }
        }
        .instrument(tracing::Span::current()),
    );
}

/// Closes every connection of the endpoint with SHUTTING_DOWN.
pub fn close_all(endpoint: &quinn::Endpoint) {
    endpoint.close(
        ErrorCode::ShuttingDown.close_code().into(),
        b"broker shutting down",
    );
}
