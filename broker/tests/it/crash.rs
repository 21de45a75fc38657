//! Crash safety: the broker runs as a child process and is killed with SIGKILL at
//! random moments while several clients send, then restarted on the same data dir.
//! Afterwards every ACKed message must be in history exactly once, seqs dense, and
//! every receiver must have surfaced each message exactly once.
//!
//! The same runs in cluster mode: the broker is a node on a real `redis-server`, so
//! every ACK must survive the node's death in Redis instead of sled.
//!
//! CI runs a short version; `QUIP_CRASH_KILLS=25 cargo test -p quip-broker --test
//! crash -- --nocapture` runs a long one and prints its counts.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quip_sdk::{Client, ClientOptions, ErrorCode, Event, ReconnectPolicy, Trust, pb};
use tokio::sync::Mutex;

const SENDERS: usize = 3;
const RECEIVERS: usize = 2;
const JWT_SECRET: &str = "crash-test-secret-crash-test-secret";

struct ChildBroker {
    child: Option<Child>,
    data_dir: PathBuf,
    addr: SocketAddr,
    /// Cluster mode: the Redis the node uses as its store.
    redis: Option<String>,
}

impl ChildBroker {
    fn start(data_dir: &Path, addr: SocketAddr, redis: Option<String>) -> ChildBroker {
        let mut broker = ChildBroker {
            child: None,
            data_dir: data_dir.to_owned(),
            addr,
            redis,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quip-broker"));
        if let Some(url) = &self.redis {
            command.args(["--redis", url, "--node-id", "crash-node"]);
        }
        let child = command
            // No browser bridge: it would bind a fixed port, and nothing here uses it.
            .arg("--no-http")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--quic-addr")
            .arg(self.addr.to_string())
            .arg("--durability")
            .arg("fsync")
            .env("QUIP_JWT_SECRET", JWT_SECRET)
            .env("QUIP_LOG", "warn")
            // The senders go as fast as acks come back: far over a person's rate.
            .env("QUIP_RATE_MESSAGES_PER_SEC", "0")
            .env("QUIP_RATE_REQUESTS_PER_SEC", "0")
            .env("QUIP_RATE_LOGINS_PER_IP_PER_MIN", "0")
            .env("QUIP_MAX_CONNECTIONS_PER_IP", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("broker binary starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL: no shutdown, no flush.
            let _ = child.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn cert(&self) -> PathBuf {
        self.data_dir.join("tls").join("cert.pem")
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn client(broker: &ChildBroker, device: &str) -> Client {
    let options = ClientOptions {
        device_id: device.into(),
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            ..ReconnectPolicy::default()
        },
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    // The broker may still be starting: retry the first connection.
    let deadline = Instant::now() + common::WAIT;
    loop {
        if broker.cert().exists() {
            if let Ok(client) =
                Client::connect_with(broker.addr, Trust::CertFile(broker.cert()), options.clone())
                    .await
            {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "broker did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries an operation across broker restarts until it succeeds.
async fn retry<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = quip_sdk::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(error) => {
                // Only a broker that is away is worth waiting for.
                let transient = matches!(
                    error.code(),
                    None | Some(
                        ErrorCode::Unavailable | ErrorCode::ShuttingDown | ErrorCode::Unspecified
                    )
                );
                assert!(transient, "refused: {error}");
                assert!(Instant::now() < deadline, "gave up: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What one receiver surfaced: (conv_id, seq, client_msg_id), in order.
type ReceiveLog = Arc<Mutex<Vec<(String, u64, String)>>>;

#[derive(Debug, Default)]
struct Ledger {
    /// client_msg_id -> (conv_id, seq) for every ACK.
    acked: HashMap<String, (String, u64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_exactly_once() {
    kill_loop(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill_exactly_once_in_cluster_mode() {
    let redis = common::redis::RedisServer::start();
    kill_loop(Some(redis.url())).await;
}

/// Kills the broker (a cluster node on `redis`, if given) at random moments while
/// clients send, then checks every ACKed message was stored and delivered once.
async fn kill_loop(redis: Option<String>) {
    common::init_tracing();
    let kills: usize = std::env::var("QUIP_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let mut broker = ChildBroker::start(dir.path(), free_udp_port(), redis);

    // Accounts first (registration is itself durable before it answers).
    let mut receiver_ids = Vec::new();
    let mut receivers = Vec::new();
    for r in 0..RECEIVERS {
        let client = client(&broker, &format!("recv{r}")).await;
        client
            .register(&format!("receiver{r}"), common::PASSWORD, None)
            .await
            .unwrap();
        receiver_ids.push(client.user_id().unwrap());
        receivers.push(client);
    }
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let client = client(&broker, &format!("send{s}")).await;
        client
            .register(&format!("sender{s}"), common::PASSWORD, None)
            .await
            .unwrap();
        senders.push(client);
    }

    // Receivers surface events into their own logs until told to stop.
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let received: Vec<ReceiveLog> = (0..RECEIVERS).map(|_| Arc::default()).collect();
    let receiver_tasks: Vec<_> = receivers
        .into_iter()
        .zip(received.clone())
        .map(|(client, log)| {
            let stop = stop_receiving.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(200), client.next_event())
                        .await
                    {
                        Ok(Some(Event::Message(m))) => {
                            log.lock().await.push((m.conv_id, m.seq, m.client_msg_id))
                        }
                        Ok(Some(_)) | Err(_) => {}
                        Ok(None) => break,
                    }
                }
                client
            })
        })
        .collect();

    // Senders send until told to stop, each message retried with its client_msg_id
    // until ACKed (the at-least-once sender).
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop_sending = Arc::new(AtomicBool::new(false));
    let sender_tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, client)| {
            let ledger = ledger.clone();
            let stop = stop_sending.clone();
            let targets = receiver_ids.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let client_msg_id = format!("s{s}-{n}");
                    let request = pb::SendRequest {
                        to: targets[n as usize % targets.len()].clone(),
                        kind: pb::MessageKind::Text as i32,
                        content: Some(pb::send_request::Content::Text(pb::TextContent {
                            text: client_msg_id.clone(),
                            ..Default::default()
                        })),
                        client_msg_id: client_msg_id.clone(),
                    };
                    let ack = retry(|| client.send(request.clone())).await;
                    ledger
                        .lock()
                        .await
                        .acked
                        .insert(client_msg_id, (ack.conv_id, ack.seq));
                }
                client
            })
        })
        .collect();

    let started = Instant::now();
    for _ in 0..kills {
        let pause = 150 + rand::random::<u64>() % 600;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        broker.restart();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_sending.store(true, Ordering::Relaxed);
    let mut senders = Vec::new();
    for task in sender_tasks {
        senders.push(task.await.unwrap());
    }
    let acked = std::mem::take(&mut ledger.lock().await.acked);

    // Every ACKed message is in history exactly once, with dense seqs. Each sender
    // reads the conversations it sent to.
    let mut found = 0usize;
    let mut stored_ids = HashSet::new();
    let mut duplicates = Vec::new();
    for (s, sender) in senders.iter().enumerate() {
        let mine: BTreeMap<&String, ()> = acked
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("s{s}-")))
            .map(|(_, (conv, _))| (conv, ()))
            .collect();
        for conv_id in mine.keys() {
            let mut after = 0;
            let mut seqs = Vec::new();
            loop {
                let page = retry(|| sender.history_after(conv_id, after, 200)).await;
                for m in &page.messages {
                    if !stored_ids.insert(m.client_msg_id.clone()) {
                        duplicates.push(m.client_msg_id.clone());
                    }
                    seqs.push(m.seq);
                }
                after = page.messages.last().map_or(after, |m| m.seq);
                if !page.has_more {
                    break;
                }
            }
            assert_eq!(
                seqs,
                (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "dense seqs in {conv_id}"
            );
            found += seqs.len();
        }
    }
    let lost: Vec<&String> = acked
        .keys()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    // Counted first, asserted after, so a failing run still reports its figures.
    println!(
        "crash test history: kills={kills} acked={} found={found} lost={} duplicates={}",
        acked.len(),
        lost.len(),
        duplicates.len()
    );
    assert!(lost.is_empty(), "ACKed but not stored: {lost:?}");
    assert!(
        duplicates.is_empty(),
        "stored more than once: {duplicates:?}"
    );

    // Every receiver eventually surfaces each of its messages exactly once.
    let expected: Vec<HashSet<(String, u64)>> = receiver_ids
        .iter()
        .map(|rid| {
            acked
                .values()
                .filter(|(conv, _)| conv.contains(rid.as_str()))
                .cloned()
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut complete = true;
        for (log, expected) in received.iter().zip(&expected) {
            let log = log.lock().await;
            let got: HashSet<(String, u64)> = log.iter().map(|(c, s, _)| (c.clone(), *s)).collect();
            assert_eq!(got.len(), log.len(), "a receiver surfaced a message twice");
            complete &= expected.is_subset(&got);
        }
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "receivers did not get every ACKed message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_receiving.store(true, Ordering::Relaxed);
    for task in receiver_tasks {
        task.await.unwrap();
    }
    println!(
        "crash test: kills={kills} acked={} found={found} lost={} duplicates={} elapsed={:.1}s; \
         every receiver surfaced each message exactly once",
        acked.len(),
        lost.len(),
        duplicates.len(),
        started.elapsed().as_secs_f64()
    );
}
