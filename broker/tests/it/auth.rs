//! Accounts over real QUIC: registration and login rules, JWT checks, refresh rotation.

use crate::common;

use common::{PASSWORD, TestBroker};
use quip_broker::service::tokens::{AUDIENCE, Claims, ISSUER, TokenIssuer};
use quip_sdk::ErrorCode;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn secret(broker: &TestBroker) -> Vec<u8> {
    broker.config.jwt_secret.clone().unwrap().into_bytes()
}

#[tokio::test]
async fn register_then_login_and_refusals_have_clear_codes() {
    let broker = TestBroker::start().await;
    let alice = broker.client("a1").await;
    let tokens = alice
        .register("alice", PASSWORD, Some("Alice"))
        .await
        .unwrap();
    assert!(!tokens.access_token.is_empty() && !tokens.refresh_token.is_empty());
    let user_id = alice.user_id().unwrap();
    assert!(user_id.starts_with("user_"));

    let again = broker.client("a2").await;
    again.login("alice", PASSWORD).await.unwrap();
    assert_eq!(again.user_id().unwrap(), user_id);
    // Usernames are case-insensitive for login.
    broker
        .client("a3")
        .await
        .login("ALICE", PASSWORD)
        .await
        .unwrap();

    let refused = |code| {
        move |result: quip_sdk::Result<_>| assert_eq!(result.unwrap_err().code(), Some(code))
    };
    refused(ErrorCode::InvalidCredentials)(
        broker
            .client("x1")
            .await
            .login("alice", "wrong password")
            .await,
    );
    refused(ErrorCode::InvalidCredentials)(
        broker.client("x2").await.login("nobody", PASSWORD).await,
    );
    refused(ErrorCode::UsernameTaken)(
        broker
            .client("x3")
            .await
            .register("Alice", PASSWORD, None)
            .await,
    );
    refused(ErrorCode::InvalidArgument)(
        broker.client("x4").await.register("", PASSWORD, None).await,
    );
    refused(ErrorCode::InvalidArgument)(
        broker
            .client("x5")
            .await
            .register(&"u".repeat(33), PASSWORD, None)
            .await,
    );
    refused(ErrorCode::InvalidArgument)(broker.client("x6").await.register("bob", "", None).await);
    refused(ErrorCode::InvalidArgument)(
        broker
            .client("x7")
            .await
            .register("bob", "short", None)
            .await,
    );
    refused(ErrorCode::InvalidArgument)(
        broker
            .client("x8")
            .await
            .register("bob", &"p".repeat(129), None)
            .await,
    );
    refused(ErrorCode::InvalidArgument)(
        broker
            .client("x9")
            .await
            .register("bob smith", PASSWORD, None)
            .await,
    );
    // The failed attempts did not create "bob".
    broker
        .client("y1")
        .await
        .register("bob", PASSWORD, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn forged_expired_and_wrong_audience_tokens_are_refused() {
    let broker = TestBroker::start().await;
    let alice = broker.client("a1").await;
    let tokens = alice.register("alice", PASSWORD, None).await.unwrap();
    let user_id = alice.user_id().unwrap();

    // The real token works, but only from the device it was issued to.
    broker
        .client("a1")
        .await
        .login_with_token(&tokens.access_token)
        .await
        .unwrap();
    let other_device = broker
        .client("a9")
        .await
        .login_with_token(&tokens.access_token)
        .await;
    assert_eq!(
        other_device.unwrap_err().code(),
        Some(ErrorCode::TokenInvalid)
    );

    let forged = TokenIssuer::new(b"not-the-broker-secret-not-the-broker", 900, 900)
        .access_token(&user_id, "a1", now_secs() * 1000)
        .0;
    let result = broker.client("a1").await.login_with_token(&forged).await;
    assert_eq!(result.unwrap_err().code(), Some(ErrorCode::TokenInvalid));

    let expired = TokenIssuer::new(&secret(&broker), 60, 900)
        .access_token(&user_id, "a1", (now_secs() - 3600) * 1000)
        .0;
    let result = broker.client("a1").await.login_with_token(&expired).await;
    assert_eq!(result.unwrap_err().code(), Some(ErrorCode::TokenExpired));

    let claims = |aud: &str, iss: &str| Claims {
        sub: user_id.clone(),
        did: "a1".into(),
        aud: aud.into(),
        iss: iss.into(),
        exp: now_secs() + 600,
        iat: now_secs(),
        iat_ms: 0,
    };
    let key = jsonwebtoken::EncodingKey::from_secret(&secret(&broker));
    let header = jsonwebtoken::Header::default();
    for (aud, iss) in [("someone-else", ISSUER), (AUDIENCE, "someone-else")] {
        let token = jsonwebtoken::encode(&header, &claims(aud, iss), &key).unwrap();
        let result = broker.client("a1").await.login_with_token(&token).await;
        assert_eq!(
            result.unwrap_err().code(),
            Some(ErrorCode::TokenInvalid),
            "aud {aud} iss {iss}"
        );
    }
    // "none" algorithm tokens are refused too.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&serde_json_claims(&claims(AUDIENCE, ISSUER)))
    );
    let result = broker.client("a1").await.login_with_token(&unsigned).await;
    assert_eq!(result.unwrap_err().code(), Some(ErrorCode::TokenInvalid));
}

fn serde_json_claims(claims: &Claims) -> String {
    format!(
        r#"{{"sub":"{}","did":"{}","aud":"{}","iss":"{}","exp":{},"iat":{}}}"#,
        claims.sub, claims.did, claims.aud, claims.iss, claims.exp, claims.iat
    )
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn refresh_rotates_and_old_tokens_stop_working() {
    let broker = TestBroker::start().await;
    let alice = broker.client("phone").await;
    let first = alice.register("alice", PASSWORD, None).await.unwrap();

    // On the live connection.
    let second = alice.refresh().await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    // As a Hello.
    let third = broker
        .client("phone")
        .await
        .login_with_refresh_token(&second.refresh_token)
        .await
        .unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    for used in [&first.refresh_token, &second.refresh_token] {
        let result = broker
            .client("phone")
            .await
            .login_with_refresh_token(used)
            .await;
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::TokenInvalid));
    }
    // Bound to the device: another device cannot use (and so burns) it.
    let stolen = broker
        .client("laptop")
        .await
        .login_with_refresh_token(&third.refresh_token)
        .await;
    assert_eq!(stolen.unwrap_err().code(), Some(ErrorCode::TokenInvalid));
    let burnt = broker
        .client("phone")
        .await
        .login_with_refresh_token(&third.refresh_token)
        .await;
    assert_eq!(burnt.unwrap_err().code(), Some(ErrorCode::TokenInvalid));
}
