//! Requests waiting for their response, and the handle of the connection they go out
//! on.
//!
//! Both live under one lock so that "register a request" and "switch to a new
//! connection and resend what is waiting" cannot interleave: every request is either
//! written by its caller on the current connection or resent by the session that
//! installs the next one.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use quip_protocol::server_frame;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, SdkError};

/// Fire-and-forget frames (typing notices) kept while no connection is up; older
/// ones are dropped beyond this, as they are stale anyway.
const ONEWAY_BACKLOG: usize = 8;

/// Where a response goes.
pub(crate) type Reply = oneshot::Sender<Result<server_frame::Body>>;

#[derive(Debug)]
struct Pending {
    /// The encoded `ClientFrame`, kept for resending on a new connection.
    frame: Bytes,
    /// Safe to resend after a reconnect (send is deduplicated by `client_msg_id`;
    /// reads are idempotent). Pings and token refreshes are not resent.
    resend: bool,
    /// Handed to a connection's writer. A request made between connections is not,
    /// and goes out on the next connection whatever `resend` says.
    written: bool,
    reply: Reply,
}

/// Whether requests can be made at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No successful `Hello` yet.
    Unauthenticated,
    /// Authenticated once; requests wait across reconnects.
    Active,
    /// Closed by the application or after a fatal error.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    pending: BTreeMap<u64, Pending>,
    /// The current connection's control stream writer; `None` between connections.
    writer: Option<mpsc::Sender<Bytes>>,
    phase: Phase,
    /// Fire-and-forget frames made between connections, for the next one.
    oneway: VecDeque<Bytes>,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Self {
            pending: BTreeMap::new(),
            writer: None,
            phase: Phase::Unauthenticated,
            oneway: VecDeque::new(),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn activate(&mut self) {
        if self.phase == Phase::Unauthenticated {
            self.phase = Phase::Active;
        }
    }

    /// Registers a request; returns the writer to send it on now, if connected.
    pub(crate) fn register(
        &mut self,
        req_id: u64,
        frame: Bytes,
        resend: bool,
        reply: Reply,
    ) -> Result<Option<mpsc::Sender<Bytes>>> {
        match self.phase {
            Phase::Unauthenticated => return Err(SdkError::NotAuthenticated),
            Phase::Closed => return Err(SdkError::ClientClosed),
            Phase::Active => {}
        }
        self.pending.insert(
            req_id,
            Pending {
                frame,
                resend,
                written: self.writer.is_some(),
                reply,
            },
        );
        Ok(self.writer.clone())
    }

    /// A frame that expects no response (`req_id` 0): returns the writer to send it
    /// on now; between connections it is kept for the next one (at most
    /// [`ONEWAY_BACKLOG`], oldest dropped first).
    pub(crate) fn oneway(&mut self, frame: Bytes) -> Result<Option<mpsc::Sender<Bytes>>> {
        match self.phase {
            Phase::Unauthenticated => return Err(SdkError::NotAuthenticated),
            Phase::Closed => return Err(SdkError::ClientClosed),
            Phase::Active => {}
        }
        if self.writer.is_none() {
            if self.oneway.len() == ONEWAY_BACKLOG {
                self.oneway.pop_front();
            }
            self.oneway.push_back(frame);
        }
        Ok(self.writer.clone())
    }

    /// Fails like [`register`](Self::register) would, without registering anything.
    pub(crate) fn check_phase(&self) -> Result<()> {
        match self.phase {
            Phase::Unauthenticated => Err(SdkError::NotAuthenticated),
            Phase::Closed => Err(SdkError::ClientClosed),
            Phase::Active => Ok(()),
        }
    }

    /// Forgets a request whose caller gave up (timeout, dropped future).
    pub(crate) fn forget(&mut self, req_id: u64) {
        self.pending.remove(&req_id);
    }

    /// Delivers a response; `false` if nobody waits for `req_id` (a late answer, or a
    /// fire-and-forget cursor report).
    pub(crate) fn complete(&mut self, req_id: u64, result: Result<server_frame::Body>) -> bool {
        match self.pending.remove(&req_id) {
            Some(pending) => {
                // The caller may have just given up; nothing to do then.
                let _ = pending.reply.send(result);
                true
            }
            None => false,
        }
    }

    /// A new connection is ready: it becomes the writer, and every request still
    /// waiting that is resendable or was never written is returned to be written on
    /// it, oldest first, then the fire-and-forget frames made meanwhile.
    pub(crate) fn install(&mut self, writer: mpsc::Sender<Bytes>) -> Vec<Bytes> {
        self.writer = Some(writer);
        let mut frames: Vec<Bytes> = self
            .pending
            .values_mut()
            .filter(|pending| pending.resend || !pending.written)
            .map(|pending| {
                pending.written = true;
                pending.frame.clone()
            })
            .collect();
        frames.extend(self.oneway.drain(..));
        frames
    }

    /// The connection is gone: requests written on it that must not be resent fail
    /// now, the others wait for the next connection.
    pub(crate) fn uninstall(&mut self) {
        self.writer = None;
        let doomed: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.written && !pending.resend)
            .map(|(req_id, _)| *req_id)
            .collect();
        for req_id in doomed {
            self.complete(req_id, Err(SdkError::Disconnected));
        }
    }

    /// The client is done: every waiting request fails.
    pub(crate) fn close(&mut self) {
        self.phase = Phase::Closed;
        self.writer = None;
        self.oneway.clear();
        for (_, pending) in std::mem::take(&mut self.pending) {
            let _ = pending.reply.send(Err(SdkError::ClientClosed));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quip_protocol::pb;

    fn request(
        outbox: &mut Outbox,
        req_id: u64,
        resend: bool,
    ) -> oneshot::Receiver<Result<server_frame::Body>> {
        let (tx, rx) = oneshot::channel();
        outbox
            .register(req_id, Bytes::from(vec![req_id as u8]), resend, tx)
            .unwrap();
        rx
    }

    #[test]
    fn requests_need_authentication_and_fail_after_close() {
        let mut outbox = Outbox::new();
        let (tx, _rx) = oneshot::channel();
        assert!(matches!(
            outbox.register(1, Bytes::new(), true, tx),
            Err(SdkError::NotAuthenticated)
        ));
        outbox.activate();
        let mut rx = request(&mut outbox, 2, true);
        outbox.close();
        assert!(matches!(rx.try_recv(), Ok(Err(SdkError::ClientClosed))));
        let (tx, _rx) = oneshot::channel();
        assert!(matches!(
            outbox.register(3, Bytes::new(), true, tx),
            Err(SdkError::ClientClosed)
        ));
    }

    #[test]
    fn reconnect_resends_only_resendable_requests_in_order() {
        let mut outbox = Outbox::new();
        outbox.activate();
        let (writer, _rx) = mpsc::channel(4);
        assert!(outbox.install(writer.clone()).is_empty());
        let _send = request(&mut outbox, 5, true);
        let mut ping = request(&mut outbox, 6, false);
        let _history = request(&mut outbox, 7, true);
        outbox.uninstall();
        assert!(matches!(ping.try_recv(), Ok(Err(SdkError::Disconnected))));
        let resent = outbox.install(writer);
        assert_eq!(resent, vec![Bytes::from(vec![5u8]), Bytes::from(vec![7u8])]);
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn requests_made_between_connections_go_out_on_the_next_one() {
        let mut outbox = Outbox::new();
        outbox.activate();
        // No connection yet (or between two): nothing is written by the caller.
        let mut ping = request(&mut outbox, 1, false);
        let _send = request(&mut outbox, 2, true);
        outbox.uninstall();
        assert!(ping.try_recv().is_err(), "an unwritten ping is not failed");
        let (writer, _rx) = mpsc::channel(4);
        assert_eq!(
            outbox.install(writer.clone()),
            vec![Bytes::from(vec![1u8]), Bytes::from(vec![2u8])]
        );
        // Written now: a lost connection fails the ping, keeps the send.
        outbox.uninstall();
        assert!(matches!(ping.try_recv(), Ok(Err(SdkError::Disconnected))));
        assert_eq!(outbox.install(writer), vec![Bytes::from(vec![2u8])]);
    }

    #[test]
    fn responses_reach_their_caller_once() {
        let mut outbox = Outbox::new();
        outbox.activate();
        let mut rx = request(&mut outbox, 9, true);
        let body = server_frame::Body::Pong(pb::Pong::default());
        assert!(outbox.complete(9, Ok(body.clone())));
        assert!(!outbox.complete(9, Ok(body)));
        assert!(matches!(rx.try_recv(), Ok(Ok(server_frame::Body::Pong(_)))));
        let _rx = request(&mut outbox, 10, true);
        outbox.forget(10);
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn oneway_frames_go_out_now_or_on_the_next_connection() {
        let mut outbox = Outbox::new();
        assert!(matches!(
            outbox.oneway(Bytes::new()),
            Err(SdkError::NotAuthenticated)
        ));
        outbox.activate();
        for i in 0..(ONEWAY_BACKLOG as u8 + 2) {
            assert!(outbox.oneway(Bytes::from(vec![i])).unwrap().is_none());
        }
        let (writer, _rx) = mpsc::channel(4);
        let _send = request(&mut outbox, 1, true);
        let frames = outbox.install(writer);
        assert_eq!(frames.len(), 1 + ONEWAY_BACKLOG, "oldest dropped");
        assert_eq!(frames[1], Bytes::from(vec![2u8]));
        assert!(outbox.oneway(Bytes::new()).unwrap().is_some(), "connected");
        outbox.uninstall();
        let (writer, _rx) = mpsc::channel(4);
        assert_eq!(
            outbox.install(writer).len(),
            1,
            "only the resendable request"
        );
        outbox.close();
        assert!(matches!(
            outbox.oneway(Bytes::new()),
            Err(SdkError::ClientClosed)
        ));
    }
}
