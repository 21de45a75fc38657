//! Design section 4 over real QUIC: offline delivery, resume, sync racing live sends,
//! history pagination, unread counts, slow consumers, and bad cursors.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestBroker, WAIT, messages, next_message, text, until_sync_done};
use quip_sdk::{ConnectionState, ErrorCode, Event, pb};

#[tokio::test]
async fn offline_user_gets_all_100_messages_in_order_on_connect() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    bob.close().await;

    for i in 1..=100 {
        let ack = alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
        assert_eq!(ack.seq, i);
    }
    let bob = broker.device("bob", "b").await;
    let synced = until_sync_done(&bob).await;
    assert_eq!(
        synced.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(text(&synced[99]), "m100");
    // Nothing more: exactly once.
    common::assert_no_message(&bob, Duration::from_millis(300)).await;

    // A device that was never connected also catches up from the start.
    let tablet = broker.device("bob", "tablet").await;
    assert_eq!(until_sync_done(&tablet).await.len(), 100);
}

#[tokio::test]
async fn a_device_resumes_from_its_cursor_after_a_dropped_connection() {
    let mut broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    for i in 1..=20 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    let first = messages(&bob, 20).await;
    assert_eq!(first.last().unwrap().seq, 20);

    // The broker goes away mid-stream (every connection drops) and comes back.
    broker.restart().await;
    // Alice's SDK resends across the reconnect; seqs continue.
    for i in 21..=40 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    let rest = messages(&bob, 20).await;
    assert_eq!(
        rest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (21..=40).collect::<Vec<_>>()
    );
    common::assert_no_message(&bob, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn reconnect_is_visible_as_state_events() {
    let mut broker = TestBroker::start().await;
    let bob = broker.user("bob", "b").await;
    broker.restart().await;
    // The first login's Connected may still be queued; after it, a Reconnecting must
    // come before the next Connected.
    let mut states = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = bob.next_event().await {
            if let Event::State(state) = event {
                let reconnected = state == ConnectionState::Connected
                    && states
                        .iter()
                        .any(|s| matches!(s, ConnectionState::Reconnecting { .. }));
                states.push(state);
                if reconnected {
                    return;
                }
            }
        }
    })
    .await
    .unwrap();
    states.retain(|s| *s != ConnectionState::Connected);
    assert!(
        matches!(states.first(), Some(ConnectionState::Reconnecting { .. })),
        "{states:?}"
    );
}

#[tokio::test]
async fn sync_racing_live_sends_loses_reorders_and_duplicates_nothing() {
    let broker = TestBroker::start_with(|c| c.sync_batch = 16).await;
    let alice = broker.user("alice", "a").await;
    let carol = broker.user("carol", "c").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    bob.close().await;
    for i in 1..=300 {
        alice.send_text(&bob_id, &format!("a{i}")).await.unwrap();
        carol.send_text(&bob_id, &format!("c{i}")).await.unwrap();
    }
    // Both keep sending while Bob connects and syncs.
    let senders: Vec<_> = [alice, carol]
        .into_iter()
        .map(|client| {
            let bob_id = bob_id.clone();
            tokio::spawn(async move {
                for i in 301..=500 {
                    client
                        .send_text(&bob_id, &format!("live{i}"))
                        .await
                        .unwrap();
                }
                client
            })
        })
        .collect();
    let bob = broker.device("bob", "b").await;
    let mut seen = std::collections::HashMap::<String, Vec<u64>>::new();
    for message in messages(&bob, 1000).await {
        seen.entry(message.conv_id.clone())
            .or_default()
            .push(message.seq);
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(seen.len(), 2);
    for seqs in seen.values() {
        assert_eq!(seqs, &(1..=500).collect::<Vec<_>>());
    }
    common::assert_no_message(&bob, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn stored_cursor_is_used_when_the_hello_has_none() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    for i in 1..=10 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    assert_eq!(messages(&bob, 10).await.len(), 10);
    // The SDK reports delivered cursors in the background; closing flushes them.
    bob.close().await;
    for i in 11..=15 {
        alice.send_text(&bob_id, &format!("m{i}")).await.unwrap();
    }
    // A brand-new SDK instance (no in-memory cursors) for the same device.
    let bob = broker.device("bob", "b").await;
    let synced = until_sync_done(&bob).await;
    assert_eq!(
        synced.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (11..=15).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn history_pages_both_ways_with_has_more_at_the_edges() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    let mut conv_id = String::new();
    for i in 1..=120 {
        conv_id = alice
            .send_text(&bob_id, &format!("m{i}"))
            .await
            .unwrap()
            .conv_id;
    }
    let seqs = |page: &pb::HistoryPage| page.messages.iter().map(|m| m.seq).collect::<Vec<_>>();

    // Newest page, then backwards.
    let newest = bob.history(&conv_id, 0, 0, 50).await.unwrap();
    assert_eq!(seqs(&newest), (71..=120).collect::<Vec<_>>());
    assert!(newest.has_more);
    let older = bob.history(&conv_id, 71, 0, 50).await.unwrap();
    assert_eq!(seqs(&older), (21..=70).collect::<Vec<_>>());
    assert!(older.has_more);
    let oldest = bob.history(&conv_id, 21, 0, 50).await.unwrap();
    assert_eq!(seqs(&oldest), (1..=20).collect::<Vec<_>>());
    assert!(!oldest.has_more);
    // Forwards, from the very first message.
    let first = bob.history_after(&conv_id, 0, 50).await.unwrap();
    assert_eq!(seqs(&first), (1..=50).collect::<Vec<_>>());
    assert!(first.has_more);
    let forward = bob.history(&conv_id, 0, 100, 10).await.unwrap();
    assert_eq!(seqs(&forward), (101..=110).collect::<Vec<_>>());
    assert!(forward.has_more);
    let end = bob.history(&conv_id, 0, 110, 10).await.unwrap();
    assert_eq!(seqs(&end), (111..=120).collect::<Vec<_>>());
    assert!(!end.has_more);
    // Exactly at the edge.
    let exact = bob.history(&conv_id, 0, 115, 5).await.unwrap();
    assert_eq!(seqs(&exact), (116..=120).collect::<Vec<_>>());
    assert!(!exact.has_more);

    // Absurd and future values are clamped, never an error or a panic.
    let clamped = bob.history(&conv_id, 0, 0, u32::MAX).await.unwrap();
    assert_eq!(
        clamped.messages.len(),
        120,
        "limit clamped to the max of 200"
    );
    let future = bob.history(&conv_id, 0, 10_000, 10).await.unwrap();
    assert!(future.messages.is_empty() && !future.has_more);
    let before_future = bob.history(&conv_id, u64::MAX, 0, 10).await.unwrap();
    assert_eq!(seqs(&before_future), (111..=120).collect::<Vec<_>>());
    let both = bob.history(&conv_id, 50, 10, 10).await;
    assert_eq!(both.unwrap_err().code(), Some(ErrorCode::InvalidArgument));
}

#[tokio::test]
async fn conversation_list_and_unread_counts_follow_reads_on_other_devices() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let carol = broker.user("carol", "c").await;
    let bob = broker.user("bob", "phone").await;
    let bob_laptop = broker.device("bob", "laptop").await;
    let bob_id = bob.user_id().unwrap();
    let mut alice_conv = String::new();
    for i in 1..=5 {
        alice_conv = alice
            .send_text(&bob_id, &format!("a{i}"))
            .await
            .unwrap()
            .conv_id;
    }
    for i in 1..=3 {
        carol.send_text(&bob_id, &format!("c{i}")).await.unwrap();
    }
    let list = bob.conversations("", 0).await.unwrap();
    assert_eq!(list.conversations.len(), 2);
    let newest = &list.conversations[0];
    assert_eq!(
        newest.peer_id,
        carol.user_id().unwrap(),
        "newest activity first"
    );
    assert_eq!((newest.last_seq, newest.unread), (3, 3));
    assert_eq!(text(newest.last_message.as_ref().unwrap()), "c3");
    assert_eq!(list.conversations[1].unread, 5);

    // Reading on the laptop moves the user's unread count everywhere.
    bob_laptop.mark_read(&alice_conv, 4).await.unwrap();
    let list = bob.conversations("", 0).await.unwrap();
    let with_alice = list
        .conversations
        .iter()
        .find(|c| c.conv_id == alice_conv)
        .unwrap();
    assert_eq!((with_alice.read_seq, with_alice.unread), (4, 1));
    // Read marks never go backwards, and future seqs are clamped.
    bob.mark_read(&alice_conv, 2).await.unwrap();
    bob.mark_read(&alice_conv, 9_999).await.unwrap();
    let list = bob.conversations("", 0).await.unwrap();
    let with_alice = list
        .conversations
        .iter()
        .find(|c| c.conv_id == alice_conv)
        .unwrap();
    assert_eq!((with_alice.read_seq, with_alice.unread), (5, 0));
    // Sending counts as reading for the sender.
    let alice_list = alice.conversations("", 0).await.unwrap();
    assert_eq!(alice_list.conversations[0].unread, 0);

    // Pagination.
    let first = bob.conversations("", 1).await.unwrap();
    assert_eq!(first.conversations.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = bob.conversations(&first.next_page_token, 1).await.unwrap();
    assert_eq!(second.conversations.len(), 1);
    assert!(second.next_page_token.is_empty());
    assert_ne!(
        first.conversations[0].conv_id,
        second.conversations[0].conv_id
    );
    let bad = bob.conversations("not-a-token", 1).await;
    assert_eq!(bad.unwrap_err().code(), Some(ErrorCode::InvalidArgument));
    // Reads of conversations one is not in are refused.
    let foreign = carol.mark_read(&alice_conv, 1).await;
    assert_eq!(foreign.unwrap_err().code(), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn slow_consumer_is_closed_others_keep_receiving_and_it_resumes_losslessly() {
    let broker = TestBroker::start_with(|c| {
        c.lane_queue_len = 8;
        c.default_lanes = 1;
    })
    .await;
    let alice = broker.user("alice", "a").await;
    let fast = broker.user("bob", "fast").await;
    let bob_id = fast.user_id().unwrap();
    // The slow device buffers almost nothing and its application does not read.
    let slow = broker.client_with("slow", |o| o.event_buffer = 1).await;
    slow.login("bob", common::PASSWORD).await.unwrap();

    const N: u64 = 3000;
    let body = "x".repeat(2000);
    let reader = tokio::spawn(async move {
        let got = messages(&fast, N as usize).await;
        (fast, got)
    });
    for _ in 0..N {
        alice.send_text(&bob_id, &body).await.unwrap();
    }
    let (_fast, got) = reader.await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    assert!(
        broker.broker().context().router.slow_consumer_closes() >= 1,
        "the device that stopped reading was closed as a slow consumer"
    );

    // Now the slow application reads: after its SDK reconnected and resumed, it sees
    // every message exactly once, in order.
    let mut seqs = Vec::new();
    let mut slow_consumer_seen = false;
    tokio::time::timeout(WAIT * 3, async {
        while seqs.len() < N as usize {
            match slow.next_event().await.unwrap() {
                Event::Message(message) => seqs.push(message.seq),
                Event::State(ConnectionState::Reconnecting { reason, .. }) => {
                    slow_consumer_seen |=
                        reason.contains("SLOW_CONSUMER") || reason.to_lowercase().contains("slow");
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the slow device catches up");
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    assert!(slow_consumer_seen, "the SDK saw the SLOW_CONSUMER close");
}

#[tokio::test]
async fn hello_cursors_for_foreign_or_malformed_conversations_are_refused_and_future_ones_clamped()
{
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    let ack = alice.send_text(&bob_id, "hi").await.unwrap();
    let token = bob.tokens().unwrap().access_token;

    let hello = |conv_id: &str, seq: u64| pb::ClientFrame {
        req_id: 1,
        body: Some(pb::client_frame::Body::Hello(pb::Hello {
            auth: Some(pb::hello::Auth::AccessToken(token.clone())),
            device_id: "b".into(),
            cursors: vec![pb::Cursor {
                conv_id: conv_id.into(),
                seq,
            }],
            ..Default::default()
        })),
    };
    async fn first_answer(broker: &TestBroker, frame: pb::ClientFrame) -> pb::server_frame::Body {
        let bytes = prost::Message::encode_length_delimited_to_vec(&frame);
        let (answer, _connection) = common::raw_first_frame(broker, &bytes).await;
        answer.and_then(|frame| frame.body).expect("an answer")
    }
    let code = |body: pb::server_frame::Body| match body {
        pb::server_frame::Body::Error(error) => error.error_code(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        code(first_answer(&broker, hello("single:user_x:user_y", 1)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(first_answer(&broker, hello("garbage", 1)).await),
        ErrorCode::InvalidArgument
    );
    // A cursor past the end is clamped: the connection is accepted.
    let answer = first_answer(&broker, hello(&ack.conv_id, u64::MAX)).await;
    assert!(
        matches!(answer, pb::server_frame::Body::HelloOk(_)),
        "{answer:?}"
    );
}

#[tokio::test]
async fn every_device_gets_each_message_once_across_many_conversations() {
    let broker = TestBroker::start().await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(broker.user(&format!("sender{i}"), "s").await);
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|client| {
            let bob_id = bob_id.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    client.send_text(&bob_id, &format!("{i}")).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut last = std::collections::HashMap::<String, u64>::new();
    for _ in 0..400 {
        let message = next_message(&bob).await;
        assert!(
            seen.insert((message.conv_id.clone(), message.seq)),
            "duplicate {message:?}"
        );
        let previous = last
            .insert(message.conv_id.clone(), message.seq)
            .unwrap_or(0);
        assert_eq!(message.seq, previous + 1, "in order per conversation");
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn typing_reaches_the_other_devices_but_is_never_stored() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let alice_laptop = broker.device("alice", "laptop").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let conv_id =
        quip_protocol::ids::single_conv_id(&alice.user_id().unwrap(), &bob.user_id().unwrap());

    alice
        .typing(&conv_id, pb::TypingKind::Typing)
        .await
        .unwrap();
    for client in [&bob, &alice_laptop] {
        let notice = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(Event::Typing(notice)) = client.next_event().await {
                    return notice;
                }
            }
        })
        .await
        .expect("the typing notice arrives");
        assert_eq!(
            (notice.conv_id.as_str(), notice.from.as_str()),
            (conv_id.as_str(), alice.user_id().unwrap().as_str())
        );
        assert!(notice.expires_in_ms > 0);
    }
    // Nothing was stored and nobody else is told.
    let page = bob.history(&conv_id, 0, 0, 50).await.unwrap();
    assert!(page.messages.is_empty());
    // A stranger's notice (a datagram, with no answer) is refused: it reaches nobody.
    let pushed = |stats: quip_broker::router::PushStats| stats.datagrams + stats.streamed;
    let before = pushed(broker.broker().context().router.push_stats());
    carol
        .typing(&conv_id, pb::TypingKind::Typing)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pushed(broker.broker().context().router.push_stats()),
        before
    );
}
