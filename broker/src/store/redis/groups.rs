//! Group reads and join requests. Group *changes* commit in the append script with the
//! SYSTEM message announcing them (see `append.lua`), which keeps the members hash and
//! its ordered index (`member_ids`, for paging) in step.

use prost::Message as _;

use super::{RedisStore, keys};
use crate::store::{JoinRequestRecord, MemberRecord, StoreError};

/// Most members fetched with one HMGET.
const CHUNK: usize = 1024;

impl RedisStore {
    /// Members ordered by user id, strictly after `after_user_id`: ids from the index,
    /// then their records. A member who left between the two reads is skipped.
    pub(super) async fn members_now(
        &self,
        group_id: &str,
        after_user_id: &str,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let ids = self
            .ids_after(&keys::member_ids(group_id), after_user_id, limit)
            .await?;
        let key = keys::members(group_id);
        let mut members = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let raws: Vec<Option<Vec<u8>>> = self
                .query(::redis::cmd("HMGET").arg(&key).arg(chunk))
                .await?;
            for raw in raws.into_iter().flatten() {
                members.push(MemberRecord::decode(raw.as_slice())?);
            }
        }
        Ok(members)
    }

    pub(super) async fn put_join_request_now(
        &self,
        request: &JoinRequestRecord,
    ) -> Result<(), StoreError> {
        self.query(
            ::redis::cmd("HSET")
                .arg(keys::join_requests(&request.group_id))
                .arg(&request.user_id)
                .arg(request.encode_to_vec()),
        )
        .await
    }

    /// Read and removed in one transaction: two approvals racing get it once.
    pub(super) async fn take_join_request_now(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<JoinRequestRecord>, StoreError> {
        let key = keys::join_requests(group_id);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(&key)
            .arg(user_id)
            .cmd("HDEL")
            .arg(&key)
            .arg(user_id)
            .ignore();
        let (raw,): (Option<Vec<u8>>,) = self.query_pipe(&pipe).await?;
        super::decode_opt(raw)
    }

    /// Ordered by user id, like sled's keys.
    pub(super) async fn join_requests_now(
        &self,
        group_id: &str,
    ) -> Result<Vec<JoinRequestRecord>, StoreError> {
        self.hash_all(keys::join_requests(group_id))
            .await?
            .into_iter()
            .map(|(_, raw)| Ok(JoinRequestRecord::decode(raw.as_slice())?))
            .collect()
    }
}
