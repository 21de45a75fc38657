//! Quip: a `quip-broker` child process (the one built next to this binary) on a free
//! loopback UDP port with a scratch data dir, and the workloads over the SDK.
//!
//! "Acked" is the broker's `SendAck`, sent once the message is stored: on disk with
//! `--durability fsync` (group commit), in the store's memory with `os`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quip_sdk::{Client, ClientOptions, Event, ReconnectPolicy, Trust, pb, quinn};

use crate::report::{Window, histogram, payload, sent_micros, since_micros};
use crate::server::{LOOPBACK, START_TIMEOUT, ScratchDir, Server, ensure_loopback, free_udp_addr};
use crate::workload::{Outcome, Spec, Tally, Workload};

/// Users invited per request: the broker's `max_batch_users` (broker/src/service/groups.rs).
const INVITE_BATCH: usize = 500;
/// Registrations in flight at once. Each costs the broker an argon2 hash (deliberately
/// slow); more in flight than cores only queues them.
const REGISTER_CONCURRENCY: usize = 4;
/// Events the SDK buffers per client: deep enough that a subscriber task never makes the
/// SDK stop reading (which would end in a slow-consumer close).
const EVENT_BUFFER: usize = 65_536;
/// How long in-flight sends may take to settle after the window closes.
const DRAIN: Duration = Duration::from_secs(30);

/// A running broker and the client endpoints its clients share.
#[derive(Debug)]
pub struct Quip {
    server: Server,
    addr: SocketAddr,
    cert: PathBuf,
    /// A small pool of client UDP sockets, as a process holding many connections uses
    /// (see `ClientOptions::endpoint`); clients take them round-robin.
    endpoints: Vec<quinn::Endpoint>,
    run_id: u32,
}

impl Quip {
    /// Starts `quip-broker` with `durability` (`fsync` or `os`) and waits until it
    /// accepts a QUIC connection.
    pub async fn start(
        durability: &str,
        data_root: &Path,
        endpoints: usize,
        extra_args: &[String],
    ) -> anyhow::Result<Quip> {
        let exe = std::env::current_exe()?
            .parent()
            .context("the compare binary has a directory")?
            .join("quip-broker");
        if !exe.is_file() {
            bail!(
                "{} is not built: build it alongside compare \
                 (cargo build --release -p quip-broker -p quip-bench)",
                exe.display()
            );
        }
        let dir = ScratchDir::new(data_root, &format!("quip-{durability}"))?;
        let addr = free_udp_addr()?;
        ensure_loopback(addr)?;
        let mut command = Command::new(&exe);
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--quic-addr")
            .arg(addr.to_string())
            .arg("--no-http")
            .arg("--durability")
            .arg(durability)
            .args(extra_args)
            // Rate limits cap one connection (and logins from one address) at what a
            // person does; a load test drives a few connections as hard as it can.
            .env("QUIP_RATE_MESSAGES_PER_SEC", "0")
            .env("QUIP_RATE_REQUESTS_PER_SEC", "0")
            .env("QUIP_RATE_LOGINS_PER_IP_PER_MIN", "0")
            // Every benchmark client connects from 127.0.0.1.
            .env("QUIP_MAX_CONNECTIONS_PER_IP", "0")
            .env("QUIP_LOG", "warn")
            // A fixed random secret so the broker does not write one; never shown.
            .env(
                "QUIP_JWT_SECRET",
                format!("{:032x}", rand::random::<u128>()),
            );
        let mut server = Server::spawn(&format!("quip-broker ({durability})"), command, dir)?;
        let cert = server.dir().join("data").join("tls").join("cert.pem");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            server.check_running()?;
            if cert.exists()
                && Client::connect(addr, Trust::CertFile(cert.clone()))
                    .await
                    .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "quip-broker did not come up on {addr}; its log ends with:\n{}",
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let endpoints = (0..endpoints.max(1))
            .map(|_| quinn::Endpoint::client(SocketAddr::new(LOOPBACK, 0)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Quip {
            server,
            addr,
            cert,
            endpoints,
            run_id: rand::random(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub async fn run(&self, workload: Workload, spec: &Spec) -> anyhow::Result<Outcome> {
        match workload {
            Workload::Pairs => self.pairs(spec).await,
            Workload::Group => self.group(spec).await,
        }
    }

    /// Connects a client and registers a fresh user on it (`prefix` and `index` make
    /// the username unique within the run).
    async fn user(&self, prefix: &str, index: usize) -> anyhow::Result<Client> {
        let options = ClientOptions {
            device_id: format!("{prefix}-{index}"),
            event_buffer: EVENT_BUFFER,
            reconnect: ReconnectPolicy {
                enabled: false,
                ..ReconnectPolicy::default()
            },
            request_timeout: DRAIN,
            endpoint: Some(self.endpoints[index % self.endpoints.len()].clone()),
            ..ClientOptions::default()
        };
        let client =
            Client::connect_with(self.addr, Trust::CertFile(self.cert.clone()), options).await?;
        client
            .register(
                &format!("b{:08x}{prefix}{index}", self.run_id),
                "bench-password",
                None,
            )
            .await
            .with_context(|| format!("registering user {prefix}{index}"))?;
        Ok(client)
    }

    /// `count` fresh users, registered a few at a time.
    async fn users(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<Client>> {
        let mut clients: Vec<(usize, Client)> = futures_util::stream::iter(0..count)
            .map(|i| async move { self.user(prefix, i).await.map(|c| (i, c)) })
            .buffer_unordered(REGISTER_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        clients.sort_by_key(|(i, _)| *i);
        Ok(clients.into_iter().map(|(_, c)| c).collect())
    }

    async fn pairs(&self, spec: &Spec) -> anyhow::Result<Outcome> {
        let senders = self.users("s", spec.pairs).await?;
        let receivers = self.users("r", spec.pairs).await?;
        let tally = Arc::new(Tally::new());
        let window = spec.window();
        let mut tasks = Vec::new();
        for (sender, receiver) in senders.into_iter().zip(receivers) {
            let to = receiver
                .user_id()
                .context("registered client has a user id")?;
            tasks.push(tokio::spawn(receive(receiver, window, tally.clone())));
            tasks.push(tokio::spawn(send(
                Arc::new(sender),
                to,
                spec.clone(),
                window,
                tally.clone(),
            )));
        }
        join(tasks).await?;
        Ok(tally.outcome(&window))
    }

    async fn group(&self, spec: &Spec) -> anyhow::Result<Outcome> {
        let senders = self.users("gs", spec.senders.max(1)).await?;
        let members = self.users("gm", spec.members).await?;
        let owner = &senders[0];
        let invitees: Vec<String> = senders[1..]
            .iter()
            .chain(&members)
            .filter_map(Client::user_id)
            .collect();
        let mut batches = invitees.chunks(INVITE_BATCH);
        let first = batches.next().unwrap_or_default();
        let created = owner
            .create_group("bench", "", first, pb::JoinMode::Open)
            .await
            .context("creating the group")?;
        let group_id = created
            .group
            .context("GroupChanged carries the group")?
            .group_id;
        for batch in batches {
            owner
                .invite(&group_id, batch)
                .await
                .context("inviting members")?;
        }
        let tally = Arc::new(Tally::new());
        let window = spec.window();
        let mut tasks = Vec::new();
        for member in members {
            tasks.push(tokio::spawn(receive(member, window, tally.clone())));
        }
        for sender in senders {
            let sender = Arc::new(sender);
            // Senders are members too, so they receive each other's messages: drain
            // them (uncounted) so their event buffers never fill.
            tasks.push(tokio::spawn(drain(sender.clone(), window)));
            tasks.push(tokio::spawn(send(
                sender,
                group_id.clone(),
                spec.clone(),
                window,
                tally.clone(),
            )));
        }
        join(tasks).await?;
        Ok(tally.outcome(&window))
    }
}

/// Keeps `spec.window` sends in flight to `to` (a user or group id) until the window
/// closes, counting the ACKs that arrive inside it.
async fn send(sender: Arc<Client>, to: String, spec: Spec, window: Window, tally: Arc<Tally>) {
    let mut ack_latency = histogram();
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < spec.window.max(1) && !window.over() {
            let text = String::from_utf8(payload(spec.size)).unwrap_or_default();
            let request = pb::SendRequest {
                to: to.clone(),
                kind: pb::MessageKind::Text as i32,
                content: Some(pb::send_request::Content::Text(pb::TextContent {
                    text,
                    ..Default::default()
                })),
                // Empty: the SDK assigns a random one.
                client_msg_id: String::new(),
            };
            let sender = &sender;
            inflight.push(async move {
                let begin = Instant::now();
                (sender.send(request).await, begin.elapsed())
            });
        }
        let next = tokio::time::timeout_at((window.stop_at + DRAIN).into(), inflight.next());
        let Ok(Some((result, took))) = next.await else {
            break;
        };
        tally.ack_outcome(&window, &mut ack_latency, result, took, "send");
    }
    tally.merge_ack(&ack_latency);
}

/// Counts the benchmark messages a subscriber receives inside the window and their
/// end-to-end latency; stops when the window closes.
async fn receive(client: Client, window: Window, tally: Arc<Tally>) {
    let mut e2e = histogram();
    loop {
        let event = tokio::time::timeout_at(window.stop_at.into(), client.next_event()).await;
        match event {
            Ok(Some(Event::Message(message))) => {
                if let Some(pb::message::Content::Text(text)) = &message.content
                    && let Some(sent) = sent_micros(text.text.as_bytes())
                    && window.measuring()
                {
                    tally.delivered();
                    let _ = e2e.record(since_micros(sent));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tally.error("a subscriber's connection closed");
                break;
            }
            Err(_) => break,
        }
    }
    tally.merge_e2e(&e2e);
}

/// Discards a client's events until the window closes.
async fn drain(client: Arc<Client>, window: Window) {
    while let Ok(Some(_)) =
        tokio::time::timeout_at(window.stop_at.into(), client.next_event()).await
    {}
}

async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) -> anyhow::Result<()> {
    for task in tasks {
        task.await?;
    }
    Ok(())
}
