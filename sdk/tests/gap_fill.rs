//! The SDK's gap fill against a scripted broker.
//!
//! The real broker keeps each lane dense, so it never makes the SDK see a gap. This
//! test stands in for it with a tiny QUIC peer that speaks the real wire protocol and
//! follows a script: it writes chosen deliveries on one lane (leaving seqs out), hands
//! every `HistoryRequest` to the test, and writes back whatever page the test answers.
//! The test can therefore check what the SDK surfaced *before* the gap was filled.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use quip_protocol::pb;
use quip_protocol::{
    ClientFrame, FrameDecoder, ServerFrame, client_frame, encode_frame_bytes, server_frame,
};
use quip_sdk::{Client, ClientOptions, Event, Trust, sha256_fingerprint};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Bound on every wait, so a broken SDK fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

const ME: &str = "user_me";
const YOU: &str = "user_you";
const CONV: &str = "single:user_me:user_you";

/// A message of `CONV` from the other user.
fn message(seq: u64) -> pb::Message {
    pb::Message {
        msg_id: format!("msg_{seq:016x}"),
        conv_id: CONV.into(),
        seq,
        from: YOU.into(),
        to: ME.into(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::message::Content::Text(pb::TextContent {
            text: format!("message {seq}"),
            ..pb::TextContent::default()
        })),
        from_device: "phone".into(),
        ..pb::Message::default()
    }
}

fn lane_frame(body: server_frame::Body) -> ServerFrame {
    ServerFrame {
        req_id: 0,
        body: Some(body),
    }
}

fn deliver(seq: u64) -> ServerFrame {
    lane_frame(server_frame::Body::Deliver(pb::Deliver {
        message: Some(message(seq)),
    }))
}

fn sync_done() -> ServerFrame {
    lane_frame(server_frame::Body::SyncDone(pb::SyncDone {
        lane: 0,
        messages: 0,
    }))
}

/// A `HistoryRequest` the SDK made, waiting for the test to answer it.
struct HistoryCall {
    request: pb::HistoryRequest,
    req_id: u64,
    replies: mpsc::UnboundedSender<ServerFrame>,
}

impl HistoryCall {
    /// Answers with `seqs` of `CONV` (ascending), echoing the request id.
    fn answer(self, seqs: impl IntoIterator<Item = u64>, has_more: bool) {
        let page = pb::HistoryPage {
            conv_id: self.request.conv_id.clone(),
            messages: seqs.into_iter().map(message).collect(),
            has_more,
        };
        let frame = ServerFrame {
            req_id: self.req_id,
            body: Some(server_frame::Body::History(page)),
        };
        // The peer outlives the test's use of it; a send error would show up as the
        // SDK never getting its page.
        let _ = self.replies.send(frame);
    }
}

/// The scripted broker: accepts one connection on 127.0.0.1 and plays its script.
struct Peer {
    addr: SocketAddr,
    fingerprint: [u8; 32],
    history: mpsc::UnboundedReceiver<HistoryCall>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Peer {
    /// Starts the peer; after the handshake it writes `lane` on its single lane.
    fn start(lane: Vec<ServerFrame>) -> anyhow::Result<Peer> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let fingerprint = sha256_fingerprint(certified.cert.der());
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)?;
        tls.alpn_protocols = vec![quip_protocol::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(config, (Ipv4Addr::LOCALHOST, 0).into())?;
        let addr = endpoint.local_addr()?;
        let (calls, history) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(endpoint, lane, calls));
        Ok(Peer {
            addr,
            fingerprint,
            history,
            task,
        })
    }

    /// The next `HistoryRequest` the SDK made.
    async fn history_call(&mut self) -> HistoryCall {
        timeout(WAIT, self.history.recv())
            .await
            .expect("no HistoryRequest in time")
            .expect("the peer stopped")
    }

    /// A client trusting this peer's certificate, with a short gap grace, logged in.
    async fn client(&self) -> Client {
        let options = ClientOptions {
            lanes: 1,
            gap_grace: Duration::from_millis(50),
            device_id: "laptop".into(),
            ..ClientOptions::default()
        };
        let trust = Trust::Fingerprint(self.fingerprint);
        let client = timeout(WAIT, Client::connect_with(self.addr, trust, options))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        timeout(WAIT, client.login("me", "secret"))
            .await
            .expect("login timed out")
            .expect("login failed");
        client
    }

    /// Fails the test if the peer itself failed (it only ends when the client left).
    async fn finish(self) {
        match timeout(WAIT, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("scripted peer failed: {error:#}"),
            Ok(Err(join_error)) => panic!("scripted peer panicked: {join_error}"),
            Err(_) => panic!("scripted peer did not notice the client leaving"),
        }
    }
}

/// Reads length-delimited `ClientFrame`s from the control stream.
struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// The next frame; `None` when the client finished the stream or the connection
    /// is gone (both mean the client left).
    async fn next(&mut self) -> anyhow::Result<Option<ClientFrame>> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) | Err(quinn::ReadError::ConnectionLost(_)) => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Writes one frame. A connection the client already closed is not an error: the
/// next read then reports that the client left.
async fn write(send: &mut quinn::SendStream, frame: &ServerFrame) -> anyhow::Result<()> {
    match send.write_all(&encode_frame_bytes(frame)).await {
        Ok(()) | Err(quinn::WriteError::ConnectionLost(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The peer's script: handshake, the lane's frames, then answer the control stream
/// (history through the test, cursor reports and pings directly) until the client
/// leaves.
async fn serve(
    endpoint: quinn::Endpoint,
    lane_frames: Vec<ServerFrame>,
    calls: mpsc::UnboundedSender<HistoryCall>,
) -> anyhow::Result<()> {
    let incoming = endpoint.accept().await.context("endpoint closed")?;
    let connection = incoming.await?;
    let (mut send, recv) = connection.accept_bi().await?;
    let mut control = FrameReader {
        recv,
        buf: BytesMut::new(),
        decoder: FrameDecoder::new(quip_protocol::DEFAULT_MAX_FRAME_BYTES),
    };

    let hello = control.next().await?.context("no Hello")?;
    let Some(client_frame::Body::Hello(hello_body)) = hello.body else {
        bail!("expected Hello, got {:?}", hello.body);
    };
    let hello_ok = pb::HelloOk {
        user_id: ME.into(),
        username: "me".into(),
        nickname: "Me".into(),
        device_id: hello_body.device_id,
        tokens: Some(pb::Tokens {
            access_token: "access".into(),
            access_expires_at_ms: u64::MAX,
            refresh_token: "refresh".into(),
            refresh_expires_at_ms: u64::MAX,
        }),
        lanes: 1,
        max_frame_bytes: 1 << 20,
        server_time_ms: 0,
        role: "user".into(),
    };
    write(
        &mut send,
        &ServerFrame {
            req_id: hello.req_id,
            body: Some(server_frame::Body::HelloOk(hello_ok)),
        },
    )
    .await?;

    let mut lane = connection.open_uni().await?;
    for frame in &lane_frames {
        write(&mut lane, frame).await?;
    }

    let (replies, mut pending_replies) = mpsc::unbounded_channel::<ServerFrame>();
    loop {
        tokio::select! {
            frame = control.next() => {
                let Some(ClientFrame { req_id, body }) = frame? else {
                    return Ok(());
                };
                let answer = match body {
                    Some(client_frame::Body::History(request)) => {
                        let call = HistoryCall { request, req_id, replies: replies.clone() };
                        calls.send(call).ok().context("the test stopped listening")?;
                        None
                    }
                    Some(client_frame::Body::Report(_)) => {
                        Some(server_frame::Body::ReportOk(pb::ReportOk {}))
                    }
                    Some(client_frame::Body::Ping(ping)) => Some(server_frame::Body::Pong(pb::Pong {
                        client_time_ms: ping.client_time_ms,
                        server_time_ms: 0,
                    })),
                    _ => None,
                };
                if let Some(body) = answer {
                    write(&mut send, &ServerFrame { req_id, body: Some(body) }).await?;
                }
            }
            Some(reply) = pending_replies.recv() => write(&mut send, &reply).await?,
        }
    }
}

/// The next surfaced message's seq, skipping state and sync events.
async fn next_seq(client: &Client) -> u64 {
    loop {
        let event = timeout(WAIT, client.next_event())
            .await
            .expect("no event in time")
            .expect("the client closed");
        if let Event::Message(message) = event {
            assert_eq!(message.conv_id, CONV);
            assert_eq!(message.from, YOU);
            return message.seq;
        }
    }
}

/// The seqs of messages already surfaced and queued, without waiting.
fn queued_seqs(client: &Client) -> Vec<u64> {
    std::iter::from_fn(|| client.try_next_event())
        .filter_map(|event| match event {
            Event::Message(message) => Some(message.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_gap_on_a_lane_is_filled_from_history_in_order() {
    let mut peer = Peer::start(vec![
        sync_done(),
        deliver(1),
        deliver(2),
        deliver(5),
        deliver(6),
    ])
    .unwrap();
    let client = peer.client().await;

    let mut surfaced = vec![next_seq(&client).await, next_seq(&client).await];
    assert_eq!(surfaced, [1, 2]);

    // Seq 5 opened a gap; after the grace period the SDK asks for what follows 2.
    let call = peer.history_call().await;
    assert_eq!(call.request.conv_id, CONV);
    assert_eq!(call.request.after_seq, Some(2));
    assert_eq!(call.request.before_seq, 0);
    assert!(call.request.limit > 0);
    // While the page is outstanding, 5 and 6 stay held back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        queued_seqs(&client),
        Vec::<u64>::new(),
        "released across the gap"
    );
    assert_eq!(client.cursor(CONV), 2);

    call.answer(3..=6, false);
    for _ in 3..=6 {
        surfaced.push(next_seq(&client).await);
    }
    assert_eq!(surfaced, [1, 2, 3, 4, 5, 6]);
    assert_eq!(client.cursor(CONV), 6);

    // The gap is closed: nothing more surfaces and no further fetch is made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        queued_seqs(&client),
        Vec::<u64>::new(),
        "duplicates surfaced"
    );
    assert!(peer.history.try_recv().is_err(), "a second history fetch");

    client.close().await;
    peer.finish().await;
}

#[tokio::test]
async fn a_conversation_starting_above_seq_1_is_filled_from_the_first_message() {
    // No cursor in Hello, no ResumeFrom: the SDK holds nothing of the conversation.
    let mut peer = Peer::start(vec![sync_done(), deliver(3)]).unwrap();
    let client = peer.client().await;

    let call = peer.history_call().await;
    assert_eq!(call.request.conv_id, CONV);
    assert_eq!(
        call.request.after_seq,
        Some(0),
        "must page forwards from the start"
    );
    assert_eq!(call.request.before_seq, 0);
    assert_eq!(
        queued_seqs(&client),
        Vec::<u64>::new(),
        "3 released before 1 and 2"
    );

    // A forward page from 0 also repeats the held 3; it must surface once.
    call.answer(1..=3, false);
    let surfaced = vec![
        next_seq(&client).await,
        next_seq(&client).await,
        next_seq(&client).await,
    ];
    assert_eq!(surfaced, [1, 2, 3]);
    assert_eq!(client.cursor(CONV), 3);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        queued_seqs(&client),
        Vec::<u64>::new(),
        "duplicates surfaced"
    );
    assert!(peer.history.try_recv().is_err(), "a second history fetch");

    client.close().await;
    peer.finish().await;
}
