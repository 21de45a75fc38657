//! One delivery lane of one session, and the task that writes it: to a server-opened
//! QUIC unidirectional stream, or to the channel of an in-process bridge session. The
//! transport is a [`FrameSink`].
//!
//! The lane keeps, per conversation, the highest seq the device holds (`position`).
//! It first catches every conversation of its share up from the device's cursor to
//! the committed end (the resume/offline sync), sends `SyncDone`, then writes live
//! items. Live fan-out arrives in seq order (it leaves the store's commit thread in
//! order), but a live item can still arrive past `position + 1`: the sync has not
//! reached that conversation yet, the session registered while a message was being
//! committed, or a duplicate was re-fanned out. Then the lane first reads the missing
//! seqs from the store, so a live item never leaves a hole. Items at or below
//! `position` are dropped. Positions the device did not state in its Hello (the
//! broker's stored cursor) are announced first with `ResumeFrom`. So every device sees
//! each conversation dense and in seq order, exactly once per connection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use quip_protocol::{encode_frame_bytes, pb};
use tokio::sync::mpsc;

use crate::queue::QueueReceiver;
use crate::router::LaneItem;
use crate::service::chat::deliver_frame;
use crate::service::{ChatService, ServiceError, SyncPoint};

/// Frames gathered before one stream write.
const WRITE_BATCH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The transport went away; the session is over.
    #[error("lane closed: {0}")]
    Closed(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Where a lane's encoded frames go. Writes may wait (flow control): while they do,
/// the lane's queue fills, and a full queue closes the session as a slow consumer.
pub trait FrameSink: Send + 'static {
    /// Writes every frame, in order; all of `frames` is consumed on success.
    fn write_all(
        &mut self,
        frames: &mut [Bytes],
    ) -> impl Future<Output = Result<(), LaneError>> + Send;
}

impl FrameSink for quinn::SendStream {
    async fn write_all(&mut self, frames: &mut [Bytes]) -> Result<(), LaneError> {
        self.write_all_chunks(frames)
            .await
            .map_err(|e| LaneError::Closed(e.to_string()))
    }
}

/// In-process sessions (the WebSocket bridge) receive each encoded frame on a bounded
/// channel.
impl FrameSink for mpsc::Sender<Bytes> {
    async fn write_all(&mut self, frames: &mut [Bytes]) -> Result<(), LaneError> {
        for frame in frames.iter_mut() {
            self.send(std::mem::take(frame))
                .await
                .map_err(|_| LaneError::Closed("session channel closed".into()))?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct LaneWriter<S> {
    pub lane: u32,
    pub send: S,
    pub items: QueueReceiver<LaneItem>,
    pub chat: Arc<ChatService>,
    /// The session's user, to find where newly seen conversations start.
    pub user_id: String,
    /// Conversations this lane catches up first.
    pub sync: Vec<SyncPoint>,
    pub sync_batch: usize,
}

struct State {
    positions: HashMap<Arc<str>, u64>,
    /// Former group members get nothing past their leaving.
    caps: HashMap<Arc<str>, u64>,
    out: Vec<Bytes>,
}

impl<S: FrameSink> LaneWriter<S> {
    pub async fn run(mut self) -> Result<(), LaneError> {
        let mut state = State {
            positions: self
                .sync
                .iter()
                .map(|p| (Arc::from(p.conv_id.as_str()), p.cursor))
                .collect(),
            caps: self
                .sync
                .iter()
                .filter(|p| p.cap != u64::MAX)
                .map(|p| (Arc::from(p.conv_id.as_str()), p.cap))
                .collect(),
            // Grows with a burst and is given back after it (see the live loop):
            // most lanes are idle most of the time.
            out: Vec::new(),
        };
        // The task lives as long as the session, mostly idle: its future's size is
        // what an idle lane costs. The catch-up and the rare paths of `handle` are
        // boxed, so only the live loop's small state is kept for the session's life.
        Box::pin(self.sync_all(&mut state)).await?;
        loop {
            let item = match self.items.try_recv() {
                Some(item) => item,
                None => {
                    // Going idle: give the frame list back.
                    state.out = Vec::new();
                    match self.items.recv().await {
                        Some(item) => item,
                        None => break,
                    }
                }
            };
            self.handle(&mut state, item).await?;
            while state.out.len() < WRITE_BATCH {
                match self.items.try_recv() {
                    Some(item) => self.handle(&mut state, item).await?,
                    None => break,
                }
            }
            self.write_out(&mut state).await?;
        }
        Ok(())
    }

    /// The resume/offline sync: every conversation of this lane caught up from the
    /// device's cursor, then `SyncDone`.
    async fn sync_all(&mut self, state: &mut State) -> Result<(), LaneError> {
        // Tell the device where the broker resumes it from wherever it did not say so
        // itself (e.g. a reinstalled app): without this it would take the first
        // message for a gap.
        for point in self.sync.iter().filter(|p| !p.from_hello && p.cursor > 0) {
            state.out.push(resume_from(&point.conv_id, point.cursor));
        }
        let mut synced = 0u64;
        for point in std::mem::take(&mut self.sync) {
            // Live items that queued meanwhile go out between conversations.
            while let Some(item) = self.items.try_recv() {
                self.handle(state, item).await?;
            }
            let conv_id: Arc<str> = Arc::from(point.conv_id.as_str());
            let last = self.chat.last_seq(&conv_id).await?.min(point.cap);
            synced += self.catch_up(state, &conv_id, last).await?;
            self.write_out(state).await?;
        }
        let done = pb::ServerFrame {
            req_id: 0,
            body: Some(pb::server_frame::Body::SyncDone(pb::SyncDone {
                lane: self.lane,
                messages: synced,
            })),
        };
        state.out.push(encode_frame_bytes(&done));
        self.write_out(state).await
    }

    /// Queues what `item` calls for. The common case (the next seq of a known
    /// conversation) needs no await; the others go through the boxed slow path.
    async fn handle(&mut self, state: &mut State, item: LaneItem) -> Result<(), LaneError> {
        let seq = item.seq();
        match state.positions.get(item.conv_id()).copied() {
            Some(position) if seq <= position => Ok(()),
            Some(position)
                if seq == position + 1
                    && !matches!(item, LaneItem::Reached { .. })
                    && seq <= state.caps.get(item.conv_id()).copied().unwrap_or(u64::MAX) =>
            {
                accept(state, item);
                Ok(())
            }
            _ => Box::pin(self.handle_slow(state, item)).await,
        }
    }

    /// A conversation seen for the first time, or an item past a gap.
    async fn handle_slow(&mut self, state: &mut State, item: LaneItem) -> Result<(), LaneError> {
        let seq = item.seq();
        let position = match state.positions.get(item.conv_id()) {
            Some(position) => *position,
            None => self.first_sight(state, item.conv_id()).await?,
        };
        if seq <= position || seq > state.caps.get(item.conv_id()).copied().unwrap_or(u64::MAX) {
            return Ok(());
        }
        if let LaneItem::Reached { conv_id, .. } = &item {
            self.catch_up(state, conv_id, seq).await?;
            return Ok(());
        }
        if seq > position + 1 {
            let conv_id = item.conv_id().clone();
            self.catch_up(state, &conv_id, seq - 1).await?;
        }
        accept(state, item);
        Ok(())
    }

    /// A conversation this connection has not carried yet (a new chat, or a group the
    /// user joined meanwhile): it starts at the user's floor there, which the device
    /// is told so that the first message is not taken for a gap.
    async fn first_sight(
        &mut self,
        state: &mut State,
        conv_id: &Arc<str>,
    ) -> Result<u64, LaneError> {
        let access = self.chat.access(&self.user_id, conv_id).await?;
        if access.floor > 0 {
            state.out.push(resume_from(conv_id, access.floor));
        }
        if access.cap != u64::MAX {
            state.caps.insert(conv_id.clone(), access.cap);
        }
        state.positions.insert(conv_id.clone(), access.floor);
        Ok(access.floor)
    }

    /// Reads and queues everything after the conversation's position up to `to`.
    async fn catch_up(
        &mut self,
        state: &mut State,
        conv_id: &Arc<str>,
        to: u64,
    ) -> Result<u64, LaneError> {
        let mut sent = 0;
        loop {
            let position = state.positions.get(conv_id).copied().unwrap_or(0);
            if position >= to {
                return Ok(sent);
            }
            let messages = self
                .chat
                .read_range(conv_id, position + 1, to, self.sync_batch)
                .await?;
            let Some(last) = messages.last().map(|m| m.seq) else {
                // Nothing committed there yet; the live item will follow.
                return Ok(sent);
            };
            sent += messages.len() as u64;
            state.out.extend(messages.iter().map(deliver_frame));
            state.positions.insert(conv_id.clone(), last);
            if state.out.len() >= WRITE_BATCH {
                self.write_out(state).await?;
            }
        }
    }

    async fn write_out(&mut self, state: &mut State) -> Result<(), LaneError> {
        if !state.out.is_empty() {
            self.send.write_all(&mut state.out).await?;
            state.out.clear();
        }
        Ok(())
    }
}

/// Takes the next item of its conversation: queues its frame (an `Advance` has none)
/// and moves the position.
fn accept(state: &mut State, item: LaneItem) {
    let seq = item.seq();
    match item {
        LaneItem::Deliver { conv_id, frame, .. } => {
            state.out.push(frame);
            state.positions.insert(conv_id, seq);
        }
        LaneItem::Advance { conv_id, .. } => {
            state.positions.insert(conv_id, seq);
        }
        // Handled in `handle_slow`, which reads the missing messages instead.
        LaneItem::Reached { .. } => {}
    }
}

fn resume_from(conv_id: &str, seq: u64) -> Bytes {
    encode_frame_bytes(&pb::ServerFrame {
        req_id: 0,
        body: Some(pb::server_frame::Body::ResumeFrom(pb::ResumeFrom {
            conv_id: conv_id.to_owned(),
            seq,
        })),
    })
}
