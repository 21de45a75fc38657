//! The sled side of contacts, blocks, settings, devices and the admin listings.
//!
//! Contacts and blocks live in the `social` tree (key layout in `keys`): a friendship
//! is two `f` keys, a pending request an incoming `q` and an outgoing `o` key, a block
//! a `b` key and its reverse `B`, each pair written in one atomic batch. Devices live
//! next to their user in `accounts`.

use prost::Message as _;

use super::{SledStore, decode_opt};
use crate::store::cursor_buffer::read_u64;
use crate::store::{
    ContactRequestRecord, DeviceRecord, GroupRecord, StoreError, UserRecord, UserSettingsRecord,
    keys,
};

/// The other id at the end of a `pair` key.
fn other_of(key: &[u8], prefix_len: usize) -> String {
    String::from_utf8_lossy(&key[prefix_len..]).into_owned()
}

/// Scans `prefix` in `tree` strictly after `after` (its tail), at most `limit` values.
fn page<T: prost::Message + Default>(
    tree: &sled::Tree,
    prefix: Vec<u8>,
    after: &str,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let mut start = prefix.clone();
    start.extend_from_slice(after.as_bytes());
    if !after.is_empty() {
        // Strictly after: the smallest longer key.
        start.push(0);
    }
    let mut records = Vec::new();
    for entry in tree.range(start..) {
        let (key, value) = entry?;
        if !key.starts_with(&prefix) || records.len() == limit {
            break;
        }
        records.push(T::decode(value.as_ref())?);
    }
    Ok(records)
}

/// The users with any block, and those with friends-only DMs, from the tree.
pub(super) fn load_restrictions(
    social: &sled::Tree,
) -> Result<(dashmap::DashSet<String>, dashmap::DashSet<String>), StoreError> {
    let blockers = dashmap::DashSet::new();
    for entry in social.scan_prefix([b'b']) {
        let (key, _) = entry?;
        let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
        blockers.insert(String::from_utf8_lossy(&key[1..end]).into_owned());
    }
    let friends_only = dashmap::DashSet::new();
    for entry in social.scan_prefix([b'S']) {
        let (key, value) = entry?;
        if UserSettingsRecord::decode(value.as_ref())?.friends_only_dm {
            friends_only.insert(String::from_utf8_lossy(&key[1..]).into_owned());
        }
    }
    Ok((blockers, friends_only))
}

impl SledStore {
    pub(super) fn is_blocked_now(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        if !self.blockers.contains(blocker) {
            return Ok(false);
        }
        self.has_pair(b'b', blocker, blocked)
    }

    pub(super) fn update_user_now(&self, user: &UserRecord) -> Result<(), StoreError> {
        let key = keys::user(&user.user_id);
        if self.accounts.get(&key)?.is_none() {
            return Err(StoreError::Conflict("no such user".into()));
        }
        self.accounts.insert(key, user.encode_to_vec())?;
        Ok(())
    }

    pub(super) fn users_page(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        // `i` user_id keys; user ids hold no 0 byte, so the prefix is just the tag.
        page(&self.accounts, vec![b'i'], after, limit)
    }

    pub(super) fn groups_page(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<GroupRecord>, StoreError> {
        page(&self.chat, vec![b'g'], after, limit)
    }

    pub(super) fn put_device_now(
        &self,
        user_id: &str,
        device: &DeviceRecord,
    ) -> Result<(), StoreError> {
        self.accounts.insert(
            keys::device(user_id, &device.device_id),
            device.encode_to_vec(),
        )?;
        Ok(())
    }

    /// [`Store::change_user`](crate::store::Store::change_user): a compare-and-swap
    /// loop on the record.
    pub(super) fn change_user_now(
        &self,
        user_id: &str,
        change: &(dyn Fn(&mut UserRecord) + Send + Sync),
    ) -> Result<Option<UserRecord>, StoreError> {
        let key = keys::user(user_id);
        loop {
            let Some(old) = self.accounts.get(&key)? else {
                return Ok(None);
            };
            let mut user = UserRecord::decode(&*old)?;
            change(&mut user);
            if self
                .accounts
                .compare_and_swap(&key, Some(&old), Some(user.encode_to_vec()))?
                .is_ok()
            {
                return Ok(Some(user));
            }
        }
    }

    /// [`Store::change_device`](crate::store::Store::change_device): a
    /// compare-and-swap loop on the record.
    pub(super) fn change_device_now(
        &self,
        user_id: &str,
        device_id: &str,
        change: &(dyn Fn(&mut DeviceRecord) + Send + Sync),
    ) -> Result<DeviceRecord, StoreError> {
        let key = keys::device(user_id, device_id);
        loop {
            let old = self.accounts.get(&key)?;
            let mut device = match &old {
                Some(bytes) => DeviceRecord::decode(&**bytes)?,
                None => DeviceRecord {
                    device_id: device_id.to_owned(),
                    ..Default::default()
                },
            };
            change(&mut device);
            if self
                .accounts
                .compare_and_swap(&key, old, Some(device.encode_to_vec()))?
                .is_ok()
            {
                return Ok(device);
            }
        }
    }

    pub(super) fn device_now(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        decode_opt(self.accounts.get(keys::device(user_id, device_id))?)
    }

    pub(super) fn devices_now(&self, user_id: &str) -> Result<Vec<DeviceRecord>, StoreError> {
        page(
            &self.accounts,
            keys::pair_prefix(b'v', user_id),
            "",
            usize::MAX,
        )
    }

    pub(super) fn put_contact_request_now(
        &self,
        request: &ContactRequestRecord,
    ) -> Result<(), StoreError> {
        let value = request.encode_to_vec();
        let mut batch = sled::Batch::default();
        batch.insert(
            keys::pair(b'q', &request.to_user_id, &request.from_user_id),
            value.clone(),
        );
        batch.insert(
            keys::pair(b'o', &request.from_user_id, &request.to_user_id),
            value,
        );
        self.social.apply_batch(batch)?;
        Ok(())
    }

    pub(super) fn take_contact_request_now(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<ContactRequestRecord>, StoreError> {
        let request = decode_opt(self.social.get(keys::pair(b'q', to, from))?)?;
        if request.is_some() {
            let mut batch = sled::Batch::default();
            drop_requests(&mut batch, from, to);
            self.social.apply_batch(batch)?;
        }
        Ok(request)
    }

    pub(super) fn contact_requests_now(
        &self,
        user_id: &str,
        incoming: bool,
    ) -> Result<Vec<ContactRequestRecord>, StoreError> {
        let tag = if incoming { b'q' } else { b'o' };
        page(
            &self.social,
            keys::pair_prefix(tag, user_id),
            "",
            usize::MAX,
        )
    }

    pub(super) fn add_friends_now(
        &self,
        a: &str,
        b: &str,
        since_ms: u64,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let since = since_ms.to_be_bytes();
        batch.insert(keys::pair(b'f', a, b), &since[..]);
        batch.insert(keys::pair(b'f', b, a), &since[..]);
        drop_requests(&mut batch, a, b);
        drop_requests(&mut batch, b, a);
        self.social.apply_batch(batch)?;
        Ok(())
    }

    pub(super) fn remove_friends_now(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let existed = self.social.get(keys::pair(b'f', a, b))?.is_some();
        let mut batch = sled::Batch::default();
        batch.remove(keys::pair(b'f', a, b));
        batch.remove(keys::pair(b'f', b, a));
        self.social.apply_batch(batch)?;
        Ok(existed)
    }

    /// `(other id, value as u64)` for every key under `tag` of `user_id`.
    pub(super) fn pairs(&self, tag: u8, user_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = keys::pair_prefix(tag, user_id);
        self.social
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, value) = entry?;
                Ok((other_of(&key, prefix.len()), read_u64(Some(value))))
            })
            .collect()
    }

    pub(super) fn has_pair(&self, tag: u8, a: &str, b: &str) -> Result<bool, StoreError> {
        Ok(self.social.get(keys::pair(tag, a, b))?.is_some())
    }

    pub(super) fn block_now(
        &self,
        blocker: &str,
        blocked: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        // Into the set first: a check racing the block then reads the tree.
        self.blockers.insert(blocker.to_owned());
        let mut batch = sled::Batch::default();
        let at = at_ms.to_be_bytes();
        batch.insert(keys::pair(b'b', blocker, blocked), &at[..]);
        batch.insert(keys::pair(b'B', blocked, blocker), &at[..]);
        drop_requests(&mut batch, blocker, blocked);
        drop_requests(&mut batch, blocked, blocker);
        self.social.apply_batch(batch)?;
        Ok(())
    }

    pub(super) fn unblock_now(&self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        let existed = self.has_pair(b'b', blocker, blocked)?;
        let mut batch = sled::Batch::default();
        batch.remove(keys::pair(b'b', blocker, blocked));
        batch.remove(keys::pair(b'B', blocked, blocker));
        self.social.apply_batch(batch)?;
        if self
            .social
            .scan_prefix(keys::pair_prefix(b'b', blocker))
            .next()
            .is_none()
        {
            self.blockers.remove(blocker);
        }
        Ok(existed)
    }

    pub(super) fn user_settings_now(
        &self,
        user_id: &str,
    ) -> Result<UserSettingsRecord, StoreError> {
        Ok(decode_opt(self.social.get(keys::settings(user_id))?)?.unwrap_or_default())
    }

    pub(super) fn put_user_settings_now(
        &self,
        user_id: &str,
        settings: &UserSettingsRecord,
    ) -> Result<(), StoreError> {
        if settings.friends_only_dm {
            self.friends_only.insert(user_id.to_owned());
        }
        self.social
            .insert(keys::settings(user_id), settings.encode_to_vec())?;
        if !settings.friends_only_dm {
            self.friends_only.remove(user_id);
        }
        Ok(())
    }
}

/// Removes the request `from` → `to` (both of its keys).
fn drop_requests(batch: &mut sled::Batch, from: &str, to: &str) {
    batch.remove(keys::pair(b'q', to, from));
    batch.remove(keys::pair(b'o', from, to));
}
