//! Access tokens signed with the broker's own JWT secret.
//!
//! Logging in is deliberately slow (argon2, tens of milliseconds of CPU each), so a
//! test that holds 100,000 connections cannot log each one in. Like other brokers'
//! bench tools, we instead register a few accounts and sign tokens for them, one per
//! device, with the exact claims the broker checks (`broker/src/service/tokens.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// How long a minted token stays valid: the broker checks it when a connection
/// authenticates, so this only has to outlast the slowest run's dialing.
const TTL_SECS: u64 = 3600;

/// The broker's access-token claims (HS256).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    /// The user id.
    sub: &'a str,
    /// The device the token is for; the broker refuses it from any other device.
    did: &'a str,
    aud: &'static str,
    iss: &'static str,
    exp: u64,
    iat: u64,
}

/// Signs access tokens with one secret.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    issued_at: u64,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

impl Minter {
    /// `secret` is the broker's JWT secret (`QUIP_JWT_SECRET`, or `--spawn`'s).
    pub fn new(secret: &str) -> Minter {
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Minter {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            issued_at,
        }
    }

    /// An access token for `user_id` on `device_id`.
    pub fn access_token(&self, user_id: &str, device_id: &str) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user_id,
            did: device_id,
            aud: "quip",
            iss: "quip-broker",
            exp: self.issued_at + TTL_SECS,
            iat: self.issued_at,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("signing an access token")
    }
}
