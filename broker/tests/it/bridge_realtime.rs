//! Issue 7's realtime extras through the browser bridge, against a real broker over
//! real HTTP and real WebSockets (and QUIC through the SDK where it meets a browser):
//! typing (33), presence (34), receipts (31, 32), recall (35) and edit (36), call
//! signalling (60, 61), and the REST endpoints for presence, group online, receipt
//! counts, readers, recall and edit.

use crate::common;

use std::time::Duration;

use common::web::{
    Account, Socket, Web, assert_none_of, collect_in_any_order, next_of, next_where, send_json,
};
use common::{TestBroker, WAIT};
use serde_json::{Value, json};

/// The next call event (60) with this action.
async fn next_call(socket: &mut Socket, action: &str) -> Value {
    next_where(socket, &format!("call event {action:?}"), |value| {
        value["type"] == 60 && value["action"] == action
    })
    .await
}

/// Sends a text message over a socket and returns its seq.
async fn say(socket: &mut Socket, to: &str, message_id: &str, text: &str) -> u64 {
    let frame = if to.starts_with("group_") {
        json!({"type": 2, "group_id": to, "message_id": message_id, "content": {"text": text}})
    } else {
        json!({"type": 1, "to": to, "message_id": message_id, "content": {"text": text}})
    };
    send_json(socket, frame).await;
    let ack = next_where(socket, &format!("the ACK of {message_id}"), |value| {
        value["type"] == 30 && value["message_id"] == message_id
    })
    .await;
    ack["seq"].as_u64().unwrap()
}

/// The answer (ACK 30 or error 50) to the frame with this message_id.
async fn answer_to(socket: &mut Socket, message_id: &str) -> Value {
    next_where(socket, &format!("the answer to {message_id}"), |value| {
        (value["type"] == 30 || value["type"] == 50 || value["type"] == 61)
            && value["message_id"] == message_id
    })
    .await
}

/// Asserts an error frame with `code` echoing `message_id`.
async fn expect_error(socket: &mut Socket, message_id: &str, code: i64) -> Value {
    let answer = answer_to(socket, message_id).await;
    assert_eq!(
        (answer["type"].as_i64(), answer["code"].as_i64()),
        (Some(50), Some(code)),
        "{message_id}: {answer}"
    );
    answer
}

fn single_conv(a: &Account, b: &Account) -> String {
    quip_protocol::ids::single_conv_id(&a.user_id, &b.user_id)
}

#[tokio::test]
async fn typing_travels_between_browsers_and_to_and_from_quic() {
    let broker = TestBroker::start_with(|c| c.typing_expires_ms = 3_000).await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    let conv = single_conv(&alice, &bob);
    say(&mut alice_ws, &bob.user_id, "hello", "hello").await;

    // Browser → browser, with each kind; no kind means typing.
    for (sent, shown) in [
        (json!("recording_voice"), "recording_voice"),
        (Value::Null, "typing"),
        (json!("stopped"), "stopped"),
    ] {
        let mut frame = json!({"type": 33, "conversation_id": conv});
        if !sent.is_null() {
            frame["kind"] = sent;
        }
        send_json(&mut alice_ws, frame).await;
        let notice = next_of(&mut bob_ws, 33).await;
        assert_eq!(
            (
                notice["conversation_id"].as_str(),
                notice["from"].as_str(),
                notice["kind"].as_str()
            ),
            (
                Some(conv.as_str()),
                Some(alice.user_id.as_str()),
                Some(shown)
            ),
            "{notice}"
        );
        assert_eq!(notice["expires_in_ms"], 3_000, "{notice}");
    }
    // SimpleIM's form (`to` instead of conversation_id) works too.
    send_json(&mut bob_ws, json!({"type": 33, "to": alice.user_id})).await;
    let notice = next_of(&mut alice_ws, 33).await;
    assert_eq!(
        (notice["from"].as_str(), notice["kind"].as_str()),
        (Some(bob.user_id.as_str()), Some("typing"))
    );

    // A bad kind is refused; the socket stays usable and nothing is relayed.
    send_json(
        &mut alice_ws,
        json!({"type": 33, "conversation_id": conv, "kind": "dancing", "message_id": "t1"}),
    )
    .await;
    let error = expect_error(&mut alice_ws, "t1", 4).await;
    assert!(error["message"].as_str().unwrap().contains("dancing"));
    assert_none_of(&mut bob_ws, 33, Duration::from_millis(300)).await;
    send_json(&mut alice_ws, json!({"type": 33, "kind": "typing"})).await;
    assert_eq!(next_of(&mut alice_ws, 50).await["code"], 4);

    // QUIC ↔ browser.
    let native = broker.user("native", "phone").await;
    let native_id = native.user_id().unwrap();
    let mut alice_ws2 = web
        .synced_socket(&web.login("alice", "alice-tab2").await)
        .await;
    let native_conv = quip_protocol::ids::single_conv_id(&native_id, &alice.user_id);
    native
        .send_text(&alice.user_id, "hi from QUIC")
        .await
        .unwrap();
    native
        .typing(&native_conv, quip_sdk::pb::TypingKind::RecordingVoice)
        .await
        .unwrap();
    for ws in [&mut alice_ws, &mut alice_ws2] {
        let notice = next_where(ws, "typing from QUIC", |v| {
            v["type"] == 33 && v["from"] == native_id.as_str()
        })
        .await;
        assert_eq!(
            (notice["conversation_id"].as_str(), notice["kind"].as_str()),
            (Some(native_conv.as_str()), Some("recording_voice"))
        );
    }
    send_json(
        &mut alice_ws,
        json!({"type": 33, "conversation_id": native_conv, "kind": "stopped"}),
    )
    .await;
    let notice = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(quip_sdk::Event::Typing(notice)) = native.next_event().await {
                return notice;
            }
        }
    })
    .await
    .expect("the browser's typing reaches the QUIC user");
    assert_eq!(
        (notice.conv_id.as_str(), notice.from.as_str(), notice.kind),
        (
            native_conv.as_str(),
            alice.user_id.as_str(),
            quip_sdk::pb::TypingKind::Stopped as i32
        )
    );
}

#[tokio::test]
async fn presence_is_pushed_when_a_partner_connects_and_disconnects() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let carol = web.account("carol").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    // A 1:1 conversation makes them partners.
    say(&mut bob_ws, &alice.user_id, "b1", "hi alice").await;

    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let before = now_ms();
    drop(bob_ws);
    let offline = next_where(&mut alice_ws, "bob offline", |v| {
        v["type"] == 34 && v["user_id"] == bob.user_id.as_str() && v["online"] == false
    })
    .await;
    assert_eq!(offline["devices"], 0, "{offline}");
    let last_seen = offline["last_seen"].as_u64().unwrap();
    assert!(
        last_seen >= before.saturating_sub(1_000) && last_seen <= now_ms() + 1_000,
        "last_seen is when bob left: {offline}"
    );
    let offline_version = offline["version"].as_u64().unwrap();
    assert!(offline_version > 0, "{offline}");

    let (status, body) = web
        .call(
            reqwest::Method::GET,
            &format!("/api/presence?user_ids={},{}", bob.user_id, carol.user_id),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let presences = body["data"]["presences"].as_array().unwrap();
    let of = |user: &str| {
        presences
            .iter()
            .find(|p| p["user_id"] == user)
            .unwrap_or_else(|| panic!("{user} in {body}"))
    };
    assert_eq!(
        (
            of(&bob.user_id)["online"].as_bool(),
            of(&bob.user_id)["last_seen"].as_u64()
        ),
        (Some(false), Some(last_seen))
    );
    assert_eq!(of(&carol.user_id)["online"], false);
    assert_eq!(of(&carol.user_id)["last_seen"], 0, "carol was never seen");
    for field in ["user_id", "online", "last_seen", "devices", "version"] {
        assert!(!of(&bob.user_id)[field].is_null(), "{field} in {body}");
    }
    assert!(of(&bob.user_id)["type"].is_null(), "REST data has no type");

    // Bob comes back on two tabs: online once, with the device count.
    let mut bob_ws = web.socket(&bob).await;
    let online = next_where(&mut alice_ws, "bob online", |v| {
        v["type"] == 34 && v["user_id"] == bob.user_id.as_str() && v["online"] == true
    })
    .await;
    assert_eq!(online["devices"], 1, "{online}");
    assert!(online["version"].as_u64().unwrap() > offline_version);
    let bob_tab2 = web.login("bob", "bob-tab2").await;
    let bob_ws2 = web.socket(&bob_tab2).await;
    next_of(&mut bob_ws, 40).await;
    let data = web
        .get(
            &format!("/api/presence?user_ids={}", bob.user_id),
            &alice.token,
        )
        .await;
    assert_eq!(
        (
            data["presences"][0]["online"].as_bool(),
            data["presences"][0]["devices"].as_u64()
        ),
        (Some(true), Some(2)),
        "{data}"
    );
    // Closing one of two tabs does not make bob offline.
    drop(bob_ws2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = web
        .get(
            &format!("/api/presence?user_ids={}", bob.user_id),
            &alice.token,
        )
        .await;
    assert_eq!(
        (
            data["presences"][0]["online"].as_bool(),
            data["presences"][0]["devices"].as_u64()
        ),
        (Some(true), Some(1)),
        "{data}"
    );

    // Bob sees Alice's presence too (she is his partner).
    drop(alice_ws);
    let gone = next_where(&mut bob_ws, "alice offline", |v| {
        v["type"] == 34 && v["user_id"] == alice.user_id.as_str() && v["online"] == false
    })
    .await;
    assert_eq!(gone["devices"], 0);

    // Carol is nobody's partner: no pushes about her, and none to her.
    let mut carol_ws = web.synced_socket(&carol).await;
    assert_none_of(&mut bob_ws, 34, Duration::from_millis(300)).await;
    let _alice_again = web.socket(&alice).await;
    assert_none_of(&mut carol_ws, 34, Duration::from_millis(300)).await;

    // Bad queries are refused clearly.
    for (query, needle) in [
        ("", "user_ids"),
        ("?user_ids=", "user_ids"),
        ("?user_ids=bob", "not a user id"),
    ] {
        let body = web
            .refused(
                reqwest::Method::GET,
                &format!("/api/presence{query}"),
                &alice.token,
                None,
                400,
                4,
            )
            .await;
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let too_many: Vec<String> = (0..201).map(|i| format!("user_{i:04}")).collect();
    web.refused(
        reqwest::Method::GET,
        &format!("/api/presence?user_ids={}", too_many.join(",")),
        &alice.token,
        None,
        400,
        4,
    )
    .await;
}

#[tokio::test]
async fn read_and_delivered_receipts_reach_the_partner_and_own_devices() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let bob_tab2 = web.login("bob", "bob-tab2").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    let mut bob_ws2 = web.synced_socket(&bob_tab2).await;
    let conv = single_conv(&alice, &bob);
    for i in 1..=3 {
        say(
            &mut alice_ws,
            &bob.user_id,
            &format!("m{i}"),
            &format!("m{i}"),
        )
        .await;
    }
    // Sending pushes no receipt to the sender.
    assert_none_of(&mut alice_ws, 31, Duration::from_millis(200)).await;

    send_json(
        &mut bob_ws,
        json!({"type": 32, "conversation_id": conv, "seq": 3}),
    )
    .await;
    let delivered = next_of(&mut alice_ws, 32).await;
    assert_eq!(
        (
            delivered["conversation_id"].as_str(),
            delivered["user_id"].as_str(),
            delivered["seq"].as_u64()
        ),
        (Some(conv.as_str()), Some(bob.user_id.as_str()), Some(3))
    );

    send_json(
        &mut bob_ws,
        json!({"type": 31, "conversation_id": conv, "seq": 2}),
    )
    .await;
    let read = next_of(&mut alice_ws, 31).await;
    assert_eq!(
        (
            read["conversation_id"].as_str(),
            read["user_id"].as_str(),
            read["seq"].as_u64()
        ),
        (Some(conv.as_str()), Some(bob.user_id.as_str()), Some(2))
    );
    // Bob's other tab learns it too (its unread count follows).
    let own = next_of(&mut bob_ws2, 31).await;
    assert_eq!(
        (own["user_id"].as_str(), own["seq"].as_u64()),
        (Some(bob.user_id.as_str()), Some(2))
    );

    // Reading over REST pushes the same way; reading less than before pushes nothing.
    web.post(
        &format!("/api/conversations/{conv}/read"),
        &bob.token,
        Some(json!({"seq": 3})),
    )
    .await;
    assert_eq!(next_of(&mut alice_ws, 31).await["seq"], 3);
    send_json(
        &mut bob_ws,
        json!({"type": 31, "conversation_id": conv, "seq": 1}),
    )
    .await;
    assert_none_of(&mut alice_ws, 31, Duration::from_millis(300)).await;

    // The counts agree: seq 3 read by bob, 1 of 1.
    let counts = web
        .get(
            &format!("/api/conversations/{conv}/receipts?seqs=1,3"),
            &alice.token,
        )
        .await;
    assert_eq!(counts["conversation_id"], conv.as_str());
    let count = &counts["counts"][1];
    assert_eq!(
        (
            count["seq"].as_u64(),
            count["read"].as_u64(),
            count["delivered"].as_u64(),
            count["recipients"].as_u64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "{counts}"
    );
}

#[tokio::test]
async fn group_receipt_counts_readers_and_online_members_over_rest() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let carol = web.account("carol").await;
    let dave = web.account("dave").await;
    let eve = web.account("eve").await;
    let group = web
        .post(
            "/api/groups",
            &alice.token,
            Some(json!({"name": "team", "member_ids": [bob.user_id, carol.user_id, dave.user_id]})),
        )
        .await;
    let group_id = group["group_id"].as_str().unwrap().to_owned();
    let conv = group["conversation_id"].as_str().unwrap().to_owned();
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut carol_ws = web.synced_socket(&carol).await;
    let seq = say(&mut alice_ws, &group_id, "g1", "please read").await;

    // Bob reads over REST, carol over the socket: alice (the sender) gets both.
    web.post(
        &format!("/api/conversations/{conv}/read"),
        &bob.token,
        Some(json!({"seq": seq})),
    )
    .await;
    send_json(
        &mut carol_ws,
        json!({"type": 31, "conversation_id": conv, "seq": seq}),
    )
    .await;
    let mut readers_pushed = Vec::new();
    while readers_pushed.len() < 2 {
        let receipt = next_of(&mut alice_ws, 31).await;
        assert_eq!(
            (receipt["conversation_id"].as_str(), receipt["seq"].as_u64()),
            (Some(conv.as_str()), Some(seq))
        );
        readers_pushed.push(receipt["user_id"].as_str().unwrap().to_owned());
    }
    readers_pushed.sort();
    let mut expected = vec![bob.user_id.clone(), carol.user_id.clone()];
    expected.sort();
    assert_eq!(readers_pushed, expected);
    // Group members who sent nothing get no receipts.
    assert_none_of(&mut carol_ws, 31, Duration::from_millis(200)).await;

    let counts = web
        .get(
            &format!("/api/conversations/{conv}/receipts?seqs={seq}"),
            &alice.token,
        )
        .await;
    let count = &counts["counts"][0];
    assert_eq!(
        (
            count["seq"].as_u64(),
            count["read"].as_u64(),
            count["recipients"].as_u64()
        ),
        (Some(seq), Some(2), Some(3)),
        "read by 2 of 3: {counts}"
    );
    let delivered = count["delivered"].as_u64().unwrap();
    assert!(delivered <= 3, "{counts}");

    // Readers, paged by user id.
    let page = web
        .get(
            &format!("/api/conversations/{conv}/readers?seq={seq}"),
            &dave.token,
        )
        .await;
    assert_eq!(
        (page["conversation_id"].as_str(), page["seq"].as_u64()),
        (Some(conv.as_str()), Some(seq))
    );
    assert_eq!(page["user_ids"], json!(expected));
    assert_eq!(page["next_after"], "");
    let first = web
        .get(
            &format!("/api/conversations/{conv}/readers?seq={seq}&limit=1"),
            &dave.token,
        )
        .await;
    assert_eq!(first["user_ids"], json!([expected[0]]));
    let after = first["next_after"].as_str().unwrap().to_owned();
    assert!(!after.is_empty(), "{first}");
    let second = web
        .get(
            &format!("/api/conversations/{conv}/readers?seq={seq}&limit=1&after={after}"),
            &dave.token,
        )
        .await;
    assert_eq!(second["user_ids"], json!([expected[1]]));

    // Who is online in the group: alice and carol have sockets open.
    let online = web
        .get(&format!("/api/groups/{group_id}/online"), &bob.token)
        .await;
    let mut online_expected = vec![alice.user_id.clone(), carol.user_id.clone()];
    online_expected.sort();
    assert_eq!(
        (
            online["group_id"].as_str(),
            online["member_count"].as_u64(),
            online["online_count"].as_u64()
        ),
        (Some(group_id.as_str()), Some(4), Some(2)),
        "{online}"
    );
    assert_eq!(online["online_user_ids"], json!(online_expected));
    let limited = web
        .get(
            &format!("/api/groups/{group_id}/online?limit=1"),
            &bob.token,
        )
        .await;
    assert_eq!(
        (
            limited["online_count"].as_u64(),
            limited["online_user_ids"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1)),
        "{limited}"
    );

    // Bad queries: clear INVALID_ARGUMENT errors naming the parameter.
    let get = reqwest::Method::GET;
    for (path, needle) in [
        (format!("/api/conversations/{conv}/receipts"), "seqs"),
        (
            format!("/api/conversations/{conv}/receipts?seqs=3,x"),
            "\"x\"",
        ),
        (
            format!("/api/conversations/{conv}/receipts?seqs=0"),
            "positive",
        ),
        (format!("/api/conversations/{conv}/readers"), "seq"),
        (format!("/api/conversations/{conv}/readers?seq=abc"), "abc"),
        (
            format!("/api/conversations/{conv}/readers?seq=1&limit=-3"),
            "limit",
        ),
        (
            "/api/conversations/nonsense/receipts?seqs=1".to_owned(),
            "conversation",
        ),
        (format!("/api/groups/{group_id}/online?limit=many"), "limit"),
        ("/api/groups/nope/online".to_owned(), "group"),
    ] {
        let body = web
            .refused(get.clone(), &path, &alice.token, None, 400, 4)
            .await;
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }
    let seqs: Vec<String> = (1..=201).map(|s| s.to_string()).collect();
    web.refused(
        get.clone(),
        &format!("/api/conversations/{conv}/receipts?seqs={}", seqs.join(",")),
        &alice.token,
        None,
        400,
        4,
    )
    .await;
    let seqs: Vec<String> = (1..=1001).map(|s| s.to_string()).collect();
    let body = web
        .refused(
            get.clone(),
            &format!("/api/conversations/{conv}/receipts?seqs={}", seqs.join(",")),
            &alice.token,
            None,
            400,
            4,
        )
        .await;
    assert!(body["message"].as_str().unwrap().contains("at most"));
    // Outsiders see nothing of the group.
    for path in [
        format!("/api/conversations/{conv}/receipts?seqs={seq}"),
        format!("/api/conversations/{conv}/readers?seq={seq}"),
        format!("/api/groups/{group_id}/online"),
    ] {
        let (status, body) = web.call(get.clone(), &path, Some(&eve.token), None).await;
        assert!(
            status == 403 || status == 404,
            "{path} refused to a non-member: {status} {body}"
        );
    }
}

#[tokio::test]
async fn recall_and_edit_over_websocket_and_rest() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    let conv = single_conv(&alice, &bob);
    let first = say(&mut alice_ws, &bob.user_id, "a1", "hello").await;
    let second = say(&mut alice_ws, &bob.user_id, "a2", "tpyo").await;
    assert_eq!(next_of(&mut bob_ws, 1).await["seq"], first);
    let target = next_of(&mut bob_ws, 1).await;
    assert_eq!(target["seq"], second);

    // Edit: ACKed like a send, echoing message_id; bob gets the EDIT event (36).
    send_json(
        &mut alice_ws,
        json!({"type": 36, "conversation_id": conv, "seq": second, "message_id": "e1",
               "content": {"text": "typo", "at_user_ids": [bob.user_id]}}),
    )
    .await;
    let ack = answer_to(&mut alice_ws, "e1").await;
    assert_eq!(
        (ack["type"].as_i64(), ack["code"].as_i64()),
        (Some(30), Some(0)),
        "{ack}"
    );
    let edit_seq = ack["seq"].as_u64().unwrap();
    assert_eq!(edit_seq, second + 1);
    let event = next_of(&mut bob_ws, 36).await;
    assert_eq!(
        (
            event["seq"].as_u64(),
            event["from"].as_str(),
            event["conversation_id"].as_str()
        ),
        (
            Some(edit_seq),
            Some(alice.user_id.as_str()),
            Some(conv.as_str())
        )
    );
    assert_eq!(event["message_id"], ack["server_message_id"]);
    assert_eq!(
        (
            event["content"]["target_seq"].as_u64(),
            event["content"]["target_message_id"].as_str(),
            event["content"]["text"].as_str()
        ),
        (Some(second), target["message_id"].as_str(), Some("typo"))
    );
    assert_eq!(event["content"]["at_user_ids"], json!([bob.user_id]));

    // Recall: the same; bob gets the RECALL event (35).
    send_json(
        &mut alice_ws,
        json!({"type": 35, "conversation_id": conv, "seq": first, "message_id": "r1"}),
    )
    .await;
    let ack = answer_to(&mut alice_ws, "r1").await;
    assert_eq!(
        (ack["type"].as_i64(), ack["seq"].as_u64()),
        (Some(30), Some(edit_seq + 1)),
        "{ack}"
    );
    let recall_seq = edit_seq + 1;
    let event = next_of(&mut bob_ws, 35).await;
    assert_eq!(
        (
            event["seq"].as_u64(),
            event["content"]["target_seq"].as_u64()
        ),
        (Some(recall_seq), Some(first))
    );
    // History shows the targets in their final state.
    let history = web
        .get(
            &format!(
                "/api/messages/private/{}?limit=50&last_seq=0",
                alice.user_id
            ),
            &bob.token,
        )
        .await;
    let messages = history["messages"].as_array().unwrap();
    let by_seq = |seq: u64| {
        messages
            .iter()
            .find(|m| m["seq"] == seq)
            .unwrap_or_else(|| panic!("seq {seq} in {history}"))
    };
    let recalled = by_seq(first);
    assert_eq!(
        (
            recalled["recalled"].as_bool(),
            recalled["recalled_by"].as_str()
        ),
        (Some(true), Some(alice.user_id.as_str())),
        "{recalled}"
    );
    assert!(
        recalled["content"]["text"].is_null(),
        "a recalled message has no content: {recalled}"
    );
    let edited = by_seq(second);
    assert_eq!(edited["content"]["text"], "typo", "{edited}");
    assert!(edited["edited_at"].as_u64().unwrap() > 0, "{edited}");
    assert_eq!(edited["recalled"], false);

    // What is refused, with the frame's message_id echoed and the socket kept.
    send_json(
        &mut alice_ws,
        json!({"type": 35, "conversation_id": conv, "seq": first, "message_id": "r2"}),
    )
    .await;
    expect_error(&mut alice_ws, "r2", 25).await; // already recalled: CONFLICT
    send_json(
        &mut alice_ws,
        json!({"type": 36, "conversation_id": conv, "seq": first, "message_id": "e2", "content": {"text": "x"}}),
    )
    .await;
    expect_error(&mut alice_ws, "e2", 25).await; // editing a recalled message
    send_json(
        &mut bob_ws,
        json!({"type": 35, "conversation_id": conv, "seq": second, "message_id": "r3"}),
    )
    .await;
    expect_error(&mut bob_ws, "r3", 10).await; // not the sender: FORBIDDEN
    send_json(
        &mut bob_ws,
        json!({"type": 36, "conversation_id": conv, "seq": second, "message_id": "e3", "content": {"text": "mine now"}}),
    )
    .await;
    expect_error(&mut bob_ws, "e3", 10).await;
    send_json(
        &mut alice_ws,
        json!({"type": 35, "conversation_id": conv, "seq": edit_seq, "message_id": "r4"}),
    )
    .await;
    expect_error(&mut alice_ws, "r4", 4).await; // an EDIT event cannot be recalled
    send_json(
        &mut alice_ws,
        json!({"type": 35, "conversation_id": conv, "seq": 999, "message_id": "r5"}),
    )
    .await;
    expect_error(&mut alice_ws, "r5", 9).await; // no such message: NOT_FOUND
    for (frame, message_id) in [
        (
            json!({"type": 35, "conversation_id": conv, "message_id": "b1"}),
            "b1",
        ),
        (json!({"type": 35, "seq": 1, "message_id": "b2"}), "b2"),
        (
            json!({"type": 36, "conversation_id": conv, "seq": second, "message_id": "b3"}),
            "b3",
        ),
        (
            json!({"type": 36, "conversation_id": conv, "seq": "2", "message_id": "b4", "content": {"text": "x"}}),
            "b4",
        ),
    ] {
        send_json(&mut alice_ws, frame).await;
        expect_error(&mut alice_ws, message_id, 4).await;
    }
    assert_eq!(
        say(&mut alice_ws, &bob.user_id, "a3", "still here").await,
        recall_seq + 1
    );

    // The REST forms: bob edits (with the `text` shorthand) and recalls his own message.
    let mut bob_seq = say(&mut bob_ws, &alice.user_id, "b-1", "from bob").await;
    let edited = web
        .post(
            &format!("/api/conversations/{conv}/messages/{bob_seq}/edit"),
            &bob.token,
            Some(json!({"text": "from bob, edited", "client_msg_id": "rest-e1"})),
        )
        .await;
    assert_eq!(edited["client_msg_id"], "rest-e1");
    assert_eq!(edited["conversation_id"], conv.as_str());
    assert!(
        edited["server_message_id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
    assert!(edited["timestamp"].as_u64().unwrap() > 0);
    let event = next_where(&mut alice_ws, "bob's edit", |v| v["type"] == 36).await;
    assert_eq!(event["seq"], edited["seq"], "{event}");
    assert_eq!(
        (
            event["content"]["target_seq"].as_u64(),
            event["content"]["text"].as_str()
        ),
        (Some(bob_seq), Some("from bob, edited"))
    );
    let via_content = web
        .post(
            &format!("/api/conversations/{conv}/messages/{bob_seq}/edit"),
            &bob.token,
            Some(json!({"content": {"text": "third version"}})),
        )
        .await;
    assert_eq!(
        via_content["seq"].as_u64(),
        edited["seq"].as_u64().map(|s| s + 1)
    );
    let recalled = web
        .post(
            &format!("/api/conversations/{conv}/messages/{bob_seq}/recall"),
            &bob.token,
            None,
        )
        .await;
    let event = next_where(&mut alice_ws, "bob's recall", |v| v["type"] == 35).await;
    assert_eq!(event["seq"], recalled["seq"]);
    assert_eq!(event["content"]["target_seq"], bob_seq);
    web.refused(
        reqwest::Method::POST,
        &format!("/api/conversations/{conv}/messages/{bob_seq}/recall"),
        &bob.token,
        Some(json!({"client_msg_id": "rest-r2"})),
        409,
        25,
    )
    .await;
    bob_seq = say(&mut bob_ws, &alice.user_id, "b-2", "another").await;
    web.refused(
        reqwest::Method::POST,
        &format!("/api/conversations/{conv}/messages/{bob_seq}/recall"),
        &alice.token,
        None,
        403,
        10,
    )
    .await;
    for (path, body) in [
        (format!("/api/conversations/{conv}/messages/x/recall"), None),
        (format!("/api/conversations/{conv}/messages/0/recall"), None),
        ("/api/conversations/bad/messages/1/recall".to_owned(), None),
        (
            format!("/api/conversations/{conv}/messages/{bob_seq}/edit"),
            Some(json!({"client_msg_id": "no-text"})),
        ),
        (
            format!("/api/conversations/{conv}/messages/{bob_seq}/edit"),
            Some(json!({"content": 5})),
        ),
    ] {
        web.refused(reqwest::Method::POST, &path, &bob.token, body, 400, 4)
            .await;
    }
    let (status, body) = web
        .call(
            reqwest::Method::POST,
            &format!("/api/conversations/{conv}/messages/999/recall"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_i64()), (404, Some(9)), "{body}");

    // A resend of the first recall (same message_id) is deduplicated: the original ACK
    // even though the message is recalled now.
    send_json(
        &mut alice_ws,
        json!({"type": 35, "conversation_id": conv, "seq": first, "message_id": "r1"}),
    )
    .await;
    let again = answer_to(&mut alice_ws, "r1").await;
    assert_eq!(
        (
            again["type"].as_i64(),
            again["seq"].as_u64(),
            again["duplicate"].as_bool()
        ),
        (Some(30), Some(recall_seq), Some(true)),
        "{again}"
    );
}

#[tokio::test]
async fn recall_and_edit_windows_expire_except_for_group_admins() {
    let broker = TestBroker::start_with(|c| {
        c.recall_window_ms = 1_000;
        c.edit_window_ms = 1_000;
    })
    .await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let group = web
        .post(
            "/api/groups",
            &alice.token,
            Some(json!({"name": "team", "member_ids": [bob.user_id]})),
        )
        .await;
    let group_id = group["group_id"].as_str().unwrap().to_owned();
    let conv = group["conversation_id"].as_str().unwrap().to_owned();
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    let quick = say(&mut bob_ws, &group_id, "q", "recall me quickly").await;
    send_json(
        &mut bob_ws,
        json!({"type": 35, "conversation_id": conv, "seq": quick, "message_id": "r-quick"}),
    )
    .await;
    let answer = answer_to(&mut bob_ws, "r-quick").await;
    assert_eq!(answer["type"], 30, "within the window: {answer}");
    let slow = say(&mut bob_ws, &group_id, "s", "too late").await;
    let other = say(&mut bob_ws, &group_id, "o", "the owner recalls this").await;

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    send_json(
        &mut bob_ws,
        json!({"type": 35, "conversation_id": conv, "seq": slow, "message_id": "r-slow"}),
    )
    .await;
    expect_error(&mut bob_ws, "r-slow", 24).await; // EXPIRED
    send_json(
        &mut bob_ws,
        json!({"type": 36, "conversation_id": conv, "seq": slow, "message_id": "e-slow", "content": {"text": "x"}}),
    )
    .await;
    expect_error(&mut bob_ws, "e-slow", 24).await;
    web.refused(
        reqwest::Method::POST,
        &format!("/api/conversations/{conv}/messages/{slow}/recall"),
        &bob.token,
        None,
        410,
        24,
    )
    .await;
    web.refused(
        reqwest::Method::POST,
        &format!("/api/conversations/{conv}/messages/{slow}/edit"),
        &bob.token,
        Some(json!({"text": "late"})),
        410,
        24,
    )
    .await;

    // The group's owner may recall a member's message at any time.
    send_json(
        &mut alice_ws,
        json!({"type": 35, "conversation_id": conv, "seq": other, "message_id": "r-owner"}),
    )
    .await;
    assert_eq!(answer_to(&mut alice_ws, "r-owner").await["type"], 30);
    let event = next_where(&mut bob_ws, "the owner's recall", |v| {
        v["type"] == 35 && v["content"]["target_seq"] == other
    })
    .await;
    assert_eq!(event["from"], alice.user_id.as_str());
    let history = web
        .get(
            &format!("/api/messages/group/{group_id}?limit=50&last_seq=0"),
            &bob.token,
        )
        .await;
    let recalled = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["seq"] == other)
        .unwrap();
    assert_eq!(
        (
            recalled["recalled"].as_bool(),
            recalled["recalled_by"].as_str()
        ),
        (Some(true), Some(alice.user_id.as_str()))
    );
}

#[tokio::test]
async fn a_call_between_browsers_is_signalled_both_ways_and_recorded() {
    let broker = TestBroker::start_with(|c| {
        c.ice_servers = vec!["stun:stun.example.com:3478".into()];
    })
    .await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let bob_tab2 = web.login("bob", "bob-tab2").await;
    let mut alice_ws = web.synced_socket(&alice).await;
    let mut bob_ws = web.synced_socket(&bob).await;
    let mut bob_ws2 = web.synced_socket(&bob_tab2).await;

    send_json(
        &mut alice_ws,
        json!({"type": 60, "action": "invite", "to": bob.user_id, "media": "video", "message_id": "c1"}),
    )
    .await;
    let ok = answer_to(&mut alice_ws, "c1").await;
    assert_eq!(ok["type"], 61, "{ok}");
    let call_id = ok["call_id"].as_str().unwrap().to_owned();
    assert!(!call_id.is_empty());
    assert_eq!(
        ok["ice_servers"][0]["urls"],
        json!(["stun:stun.example.com:3478"]),
        "{ok}"
    );
    for ws in [&mut bob_ws, &mut bob_ws2] {
        let invite = next_call(ws, "invite").await;
        assert_eq!(
            (
                invite["call_id"].as_str(),
                invite["from"].as_str(),
                invite["peer"].as_str(),
                invite["media"].as_str()
            ),
            (
                Some(call_id.as_str()),
                Some(alice.user_id.as_str()),
                Some(alice.user_id.as_str()),
                Some("video")
            ),
            "{invite}"
        );
        assert!(
            invite["ice_servers"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        );
    }

    // Bob's first tab rings, then accepts: alice learns which device; the other tab stops.
    send_json(
        &mut bob_ws,
        json!({"type": 60, "action": "ringing", "call_id": call_id, "message_id": "c2"}),
    )
    .await;
    assert_eq!(answer_to(&mut bob_ws, "c2").await["type"], 61);
    let ringing = next_call(&mut alice_ws, "ringing").await;
    assert_eq!(ringing["from"], bob.user_id.as_str());
    send_json(
        &mut bob_ws,
        json!({"type": 60, "action": "accept", "call_id": call_id, "message_id": "c3"}),
    )
    .await;
    assert_eq!(answer_to(&mut bob_ws, "c3").await["type"], 61);
    let accepted = next_call(&mut alice_ws, "accept").await;
    assert_eq!(
        (
            accepted["from"].as_str(),
            accepted["from_device"].as_str(),
            accepted["call_id"].as_str()
        ),
        (
            Some(bob.user_id.as_str()),
            Some(bob.device_id.as_str()),
            Some(call_id.as_str())
        )
    );
    next_call(&mut bob_ws2, "answered_elsewhere").await;
    send_json(
        &mut bob_ws2,
        json!({"type": 60, "action": "accept", "call_id": call_id, "message_id": "c4"}),
    )
    .await;
    expect_error(&mut bob_ws2, "c4", 25).await; // CONFLICT: answered elsewhere

    // Offer, answer and ICE candidates are relayed to the other side's one device.
    send_json(
        &mut alice_ws,
        json!({"type": 60, "action": "offer", "call_id": call_id, "sdp": "v=0 offer", "message_id": "c5"}),
    )
    .await;
    assert_eq!(answer_to(&mut alice_ws, "c5").await["type"], 61);
    let offer = next_call(&mut bob_ws, "offer").await;
    assert_eq!(
        (offer["sdp"].as_str(), offer["from"].as_str()),
        (Some("v=0 offer"), Some(alice.user_id.as_str()))
    );
    send_json(
        &mut bob_ws,
        json!({"type": 60, "action": "answer", "call_id": call_id, "sdp": "v=0 answer"}),
    )
    .await;
    assert_eq!(
        next_call(&mut alice_ws, "answer").await["sdp"],
        "v=0 answer"
    );
    let candidate = json!({"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    send_json(
        &mut alice_ws,
        json!({"type": 60, "action": "ice", "call_id": call_id, "candidate": candidate}),
    )
    .await;
    assert_eq!(next_call(&mut bob_ws, "ice").await["candidate"], candidate);
    send_json(
        &mut bob_ws,
        json!({"type": 60, "action": "ice", "call_id": call_id, "candidate": candidate.to_string()}),
    )
    .await;
    assert_eq!(
        next_call(&mut alice_ws, "ice").await["candidate"],
        candidate
    );
    assert_none_of(&mut bob_ws2, 60, Duration::from_millis(200)).await;

    // Hang up: both sides get ENDED (completed), and the call is recorded in the chat.
    tokio::time::sleep(Duration::from_millis(50)).await;
    send_json(
        &mut bob_ws,
        json!({"type": 60, "action": "hangup", "call_id": call_id, "message_id": "c6"}),
    )
    .await;
    // The end (a push), its record (a message) and, for bob, the answer to his hangup
    // may come in any order.
    let is_ended = |v: &Value| v["type"] == 60 && v["action"] == "ended";
    let is_record = |v: &Value| v["type"] == 3 && v["content"]["event"] == "call";
    let is_answer = |v: &Value| v["type"] == 61 && v["message_id"] == "c6";
    let on_alice =
        collect_in_any_order(&mut alice_ws, "alice's end", &[&is_ended, &is_record]).await;
    let on_bob = collect_in_any_order(
        &mut bob_ws,
        "bob's end",
        &[&is_ended, &is_record, &is_answer],
    )
    .await;
    for found in [on_alice, on_bob] {
        let (ended, record) = (&found[0], &found[1]);
        assert_eq!(
            (ended["call_id"].as_str(), ended["reason"].as_str()),
            (Some(call_id.as_str()), Some("completed")),
            "{ended}"
        );
        assert!(ended["duration_ms"].as_u64().is_some(), "{ended}");
        let summary = &record["content"]["call"];
        assert_eq!(
            (
                summary["call_id"].as_str(),
                summary["caller"].as_str(),
                summary["callee"].as_str(),
                summary["reason"].as_str(),
                summary["media"].as_str()
            ),
            (
                Some(call_id.as_str()),
                Some(alice.user_id.as_str()),
                Some(bob.user_id.as_str()),
                Some("completed"),
                Some("video")
            ),
            "{record}"
        );
        assert_eq!(
            record["conversation_id"],
            single_conv(&alice, &bob).as_str()
        );
    }
    // An ended call takes no more signalling.
    send_json(
        &mut alice_ws,
        json!({"type": 60, "action": "hangup", "call_id": call_id, "message_id": "c7"}),
    )
    .await;
    let late = expect_error(&mut alice_ws, "c7", 9).await;
    assert!(!late["message"].as_str().unwrap().is_empty());

    // A rejected call ends for both with "rejected".
    send_json(
        &mut alice_ws,
        json!({"type": 60, "action": "invite", "to": bob.user_id, "message_id": "d1"}),
    )
    .await;
    let second_call = answer_to(&mut alice_ws, "d1").await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invite = next_call(&mut bob_ws2, "invite").await;
    assert_eq!(
        (invite["call_id"].as_str(), invite["media"].as_str()),
        (Some(second_call.as_str()), Some("audio"))
    );
    send_json(
        &mut bob_ws2,
        json!({"type": 60, "action": "reject", "call_id": second_call}),
    )
    .await;
    for ws in [&mut alice_ws, &mut bob_ws, &mut bob_ws2] {
        let ended = next_where(ws, "the rejected call's end", |v| {
            v["type"] == 60 && v["action"] == "ended" && v["call_id"] == second_call.as_str()
        })
        .await;
        assert_eq!(ended["reason"], "rejected", "{ended}");
    }
}

#[tokio::test]
async fn bad_call_frames_are_refused_and_the_socket_stays_open() {
    let broker = TestBroker::start().await;
    let web = Web::new(&broker);
    let alice = web.account("alice").await;
    let bob = web.account("bob").await;
    let mut alice_ws = web.synced_socket(&alice).await;

    for (frame, message_id, code) in [
        (
            json!({"type": 60, "action": "dance", "message_id": "x1"}),
            "x1",
            4,
        ),
        (json!({"type": 60, "message_id": "x2"}), "x2", 4),
        (
            json!({"type": 60, "action": "ended", "call_id": "call_x", "message_id": "x3"}),
            "x3",
            4,
        ),
        (
            json!({"type": 60, "action": "invite", "to": bob.user_id, "media": "hologram", "message_id": "x4"}),
            "x4",
            4,
        ),
        (
            json!({"type": 60, "action": "offer", "call_id": "call_nope", "sdp": "v=0", "message_id": "x5"}),
            "x5",
            9,
        ),
    ] {
        send_json(&mut alice_ws, frame).await;
        let error = expect_error(&mut alice_ws, message_id, code).await;
        assert!(!error["message"].as_str().unwrap().is_empty(), "{error}");
    }
    send_json(&mut alice_ws, json!({"type": 60, "action": "dance"})).await;
    let error = next_of(&mut alice_ws, 50).await;
    assert!(
        error["message"].as_str().unwrap().contains("dance"),
        "{error}"
    );

    // Calling a user with no device online: CallOk first, then ENDED (missed) at once.
    send_json(
        &mut alice_ws,
        json!({"type": 60, "action": "invite", "to": bob.user_id, "media": "audio", "message_id": "y1"}),
    )
    .await;
    // The answer comes first, so the browser knows the call id of what follows.
    let ok = next_where(&mut alice_ws, "the invite's answer", |v| {
        v["type"] == 61 || v["type"] == 60 || v["type"] == 50
    })
    .await;
    assert_eq!(
        (ok["type"].as_i64(), ok["message_id"].as_str()),
        (Some(61), Some("y1")),
        "{ok}"
    );
    let ended = next_call(&mut alice_ws, "ended").await;
    assert_eq!(
        (ended["call_id"].as_str(), ended["reason"].as_str()),
        (ok["call_id"].as_str(), Some("missed")),
        "{ended}"
    );

    // Still usable; the missed call is recorded in the conversation.
    send_json(
        &mut alice_ws,
        json!({"type": 99, "content": {"timestamp": 7}}),
    )
    .await;
    assert_eq!(next_of(&mut alice_ws, 100).await["content"]["timestamp"], 7);
    say(&mut alice_ws, &bob.user_id, "m", "call me").await;
    let history = web
        .get(
            &format!(
                "/api/messages/private/{}?limit=50&last_seq=0",
                alice.user_id
            ),
            &bob.token,
        )
        .await;
    let calls: Vec<&Value> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == 3 && m["content"]["event"] == "call")
        .collect();
    assert_eq!(calls.len(), 1, "{history}");
    assert_eq!(
        (
            calls[0]["content"]["call"]["reason"].as_str(),
            calls[0]["content"]["call"]["call_id"].as_str()
        ),
        (Some("missed"), ok["call_id"].as_str())
    );
}
