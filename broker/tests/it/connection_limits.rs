//! Connection limits (issue 11): connections per client address and in all, counted
//! across QUIC and WebSocket, refused with TOO_MANY_CONNECTIONS (QUIC: the close code,
//! surfaced by the SDK; WebSocket: HTTP 429 with the JSON error); and QUIC Retry
//! (address validation). Real brokers on loopback: every client is 127.0.0.1.
//! Freed slots are awaited by retrying until the connection goes through (bounded by
//! `WAIT`), never by assuming how long a close takes.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use common::web::{self, Account, Socket, Web, heartbeat, next_of, send_json};
use common::{PASSWORD, TestBroker, WAIT, next_message, text};
use quip_broker::limits::connections::ConnectionCounter;
use quip_protocol::ErrorCode;
use quip_sdk::{Client, ClientOptions, SdkError};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn counter(broker: &TestBroker) -> &ConnectionCounter {
    broker.broker().context().limits.connections()
}

/// A new QUIC connection logging `username` in on `device_id`.
async fn quic_login(
    broker: &TestBroker,
    username: &str,
    device_id: &str,
) -> Result<Client, SdkError> {
    let options = ClientOptions {
        device_id: device_id.to_owned(),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(broker.addr(), broker.trust(), options).await?;
    client.login(username, PASSWORD).await?;
    Ok(client)
}

/// Asserts a QUIC connection attempt is refused with TOO_MANY_CONNECTIONS.
async fn assert_quic_refused(broker: &TestBroker, username: &str, device_id: &str) {
    match quic_login(broker, username, device_id).await {
        Ok(_) => panic!("{username}/{device_id} was let in over the limit"),
        Err(error) => assert_eq!(
            error.code(),
            Some(ErrorCode::TooManyConnections),
            "refused with the stable code: {error}"
        ),
    }
}

/// Opens a WebSocket for `account`; a refused upgrade gives the HTTP status and the
/// JSON body.
async fn ws_open(web: &Web, account: &Account) -> Result<Socket, (u16, Value)> {
    let url = format!(
        "ws://{}/ws?token={}&device_id={}",
        web.addr, account.token, account.device_id
    );
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            let json = serde_json::from_slice(body).unwrap_or(Value::Null);
            Err((response.status().as_u16(), json))
        }
        Err(other) => panic!("the upgrade failed without an HTTP answer: {other}"),
    }
}

/// Asserts a WebSocket upgrade is refused with 429 and TOO_MANY_CONNECTIONS (21).
async fn assert_ws_refused(web: &Web, account: &Account) {
    match ws_open(web, account).await {
        Ok(_) => panic!("{} was let in over the limit", account.device_id),
        Err((status, body)) => {
            assert_eq!(status, 429, "{body}");
            assert_eq!(body["code"], ErrorCode::TooManyConnections as i32, "{body}");
            assert_eq!(body["error"], "TOO_MANY_CONNECTIONS", "{body}");
            assert!(!body["message"].as_str().unwrap_or_default().is_empty());
        }
    }
}

/// Retries `attempt` until it succeeds (a closed connection's slot is freed when the
/// broker has seen the close); panics with the last error after `WAIT`.
async fn eventually<T, E, F, Fut>(what: &str, mut attempt: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) if tokio::time::Instant::now() >= deadline => {
                panic!("{what} never succeeded: {error:?}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// Sends a text from a QUIC client and checks the other one gets it.
async fn chat(from: &Client, to: &Client, words: &str) {
    from.send_text(&to.user_id().unwrap(), words).await.unwrap();
    assert_eq!(text(&next_message(to).await), words);
}

#[tokio::test]
async fn fourth_connection_from_one_address_is_refused_on_either_transport_until_one_closes() {
    let broker = web::start(|c| c.max_connections_per_ip = 3).await;
    let web = Web::new(&broker);
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    // REST holds no connection slot; the socket does.
    let carol = web.account("carol").await;
    let dave = web.account("dave").await;
    let mut carol_ws = web.synced_socket(&carol).await;
    assert_eq!(counter(&broker).from_address(LOOPBACK), 3);

    // The fourth, over QUIC (a new user or a new device of one already connected) and
    // over a WebSocket.
    assert_quic_refused(&broker, "dave", "d").await;
    assert_quic_refused(&broker, "alice", "a2").await;
    assert_ws_refused(&web, &dave).await;
    // REST still answers: the limit is on connections, not requests.
    web.get("/api/me", &dave.token).await;

    // The first three are untouched.
    chat(&alice, &bob, "still here").await;
    heartbeat(&mut carol_ws).await;
    assert_eq!(counter(&broker).from_address(LOOPBACK), 3);

    // A QUIC connection closes: its place goes to the next one, on either transport.
    bob.close().await;
    let dave_quic = eventually("a QUIC login once bob left", || {
        quic_login(&broker, "dave", "d")
    })
    .await;
    chat(&dave_quic, &alice, "took bob's place").await;
    assert_ws_refused(&web, &dave).await;

    // The WebSocket closes: a socket gets in again.
    carol_ws.close(None).await.unwrap();
    drop(carol_ws);
    let mut dave_ws = eventually("a WebSocket once carol's closed", || ws_open(&web, &dave)).await;
    next_of(&mut dave_ws, 40).await;
    heartbeat(&mut dave_ws).await;
    assert_quic_refused(&broker, "bob", "b").await;
    assert_eq!(counter(&broker).from_address(LOOPBACK), 3);
}

#[tokio::test]
async fn max_connections_caps_quic_and_websockets_together() {
    let broker = web::start(|c| {
        c.max_connections = 2;
        c.max_connections_per_ip = 0;
    })
    .await;
    let web = Web::new(&broker);
    let alice = broker.user("alice", "a").await;
    let bob = web.account("bob").await;
    let carol = web.account("carol").await;
    let mut bob_ws = web.synced_socket(&bob).await;
    assert_eq!(counter(&broker).total(), 2);

    assert_quic_refused(&broker, "carol", "c").await;
    assert_ws_refused(&web, &carol).await;

    // The two admitted still talk to each other across transports.
    alice.send_text(&bob.user_id, "hi bob").await.unwrap();
    assert_eq!(
        next_of(&mut bob_ws, 1).await["content"]["text"],
        json!("hi bob")
    );
    send_json(
        &mut bob_ws,
        json!({"type": 1, "to": alice.user_id().unwrap(), "message_id": "m1", "content": {"text": "hi alice"}}),
    )
    .await;
    next_of(&mut bob_ws, 30).await;
    assert_eq!(text(&next_message(&alice).await), "hi alice");

    // A QUIC connection leaves, a WebSocket takes its place, and QUIC is full again.
    alice.close().await;
    let mut carol_ws = eventually("a WebSocket once alice left", || ws_open(&web, &carol)).await;
    next_of(&mut carol_ws, 40).await;
    assert_quic_refused(&broker, "alice", "a").await;
    // Per-address counting is off: nothing is tracked per address.
    assert_eq!(counter(&broker).addresses(), 0);
    assert_eq!(counter(&broker).total(), 2);
}

#[tokio::test]
async fn with_retry_always_on_clients_still_connect_register_and_chat() {
    let broker = TestBroker::start_with(|c| c.quic_retry_above_handshakes = 0).await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    // Each new connection went through a Retry round trip.
    assert!(
        counter(&broker).retries() >= 2,
        "retries sent: {}",
        counter(&broker).retries()
    );
    chat(&alice, &bob, "validated").await;
    chat(&bob, &alice, "and back").await;

    // A login on yet another connection.
    let alice_2 = broker.device("alice", "a2").await;
    chat(&alice_2, &bob, "from a second device").await;
    assert_eq!(counter(&broker).handshakes(), 0);
}

#[tokio::test]
async fn refused_quic_clients_hold_nothing_and_the_limit_applies_under_retry_too() {
    // Every unvalidated client is sent a Retry first, refused ones included.
    let broker = TestBroker::start_with(|c| {
        c.max_connections_per_ip = 1;
        c.quic_retry_above_handshakes = 0;
    })
    .await;
    let alice = broker.user("alice", "a").await;
    let bob_client = Client::connect_with(
        broker.addr(),
        broker.trust(),
        ClientOptions {
            device_id: "b".into(),
            ..ClientOptions::default()
        },
    )
    .await;
    let refused = match bob_client {
        Ok(client) => client
            .register("bob", PASSWORD, None)
            .await
            .expect_err("over the limit"),
        Err(error) => error,
    };
    assert_eq!(
        refused.code(),
        Some(ErrorCode::TooManyConnections),
        "{refused}"
    );
    for _ in 0..5 {
        assert_quic_refused(&broker, "alice", "a2").await;
    }
    assert_eq!(counter(&broker).total(), 1);
    assert!(counter(&broker).refused() >= 6);
    alice.ping().await.unwrap();

    alice.close().await;
    let bob = eventually("registering once alice left", || async {
        let client = Client::connect_with(
            broker.addr(),
            broker.trust(),
            ClientOptions {
                device_id: "b".into(),
                ..ClientOptions::default()
            },
        )
        .await?;
        client.register("bob", PASSWORD, None).await?;
        Ok::<_, SdkError>(client)
    })
    .await;
    bob.ping().await.unwrap();
}
