//! Dialing a broker: a QUIC connection with Quip's ALPN and the chosen [`Trust`].
//!
//! [`dial`] is public on purpose: tests use it to talk to a broker below the SDK's
//! protocol layer (e.g. to send garbage bytes and check the broker's reaction).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;

use crate::error::{Result, SdkError};
use crate::trust::Trust;

/// QUIC transport knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// How often to send a keep-alive when nothing else is sent, so NATs keep the
    /// mapping and the broker's idle timer does not fire on a quiet but healthy client.
    pub keep_alive_interval: Duration,
    /// How long without hearing from the broker before the connection is declared
    /// dead (the lower of this and the broker's value applies). Detects a vanished
    /// broker or network, which then triggers a reconnect.
    pub max_idle_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            keep_alive_interval: Duration::from_secs(5),
            max_idle_timeout: Duration::from_secs(20),
        }
    }
}

/// A connection together with the endpoint (UDP socket) that drives it; kept so a
/// graceful close can wait until the close frame has actually been sent.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) connection: quinn::Connection,
    /// False when the endpoint is shared with other clients (see
    /// [`ClientOptions::endpoint`](crate::ClientOptions::endpoint)): then it outlives
    /// this connection, keeps sending its close, and must not be waited on.
    owns_endpoint: bool,
}

impl Link {
    /// Closes the connection with `code` and waits (briefly) for the close to reach
    /// the broker, so it does not have to wait out its idle timeout.
    pub(crate) async fn close(&self, code: u32, reason: &str) {
        self.connection.close(code.into(), reason.as_bytes());
        if self.owns_endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        }
    }
}

/// Opens a QUIC connection to a Quip broker: TLS 1.3 with [`quip_protocol::ALPN`],
/// the certificate checked according to `trust`, and `server_name` as SNI (and as the
/// name the certificate must carry, unless `trust` pins a fingerprint). The client
/// endpoint binds an ephemeral port of the address family of `addr`.
pub async fn dial(
    addr: SocketAddr,
    trust: &Trust,
    server_name: &str,
    transport: &TransportOptions,
) -> Result<quinn::Connection> {
    let config = client_config(trust, transport, true)?;
    Ok(dial_with(&config, addr, server_name, None)
        .await?
        .connection)
}

/// Builds the quinn client configuration once; reconnects reuse it. Without
/// `datagrams` the connection does not offer to receive QUIC datagrams (quinn then
/// advertises no `max_datagram_frame_size`), so the broker falls back to the control
/// stream for typing and presence.
pub(crate) fn client_config(
    trust: &Trust,
    transport: &TransportOptions,
    datagrams: bool,
) -> Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = trust.verifier(&provider)?;
    // QUIC requires TLS 1.3.
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![quip_protocol::ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|e| SdkError::InvalidOption(format!("TLS config unusable for QUIC: {e}")))?;

    let mut transport_config = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(transport.max_idle_timeout).map_err(|_| {
        SdkError::InvalidOption(format!(
            "max_idle_timeout {:?} is out of range",
            transport.max_idle_timeout
        ))
    })?;
    transport_config
        .keep_alive_interval(
            (!transport.keep_alive_interval.is_zero()).then_some(transport.keep_alive_interval),
        )
        .max_idle_timeout(Some(idle))
        // The broker opens up to MAX_LANES lane streams, plus slack for streams the
        // broker is still closing from a previous use.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(quip_protocol::MAX_LANES * 2))
        // The client opens only the control stream.
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(4));
    if !datagrams {
        transport_config.datagram_receive_buffer_size(None);
    }

    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config));
    Ok(config)
}

/// Connects on `shared` when given, else on a freshly bound endpoint. One endpoint
/// per connection (the default) keeps each client's socket (and its failure) its own.
pub(crate) async fn dial_with(
    config: &quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    shared: Option<&quinn::Endpoint>,
) -> Result<Link> {
    let owns_endpoint = shared.is_none();
    let endpoint = match shared {
        Some(endpoint) => endpoint.clone(),
        None => quinn::Endpoint::client(unspecified_for(addr))?,
    };
    let connecting = endpoint.connect_with(config.clone(), addr, server_name)?;
    let connection = connecting.await?;
    tracing::debug!(%addr, server_name, "QUIC connection established");
    Ok(Link {
        endpoint,
        connection,
        owns_endpoint,
    })
}

/// The any-address of `addr`'s family, port 0: what a client endpoint binds.
fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_builds_for_every_trust() {
        let transport = TransportOptions::default();
        for trust in [
            Trust::Fingerprint([7; 32]),
            Trust::insecure_accept_any_cert_for_tests(),
            Trust::CertDer(
                rcgen::generate_simple_self_signed(vec!["localhost".into()])
                    .unwrap()
                    .cert
                    .der()
                    .to_vec(),
            ),
        ] {
            client_config(&trust, &transport, true).unwrap();
            client_config(&trust, &transport, false).unwrap();
        }
    }

    #[test]
    fn absurd_idle_timeout_is_refused() {
        let transport = TransportOptions {
            max_idle_timeout: Duration::from_secs(u64::MAX / 4),
            ..TransportOptions::default()
        };
        assert!(matches!(
            client_config(&Trust::Fingerprint([0; 32]), &transport, true),
            Err(SdkError::InvalidOption(_))
        ));
    }

    #[tokio::test]
    async fn dialing_nothing_fails_with_a_connection_error() {
        // Nothing listens there; the idle timeout ends the attempt quickly.
        let transport = TransportOptions {
            max_idle_timeout: Duration::from_millis(300),
            ..TransportOptions::default()
        };
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        drop(socket);
        let err = dial(
            addr,
            &Trust::insecure_accept_any_cert_for_tests(),
            "localhost",
            &transport,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SdkError::Connection(_)), "{err}");
    }
}
