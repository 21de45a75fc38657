//! The browser bridge over real HTTP and a real WebSocket (tokio-tungstenite): every
//! REST endpoint, the SimpleIM JSON protocol, interop with QUIC users, and the OpenAPI
//! document kept in sync with the routes.

use crate::common;

use std::time::Duration;

use common::web::{Web, close_code, next_of, send_json};
use common::{PASSWORD, TestBroker, WAIT, next_message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn rest_accounts_and_errors_follow_the_simpleim_envelope() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let (status, body) = web
        .call(
            reqwest::Method::POST,
            "/api/register",
            None,
            Some(json!({"username": "alice", "nickname": "Alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["code"].as_i64(), body["message"].as_str()),
        (Some(0), Some("success"))
    );
    assert_eq!(body["data"]["nickname"], "Alice");
    assert!(
        body["data"]["user_id"]
            .as_str()
            .unwrap()
            .starts_with("user_")
    );

    let (status, body) = web
        .call(
            reqwest::Method::POST,
            "/api/login",
            None,
            Some(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200);
    let data = &body["data"];
    for field in [
        "user_id",
        "username",
        "nickname",
        "token",
        "refresh_token",
        "expires_at",
        "websocket_url",
        "quic_url",
        "device_id",
    ] {
        assert!(!data[field].is_null(), "login returns {field}: {data}");
    }
    assert_eq!(data["websocket_url"], format!("ws://{}/ws", web.addr));
    let token = data["token"].as_str().unwrap().to_owned();

    let refused = |expected_status: u16, expected_code: i64| {
        move |(status, body): (u16, Value)| {
            assert_eq!(
                (status, body["code"].as_i64()),
                (expected_status, Some(expected_code)),
                "{body}"
            );
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
    };
    refused(401, 6)(
        web.call(
            reqwest::Method::POST,
            "/api/login",
            None,
            Some(json!({"username": "alice", "password": "wrong password"})),
        )
        .await,
    );
    refused(409, 5)(
        web.call(
            reqwest::Method::POST,
            "/api/register",
            None,
            Some(json!({"username": "alice", "password": PASSWORD})),
        )
        .await,
    );
    refused(400, 4)(
        web.call(
            reqwest::Method::POST,
            "/api/register",
            None,
            Some(json!({"username": "a", "password": PASSWORD})),
        )
        .await,
    );
    refused(400, 4)(
        web.call(
            reqwest::Method::POST,
            "/api/register",
            None,
            Some(json!({"nope": 1})),
        )
        .await,
    );
    refused(401, 3)(web.call(reqwest::Method::GET, "/api/me", None, None).await);
    refused(401, 8)(
        web.call(reqwest::Method::GET, "/api/me", Some("not-a-token"), None)
            .await,
    );
    refused(404, 9)(
        web.call(
            reqwest::Method::GET,
            "/api/users/by-username/nobody",
            Some(&token),
            None,
        )
        .await,
    );

    let me = web.get("/api/me", &token).await;
    assert_eq!(me["username"], "alice");
    let found = web.get("/api/users/by-username/ALICE", &token).await;
    assert_eq!(found["user_id"], me["user_id"]);

    // Refresh rotates.
    let (status, body) = web
        .call(
            reqwest::Method::POST,
            "/api/refresh",
            None,
            Some(json!({"refresh_token": data["refresh_token"], "device_id": data["device_id"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["data"]["refresh_token"], data["refresh_token"]);
    refused(401, 8)(
        web.call(
            reqwest::Method::POST,
            "/api/refresh",
            None,
            Some(json!({"refresh_token": data["refresh_token"], "device_id": data["device_id"]})),
        )
        .await,
    );
}

#[tokio::test]
async fn websocket_chat_acks_echo_message_id_and_bad_frames_leave_the_socket_usable() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.socket(&alice).await;
    let mut bob_ws = web.socket(&bob).await;
    next_of(&mut alice_ws, 40).await;
    next_of(&mut bob_ws, 40).await;

    // SimpleIM's frontend sets message_id itself; the ACK echoes it.
    send_json(&mut alice_ws, json!({"type": 1, "to": bob.user_id, "message_id": "local-1", "content": {"text": "hi bob"}})).await;
    let ack = next_of(&mut alice_ws, 30).await;
    assert_eq!(
        (
            ack["message_id"].as_str(),
            ack["seq"].as_u64(),
            ack["code"].as_i64()
        ),
        (Some("local-1"), Some(1), Some(0))
    );
    assert!(
        ack["server_message_id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
    let got = next_of(&mut bob_ws, 1).await;
    assert_eq!(got["content"]["text"], "hi bob");
    assert_eq!(
        (got["from"].as_str(), got["to"].as_str()),
        (Some(alice.user_id.as_str()), Some(bob.user_id.as_str()))
    );
    assert_eq!(got["seq"], 1);
    assert_eq!(got["message_id"], ack["server_message_id"]);
    assert!(
        got["conversation_id"]
            .as_str()
            .unwrap()
            .starts_with("single:")
    );
    assert!(got["timestamp"].as_u64().unwrap() > 0);

    // A resend is deduplicated: same seq, nothing new delivered.
    send_json(&mut alice_ws, json!({"type": 1, "to": bob.user_id, "message_id": "local-1", "content": {"text": "hi bob"}})).await;
    let again = next_of(&mut alice_ws, 30).await;
    assert_eq!(
        (again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some(1), Some(true))
    );

    // Bad frames: an error frame with a code; the socket stays usable.
    alice_ws
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(next_of(&mut alice_ws, 50).await["code"], 4);
    send_json(&mut alice_ws, json!({"type": 77})).await;
    assert_eq!(next_of(&mut alice_ws, 50).await["code"], 4);
    send_json(
        &mut alice_ws,
        json!({"type": 1, "to": "user_nobody", "message_id": "x1", "content": {"text": "?"}}),
    )
    .await;
    let error = next_of(&mut alice_ws, 50).await;
    assert_eq!(
        (error["code"].as_i64(), error["message_id"].as_str()),
        (Some(9), Some("x1"))
    );
    send_json(
        &mut alice_ws,
        json!({"type": 99, "content": {"timestamp": 123}}),
    )
    .await;
    assert_eq!(
        next_of(&mut alice_ws, 100).await["content"]["timestamp"],
        123
    );
    send_json(&mut alice_ws, json!({"type": 1, "to": bob.user_id, "message_id": "local-2", "content": {"text": "still here"}})).await;
    assert_eq!(next_of(&mut alice_ws, 30).await["seq"], 2);
    assert_eq!(
        next_of(&mut bob_ws, 1).await["content"]["text"],
        "still here"
    );

    // An oversized frame closes the socket with 1009.
    let huge = "x".repeat(100 * 1024);
    send_json(
        &mut alice_ws,
        json!({"type": 1, "to": bob.user_id, "message_id": "big", "content": {"text": huge}}),
    )
    .await;
    let close = close_code(&mut alice_ws).await;
    assert_eq!(close, Some(1009));
    // Bob is unaffected.
    send_json(
        &mut bob_ws,
        json!({"type": 1, "to": alice.user_id, "message_id": "b1", "content": {"text": "bye"}}),
    )
    .await;
    assert_eq!(next_of(&mut bob_ws, 30).await["seq"], 3);
}

#[tokio::test]
async fn websocket_syncs_missed_messages_in_order_then_resumes_from_reported_cursors() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    for i in 1..=5 {
        let mut ws = web.socket(&alice).await;
        send_json(&mut ws, json!({"type": 1, "to": bob.user_id, "message_id": format!("m{i}"), "content": {"text": format!("m{i}")}})).await;
        assert_eq!(next_of(&mut ws, 30).await["seq"], i);
    }
    let mut bob_ws = web.socket(&bob).await;
    let mut seqs = Vec::new();
    loop {
        let frame = tokio::time::timeout(WAIT, bob_ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(text.as_str()).unwrap();
        match value["type"].as_i64() {
            Some(1) => seqs.push(value["seq"].as_u64().unwrap()),
            Some(40) => break,
            _ => {}
        }
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    // Report delivery up to 3, reconnect: 4 and 5 come again (at-least-once), after a
    // resume marker saying where the broker resumes.
    let conv = quip_protocol::ids::single_conv_id(&alice.user_id, &bob.user_id);
    send_json(
        &mut bob_ws,
        json!({"type": 32, "conversation_id": conv, "seq": 3}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(bob_ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bob_ws = web.socket(&bob).await;
    let resume = next_of(&mut bob_ws, 41).await;
    assert_eq!(
        (resume["conversation_id"].as_str(), resume["seq"].as_u64()),
        (Some(conv.as_str()), Some(3))
    );
    assert_eq!(next_of(&mut bob_ws, 1).await["seq"], 4);
    assert_eq!(next_of(&mut bob_ws, 1).await["seq"], 5);
    next_of(&mut bob_ws, 40).await;
}

#[tokio::test]
async fn browser_and_quic_users_chat_both_ways_and_share_one_history() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let browser = web.account("browser").await;
    let native = broker.user("native", "phone").await;
    let native_id = native.user_id().unwrap();
    let mut ws = web.socket(&browser).await;
    next_of(&mut ws, 40).await;

    send_json(&mut ws, json!({"type": 1, "to": native_id, "message_id": "w1", "content": {"text": "from the browser"}})).await;
    assert_eq!(next_of(&mut ws, 30).await["seq"], 1);
    let got = next_message(&native).await;
    assert_eq!((common::text(&got), got.seq), ("from the browser", 1));

    native
        .send_text(&browser.user_id, "from QUIC")
        .await
        .unwrap();
    let got = next_of(&mut ws, 1).await;
    assert_eq!(
        (got["content"]["text"].as_str(), got["seq"].as_u64()),
        (Some("from QUIC"), Some(2))
    );

    // One history, seen the same from both sides.
    let page = web
        .get(
            &format!("/api/messages/private/{native_id}?limit=50&last_seq=0"),
            &browser.token,
        )
        .await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["from the browser", "from QUIC"]);
    assert_eq!(page["has_more"], false);
    let quic_page = native
        .history(got["conversation_id"].as_str().unwrap(), 0, 0, 50)
        .await
        .unwrap();
    assert_eq!(
        quic_page
            .messages
            .iter()
            .map(common::text)
            .collect::<Vec<_>>(),
        texts
    );

    // Typing both ways: browser type 33 reaches the QUIC user, and back.
    let conv_id = got["conversation_id"].as_str().unwrap().to_owned();
    send_json(&mut ws, json!({"type": 33, "to": native_id})).await;
    let notice = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(quip_sdk::Event::Typing(notice)) = native.next_event().await {
                return notice;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        (notice.conv_id.as_str(), notice.from.as_str()),
        (conv_id.as_str(), browser.user_id.as_str())
    );
    native
        .typing(&conv_id, quip_sdk::pb::TypingKind::Typing)
        .await
        .unwrap();
    let typing = next_of(&mut ws, 33).await;
    assert_eq!(
        (typing["conversation_id"].as_str(), typing["from"].as_str()),
        (Some(conv_id.as_str()), Some(native_id.as_str()))
    );

    // Groups across transports.
    let group = web
        .post(
            "/api/groups",
            &browser.token,
            Some(json!({"name": "mixed", "member_ids": [native_id]})),
        )
        .await;
    let group_id = group["group_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (group["member_count"].as_u64(), group["my_role"].as_str()),
        (Some(2), Some("owner"))
    );
    let created = next_of(&mut ws, 3).await;
    assert_eq!(created["content"]["event"], "group_created");
    send_json(&mut ws, json!({"type": 2, "group_id": group_id, "message_id": "g1", "content": {"text": "hello group"}})).await;
    assert_eq!(next_of(&mut ws, 30).await["seq"], 2);
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let message = next_message(&native).await;
        texts.push(match &message.content {
            Some(quip_sdk::pb::message::Content::System(s)) => s.event.clone(),
            _ => common::text(&message).to_owned(),
        });
    }
    assert_eq!(texts, vec!["group_created", "hello group"]);
    native
        .send(quip_sdk::pb::SendRequest {
            to: group_id.clone(),
            kind: quip_sdk::pb::MessageKind::Text as i32,
            content: Some(quip_sdk::pb::send_request::Content::Text(
                quip_sdk::pb::TextContent {
                    text: "hi from QUIC".into(),
                    ..Default::default()
                },
            )),
            client_msg_id: "q1".into(),
        })
        .await
        .unwrap();
    let got = next_of(&mut ws, 2).await;
    assert_eq!(
        (got["content"]["text"].as_str(), got["group_id"].as_str()),
        (Some("hi from QUIC"), Some(group_id.as_str()))
    );
}

#[tokio::test]
async fn rest_conversations_history_groups_and_reads() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let carol = web.account("carol").await;
    let mut ws = web.socket(&alice).await;
    for i in 1..=60 {
        send_json(&mut ws, json!({"type": 1, "to": bob.user_id, "message_id": format!("m{i}"), "content": {"text": format!("m{i}")}})).await;
        next_of(&mut ws, 30).await;
    }
    // History pages backwards with last_seq, as in SimpleIM.
    let newest = web
        .get(
            &format!(
                "/api/messages/private/{}?limit=50&last_seq=0",
                alice.user_id
            ),
            &bob.token,
        )
        .await;
    let seqs = |page: &Value| {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&newest), (11..=60).collect::<Vec<_>>());
    assert_eq!(newest["has_more"], true);
    let older = web
        .get(
            &format!(
                "/api/messages/private/{}?limit=50&last_seq=11",
                alice.user_id
            ),
            &bob.token,
        )
        .await;
    assert_eq!(seqs(&older), (1..=10).collect::<Vec<_>>());
    assert_eq!(older["has_more"], false);

    // Conversations with unread counts; reading moves them.
    let list = web.get("/api/conversations", &bob.token).await;
    let conv = &list["conversations"][0];
    assert_eq!(
        (
            conv["unread"].as_u64(),
            conv["type"].as_i64(),
            conv["peer_id"].as_str()
        ),
        (Some(60), Some(1), Some(alice.user_id.as_str()))
    );
    assert_eq!(conv["last_message"]["content"]["text"], "m60");
    assert_eq!(conv["peer_nickname"], "ALICE");
    let conv_id = conv["conversation_id"].as_str().unwrap().to_owned();
    web.post(
        &format!("/api/conversations/{conv_id}/read"),
        &bob.token,
        Some(json!({"seq": 55})),
    )
    .await;
    let list = web.get("/api/conversations", &bob.token).await;
    assert_eq!(list["conversations"][0]["unread"], 5);

    // Groups: create, list, info, join, members, leave, group history.
    let group = web
        .post(
            "/api/groups",
            &alice.token,
            Some(json!({"name": "team", "description": "d", "member_ids": [bob.user_id]})),
        )
        .await;
    let group_id = group["group_id"].as_str().unwrap().to_owned();
    let mine = web.get("/api/groups/my", &bob.token).await;
    assert_eq!(mine["total"], 1);
    assert_eq!(
        (
            mine["groups"][0]["name"].as_str(),
            mine["groups"][0]["member_count"].as_u64()
        ),
        (Some("team"), Some(2))
    );
    let info = web
        .get(&format!("/api/groups/{group_id}"), &carol.token)
        .await;
    assert_eq!(
        (info["my_role"].as_str(), info["join_mode"].as_str()),
        (Some(""), Some("open"))
    );
    let (status, body) = web
        .call(
            reqwest::Method::POST,
            &format!("/api/groups/{group_id}/join"),
            Some(&carol.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["group"]["member_count"], 3);
    let members = web
        .get(
            &format!("/api/groups/{group_id}/members?limit=2"),
            &carol.token,
        )
        .await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    assert!(!members["next_after"].as_str().unwrap().is_empty());
    let history = web
        .get(
            &format!("/api/messages/group/{group_id}?limit=50&last_seq=0"),
            &carol.token,
        )
        .await;
    let events: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        vec!["member_joined"],
        "a new member sees the group from joining on"
    );
    let left = web
        .post(
            &format!("/api/groups/{group_id}/leave"),
            &carol.token,
            Some(json!({})),
        )
        .await;
    assert_eq!(left["group"]["member_count"], 2);
    let (status, body) = web
        .call(
            reqwest::Method::POST,
            &format!("/api/groups/{group_id}/leave"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (403, Some(10)),
        "the owner cannot leave: {body}"
    );
    let (status, _) = web
        .call(
            reqwest::Method::GET,
            "/api/groups/group_nope",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let (status, doc) = web
        .call(reqwest::Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes: Vec<_> = quip_bridge_ws::rest::ROUTES
        .iter()
        .chain(quip_bridge_ws::ops::ROUTES)
        .collect();
    for (method, path) in &routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, routes.len(), "no undocumented or stale paths");
}

#[tokio::test]
async fn origins_outside_the_allow_list_cannot_open_websockets() {
    let broker =
        TestBroker::start_with(|c| c.allowed_origins = vec!["http://chat.example".into()]).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let url = format!("ws://{}/ws?token={}", web.addr, alice.token);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "http://chat.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    // And the token is required.
    let bad = format!("ws://{}/ws?token=forged", web.addr);
    assert!(tokio_tungstenite::connect_async(bad).await.is_err());
}

#[tokio::test]
async fn silent_websockets_are_closed_after_the_idle_timeout_and_live_ones_stay() {
    let broker = TestBroker::start_with(|c| c.ws_idle_timeout_ms = 600).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    // Bob's socket answers pings (tungstenite does while we read); Alice's is not read.
    let mut alice_ws = web.socket(&alice).await;
    let mut bob_ws = web.socket(&bob).await;
    let keep_reading = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2000);
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, bob_ws.next()).await {
            assert!(
                !matches!(frame, Message::Close(_)),
                "a live socket is not closed"
            );
        }
        bob_ws
    });
    // Past the timeout (closed at ~0.8 s), well within the 3 s closing handshake.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let close = close_code(&mut alice_ws).await;
    assert_eq!(close, Some(1001));
    let mut bob_ws = keep_reading.await.unwrap();
    send_json(&mut bob_ws, json!({"type": 99, "content": {}})).await;
    next_of(&mut bob_ws, 100).await;
}
