//! nats-server, core and JetStream, through async-nats. One TCP connection per
//! publisher and per subscriber, as Quip has one QUIC connection per client.
//!
//! - Core NATS stores nothing and has no per-message ack. A publisher sends `window`
//!   messages, then flushes (a PING/PONG round trip: the server has processed everything
//!   before it); the messages count as acked when the flush returns. Subscribers are
//!   plain subscriptions.
//! - JetStream: one file-storage stream captures `bench.>`. Publishers keep `window`
//!   async publishes in flight, each acked by the stream's `PubAck` (stored). Subscribers
//!   are ordered push consumers reading from the stream (delivery of stored messages, as
//!   Quip delivers once stored), each filtered to its subject, starting at new messages.
//! - JetStream "sync": `sync_interval: always` in the server's `jetstream` block, an
//!   fsync per write. Older servers reject the field (see [`probe_sync`]); by default
//!   JetStream fsyncs its files only every 2 minutes, so a `PubAck` does not mean "on
//!   disk" there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::report::{Window, histogram, payload, sent_micros, since_micros};
use crate::server::{ScratchDir, Server, ensure_loopback, first_output_line, free_tcp_addr};
use crate::workload::{Outcome, Spec, Tally, Workload};

/// The stream that captures every benchmark subject.
const STREAM: &str = "BENCH";
/// How long in-flight publishes may take to settle after the window closes.
const DRAIN: Duration = Duration::from_secs(30);

/// Which NATS setup a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Core,
    JetStream { sync_always: bool },
}

/// Whether this nats-server can fsync every write, and its version.
#[derive(Debug, Clone)]
pub struct SyncSupport {
    pub version: String,
    /// Why not, when it cannot (the server's own words).
    pub unsupported: Option<String>,
}

/// Asks the installed server (`-t`: test the configuration and exit) whether it accepts
/// `sync_interval: always`, instead of assuming from its version number.
pub fn probe_sync(binary: &Path, root: &Path) -> anyhow::Result<SyncSupport> {
    let version = first_output_line(binary, &["--version"])
        .map(|line| {
            line.trim_start_matches("nats-server:")
                .trim()
                .trim_start_matches('v')
                .to_owned()
        })
        .unwrap_or_else(|| "(unknown version)".to_owned());
    let dir = ScratchDir::new(root, "nats-probe")?;
    let config = dir.path().join("probe.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:4222\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            dir.path().join("js").display()
        ),
    )?;
    let output = Command::new(binary)
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .output()
        .context("running nats-server -t")?;
    let unsupported = (!output.status.success()).then(|| {
        let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let said = said.rsplit(": ").next().unwrap_or(&said).to_owned();
        format!("not supported by nats-server {version} ({said})")
    });
    Ok(SyncSupport {
        version,
        unsupported,
    })
}

/// A running nats-server.
#[derive(Debug)]
pub struct Nats {
    server: Server,
    url: String,
    flavor: Flavor,
}

impl Nats {
    pub async fn start(binary: &Path, flavor: Flavor, data_root: &Path) -> anyhow::Result<Nats> {
        let name = match flavor {
            Flavor::Core => "nats",
            Flavor::JetStream { sync_always: false } => "jetstream-file",
            Flavor::JetStream { sync_always: true } => "jetstream-file-sync",
        };
        let dir = ScratchDir::new(data_root, name)?;
        let addr = free_tcp_addr()?;
        ensure_loopback(addr)?;
        let mut config = format!("listen: {addr}\n");
        if let Flavor::JetStream { sync_always } = flavor {
            let store: PathBuf = dir.path().join("jetstream");
            config.push_str(&format!(
                "jetstream {{\n  store_dir: \"{}\"\n{}}}\n",
                store.display(),
                if sync_always {
                    "  sync_interval: always\n"
                } else {
                    ""
                }
            ));
        }
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary);
        command.arg("-c").arg(&config_path);
        let mut server = Server::spawn(name, command, dir)?;
        server.wait_for_tcp(addr).await?;
        let nats = Nats {
            server,
            url: format!("nats://{addr}"),
            flavor,
        };
        if matches!(flavor, Flavor::JetStream { .. }) {
            // JetStream may need a moment after the port opens; retry creating the stream.
            let client = nats.connect().await?;
            let js = jetstream::new(client);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let created = js
                    .create_stream(stream::Config {
                        name: STREAM.to_owned(),
                        subjects: vec!["bench.>".to_owned()],
                        storage: stream::StorageType::File,
                        num_replicas: 1,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(anyhow::anyhow!("creating the JetStream stream: {e}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(nats)
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            // The defaults: a subscription's client-side buffer; deep enough for a
            // run's backlog.
            .subscription_capacity(65_536)
            .connect(&self.url)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }

    pub async fn run(&self, workload: Workload, spec: &Spec) -> anyhow::Result<Outcome> {
        let subject = |i: usize| match workload {
            Workload::Pairs => format!("bench.p.{i}"),
            Workload::Group => "bench.g".to_owned(),
        };
        let tally = Arc::new(Tally::new());
        let mut subscriptions = Vec::new();
        for i in 0..spec.subscribers(workload) {
            subscriptions.push(self.subscribe(&subject(i)).await?);
        }
        let mut publishers = Vec::new();
        for _ in 0..spec.publishers(workload) {
            publishers.push(self.connect().await?);
        }
        let window = spec.window();
        let mut tasks = Vec::new();
        for subscription in subscriptions {
            tasks.push(tokio::spawn(receive(subscription, window, tally.clone())));
        }
        for (i, client) in publishers.into_iter().enumerate() {
            let (subject, spec, tally) = (subject(i), spec.clone(), tally.clone());
            tasks.push(match self.flavor {
                Flavor::Core => tokio::spawn(publish_core(client, subject, spec, window, tally)),
                Flavor::JetStream { .. } => {
                    tokio::spawn(publish_jetstream(client, subject, spec, window, tally))
                }
            });
        }
        for task in tasks {
            task.await?;
        }
        Ok(tally.outcome(&window))
    }

    /// A subscriber of `subject` on its own connection, ready (the server has it)
    /// when this returns.
    async fn subscribe(&self, subject: &str) -> anyhow::Result<Subscription> {
        let client = self.connect().await?;
        match self.flavor {
            Flavor::Core => {
                let subscriber = client.subscribe(subject.to_owned()).await?;
                client.flush().await?;
                Ok(Subscription {
                    _client: client,
                    source: Source::Core(subscriber),
                })
            }
            Flavor::JetStream { .. } => {
                let js = jetstream::new(client.clone());
                let consumer = js
                    .create_consumer_on_stream(
                        consumer::push::OrderedConfig {
                            deliver_subject: client.new_inbox(),
                            filter_subject: subject.to_owned(),
                            deliver_policy: consumer::DeliverPolicy::New,
                            ..Default::default()
                        },
                        STREAM,
                    )
                    .await
                    .context("creating an ordered consumer")?;
                let messages = consumer.messages().await?;
                Ok(Subscription {
                    _client: client,
                    source: Source::JetStream(Box::new(messages)),
                })
            }
        }
    }
}

/// A subscriber: its connection (kept open as long as the subscription is read) and
/// its message source.
struct Subscription {
    _client: async_nats::Client,
    source: Source,
}

enum Source {
    Core(async_nats::Subscriber),
    JetStream(Box<consumer::push::Ordered>),
}

impl Subscription {
    /// The next message's payload; `None` when the subscription ended.
    async fn next(&mut self) -> Option<Result<bytes::Bytes, String>> {
        match &mut self.source {
            Source::Core(subscriber) => subscriber.next().await.map(|m| Ok(m.payload)),
            Source::JetStream(messages) => messages
                .next()
                .await
                .map(|m| m.map(|m| m.message.payload).map_err(|e| e.to_string())),
        }
    }
}

async fn receive(mut subscription: Subscription, window: Window, tally: Arc<Tally>) {
    let mut e2e = histogram();
    loop {
        let next = tokio::time::timeout_at(window.stop_at.into(), subscription.next()).await;
        match next {
            Ok(Some(Ok(payload))) => {
                if let Some(sent) = sent_micros(&payload)
                    && window.measuring()
                {
                    tally.delivered();
                    let _ = e2e.record(since_micros(sent));
                }
            }
            Ok(Some(Err(e))) => tally.error(format!("subscription: {e}")),
            Ok(None) => {
                tally.error("a subscription ended");
                break;
            }
            Err(_) => break,
        }
    }
    tally.merge_e2e(&e2e);
}

/// Core NATS: `window` publishes, then a flush (the round trip that acks them).
async fn publish_core(
    client: async_nats::Client,
    subject: String,
    spec: Spec,
    window: Window,
    tally: Arc<Tally>,
) {
    let mut ack_latency = histogram();
    while !window.over() {
        let begin = Instant::now();
        let mut sent = 0u64;
        for _ in 0..spec.window.max(1) {
            let body = bytes::Bytes::from(payload(spec.size));
            match client.publish(subject.clone(), body).await {
                Ok(()) => sent += 1,
                Err(e) => tally.error(format!("publish: {e}")),
            }
        }
        match client.flush().await {
            Ok(()) if window.measuring() => {
                tally.acked(sent);
                // One sample per batch: the flush round trip of its first message.
                let _ = ack_latency.record(begin.elapsed().as_micros().max(1) as u64);
            }
            Ok(()) => {}
            Err(e) => tally.error(format!("flush: {e}")),
        }
    }
    tally.merge_ack(&ack_latency);
}

/// JetStream: `window` async publishes in flight, each settled by its `PubAck`.
async fn publish_jetstream(
    client: async_nats::Client,
    subject: String,
    spec: Spec,
    window: Window,
    tally: Arc<Tally>,
) {
    let js = jetstream::new(client);
    let mut ack_latency = histogram();
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < spec.window.max(1) && !window.over() {
            let body = bytes::Bytes::from(payload(spec.size));
            let begin = Instant::now();
            match js.publish(subject.clone(), body).await {
                Ok(ack) => inflight.push(async move { (ack.await, begin.elapsed()) }),
                Err(e) => {
                    tally.error(format!("publish: {e}"));
                    break;
                }
            }
        }
        let next = tokio::time::timeout_at((window.stop_at + DRAIN).into(), inflight.next());
        let Ok(Some((result, took))) = next.await else {
            break;
        };
        tally.ack_outcome(&window, &mut ack_latency, result, took, "PubAck");
    }
    tally.merge_ack(&ack_latency);
}
