//! Rate limits over real QUIC (issue 8): messages and requests per connection, login
//! attempts per address, delays after failed password logins. Every refusal is
//! RATE_LIMITED with a `retry_after_ms` > 0, and waiting that long is enough.
//! Real brokers on loopback, real SDK clients. The limits are token buckets, so the
//! tests send until refused rather than assuming how fast a send is, and only wait
//! as long as the broker says.

use crate::common;

use std::time::Duration;

use common::{PASSWORD, TestBroker};
use quip_protocol::ErrorCode;
use quip_sdk::{Client, SdkError};

/// More attempts than any bucket here allows at once.
const ATTEMPTS: usize = 50;

/// The broker's refusal, checked to be RATE_LIMITED with a wait; returns the wait.
fn rate_limited(error: &SdkError) -> Duration {
    assert_eq!(error.code(), Some(ErrorCode::RateLimited), "{error}");
    let wait = error.retry_after().expect("RATE_LIMITED says how long");
    assert!(wait > Duration::ZERO, "retry_after_ms > 0: {error:?}");
    wait
}

/// Runs `attempt` until it fails; returns how many succeeded and the failure.
async fn until_refused<F, Fut, T>(mut attempt: F) -> (usize, SdkError)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = quip_sdk::Result<T>>,
{
    for n in 0..ATTEMPTS {
        if let Err(error) = attempt(n).await {
            return (n, error);
        }
    }
    panic!("{ATTEMPTS} attempts in a row were all allowed");
}

fn id(client: &Client) -> String {
    client.user_id().expect("logged in")
}

#[tokio::test]
async fn messages_over_the_rate_are_refused_until_the_wait_is_over() {
    let broker = TestBroker::start_with(|c| {
        c.rate_messages_per_sec = 1;
        c.rate_messages_burst = 3;
    })
    .await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = id(&bob);

    let (sent, refused) = until_refused(|n| {
        let (alice, bob_id) = (&alice, &bob_id);
        async move { alice.send_text(bob_id, &format!("quick {n}")).await }
    })
    .await;
    // The burst always passes.
    assert!(sent >= 3, "only {sent} sends before {refused}");
    let wait = rate_limited(&refused);
    assert!(wait <= Duration::from_secs(2), "one token at 1/s: {wait:?}");

    // The limit is per connection: bob is not affected.
    bob.send_text(&id(&alice), "unaffected").await.unwrap();

    // Waiting as told is enough.
    tokio::time::sleep(wait).await;
    alice.send_text(&bob_id, "after the wait").await.unwrap();

    // Other requests are not messages.
    let (_, refused) = until_refused(|n| {
        let (alice, bob_id) = (&alice, &bob_id);
        async move { alice.send_text(bob_id, &format!("again {n}")).await }
    })
    .await;
    rate_limited(&refused);
    alice.ping().await.unwrap();
    alice.conversations("", 10).await.unwrap();
}

#[tokio::test]
async fn requests_over_the_rate_are_refused_until_the_wait_is_over() {
    let broker = TestBroker::start_with(|c| {
        c.rate_requests_per_sec = 1;
        c.rate_requests_burst = 3;
    })
    .await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;

    let (pinged, refused) = until_refused(|_| alice.ping()).await;
    assert!(pinged >= 1, "only {pinged} pings before {refused}");
    let wait = rate_limited(&refused);
    tokio::time::sleep(wait).await;
    alice.ping().await.unwrap();

    // History (a resendable read) is refused the same way, not retried forever.
    let (_, refused) = until_refused(|_| alice.conversations("", 10)).await;
    let wait = rate_limited(&refused);
    tokio::time::sleep(wait).await;
    alice.conversations("", 10).await.unwrap();

    // Per connection: bob still has his burst.
    bob.ping().await.unwrap();
}

#[tokio::test]
async fn failed_logins_delay_the_next_attempt_even_with_the_right_password() {
    let broker = TestBroker::start_with(|c| {
        c.login_failures_before_delay = 2;
        // Long enough that the next attempt surely lands inside it.
        c.login_delay_base_ms = 3_000;
        c.rate_logins_per_ip_per_min = 0;
    })
    .await;
    let alice = broker.user("alice", "a").await;
    let other = broker.user("alina", "n").await;

    let client = broker.client("a2").await;
    for _ in 0..2 {
        let error = client.login("alice", "wrong password").await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::InvalidCredentials), "{error}");
    }
    let error = client.login("alice", PASSWORD).await.unwrap_err();
    let wait = rate_limited(&error);
    assert!(wait <= Duration::from_secs(3), "{wait:?}");
    // Usernames are case-insensitive, the delay too.
    let error = client.login("ALICE", PASSWORD).await.unwrap_err();
    rate_limited(&error);
    // Only that username is delayed.
    broker
        .client("n2")
        .await
        .login("alina", PASSWORD)
        .await
        .unwrap();
    // Sessions already open are not affected.
    alice.ping().await.unwrap();
    other.ping().await.unwrap();

    // After the wait, the right password works (and clears the failures).
    let error = client.login("alice", PASSWORD).await.unwrap_err();
    let wait = rate_limited(&error);
    tokio::time::sleep(wait).await;
    client.login("alice", PASSWORD).await.unwrap();
    assert_eq!(client.user_id(), alice.user_id());
    let again = broker.client("a3").await;
    let error = again.login("alice", "wrong password").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidCredentials), "{error}");
}

#[tokio::test]
async fn logins_per_address_are_limited() {
    let broker = TestBroker::start_with(|c| c.rate_logins_per_ip_per_min = 3).await;
    // Registration is an attempt too: 1.
    let alice = broker.user("alice", "a").await;
    // 2 and 3.
    broker.device("alice", "a2").await;
    broker.device("alice", "a3").await;
    // The 4th is refused, whoever it is for.
    let client = broker.client("a4").await;
    let error = client.login("alice", PASSWORD).await.unwrap_err();
    let wait = rate_limited(&error);
    assert!(wait <= Duration::from_secs(60), "{wait:?}");
    let error = broker
        .client("x")
        .await
        .register("bob", PASSWORD, None)
        .await
        .unwrap_err();
    rate_limited(&error);
    // Open sessions are not affected.
    alice.ping().await.unwrap();

    // A minute's rate refills one attempt after the wait.
    let error = client.login("alice", PASSWORD).await.unwrap_err();
    let wait = rate_limited(&error);
    tokio::time::sleep(wait).await;
    client.login("alice", PASSWORD).await.unwrap();
}
