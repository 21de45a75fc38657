//! Read receipts: marking read, and asking who read what.
//!
//! A user's read mark in a conversation is the highest `read_seq` any of their
//! devices reported ([`Client::mark_read`]). When it moves, the broker pushes a
//! [`Receipt`](pb::Receipt) ([`Event::Receipt`](crate::Event::Receipt)) to the user's
//! other devices, to the 1:1 partner's devices, and in groups to the devices of the
//! senders of the newly read messages. Delivered marks (which the SDK reports by
//! itself as the application takes messages) are pushed in 1:1 and to own devices.
//! Sending a message implies having read up to it, so no receipt is pushed for it.
//!
//! "Read by N of M" for a group message comes from [`Client::receipts`]; the names
//! from [`Client::readers`].

use quip_protocol::pb;
use quip_protocol::{client_frame, server_frame};

use crate::client::Client;
use crate::error::{Result, SdkError};

impl Client {
    /// Marks a conversation read up to `seq` (a mark never moves back: a lower seq
    /// changes nothing). If this raised the user's read mark, the broker pushes a
    /// receipt to this user's other devices, the 1:1 partner's devices, and in groups
    /// the devices of the senders of the newly read messages. Idempotent: resent
    /// after a reconnect.
    pub async fn mark_read(&self, conv_id: &str, seq: u64) -> Result<()> {
        let body = client_frame::Body::Report(pb::ReportCursors {
            reports: vec![pb::CursorReport {
                conv_id: conv_id.to_string(),
                delivered_seq: 0,
                read_seq: seq,
            }],
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::ReportOk(_) => Ok(()),
            _ => Err(SdkError::UnexpectedResponse("expected ReportOk")),
        }
    }

    /// Read and delivered counts for messages of a conversation this user is in: per
    /// seq, `read` and `delivered` count users (the sender excluded) whose mark is at
    /// or past it, `recipients` the users who could see it (M in "read by N of M"; in
    /// a group, the current members who had joined before the message). At most the
    /// broker's `max_receipt_seqs` seqs per call (else `INVALID_ARGUMENT`); not a
    /// member → `FORBIDDEN`. A read: resent after a reconnect.
    pub async fn receipts(&self, conv_id: &str, seqs: &[u64]) -> Result<pb::ReceiptCounts> {
        let body = client_frame::Body::Receipts(pb::ReceiptsRequest {
            conv_id: conv_id.to_string(),
            seqs: seqs.to_vec(),
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::ReceiptCounts(counts) => Ok(counts),
            _ => Err(SdkError::UnexpectedResponse("expected ReceiptCounts")),
        }
    }

    /// The users (sender excluded) who have read message `seq`, ordered by user id,
    /// starting after `after_user_id` ("" from the start), at most `limit` (0: the
    /// broker's default). Continue with the page's `next_after_user_id` until it is
    /// empty. A read: resent after a reconnect.
    pub async fn readers(
        &self,
        conv_id: &str,
        seq: u64,
        after_user_id: &str,
        limit: u32,
    ) -> Result<pb::Readers> {
        let body = client_frame::Body::Readers(pb::ReadersRequest {
            conv_id: conv_id.to_string(),
            seq,
            after_user_id: after_user_id.to_string(),
            limit,
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::Readers(readers) => Ok(readers),
            _ => Err(SdkError::UnexpectedResponse("expected Readers")),
        }
    }
}
