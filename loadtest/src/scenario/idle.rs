//! `idle`: hold C authenticated connections (QUIC or WebSocket) that send nothing, and
//! measure what they cost the broker in resident memory.
//!
//! Logging 100,000 devices in through argon2 would take far longer than the test, so
//! only `--users` accounts are registered; every connection then gets a token minted
//! with the broker's JWT secret for user `i % users` and its own device `idle-<i>`.
//! QUIC connections are bare: the `Hello` exchange and the lanes' `SyncDone`, then
//! nothing on our side but quinn's keep-alives. An SDK client does the same on the
//! wire (and no longer polls while idle), but it also runs a reader task per lane, an
//! event queue and reconnect machinery: 100k of them beside the broker would measure
//! the load generator's memory and scheduling as much as the broker's.
//!
//! The broker's RSS is read from /proc before dialing (once the setup's memory is
//! given back, see `--settle`) and each second of the hold (the measure phase); the result is the growth of
//! the hold's median per connection. The run's `timeline` shows the RSS ramp while
//! dialing (setup) too.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use quip_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME_BYTES, FrameDecoder, ServerFrame, client_frame,
    encode_frame_bytes, pb, server_frame,
};
use quip_sdk::TransportOptions;
use quip_sdk::quinn::{self, rustls};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::conn::Transport;
use crate::endpoints::EndpointPool;
use crate::limits;
use crate::metrics::Phase;
use crate::mint::Minter;
use crate::report::rss_bytes;
use crate::run::Run;

/// The node every connection goes to (on a cluster, node-1: its memory is the one
/// measured; see [`crate::target::Target::pid`]).
const NODE: usize = 0;
/// Connections per client QUIC endpoint: sharing a UDP socket saves a descriptor and
/// a driver task per connection, while several sockets spread the packet processing.
const CONNECTIONS_PER_ENDPOINT: usize = 10_000;
/// Setup accounts registered at once (each costs the broker an argon2 hash).
const REGISTER_CONCURRENCY: usize = 8;
/// Longest a single connection may take from dialing to being synced.
const DIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Most connections put on one 127.0.0.x source address: one TCP source port each,
/// and the kernel's ephemeral range must also serve everything else on the box.
const MAX_PER_SOURCE_IP: usize = 49_999;
/// The name the broker's certificate carries (the SDK's default server name).
const SERVER_NAME: &str = "localhost";
/// Largest chunk taken from quinn per read.
const READ_CHUNK: usize = 64 * 1024;
/// WebSocket client buffers: the defaults (128 KiB each) would cost this process
/// gigabytes at 100k sockets, and idle sockets only ever see pings and a sync frame.
const WS_READ_BUFFER: usize = 4096;
/// The frame the bridge sends once a socket's sync is done (`bridge-ws/CONTRACT.md`).
const WS_SYNC_DONE: u64 = 40;

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// quic (the native protocol) or ws (the browser bridge's /ws).
    #[arg(long, value_enum, default_value_t = Transport::Quic)]
    pub transport: Transport,
    /// Accounts registered for the run; connection i is user i % users on device idle-<i>.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Seconds to hold every connection once all are dialed, sampling RSS each second.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Dials in flight.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Seconds between registering the users and reading the baseline RSS. The
    /// broker hashes passwords on tokio's blocking threads, which exit (and give their
    /// memory back, ~150 MB after 1000 registrations) only after 10 s idle: a baseline
    /// taken earlier counts that memory and understates the cost per connection.
    #[arg(long, default_value_t = 12.0)]
    pub settle: f64,
    /// WebSocket only: spread TCP sources over 127.0.0.1..=127.0.0.N, since one source
    /// address has one ephemeral port range. Default: enough that each gets fewer than
    /// 50,000 and at most 90% of `net.ipv4.ip_local_port_range`.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: Option<u8>,
}

/// One held connection.
enum Held {
    Quic(BareQuic),
    /// The task reading the socket (answering the bridge's pings); it ends, with the
    /// reason, when the socket does.
    Ws(JoinHandle<String>),
}

/// An authenticated QUIC connection with nothing running on our side but quinn's
/// connection driver (keep-alives). The control stream and the lanes are held open:
/// dropping one would tell the broker this client is gone.
struct BareQuic {
    connection: quinn::Connection,
    _control: (quinn::SendStream, quinn::RecvStream),
    _lanes: Vec<quinn::RecvStream>,
}

/// What every dial needs, shared by the dialing tasks (which must own it, so it
/// cannot borrow the [`Run`]).
struct Dialer {
    minter: Minter,
    /// User ids of the setup accounts.
    users: Vec<String>,
    quic_addr: SocketAddr,
    quic_config: quinn::ClientConfig,
    /// QUIC: the client endpoints, one per [`CONNECTIONS_PER_ENDPOINT`] (the run's
    /// `--endpoints` is sized for message load, not for 100k connections).
    endpoints: Option<EndpointPool>,
    /// WebSocket: the bridge, and how many 127.0.0.x sources to spread over.
    http_addr: Option<SocketAddr>,
    source_ips: u8,
}

pub async fn run(run: &Run, args: &IdleArgs) -> anyhow::Result<Value> {
    let target = &run.target;
    let node = target.node(NODE);
    let pid = target.pid().context(
        "idle measures the broker's memory, so it needs the broker's pid: \
         use --spawn or --broker-pid",
    )?;
    let secret = target.jwt_secret.as_deref().context(
        "idle mints access tokens and needs the broker's JWT secret: use --spawn, \
         or pass --jwt-secret (or QUIP_JWT_SECRET)",
    )?;
    if args.users == 0 || args.connections == 0 {
        bail!("--users and --connections must be at least 1");
    }
    let (http_addr, source_ips) = match args.transport {
        Transport::Quic => (None, 1),
        Transport::Ws => {
            let http_addr = node
                .http_addr
                .context("--transport ws needs the broker's --http-addr (or --spawn)")?;
            let nofile = limits::nofile();
            // The broker holds a descriptor per socket too, with the limit it inherited.
            if (args.connections as u64).saturating_add(1024) > nofile {
                bail!(
                    "{} WebSockets need more open files than the limit of {nofile} \
                     (raising it needs CAP_SYS_RESOURCE)",
                    args.connections
                );
            }
            let ips = args
                .source_ips
                .unwrap_or_else(|| default_source_ips(args.connections));
            (Some(http_addr), ips)
        }
    };

    let settle = Duration::try_from_secs_f64(args.settle).context("--settle must be a duration")?;
    let hold = Duration::try_from_secs_f64(args.hold).context("--hold must be a duration")?;
    let users = register_users(run, args.users).await?;
    tokio::time::sleep(settle).await;
    let rss_before = rss_bytes(pid).context("cannot read the broker's RSS from /proc")?;
    // QUIC only: the broker's one UDP socket carries every connection.
    let udp_drops_before = match args.transport {
        Transport::Quic => udp_drops(node.addr.port()),
        Transport::Ws => None,
    };

    let endpoints = match args.transport {
        Transport::Quic => Some(
            EndpointPool::new(
                args.connections.div_ceil(CONNECTIONS_PER_ENDPOINT),
                node.addr,
            )
            .context("binding client endpoints")?,
        ),
        Transport::Ws => None,
    };
    let dialer = Arc::new(Dialer {
        minter: Minter::new(secret),
        users,
        quic_addr: node.addr,
        quic_config: quic_config(&node.cert)?,
        endpoints,
        http_addr,
        source_ips,
    });

    run.progress.setup("connections", args.connections as u64);
    let started = Instant::now();
    let mut held = Vec::with_capacity(args.connections);
    let mut failed = 0usize;
    let mut dials = stream::iter(0..args.connections)
        .map(|i| {
            let dialer = dialer.clone();
            // A task each, so dialing work spreads over the runtime's threads.
            tokio::spawn(async move {
                match tokio::time::timeout(DIAL_TIMEOUT, dialer.dial(i)).await {
                    Ok(result) => result,
                    Err(_) => Err(anyhow::anyhow!("not synced within {DIAL_TIMEOUT:?}")),
                }
            })
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(joined) = dials.next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(conn) => held.push(conn),
            Err(error) => {
                failed += 1;
                run.metrics.error(format!("{error:#}"));
            }
        }
        run.progress.step();
    }
    let connect_seconds = started.elapsed().as_secs_f64();

    // The hold is the measured phase: the broker's RSS once a second.
    run.progress.load(Phase::Measure, Some(hold));
    run.enter(Phase::Measure);
    let hold_end = Instant::now() + hold;
    let mut hold_rss = Vec::new();
    let mut next_sample = Instant::now() + Duration::from_secs(1);
    while next_sample <= hold_end {
        tokio::time::sleep_until(next_sample.into()).await;
        hold_rss.extend(rss_bytes(pid));
        next_sample += Duration::from_secs(1);
    }
    tokio::time::sleep_until(hold_end.into()).await;
    run.enter(Phase::Drain);
    if hold_rss.is_empty() {
        hold_rss.extend(rss_bytes(pid));
    }
    hold_rss.sort_unstable();
    let rss_after = hold_rss.get(hold_rss.len() / 2).copied();

    let broker_udp_drops = udp_drops_before
        .and_then(|before| Some(udp_drops(node.addr.port())?.saturating_sub(before)));
    let mut dropped = 0usize;
    for conn in &mut held {
        if let Some(reason) = conn.end_reason().await {
            dropped += 1;
            run.metrics
                .error(format!("dropped during the hold: {reason}"));
        }
    }
    let n = held.len();
    let per_connection = rss_after
        .filter(|_| n > 0)
        .map(|after| ((after as f64 - rss_before as f64) / n as f64).round());
    for conn in held {
        conn.release();
    }

    Ok(json!({
        "scenario": "idle",
        "transport": args.transport.name(),
        "connections": args.connections,
        "users": args.users,
        "source_ips": (args.transport == Transport::Ws).then_some(source_ips),
        "connected": n,
        "failed": failed,
        "dropped_during_hold": dropped,
        "connect_seconds": connect_seconds,
        "connects_per_sec": (n as f64 / connect_seconds).round(),
        "hold_seconds": args.hold,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "bytes_per_connection": per_connection,
        "kib_per_connection": per_connection.map(|b| (b / 1024.0 * 100.0).round() / 100.0),
        "nofile_limit": limits::nofile(),
        "broker_udp_drops": broker_udp_drops,
    }))
}

impl Dialer {
    /// Opens connection `i` and returns once the broker has authenticated it and
    /// finished its (empty) sync.
    async fn dial(&self, i: usize) -> anyhow::Result<Held> {
        let device = format!("idle-{i}");
        let token = self
            .minter
            .access_token(&self.users[i % self.users.len()], &device)?;
        match &self.endpoints {
            Some(endpoints) => self.dial_quic(endpoints, device, &token).await,
            None => self.dial_ws(i, &device, &token).await,
        }
    }

    /// `Hello` with the minted token, `HelloOk`, then every lane the broker opens up
    /// to its `SyncDone` (an SDK client's sync, with nothing to catch up on).
    async fn dial_quic(
        &self,
        endpoints: &EndpointPool,
        device: String,
        token: &str,
    ) -> anyhow::Result<Held> {
        let connection = endpoints
            .next()
            .connect_with(self.quic_config.clone(), self.quic_addr, SERVER_NAME)?
            .await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        let hello = ClientFrame {
            req_id: 1,
            body: Some(client_frame::Body::Hello(pb::Hello {
                auth: Some(pb::hello::Auth::AccessToken(token.to_owned())),
                device_id: device,
                client_version: concat!("quip-loadtest/", env!("CARGO_PKG_VERSION")).to_owned(),
                ..pb::Hello::default()
            })),
        };
        send.write_all(&encode_frame_bytes(&hello)).await?;
        let lanes = read_until(&mut recv, |body| match body {
            server_frame::Body::HelloOk(hello_ok) => Ok(Some(hello_ok.lanes)),
            server_frame::Body::Error(error) => bail!("Hello refused: {error}"),
            _ => Ok(None),
        })
        .await?;
        let mut held_lanes = Vec::with_capacity(lanes as usize);
        for _ in 0..lanes {
            let mut lane = connection.accept_uni().await?;
            read_until(&mut lane, |body| {
                Ok(matches!(body, server_frame::Body::SyncDone(_)).then_some(()))
            })
            .await?;
            held_lanes.push(lane);
        }
        Ok(Held::Quic(BareQuic {
            connection,
            _control: (send, recv),
            _lanes: held_lanes,
        }))
    }

    async fn dial_ws(&self, i: usize, device: &str, token: &str) -> anyhow::Result<Held> {
        let http_addr = self.http_addr.context("no HTTP address")?;
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(self.source_ips)) as u8);
        let socket = TcpSocket::new_v4()?;
        // Closing with a reset leaves no TIME_WAIT behind, so a rerun within a minute
        // finds the same source ports free.
        socket.set_zero_linger()?;
        socket
            .bind(SocketAddr::from((source, 0)))
            .with_context(|| format!("binding a source port on {source}"))?;
        let stream = socket.connect(http_addr).await?;
        let url = format!("ws://{http_addr}/ws?token={token}&device_id={device}");
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            .write_buffer_size(0);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
        let first = ws
            .next()
            .await
            .context("closed before the sync was done")??;
        let synced = match &first {
            Message::Text(text) => {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|frame| frame["type"].as_u64())
                    == Some(WS_SYNC_DONE)
            }
            _ => false,
        };
        if !synced {
            bail!("expected sync done ({{\"type\":{WS_SYNC_DONE}}}) first, got {first:?}");
        }
        // Reading is what answers the bridge's pings (tungstenite replies on its own).
        Ok(Held::Ws(tokio::spawn(async move {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        break format!("closed by the broker: {frame:?}");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break error.to_string(),
                    None => break "the socket ended".to_owned(),
                }
            }
        })))
    }
}

impl Held {
    /// Why the connection is gone, if it is (the broker closed it, or it broke).
    async fn end_reason(&mut self) -> Option<String> {
        match self {
            Held::Quic(bare) => bare.connection.close_reason().map(|e| e.to_string()),
            Held::Ws(reader) if reader.is_finished() => {
                Some(reader.await.unwrap_or_else(|e| e.to_string()))
            }
            Held::Ws(_) => None,
        }
    }

    /// Lets go of the connection without waiting for a graceful close: the broker is
    /// stopped (or left to time the connections out) right after.
    fn release(self) {
        match self {
            Held::Quic(bare) => drop(bare),
            Held::Ws(reader) => reader.abort(),
        }
    }
}

/// Reads frames from `recv` until `pick` returns a value; frames it passes over are
/// ignored. Bytes after the picked frame are dropped: an idle connection expects
/// nothing more on that stream.
async fn read_until<T>(
    recv: &mut quinn::RecvStream,
    mut pick: impl FnMut(server_frame::Body) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    loop {
        while let Some(frame) = decoder.decode::<ServerFrame>(&mut buf)? {
            if let Some(picked) = frame.body.map(&mut pick).transpose()?.flatten() {
                return Ok(picked);
            }
        }
        let chunk = recv
            .read_chunk(READ_CHUNK, true)
            .await?
            .context("the broker finished the stream early")?;
        buf.extend_from_slice(&chunk.bytes);
    }
}

/// The SDK's QUIC client configuration (TLS 1.3 with Quip's ALPN, the broker's
/// certificate as the root, the SDK's keep-alive, idle timeout and stream limits),
/// built once for all connections.
fn quic_config(cert: &Path) -> anyhow::Result<quinn::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
    {
        roots.add(der?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![quip_protocol::ALPN.to_vec()];
    let sdk = TransportOptions::default();
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(sdk.keep_alive_interval))
        .max_idle_timeout(Some(sdk.max_idle_timeout.try_into()?))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(quip_protocol::MAX_LANES * 2))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(4));
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Registers `count` accounts over QUIC and returns their user ids; their clients are
/// closed again so that only the idle connections count.
async fn register_users(run: &Run, count: usize) -> anyhow::Result<Vec<String>> {
    run.progress.setup("users", count as u64);
    stream::iter(0..count)
        .map(|j| async move {
            let client = super::new_user(&run.target, NODE, "u", j, run.id).await?;
            let user_id = client.user_id().context("registered without a user id")?;
            client.close().await;
            run.progress.step();
            anyhow::Ok(user_id)
        })
        .buffer_unordered(REGISTER_CONCURRENCY)
        .try_collect()
        .await
}

/// Datagrams the kernel dropped because the receive buffer of the UDP socket bound
/// to `port` was full (the last column of /proc/net/udp); `None` if there is none.
/// Dropped handshakes and keep-alives are what make connections fail or time out.
fn udp_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
        if local_port == port {
            fields.last()?.parse().ok()
        } else {
            None
        }
    })
}

/// Source addresses so that none carries more than [`MAX_PER_SOURCE_IP`] sockets or
/// 90% of the kernel's ephemeral port range.
fn default_source_ips(connections: usize) -> u8 {
    let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut bounds = range.split_whitespace().map(str::parse::<usize>);
            let (low, high) = (bounds.next()?.ok()?, bounds.next()?.ok()?);
            Some(high.saturating_sub(low) + 1)
        })
        // Linux's default range, 32768..=60999.
        .unwrap_or(28_232);
    let per_ip = MAX_PER_SOURCE_IP.min(ports * 9 / 10).max(1);
    u8::try_from(connections.div_ceil(per_ip).clamp(1, 254)).unwrap_or(254)
}
