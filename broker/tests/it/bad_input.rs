//! Malformed input refuses only the offending connection; everyone else keeps going.

use crate::common;

use std::time::Duration;

use bytes::BytesMut;
use common::{TestBroker, next_message, raw_exchange};
use prost::Message as _;
use quip_protocol::{ErrorCode, codec::put_varint, pb};
use quip_sdk::{TransportOptions, dial};

/// Two users chatting, to prove the broker still serves them after each abuse.
struct Bystanders {
    alice: quip_sdk::Client,
    bob: quip_sdk::Client,
    sent: u64,
}

impl Bystanders {
    async fn new(broker: &TestBroker) -> Self {
        let alice = broker.user("alice", "a").await;
        let bob = broker.user("bob", "b").await;
        Self {
            alice,
            bob,
            sent: 0,
        }
    }

    async fn still_chatting(&mut self) {
        self.sent += 1;
        let body = format!("still here {}", self.sent);
        let ack = self
            .alice
            .send_text(&self.bob.user_id().unwrap(), &body)
            .await
            .unwrap();
        assert_eq!(ack.seq, self.sent);
        let got = next_message(&self.bob).await;
        assert_eq!((got.seq, common::text(&got)), (self.sent, body.as_str()));
    }
}

fn error_of(frame: Option<pb::ServerFrame>) -> pb::Error {
    match frame.and_then(|f| f.body) {
        Some(pb::server_frame::Body::Error(error)) => error,
        other => panic!("expected an Error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_frame_gets_frame_too_large() {
    let broker = TestBroker::start_with(|c| c.max_frame_bytes = 64 * 1024).await;
    let mut bystanders = Bystanders::new(&broker).await;
    bystanders.still_chatting().await;

    let mut bytes = BytesMut::new();
    put_varint(10 * 1024 * 1024, &mut bytes);
    bytes.extend_from_slice(&[0u8; 1024]);
    let (frame, code) = raw_exchange(&broker, &bytes).await;
    assert_eq!(error_of(frame).error_code(), ErrorCode::FrameTooLarge);
    assert_eq!(code, Some(ErrorCode::FrameTooLarge));
    bystanders.still_chatting().await;

    // Also after authentication: an oversized send from a logged-in client.
    let client = broker.device("alice", "a2").await;
    let huge = "x".repeat(100 * 1024);
    let result = client
        .send_text(&bystanders.bob.user_id().unwrap(), &huge)
        .await;
    assert!(result.is_err());
    bystanders.still_chatting().await;
}

#[tokio::test]
async fn garbage_gets_bad_frame_and_the_connection_is_closed() {
    let broker = TestBroker::start().await;
    let mut bystanders = Bystanders::new(&broker).await;
    // A valid length prefix followed by bytes that are not protobuf.
    let mut bytes = BytesMut::new();
    put_varint(8, &mut bytes);
    bytes.extend_from_slice(&[0xff; 8]);
    let (frame, code) = raw_exchange(&broker, &bytes).await;
    assert_eq!(error_of(frame).error_code(), ErrorCode::BadFrame);
    assert_eq!(code, Some(ErrorCode::BadFrame));
    // A length prefix that never ends.
    let (frame, code) = raw_exchange(&broker, &[0xff; 12]).await;
    assert_eq!(error_of(frame).error_code(), ErrorCode::BadFrame);
    assert_eq!(code, Some(ErrorCode::BadFrame));
    bystanders.still_chatting().await;
}

#[tokio::test]
async fn first_frame_must_be_hello() {
    let broker = TestBroker::start().await;
    let mut bystanders = Bystanders::new(&broker).await;
    let ping = pb::ClientFrame {
        req_id: 7,
        body: Some(pb::client_frame::Body::Ping(pb::Ping { client_time_ms: 1 })),
    };
    let mut bytes = BytesMut::new();
    quip_protocol::encode_frame(&ping, &mut bytes);
    let (frame, code) = raw_exchange(&broker, &bytes).await;
    let frame = frame.unwrap();
    assert_eq!(frame.req_id, 7, "the error echoes the request id");
    assert_eq!(
        error_of(Some(frame)).error_code(),
        ErrorCode::Unauthenticated
    );
    assert_eq!(code, Some(ErrorCode::Unauthenticated));

    // A Hello without credentials, and one with a bad device id.
    for hello in [
        pb::Hello {
            device_id: "d".into(),
            ..Default::default()
        },
        pb::Hello {
            device_id: "bad device id".into(),
            auth: Some(pb::hello::Auth::AccessToken("x".into())),
            ..Default::default()
        },
    ] {
        let frame = pb::ClientFrame {
            req_id: 1,
            body: Some(pb::client_frame::Body::Hello(hello)),
        };
        let (answer, code) = raw_exchange(&broker, &frame.encode_length_delimited_to_vec()).await;
        assert!(matches!(
            error_of(answer).error_code(),
            ErrorCode::Unauthenticated | ErrorCode::InvalidArgument
        ));
        assert!(code.is_some());
    }
    bystanders.still_chatting().await;
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_hello_timeout() {
    let broker = TestBroker::start_with(|c| c.hello_timeout_ms = 300).await;
    let mut bystanders = Bystanders::new(&broker).await;
    let connection = dial(
        broker.addr(),
        &broker.trust(),
        "localhost",
        &TransportOptions::default(),
    )
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == ErrorCode::Unauthenticated as u64)
    );
    bystanders.still_chatting().await;
}

#[tokio::test]
async fn invalid_sends_are_refused_with_codes_and_the_session_stays_usable() {
    let broker = TestBroker::start().await;
    let mut bystanders = Bystanders::new(&broker).await;
    let alice = &bystanders.alice;
    let bob_id = bystanders.bob.user_id().unwrap();
    let code = |r: quip_sdk::Result<pb::SendAck>| r.unwrap_err().code();
    assert_eq!(
        code(alice.send_text("user_doesnotexist", "hi").await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(alice.send_text("nobody", "hi").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(alice.send_text(&alice.user_id().unwrap(), "me").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(alice.send_text(&bob_id, "   ").await),
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(alice.send_text(&bob_id, &"x".repeat(20_000)).await),
        Some(ErrorCode::MessageTooLarge)
    );
    let system = pb::SendRequest {
        to: bob_id.clone(),
        kind: pb::MessageKind::System as i32,
        client_msg_id: "s1".into(),
        ..Default::default()
    };
    assert_eq!(code(alice.send(system).await), Some(ErrorCode::Forbidden));
    let mismatched = pb::SendRequest {
        to: bob_id.clone(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::send_request::Content::Custom(pb::CustomContent {
            json: "{}".into(),
        })),
        client_msg_id: "s2".into(),
    };
    assert_eq!(
        code(alice.send(mismatched).await),
        Some(ErrorCode::InvalidArgument)
    );
    let history = alice.history("single:user_x:user_y", 0, 0, 10).await;
    assert_eq!(history.unwrap_err().code(), Some(ErrorCode::Forbidden));
    let history = alice.history("not a conversation", 0, 0, 10).await;
    assert_eq!(
        history.unwrap_err().code(),
        Some(ErrorCode::InvalidArgument)
    );
    bystanders.still_chatting().await;
}
