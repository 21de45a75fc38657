//! Client configuration.

use std::time::Duration;

use crate::backoff::ReconnectPolicy;
use crate::transport::TransportOptions;

/// How a [`Client`](crate::Client) connects and behaves. Start from `Default` and
/// override fields: `ClientOptions { lanes: 2, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TLS server name (SNI, and the name the certificate must carry unless the
    /// trust is a pinned fingerprint).
    pub server_name: String,
    /// Identifies this installation to the broker, which keeps a delivery cursor
    /// per device and never echoes a message to the device that sent it. Keep it
    /// stable across restarts (1..=64 of `[A-Za-z0-9_.-]`); the default is random.
    pub device_id: String,
    /// Reported in `Hello`, for the broker's logs and compatibility checks.
    pub client_version: String,
    /// Delivery lanes to ask for; 0 lets the broker choose.
    pub lanes: u32,
    pub transport: TransportOptions,
    pub reconnect: ReconnectPolicy,
    /// Events buffered for the application. When it is full the SDK stops reading
    /// deliveries: QUIC flow control then pushes back to the broker, which may close
    /// the session as a slow consumer; the SDK resumes from its cursors afterwards,
    /// so nothing is lost.
    pub event_buffer: usize,
    /// How long a request (including resends across reconnects) may take.
    pub request_timeout: Duration,
    /// How long a gap in a conversation may stay open before the missing messages
    /// are fetched from history. Lanes are dense, so a gap normally closes at once.
    pub gap_grace: Duration,
    /// A client endpoint (UDP socket) to connect on, shared with other clients. By
    /// default every client binds its own. Sharing one is for processes that hold
    /// many connections (a load generator, a multi-account app): one socket and one
    /// endpoint driver instead of thousands. Build it with `quinn::Endpoint::client`.
    pub endpoint: Option<quinn::Endpoint>,
    /// Use QUIC datagrams for what may be lost: typing notices are sent as one
    /// datagram each when the connection allows it (else on the control stream), and
    /// the broker's typing and presence datagrams are read. `false` neither sends nor
    /// reads datagrams and tells the broker (by not offering datagram support in the
    /// QUIC handshake) to push typing and presence on the control stream instead:
    /// for networks that mangle datagrams. Default `true`.
    pub datagrams: bool,
    /// Other nodes of the same cluster. When the current address cannot be reached
    /// (a node died), each reconnect attempt tries the next address, round robin, and
    /// resumes there from the cursors. The nodes must present a certificate the
    /// client's `Trust` accepts (in a cluster they share one). Default: none.
    pub fallback_addrs: Vec<std::net::SocketAddr>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            server_name: "localhost".to_string(),
            device_id: format!("dev-{:016x}", rand::random::<u64>()),
            client_version: concat!("quip-sdk/", env!("CARGO_PKG_VERSION")).to_string(),
            lanes: 0,
            transport: TransportOptions::default(),
            reconnect: ReconnectPolicy::default(),
            event_buffer: 4096,
            request_timeout: Duration::from_secs(10),
            gap_grace: Duration::from_millis(500),
            fallback_addrs: Vec::new(),
            endpoint: None,
            datagrams: true,
        }
    }
}
