//! The browser bridge from the outside: REST calls over real HTTP (reqwest) and
//! SimpleIM JSON frames over real WebSockets (tokio-tungstenite), shared by the
//! `bridge*` tests.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quip_broker::Config;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{PASSWORD, TestBroker, WAIT};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A broker whose login limit per address does not get in the way of tests that log
/// in many times from 127.0.0.1.
pub async fn start(adjust: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::start_with(|c| {
        c.rate_logins_per_ip_per_min = 10_000;
        adjust(c);
    })
    .await
}

/// A REST client for a broker's HTTP bridge.
pub struct Web {
    pub http: reqwest::Client,
    pub base: String,
    pub addr: SocketAddr,
}

/// A logged-in browser device.
pub struct Account {
    pub user_id: String,
    pub token: String,
    pub device_id: String,
}

impl Web {
    pub fn new(broker: &TestBroker) -> Web {
        let addr = broker.broker().http_addr().expect("the bridge runs");
        Web {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            addr,
        }
    }

    /// Any request; returns the response (for its headers) and the JSON body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.expect("a JSON body"))
    }

    /// Any request; returns the HTTP status and the JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, _, body) = self.raw(method, path, token, body).await;
        (status, body)
    }

    /// A request expected to succeed: returns `data`.
    pub async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.call(method.clone(), path, Some(token), body).await;
        assert_eq!(
            (status, reply["code"].as_i64()),
            (200, Some(0)),
            "{method} {path}: {reply}"
        );
        reply["data"].clone()
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        self.ok(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> Value {
        self.ok(Method::POST, path, token, body).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Value {
        self.ok(Method::DELETE, path, token, None).await
    }

    /// A request expected to fail: asserts the HTTP status and the Quip error code.
    pub async fn refused(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        status: u16,
        code: i64,
    ) -> Value {
        let (got_status, reply) = self.call(method.clone(), path, Some(token), body).await;
        assert_eq!(
            (got_status, reply["code"].as_i64()),
            (status, Some(code)),
            "{method} {path}: {reply}"
        );
        assert!(
            !reply["message"].as_str().unwrap_or_default().is_empty(),
            "an error says why: {reply}"
        );
        reply
    }

    /// Registers `username` (nickname in capitals) and logs in as `<username>-web`.
    pub async fn account(&self, username: &str) -> Account {
        let (status, body) = self
            .call(Method::POST, "/api/register", None, Some(json!({"username": username, "nickname": username.to_uppercase(), "password": PASSWORD})))
            .await;
        assert_eq!(status, 200, "{body}");
        self.login(username, &format!("{username}-web")).await
    }

    pub async fn login_with(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
    ) -> (u16, Value) {
        self.call(
            Method::POST,
            "/api/login",
            None,
            Some(json!({"username": username, "password": password, "device_id": device_id})),
        )
        .await
    }

    pub async fn login(&self, username: &str, device_id: &str) -> Account {
        let (status, body) = self.login_with(username, PASSWORD, device_id).await;
        assert_eq!(status, 200, "{body}");
        let data = &body["data"];
        Account {
            user_id: data["user_id"].as_str().unwrap().into(),
            token: data["token"].as_str().unwrap().into(),
            device_id: data["device_id"].as_str().unwrap().into(),
        }
    }

    /// A freshly opened socket (its sync may still be under way).
    pub async fn socket(&self, account: &Account) -> Socket {
        let url = format!(
            "ws://{}/ws?token={}&device_id={}",
            self.addr, account.token, account.device_id
        );
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        socket
    }

    /// A socket that has finished its sync (type 40 seen).
    pub async fn synced_socket(&self, account: &Account) -> Socket {
        let mut socket = self.socket(account).await;
        next_of(&mut socket, 40).await;
        socket
    }
}

pub async fn send_json(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON frame for which `wanted` holds, skipping others (listed if it never
/// comes).
pub async fn next_where(socket: &mut Socket, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let mut skipped = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match socket
                .next()
                .await
                .expect("socket open")
                .expect("socket healthy")
            {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if wanted(&value) {
                        return value;
                    }
                    skipped.push(value);
                }
                Message::Close(frame) => panic!("closed while waiting for {what}: {frame:?}"),
                _ => {}
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        let skipped: Vec<String> = skipped.iter().map(Value::to_string).collect();
        panic!(
            "{what} did not arrive in time; got instead:\n{}",
            skipped.join("\n")
        )
    })
}

/// The next JSON frame of the given type, skipping others (sync markers, etc.).
pub async fn next_of(socket: &mut Socket, wanted: i64) -> Value {
    next_where(socket, &format!("a frame of type {wanted}"), |value| {
        value["type"].as_i64() == Some(wanted)
    })
    .await
}

/// Frames matching each of `wanted`, in any order of arrival (returned in the order of
/// `wanted`), skipping others.
pub async fn collect_in_any_order(
    socket: &mut Socket,
    what: &str,
    wanted: &[&dyn Fn(&Value) -> bool],
) -> Vec<Value> {
    let mut found = vec![Value::Null; wanted.len()];
    while found.iter().any(Value::is_null) {
        let progress = format!("{what} (so far {found:?})");
        let frame = next_where(socket, &progress, |v| {
            wanted
                .iter()
                .zip(&found)
                .any(|(want, got)| got.is_null() && want(v))
        })
        .await;
        let slot = wanted
            .iter()
            .zip(&found)
            .position(|(want, got)| got.is_null() && want(&frame))
            .unwrap();
        found[slot] = frame;
    }
    found
}

/// Asserts no frame of type `unwanted` arrives for `quiet`.
pub async fn assert_none_of(socket: &mut Socket, unwanted: i64, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_ne!(value["type"].as_i64(), Some(unwanted), "unexpected {value}");
        }
    }
}

/// Reads until the server closes the socket; returns the close code.
pub async fn close_code(socket: &mut Socket) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the socket is closed in time")
}

/// A heartbeat round trip: the socket is alive.
pub async fn heartbeat(socket: &mut Socket) {
    send_json(socket, json!({"type": 99, "content": {"timestamp": 1}})).await;
    next_of(socket, 100).await;
}

/// Sends a frame carrying `message_id` and returns its answer: the ACK (30) or the
/// error (50) echoing that id.
pub async fn send_and_answer(socket: &mut Socket, frame: Value, message_id: &str) -> Value {
    send_json(socket, frame).await;
    next_where(socket, &format!("the answer to {message_id}"), |value| {
        (value["type"] == 30 || value["type"] == 50) && value["message_id"] == message_id
    })
    .await
}
