//! Cursors and marks: a device's delivered seq per conversation (under the user's
//! tag), and each user's read and delivered marks per conversation (under the
//! conversation's tag, so "read by N" is one hash).
//!
//! Every raise is `raise.lua` (set if higher, say whether it moved), so concurrent
//! raises from several devices or brokers never move a mark back. Unlike sled's
//! write-behind buffer, a raise is in Redis when the call returns.

use super::{RedisStore, keys};
use crate::store::{CursorUpdate, MarksMoved, StoreError};

impl RedisStore {
    /// The EVALSHA of `raise.lua` for one hash field.
    fn raise(&self, key: String, field: &str, value: u64) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(self.scripts.raise.get_hash())
            .arg(1)
            .arg(key)
            .arg(field)
            .arg(value);
        cmd
    }

    /// All the raises of one call go as one pipeline.
    pub(super) async fn update_cursors_now(
        &self,
        user_id: &str,
        device_id: &str,
        updates: &[CursorUpdate],
    ) -> Result<Vec<MarksMoved>, StoreError> {
        /// Where the replies of one update's reported raises are.
        struct Reported {
            delivered: Option<usize>,
            read: Option<usize>,
        }
        let mut commands = Vec::new();
        let mut reported = Vec::with_capacity(updates.len());
        for update in updates {
            let mut at = Reported {
                delivered: None,
                read: None,
            };
            if update.delivered_seq > 0 {
                commands.push(self.raise(
                    keys::device_cursors(user_id, device_id),
                    &update.conv_id,
                    update.delivered_seq,
                ));
                at.delivered = Some(commands.len());
                commands.push(self.raise(
                    keys::delivered_marks(&update.conv_id),
                    user_id,
                    update.delivered_seq,
                ));
            }
            if update.read_seq > 0 {
                at.read = Some(commands.len());
                commands.push(self.raise(
                    keys::read_marks(&update.conv_id),
                    user_id,
                    update.read_seq,
                ));
            }
            reported.push(at);
        }
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let replies = self.run_commands(&commands).await?;
        let moved = |at: Option<usize>| -> Result<bool, StoreError> {
            let Some(i) = at else {
                return Ok(false);
            };
            match replies.get(i).cloned().map(super::reply_ok) {
                Some(Ok(::redis::Value::Int(moved))) => Ok(moved == 1),
                Some(Ok(other)) => Err(StoreError::Unavailable(format!(
                    "unexpected raise reply {other:?}"
                ))),
                Some(Err(error)) => Err(error),
                None => Err(StoreError::Unavailable("no reply".into())),
            }
        };
        // A failed device cursor raise fails the call too, even though it reports
        // nothing.
        for (i, reply) in replies.iter().enumerate() {
            if let ::redis::Value::ServerError(error) = reply {
                return Err(StoreError::Unavailable(format!(
                    "redis: {error} (command {i})"
                )));
            }
        }
        let mut out = Vec::new();
        for (update, at) in updates.iter().zip(reported) {
            let marks = MarksMoved {
                conv_id: update.conv_id.clone(),
                delivered_seq: if moved(at.delivered)? {
                    update.delivered_seq
                } else {
                    0
                },
                read_seq: if moved(at.read)? { update.read_seq } else { 0 },
            };
            if marks.read_seq > 0 || marks.delivered_seq > 0 {
                out.push(marks);
            }
        }
        Ok(out)
    }
}
