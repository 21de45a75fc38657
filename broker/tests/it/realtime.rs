//! Realtime extras end to end over real QUIC (issue 7): typing over QUIC datagrams
//! (and the control-stream fallback), presence, read receipts, WebRTC call
//! signalling, recall and edit. Real brokers on loopback, real SDK clients; nothing
//! here asserts how long anything took.

use crate::common;

use std::time::Duration;

use common::{PASSWORD, TestBroker, WAIT, next_message, text, until_sync_done};
use quip_protocol::ErrorCode;
use quip_protocol::ids::{group_conv_id, single_conv_id};
use quip_sdk::{Client, ClientOptions, Event, apply_amendment, pb};

/// Waits for the first event `pick` accepts, skipping the others.
async fn wait_for<T>(client: &Client, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next_event().await {
                Some(event) => {
                    if let Some(found) = pick(event) {
                        return found;
                    }
                }
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not arrive in time"))
}

async fn next_typing(client: &Client) -> pb::TypingNotice {
    wait_for(client, "a typing notice", |event| match event {
        Event::Typing(notice) => Some(notice),
        _ => None,
    })
    .await
}

/// The next call event with this action for this call, skipping (and logging) other
/// call events: the contract fixes what each device must get, not that nothing else
/// may come in between.
async fn expect_call(client: &Client, call_id: &str, action: pb::CallAction) -> pb::CallEvent {
    let device = client.device_id().to_string();
    wait_for(
        client,
        &format!("{action:?} on {device}"),
        |event| match event {
            Event::Call(call) if call.call_id == call_id && call.action() == action => Some(call),
            Event::Call(other) => {
                eprintln!("{device}: skipping {other:?} while waiting for {action:?}");
                None
            }
            _ => None,
        },
    )
    .await
}

/// The next presence push about `user_id` with this `online` value.
async fn presence_of(client: &Client, user_id: &str, online: bool) -> pb::Presence {
    wait_for(client, "a presence push", |event| match event {
        Event::Presence(p) if p.user_id == user_id && p.online == online => Some(p),
        _ => None,
    })
    .await
}

/// The next read receipt from `user_id` in `conv_id` with read mark `read_seq`.
async fn read_receipt(client: &Client, conv_id: &str, user_id: &str, read_seq: u64) -> pb::Receipt {
    wait_for(client, "a read receipt", |event| match event {
        Event::Receipt(r)
            if r.conv_id == conv_id && r.user_id == user_id && r.read_seq >= read_seq =>
        {
            Some(r)
        }
        _ => None,
    })
    .await
}

/// Everything that arrives within `quiet` (for "nothing else came" checks).
async fn drain(client: &Client, quiet: Duration) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
        events.push(event);
    }
    events
}

/// Registers a user from a client built with `adjust`ed options.
async fn user_with(
    broker: &TestBroker,
    username: &str,
    device_id: &str,
    adjust: impl FnOnce(&mut ClientOptions),
) -> Client {
    let client = broker.client_with(device_id, adjust).await;
    client
        .register(username, PASSWORD, None)
        .await
        .expect("registration succeeds");
    client
}

fn id(client: &Client) -> String {
    client.user_id().expect("logged in")
}

fn system_call(message: &pb::Message) -> Option<&pb::CallSummary> {
    match &message.content {
        Some(pb::message::Content::System(system)) if system.event == "call" => {
            system.call.as_ref()
        }
        _ => None,
    }
}

/// The summary of `call_id` from the conversation's history, once it is stored (the
/// SYSTEM message races the ENDED push, so poll).
async fn stored_call_summary(client: &Client, conv_id: &str, call_id: &str) -> pb::Message {
    tokio::time::timeout(WAIT, async {
        loop {
            let page = client.history(conv_id, 0, 0, 50).await.unwrap();
            if let Some(message) = page
                .messages
                .into_iter()
                .find(|m| system_call(m).is_some_and(|s| s.call_id == call_id))
            {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call's SYSTEM message is stored")
}

// ---------------------------------------------------------------------------------
// Typing

#[tokio::test]
async fn typing_goes_as_a_datagram_and_expires() {
    let broker = TestBroker::start_with(|c| c.typing_expires_ms = 300).await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let conv_id = single_conv_id(&id(&alice), &id(&bob));

    alice
        .typing(&conv_id, pb::TypingKind::Typing)
        .await
        .unwrap();
    let notice = next_typing(&bob).await;
    assert_eq!(
        (notice.conv_id.as_str(), notice.from.as_str(), notice.kind()),
        (
            conv_id.as_str(),
            id(&alice).as_str(),
            pb::TypingKind::Typing
        )
    );
    assert_eq!(notice.expires_in_ms, 300);
    assert_eq!(
        bob.typing_in(&conv_id),
        vec![(id(&alice), pb::TypingKind::Typing)]
    );
    assert!(bob.typing_in("single:user_x:user_y").is_empty());
    // Past the expiry (counted from when the notice arrived) it is gone by itself.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(bob.typing_in(&conv_id).is_empty());

    let stats = broker.broker().context().router.push_stats();
    assert!(stats.datagrams > 0, "typing went as a datagram: {stats:?}");

    // STOPPED ends an indicator before its expiry.
    alice
        .typing(&conv_id, pb::TypingKind::RecordingVoice)
        .await
        .unwrap();
    let notice = next_typing(&bob).await;
    assert_eq!(notice.kind(), pb::TypingKind::RecordingVoice);
    alice
        .typing(&conv_id, pb::TypingKind::Stopped)
        .await
        .unwrap();
    let notice = next_typing(&bob).await;
    assert_eq!(notice.kind(), pb::TypingKind::Stopped);
    assert!(bob.typing_in(&conv_id).is_empty());
    // Nothing was stored.
    assert!(
        bob.history(&conv_id, 0, 0, 50)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
}

#[tokio::test]
async fn typing_falls_back_to_the_control_stream_when_the_broker_has_no_datagrams() {
    let broker = TestBroker::start_with(|c| c.datagrams = false).await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let conv_id = single_conv_id(&id(&alice), &id(&bob));

    alice
        .typing(&conv_id, pb::TypingKind::Typing)
        .await
        .unwrap();
    let notice = next_typing(&bob).await;
    assert_eq!(notice.from, id(&alice));
    assert_eq!(bob.typing_in(&conv_id).len(), 1);
    let stats = broker.broker().context().router.push_stats();
    assert!(stats.streamed > 0, "{stats:?}");
    assert_eq!(stats.datagrams, 0, "{stats:?}");
}

#[tokio::test]
async fn typing_falls_back_to_the_control_stream_when_the_client_has_datagrams_off() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = user_with(&broker, "bob", "b", |o| o.datagrams = false).await;
    let conv_id = single_conv_id(&id(&alice), &id(&bob));

    // To the client without datagrams: on the control stream.
    alice
        .typing(&conv_id, pb::TypingKind::Typing)
        .await
        .unwrap();
    assert_eq!(next_typing(&bob).await.from, id(&alice));
    let stats = broker.broker().context().router.push_stats();
    assert!(stats.streamed > 0, "{stats:?}");
    assert_eq!(stats.datagrams, 0, "{stats:?}");

    // From it: sent on the control stream, still relayed.
    bob.typing(&conv_id, pb::TypingKind::Typing).await.unwrap();
    assert_eq!(next_typing(&alice).await.from, id(&bob));
    assert_eq!(
        alice.typing_in(&conv_id),
        vec![(id(&bob), pb::TypingKind::Typing)]
    );
}

// ---------------------------------------------------------------------------------
// Presence

#[tokio::test]
async fn presence_follows_the_last_device_of_a_partner() {
    let broker = TestBroker::start().await;
    let bob = broker.user("bob", "b").await;
    let alice = broker.user("alice", "a1").await;
    let alice_id = id(&alice);
    // A 1:1 conversation makes them partners.
    alice.send_text(&id(&bob), "hi").await.unwrap();
    assert_eq!(text(&next_message(&bob).await), "hi");

    // Alice's only device leaves: offline, with when.
    alice.close().await;
    let offline = presence_of(&bob, &alice_id, false).await;
    assert!(offline.last_seen_ms > 0, "{offline:?}");
    assert_eq!(offline.devices, 0);

    // First device back: online.
    let alice = broker.device("alice", "a1").await;
    let online = presence_of(&bob, &alice_id, true).await;
    assert!(
        online.version > offline.version,
        "{online:?} after {offline:?}"
    );
    assert!(online.devices >= 1);
    let alice_laptop = broker.device("alice", "a2").await;
    let now = bob.presence(&[&alice_id, &id(&bob)]).await.unwrap();
    let of = |user: &str| now.iter().find(|p| p.user_id == user).cloned().unwrap();
    assert!(of(&alice_id).online);
    assert_eq!(of(&alice_id).devices, 2);
    assert!(of(&id(&bob)).online);

    // One of two devices leaves: still online, no offline push.
    alice_laptop.close().await;
    tokio::time::timeout(WAIT, async {
        loop {
            let now = bob.presence(&[&alice_id]).await.unwrap();
            if now[0].devices == 1 {
                assert!(now[0].online);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broker sees the laptop leave");
    for event in drain(&bob, Duration::from_millis(300)).await {
        if let Event::Presence(p) = event {
            assert!(p.online, "no offline while a device is connected: {p:?}");
        }
    }

    // The last one leaves: offline again.
    alice.close().await;
    let offline = presence_of(&bob, &alice_id, false).await;
    assert!(offline.last_seen_ms > 0, "{offline:?}");
    assert_eq!(offline.devices, 0);
    let known = bob.known_presence(&alice_id).unwrap();
    assert!(!known.online);
    assert!(known.version >= offline.version);
    let queried = bob.presence(&[&alice_id]).await.unwrap();
    assert!(!queried[0].online);
    assert!(queried[0].last_seen_ms > 0);
}

#[tokio::test]
async fn group_presence_counts_online_members() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let dave = broker.user("dave", "d").await;
    let members = vec![id(&bob), id(&carol), id(&dave)];
    let group = alice
        .create_group("team", "", &members, pb::JoinMode::Open)
        .await
        .unwrap()
        .group
        .unwrap();
    carol.close().await;
    dave.close().await;

    let mut expected = vec![id(&alice), id(&bob)];
    expected.sort();
    let presence = tokio::time::timeout(WAIT, async {
        loop {
            let presence = bob.group_presence(&group.group_id, 0).await.unwrap();
            if presence.online_count == 2 {
                return presence;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the broker sees carol and dave leave");
    assert_eq!(presence.group_id, group.group_id);
    assert_eq!(presence.member_count, 4);
    assert_eq!(presence.online_user_ids, expected);
    let limited = bob.group_presence(&group.group_id, 1).await.unwrap();
    assert_eq!(limited.online_count, 2);
    assert_eq!(limited.online_user_ids, expected[..1]);

    // Not pushed to group members (only to 1:1 partners).
    for event in drain(&bob, Duration::from_millis(300)).await {
        assert!(!matches!(event, Event::Presence(_)), "{event:?}");
    }
    // Outsiders may not ask.
    let eve = broker.user("eve", "e").await;
    let refused = eve.group_presence(&group.group_id, 0).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
}

// ---------------------------------------------------------------------------------
// Receipts

#[tokio::test]
async fn group_read_counts_rise_as_members_read() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let dave = broker.user("dave", "d").await;
    let group = alice
        .create_group(
            "team",
            "",
            &[id(&bob), id(&carol), id(&dave)],
            pb::JoinMode::Open,
        )
        .await
        .unwrap()
        .group
        .unwrap();
    let conv_id = group_conv_id(&group.group_id);
    assert_eq!(group.conv_id, conv_id);

    let ack = alice.send_text(&group.group_id, "lunch?").await.unwrap();
    let seq = ack.seq;
    let counts = alice.receipts(&conv_id, &[seq]).await.unwrap();
    assert_eq!(counts.conv_id, conv_id);
    assert_eq!(counts.counts.len(), 1);
    assert_eq!(
        (
            counts.counts[0].seq,
            counts.counts[0].read,
            counts.counts[0].recipients
        ),
        (seq, 0, 3)
    );

    let mut readers: Vec<String> = Vec::new();
    for (n, reader) in [&bob, &carol, &dave].into_iter().enumerate() {
        let got = wait_for(reader, "the group message", |event| match event {
            Event::Message(m) if m.seq == seq => Some(m),
            _ => None,
        })
        .await;
        assert_eq!(text(&got), "lunch?");
        reader.mark_read(&conv_id, seq).await.unwrap();
        // The sender hears about it.
        let receipt = read_receipt(&alice, &conv_id, &id(reader), seq).await;
        assert_eq!(receipt.read_seq, seq);
        readers.push(id(reader));
        let counts = alice.receipts(&conv_id, &[seq]).await.unwrap();
        assert_eq!(counts.counts[0].read, n as u32 + 1, "{counts:?}");
        assert_eq!(counts.counts[0].recipients, 3);
        assert!(counts.counts[0].delivered <= 3);
    }
    readers.sort();

    let all = alice.readers(&conv_id, seq, "", 0).await.unwrap();
    assert_eq!((all.conv_id.as_str(), all.seq), (conv_id.as_str(), seq));
    assert_eq!(all.user_ids, readers);
    assert_eq!(all.next_after_user_id, "");
    // Paged.
    let first = alice.readers(&conv_id, seq, "", 2).await.unwrap();
    assert_eq!(first.user_ids, readers[..2]);
    assert!(!first.next_after_user_id.is_empty());
    let rest = alice
        .readers(&conv_id, seq, &first.next_after_user_id, 2)
        .await
        .unwrap();
    assert_eq!(rest.user_ids, readers[2..]);
    // Members see the counts too; outsiders may not.
    let counts = bob.receipts(&conv_id, &[seq]).await.unwrap();
    assert_eq!((counts.counts[0].read, counts.counts[0].recipients), (3, 3));
    let eve = broker.user("eve", "e").await;
    let refused = eve.receipts(&conv_id, &[seq]).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn a_read_receipt_reaches_the_partner_and_the_readers_other_devices() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b1").await;
    let bob_tablet = broker.device("bob", "b2").await;
    let conv_id = single_conv_id(&id(&alice), &id(&bob));

    alice.send_text(&id(&bob), "one").await.unwrap();
    let ack = alice.send_text(&id(&bob), "two").await.unwrap();
    assert_eq!(next_message(&bob).await.seq, 1);
    assert_eq!(next_message(&bob).await.seq, ack.seq);
    bob.mark_read(&conv_id, ack.seq).await.unwrap();

    let to_partner = read_receipt(&alice, &conv_id, &id(&bob), ack.seq).await;
    assert_eq!(to_partner.read_seq, ack.seq);
    let to_other_device = read_receipt(&bob_tablet, &conv_id, &id(&bob), ack.seq).await;
    assert_eq!(to_other_device.read_seq, ack.seq);

    let counts = alice.receipts(&conv_id, &[1, ack.seq]).await.unwrap();
    for count in &counts.counts {
        assert_eq!((count.read, count.recipients), (1, 1), "{count:?}");
    }
    let readers = alice.readers(&conv_id, ack.seq, "", 0).await.unwrap();
    assert_eq!(readers.user_ids, vec![id(&bob)]);
    // The unread count follows the read mark.
    let list = bob.conversations("", 10).await.unwrap();
    let summary = list
        .conversations
        .iter()
        .find(|c| c.conv_id == conv_id)
        .unwrap();
    assert_eq!((summary.read_seq, summary.unread), (ack.seq, 0));
}

// ---------------------------------------------------------------------------------
// Calls

#[tokio::test]
async fn a_call_rings_every_callee_device_and_the_first_accept_wins() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob_phone = broker.user("bob", "b-phone").await;
    let bob_laptop = broker.device("bob", "b-laptop").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob_phone));

    let ok = alice
        .call_invite(&bob_id, pb::CallMedia::Video)
        .await
        .unwrap();
    let call_id = ok.call_id.clone();
    assert!(!call_id.is_empty());
    for device in [&bob_phone, &bob_laptop] {
        let invite = expect_call(device, &call_id, pb::CallAction::Invite).await;
        assert_eq!(invite.call_id, call_id);
        assert_eq!(invite.from, alice_id);
        assert_eq!(invite.peer, alice_id);
        assert_eq!(invite.from_device, "a");
        assert_eq!(invite.media(), pb::CallMedia::Video);
    }

    bob_laptop
        .call_action(&call_id, pb::CallAction::Ringing)
        .await
        .unwrap();
    let ringing = expect_call(&alice, &call_id, pb::CallAction::Ringing).await;
    assert_eq!(
        (ringing.from.as_str(), ringing.from_device.as_str()),
        (bob_id.as_str(), "b-laptop")
    );

    bob_phone
        .call_action(&call_id, pb::CallAction::Accept)
        .await
        .unwrap();
    let accepted = expect_call(&alice, &call_id, pb::CallAction::Accept).await;
    assert_eq!(
        (accepted.call_id.as_str(), accepted.from_device.as_str()),
        (call_id.as_str(), "b-phone")
    );
    expect_call(&bob_laptop, &call_id, pb::CallAction::AnsweredElsewhere).await;
    let late = bob_laptop
        .call_action(&call_id, pb::CallAction::Accept)
        .await
        .unwrap_err();
    assert_eq!(late.code(), Some(ErrorCode::Conflict), "{late}");

    // Signalling goes to the other side's one device, as is.
    alice.call_offer(&call_id, "v=0 offer").await.unwrap();
    let offer = expect_call(&bob_phone, &call_id, pb::CallAction::Offer).await;
    assert_eq!(offer.sdp, "v=0 offer");
    bob_phone.call_answer(&call_id, "v=0 answer").await.unwrap();
    let answer = expect_call(&alice, &call_id, pb::CallAction::Answer).await;
    assert_eq!(answer.sdp, "v=0 answer");
    let candidate = r#"{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
    alice.call_ice(&call_id, candidate).await.unwrap();
    assert_eq!(
        expect_call(&bob_phone, &call_id, pb::CallAction::Ice)
            .await
            .candidate,
        candidate
    );
    bob_phone.call_ice(&call_id, "{}").await.unwrap();
    assert_eq!(
        expect_call(&alice, &call_id, pb::CallAction::Ice)
            .await
            .candidate,
        "{}"
    );

    bob_phone
        .call_action(&call_id, pb::CallAction::Hangup)
        .await
        .unwrap();
    for device in [&alice, &bob_phone] {
        let ended = expect_call(device, &call_id, pb::CallAction::Ended).await;
        assert_eq!(ended.call_id, call_id);
        assert_eq!(ended.reason(), pb::CallEndReason::Completed);
    }
    // The laptop stopped ringing at ANSWERED_ELSEWHERE and heard nothing since.
    for event in drain(&bob_laptop, Duration::from_millis(300)).await {
        assert!(!matches!(event, Event::Call(_)), "{event:?}");
    }
    let ended = alice
        .call_action(&call_id, pb::CallAction::Hangup)
        .await
        .unwrap_err();
    assert_eq!(ended.code(), Some(ErrorCode::NotFound), "{ended}");

    // The outcome is stored in the 1:1 conversation.
    let conv_id = single_conv_id(&alice_id, &bob_id);
    let message = stored_call_summary(&bob_phone, &conv_id, &call_id).await;
    assert_eq!(message.kind(), pb::MessageKind::System);
    let summary = system_call(&message).unwrap();
    assert_eq!(
        (summary.caller.as_str(), summary.callee.as_str()),
        (alice_id.as_str(), bob_id.as_str())
    );
    assert_eq!(summary.reason(), pb::CallEndReason::Completed);
    assert_eq!(summary.media(), pb::CallMedia::Video);
    // Every device of both users receives it like any SYSTEM message.
    wait_for(&alice, "the call's SYSTEM message", |event| match event {
        Event::Message(m) if m.seq == message.seq => Some(m),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn calling_someone_already_in_a_call_ends_as_busy() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;

    let first = alice
        .call_invite(&id(&bob), pb::CallMedia::Audio)
        .await
        .unwrap();
    expect_call(&bob, &first.call_id, pb::CallAction::Invite).await;

    let second = carol
        .call_invite(&id(&bob), pb::CallMedia::Audio)
        .await
        .unwrap();
    assert_ne!(second.call_id, first.call_id);
    let ended = expect_call(&carol, &second.call_id, pb::CallAction::Ended).await;
    assert_eq!(ended.reason(), pb::CallEndReason::CalleeBusy);
    // Bob was not disturbed by the second call.
    for event in drain(&bob, Duration::from_millis(300)).await {
        if let Event::Call(call) = event {
            assert_eq!(call.call_id, first.call_id, "{call:?}");
        }
    }
}

#[tokio::test]
async fn an_unanswered_call_ends_as_missed() {
    let broker = TestBroker::start_with(|c| c.call_ring_timeout_ms = 300).await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;

    let call_id = alice
        .call_invite(&id(&bob), pb::CallMedia::Audio)
        .await
        .unwrap()
        .call_id;
    expect_call(&bob, &call_id, pb::CallAction::Invite).await;
    for device in [&alice, &bob] {
        let ended = expect_call(device, &call_id, pb::CallAction::Ended).await;
        assert_eq!(ended.reason(), pb::CallEndReason::Missed);
        assert_eq!(ended.duration_ms, 0);
    }
    let conv_id = single_conv_id(&id(&alice), &id(&bob));
    let message = stored_call_summary(&alice, &conv_id, &call_id).await;
    let summary = system_call(&message).unwrap();
    assert_eq!(summary.reason(), pb::CallEndReason::Missed);
    assert_eq!(summary.duration_ms, 0);
    assert_eq!(summary.callee, id(&bob));
}

#[tokio::test]
async fn cancelling_stops_every_ringing_device() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob_phone = broker.user("bob", "b-phone").await;
    let bob_laptop = broker.device("bob", "b-laptop").await;

    let call_id = alice
        .call_invite(&id(&bob_phone), pb::CallMedia::Audio)
        .await
        .unwrap()
        .call_id;
    for device in [&bob_phone, &bob_laptop] {
        expect_call(device, &call_id, pb::CallAction::Invite).await;
    }
    bob_phone
        .call_action(&call_id, pb::CallAction::Ringing)
        .await
        .unwrap();
    expect_call(&alice, &call_id, pb::CallAction::Ringing).await;
    alice
        .call_action(&call_id, pb::CallAction::Cancel)
        .await
        .unwrap();
    for device in [&bob_phone, &bob_laptop] {
        let ended = expect_call(device, &call_id, pb::CallAction::Ended).await;
        assert_eq!(ended.reason(), pb::CallEndReason::Cancelled);
    }
    let conv_id = single_conv_id(&id(&alice), &id(&bob_phone));
    let message = stored_call_summary(&bob_laptop, &conv_id, &call_id).await;
    assert_eq!(
        system_call(&message).unwrap().reason(),
        pb::CallEndReason::Cancelled
    );
}

// ---------------------------------------------------------------------------------
// Recall and edit

#[tokio::test]
async fn recall_after_the_window_is_refused() {
    let broker = TestBroker::start_with(|c| c.recall_window_ms = 200).await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let ack = alice.send_text(&id(&bob), "oops").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = alice.recall(&ack.conv_id, ack.seq).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Expired), "{refused}");
    let page = bob.history(&ack.conv_id, 0, 0, 50).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert!(!page.messages[0].recalled);
    assert_eq!(text(&page.messages[0]), "oops");
}

#[tokio::test]
async fn recall_and_edit_within_their_windows() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let first = alice.send_text(&id(&bob), "helo").await.unwrap();
    let second = alice.send_text(&id(&bob), "oops").await.unwrap();
    let conv_id = first.conv_id.clone();

    // Only the sender may edit (and only TEXT), and only the sender may recall in 1:1.
    let forbidden = bob.edit(&conv_id, first.seq, "hijacked").await.unwrap_err();
    assert_eq!(forbidden.code(), Some(ErrorCode::Forbidden), "{forbidden}");
    let forbidden = bob.recall(&conv_id, first.seq).await.unwrap_err();
    assert_eq!(forbidden.code(), Some(ErrorCode::Forbidden), "{forbidden}");

    let edited = alice.edit(&conv_id, first.seq, "hello").await.unwrap();
    assert_eq!(edited.seq, second.seq + 1, "an edit takes a seq");
    let recalled = alice.recall(&conv_id, second.seq).await.unwrap();
    assert_eq!(recalled.seq, edited.seq + 1);
    let again = alice.recall(&conv_id, second.seq).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::Conflict), "{again}");
    let edit_recalled = alice.edit(&conv_id, second.seq, "x").await.unwrap_err();
    assert_eq!(
        edit_recalled.code(),
        Some(ErrorCode::Conflict),
        "{edit_recalled}"
    );
    let not_recallable = alice.recall(&conv_id, recalled.seq).await.unwrap_err();
    assert_eq!(
        not_recallable.code(),
        Some(ErrorCode::InvalidArgument),
        "an event cannot be recalled: {not_recallable}"
    );

    // Bob sees the messages, then the events, in seq order, and applies them.
    let mut got = common::messages(&bob, 4).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![first.seq, second.seq, edited.seq, recalled.seq]
    );
    assert_eq!(got[2].kind(), pb::MessageKind::Edit);
    assert_eq!(got[3].kind(), pb::MessageKind::Recall);
    let events: Vec<pb::Message> = got.split_off(2);
    for event in &events {
        assert!(
            got.iter_mut().any(|m| apply_amendment(m, event)),
            "{event:?}"
        );
    }
    assert_eq!(text(&got[0]), "hello");
    assert_eq!(got[0].edited_at_ms, events[0].sent_at_ms);
    assert!(got[1].recalled);
    assert_eq!(got[1].recalled_by, id(&alice));
    assert_eq!(got[1].content, None);

    // The history holds the same final state.
    let page = bob.history(&conv_id, 0, 0, 50).await.unwrap();
    let target = |seq: u64| page.messages.iter().find(|m| m.seq == seq).unwrap();
    assert_eq!(text(target(first.seq)), "hello");
    assert!(target(first.seq).edited_at_ms > 0);
    assert!(target(second.seq).recalled);
    assert_eq!(target(second.seq).content, None);
}

#[tokio::test]
async fn an_offline_device_applies_edits_and_recalls_at_sync() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b1").await;
    let bob_laptop = broker.device("bob", "b2").await;
    until_sync_done(&bob_laptop).await;
    bob_laptop.close().await;

    let bob_id = id(&bob);
    let one = alice.send_text(&bob_id, "one").await.unwrap();
    let two = alice.send_text(&bob_id, "two").await.unwrap();
    let three = alice.send_text(&bob_id, "three").await.unwrap();
    let conv_id = one.conv_id.clone();
    let edit = alice.edit(&conv_id, one.seq, "one, edited").await.unwrap();
    let recall = alice.recall(&conv_id, two.seq).await.unwrap();
    let edit_three = alice
        .edit(&conv_id, three.seq, "three, edited")
        .await
        .unwrap();

    // Live on the online device, in seq order.
    let live = common::messages(&bob, 6).await;
    assert_eq!(
        live.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![
            one.seq,
            two.seq,
            three.seq,
            edit.seq,
            recall.seq,
            edit_three.seq
        ]
    );

    // The laptop comes back and catches up: the events come in seq order.
    let bob_laptop = broker.device("bob", "b2").await;
    let synced = until_sync_done(&bob_laptop).await;
    let synced: Vec<pb::Message> = synced
        .into_iter()
        .filter(|m| m.conv_id == conv_id)
        .collect();
    assert_eq!(
        synced.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![
            one.seq,
            two.seq,
            three.seq,
            edit.seq,
            recall.seq,
            edit_three.seq
        ]
    );
    assert_eq!(
        synced.iter().map(|m| m.kind()).collect::<Vec<_>>(),
        vec![
            pb::MessageKind::Text,
            pb::MessageKind::Text,
            pb::MessageKind::Text,
            pb::MessageKind::Edit,
            pb::MessageKind::Recall,
            pb::MessageKind::Edit,
        ]
    );
    let (mut messages, events) = {
        let mut all = synced;
        let events = all.split_off(3);
        (all, events)
    };
    for event in &events {
        let change = quip_sdk::amendment(event).expect("an amendment");
        assert!(
            messages.iter_mut().any(|m| apply_amendment(m, event)),
            "event for seq {} applies",
            change.target_seq
        );
    }
    assert_eq!(text(&messages[0]), "one, edited");
    assert!(messages[1].recalled);
    assert_eq!(messages[1].content, None);
    assert_eq!(text(&messages[2]), "three, edited");

    // History shows the final state.
    let page = bob_laptop.history(&conv_id, 0, 0, 50).await.unwrap();
    let target = |seq: u64| page.messages.iter().find(|m| m.seq == seq).unwrap();
    assert_eq!(text(target(one.seq)), "one, edited");
    assert_eq!(target(one.seq).edited_at_ms, events[0].sent_at_ms);
    assert!(target(two.seq).recalled);
    assert_eq!(target(two.seq).recalled_by, id(&alice));
    assert_eq!(target(two.seq).content, None);
    assert_eq!(text(target(three.seq)), "three, edited");

    // The conversation list skips the events: the last message is the newest real
    // one, and they do not count as unread.
    let list = bob_laptop.conversations("", 10).await.unwrap();
    let summary = list
        .conversations
        .iter()
        .find(|c| c.conv_id == conv_id)
        .unwrap();
    assert_eq!(
        summary.last_message.as_ref().map(|m| m.seq),
        Some(three.seq)
    );
    assert_eq!(summary.unread, 3);
}
