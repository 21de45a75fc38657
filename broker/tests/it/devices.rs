//! A user's devices over real QUIC (issue 8): the device list, logging one device
//! out (its session ends for good, its tokens stop working), logging out
//! everywhere (keeping the current device or not). Real brokers on loopback, real
//! SDK clients; nothing here asserts how long anything took.

use crate::common;

use common::{PASSWORD, TestBroker, WAIT};
use quip_protocol::ErrorCode;
use quip_sdk::{Client, ConnectionState, Event, SdkError, pb};

/// Waits for the client's terminal `State(Closed)` and returns its reason; fails if
/// the client tried to reconnect first. Afterwards the event stream ends.
async fn closed_for_good(client: &Client) -> String {
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            match client.next_event().await {
                Some(Event::State(ConnectionState::Closed { reason })) => return reason,
                Some(Event::State(ConnectionState::Reconnecting { reason, .. })) => {
                    panic!("reconnecting after a logout: {reason}")
                }
                Some(_) => continue,
                None => panic!("event stream ended without State(Closed)"),
            }
        }
    })
    .await
    .expect("the session is closed in time");
    let next = tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("the event stream ends");
    assert!(next.is_none(), "an event after Closed: {next:?}");
    reason
}

fn device<'a>(devices: &'a [pb::DeviceInfo], device_id: &str) -> &'a pb::DeviceInfo {
    devices
        .iter()
        .find(|d| d.device_id == device_id)
        .unwrap_or_else(|| panic!("{device_id} in {devices:?}"))
}

/// Polls the device list until `device_id` is offline.
async fn until_offline(client: &Client, device_id: &str) -> pb::DeviceInfo {
    tokio::time::timeout(WAIT, async {
        loop {
            let devices = client.devices().await.unwrap();
            let d = device(&devices, device_id).clone();
            if !d.online {
                return d;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the device goes offline")
}

/// A login with these tokens on a fresh client fails with an authentication error.
async fn tokens_refused(broker: &TestBroker, device_id: &str, tokens: &pb::Tokens) {
    let auth_errors = [
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::LoggedOut,
        ErrorCode::Unauthenticated,
    ];
    let client = broker.client(device_id).await;
    let refresh = client
        .login_with_refresh_token(&tokens.refresh_token)
        .await
        .expect_err("a revoked refresh token is refused");
    assert!(
        refresh.code().is_some_and(|c| auth_errors.contains(&c)),
        "refresh token: {refresh}"
    );
    let client = broker.client(device_id).await;
    let access = client
        .login_with_token(&tokens.access_token)
        .await
        .expect_err("a revoked access token is refused");
    assert!(
        access.code().is_some_and(|c| auth_errors.contains(&c)),
        "access token: {access}"
    );
}

#[tokio::test]
async fn devices_are_listed_with_version_state_and_which_one_is_asking() {
    let broker = TestBroker::start().await;
    let phone = broker.user("alice", "phone").await;
    let laptop = broker
        .client_with("laptop", |o| o.client_version = "quip-desktop/9.9".into())
        .await;
    laptop.login("alice", PASSWORD).await.unwrap();

    let devices = phone.devices().await.unwrap();
    assert_eq!(devices.len(), 2, "{devices:?}");
    let (p, l) = (device(&devices, "phone"), device(&devices, "laptop"));
    assert!(p.current && !l.current, "{devices:?}");
    assert!(p.online && l.online, "{devices:?}");
    assert_eq!(l.client_version, "quip-desktop/9.9");
    assert!(p.client_version.starts_with("quip-sdk/"), "{p:?}");
    assert_eq!(p.transport, "quic");
    assert!(p.first_seen_ms > 0 && l.first_seen_ms > 0);
    assert_eq!(l.last_seen_ms, 0, "0 while online: {l:?}");

    // The laptop sees the same list from its side.
    let from_laptop = laptop.devices().await.unwrap();
    assert!(device(&from_laptop, "laptop").current);
    assert!(!device(&from_laptop, "phone").current);

    // A device that left stays listed, offline, with when.
    laptop.close().await;
    let l = until_offline(&phone, "laptop").await;
    assert!(l.last_seen_ms > 0, "{l:?}");
    assert_eq!(phone.devices().await.unwrap().len(), 2);

    // Another user sees only their own.
    let bob = broker.user("bob", "bobs-phone").await;
    let bobs = bob.devices().await.unwrap();
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0].device_id, "bobs-phone");
}

#[tokio::test]
async fn logging_out_a_device_ends_its_session_and_its_tokens() {
    let broker = TestBroker::start().await;
    let phone = broker.user("alice", "phone").await;
    let laptop = broker.device("alice", "laptop").await;
    let bob = broker.user("bob", "b").await;
    let laptop_tokens = laptop.tokens().unwrap();

    let sessions = phone.logout_device("laptop").await.unwrap();
    assert_eq!(sessions, 1);
    let reason = closed_for_good(&laptop).await;
    assert!(
        reason.to_lowercase().contains("logged out") || reason.contains("LOGGED_OUT"),
        "{reason}"
    );
    assert!(
        matches!(laptop.ping().await, Err(SdkError::ClientClosed)),
        "the closed client no longer talks to the broker"
    );

    // Its tokens no longer work.
    tokens_refused(&broker, "laptop", &laptop_tokens).await;

    // The current device keeps working.
    let ack = phone.send_text(&bob.user_id().unwrap(), "still here").await;
    assert!(ack.is_ok(), "{ack:?}");
    let l = until_offline(&phone, "laptop").await;
    assert!(!l.current);

    // The laptop logs in with the password again.
    let laptop = broker.device("alice", "laptop").await;
    laptop.ping().await.unwrap();

    // Unknown devices are NOT_FOUND.
    assert_eq!(
        phone
            .logout_device("no-such-device")
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotFound)
    );
    // Another user's device ids are not ours to log out.
    let refused = bob.logout_device("laptop").await;
    assert_eq!(
        refused.unwrap_err().code(),
        Some(ErrorCode::NotFound),
        "bob has no device called laptop"
    );
    laptop.ping().await.unwrap();
}

#[tokio::test]
async fn logging_out_everywhere_can_keep_the_current_device() {
    let broker = TestBroker::start().await;
    let phone = broker.user("alice", "phone").await;
    let laptop = broker.device("alice", "laptop").await;
    let tablet = broker.device("alice", "tablet").await;
    let bob = broker.user("bob", "b").await;
    let (laptop_tokens, tablet_tokens) = (laptop.tokens().unwrap(), tablet.tokens().unwrap());

    let sessions = phone.logout_everywhere(true).await.unwrap();
    assert_eq!(sessions, 2);
    closed_for_good(&laptop).await;
    closed_for_good(&tablet).await;
    tokens_refused(&broker, "laptop", &laptop_tokens).await;
    tokens_refused(&broker, "tablet", &tablet_tokens).await;

    // The phone keeps its session and its tokens.
    phone.ping().await.unwrap();
    phone
        .send_text(&bob.user_id().unwrap(), "kept")
        .await
        .unwrap();
    phone.refresh().await.unwrap();
    phone.ping().await.unwrap();
    // Bob is not affected.
    bob.ping().await.unwrap();
}

#[tokio::test]
async fn logging_out_everywhere_includes_the_current_device_unless_kept() {
    let broker = TestBroker::start().await;
    let phone = broker.user("alice", "phone").await;
    let laptop = broker.device("alice", "laptop").await;
    let (phone_tokens, laptop_tokens) = (phone.tokens().unwrap(), laptop.tokens().unwrap());

    // The answer may race the close of the phone's own session.
    match phone.logout_everywhere(false).await {
        Ok(sessions) => assert_eq!(sessions, 2),
        Err(error) => assert!(
            matches!(error, SdkError::Disconnected | SdkError::ClientClosed),
            "{error}"
        ),
    }
    closed_for_good(&laptop).await;
    closed_for_good(&phone).await;
    tokens_refused(&broker, "phone", &phone_tokens).await;
    tokens_refused(&broker, "laptop", &laptop_tokens).await;

    // A password still works.
    let phone = broker.device("alice", "phone").await;
    assert_eq!(phone.devices().await.unwrap().len(), 2);
}
