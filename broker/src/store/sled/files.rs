//! The sled side of file records: `f` file_id → FileRecord and `c` file_id 0 conv_id
//! (the conversations a file was sent in) in the `files` tree.

use prost::Message as _;

use super::{SledStore, decode_opt};
use crate::store::{FileRecord, StoreError, keys};

impl SledStore {
    pub(super) fn put_file_now(&self, file: &FileRecord) -> Result<(), StoreError> {
        self.files
            .insert(keys::pair(b'f', &file.file_id, ""), file.encode_to_vec())?;
        Ok(())
    }

    pub(super) fn file_now(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        decode_opt(self.files.get(keys::pair(b'f', file_id, ""))?)
    }

    pub(super) fn add_file_conversation_now(
        &self,
        file_id: &str,
        conv_id: &str,
    ) -> Result<(), StoreError> {
        self.files
            .insert(keys::pair(b'c', file_id, conv_id), &[][..])?;
        Ok(())
    }

    pub(super) fn file_conversations_now(&self, file_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = keys::pair_prefix(b'c', file_id);
        self.files
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, _) = entry?;
                Ok(String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            })
            .collect()
    }
}
