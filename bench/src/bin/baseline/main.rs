//! `baseline`: raw quinn echo on loopback, the transport's ceiling on this machine.
//!
//! The same QUIC stack as Quip (the workspace's quinn and rustls, ring provider,
//! TLS 1.3) with nothing on top: no protobuf, no store, no routing. The server is this
//! binary re-executed with `--serve` in its own process, as the broker is for its
//! clients. The client opens `--connections` connections (default 20: the pairs
//! workload of `compare` at its default 10 pairs holds 2 × 10 connections to the
//! broker), each with one bidirectional stream carrying length-prefixed messages of
//! `--size` bytes, `--window` of them in flight per connection, and counts the echoes
//! that come back during `--duration` and their round-trip times.
//!
//! An echoed message crosses loopback twice (there and back); a Quip pairs message
//! three times (send, ACK, delivery), so compare against `baseline` on one machine,
//! not as equal work.

#[path = "../compare/report.rs"]
mod report;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, BytesMut};
use clap::Parser;
use hdrhistogram::Histogram;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::report::{Latency, Window, histogram, payload, print_table, rate, sent_micros};

/// ALPN of the echo protocol (TLS 1.3 needs one agreed; any will do).
const ALPN: &[u8] = b"quip-bench-echo";
/// Largest echo message; larger lengths are a protocol error.
const MAX_MESSAGE: usize = 1 << 20;
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Idle timeout of both sides (as the broker's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Raw QUIC echo with the same connection count, window and message size as `compare`.
#[derive(Debug, Parser)]
#[command(name = "baseline")]
struct Args {
    /// Connections, one bidirectional stream each (default: 2 × compare's 10 pairs).
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Message bytes (at least the 20-byte time stamp), plus a 4-byte length prefix.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the measured ones.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Client UDP sockets (quinn endpoints) the connections share, round-robin, as a
    /// process holding many connections would (0: one per connection).
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: run the echo server on this loopback address with the certificate and
    /// key (DER) in `--cert-dir`, print "ready", and serve until stdin closes.
    #[arg(long, hide = true)]
    serve: Option<SocketAddr>,
    #[arg(long, hide = true)]
    cert_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.serve {
        let dir = args.cert_dir.context("--serve needs --cert-dir")?;
        return serve(addr, &dir).await;
    }
    if args.connections == 0 || args.window == 0 {
        bail!("--connections and --window must be at least 1");
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0) {
        bail!("--duration must be positive and --warmup not negative");
    }
    run_client(&args).await
}

/// Benchmarks only ever target this machine.
fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("baseline only uses loopback addresses, not {addr}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Server process.

async fn serve(addr: SocketAddr, cert_dir: &Path) -> anyhow::Result<()> {
    ensure_loopback(addr)?;
    let cert = CertificateDer::from(std::fs::read(cert_dir.join("cert.der"))?);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(std::fs::read(
        cert_dir.join("key.der"),
    )?));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(IDLE_TIMEOUT.try_into().ok());
    transport.max_concurrent_uni_streams(0u32.into());
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(config, addr)?;

    // The parent holds our stdin; when it goes away (even killed), so do we.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    println!("ready");

    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(echo(send, recv));
            }
        });
    }
    Ok(())
}

/// Echoes every complete length-prefixed message back, all those that one read
/// completed in one write (as a server coalesces responses).
async fn echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while let Ok(Some(chunk)) = recv.read_chunk(READ_CHUNK, true).await {
        buffer.extend_from_slice(&chunk.bytes);
        while let Some(message) = next_message(&mut buffer) {
            let Ok(message) = message else { return };
            out.put_u32(message.len() as u32);
            out.extend_from_slice(&message);
        }
        if !out.is_empty() && send.write_all(&out.split()).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Splits the next complete message off `buffer`: `None` if incomplete, `Some(Err)` if
/// its length is out of bounds.
fn next_message(buffer: &mut BytesMut) -> Option<Result<BytesMut, ()>> {
    if buffer.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if len > MAX_MESSAGE {
        return Some(Err(()));
    }
    if buffer.len() < 4 + len {
        return None;
    }
    buffer.advance(4);
    Some(Ok(buffer.split_to(len)))
}

// ---------------------------------------------------------------------------------
// Client (the parent process).

/// The echo server child: killed and reaped on drop, its scratch dir then removed.
#[derive(Debug)]
struct EchoServer {
    child: Child,
    dir: PathBuf,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes the certificate, starts `baseline --serve` on a free loopback port, and
/// waits for its "ready".
fn start_server() -> anyhow::Result<(EchoServer, SocketAddr, CertificateDer<'static>)> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = UdpSocket::bind((loopback, 0))?.local_addr()?;
    ensure_loopback(addr)?;
    let dir = std::env::temp_dir().join(format!("quip-baseline-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(dir.join("cert.der"), certified.cert.der())?;
    std::fs::write(dir.join("key.der"), certified.key_pair.serialize_der())?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .arg(addr.to_string())
        .arg("--cert-dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the echo server process")?;
    let mut server = EchoServer { child, dir };
    let mut ready = String::new();
    let mut stdout = server.child.stdout.take().context("server stdout")?;
    let mut byte = [0u8; 1];
    while !ready.ends_with('\n') {
        if stdout.read(&mut byte)? == 0 {
            bail!("the echo server exited before it was ready");
        }
        ready.push(byte[0] as char);
    }
    if ready.trim() != "ready" {
        bail!("unexpected output from the echo server: {ready:?}");
    }
    Ok((server, addr, certified.cert.der().clone()))
}

fn client_config(cert: CertificateDer<'static>) -> anyhow::Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(IDLE_TIMEOUT.try_into().ok());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Counts shared by the connections' tasks.
#[derive(Debug, Default)]
struct Totals {
    echoed: AtomicU64,
    errors: AtomicU64,
}

async fn run_client(args: &Args) -> anyhow::Result<()> {
    let (_server, addr, cert) = start_server()?;
    let config = client_config(cert)?;
    let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let endpoint_count = if args.endpoints == 0 {
        args.connections
    } else {
        args.endpoints.min(args.connections)
    };
    let endpoints = (0..endpoint_count)
        .map(|_| quinn::Endpoint::client(loopback))
        .collect::<Result<Vec<_>, _>>()?;
    let mut streams = Vec::new();
    for i in 0..args.connections {
        let connection = endpoints[i % endpoints.len()]
            .connect_with(config.clone(), addr, "localhost")?
            .await
            .context("connecting to the echo server")?;
        let (send, recv) = connection.open_bi().await?;
        streams.push((connection, send, recv));
    }

    let window = Window::starting_in(
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
    );
    let totals = Arc::new(Totals::default());
    let size = args.size.max(report::STAMP_LEN);
    let mut tasks = Vec::new();
    for (connection, send, recv) in streams {
        let credits = Arc::new(Semaphore::new(args.window));
        tasks.push(tokio::spawn(write_loop(
            send,
            credits.clone(),
            size,
            window,
        )));
        tasks.push(tokio::spawn(read_loop(
            connection,
            recv,
            credits,
            window,
            totals.clone(),
        )));
    }
    let mut rtt = histogram();
    for task in tasks {
        if let Some(local) = task.await? {
            rtt.add(&local)?;
        }
    }
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"done");
    }

    let echoed = totals.echoed.load(Ordering::Relaxed);
    let seconds = window.seconds();
    let per_sec = echoed as f64 / seconds;
    let latency = Latency::of(&rtt);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "baseline: raw quinn echo (the workspace's quinn 0.11), TLS 1.3 (rustls, ring), \
         server in its own process, {} connections on {} client endpoints, window {} per \
         connection, {} B messages (+4 B length), warmup {} s, duration {} s, {cores} cores, \
         loopback",
        args.connections,
        endpoints.len(),
        args.window,
        size,
        args.warmup,
        args.duration
    );
    println!();
    print_table(
        &[
            "transport",
            "connections",
            "echoed msgs/s",
            "payload MB/s (each way)",
            "RTT p50 ms",
            "RTT p99 ms",
            "errors",
        ],
        &[vec![
            "quinn echo".to_owned(),
            args.connections.to_string(),
            rate(per_sec),
            format!("{:.1}", per_sec * size as f64 / 1e6),
            format!("{:.2}", latency.p50_ms),
            format!("{:.2}", latency.p99_ms),
            totals.errors.load(Ordering::Relaxed).to_string(),
        ]],
    );
    if let Some(path) = &args.json {
        let document = json!({
            "tool": "baseline",
            "transport": "quinn echo, TLS 1.3, ring",
            "connections": args.connections,
            "client_endpoints": endpoints.len(),
            "window": args.window,
            "size": size,
            "warmup": args.warmup,
            "duration": args.duration,
            "cores": cores,
            "echoed": echoed,
            "echoed_per_sec": per_sec.round(),
            "rtt": latency,
            "errors": totals.errors.load(Ordering::Relaxed),
        });
        std::fs::write(path, serde_json::to_string_pretty(&document)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("result written to {}", path.display());
    }
    Ok(())
}

/// Sends a message whenever the window has room, until the measurement ends.
async fn write_loop(
    mut send: quinn::SendStream,
    credits: Arc<Semaphore>,
    size: usize,
    window: Window,
) -> Option<Histogram<u64>> {
    let mut frame = BytesMut::with_capacity(4 + size);
    while !window.over() {
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(window.stop_at.into(), credits.acquire()).await
        else {
            break;
        };
        // The reader gives the credit back when the echo arrives.
        permit.forget();
        frame.put_u32(size as u32);
        frame.extend_from_slice(&payload(size));
        if send.write_all(&frame.split()).await.is_err() {
            break;
        }
    }
    let _ = send.shutdown().await;
    None
}

/// Reads echoes, returns their credits to the writer, and records the round trips
/// that complete inside the window.
async fn read_loop(
    connection: quinn::Connection,
    mut recv: quinn::RecvStream,
    credits: Arc<Semaphore>,
    window: Window,
    totals: Arc<Totals>,
) -> Option<Histogram<u64>> {
    let mut rtt = histogram();
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let read =
            tokio::time::timeout_at(window.stop_at.into(), recv.read_chunk(READ_CHUNK, true)).await;
        let chunk = match read {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(_)) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(_) => break,
        };
        buffer.extend_from_slice(&chunk.bytes);
        let mut completed = 0;
        while let Some(message) = next_message(&mut buffer) {
            let Ok(message) = message else {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                return Some(rtt);
            };
            completed += 1;
            if window.measuring()
                && let Some(sent) = sent_micros(&message)
            {
                totals.echoed.fetch_add(1, Ordering::Relaxed);
                let _ = rtt.record(report::since_micros(sent));
            }
        }
        credits.add_permits(completed);
    }
    connection.close(0u32.into(), b"done");
    Some(rtt)
}
