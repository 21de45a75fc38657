//! Contacts, blocks and settings.
//!
//! A friendship, a pending request and a block each have a record under both users
//! (`friends` both ways; `req_out` of the sender and `req_in` of the recipient;
//! `blocks` of the blocker and `blockers` of the blocked), written together in one
//! MULTI/EXEC: atomic on one Redis. On Redis Cluster the two users' keys are in
//! different slots, and each transaction would have to become two writes (the contact
//! service serializes changes, so only a crash between could split a pair).

use prost::Message as _;

use super::{RedisStore, keys};
use crate::store::{ContactRequestRecord, StoreError, UserSettingsRecord};

/// Adds the commands that drop the request `from` → `to` (both of its records).
fn drop_request(pipe: &mut ::redis::Pipeline, from: &str, to: &str) {
    pipe.cmd("HDEL")
        .arg(keys::requests_in(to))
        .arg(from)
        .ignore()
        .cmd("HDEL")
        .arg(keys::requests_out(from))
        .arg(to)
        .ignore();
}

impl RedisStore {
    pub(super) async fn put_contact_request_now(
        &self,
        request: &ContactRequestRecord,
    ) -> Result<(), StoreError> {
        let value = request.encode_to_vec();
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(keys::requests_in(&request.to_user_id))
            .arg(&request.from_user_id)
            .arg(&value)
            .ignore()
            .cmd("HSET")
            .arg(keys::requests_out(&request.from_user_id))
            .arg(&request.to_user_id)
            .arg(&value)
            .ignore();
        self.query_pipe(&pipe).await
    }

    pub(super) async fn take_contact_request_now(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<ContactRequestRecord>, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(keys::requests_in(to))
            .arg(from);
        drop_request(&mut pipe, from, to);
        let (raw,): (Option<Vec<u8>>,) = self.query_pipe(&pipe).await?;
        super::decode_opt(raw)
    }

    /// Ordered by the other user's id, like sled's keys.
    pub(super) async fn contact_requests_now(
        &self,
        user_id: &str,
        incoming: bool,
    ) -> Result<Vec<ContactRequestRecord>, StoreError> {
        let key = if incoming {
            keys::requests_in(user_id)
        } else {
            keys::requests_out(user_id)
        };
        self.hash_all(key)
            .await?
            .into_iter()
            .map(|(_, raw)| Ok(ContactRequestRecord::decode(raw.as_slice())?))
            .collect()
    }

    pub(super) async fn add_friends_now(
        &self,
        a: &str,
        b: &str,
        since_ms: u64,
    ) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(keys::friends(a))
            .arg(b)
            .arg(since_ms)
            .ignore()
            .cmd("HSET")
            .arg(keys::friends(b))
            .arg(a)
            .arg(since_ms)
            .ignore();
        drop_request(&mut pipe, a, b);
        drop_request(&mut pipe, b, a);
        self.query_pipe(&pipe).await
    }

    /// False if there was no friendship.
    pub(super) async fn remove_friends_now(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HDEL")
            .arg(keys::friends(a))
            .arg(b)
            .cmd("HDEL")
            .arg(keys::friends(b))
            .arg(a)
            .ignore();
        let (removed,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(removed > 0)
    }

    pub(super) async fn block_now(
        &self,
        blocker: &str,
        blocked: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(keys::blocks(blocker))
            .arg(blocked)
            .arg(at_ms)
            .ignore()
            .cmd("HSET")
            .arg(keys::blockers(blocked))
            .arg(blocker)
            .arg(at_ms)
            .ignore();
        drop_request(&mut pipe, blocker, blocked);
        drop_request(&mut pipe, blocked, blocker);
        self.query_pipe(&pipe).await
    }

    /// False if there was no such block.
    pub(super) async fn unblock_now(
        &self,
        blocker: &str,
        blocked: &str,
    ) -> Result<bool, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HDEL")
            .arg(keys::blocks(blocker))
            .arg(blocked)
            .cmd("HDEL")
            .arg(keys::blockers(blocked))
            .arg(blocker)
            .ignore();
        let (removed,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(removed > 0)
    }

    pub(super) async fn put_user_settings_now(
        &self,
        user_id: &str,
        settings: &UserSettingsRecord,
    ) -> Result<(), StoreError> {
        self.query(
            ::redis::cmd("SET")
                .arg(keys::settings(user_id))
                .arg(settings.encode_to_vec()),
        )
        .await
    }
}
