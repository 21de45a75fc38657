//! State shared by a [`Client`](crate::Client) handle and its background tasks
//! (connection driver, lanes, control stream reader).
//!
//! Locks are std mutexes held only for short, non-async sections; waiting is done on
//! [`Notify`]s after the lock is released.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use quip_protocol::pb::{self, hello};
use quip_protocol::{ClientFrame, client_frame, encode_frame_bytes, server_frame};
use tokio::sync::{Notify, oneshot, watch};

use crate::datagrams;
use crate::error::{Result, SdkError};
use crate::events::{ConnectionState, Event};
use crate::inbox::Inbox;
use crate::options::ClientOptions;
use crate::outbox::Outbox;
use crate::presence::PresenceTracker;
use crate::typing::TypingTracker;

/// Who this client is, once authenticated.
#[derive(Debug, Default, Clone)]
pub(crate) struct Account {
    pub(crate) user_id: Option<String>,
    pub(crate) username: String,
    pub(crate) nickname: String,
    /// "user" or "admin", as the last `HelloOk` said.
    pub(crate) role: String,
    /// The latest tokens: used for `Hello` on reconnect, rotated by `refresh`.
    pub(crate) tokens: Option<pb::Tokens>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// The address given to `connect`, then `options.fallback_addrs`.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Index into `addrs` of the node dialled now; moves on when a dial fails.
    pub(crate) current_addr: std::sync::atomic::AtomicUsize,
    pub(crate) options: ClientOptions,
    /// Built once from the trust and transport options; every dial reuses it.
    pub(crate) quic: quinn::ClientConfig,
    pub(crate) inbox: Mutex<Inbox>,
    /// Signalled when an event is queued or the inbox finishes.
    pub(crate) inbox_ready: Notify,
    /// Signalled when the application takes an event (lane readers wait for room).
    pub(crate) inbox_space: Notify,
    /// Signalled when enough messages were taken that cursors should be reported now.
    pub(crate) report_due: Notify,
    /// Signalled whenever a delivered cursor may have moved (the application took an
    /// event, or an own send was acknowledged): the report loop sleeps on it rather
    /// than polling, so an idle client has no timer running.
    pub(crate) taken: Notify,
    /// Signalled while a conversation has a gap: the gap loop sleeps on it rather
    /// than polling.
    pub(crate) gap_open: Notify,
    pub(crate) outbox: Mutex<Outbox>,
    pub(crate) account: Mutex<Account>,
    /// The current session's connection (for sending datagrams and opening file
    /// transfer streams); `None` between connections.
    pub(crate) connection: Mutex<Option<quinn::Connection>>,
    /// Signalled when a connection is installed or the client finishes (transfers
    /// started between connections wait on it).
    connection_ready: Notify,
    /// Who is typing where (from typing notices).
    pub(crate) typing: Mutex<TypingTracker>,
    /// The newest presence per user. Locked before the inbox when both are needed.
    pub(crate) presence: Mutex<PresenceTracker>,
    next_req_id: AtomicU64,
    /// The broker's frame limit from the last `HelloOk`: bigger requests are refused
    /// here, because the broker would close the connection over them and a resend
    /// could never succeed.
    pub(crate) max_frame_bytes: std::sync::atomic::AtomicUsize,
    /// `true` once the client is closed or dropped; the driver and sessions watch it.
    pub(crate) shutdown: watch::Sender<bool>,
}

/// Resolves once the client is closed (or dropped). Drops the watch guard before
/// returning, so it can be awaited in `select!` branches that await afterwards.
pub(crate) async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closed| *closed).await;
}

/// Locks a std mutex, ignoring poisoning: the data is plain bookkeeping that stays
/// consistent between statements, and a panic elsewhere must not wedge the client.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a request from the outbox when its caller stops waiting, however that
/// happens (response, timeout, dropped future).
struct Forget<'a> {
    shared: &'a Shared,
    req_id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.outbox().forget(self.req_id);
    }
}

impl Shared {
    pub(crate) fn new(addr: SocketAddr, options: ClientOptions, quic: quinn::ClientConfig) -> Self {
        let mut addrs = vec![addr];
        addrs.extend(options.fallback_addrs.iter().filter(|a| **a != addr));
        Self {
            addrs,
            current_addr: std::sync::atomic::AtomicUsize::new(0),
            inbox: Mutex::new(Inbox::new(options.event_buffer)),
            options,
            quic,
            inbox_ready: Notify::new(),
            inbox_space: Notify::new(),
            report_due: Notify::new(),
            taken: Notify::new(),
            gap_open: Notify::new(),
            outbox: Mutex::new(Outbox::new()),
            account: Mutex::new(Account::default()),
            connection: Mutex::new(None),
            connection_ready: Notify::new(),
            typing: Mutex::new(TypingTracker::default()),
            presence: Mutex::new(PresenceTracker::default()),
            // 0 means "no response expected" on the wire.
            next_req_id: AtomicU64::new(1),
            max_frame_bytes: std::sync::atomic::AtomicUsize::new(
                quip_protocol::DEFAULT_MAX_FRAME_BYTES,
            ),
            shutdown: watch::Sender::new(false),
        }
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }

    pub(crate) fn outbox(&self) -> MutexGuard<'_, Outbox> {
        lock(&self.outbox)
    }

    pub(crate) fn account(&self) -> MutexGuard<'_, Account> {
        lock(&self.account)
    }

    pub(crate) fn typing(&self) -> MutexGuard<'_, TypingTracker> {
        lock(&self.typing)
    }

    pub(crate) fn presence_tracker(&self) -> MutexGuard<'_, PresenceTracker> {
        lock(&self.presence)
    }

    /// Sets (or, with `None`, clears) the connection datagrams go out on.
    pub(crate) fn set_connection(&self, connection: Option<quinn::Connection>) {
        let installed = connection.is_some();
        *lock(&self.connection) = connection;
        if installed {
            self.connection_ready.notify_waiters();
        }
    }

    /// The current session's live connection, for a transfer on a stream of its
    /// own. Between connections (including the moment between a login and its
    /// session starting) waits for the next one, for at most `request_timeout`, then
    /// fails with `Disconnected`.
    pub(crate) async fn live_connection(&self) -> Result<quinn::Connection> {
        let wait = async {
            loop {
                let notified = self.connection_ready.notified();
                tokio::pin!(notified);
                // Register before checking, so an install in between is not missed.
                notified.as_mut().enable();
                self.outbox().check_phase()?;
                let connection = lock(&self.connection).clone();
                match connection {
                    Some(connection) if connection.close_reason().is_none() => {
                        return Ok(connection);
                    }
                    _ => {}
                }
                notified.await;
            }
        };
        tokio::time::timeout(self.options.request_timeout, wait)
            .await
            .unwrap_or(Err(SdkError::Disconnected))
    }

    pub(crate) fn next_req_id(&self) -> u64 {
        self.next_req_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The `Hello` for this client with the given credentials and the current
    /// resume cursors.
    pub(crate) fn hello(&self, auth: hello::Auth) -> pb::Hello {
        pb::Hello {
            auth: Some(auth),
            device_id: self.options.device_id.clone(),
            client_version: self.options.client_version.clone(),
            lanes: self.options.lanes,
            cursors: self.inbox().hello_cursors(),
        }
    }

    /// Sends a request and waits for its response, for at most
    /// `options.request_timeout`. A resendable request survives reconnects: it is
    /// written again on each new connection until answered or timed out.
    pub(crate) async fn request(
        &self,
        body: client_frame::Body,
        resend: bool,
    ) -> Result<server_frame::Body> {
        let req_id = self.next_req_id();
        let frame = encode_frame_bytes(&ClientFrame {
            req_id,
            body: Some(body),
        });
        let max = self.max_frame_bytes.load(Ordering::Relaxed);
        if frame.len() > max {
            return Err(SdkError::FrameTooLarge {
                len: frame.len(),
                max,
            });
        }
        let (reply, response) = oneshot::channel();
        let writer = self
            .outbox()
            .register(req_id, frame.clone(), resend, reply)?;
        let _forget = Forget {
            shared: self,
            req_id,
        };
        let exchange = async {
            if let Some(writer) = writer {
                // A closed channel means the connection just died; the request stays
                // registered and the next connection resends it (or fails it).
                let _ = writer.send(frame).await;
            }
            response.await.unwrap_or(Err(SdkError::ClientClosed))
        };
        match tokio::time::timeout(self.options.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(SdkError::Timeout),
        }
    }

    /// Routes a response from the control stream to its waiting request.
    pub(crate) fn complete(&self, req_id: u64, body: server_frame::Body) {
        let result = match body {
            server_frame::Body::Error(error) => Err(SdkError::Server(error)),
            other => Ok(other),
        };
        let mut outbox = self.outbox();
        if !outbox.complete(req_id, result) {
            tracing::trace!(req_id, "response without a waiting request");
        }
    }

    /// A message from a lane or a history page.
    pub(crate) fn offer_message(&self, message: pb::Message) {
        let (queued, gaps) = {
            let mut inbox = self.inbox();
            let queued = inbox.offer_message(message, Instant::now(), self.options.gap_grace);
            (queued, inbox.has_open_gaps())
        };
        if queued {
            self.inbox_ready.notify_waiters();
        }
        if gaps {
            self.gap_open.notify_one();
        }
    }

    /// The ACK of this device's own send holds its seq.
    pub(crate) fn offer_own(&self, conv_id: &str, seq: u64) {
        let (queued, gaps) = {
            let mut inbox = self.inbox();
            let queued = inbox.offer_own(conv_id, seq, Instant::now(), self.options.gap_grace);
            (queued, inbox.has_open_gaps())
        };
        if gaps {
            self.gap_open.notify_one();
        }
        // The device's own message moved its delivered cursor: report it soon even if
        // the application takes nothing.
        self.taken.notify_one();
        if queued {
            self.inbox_ready.notify_waiters();
        }
    }

    /// `ResumeFrom`: the broker's stored cursor for a conversation we did not name.
    pub(crate) fn resume_from(&self, conv_id: &str, seq: u64) {
        if self.inbox().resume_from(conv_id, seq) {
            self.inbox_ready.notify_waiters();
        }
    }

    pub(crate) fn sync_done(&self) {
        if self.inbox().sync_done() {
            tracing::debug!("sync complete");
            self.inbox_ready.notify_waiters();
        }
    }

    /// Sends an encoded frame that expects no response and may be lost (a typing
    /// notice): as a datagram when enabled and possible, else on the control stream
    /// (or on the next connection's, if none is up).
    pub(crate) async fn send_ephemeral(&self, frame: Bytes) -> Result<()> {
        self.outbox().check_phase()?;
        if self.options.datagrams {
            let connection = lock(&self.connection).clone();
            if connection.is_some_and(|connection| datagrams::try_send(&connection, &frame)) {
                return Ok(());
            }
        }
        let writer = self.outbox().oneway(frame.clone())?;
        if let Some(writer) = writer {
            // A closed channel means the connection just died: the notice is lost,
            // which is allowed.
            let _ = writer.send(frame).await;
        }
        Ok(())
    }

    /// A typing notice (from a datagram or the control stream).
    pub(crate) fn push_typing(&self, notice: pb::TypingNotice) {
        self.typing().notice(&notice, Instant::now());
        if self.inbox().push_ephemeral(Event::Typing(notice)) {
            self.inbox_ready.notify_waiters();
        }
    }

    /// A partner's presence: surfaced unless older than the newest seen for them.
    pub(crate) fn push_presence(&self, presence: pb::Presence) {
        let queued = {
            // Held while queueing, so two readers (datagrams, control stream) cannot
            // queue two versions in the wrong order.
            let mut tracker = self.presence_tracker();
            if !tracker.accept(&presence) {
                tracing::debug!(
                    user = presence.user_id,
                    version = presence.version,
                    "stale presence dropped"
                );
                return;
            }
            self.inbox().push_ephemeral(Event::Presence(presence))
        };
        if queued {
            self.inbox_ready.notify_waiters();
        }
    }

    /// A push that must reach the application (receipt, call event).
    pub(crate) fn push_reliable(&self, event: Event) {
        self.inbox().push_reliable(event);
        self.inbox_ready.notify_waiters();
    }

    pub(crate) fn push_state(&self, state: ConnectionState) {
        self.inbox().push_state(state);
        self.inbox_ready.notify_waiters();
    }

    /// The client is finished for good: requests fail, `State(Closed)` is the last
    /// event.
    pub(crate) fn finish(&self, reason: String) {
        self.outbox().close();
        self.set_connection(None);
        self.connection_ready.notify_waiters();
        self.typing().clear();
        self.inbox().finish(reason);
        self.inbox_ready.notify_waiters();
        self.inbox_space.notify_waiters();
    }

    /// Waits until the event queue has room (lane readers call this before reading
    /// more, which is how a slow application pushes back on the broker).
    pub(crate) async fn wait_for_space(&self) {
        loop {
            let notified = self.inbox_space.notified();
            tokio::pin!(notified);
            // Register before checking, so a wake-up between check and wait is kept.
            notified.as_mut().enable();
            {
                let inbox = self.inbox();
                if inbox.has_space() || inbox.is_finished() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// The next event, waiting for one; `None` once the client is finished and every
    /// event was taken.
    pub(crate) async fn next_event(&self) -> Option<Event> {
        loop {
            let notified = self.inbox_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(event) = self.try_next_event() {
                return Some(event);
            }
            if self.inbox().is_finished() {
                return None;
            }
            notified.await;
        }
    }

    pub(crate) fn try_next_event(&self) -> Option<Event> {
        let (event, report_due) = {
            let mut inbox = self.inbox();
            let event = inbox.pop()?;
            (event, inbox.report_due())
        };
        self.inbox_space.notify_waiters();
        self.taken.notify_one();
        if report_due {
            self.report_due.notify_one();
        }
        Some(event)
    }

    /// Stores what a successful `Hello` said about us.
    pub(crate) fn authenticated(&self, hello_ok: &pb::HelloOk) {
        if hello_ok.max_frame_bytes > 0 {
            self.max_frame_bytes
                .store(hello_ok.max_frame_bytes as usize, Ordering::Relaxed);
        }
        let mut account = self.account();
        account.user_id = Some(hello_ok.user_id.clone());
        account.username = hello_ok.username.clone();
        account.nickname = hello_ok.nickname.clone();
        account.role = hello_ok.role.clone();
        if let Some(tokens) = &hello_ok.tokens {
            account.tokens = Some(tokens.clone());
        }
    }
}
