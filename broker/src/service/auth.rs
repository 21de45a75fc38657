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
    /// Lowercase usernames that get the admin role when they register or log in.
    admin_usernames: Vec<String>,
}

/// Who a connection belongs to once authenticated.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserRecord,
    /// Set when the authentication issued new tokens (password, register, refresh).
    pub tokens: Option<pb::Tokens>,
    /// When the credentials the connection proved were issued (the access token's
    /// `iat`, or now for new tokens): a revocation after it refuses them.
    pub valid_from_ms: u64,
}

impl AuthService {
    pub fn new(
        store: Arc<dyn Store>,
        tokens: TokenIssuer,
        rules: CredentialRules,
        admin_usernames: &[String],
    ) -> Self {
        let dummy_hash = hash_password("not-a-real-password").expect("argon2 with defaults");
        Self {
            store,
            tokens,
            rules,
            dummy_hash,
            admin_usernames: admin_usernames.iter().map(|u| u.to_lowercase()).collect(),
        }
    }

    fn is_configured_admin(&self, username: &str) -> bool {
        self.admin_usernames.contains(&username.to_lowercase())
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
        let role = if self.is_configured_admin(username) {
            ROLE_ADMIN
        } else {
            ROLE_USER
        };
        let user = self
            .create_account(username, password, nickname, role)
            .await?;
        let valid_from_ms = now_ms();
        let tokens = self.issue(&user, device_id).await?;
        Ok(Authenticated {
            user,
            tokens: Some(tokens),
            valid_from_ms,
        })
    }

    /// Creates an account with `role` (registration, or `quip-broker admin create`).
    pub async fn create_account(
        &self,
        username: &str,
        password: &str,
        nickname: &str,
        role: &str,
    ) -> ServiceResult<UserRecord> {
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
            role: role.to_owned(),
            tokens_valid_after_ms: 0,
        };
        self.store.create_user(user.clone()).await?;
        tracing::info!(user_id = %user.user_id, username = %user.username, role, "registered");
        Ok(user)
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
        let mut user = match user {
            Some(user) if matches => user,
            _ => return Err(wrong()),
        };
        if user.disabled {
            return Err(ServiceError::new(
                ErrorCode::AccountDisabled,
                "account is disabled",
            ));
        }
        if user.role != ROLE_ADMIN && self.is_configured_admin(&user.username) {
            user.role = ROLE_ADMIN.into();
            self.store
                .change_user(
                    &user.user_id,
                    Box::new(|user| user.role = ROLE_ADMIN.into()),
                )
                .await?;
            tracing::info!(target: "quip::audit", user_id = %user.user_id, username = %user.username, "granted admin from the configuration");
        }
        self.record_device(&user.user_id, device_id).await?;
        let valid_from_ms = now_ms();
        let tokens = self.issue(&user, device_id).await?;
        Ok(Authenticated {
            user,
            tokens: Some(tokens),
            valid_from_ms,
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
        self.check_not_revoked(&user, device_id, claims.issued_at_ms())
            .await?;
        Ok(Authenticated {
            user,
            tokens: None,
            valid_from_ms: claims.issued_at_ms(),
        })
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
        self.check_not_revoked(&user, device_id, record.issued_at_ms)
            .await?;
        let valid_from_ms = now_ms();
        let tokens = self.issue(&user, device_id).await?;
        Ok(Authenticated {
            user,
            tokens: Some(tokens),
            valid_from_ms,
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

    /// Lists a device that logged in, also one that never opens a session (a
    /// REST-only client), so it can be seen and logged out. (A registration through
    /// the browser bridge only creates the account; its session records the device.)
    async fn record_device(&self, user_id: &str, device_id: &str) -> ServiceResult<()> {
        if self.store.device(user_id, device_id).await?.is_none() {
            let now = now_ms();
            // Only fills in a device nobody recorded meanwhile.
            self.store
                .change_device(
                    user_id,
                    device_id,
                    Box::new(move |device| {
                        if device.first_seen_ms == 0 {
                            device.first_seen_ms = now;
                            device.last_seen_ms = now;
                        }
                    }),
                )
                .await?;
        }
        Ok(())
    }

    /// Checks an authentication again once its session is registered: a logout or a
    /// disabled account that landed between the first check and the registration
    /// found no session to close, so the new session must see it here (revocations
    /// store first and close sessions after).
    pub async fn still_valid(
        &self,
        authenticated: &Authenticated,
        device_id: &str,
    ) -> ServiceResult<()> {
        let user = self.active_user(&authenticated.user.user_id).await?;
        self.check_not_revoked(&user, device_id, authenticated.valid_from_ms)
            .await
    }

    /// Refuses a token issued before a logout of its device or of the whole user (or a
    /// password reset, or the account being disabled).
    async fn check_not_revoked(
        &self,
        user: &UserRecord,
        device_id: &str,
        issued_at_ms: u64,
    ) -> ServiceResult<()> {
        let device_after = self
            .store
            .device(&user.user_id, device_id)
            .await?
            .map_or(0, |device| device.tokens_valid_after_ms);
        if issued_at_ms < user.tokens_valid_after_ms.max(device_after) {
            return Err(ServiceError::new(
                ErrorCode::LoggedOut,
                "this device was logged out; log in again",
            ));
        }
        Ok(())
    }

    /// Sets a user's password (an administrator's reset). The caller revokes tokens.
    pub async fn set_password(&self, user: &mut UserRecord, password: &str) -> ServiceResult<()> {
        self.check_password(password)?;
        let password = password.to_owned();
        user.password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|_| ServiceError::new(ErrorCode::Internal, "password hashing failed"))?
            .map_err(|_| ServiceError::new(ErrorCode::Internal, "password hashing failed"))?;
        Ok(())
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
                    issued_at_ms: now,
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

/// The roles of `UserRecord::role`.
pub const ROLE_USER: &str = "user";
pub const ROLE_ADMIN: &str = "admin";

pub(crate) fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
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
