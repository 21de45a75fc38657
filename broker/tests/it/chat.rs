//! 1:1 chat end to end over real QUIC: order, multi-device fan-out, dedup, restart.

use crate::common;

use common::{TestBroker, WAIT, messages, next_message, text};
use quip_sdk::pb;

fn text_request(to: &str, body: &str, client_msg_id: &str) -> pb::SendRequest {
    pb::SendRequest {
        to: to.into(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::send_request::Content::Text(pb::TextContent {
            text: body.into(),
            ..Default::default()
        })),
        client_msg_id: client_msg_id.into(),
    }
}

#[tokio::test]
async fn messages_arrive_in_order_on_every_device_of_both_users() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "alice-phone").await;
    let alice_laptop = broker.device("alice", "alice-laptop").await;
    let bob = broker.user("bob", "bob-phone").await;
    let bob_laptop = broker.device("bob", "bob-laptop").await;
    let bob_id = bob.user_id().unwrap();

    let mut acks = Vec::new();
    for body in ["one", "two", "three"] {
        acks.push(alice.send_text(&bob_id, body).await.unwrap());
    }
    assert_eq!(
        acks.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let conv_id = quip_protocol::ids::single_conv_id(&alice.user_id().unwrap(), &bob_id);
    assert!(
        acks.iter()
            .all(|a| a.conv_id == conv_id && a.msg_id.starts_with("msg_"))
    );

    for receiver in [&bob, &bob_laptop, &alice_laptop] {
        let got = messages(receiver, 3).await;
        assert_eq!(
            got.iter().map(text).collect::<Vec<_>>(),
            vec!["one", "two", "three"]
        );
        assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(
            got.iter()
                .all(|m| m.from == alice.user_id().unwrap() && m.conv_id == conv_id)
        );
        assert_eq!(got[0].msg_id, acks[0].msg_id);
    }
    // The sending device gets no copy of its own messages.
    common::assert_no_message(&alice, std::time::Duration::from_millis(300)).await;

    // And the other way, pipelined: sends issued concurrently keep their order.
    let replies = futures_join(&bob, &alice.user_id().unwrap()).await;
    assert_eq!(replies, vec![4, 5, 6, 7, 8]);
    let got = messages(&alice, 5).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    assert_eq!(messages(&alice_laptop, 5).await.len(), 5);
    assert_eq!(messages(&bob_laptop, 5).await.len(), 5);
}

/// Five sends in flight at once from one client.
async fn futures_join(client: &quip_sdk::Client, to: &str) -> Vec<u64> {
    let sends: Vec<_> = (0..5)
        .map(|i| {
            client.send(text_request(
                to,
                &format!("p{i}"),
                &format!("pipelined-{i}"),
            ))
        })
        .collect();
    let mut seqs = Vec::new();
    for send in sends {
        seqs.push(send.await.unwrap().seq);
    }
    seqs
}

#[tokio::test]
async fn a_resend_returns_the_same_ack_and_stores_one_message() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let bob_id = bob.user_id().unwrap();

    let first = alice
        .send(text_request(&bob_id, "once", "cm-1"))
        .await
        .unwrap();
    let again = alice
        .send(text_request(&bob_id, "once", "cm-1"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        (again.msg_id.as_str(), again.seq, again.sent_at_ms),
        (first.msg_id.as_str(), first.seq, first.sent_at_ms)
    );
    // Even from another device of the same user, and even with another body.
    let laptop = broker.device("alice", "a2").await;
    let third = laptop
        .send(text_request(&bob_id, "different", "cm-1"))
        .await
        .unwrap();
    assert_eq!(third.msg_id, first.msg_id);

    let next = alice
        .send(text_request(&bob_id, "twice", "cm-2"))
        .await
        .unwrap();
    assert_eq!(next.seq, 2);
    let page = bob.history(&first.conv_id, 0, 0, 50).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(next_message(&bob).await.seq, 1);
    assert_eq!(next_message(&bob).await.seq, 2);
    common::assert_no_message(&bob, std::time::Duration::from_millis(300)).await;
}

#[tokio::test]
async fn messages_and_accounts_survive_a_restart() {
    let mut broker = TestBroker::start().await;
    let (alice_id, bob_id, conv_id) = {
        let alice = broker.user("alice", "a").await;
        let bob = broker.user("bob", "b").await;
        let bob_id = bob.user_id().unwrap();
        for i in 0..5 {
            alice
                .send_text(&bob_id, &format!("before restart {i}"))
                .await
                .unwrap();
        }
        let conv_id = quip_protocol::ids::single_conv_id(&alice.user_id().unwrap(), &bob_id);
        alice.close().await;
        bob.close().await;
        (alice.user_id().unwrap(), bob_id, conv_id)
    };
    broker.restart().await;

    let bob = broker.device("bob", "b2").await;
    assert_eq!(bob.user_id().unwrap(), bob_id);
    let page = bob.history(&conv_id, 0, 0, 50).await.unwrap();
    assert_eq!(page.messages.len(), 5);
    assert_eq!(text(&page.messages[4]), "before restart 4");
    // A new device catches up on everything it has not seen.
    let synced = common::until_sync_done(&bob).await;
    assert_eq!(synced.len(), 5);

    let alice = broker.device("alice", "a").await;
    assert_eq!(alice.user_id().unwrap(), alice_id);
    let ack = alice.send_text(&bob_id, "after restart").await.unwrap();
    assert_eq!(ack.seq, 6, "seqs continue after restart");
    let got = tokio::time::timeout(WAIT, next_message(&bob))
        .await
        .unwrap();
    assert_eq!((got.seq, text(&got)), (6, "after restart"));
}
