//! The application-facing handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use quip_protocol::pb::{self, hello};
use quip_protocol::{client_frame, server_frame};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::driver;
use crate::error::{Result, SdkError};
use crate::events::Event;
use crate::handshake::{Established, handshake};
use crate::options::ClientOptions;
use crate::outbox::Phase;
use crate::shared::Shared;
use crate::transport::{Link, client_config, dial_with};
use crate::trust::Trust;

/// A connection to a Quip broker that authenticates once and then stays connected:
/// it reconnects by itself, resumes every conversation from its cursor, and surfaces
/// each message exactly once, in order, through [`next_event`](Self::next_event).
///
/// All methods take `&self`; share a client between tasks with an `Arc`. Dropping it
/// closes the connection in the background; [`close`](Self::close) does so and waits.
#[derive(Debug)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    /// The connection dialed by `connect` and not yet authenticated. Also serializes
    /// authentication attempts.
    unauthenticated: AsyncMutex<Option<Link>>,
    driver: AsyncMutex<Option<JoinHandle<()>>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // The driver winds down (and closes the connection) on its own.
        self.shared.shutdown.send_replace(true);
    }
}

impl Client {
    /// Connects with default options. The QUIC connection (and TLS verification) is
    /// made now, so an unreachable broker or an untrusted certificate fails here
    /// rather than at login.
    pub async fn connect(addr: SocketAddr, trust: Trust) -> Result<Client> {
        Self::connect_with(addr, trust, ClientOptions::default()).await
    }

    /// Connects with the given options; see [`connect`](Self::connect).
    pub async fn connect_with(
        addr: SocketAddr,
        trust: Trust,
        options: ClientOptions,
    ) -> Result<Client> {
        if !quip_protocol::ids::is_device_id(&options.device_id) {
            return Err(SdkError::InvalidOption(format!(
                "device_id {:?} must be 1..=64 of [A-Za-z0-9_.-]",
                options.device_id
            )));
        }
        let quic = client_config(&trust, &options.transport, options.datagrams)?;
        let link = dial_with(&quic, addr, &options.server_name, options.endpoint.as_ref()).await?;
        Ok(Client {
            shared: Arc::new(Shared::new(addr, options, quic)),
            unauthenticated: AsyncMutex::new(Some(link)),
            driver: AsyncMutex::new(None),
        })
    }

    /// Creates the account and authenticates this client as it. Returns the new
    /// account's tokens (also kept for reconnecting).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        nickname: Option<&str>,
    ) -> Result<pb::Tokens> {
        let hello_ok = self
            .authenticate(hello::Auth::Register(pb::RegisterAuth {
                username: username.to_string(),
                password: password.to_string(),
                nickname: nickname.unwrap_or_default().to_string(),
            }))
            .await?;
        hello_ok
            .tokens
            .ok_or(SdkError::UnexpectedResponse("HelloOk without tokens"))
    }

    /// Authenticates with a username and password. A refusal closes the broker side
    /// of the connection; calling `login` again dials a new one.
    pub async fn login(&self, username: &str, password: &str) -> Result<pb::Tokens> {
        let hello_ok = self
            .authenticate(hello::Auth::Password(pb::PasswordAuth {
                username: username.to_string(),
                password: password.to_string(),
            }))
            .await?;
        hello_ok
            .tokens
            .ok_or(SdkError::UnexpectedResponse("HelloOk without tokens"))
    }

    /// Authenticates with an access token. Without a refresh token the client cannot
    /// renew it: once it expires, a reconnect fails and the client closes.
    pub async fn login_with_token(&self, access_token: &str) -> Result<()> {
        self.authenticate(hello::Auth::AccessToken(access_token.to_string()))
            .await?;
        let mut account = self.shared.account();
        if account.tokens.is_none() {
            account.tokens = Some(pb::Tokens {
                access_token: access_token.to_string(),
                ..pb::Tokens::default()
            });
        }
        Ok(())
    }

    /// Authenticates by exchanging a refresh token (which the broker rotates: the old
    /// one stops working) for new tokens.
    pub async fn login_with_refresh_token(&self, refresh_token: &str) -> Result<pb::Tokens> {
        let hello_ok = self
            .authenticate(hello::Auth::RefreshToken(refresh_token.to_string()))
            .await?;
        hello_ok
            .tokens
            .ok_or(SdkError::UnexpectedResponse("HelloOk without tokens"))
    }

    /// Rotates the tokens on the live connection (call before the access token
    /// expires). The new tokens are stored for reconnecting and returned.
    pub async fn refresh(&self) -> Result<pb::Tokens> {
        let refresh_token = self
            .shared
            .account()
            .tokens
            .as_ref()
            .map(|tokens| tokens.refresh_token.clone())
            .unwrap_or_default();
        if refresh_token.is_empty() {
            return Err(SdkError::NoRefreshToken);
        }
        let body = client_frame::Body::Refresh(pb::RefreshRequest { refresh_token });
        match self.shared.request(body, false).await? {
            server_frame::Body::Tokens(tokens) => {
                self.shared.account().tokens = Some(tokens.clone());
                Ok(tokens)
            }
            _ => Err(SdkError::UnexpectedResponse("expected Tokens")),
        }
    }

    /// The authenticated user's id; `None` before the first successful login.
    pub fn user_id(&self) -> Option<String> {
        self.shared.account().user_id.clone()
    }

    /// The authenticated user's name; `None` before the first successful login.
    pub fn username(&self) -> Option<String> {
        let account = self.shared.account();
        account.user_id.as_ref().map(|_| account.username.clone())
    }

    /// The authenticated user's display name; `None` before the first successful
    /// login.
    pub fn nickname(&self) -> Option<String> {
        let account = self.shared.account();
        account.user_id.as_ref().map(|_| account.nickname.clone())
    }

    /// The authenticated user's role, `"user"` or `"admin"` (admins may use the
    /// `admin_*` methods), as the broker said at the latest (re)connect; `None` before
    /// the first successful login.
    pub fn role(&self) -> Option<String> {
        let account = self.shared.account();
        account.user_id.as_ref().map(|_| account.role.clone())
    }

    /// The device id this client announces (from the options).
    pub fn device_id(&self) -> &str {
        &self.shared.options.device_id
    }

    /// The latest tokens. After [`login_with_token`](Self::login_with_token) only the
    /// access token is set.
    pub fn tokens(&self) -> Option<pb::Tokens> {
        self.shared.account().tokens.clone()
    }

    /// Sends a text message to a user (`user_…`) or group (`group_…`).
    pub async fn send_text(&self, to: &str, text: &str) -> Result<pb::SendAck> {
        self.send(pb::SendRequest {
            to: to.to_string(),
            kind: pb::MessageKind::Text as i32,
            content: Some(pb::send_request::Content::Text(pb::TextContent {
                text: text.to_string(),
                ..pb::TextContent::default()
            })),
            client_msg_id: String::new(),
        })
        .await
    }

    /// Sends a message and waits until the broker has stored it. An empty
    /// `client_msg_id` gets a random one. If the connection drops, the same request
    /// (same `client_msg_id`, so the broker stores it at most once) is sent again on
    /// the next connection, until `request_timeout`.
    pub async fn send(&self, mut request: pb::SendRequest) -> Result<pb::SendAck> {
        if request.client_msg_id.is_empty() {
            request.client_msg_id = new_client_msg_id();
        }
        match self
            .shared
            .request(client_frame::Body::Send(request), true)
            .await?
        {
            server_frame::Body::Ack(ack) => Ok(ack),
            _ => Err(SdkError::UnexpectedResponse("expected SendAck")),
        }
    }

    /// A page of a conversation's stored messages (ascending): `before_seq` > 0 pages
    /// backwards, `after_seq` > 0 forwards, both 0 gives the newest page. For
    /// scroll-back; live messages come through [`next_event`](Self::next_event).
    /// To page forwards from the very first message use
    /// [`history_after`](Self::history_after)`(conv_id, 0, limit)`.
    pub async fn history(
        &self,
        conv_id: &str,
        before_seq: u64,
        after_seq: u64,
        limit: u32,
    ) -> Result<pb::HistoryPage> {
        self.history_request(pb::HistoryRequest {
            conv_id: conv_id.to_string(),
            before_seq,
            after_seq: (after_seq > 0).then_some(after_seq),
            limit,
        })
        .await
    }

    /// The oldest `limit` messages with seq > `after_seq` (0: from the first message),
    /// ascending; `has_more` says whether newer ones follow.
    pub async fn history_after(
        &self,
        conv_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<pb::HistoryPage> {
        self.history_request(pb::HistoryRequest {
            conv_id: conv_id.to_string(),
            before_seq: 0,
            after_seq: Some(after_seq),
            limit,
        })
        .await
    }

    async fn history_request(&self, request: pb::HistoryRequest) -> Result<pb::HistoryPage> {
        let body = client_frame::Body::History(request);
        match self.shared.request(body, true).await? {
            server_frame::Body::History(page) => Ok(page),
            _ => Err(SdkError::UnexpectedResponse("expected HistoryPage")),
        }
    }

    /// The user's conversations, newest activity first; pass the previous page's
    /// `next_page_token` to continue.
    pub async fn conversations(
        &self,
        page_token: &str,
        limit: u32,
    ) -> Result<pb::ConversationList> {
        let body = client_frame::Body::Conversations(pb::ConversationsRequest {
            page_token: page_token.to_string(),
            limit,
        });
        match self.shared.request(body, true).await? {
            server_frame::Body::Conversations(list) => Ok(list),
            _ => Err(SdkError::UnexpectedResponse("expected ConversationList")),
        }
    }

    /// Round-trip time of a `Ping` on the control stream.
    pub async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let client_time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let body = client_frame::Body::Ping(pb::Ping { client_time_ms });
        match self.shared.request(body, false).await? {
            server_frame::Body::Pong(_) => Ok(started.elapsed()),
            _ => Err(SdkError::UnexpectedResponse("expected Pong")),
        }
    }

    /// The next event, waiting for one. `None` once the client is closed and every
    /// event before `State(Closed)` (and that one) was taken. Before the first login
    /// this waits.
    ///
    /// Events are buffered up to `ClientOptions::event_buffer`; not calling this
    /// pauses delivery (see there).
    pub async fn next_event(&self) -> Option<Event> {
        self.shared.next_event().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next_event(&self) -> Option<Event> {
        self.shared.try_next_event()
    }

    /// Highest seq of the conversation this device holds in order (0 if none): what
    /// it resumes from after a reconnect.
    pub fn cursor(&self, conv_id: &str) -> u64 {
        self.shared.inbox().cursor(conv_id)
    }

    /// Closes gracefully: stops reconnecting, reports the final cursors, closes the
    /// connection with code 0 and waits for the background work to end. Requests in
    /// flight fail with [`SdkError::ClientClosed`]; afterwards `next_event` drains the
    /// queue, ends with `State(Closed)`, then returns `None`.
    pub async fn close(&self) {
        self.shared.shutdown.send_replace(true);
        if let Some(link) = self.unauthenticated.lock().await.take() {
            link.close(0, "client closed").await;
        }
        let driver = self.driver.lock().await.take();
        match driver {
            Some(driver) => {
                if let Err(error) = driver.await {
                    tracing::warn!(%error, "connection driver failed");
                    self.shared.finish("connection driver failed".into());
                }
            }
            None => self.shared.finish("closed by client".into()),
        }
    }

    /// Runs a `Hello` with `auth` on the connection dialed by `connect` (or a new
    /// one if that is gone), then starts the background driver.
    async fn authenticate(&self, auth: hello::Auth) -> Result<pb::HelloOk> {
        let mut unauthenticated = self.unauthenticated.lock().await;
        match self.shared.outbox().phase() {
            Phase::Active => return Err(SdkError::AlreadyAuthenticated),
            Phase::Closed => return Err(SdkError::ClientClosed),
            Phase::Unauthenticated => {}
        }
        if self.shared.is_shut_down() {
            return Err(SdkError::ClientClosed);
        }
        let established = match unauthenticated.take() {
            Some(link) if link.connection.close_reason().is_none() => {
                match self.hello_on(link, auth.clone()).await {
                    // The idle connection died under us (e.g. the broker's Hello
                    // timeout): that says nothing about the credentials, so retry once.
                    Err(error) if !matches!(error, SdkError::Server(_)) => {
                        tracing::debug!(%error, "pre-dialed connection unusable; dialing again");
                        driver::connect(&self.shared, auth).await?
                    }
                    other => other?,
                }
            }
            _ => driver::connect(&self.shared, auth).await?,
        };
        let hello_ok = established.hello_ok.clone();
        self.shared.outbox().activate();
        let span = tracing::info_span!("quip_client", device = %self.shared.options.device_id);
        let task = tokio::spawn(driver::drive(self.shared.clone(), established).instrument(span));
        *self.driver.lock().await = Some(task);
        Ok(hello_ok)
    }

    async fn hello_on(&self, link: Link, auth: hello::Auth) -> Result<Established> {
        let hello = self.shared.hello(auth);
        let established = handshake(
            link,
            hello,
            self.shared.next_req_id(),
            self.shared.options.request_timeout,
        )
        .await?;
        self.shared.authenticated(&established.hello_ok);
        Ok(established)
    }
}

/// A random dedup key: 128 bits, so collisions between a sender's messages are not a
/// concern.
pub(crate) fn new_client_msg_id() -> String {
    format!("c{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_client_msg_ids_are_valid_and_distinct() {
        let a = new_client_msg_id();
        let b = new_client_msg_id();
        assert!(quip_protocol::ids::is_client_msg_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn default_device_ids_are_valid() {
        let options = ClientOptions::default();
        assert!(options.device_id.starts_with("dev-"));
        assert!(quip_protocol::ids::is_device_id(&options.device_id));
    }
}
