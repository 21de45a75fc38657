//! File records, and the conversations each file was sent in (who can read one of them
//! can read the file), both under the file's tag.

use prost::Message as _;

use super::{RedisStore, keys};
use crate::store::{FileRecord, StoreError};

impl RedisStore {
    pub(super) async fn put_file_now(&self, file: &FileRecord) -> Result<(), StoreError> {
        self.query(
            ::redis::cmd("SET")
                .arg(keys::file(&file.file_id))
                .arg(file.encode_to_vec()),
        )
        .await
    }

    pub(super) async fn add_file_conversation_now(
        &self,
        file_id: &str,
        conv_id: &str,
    ) -> Result<(), StoreError> {
        self.query(
            ::redis::cmd("ZADD")
                .arg(keys::file_conversations(file_id))
                .arg(0)
                .arg(conv_id),
        )
        .await
    }
}
