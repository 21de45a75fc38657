//! Users, devices and refresh tokens.
//!
//! A username is claimed with SET NX on `quip:uname:<lowercase>`: that claim is what
//! makes registration atomic (of two registrations of one name, exactly one gets it).
//! The user record goes first (its id is fresh and random, so nobody else can see it
//! before the claim) and the `quip:users` listing index after.

use prost::Message as _;

use super::{RedisStore, decode_opt, keys};
use crate::store::writer::now_ms;
use crate::store::{DeviceRecord, RefreshRecord, StoreError, UserRecord};

/// How long a refresh record outlives its token: meanwhile a late refresh is told
/// "expired" (as with sled, which keeps them) rather than "invalid".
const REFRESH_GRACE_MS: u64 = 24 * 3600 * 1000;
/// Expiry times past this are "never" (PXAT takes a signed 64-bit ms count; 2^53 ms is
/// some 285,000 years).
const NEVER_MS: u64 = 1 << 53;

impl RedisStore {
    pub(super) async fn create_user_now(&self, user: &UserRecord) -> Result<(), StoreError> {
        let record = keys::user_record(&user.user_id);
        let _: () = self
            .query(::redis::cmd("SET").arg(&record).arg(user.encode_to_vec()))
            .await?;
        let claimed: Option<String> = self
            .query(
                ::redis::cmd("SET")
                    .arg(keys::username(&user.username))
                    .arg(&user.user_id)
                    .arg("NX"),
            )
            .await?;
        if claimed.is_none() {
            let _: () = self.query(::redis::cmd("DEL").arg(&record)).await?;
            return Err(StoreError::UsernameTaken);
        }
        self.query(
            ::redis::cmd("ZADD")
                .arg(keys::USERS)
                .arg(0)
                .arg(&user.user_id),
        )
        .await
    }

    pub(super) async fn user_by_username_now(
        &self,
        username: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let user_id: Option<String> = self
            .query(::redis::cmd("GET").arg(keys::username(username)))
            .await?;
        match user_id {
            Some(user_id) => self.get_record(keys::user_record(&user_id)).await,
            None => Ok(None),
        }
    }

    /// Replaces an existing user's record (SET XX: never creates one), and re-adds the
    /// user to the listing index, which heals an index entry a crash during
    /// registration left out.
    pub(super) async fn update_user_now(&self, user: &UserRecord) -> Result<(), StoreError> {
        let replaced: Option<String> = self
            .query(
                ::redis::cmd("SET")
                    .arg(keys::user_record(&user.user_id))
                    .arg(user.encode_to_vec())
                    .arg("XX"),
            )
            .await?;
        if replaced.is_none() {
            return Err(StoreError::Conflict("no such user".into()));
        }
        self.query(
            ::redis::cmd("ZADD")
                .arg(keys::USERS)
                .arg(0)
                .arg(&user.user_id),
        )
        .await
    }

    /// [`Store::change_user`](crate::store::Store::change_user) and `change_device`:
    /// read, change, then compare-and-set (`cas.lua`), again while another writer
    /// changed the record in between. `start` is the record to change when there is
    /// none (`None`: then nothing is written and `None` returned).
    pub(super) async fn change_record<T: prost::Message + Default + Clone>(
        &self,
        key: String,
        field: Option<&str>,
        start: Option<T>,
        change: crate::store::RecordChange<'_, T>,
    ) -> Result<Option<T>, StoreError> {
        const ATTEMPTS: usize = 64;
        for _ in 0..ATTEMPTS {
            let raw: Option<Vec<u8>> = match field {
                Some(field) => {
                    self.query(::redis::cmd("HGET").arg(&key).arg(field))
                        .await?
                }
                None => self.query(::redis::cmd("GET").arg(&key)).await?,
            };
            let mut record = match &raw {
                Some(bytes) => T::decode(&bytes[..])?,
                None => match &start {
                    Some(start) => start.clone(),
                    None => return Ok(None),
                },
            };
            change(&mut record);
            let mut cas = ::redis::cmd("EVALSHA");
            cas.arg(self.scripts.cas.get_hash())
                .arg(1)
                .arg(&key)
                .arg(field.unwrap_or(""))
                .arg(if raw.is_some() { "1" } else { "0" })
                .arg(raw.as_deref().unwrap_or_default())
                .arg(record.encode_to_vec());
            let replies = self.run_commands(std::slice::from_ref(&cas)).await?;
            if matches!(replies.first(), Some(::redis::Value::Int(1))) {
                return Ok(Some(record));
            }
        }
        Err(StoreError::Conflict(format!(
            "{key} kept changing under {ATTEMPTS} attempts to change it"
        )))
    }

    pub(super) async fn put_device_now(
        &self,
        user_id: &str,
        device: &DeviceRecord,
    ) -> Result<(), StoreError> {
        self.query(
            ::redis::cmd("HSET")
                .arg(keys::devices(user_id))
                .arg(&device.device_id)
                .arg(device.encode_to_vec()),
        )
        .await
    }

    pub(super) async fn devices_now(&self, user_id: &str) -> Result<Vec<DeviceRecord>, StoreError> {
        self.hash_all(keys::devices(user_id))
            .await?
            .into_iter()
            .map(|(_, raw)| Ok(DeviceRecord::decode(raw.as_slice())?))
            .collect()
    }

    pub(super) async fn put_refresh_now(
        &self,
        token_hash: &[u8; 32],
        record: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(keys::refresh(token_hash))
            .arg(record.encode_to_vec());
        // Never in the past: Redis would drop the record at once, and a refresh with it
        // would be "invalid" instead of "expired".
        let expire_at = record
            .expires_at_ms
            .max(now_ms())
            .saturating_add(REFRESH_GRACE_MS);
        if expire_at < NEVER_MS {
            cmd.arg("PXAT").arg(expire_at);
        }
        self.query(&cmd).await
    }

    /// GETDEL: a token works once, even when two refreshes race.
    pub(super) async fn take_refresh_now(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let raw: Option<Vec<u8>> = self
            .query(::redis::cmd("GETDEL").arg(keys::refresh(token_hash)))
            .await?;
        decode_opt(raw)
    }
}
