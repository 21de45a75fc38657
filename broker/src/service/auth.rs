//! Accounts and sessions: register, log in (argon2id), token checks and refresh-token
//! rotation. Transport-free: the QUIC handler (and later the bridge) call these.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use quip_protocol::{ErrorCode, ids, pb};

use super::error::{ServiceError, ServiceResult};
use super::tokens::{TokenIssuer, hash_refresh};
use crate::store::{RefreshRecord, Store, UserRecord};

/// Limits on credentials, from the config.
#[derive(Debug, Clone)]
pub struct CredentialRules {
    pub username_min_len: usize,
    pub username_max_len: usize,
    pub password_min_len: usize,
    pub password_max_len: usize,
}

#[derive(Debug)]
pub struct AuthService {
    store: Arc<dyn Store>,
    tokens: TokenIssuer,
    rules: CredentialRules,
    /// Verified against when a username does not exist, so that a login attempt takes
    /// as long for an unknown name as for a wrong password (no user enumeration).
    dummy_hash: String,
}

/// Who a connection belongs to once authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserRecord,
    /// Set when the authentication issued new tokens (password, register, refresh).
    pub tokens: Option<pb::Tokens>,
}

impl AuthService {
    pub fn new(store: Arc<dyn Store>, tokens: TokenIssuer, rules: CredentialRules) -> Self {
        let dummy_hash = hash_password("not-a-real-password").expect("argon2 with defaults");
        Self {
            store,
            tokens,
            rules,
            dummy_hash,
        }
    }

    pub fn issuer(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// Creates an account and logs it in on `device_id`.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        nickname: &str,
        device_id: &str,
    ) -> ServiceResult<Authenticated> {
        self.check_username(username)?;
        self.check_password(password)?;
        let nickname = nickname.trim();
        if nickname.chars().count() > 64 {
            return Err(ServiceError::invalid(
                "nickname is longer than 64 characters",
            ));
        }
        let password = password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|_| ServiceError::new(ErrorCode::Internal, "password hashing failed"))?
            .map_err(|_| ServiceError::new(ErrorCode::Internal, "password hashing failed"))?;
        let user = UserRecord {
            user_id: ids::new_user_id(rand::random()),
            username: username.to_owned(),
            nickname: if nickname.is_empty() {
                username
            } else {
                nickname
            }
            .to_owned(),
            password_hash,
            created_at_ms: now_ms(),
            disabled: false,
            role: "user".into(),
        };
        self.store.create_user(user.clone()).await?;
        tracing::info!(user_id = %user.user_id, username = %user.username, "registered");
        let tokens = self.issue(&user, device_id).await?;
        Ok(Authenticated {
            user,
            tokens: Some(tokens),
        })
    }

    /// Checks a username and password; the same error whether the name or the password
    /// was wrong.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
    ) -> ServiceResult<Authenticated> {
        let wrong =
            || ServiceError::new(ErrorCode::InvalidCredentials, "wrong username or password");
        if username.is_empty()
            || password.is_empty()
            || password.len() > self.rules.password_max_len
        {
            return Err(wrong());
        }
        let user = self.store.user_by_username(username).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.password_hash.clone());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        let user = match user {
            Some(user) if matches => user,
            _ => return Err(wrong()),
        };
        if user.disabled {
            return Err(ServiceError::new(
                ErrorCode::AccountDisabled,
                "account is disabled",
            ));
        }
        let tokens = self.issue(&user, device_id).await?;
        Ok(Authenticated {
            user,
            tokens: Some(tokens),
        })
    }

    /// Accepts an access token issued to `device_id`.
    pub async fn authenticate_token(
        &self,
        token: &str,
        device_id: &str,
    ) -> ServiceResult<Authenticated> {
        let claims = self.tokens.verify_access(token)?;
        if claims.did != device_id {
            return Err(ServiceError::new(
                ErrorCode::TokenInvalid,
                "access token was issued to another device",
            ));
        }
        let user = self.active_user(&claims.sub).await?;
        Ok(Authenticated { user, tokens: None })
    }

    /// Exchanges a refresh token for new tokens. The old token stops working whether
    /// or not the exchange succeeds, so a stolen token can be used at most once.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        device_id: &str,
    ) -> ServiceResult<Authenticated> {
        let invalid = || ServiceError::new(ErrorCode::TokenInvalid, "refresh token is not valid");
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(invalid());
        }
        let record = self
            .store
            .take_refresh(hash_refresh(refresh_token))
            .await?
            .ok_or_else(invalid)?;
        if record.expires_at_ms <= now_ms() {
            return Err(ServiceError::new(
                ErrorCode::TokenExpired,
                "refresh token expired",
            ));
        }
        if record.device_id != device_id {
            tracing::warn!(user_id = %record.user_id, "refresh token presented by another device");
            return Err(invalid());
        }
        let user = self.active_user(&record.user_id).await?;
        let tokens = self.issue(&user, device_id).await?;
        Ok(Authenticated {
            user,
            tokens: Some(tokens),
        })
    }

    /// A user's public profile, by id or username; NOT_FOUND when there is none.
    pub async fn lookup(&self, key: &pb::lookup_user::Key) -> ServiceResult<pb::UserInfo> {
        let user = match key {
            pb::lookup_user::Key::UserId(user_id) if ids::is_user_id(user_id) => {
                self.store.user_by_id(user_id).await?
            }
            pb::lookup_user::Key::Username(username)
                if !username.is_empty() && username.len() <= 64 =>
            {
                self.store.user_by_username(username).await?
            }
            _ => None,
        };
        let user = user.ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such user"))?;
        Ok(pb::UserInfo {
            user_id: user.user_id,
            username: user.username,
            nickname: user.nickname,
        })
    }

    async fn active_user(&self, user_id: &str) -> ServiceResult<UserRecord> {
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::TokenInvalid, "unknown user"))?;
        if user.disabled {
            return Err(ServiceError::new(
                ErrorCode::AccountDisabled,
                "account is disabled",
            ));
        }
        Ok(user)
    }

    async fn issue(&self, user: &UserRecord, device_id: &str) -> ServiceResult<pb::Tokens> {
        let now = now_ms();
        let refresh = self.tokens.new_refresh(now);
        self.store
            .put_refresh(
                refresh.hash,
                RefreshRecord {
                    user_id: user.user_id.clone(),
                    device_id: device_id.to_owned(),
                    expires_at_ms: refresh.expires_at_ms,
                },
            )
            .await?;
        Ok(self.tokens.tokens(&user.user_id, device_id, &refresh, now))
    }

    fn check_username(&self, username: &str) -> ServiceResult<()> {
        let len = username.chars().count();
        if len < self.rules.username_min_len || len > self.rules.username_max_len {
            return Err(ServiceError::invalid(format!(
                "username must be {} to {} characters",
                self.rules.username_min_len, self.rules.username_max_len
            )));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if !username.chars().all(allowed)
            || !username.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(ServiceError::invalid(
                "username may use letters, digits, '_', '.', '-' and must start with a letter or digit",
            ));
        }
        Ok(())
    }

    fn check_password(&self, password: &str) -> ServiceResult<()> {
        let len = password.chars().count();
        if len < self.rules.password_min_len || password.len() > self.rules.password_max_len {
            return Err(ServiceError::invalid(format!(
                "password must be at least {} characters and at most {} bytes",
                self.rules.password_min_len, self.rules.password_max_len
            )));
        }
        Ok(())
    }
}

fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
