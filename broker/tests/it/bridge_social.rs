//! Issue 8 through the browser bridge, against a real broker over real HTTP and real
//! WebSockets: contacts and friend requests (with their type 70 pushes), blocking,
//! friends-only DMs, devices and logging out (close 4028), the admin API (disabling
//! closes with 4018), and REST / WebSocket rate limits (429 with `Retry-After`).

use crate::common;

use std::time::Duration;

use common::web::{
    Account, Socket, Web, assert_none_of, close_code, heartbeat, next_of, next_where,
    send_and_answer, start,
};
use common::{PASSWORD, WAIT};
use reqwest::Method;
use serde_json::{Value, json};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// The next contact event (70) of this kind.
async fn next_contact_event(socket: &mut Socket, event: &str) -> Value {
    next_where(socket, &format!("contact event {event:?}"), |value| {
        value["type"] == 70 && value["event"] == event
    })
    .await
}

/// Sends a 1:1 text over a socket; returns the answer (ACK 30 or error 50).
async fn say(socket: &mut Socket, to: &str, message_id: &str, text: &str) -> Value {
    send_and_answer(
        socket,
        json!({"type": 1, "to": to, "message_id": message_id, "content": {"text": text}}),
        message_id,
    )
    .await
}

/// Asserts a send was refused with an error frame carrying `code`.
async fn say_refused(socket: &mut Socket, to: &str, message_id: &str, code: i64) -> Value {
    let answer = say(socket, to, message_id, "refused?").await;
    assert_eq!(
        (answer["type"].as_i64(), answer["code"].as_i64()),
        (Some(50), Some(code)),
        "{message_id}: {answer}"
    );
    answer
}

/// Asserts a send was stored (ACK 30).
async fn say_ok(socket: &mut Socket, to: &str, message_id: &str) {
    let answer = say(socket, to, message_id, "hello").await;
    assert_eq!(answer["type"], 30, "{message_id}: {answer}");
}

fn request_path(user: &Account, action: &str) -> String {
    format!("/api/contacts/requests/{}/{action}", user.user_id)
}

#[tokio::test]
async fn friend_requests_over_rest_become_friends_with_pushes_and_presence() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;

    // Alice asks; Bob is told at once.
    let sent = web
        .post(
            "/api/contacts/requests",
            &alice.token,
            Some(json!({"user_id": bob.user_id, "message": "hi bob, it's alice"})),
        )
        .await;
    assert_eq!(sent, json!({"now_friends": false}));
    let event = next_contact_event(&mut bob_ws, "request_received").await;
    assert_eq!(
        event,
        json!({"type": 70, "event": "request_received", "user_id": alice.user_id,
               "username": "alice", "nickname": "ALICE", "message": "hi bob, it's alice"})
    );

    // Both sides see the request, with the other user's names.
    let bobs = web.get("/api/contacts/requests", &bob.token).await;
    assert_eq!(bobs["outgoing"], json!([]), "{bobs}");
    let incoming = bobs["incoming"].as_array().unwrap();
    assert_eq!(incoming.len(), 1, "{bobs}");
    assert_eq!(incoming[0]["from_user_id"], alice.user_id.as_str());
    assert_eq!(incoming[0]["to_user_id"], bob.user_id.as_str());
    assert_eq!(incoming[0]["message"], "hi bob, it's alice");
    assert_eq!(
        (
            incoming[0]["username"].as_str(),
            incoming[0]["nickname"].as_str()
        ),
        (Some("alice"), Some("ALICE"))
    );
    assert!(incoming[0]["requested_at"].as_u64().unwrap() > 0);
    let alices = web.get("/api/contacts/requests", &alice.token).await;
    assert_eq!(alices["incoming"], json!([]), "{alices}");
    let outgoing = alices["outgoing"].as_array().unwrap();
    assert_eq!(outgoing.len(), 1, "{alices}");
    assert_eq!(outgoing[0]["to_user_id"], bob.user_id.as_str());
    assert_eq!(outgoing[0]["username"], "bob");

    // Asking again replaces the message.
    web.post(
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": bob.user_id, "message": "second try"})),
    )
    .await;
    let bobs = web.get("/api/contacts/requests", &bob.token).await;
    assert_eq!(bobs["incoming"].as_array().unwrap().len(), 1, "{bobs}");
    assert_eq!(bobs["incoming"][0]["message"], "second try");

    // Bob accepts: Alice is told; both lists of requests are empty; both are friends,
    // with presence.
    assert_eq!(
        web.post(&request_path(&alice, "accept"), &bob.token, None)
            .await,
        json!({})
    );
    let event = next_contact_event(&mut alice_ws, "request_accepted").await;
    assert_eq!(event["user_id"], bob.user_id.as_str());
    assert_eq!(
        (event["username"].as_str(), event["nickname"].as_str()),
        (Some("bob"), Some("BOB"))
    );
    for account in [&alice, &bob] {
        let lists = web.get("/api/contacts/requests", &account.token).await;
        assert_eq!(lists, json!({"incoming": [], "outgoing": []}));
    }
    let friends = web.get("/api/contacts", &alice.token).await;
    let list = friends["friends"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{friends}");
    let friend = &list[0];
    assert_eq!(friend["user_id"], bob.user_id.as_str());
    assert_eq!(
        (friend["username"].as_str(), friend["nickname"].as_str()),
        (Some("bob"), Some("BOB"))
    );
    assert_eq!(friend["online"], true, "Bob's socket is open: {friend}");
    assert_eq!(friend["last_seen"], 0);
    assert_eq!(friend["blocked"], false);
    assert!(friend["since"].as_u64().unwrap() > 0);
    let friends = web.get("/api/contacts", &bob.token).await;
    assert_eq!(friends["friends"][0]["user_id"], alice.user_id.as_str());

    // Bob goes offline: his friend entry says when he was last seen.
    drop(bob_ws);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let friends = web.get("/api/contacts", &alice.token).await;
        let bob_entry = &friends["friends"][0];
        if bob_entry["online"] == false && bob_entry["last_seen"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bob never went offline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bob_ws = web.synced_socket(&bob).await;

    // Friends already: asking again is a conflict.
    web.refused(
        Method::POST,
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": bob.user_id})),
        409,
        25,
    )
    .await;

    // Alice removes Bob: Bob is told; neither lists the other.
    assert_eq!(
        web.delete(&format!("/api/contacts/{}", bob.user_id), &alice.token)
            .await,
        json!({})
    );
    let event = next_contact_event(&mut bob_ws, "friend_removed").await;
    assert_eq!(event["user_id"], alice.user_id.as_str());
    for account in [&alice, &bob] {
        assert_eq!(
            web.get("/api/contacts", &account.token).await,
            json!({"friends": []})
        );
    }
    web.refused(
        Method::DELETE,
        &format!("/api/contacts/{}", bob.user_id),
        &alice.token,
        None,
        404,
        9,
    )
    .await;

    // Two users asking each other become friends at once.
    let carol = web.account("carol").await;
    web.post(
        "/api/contacts/requests",
        &carol.token,
        Some(json!({"user_id": alice.user_id})),
    )
    .await;
    next_contact_event(&mut alice_ws, "request_received").await;
    let crossed = web
        .post(
            "/api/contacts/requests",
            &alice.token,
            Some(json!({"user_id": carol.user_id, "message": "you too"})),
        )
        .await;
    assert_eq!(crossed, json!({"now_friends": true}));
    let friends = web.get("/api/contacts", &carol.token).await;
    assert_eq!(friends["friends"][0]["user_id"], alice.user_id.as_str());
}

#[tokio::test]
async fn bad_contact_requests_are_refused_clearly() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    for body in [
        json!({}),
        json!({"user_id": ""}),
        json!({"user_id": "bob"}),
        json!({"user_id": alice.user_id}),
    ] {
        web.refused(
            Method::POST,
            "/api/contacts/requests",
            &alice.token,
            Some(body),
            400,
            4,
        )
        .await;
    }
    web.refused(
        Method::POST,
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": bob.user_id, "message": "m".repeat(300)})),
        413,
        16,
    )
    .await;
    web.refused(
        Method::POST,
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": "user_nobody"})),
        404,
        9,
    )
    .await;
    // Malformed JSON, a malformed path id, a missing setting.
    let (status, _, reply) = web
        .raw(Method::POST, "/api/blocks", Some(&alice.token), None)
        .await;
    assert_eq!((status, reply["code"].as_i64()), (400, Some(4)), "{reply}");
    web.refused(
        Method::POST,
        "/api/contacts/requests/not-a-user/accept",
        &alice.token,
        None,
        400,
        4,
    )
    .await;
    web.refused(
        Method::PUT,
        "/api/contacts/settings",
        &alice.token,
        Some(json!({})),
        400,
        4,
    )
    .await;
    web.refused(
        Method::POST,
        "/api/blocks",
        &alice.token,
        Some(json!({"user_id": alice.user_id})),
        400,
        4,
    )
    .await;
    // Without a token.
    let (status, reply) = web.call(Method::GET, "/api/contacts", None, None).await;
    assert_eq!((status, reply["code"].as_i64()), (401, Some(3)), "{reply}");
}

#[tokio::test]
async fn rejected_requests_are_silent_and_cancelled_ones_are_told() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;

    web.post(
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": bob.user_id, "message": "please"})),
    )
    .await;
    next_contact_event(&mut bob_ws, "request_received").await;
    assert_eq!(
        web.post(&request_path(&alice, "reject"), &bob.token, None)
            .await,
        json!({})
    );
    assert_none_of(&mut alice_ws, 70, QUIET).await;
    for account in [&alice, &bob] {
        let lists = web.get("/api/contacts/requests", &account.token).await;
        assert_eq!(lists, json!({"incoming": [], "outgoing": []}));
    }
    assert_eq!(
        web.get("/api/contacts", &alice.token).await,
        json!({"friends": []})
    );
    // Nothing left to accept or reject.
    web.refused(
        Method::POST,
        &request_path(&alice, "accept"),
        &bob.token,
        None,
        404,
        9,
    )
    .await;

    // Alice asks again and withdraws: Bob is told and has nothing waiting.
    web.post(
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": bob.user_id})),
    )
    .await;
    next_contact_event(&mut bob_ws, "request_received").await;
    assert_eq!(
        web.delete(
            &format!("/api/contacts/requests/{}", bob.user_id),
            &alice.token
        )
        .await,
        json!({})
    );
    let event = next_contact_event(&mut bob_ws, "request_cancelled").await;
    assert_eq!(event["user_id"], alice.user_id.as_str());
    assert_eq!(event["username"], "alice");
    let lists = web.get("/api/contacts/requests", &bob.token).await;
    assert_eq!(lists, json!({"incoming": [], "outgoing": []}));
    web.refused(
        Method::DELETE,
        &format!("/api/contacts/requests/{}", bob.user_id),
        &alice.token,
        None,
        404,
        9,
    )
    .await;
}

#[tokio::test]
async fn blocking_refuses_messages_and_requests_both_ways_until_unblocked() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    say_ok(&mut bob_ws, &alice.user_id, "before").await;
    assert_eq!(next_of(&mut alice_ws, 1).await["client_msg_id"], "before");

    // A pending request from Bob is dropped by the block.
    web.post(
        "/api/contacts/requests",
        &bob.token,
        Some(json!({"user_id": alice.user_id})),
    )
    .await;
    next_contact_event(&mut alice_ws, "request_received").await;
    assert_eq!(
        web.post(
            "/api/blocks",
            &alice.token,
            Some(json!({"user_id": bob.user_id}))
        )
        .await,
        json!({})
    );
    let blocked = web.get("/api/blocks", &alice.token).await;
    let list = blocked["blocked"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{blocked}");
    assert_eq!(list[0]["user_id"], bob.user_id.as_str());
    assert_eq!(
        (list[0]["username"].as_str(), list[0]["nickname"].as_str()),
        (Some("bob"), Some("BOB"))
    );
    assert!(list[0]["blocked_at"].as_u64().unwrap() > 0);
    assert_eq!(
        web.get("/api/blocks", &bob.token).await,
        json!({"blocked": []})
    );
    for account in [&alice, &bob] {
        let lists = web.get("/api/contacts/requests", &account.token).await;
        assert_eq!(lists, json!({"incoming": [], "outgoing": []}), "dropped");
    }

    // Bob's messages and requests to Alice are refused; the socket stays usable.
    let error = say_refused(&mut bob_ws, &alice.user_id, "blocked-1", 26).await;
    assert_eq!(error["error"], "BLOCKED");
    assert!(error.get("retry_after_ms").is_none(), "{error}");
    heartbeat(&mut bob_ws).await;
    web.refused(
        Method::POST,
        "/api/contacts/requests",
        &bob.token,
        Some(json!({"user_id": alice.user_id})),
        403,
        26,
    )
    .await;
    assert_none_of(&mut alice_ws, 1, QUIET).await;
    // Alice cannot write to someone she blocked either.
    say_refused(&mut alice_ws, &bob.user_id, "blocker-1", 26).await;

    // Unblocking restores things.
    assert_eq!(
        web.delete(&format!("/api/blocks/{}", bob.user_id), &alice.token)
            .await,
        json!({})
    );
    assert_eq!(
        web.get("/api/blocks", &alice.token).await,
        json!({"blocked": []})
    );
    say_ok(&mut bob_ws, &alice.user_id, "after").await;
    let delivered = next_of(&mut alice_ws, 1).await;
    assert_eq!(delivered["client_msg_id"], "after");
    say_ok(&mut alice_ws, &bob.user_id, "reply").await;
}

#[tokio::test]
async fn friends_only_dms_refuse_strangers_but_not_friends() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;

    assert_eq!(
        web.get("/api/contacts/settings", &bob.token).await,
        json!({"friends_only_dm": false})
    );
    let set = web
        .ok(
            Method::PUT,
            "/api/contacts/settings",
            &bob.token,
            Some(json!({"friends_only_dm": true})),
        )
        .await;
    assert_eq!(set, json!({"friends_only_dm": true}));
    assert_eq!(
        web.get("/api/contacts/settings", &bob.token).await,
        json!({"friends_only_dm": true})
    );

    let error = say_refused(&mut alice_ws, &bob.user_id, "stranger-1", 27).await;
    assert_eq!(error["error"], "CONTACTS_ONLY");
    // A friend request still goes through; once friends, messages do too.
    web.post(
        "/api/contacts/requests",
        &alice.token,
        Some(json!({"user_id": bob.user_id})),
    )
    .await;
    next_contact_event(&mut bob_ws, "request_received").await;
    web.post(&request_path(&alice, "accept"), &bob.token, None)
        .await;
    say_ok(&mut alice_ws, &bob.user_id, "friend-1").await;
    assert_eq!(next_of(&mut bob_ws, 1).await["client_msg_id"], "friend-1");

    // Turned off, strangers may write again.
    let carol = web.account("carol").await;
    let mut carol_ws = web.synced_socket(&carol).await;
    say_refused(&mut carol_ws, &bob.user_id, "carol-1", 27).await;
    web.ok(
        Method::PUT,
        "/api/contacts/settings",
        &bob.token,
        Some(json!({"friends_only_dm": false})),
    )
    .await;
    say_ok(&mut carol_ws, &bob.user_id, "carol-2").await;
}

#[tokio::test]
async fn devices_are_listed_and_logged_out_one_by_one_or_all_at_once() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let web_device = web.account("alice").await;
    let laptop = web.login("alice", "alice-laptop").await;
    let mut web_ws = web.synced_socket(&web_device).await;
    let mut laptop_ws = web.synced_socket(&laptop).await;

    let devices = web.get("/api/devices", &web_device.token).await;
    let list = devices["devices"].as_array().unwrap();
    let find = |list: &[Value], id: &str| -> Value {
        list.iter()
            .find(|d| d["device_id"] == id)
            .unwrap_or_else(|| panic!("{id} is listed: {list:?}"))
            .clone()
    };
    let me = find(list, "alice-web");
    let other = find(list, "alice-laptop");
    assert_eq!(
        (me["current"].as_bool(), other["current"].as_bool()),
        (Some(true), Some(false))
    );
    for device in [&me, &other] {
        assert_eq!(device["online"], true, "{device}");
        assert_eq!(device["transport"], "websocket", "{device}");
        assert_eq!(device["last_seen"], 0, "{device}");
        assert!(device["first_seen"].as_u64().unwrap() > 0, "{device}");
        assert!(device["client_version"].is_string(), "{device}");
    }

    // Logging the laptop out closes its socket with 4028; the web device carries on.
    let out = web
        .post("/api/devices/alice-laptop/logout", &web_device.token, None)
        .await;
    assert_eq!(out, json!({"sessions": 1}));
    assert_eq!(close_code(&mut laptop_ws).await, Some(4028));
    heartbeat(&mut web_ws).await;
    web.get("/api/contacts", &web_device.token).await;
    // The laptop's token no longer works, for REST or a new socket.
    let (status, reply) = web
        .call(Method::GET, "/api/contacts", Some(&laptop.token), None)
        .await;
    assert_eq!(status, 401, "{reply}");
    let url = format!(
        "ws://{}/ws?token={}&device_id=alice-laptop",
        web.addr, laptop.token
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    let devices = web.get("/api/devices", &web_device.token).await;
    let other = find(devices["devices"].as_array().unwrap(), "alice-laptop");
    assert_eq!(other["online"], false, "{other}");
    assert!(other["last_seen"].as_u64().unwrap() > 0, "{other}");
    // Unknown devices are 404, malformed ones 400.
    web.refused(
        Method::POST,
        "/api/devices/nope/logout",
        &web_device.token,
        None,
        404,
        9,
    )
    .await;
    web.refused(
        Method::POST,
        "/api/devices/bad%20id/logout",
        &web_device.token,
        None,
        400,
        4,
    )
    .await;

    // Everywhere but here: the laptop (logged in again) is closed, this device stays.
    let laptop = web.login("alice", "alice-laptop").await;
    let mut laptop_ws = web.synced_socket(&laptop).await;
    let out = web
        .post(
            "/api/devices/logout-all",
            &web_device.token,
            Some(json!({"keep_current": true})),
        )
        .await;
    assert_eq!(out["sessions"], 1, "{out}");
    assert_eq!(close_code(&mut laptop_ws).await, Some(4028));
    heartbeat(&mut web_ws).await;
    web.get("/api/devices", &web_device.token).await;

    // Everywhere (no body): this device too.
    let laptop = web.login("alice", "alice-laptop").await;
    let mut laptop_ws = web.synced_socket(&laptop).await;
    let out = web
        .post("/api/devices/logout-all", &web_device.token, None)
        .await;
    assert_eq!(out["sessions"], 2, "{out}");
    assert_eq!(close_code(&mut laptop_ws).await, Some(4028));
    assert_eq!(close_code(&mut web_ws).await, Some(4028));
    for token in [&web_device.token, &laptop.token] {
        let (status, reply) = web
            .call(Method::GET, "/api/devices", Some(token), None)
            .await;
        assert_eq!(status, 401, "{reply}");
    }
    // A password login works again.
    let again = web.login("alice", "alice-web").await;
    web.get("/api/devices", &again.token).await;
}

/// Every admin route, with a harmless body.
fn admin_routes(user_id: &str, group_id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/api/admin/users".into(), None),
        (Method::GET, format!("/api/admin/users/{user_id}"), None),
        (
            Method::POST,
            format!("/api/admin/users/{user_id}/disable"),
            None,
        ),
        (
            Method::POST,
            format!("/api/admin/users/{user_id}/enable"),
            None,
        ),
        (
            Method::POST,
            format!("/api/admin/users/{user_id}/password"),
            Some(json!({"new_password": "another password"})),
        ),
        (
            Method::POST,
            format!("/api/admin/users/{user_id}/role"),
            Some(json!({"role": "admin"})),
        ),
        (Method::GET, "/api/admin/groups".into(), None),
        (
            Method::POST,
            format!("/api/admin/groups/{group_id}/dissolve"),
            None,
        ),
        (Method::GET, "/api/admin/stats".into(), None),
    ]
}

#[tokio::test]
async fn admin_endpoints_are_refused_to_normal_users() {
    let broker = start(|_| {}).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let me = web.get("/api/me", &alice.token).await;
    assert_eq!(me["role"], "user", "{me}");
    let group = web
        .post(
            "/api/groups",
            &bob.token,
            Some(json!({"name": "bobs", "member_ids": []})),
        )
        .await;
    let group_id = group["group_id"].as_str().unwrap();
    for (method, path, body) in admin_routes(&bob.user_id, group_id) {
        let reply = web
            .refused(method, &path, &alice.token, body, 403, 10)
            .await;
        assert_eq!(reply["error"], "FORBIDDEN");
    }
    // Nothing happened to Bob or his group.
    assert_eq!(
        web.get(&format!("/api/groups/{group_id}"), &bob.token)
            .await["dissolved"],
        false
    );
    web.login("bob", "bob-web").await;
}

#[tokio::test]
async fn admins_manage_users_groups_and_read_stats() {
    let broker = start(|c| c.admin_usernames = vec!["root".into()]).await;
    let web = Web::new(&broker);
    let root = web.account("root").await;
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;

    // Roles: in login data and /api/me.
    let (status, login) = web.login_with("root", PASSWORD, "root-web").await;
    assert_eq!(status, 200);
    assert_eq!(login["data"]["role"], "admin", "{login}");
    assert_eq!(web.get("/api/me", &root.token).await["role"], "admin");
    let (_, login) = web.login_with("alice", PASSWORD, "alice-web").await;
    assert_eq!(login["data"]["role"], "user", "{login}");
    let me = web.get("/api/me", &alice.token).await;
    assert_eq!(
        (
            me["user_id"].as_str(),
            me["username"].as_str(),
            me["role"].as_str()
        ),
        (Some(alice.user_id.as_str()), Some("alice"), Some("user"))
    );

    // Search and paging.
    let found = web.get("/api/admin/users?query=ALI", &root.token).await;
    let users = found["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{found}");
    let user = &users[0];
    assert_eq!(user["user_id"], alice.user_id.as_str());
    assert_eq!(
        (
            user["username"].as_str(),
            user["nickname"].as_str(),
            user["role"].as_str()
        ),
        (Some("alice"), Some("ALICE"), Some("user"))
    );
    assert_eq!(user["disabled"], false);
    assert!(user["created_at"].as_u64().unwrap() > 0);
    for field in ["online", "sessions", "last_seen"] {
        assert!(!user[field].is_null(), "{field}: {user}");
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = web
            .get(
                &format!("/api/admin/users?limit=1&after={after}"),
                &root.token,
            )
            .await;
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 1, "{page}");
        seen.extend(
            users
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        after = page["next_after"].as_str().unwrap().to_owned();
        if after.is_empty() {
            break;
        }
        assert!(seen.len() <= 3, "paging ends: {seen:?}");
    }
    seen.sort();
    assert_eq!(seen, vec!["alice", "bob", "root"]);
    web.refused(
        Method::GET,
        "/api/admin/users?limit=lots",
        &root.token,
        None,
        400,
        4,
    )
    .await;

    // One user, with devices and groups.
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    let group = web
        .post(
            "/api/groups",
            &alice.token,
            Some(json!({"name": "Book club", "member_ids": [bob.user_id]})),
        )
        .await;
    let group_id = group["group_id"].as_str().unwrap().to_owned();
    let detail = web
        .get(&format!("/api/admin/users/{}", alice.user_id), &root.token)
        .await;
    assert_eq!(detail["user"]["username"], "alice", "{detail}");
    assert_eq!(detail["user"]["online"], true, "{detail}");
    assert_eq!(detail["groups"], 1, "{detail}");
    let devices = detail["devices"].as_array().unwrap();
    assert!(
        devices.iter().any(|d| d["device_id"] == "alice-web"),
        "{detail}"
    );
    web.refused(
        Method::GET,
        "/api/admin/users/user_nobody",
        &root.token,
        None,
        404,
        9,
    )
    .await;

    // Groups: search and dissolve (members get the SYSTEM message).
    let groups = web.get("/api/admin/groups?query=book", &root.token).await;
    let list = groups["groups"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{groups}");
    assert_eq!(list[0]["group_id"], group_id.as_str());
    assert_eq!(list[0]["name"], "Book club");
    assert!(groups["next_after"].is_string(), "{groups}");
    let none = web.get("/api/admin/groups?query=chess", &root.token).await;
    assert_eq!(none["groups"], json!([]));
    assert_eq!(
        web.post(
            &format!("/api/admin/groups/{group_id}/dissolve"),
            &root.token,
            None
        )
        .await,
        json!({})
    );
    let dissolved = next_where(&mut bob_ws, "the dissolve message", |v| {
        v["type"] == 3 && v["content"]["event"] == "group_dissolved"
    })
    .await;
    assert_eq!(dissolved["group_id"], group_id.as_str());
    let info = web
        .get(&format!("/api/groups/{group_id}"), &alice.token)
        .await;
    assert_eq!(info["dissolved"], true, "{info}");

    // Stats.
    let stats = web.get("/api/admin/stats", &root.token).await;
    for field in [
        "quic_sessions",
        "websocket_sessions",
        "users_online",
        "messages_per_second",
        "messages_since_start",
        "store_bytes",
        "uptime_ms",
        "active_calls",
        "slow_consumer_closes",
    ] {
        assert!(stats[field].is_number(), "{field}: {stats}");
    }
    assert!(
        stats["websocket_sessions"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(stats["users_online"].as_u64().unwrap() >= 2, "{stats}");
    assert!(
        stats["messages_since_start"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    // Disable: Alice's socket closes with 4018, her token and password stop working.
    assert_eq!(
        web.post(
            &format!("/api/admin/users/{}/disable", alice.user_id),
            &root.token,
            None
        )
        .await,
        json!({})
    );
    assert_eq!(close_code(&mut alice_ws).await, Some(4018));
    let (status, reply) = web
        .call(Method::GET, "/api/contacts", Some(&alice.token), None)
        .await;
    assert!(matches!(status, 401 | 403), "{status}: {reply}");
    let (status, reply) = web.login_with("alice", PASSWORD, "alice-web").await;
    assert_eq!((status, reply["code"].as_i64()), (403, Some(18)), "{reply}");
    let found = web.get("/api/admin/users?query=alice", &root.token).await;
    assert_eq!(found["users"][0]["disabled"], true, "{found}");
    // Enabled again, she logs in.
    web.post(
        &format!("/api/admin/users/{}/enable", alice.user_id),
        &root.token,
        None,
    )
    .await;
    let alice = web.login("alice", "alice-web").await;
    let mut alice_ws = web.synced_socket(&alice).await;

    // Password reset: her sessions close (4028), the old password is refused.
    web.refused(
        Method::POST,
        &format!("/api/admin/users/{}/password", alice.user_id),
        &root.token,
        Some(json!({})),
        400,
        4,
    )
    .await;
    assert_eq!(
        web.post(
            &format!("/api/admin/users/{}/password", alice.user_id),
            &root.token,
            Some(json!({"new_password": "a brand new password"})),
        )
        .await,
        json!({})
    );
    assert_eq!(close_code(&mut alice_ws).await, Some(4028));
    let (status, reply) = web
        .call(Method::GET, "/api/contacts", Some(&alice.token), None)
        .await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = web.login_with("alice", PASSWORD, "alice-web").await;
    assert_eq!((status, reply["code"].as_i64()), (401, Some(6)), "{reply}");
    let (status, reply) = web
        .login_with("alice", "a brand new password", "alice-web")
        .await;
    assert_eq!(status, 200, "{reply}");
    let alice_token = reply["data"]["token"].as_str().unwrap().to_owned();

    // Roles: bad ones are refused; a new admin may use the admin API.
    web.refused(
        Method::POST,
        &format!("/api/admin/users/{}/role", alice.user_id),
        &root.token,
        Some(json!({"role": "superuser"})),
        400,
        4,
    )
    .await;
    web.refused(Method::GET, "/api/admin/stats", &alice_token, None, 403, 10)
        .await;
    web.post(
        &format!("/api/admin/users/{}/role", alice.user_id),
        &root.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(web.get("/api/me", &alice_token).await["role"], "admin");
    web.get("/api/admin/stats", &alice_token).await;
}

#[tokio::test]
async fn rest_requests_over_the_limit_get_429_with_retry_after() {
    let broker = start(|c| {
        c.rate_requests_per_sec = 1;
        c.rate_requests_burst = 2;
    })
    .await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    for _ in 0..2 {
        web.get("/api/contacts", &alice.token).await;
    }
    let (status, headers, reply) = web
        .raw(Method::GET, "/api/contacts", Some(&alice.token), None)
        .await;
    assert_eq!((status, reply["code"].as_i64()), (429, Some(11)), "{reply}");
    assert_eq!(reply["error"], "RATE_LIMITED");
    let retry_after_ms = reply["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_after_ms > 0, "{reply}");
    let seconds: u64 = headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1, "{seconds}");
    assert_eq!(seconds, retry_after_ms.div_ceil(1000).max(1));
    // Other users have their own budget.
    let bob = web.account("bob").await;
    web.get("/api/contacts", &bob.token).await;
    // After waiting as told, requests go through again.
    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
    web.get("/api/contacts", &alice.token).await;
}

#[tokio::test]
async fn websocket_sends_over_the_limit_get_an_error_with_retry_after() {
    let broker = start(|c| {
        c.rate_messages_per_sec = 1;
        c.rate_messages_burst = 2;
    })
    .await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    say_ok(&mut alice_ws, &bob.user_id, "m1").await;
    say_ok(&mut alice_ws, &bob.user_id, "m2").await;
    let error = say_refused(&mut alice_ws, &bob.user_id, "m3", 11).await;
    assert_eq!(error["error"], "RATE_LIMITED");
    let retry_after_ms = error["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_after_ms > 0, "{error}");
    // The socket stays open, and after the wait the send goes through.
    heartbeat(&mut alice_ws).await;
    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
    say_ok(&mut alice_ws, &bob.user_id, "m3").await;
}
