//! Test harness: a real broker on 127.0.0.1 port 0 with a temp data dir, and SDK
//! clients that talk to it over real QUIC, pinning its certificate fingerprint.

use std::net::SocketAddr;
use std::time::Duration;

use quip_broker::{Broker, Config};
use quip_protocol::{ErrorCode, FrameDecoder};
use quip_sdk::{Client, ClientOptions, Event, ReconnectPolicy, TransportOptions, Trust, dial, pb};

pub mod redis;
pub mod web;

/// Generous bound for anything a test waits on; only hit when something is broken.
pub const WAIT: Duration = Duration::from_secs(20);

pub const PASSWORD: &str = "correct horse battery";

pub struct TestBroker {
    broker: Option<Broker>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIP_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestBroker {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path());
        adjust(&mut config);
        let broker = Broker::start(config.clone()).await.expect("broker starts");
        TestBroker {
            broker: Some(broker),
            dir,
            config,
        }
    }

    pub fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("broker running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.broker().quic_addr()
    }

    pub fn trust(&self) -> Trust {
        Trust::Fingerprint(self.broker().cert_fingerprint())
    }

    /// Stops the broker gracefully and starts a new one on the same data dir (and the
    /// same port, so reconnecting clients find it).
    pub async fn restart(&mut self) {
        let addr = self.addr();
        self.stop().await;
        self.config.quic_addr = addr;
        // quinn releases the UDP socket when its driver task next runs after the last
        // handle is dropped; give it a moment rather than failing the bind.
        for attempt in 0.. {
            match Broker::start(self.config.clone()).await {
                Ok(broker) => {
                    self.broker = Some(broker);
                    return;
                }
                Err(quip_broker::StartError::Quic(error)) if attempt < 100 => {
                    tracing::debug!(%error, "port still held; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("broker restarts: {error}"),
            }
        }
    }

    pub async fn stop(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    /// A client for `device_id` with quick reconnects.
    pub async fn client(&self, device_id: &str) -> Client {
        self.client_with(device_id, |_| {}).await
    }

    pub async fn client_with(
        &self,
        device_id: &str,
        adjust: impl FnOnce(&mut ClientOptions),
    ) -> Client {
        let mut options = ClientOptions {
            device_id: device_id.to_owned(),
            reconnect: ReconnectPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(500),
                ..ReconnectPolicy::default()
            },
            ..ClientOptions::default()
        };
        adjust(&mut options);
        Client::connect_with(self.addr(), self.trust(), options)
            .await
            .expect("client connects")
    }

    /// Registers `username` from a fresh client on `device_id`; returns the client.
    pub async fn user(&self, username: &str, device_id: &str) -> Client {
        let client = self.client(device_id).await;
        client
            .register(username, PASSWORD, None)
            .await
            .expect("registration succeeds");
        client
    }

    /// Logs an existing user in from a new device.
    pub async fn device(&self, username: &str, device_id: &str) -> Client {
        let client = self.client(device_id).await;
        client
            .login(username, PASSWORD)
            .await
            .expect("login succeeds");
        client
    }
}

/// The next chat message event, skipping state and sync events.
pub async fn next_message(client: &Client) -> pb::Message {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next_event().await {
                Some(Event::Message(message)) => return message,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("a message arrives in time")
}

/// Waits for the next `SyncDone`, skipping other events except messages, which are
/// returned (the sync's messages come before it).
pub async fn until_sync_done(client: &Client) -> Vec<pb::Message> {
    let mut messages = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next_event().await {
                Some(Event::Message(message)) => messages.push(message),
                Some(Event::SyncDone) => return,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("sync completes in time");
    messages
}

/// Collects `n` messages.
pub async fn messages(client: &Client, n: usize) -> Vec<pb::Message> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(next_message(client).await);
    }
    out
}

/// Asserts nothing but non-message events arrive for `quiet`.
pub async fn assert_no_message(client: &Client, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return,
            Ok(Some(Event::Message(message))) => panic!("unexpected message {message:?}"),
            Ok(Some(_)) => continue,
            Ok(None) => return,
        }
    }
}

pub fn text(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::Text(text)) => &text.text,
        other => panic!("not a text message: {other:?}"),
    }
}

/// Opens a raw control stream (no SDK), writes `bytes`, and returns the broker's first
/// frame (if any) and the still-open connection.
pub async fn raw_first_frame(
    broker: &TestBroker,
    bytes: &[u8],
) -> (Option<pb::ServerFrame>, quinn::Connection) {
    let connection = dial(
        broker.addr(),
        &broker.trust(),
        "localhost",
        &TransportOptions::default(),
    )
    .await
    .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let decoder = FrameDecoder::new(1 << 20);
    let frame = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Some(frame)) = decoder.decode::<pb::ServerFrame>(&mut buf) {
                return Some(frame);
            }
            match recv.read_chunk(4096, true).await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
                _ => return None,
            }
        }
    })
    .await
    .expect("the broker answers or closes in time");
    (frame, connection)
}

/// Like [`raw_first_frame`], then waits for the broker to close the connection and
/// returns its application close code.
pub async fn raw_exchange(
    broker: &TestBroker,
    bytes: &[u8],
) -> (Option<pb::ServerFrame>, Option<ErrorCode>) {
    let (frame, connection) = raw_first_frame(broker, bytes).await;
    let closed = tokio::time::timeout(WAIT, connection.closed())
        .await
        .expect("the broker closes the connection");
    let code = match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ErrorCode::from_close_code(close.error_code.into_inner())
        }
        other => panic!("expected an application close, got {other}"),
    };
    (frame, code)
}
