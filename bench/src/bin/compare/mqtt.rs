//! mosquitto over MQTT 3.1.1 with QoS 1, through rumqttc. One TCP connection per
//! publisher and per subscriber.
//!
//! "Acked" is mosquitto's PUBACK to the publisher (it has the message; it then forwards
//! it to subscribers at QoS 1, which PUBACK in turn). The configuration is Debian's
//! default one (`persistence true`: the in-memory database is saved every
//! `autosave_interval`, 1800 s by default, and at shutdown, never per message) moved
//! into the run's scratch dir, plus a listener on the chosen loopback port.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::report::{Window, histogram, payload, sent_micros, since_micros};
use crate::server::{ScratchDir, Server, ensure_loopback, free_tcp_addr};
use crate::workload::{Outcome, Spec, Tally, Workload};

/// A running mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    server: Server,
    port: u16,
}

impl Mosquitto {
    /// Starts mosquitto; `nodelay` adds `set_tcp_nodelay true` (off in its defaults).
    pub async fn start(binary: &Path, data_root: &Path, nodelay: bool) -> anyhow::Result<Self> {
        let dir = ScratchDir::new(data_root, "mosquitto")?;
        let addr = free_tcp_addr()?;
        ensure_loopback(addr)?;
        let config = format!(
            "# Debian's /etc/mosquitto/mosquitto.conf, relocated into this run's directory.\n\
             persistence true\n\
             persistence_location {dir}/\n\
             log_dest file {dir}/mosquitto.log\n\
             # As root, mosquitto would switch to the `mosquitto` user, which cannot write\n\
             # the directory above; staying root changes nothing on the measured path.\n\
             user root\n\
             listener {port} {ip}\n\
             allow_anonymous true\n\
             {nodelay}",
            dir = dir.path().display(),
            port = addr.port(),
            ip = addr.ip(),
            nodelay = if nodelay {
                "set_tcp_nodelay true\n"
            } else {
                ""
            },
        );
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary);
        command.arg("-c").arg(&config_path);
        let mut server = Server::spawn("mosquitto", command, dir)?;
        server.wait_for_tcp(addr).await?;
        Ok(Mosquitto {
            server,
            port: addr.port(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// A connected client (CONNACK received). rumqttc's outgoing in-flight limit is the
    /// window; TCP_NODELAY on, as async-nats sets it.
    async fn connect(&self, id: &str, spec: &Spec) -> anyhow::Result<(AsyncClient, EventLoop)> {
        let mut options = MqttOptions::new(id, "127.0.0.1", self.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(u16::try_from(spec.window.clamp(1, 65_535)).unwrap_or(u16::MAX))
            .set_max_packet_size(spec.size + 1024, spec.size + 1024);
        let (client, mut eventloop) = AsyncClient::new(options, spec.window.max(1));
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => Ok((client, eventloop)),
            Ok(Ok(other)) => bail!("expected CONNACK, got {other:?}"),
            Ok(Err(e)) => Err(e).context("connecting to mosquitto"),
            Err(_) => bail!("no CONNACK from mosquitto within 10 s"),
        }
    }

    pub async fn run(&self, workload: Workload, spec: &Spec) -> anyhow::Result<Outcome> {
        let topic = |i: usize| match workload {
            Workload::Pairs => format!("bench/p/{i}"),
            Workload::Group => "bench/g".to_owned(),
        };
        let tally = Arc::new(Tally::new());
        let mut subscribers = Vec::new();
        for i in 0..spec.subscribers(workload) {
            let (client, mut eventloop) = self.connect(&format!("sub-{i}"), spec).await?;
            client.subscribe(topic(i), QoS::AtLeastOnce).await?;
            loop {
                match eventloop.poll().await? {
                    Event::Incoming(Packet::SubAck(_)) => break,
                    _ => continue,
                }
            }
            subscribers.push((client, eventloop));
        }
        let mut publishers = Vec::new();
        for i in 0..spec.publishers(workload) {
            publishers.push(self.connect(&format!("pub-{i}"), spec).await?);
        }
        let window = spec.window();
        let mut tasks = Vec::new();
        for (client, eventloop) in subscribers {
            tasks.push(tokio::spawn(receive(
                client,
                eventloop,
                window,
                tally.clone(),
            )));
        }
        for (i, (client, eventloop)) in publishers.into_iter().enumerate() {
            tasks.push(tokio::spawn(count_acks(eventloop, window, tally.clone())));
            tasks.push(tokio::spawn(publish(
                client,
                topic(i),
                spec.clone(),
                window,
                tally.clone(),
            )));
        }
        for task in tasks {
            task.await?;
        }
        Ok(tally.outcome(&window))
    }
}

/// Publishes until the window closes. `publish` waits while the request channel is
/// full, which it is while `window` publishes await their PUBACK: that is the window.
async fn publish(
    client: AsyncClient,
    topic: String,
    spec: Spec,
    window: Window,
    tally: Arc<Tally>,
) {
    while !window.over() {
        let sent = tokio::time::timeout_at(
            window.stop_at.into(),
            client.publish(topic.clone(), QoS::AtLeastOnce, false, payload(spec.size)),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Once the window closes the event loop stops being polled and
                // rejects requests: that is the end, not an error.
                if !window.over() {
                    tally.error(format!("publish: {e}"));
                }
                break;
            }
            Err(_) => break,
        }
    }
}

/// Drives a publisher's connection and counts its PUBACKs.
async fn count_acks(mut eventloop: EventLoop, window: Window, tally: Arc<Tally>) {
    while let Ok(polled) = tokio::time::timeout_at(window.stop_at.into(), eventloop.poll()).await {
        match polled {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                if window.measuring() {
                    tally.acked(1);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tally.error(format!("publisher connection: {e}"));
                break;
            }
        }
    }
}

/// Drives a subscriber's connection (rumqttc PUBACKs each QoS 1 delivery itself) and
/// counts the benchmark messages received inside the window.
async fn receive(
    _client: AsyncClient,
    mut eventloop: EventLoop,
    window: Window,
    tally: Arc<Tally>,
) {
    let mut e2e = histogram();
    while let Ok(polled) = tokio::time::timeout_at(window.stop_at.into(), eventloop.poll()).await {
        match polled {
            Ok(Event::Incoming(Packet::Publish(message))) => {
                if let Some(sent) = sent_micros(&message.payload)
                    && window.measuring()
                {
                    tally.delivered();
                    let _ = e2e.record(since_micros(sent));
                }
            }
            Ok(_) => {}
            Err(e) => {
                tally.error(format!("subscriber connection: {e}"));
                break;
            }
        }
    }
    tally.merge_e2e(&e2e);
}
