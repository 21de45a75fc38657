//! A browser-protocol client: the bridge's WebSocket JSON (`bridge-ws/CONTRACT.md`)
//! over a real WebSocket, as a web client speaks it.
//!
//! One task owns the socket and relays both ways: frames to send come in on a
//! bounded channel (and are written in batches, one flush per batch), ACKs (type 30)
//! and error frames (type 50) complete the send they name by `message_id`, and
//! messages and sync-done are handed on as [`Incoming`] events. Like the SDK's event
//! buffer, the event channel is bounded: a reader that falls behind stops the socket
//! being read, and TCP pushes back on the broker.
//!
//! Like the SDK, the client reports what its reader has taken as delivered (type 32,
//! the device's resume point), every [`REPORT_EVERY`] and when it closes, so a
//! reconnect as the same device resumes after the last message the reader took
//! instead of replaying the whole conversation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use quip_protocol::json::types;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::Incoming;
use crate::payload;

/// How long a send waits for its ACK: the QUIC clients' request timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued for the socket task; beyond this, senders wait.
const OUTGOING_QUEUE: usize = 1024;
/// Events buffered for the reader (the SDK's equivalent is `event_buffer`).
const EVENT_QUEUE: usize = 4096;
/// How often the delivered position the reader reached is reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// An ACK's seq, or the error answering the send.
type Ack = Result<u64, String>;
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Ack>>>>;
/// Per conversation, the highest seq the reader took that is not yet reported.
type Cursors = Arc<Mutex<HashMap<String, u64>>>;

/// What the socket task hands the reader: the event, and for a message its
/// conversation and seq (the reader's delivered position once taken).
#[derive(Debug)]
struct Event {
    incoming: Incoming,
    cursor: Option<(String, u64)>,
}

#[derive(Debug)]
enum Outgoing {
    Text(String),
    Close,
}

/// A WebSocket client of the bridge, authenticated by an access token.
#[derive(Debug)]
pub struct WsClient {
    outgoing: mpsc::Sender<Outgoing>,
    pending: Pending,
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    cursors: Cursors,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl WsClient {
    /// Opens `ws://<http_addr>/ws?token=…&device_id=…`. Access tokens (JWTs) and
    /// device ids are URL-safe as they are.
    pub async fn connect(
        http_addr: SocketAddr,
        token: &str,
        device_id: &str,
    ) -> anyhow::Result<WsClient> {
        let stream = TcpStream::connect(http_addr)
            .await
            .with_context(|| format!("cannot connect to {http_addr}"))?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{http_addr}/ws?token={token}&device_id={device_id}");
        let (socket, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .context("WebSocket handshake")?;
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let pending = Pending::default();
        let cursors = Cursors::default();
        let task = tokio::spawn(relay(
            socket,
            outgoing_rx,
            events_tx,
            pending.clone(),
            cursors.clone(),
        ));
        Ok(WsClient {
            outgoing,
            pending,
            events: tokio::sync::Mutex::new(events),
            cursors,
            task: Mutex::new(Some(task)),
        })
    }

    /// Sends a text to a user or a group (`message_id` is the dedup key and names
    /// the ACK) and waits for the ACK; returns the stored message's seq.
    pub async fn send_text(&self, to: &str, text: &str, message_id: &str) -> anyhow::Result<u64> {
        let frame = if quip_protocol::ids::is_group_id(to) {
            json!({"type": types::GROUP, "group_id": to, "content": {"text": text}, "message_id": message_id})
        } else {
            json!({"type": types::SINGLE, "to": to, "content": {"text": text}, "message_id": message_id})
        };
        let (done, ack) = oneshot::channel();
        self.pending().insert(message_id.to_owned(), done);
        if self
            .outgoing
            .send(Outgoing::Text(frame.to_string()))
            .await
            .is_err()
        {
            self.pending().remove(message_id);
            bail!("WebSocket closed");
        }
        match tokio::time::timeout(SEND_TIMEOUT, ack).await {
            Ok(Ok(result)) => result.map_err(|error| anyhow!(error)),
            Ok(Err(_)) => bail!("WebSocket closed before the ACK"),
            Err(_) => {
                self.pending().remove(message_id);
                bail!("ACK timed out")
            }
        }
    }

    /// The next event; `None` after [`Incoming::Closed`] was taken. A message taken
    /// here counts as delivered (reported to the broker shortly).
    pub async fn next(&self) -> Option<Incoming> {
        let event = self.events.lock().await.recv().await?;
        if let Some((conversation, seq)) = event.cursor {
            let mut cursors = self.cursors.lock().unwrap_or_else(PoisonError::into_inner);
            let cursor = cursors.entry(conversation).or_default();
            *cursor = (*cursor).max(seq);
        }
        Some(event.incoming)
    }

    /// Sends a Close frame and waits for the socket task to end.
    pub async fn close(&self) {
        let _ = self.outgoing.send(Outgoing::Close).await;
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Ack>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// The fields of a server frame this client reads; the rest are ignored.
#[derive(Debug, Deserialize)]
struct ServerFrame {
    #[serde(rename = "type")]
    kind: i64,
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    conversation_id: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    text: String,
}

/// The socket task: runs until the socket closes (either side), then fails the
/// sends still waiting and reports why it ended.
async fn relay(
    mut socket: WebSocketStream<TcpStream>,
    mut outgoing: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<Event>,
    pending: Pending,
    cursors: Cursors,
) {
    let mut reports = tokio::time::interval(REPORT_EVERY);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            first = outgoing.recv() => {
                let Some(Outgoing::Text(text)) = first else {
                    let _ = report_delivered(&mut socket, &cursors).await;
                    let _ = socket.close(None).await;
                    break "closed by the load test".to_owned();
                };
                if let Err(error) = write_batch(&mut socket, text, &mut outgoing, &cursors).await {
                    break error;
                }
            }
            _ = reports.tick() => {
                if let Err(error) = report_delivered(&mut socket, &cursors).await {
                    break error;
                }
            }
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(error) = handle(text.as_str(), &events, &pending).await {
                        break error;
                    }
                }
                // tungstenite answers pings itself; binary frames are not in the contract.
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(frame) => format!("closed by the broker: {} {}", u16::from(frame.code), frame.reason),
                        None => "closed by the broker".to_owned(),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => break format!("WebSocket error: {error}"),
                None => break "WebSocket ended".to_owned(),
            },
        }
    };
    for (_, done) in pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
    {
        let _ = done.send(Err(reason.clone()));
    }
    let closed = Event {
        incoming: Incoming::Closed(reason),
        cursor: None,
    };
    let _ = events.send(closed).await;
}

/// Reports (type 32) the delivered positions the reader reached since the last
/// report.
async fn report_delivered(
    socket: &mut WebSocketStream<TcpStream>,
    cursors: &Cursors,
) -> Result<(), String> {
    let taken: Vec<(String, u64)> = cursors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    let failed = |error: tokio_tungstenite::tungstenite::Error| format!("WebSocket write: {error}");
    for (conversation, seq) in taken {
        let frame = json!({"type": types::DELIVERED, "conversation_id": conversation, "seq": seq});
        socket
            .feed(Message::text(frame.to_string()))
            .await
            .map_err(failed)?;
    }
    socket.flush().await.map_err(failed)
}

/// Writes `first` and whatever else is already queued, then flushes once. A Close
/// request in the queue is written last.
async fn write_batch(
    socket: &mut WebSocketStream<TcpStream>,
    first: String,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    cursors: &Cursors,
) -> Result<(), String> {
    let failed = |error: tokio_tungstenite::tungstenite::Error| format!("WebSocket write: {error}");
    socket.feed(Message::text(first)).await.map_err(failed)?;
    while let Ok(next) = outgoing.try_recv() {
        match next {
            Outgoing::Text(text) => socket.feed(Message::text(text)).await.map_err(failed)?,
            Outgoing::Close => {
                let _ = socket.flush().await;
                let _ = report_delivered(socket, cursors).await;
                let _ = socket.close(None).await;
                return Err("closed by the load test".to_owned());
            }
        }
    }
    socket.flush().await.map_err(failed)
}

/// One server frame. Returns an error only when the reader is gone.
async fn handle(text: &str, events: &mpsc::Sender<Event>, pending: &Pending) -> Result<(), String> {
    let frame: ServerFrame = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(error) => {
            let event = Event {
                incoming: Incoming::Error(format!("unreadable frame from the bridge: {error}")),
                cursor: None,
            };
            return events
                .send(event)
                .await
                .map_err(|_| "reader gone".to_owned());
        }
    };
    let complete = |result: Ack| {
        let done = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&frame.message_id);
        done.map(|done| done.send(result)).is_some()
    };
    let mut cursor = None;
    let incoming = match frame.kind {
        // Every message kind moves the delivered position; only texts are load.
        types::SINGLE
        | types::GROUP
        | types::SYSTEM
        | types::IMAGE..=types::CUSTOM
        | types::RECALL
        | types::EDIT => {
            if !frame.conversation_id.is_empty() && frame.seq > 0 {
                cursor = Some((frame.conversation_id.clone(), frame.seq));
            }
            Incoming::Message {
                sent_micros: frame
                    .content
                    .as_ref()
                    .filter(|_| matches!(frame.kind, types::SINGLE | types::GROUP))
                    .and_then(|content| payload::sent_micros(&content.text)),
                seq: frame.seq,
            }
        }
        types::SYNC_DONE => Incoming::SyncDone,
        types::ACK => {
            complete(Ok(frame.seq));
            return Ok(());
        }
        types::ERROR => {
            let error = format!("error frame {}: {}", frame.code, frame.message);
            if complete(Err(error.clone())) {
                return Ok(());
            }
            Incoming::Error(error)
        }
        _ => return Ok(()),
    };
    let event = Event { incoming, cursor };
    events
        .send(event)
        .await
        .map_err(|_| "reader gone".to_owned())
}
