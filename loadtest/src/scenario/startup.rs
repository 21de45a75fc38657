//! `startup`: how long a broker with a big store takes from exec to accepting QUIC
//! connections.
//!
//! The store is filled once, in-process through the broker's own `SledStore` (the
//! same writer, keys and records as live sends, without the network: 10 million
//! messages over QUIC would take most of an hour on a 2-core machine), and kept in
//! `--data-dir` for later runs. Then the `quip-broker` binary is started on it
//! `--rounds` times: each round times exec → first completed QUIC handshake, then
//! stops the broker, gracefully (SIGTERM) or, with `--kill`, by SIGKILL so that the
//! next start has to recover sled's log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::{FuturesUnordered, StreamExt};
use quip_broker::Durability;
use quip_broker::store::sled::SledOptions;
use quip_broker::store::{NewMessage, SledStore, Store};
use quip_protocol::{ids, pb};
use quip_sdk::{Client, Trust};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct StartupArgs {
    /// Messages the store holds.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: u64,
    /// 1:1 conversations the messages are spread over.
    #[arg(long, default_value_t = 10_000)]
    pub conversations: u64,
    /// Where the filled store is kept between runs (default: `quip-startup-<messages>`
    /// in the system temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Starts to time.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Stop each broker with SIGKILL instead of SIGTERM (recovery after a crash).
    #[arg(long)]
    pub kill: bool,
    /// Time starts on `--data-dir` as it is, without filling it (e.g. a store whose
    /// fill was interrupted; `--messages` is then not checked).
    #[arg(long)]
    pub no_fill: bool,
}

/// Appends in flight while filling: enough to keep the writer's batches full.
const FILL_WINDOW: usize = 8_192;
/// Written next to the store once it holds `messages` messages.
const FILLED_MARKER: &str = "quip-loadtest-filled";

pub async fn run(args: &StartupArgs) -> anyhow::Result<Value> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("quip-startup-{}", args.messages)));
    let fill = if args.no_fill {
        json!({"skipped": true, "messages_found": count_filled(&data_dir, args.conversations).await?})
    } else {
        fill(&data_dir, args).await?
    };
    let exe = std::env::current_exe()?
        .parent()
        .context("binary has a directory")?
        .join("quip-broker");
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        let started = start_and_time(&exe, &data_dir, args.kill)
            .await
            .with_context(|| format!("round {round}"))?;
        eprintln!("startup round {round}: {:.1} ms", started * 1000.0);
        rounds.push(started * 1000.0);
    }
    let mut sorted = rounds.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "scenario": "startup",
        "messages": args.messages,
        "conversations": args.conversations,
        "data_dir": data_dir.display().to_string(),
        "store_bytes": dir_size(&data_dir),
        "fill": fill,
        "stop": if args.kill { "SIGKILL" } else { "SIGTERM" },
        "rounds_ms": rounds,
        "median_ms": sorted[sorted.len() / 2],
        "max_ms": sorted.last().copied().unwrap_or_default(),
    }))
}

/// Fills the store unless an earlier run did.
async fn fill(data_dir: &Path, args: &StartupArgs) -> anyhow::Result<Value> {
    let marker = data_dir.join(FILLED_MARKER);
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == args.messages.to_string()) {
        return Ok(json!({"reused": true}));
    }
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)
            .with_context(|| format!("cannot clear {}", data_dir.display()))?;
    }
    let store_dir = data_dir.join("store");
    std::fs::create_dir_all(&store_dir)?;
    let options = SledOptions {
        durability: Durability::Os,
        ..SledOptions::default()
    };
    let store = Arc::new(SledStore::open(&store_dir, options)?);
    let begin = Instant::now();
    let bar = indicatif::ProgressBar::new(args.messages);
    bar.set_style(
        indicatif::ProgressStyle::with_template("filling {pos}/{len} messages {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let mut inflight = FuturesUnordered::new();
    for n in 0..args.messages {
        if inflight.len() >= FILL_WINDOW {
            inflight.next().await.transpose()?;
            bar.inc(1);
        }
        inflight.push(store.append(message(n, args.conversations.max(1))));
    }
    while let Some(result) = inflight.next().await {
        result?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    store.flush().await?;
    let seconds = begin.elapsed().as_secs_f64();
    drop(store);
    std::fs::write(&marker, args.messages.to_string())?;
    Ok(json!({
        "reused": false,
        "seconds": seconds,
        "appends_per_sec": (args.messages as f64 / seconds).round(),
    }))
}

/// How many messages an earlier (possibly interrupted) fill stored: message `n` went
/// to conversation `n % conversations` with seq `n / conversations + 1`, in order, so
/// the first and last conversations' ends bound the count.
async fn count_filled(data_dir: &Path, conversations: u64) -> anyhow::Result<u64> {
    let conversations = conversations.max(1);
    let store = SledStore::open(&data_dir.join("store"), SledOptions::default())?;
    let conv = |pair: u64| {
        ids::single_conv_id(&ids::new_user_id(pair * 2), &ids::new_user_id(pair * 2 + 1))
    };
    let first = store.last_seq(&conv(0)).await?;
    let last = store.last_seq(&conv(conversations - 1)).await?;
    let mut count = last * conversations;
    if first > last {
        // Conversations 0..=k have one message more: find k by bisection.
        let (mut low, mut high) = (0, conversations - 1);
        while low < high {
            let mid = (low + high).div_ceil(2);
            if store.last_seq(&conv(mid)).await? >= first {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        count += low + 1;
    }
    Ok(count)
}

/// Message `n`: conversation `n % conversations`, between that conversation's two
/// users, with a 100-byte text like a typical chat line.
fn message(n: u64, conversations: u64) -> NewMessage {
    let pair = n % conversations;
    let from = ids::new_user_id(pair * 2);
    let to = ids::new_user_id(pair * 2 + 1);
    let text = format!("{n:020} the train is stuck outside the station, start without me :)");
    let message = pb::Message {
        conv_id: ids::single_conv_id(&from, &to),
        from: from.clone(),
        to: to.clone(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::message::Content::Text(pb::TextContent {
            text,
            ..Default::default()
        })),
        client_msg_id: format!("fill-{n:016x}"),
        from_device: "phone".to_owned(),
        ..Default::default()
    };
    NewMessage::new(message, vec![from, to])
}

/// Starts the broker on `data_dir` and returns the seconds until a QUIC handshake
/// completes; the broker is stopped before returning.
async fn start_and_time(exe: &Path, data_dir: &Path, kill: bool) -> anyhow::Result<f64> {
    let quic_addr = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let http_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let cert = data_dir.join("tls").join("cert.pem");
    let begin = Instant::now();
    let child = Command::new(exe)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--quic-addr")
        .arg(quic_addr.to_string())
        .arg("--http-addr")
        .arg(http_addr.to_string())
        .env("QUIP_LOG", "warn")
        .env(
            "QUIP_JWT_SECRET",
            format!("{:032x}", rand::random::<u128>()),
        )
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut child = Stopper { child, kill };
    let deadline = begin + Duration::from_secs(120);
    // A QUIC Initial sent before the broker's socket is bound is lost, and the client
    // only retransmits it after about a second: dialing blindly would round every
    // start up to whole seconds. So first wait (2 ms steps) until the port is taken,
    // then handshake.
    while std::net::UdpSocket::bind(quic_addr).is_ok() {
        if let Some(status) = child.child.try_wait()? {
            bail!("broker exited during startup: {status}");
        }
        if Instant::now() > deadline {
            bail!("broker did not bind its QUIC port within 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    loop {
        // The first start generates the certificate; later ones reuse it.
        if cert.exists()
            && Client::connect(quic_addr, Trust::CertFile(cert.clone()))
                .await
                .is_ok()
        {
            break;
        }
        if let Some(status) = child.child.try_wait()? {
            bail!("broker exited during startup: {status}");
        }
        if Instant::now() > deadline {
            bail!("broker did not accept connections within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = begin.elapsed().as_secs_f64();
    child.stop();
    Ok(took)
}

/// Stops the child on every path, and waits for it so that the next round can open
/// the store.
struct Stopper {
    child: Child,
    kill: bool,
}

impl Stopper {
    fn stop(&mut self) {
        if self.kill {
            let _ = self.child.kill();
        } else {
            // SIGTERM: the broker's graceful shutdown flushes and closes the store.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Bytes under `dir` (the store's size on disk).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
