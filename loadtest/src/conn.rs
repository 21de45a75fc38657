//! One load-test user's connection, over either transport, behind one interface:
//! send a text and wait for its ACK, read what arrives, close. Scenarios mix QUIC
//! and WebSocket users freely through it.

use quip_sdk::{Client, ConnectionState, Event, pb};

use crate::payload;
use crate::ws_client::WsClient;

/// How a client talks to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Native clients: the Rust SDK over QUIC.
    Quic,
    /// Browser clients: the bridge's JSON over WebSocket.
    Ws,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Ws => "ws",
        }
    }
}

/// What a connection surfaces that the load test cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message for this user; `sent_micros` is the load-test timestamp in its text
    /// (`None` for other messages, such as a group's SYSTEM notices), `seq` its place
    /// in its conversation.
    Message { sent_micros: Option<u64>, seq: u64 },
    /// The catch-up after connecting is complete.
    SyncDone,
    /// An error not tied to a send (e.g. an error frame without a `message_id`).
    Error(String),
    /// The connection ended for good; nothing follows.
    Closed(String),
}

#[derive(Debug)]
enum Link {
    Quic(Client),
    Ws(WsClient),
}

/// An authenticated user's connection.
#[derive(Debug)]
pub struct Conn {
    user_id: String,
    username: String,
    /// The access token it authenticated with (to reconnect as the same device).
    access_token: String,
    link: Link,
}

/// Where a send was stored: its conversation's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
}

impl Conn {
    pub fn quic(client: Client, username: String, access_token: String) -> Conn {
        Conn {
            user_id: client.user_id().unwrap_or_default(),
            username,
            access_token,
            link: Link::Quic(client),
        }
    }

    /// A QUIC client that logged in as `user_id` (with a token, so the SDK may not
    /// know the id).
    pub fn quic_as(
        client: Client,
        user_id: String,
        username: String,
        access_token: String,
    ) -> Conn {
        Conn {
            user_id,
            username,
            access_token,
            link: Link::Quic(client),
        }
    }

    pub fn ws(client: WsClient, user_id: String, username: String, access_token: String) -> Conn {
        Conn {
            user_id,
            username,
            access_token,
            link: Link::Ws(client),
        }
    }

    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn transport(&self) -> Transport {
        match self.link {
            Link::Quic(_) => Transport::Quic,
            Link::Ws(_) => Transport::Ws,
        }
    }

    /// Sends `text` to a user (`user_…`) or group (`group_…`) with `client_msg_id`
    /// as its dedup key, and waits until the broker has stored it.
    pub async fn send_text(
        &self,
        to: &str,
        text: String,
        client_msg_id: String,
    ) -> anyhow::Result<Stored> {
        match &self.link {
            Link::Quic(client) => {
                let ack = client
                    .send(pb::SendRequest {
                        to: to.to_owned(),
                        kind: pb::MessageKind::Text as i32,
                        content: Some(pb::send_request::Content::Text(pb::TextContent {
                            text,
                            ..Default::default()
                        })),
                        client_msg_id,
                    })
                    .await?;
                Ok(Stored { seq: ack.seq })
            }
            Link::Ws(client) => {
                let seq = client.send_text(to, &text, &client_msg_id).await?;
                Ok(Stored { seq })
            }
        }
    }

    /// The next event; `None` once the connection is closed and everything before
    /// was taken.
    pub async fn next(&self) -> Option<Incoming> {
        match &self.link {
            Link::Quic(client) => loop {
                match client.next_event().await? {
                    Event::Message(message) => {
                        return Some(Incoming::Message {
                            sent_micros: quic_sent_micros(&message),
                            seq: message.seq,
                        });
                    }
                    Event::SyncDone => return Some(Incoming::SyncDone),
                    Event::State(ConnectionState::Closed { reason }) => {
                        return Some(Incoming::Closed(reason));
                    }
                    _ => {}
                }
            },
            Link::Ws(client) => client.next().await,
        }
    }

    pub async fn close(&self) {
        match &self.link {
            Link::Quic(client) => client.close().await,
            Link::Ws(client) => client.close().await,
        }
    }
}

fn quic_sent_micros(message: &pb::Message) -> Option<u64> {
    match &message.content {
        Some(pb::message::Content::Text(text)) => payload::sent_micros(&text.text),
        _ => None,
    }
}
