//! Access tokens (JWT, HS256, short-lived) and refresh tokens (random, stored hashed,
//! one use each, bound to a device).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use quip_protocol::{ErrorCode, pb};
use sha2::{Digest, Sha256};

use super::error::{ServiceError, ServiceResult};

/// `aud` and `iss` of every access token this broker issues and accepts.
pub const AUDIENCE: &str = "quip";
pub const ISSUER: &str = "quip-broker";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The device the token was issued to; a token only works from that device.
    pub did: String,
    pub aud: String,
    pub iss: String,
    /// Expiry and issue time, seconds since the epoch.
    pub exp: u64,
    pub iat: u64,
    /// Issue time in milliseconds, compared with the user's and the device's
    /// "tokens valid after" (a logout and a login within one second must not let the
    /// old token through). 0 in tokens from before it existed: `iat` counts then.
    #[serde(default)]
    pub iat_ms: u64,
}

impl Claims {
    /// When the token was issued, in milliseconds.
    pub fn issued_at_ms(&self) -> u64 {
        if self.iat_ms > 0 {
            self.iat_ms
        } else {
            self.iat * 1000
        }
    }
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TokenIssuer")
            .field("access_ttl_secs", &self.access_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// A freshly issued refresh token: the value goes to the client, the hash to the store.
#[derive(Debug)]
pub struct NewRefresh {
    pub token: String,
    pub hash: [u8; 32],
    pub expires_at_ms: u64,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], access_ttl_secs: u64, refresh_ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl_secs,
            refresh_ttl_secs,
        }
    }

    /// Signs an access token for `user_id` on `device_id`, valid from `now_ms`.
    pub fn access_token(&self, user_id: &str, device_id: &str, now_ms: u64) -> (String, u64) {
        let now = now_ms / 1000;
        let claims = Claims {
            sub: user_id.to_owned(),
            did: device_id.to_owned(),
            aud: AUDIENCE.to_owned(),
            iss: ISSUER.to_owned(),
            exp: now + self.access_ttl_secs,
            iat: now,
            iat_ms: now_ms,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail");
        (token, claims.exp * 1000)
    }

    /// Checks signature, expiry, audience and issuer.
    pub fn verify_access(&self, token: &str) -> ServiceResult<Claims> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => {
                    ServiceError::new(ErrorCode::TokenExpired, "access token expired")
                }
                _ => ServiceError::new(ErrorCode::TokenInvalid, "access token is not valid"),
            })
    }

    pub fn new_refresh(&self, now_ms: u64) -> NewRefresh {
        let bytes: [u8; 32] = rand::random();
        let token = hex::encode(bytes);
        NewRefresh {
            hash: hash_refresh(&token),
            token,
            expires_at_ms: now_ms + self.refresh_ttl_secs * 1000,
        }
    }

    /// Both tokens for a device, in wire form.
    pub fn tokens(
        &self,
        user_id: &str,
        device_id: &str,
        refresh: &NewRefresh,
        now_ms: u64,
    ) -> pb::Tokens {
        let (access_token, access_expires_at_ms) = self.access_token(user_id, device_id, now_ms);
        pb::Tokens {
            access_token,
            access_expires_at_ms,
            refresh_token: refresh.token.clone(),
            refresh_expires_at_ms: refresh.expires_at_ms,
        }
    }
}

/// Refresh tokens are stored by hash so a copy of the store does not log anyone in.
pub fn hash_refresh(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let issuer = TokenIssuer::new(b"0123456789abcdef0123456789abcdef", 60, 3600);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (token, _) = issuer.access_token("user_1", "dev", now_ms);
        let claims = issuer.verify_access(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.did.as_str()),
            ("user_1", "dev")
        );

        let other = TokenIssuer::new(b"another-secret-another-secret-xx", 60, 3600);
        let (forged, _) = other.access_token("user_1", "dev", now_ms);
        assert_eq!(
            issuer.verify_access(&forged).unwrap_err().code(),
            ErrorCode::TokenInvalid
        );

        let (old, _) = issuer.access_token("user_1", "dev", now_ms - 3_600_000);
        assert_eq!(
            issuer.verify_access(&old).unwrap_err().code(),
            ErrorCode::TokenExpired
        );
        assert_eq!(
            issuer.verify_access("garbage").unwrap_err().code(),
            ErrorCode::TokenInvalid
        );
    }
}
