//! Cluster mode: several brokers on 127.0.0.1 joined by a real `redis-server`.
//! Users on different nodes chat 1:1 and in groups (each device gets each message
//! once, in order); a user moves between nodes and resumes; history reads the same
//! from every node; Redis going away gives UNAVAILABLE, never a false ACK, and the
//! cluster recovers by itself; a killed node's users resume on another node.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quip_protocol::ids::{group_conv_id, single_conv_id};
use quip_sdk::{Client, ClientOptions, ErrorCode, ReconnectPolicy, TransportOptions, pb};

use crate::common::redis::RedisServer;
use crate::common::{PASSWORD, TestBroker, WAIT, messages, next_message, text, until_sync_done};

/// Short enough that tests see a dead node forgotten quickly.
const PRESENCE_TTL_MS: u64 = 1_500;

/// Nodes sharing one Redis, one JWT secret (`Config::for_tests`) and one certificate
/// (node 0's), as a real cluster behind one name would.
struct TestCluster {
    redis: RedisServer,
    nodes: Vec<TestBroker>,
}

impl TestCluster {
    async fn start(n: usize) -> TestCluster {
        let redis = RedisServer::start();
        let mut nodes: Vec<TestBroker> = Vec::with_capacity(n);
        for i in 0..n {
            let url = redis.url();
            let shared_tls = nodes.first().map(tls_files);
            let node = TestBroker::start_with(move |config| {
                config.redis = Some(url);
                config.node_id = Some(format!("node-{i}"));
                config.cluster_presence_ttl_ms = PRESENCE_TTL_MS;
                config.cluster_route_cache_ms = 200;
                if let Some((cert, key)) = shared_tls {
                    config.cert = Some(cert);
                    config.key = Some(key);
                }
            })
            .await;
            nodes.push(node);
        }
        TestCluster { redis, nodes }
    }
}

fn tls_files(node: &TestBroker) -> (PathBuf, PathBuf) {
    let dir = node.dir.path().join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

fn texts(messages: &[pb::Message]) -> Vec<String> {
    messages.iter().map(|m| text(m).to_owned()).collect()
}

/// Messages of `conv_id` that are not SYSTEM, until `n` have arrived.
async fn chat_messages(client: &Client, conv_id: &str, n: usize) -> Vec<pb::Message> {
    let mut out = Vec::new();
    while out.len() < n {
        let message = next_message(client).await;
        if message.conv_id == conv_id && message.kind != pb::MessageKind::System as i32 {
            out.push(message);
        }
    }
    out
}

fn assert_strictly_ascending(messages: &[pb::Message]) {
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "not in seq order, or twice: {seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_one_to_one_and_in_a_group_each_device_once_in_order() {
    let cluster = TestCluster::start(3).await;
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let alice = a.user("alice", "alice-phone").await;
    let alice_laptop = b.device("alice", "alice-laptop").await;
    let bob = b.user("bob", "bob-phone").await;
    let carol = c.user("carol", "carol-phone").await;
    let (alice_id, bob_id, carol_id) = (
        alice.user_id().unwrap(),
        bob.user_id().unwrap(),
        carol.user_id().unwrap(),
    );

    // 1:1 across nodes: bob (node 1) and alice's laptop (node 1) get what alice's
    // phone (node 0) sends, every message once and in order.
    let sent: Vec<String> = (0..20).map(|i| format!("hello {i}")).collect();
    for body in &sent {
        alice.send_text(&bob_id, body).await.expect("ACKed");
    }
    let at_bob = messages(&bob, 20).await;
    assert_eq!(texts(&at_bob), sent);
    assert_eq!(
        at_bob.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    let at_laptop = messages(&alice_laptop, 20).await;
    assert_eq!(texts(&at_laptop), sent);
    let reply = bob.send_text(&alice_id, "hi alice").await.expect("ACKed");
    assert_eq!(reply.seq, 21);
    for device in [&alice, &alice_laptop] {
        assert_eq!(text(&next_message(device).await), "hi alice");
    }

    // A group with members on all three nodes; two senders on different nodes.
    let group = alice
        .create_group(
            "across",
            "",
            &[bob_id.clone(), carol_id.clone()],
            pb::JoinMode::Open,
        )
        .await
        .expect("group created")
        .group
        .expect("group info");
    let conv_id = group_conv_id(&group.group_id);
    let from_bob: Vec<String> = (0..10).map(|i| format!("bob {i}")).collect();
    let from_carol: Vec<String> = (0..10).map(|i| format!("carol {i}")).collect();
    let (sent_bob, sent_carol) = tokio::join!(
        async {
            for body in &from_bob {
                bob.send_text(&group.group_id, body).await.expect("ACKed");
            }
        },
        async {
            for body in &from_carol {
                carol.send_text(&group.group_id, body).await.expect("ACKed");
            }
        }
    );
    let ((), ()) = (sent_bob, sent_carol);
    let everything: BTreeSet<String> = from_bob.iter().chain(&from_carol).cloned().collect();
    for (device, expected) in [
        (&alice, &everything),
        (&alice_laptop, &everything),
        (&bob, &from_carol.iter().cloned().collect()),
        (&carol, &from_bob.iter().cloned().collect()),
    ] {
        let got = chat_messages(device, &conv_id, expected.len()).await;
        assert_strictly_ascending(&got);
        let got_texts: BTreeSet<String> = texts(&got).into_iter().collect();
        assert_eq!(&got_texts, expected, "each message exactly once");
        // Each sender's messages keep their order.
        for sender in [&from_bob, &from_carol] {
            let order: Vec<String> = texts(&got)
                .into_iter()
                .filter(|t| sender.contains(t))
                .collect();
            if !order.is_empty() {
                assert_eq!(&order, sender);
            }
        }
    }

    // History reads the same from every node.
    let pages = [
        alice.history(&conv_id, 0, 0, 100).await.expect("history"),
        bob.history(&conv_id, 0, 0, 100).await.expect("history"),
        carol.history(&conv_id, 0, 0, 100).await.expect("history"),
    ];
    let ids = |page: &pb::HistoryPage| {
        page.messages
            .iter()
            .map(|m| (m.seq, m.msg_id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&pages[0]), ids(&pages[1]));
    assert_eq!(ids(&pages[0]), ids(&pages[2]));
    let seqs: Vec<u64> = pages[0].messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "dense");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_moves_to_another_node_resumes_with_nothing_lost() {
    let cluster = TestCluster::start(2).await;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let alice = a.user("alice", "alice-phone").await;
    let bob = a.user("bob", "bob-phone").await;
    let bob_id = bob.user_id().unwrap();
    for i in 1..=5 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    assert_eq!(
        texts(&messages(&bob, 5).await),
        ["m1", "m2", "m3", "m4", "m5"]
    );
    // Leaves node 0 (reporting its cursors), messages arrive meanwhile, and the same
    // device comes back through node 1.
    bob.close().await;
    for i in 6..=10 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    let bob = b.device("bob", "bob-phone").await;
    let synced = until_sync_done(&bob).await;
    let seqs: Vec<u64> = synced.iter().map(|m| m.seq).collect();
    assert!(
        seqs.ends_with(&[6, 7, 8, 9, 10]),
        "the offline messages, after whatever the stored cursor did not cover: {seqs:?}"
    );
    assert_strictly_ascending(&synced);
    // And live again, across nodes.
    alice.send_text(&bob_id, "m11").await.unwrap();
    let live = next_message(&bob).await;
    assert_eq!((live.seq, text(&live)), (11, "m11"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_gives_unavailable_never_a_false_ack_and_the_cluster_recovers() {
    let mut cluster = TestCluster::start(2).await;
    let alice = cluster.nodes[0].user("alice", "alice-phone").await;
    let bob = cluster.nodes[1].user("bob", "bob-phone").await;
    let (alice_id, bob_id) = (alice.user_id().unwrap(), bob.user_id().unwrap());
    alice.send_text(&bob_id, "before").await.unwrap();
    assert_eq!(text(&next_message(&bob).await), "before");

    cluster.redis.stop();
    let mut acked = vec!["before".to_owned()];
    let mut refused = 0;
    for i in 0..3 {
        let body = format!("during {i}");
        match alice.send_text(&bob_id, &body).await {
            Ok(_) => acked.push(body),
            Err(error) => {
                assert_eq!(error.code(), Some(ErrorCode::Unavailable), "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 3, "nothing can be stored, so nothing is ACKed");

    cluster.redis.restart();
    let deadline = Instant::now() + WAIT;
    loop {
        match alice.send_text(&bob_id, "after").await {
            Ok(_) => break,
            Err(error) => {
                assert_eq!(error.code(), Some(ErrorCode::Unavailable), "{error}");
                assert!(Instant::now() < deadline, "the cluster did not recover");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acked.push("after".to_owned());
    // Bob's node gets it (live, or through its catch-up once its subscription is back).
    assert_eq!(text(&next_message(&bob).await), "after");
    let page = bob
        .history(&single_conv_id(&alice_id, &bob_id), 0, 0, 100)
        .await
        .expect("history");
    assert_eq!(
        texts(&page.messages),
        acked,
        "every ACKed message, once, dense"
    );
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=acked.len() as u64).collect::<Vec<_>>()
    );
}

/// A node as a child process, so that it can be killed with SIGKILL.
struct ChildNode {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_users_resume_on_another_node() {
    let cluster = TestCluster::start(1).await;
    let survivor = &cluster.nodes[0];
    let (cert, key) = tls_files(survivor);
    let dir = tempfile::tempdir().unwrap();
    let addr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut doomed = ChildNode {
        child: Command::new(env!("CARGO_BIN_EXE_quip-broker"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--quic-addr")
            .arg(addr.to_string())
            .arg("--no-http")
            .arg("--redis")
            .arg(cluster.redis.url())
            .arg("--node-id")
            .arg("doomed")
            .arg("--cluster-presence-ttl-ms")
            .arg(PRESENCE_TTL_MS.to_string())
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .env(
                "QUIP_JWT_SECRET",
                survivor.config.jwt_secret.clone().unwrap(),
            )
            .env("QUIP_LOG", "warn")
            .env("QUIP_RATE_MESSAGES_PER_SEC", "0")
            .env("QUIP_RATE_REQUESTS_PER_SEC", "0")
            .env("QUIP_RATE_LOGINS_PER_IP_PER_MIN", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("broker binary starts"),
        addr,
    };

    let alice = survivor.user("alice", "alice-phone").await;
    let alice_id = alice.user_id().unwrap();
    // Bob connects to the doomed node, knowing the survivor as a fallback.
    let options = ClientOptions {
        device_id: "bob-phone".into(),
        fallback_addrs: vec![survivor.addr()],
        reconnect: ReconnectPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
            ..ReconnectPolicy::default()
        },
        transport: TransportOptions {
            keep_alive_interval: Duration::from_millis(300),
            max_idle_timeout: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    };
    let deadline = Instant::now() + WAIT;
    let bob = loop {
        match Client::connect_with(doomed.addr, survivor.trust(), options.clone()).await {
            Ok(client) => break client,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "doomed node did not start: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    bob.register("bob", PASSWORD, None)
        .await
        .expect("registered");
    let bob_id = bob.user_id().unwrap();
    for i in 1..=3 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    assert_eq!(texts(&messages(&bob, 3).await), ["m1", "m2", "m3"]);

    let _ = doomed.child.kill();
    let _ = doomed.child.wait();
    for i in 4..=6 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    // Bob's client notices, fails to reach the dead node, moves to the survivor and
    // resumes from its cursors: the rest, once each, in order.
    let resumed = messages(&bob, 3).await;
    assert_eq!(texts(&resumed), ["m4", "m5", "m6"]);
    assert_eq!(bob.send_text(&alice_id, "back").await.unwrap().seq, 7);

    // The dead node's presence entry expires: bob counts one device (on the survivor).
    let deadline = Instant::now() + WAIT;
    loop {
        let presence = alice.presence(&[bob_id.as_str()]).await.expect("presence");
        if presence[0].online && presence[0].devices == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead node is still counted: {presence:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_refuse_files_unless_their_directory_is_shared() {
    let cluster = TestCluster::start(1).await;
    let alice = cluster.nodes[0].user("alice", "alice-phone").await;
    let error = alice
        .upload_reader("a.txt", 5, "text/plain", &b"hello"[..], |_, _| {})
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::Unavailable), "{error}");
    assert!(error.to_string().contains("files_dir_shared"), "{error}");
}
