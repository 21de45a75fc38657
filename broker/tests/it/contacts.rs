//! Contacts end to end over real QUIC (issue 8): friend requests (received,
//! accepted, rejected, cancelled, mutual), friends with presence, refusals,
//! blocking (messages, requests, calls, presence; groups unaffected) and the
//! friends-only setting. Real brokers on loopback, real SDK clients; nothing here
//! asserts how long anything took.

use crate::common;

use std::time::Duration;

use common::{TestBroker, WAIT, next_message, text};
use quip_protocol::ErrorCode;
use quip_sdk::{Client, ContactEventKind, Event, pb};

/// Long enough for a push that should not come to have arrived if it were sent.
const QUIET: Duration = Duration::from_millis(800);

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

/// The next contact event of this kind about `user_id`.
async fn contact_event(client: &Client, kind: ContactEventKind, user_id: &str) -> pb::ContactEvent {
    wait_for(
        client,
        &format!("{kind:?} about {user_id}"),
        |event| match event {
            Event::Contact(contact) if contact.kind() == kind && contact.user_id == user_id => {
                Some(contact)
            }
            _ => None,
        },
    )
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

fn contact_events(events: &[Event]) -> Vec<&pb::ContactEvent> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Contact(contact) => Some(contact),
            _ => None,
        })
        .collect()
}

/// The next presence push about `user_id` with this `online` value.
async fn presence_of(client: &Client, user_id: &str, online: bool) -> pb::Presence {
    wait_for(client, "a presence push", |event| match event {
        Event::Presence(p) if p.user_id == user_id && p.online == online => Some(p),
        _ => None,
    })
    .await
}

/// The next text message, skipping SYSTEM messages (group changes).
async fn next_text(client: &Client) -> pb::Message {
    loop {
        let message = next_message(client).await;
        if matches!(message.content, Some(pb::message::Content::Text(_))) {
            return message;
        }
    }
}

fn id(client: &Client) -> String {
    client.user_id().expect("logged in")
}

fn code<T: std::fmt::Debug>(result: quip_sdk::Result<T>) -> Option<ErrorCode> {
    result.expect_err("the broker refuses").code()
}

/// Makes `a` and `b` friends (request, accept) and consumes the pushes.
async fn befriend(a: &Client, b: &Client) {
    let done = a.send_contact_request(&id(b), "hello").await.unwrap();
    assert!(!done.now_friends);
    contact_event(b, ContactEventKind::RequestReceived, &id(a)).await;
    b.accept_contact_request(&id(a)).await.unwrap();
    contact_event(a, ContactEventKind::RequestAccepted, &id(b)).await;
}

fn friend_ids(friends: &[pb::Friend]) -> Vec<String> {
    friends.iter().map(|f| f.user_id.clone()).collect()
}

// ---------------------------------------------------------------------------------
// Friend requests

#[tokio::test]
async fn a_request_is_received_listed_and_accepted_into_friends_with_presence() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));

    let done = alice
        .send_contact_request(&bob_id, "hi, it's alice from work")
        .await
        .unwrap();
    assert!(!done.now_friends);

    let received = contact_event(&bob, ContactEventKind::RequestReceived, &alice_id).await;
    assert_eq!(received.message, "hi, it's alice from work");
    assert_eq!(received.username, "alice");

    let bobs = bob.contact_requests().await.unwrap();
    assert!(bobs.outgoing.is_empty(), "{bobs:?}");
    assert_eq!(bobs.incoming.len(), 1, "{bobs:?}");
    let incoming = &bobs.incoming[0];
    assert_eq!(incoming.from_user_id, alice_id);
    assert_eq!(incoming.to_user_id, bob_id);
    assert_eq!(incoming.message, "hi, it's alice from work");
    assert_eq!(incoming.username, "alice");
    assert!(incoming.requested_at_ms > 0);

    let alices = alice.contact_requests().await.unwrap();
    assert!(alices.incoming.is_empty(), "{alices:?}");
    assert_eq!(alices.outgoing.len(), 1, "{alices:?}");
    assert_eq!(alices.outgoing[0].from_user_id, alice_id);
    assert_eq!(alices.outgoing[0].to_user_id, bob_id);
    // The other user's names, for display.
    assert_eq!(alices.outgoing[0].username, "bob");
    assert!(alice.friends().await.unwrap().is_empty());

    bob.accept_contact_request(&alice_id).await.unwrap();
    let accepted = contact_event(&alice, ContactEventKind::RequestAccepted, &bob_id).await;
    assert_eq!(accepted.username, "bob");

    let alices_friends = alice.friends().await.unwrap();
    assert_eq!(friend_ids(&alices_friends), vec![bob_id.clone()]);
    let friend = &alices_friends[0];
    assert_eq!(friend.username, "bob");
    assert!(friend.since_ms > 0);
    assert!(!friend.blocked);
    let presence = friend.presence.as_ref().expect("a friend carries presence");
    assert!(presence.online, "{presence:?}");

    let bobs_friends = bob.friends().await.unwrap();
    assert_eq!(friend_ids(&bobs_friends), vec![alice_id.clone()]);
    assert!(bobs_friends[0].presence.as_ref().unwrap().online);

    // Nothing is pending any more.
    let bobs = bob.contact_requests().await.unwrap();
    assert!(
        bobs.incoming.is_empty() && bobs.outgoing.is_empty(),
        "{bobs:?}"
    );
    let alices = alice.contact_requests().await.unwrap();
    assert!(
        alices.incoming.is_empty() && alices.outgoing.is_empty(),
        "{alices:?}"
    );

    // A friend going offline shows in the list.
    alice.close().await;
    tokio::time::timeout(WAIT, async {
        loop {
            let friends = bob.friends().await.unwrap();
            let presence = friends[0].presence.clone().unwrap();
            if !presence.online {
                assert!(presence.last_seen_ms > 0, "{presence:?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the friend list shows alice offline");
}

#[tokio::test]
async fn a_rejected_request_is_not_told_and_a_cancelled_one_is() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));

    alice.send_contact_request(&bob_id, "hi").await.unwrap();
    contact_event(&bob, ContactEventKind::RequestReceived, &alice_id).await;
    bob.reject_contact_request(&alice_id).await.unwrap();
    // Rejections are not told.
    let events = drain(&alice, QUIET).await;
    assert!(contact_events(&events).is_empty(), "{events:?}");
    assert!(bob.contact_requests().await.unwrap().incoming.is_empty());
    assert!(alice.contact_requests().await.unwrap().outgoing.is_empty());
    assert!(alice.friends().await.unwrap().is_empty());
    assert!(bob.friends().await.unwrap().is_empty());

    // Asking again after a rejection is allowed; the sender may withdraw it.
    alice.send_contact_request(&bob_id, "again").await.unwrap();
    let received = contact_event(&bob, ContactEventKind::RequestReceived, &alice_id).await;
    assert_eq!(received.message, "again");
    alice.cancel_contact_request(&bob_id).await.unwrap();
    let cancelled = contact_event(&bob, ContactEventKind::RequestCancelled, &alice_id).await;
    assert_eq!(cancelled.username, "alice");
    assert!(bob.contact_requests().await.unwrap().incoming.is_empty());
    assert!(alice.contact_requests().await.unwrap().outgoing.is_empty());
    // Nothing is left to accept.
    assert!(bob.accept_contact_request(&alice_id).await.is_err());
    assert!(bob.friends().await.unwrap().is_empty());
}

#[tokio::test]
async fn mutual_requests_make_friends_at_once_and_deleting_is_told() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));

    assert!(
        !alice
            .send_contact_request(&bob_id, "hi")
            .await
            .unwrap()
            .now_friends
    );
    contact_event(&bob, ContactEventKind::RequestReceived, &alice_id).await;
    // Bob asks back instead of accepting: friends at once.
    let done = bob.send_contact_request(&alice_id, "hi!").await.unwrap();
    assert!(done.now_friends);
    assert_eq!(
        friend_ids(&alice.friends().await.unwrap()),
        vec![bob_id.clone()]
    );
    assert_eq!(
        friend_ids(&bob.friends().await.unwrap()),
        vec![alice_id.clone()]
    );
    for lists in [
        alice.contact_requests().await.unwrap(),
        bob.contact_requests().await.unwrap(),
    ] {
        assert!(
            lists.incoming.is_empty() && lists.outgoing.is_empty(),
            "{lists:?}"
        );
    }

    // Bob removes alice: she is told; neither lists the other.
    bob.delete_friend(&alice_id).await.unwrap();
    let removed = contact_event(&alice, ContactEventKind::FriendRemoved, &bob_id).await;
    assert_eq!(removed.username, "bob");
    assert!(alice.friends().await.unwrap().is_empty());
    assert!(bob.friends().await.unwrap().is_empty());

    // And they can become friends again.
    befriend(&alice, &bob).await;
    assert_eq!(friend_ids(&bob.friends().await.unwrap()), vec![alice_id]);
}

#[tokio::test]
async fn requests_to_oneself_unknown_users_friends_and_twice_are_handled() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));

    assert_eq!(
        code(alice.send_contact_request(&alice_id, "me").await),
        Some(ErrorCode::InvalidArgument)
    );
    let nobody = quip_protocol::ids::new_user_id(0x0123_4567_89ab_cdef);
    assert_ne!(nobody, alice_id);
    assert_eq!(
        code(alice.send_contact_request(&nobody, "who?").await),
        Some(ErrorCode::NotFound)
    );
    // The message is at most 256 bytes.
    let too_long = code(alice.send_contact_request(&bob_id, &"x".repeat(257)).await);
    assert!(
        matches!(
            too_long,
            Some(ErrorCode::InvalidArgument | ErrorCode::MessageTooLarge)
        ),
        "{too_long:?}"
    );

    // Asking twice replaces the request (and its message); no error.
    alice.send_contact_request(&bob_id, "first").await.unwrap();
    alice.send_contact_request(&bob_id, "second").await.unwrap();
    let outgoing = alice.contact_requests().await.unwrap().outgoing;
    assert_eq!(outgoing.len(), 1, "{outgoing:?}");
    assert_eq!(outgoing[0].message, "second");
    let incoming = bob.contact_requests().await.unwrap().incoming;
    assert_eq!(incoming.len(), 1, "{incoming:?}");
    assert_eq!(incoming[0].message, "second");

    // Already friends: CONFLICT, either way round.
    bob.accept_contact_request(&alice_id).await.unwrap();
    assert_eq!(
        code(alice.send_contact_request(&bob_id, "again?").await),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        code(bob.send_contact_request(&alice_id, "again?").await),
        Some(ErrorCode::Conflict)
    );

    // Deciding or cancelling what does not exist is refused.
    assert!(carol.accept_contact_request(&alice_id).await.is_err());
    assert!(carol.reject_contact_request(&alice_id).await.is_err());
    assert!(carol.cancel_contact_request(&alice_id).await.is_err());
    assert!(carol.friends().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------
// Blocking

#[tokio::test]
async fn blocking_refuses_messages_requests_and_calls_both_ways_but_not_groups() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));

    // A 1:1 conversation and a shared group, before the block.
    bob.send_text(&alice_id, "hi alice").await.unwrap();
    assert_eq!(text(&next_text(&alice).await), "hi alice");
    let group = alice
        .create_group(
            "team",
            "",
            &[bob_id.clone(), id(&carol)],
            pb::JoinMode::Open,
        )
        .await
        .unwrap()
        .group
        .unwrap();
    // A pending request from bob, dropped by the block.
    bob.send_contact_request(&alice_id, "friends?")
        .await
        .unwrap();
    assert_eq!(alice.contact_requests().await.unwrap().incoming.len(), 1);

    alice.block(&bob_id).await.unwrap();
    let blocked = alice.blocked().await.unwrap();
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0].user_id, bob_id);
    assert_eq!(blocked[0].username, "bob");
    assert!(blocked[0].blocked_at_ms > 0);
    assert!(bob.blocked().await.unwrap().is_empty());
    assert!(alice.contact_requests().await.unwrap().incoming.is_empty());
    assert!(bob.contact_requests().await.unwrap().outgoing.is_empty());

    // The blocked user: messages, requests and calls to the blocker are refused.
    assert_eq!(
        code(bob.send_text(&alice_id, "hello?").await),
        Some(ErrorCode::Blocked)
    );
    assert_eq!(
        code(bob.send_contact_request(&alice_id, "please").await),
        Some(ErrorCode::Blocked)
    );
    assert_eq!(
        code(bob.call_invite(&alice_id, pb::CallMedia::Audio).await),
        Some(ErrorCode::Blocked)
    );
    // The blocker must unblock first.
    assert_eq!(
        code(alice.send_text(&bob_id, "you're blocked").await),
        Some(ErrorCode::Blocked)
    );
    // Others are not affected.
    carol.send_text(&alice_id, "hi from carol").await.unwrap();
    assert_eq!(text(&next_text(&alice).await), "hi from carol");

    // Group messages are not affected, either way.
    bob.send_group_text(&group.group_id, "group hello from bob")
        .await
        .unwrap();
    let message = next_text(&alice).await;
    assert_eq!(text(&message), "group hello from bob");
    assert_eq!(message.conv_id, group.conv_id);
    alice
        .send_group_text(&group.group_id, "group hello from alice")
        .await
        .unwrap();
    let message = loop {
        let message = next_text(&bob).await;
        if message.conv_id == group.conv_id && message.from == alice_id {
            break message;
        }
    };
    assert_eq!(text(&message), "group hello from alice");

    // Unblocking restores everything.
    alice.unblock(&bob_id).await.unwrap();
    assert!(alice.blocked().await.unwrap().is_empty());
    bob.send_text(&alice_id, "back again").await.unwrap();
    let message = next_text(&alice).await;
    assert_eq!(text(&message), "back again");
    alice.send_text(&bob_id, "welcome back").await.unwrap();
    let message = loop {
        let message = next_text(&bob).await;
        if message.from == alice_id && message.conv_id != group.conv_id {
            break message;
        }
    };
    assert_eq!(text(&message), "welcome back");
    bob.send_contact_request(&alice_id, "friends now?")
        .await
        .unwrap();
    contact_event(&alice, ContactEventKind::RequestReceived, &bob_id).await;
}

#[tokio::test]
async fn blocking_keeps_the_friendship_but_silences_presence() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b1").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));
    befriend(&alice, &bob).await;

    // Before the block, a friend's presence reaches alice.
    bob.close().await;
    presence_of(&alice, &bob_id, false).await;
    let bob = broker.device("bob", "b1").await;
    presence_of(&alice, &bob_id, true).await;

    alice.block(&bob_id).await.unwrap();
    // Still friends, marked blocked.
    let friends = alice.friends().await.unwrap();
    assert_eq!(friend_ids(&friends), vec![bob_id.clone()]);
    assert!(friends[0].blocked, "{friends:?}");
    assert!(!bob.friends().await.unwrap()[0].blocked);

    // Bob leaves and comes back: alice hears nothing of it.
    bob.close().await;
    let bob = broker.device("bob", "b1").await;
    bob.close().await;
    let events = drain(&alice, QUIET).await;
    let about_bob: Vec<_> = events
        .iter()
        .filter(|event| matches!(event, Event::Presence(p) if p.user_id == bob_id))
        .collect();
    assert!(
        about_bob.is_empty(),
        "presence of a blocked user: {about_bob:?}"
    );
    // Bob still sees alice (the block is one-sided).
    let bob = broker.device("bob", "b1").await;
    assert!(bob.presence(&[&alice_id]).await.unwrap()[0].online);

    // Unblocked: bob's presence reaches alice again.
    alice.unblock(&bob_id).await.unwrap();
    assert!(!alice.friends().await.unwrap()[0].blocked);
    bob.close().await;
    presence_of(&alice, &bob_id, false).await;
    let _bob = broker.device("bob", "b1").await;
    presence_of(&alice, &bob_id, true).await;
}

// ---------------------------------------------------------------------------------
// Friends only

#[tokio::test]
async fn friends_only_refuses_strangers_but_not_friends_or_groups() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let (alice_id, bob_id, carol_id) = (id(&alice), id(&bob), id(&carol));
    befriend(&carol, &bob).await;
    let group = bob
        .create_group(
            "club",
            "",
            std::slice::from_ref(&alice_id),
            pb::JoinMode::Open,
        )
        .await
        .unwrap()
        .group
        .unwrap();

    assert!(!bob.contact_settings().await.unwrap().friends_only_dm);
    let now = bob
        .set_contact_settings(pb::ContactSettings {
            friends_only_dm: true,
        })
        .await
        .unwrap();
    assert!(now.friends_only_dm);
    assert!(bob.contact_settings().await.unwrap().friends_only_dm);
    assert!(!alice.contact_settings().await.unwrap().friends_only_dm);

    // A stranger: refused for messages and calls.
    assert_eq!(
        code(alice.send_text(&bob_id, "hi stranger").await),
        Some(ErrorCode::ContactsOnly)
    );
    assert_eq!(
        code(alice.call_invite(&bob_id, pb::CallMedia::Video).await),
        Some(ErrorCode::ContactsOnly)
    );
    // A friend: fine.
    carol.send_text(&bob_id, "hi friend").await.unwrap();
    let message = next_text(&bob).await;
    assert_eq!(
        (text(&message), message.from.as_str()),
        ("hi friend", carol_id.as_str())
    );
    // Groups are not affected.
    alice
        .send_group_text(&group.group_id, "hi club")
        .await
        .unwrap();
    let message = next_text(&bob).await;
    assert_eq!(
        (text(&message), message.conv_id.as_str()),
        ("hi club", group.conv_id.as_str())
    );
    // A friend request is still possible; once friends, messages pass.
    befriend(&alice, &bob).await;
    alice.send_text(&bob_id, "hi friend bob").await.unwrap();
    assert_eq!(text(&next_text(&bob).await), "hi friend bob");

    // Turned off: strangers may write again.
    let dave = broker.user("dave", "d").await;
    assert_eq!(
        code(dave.send_text(&bob_id, "hi").await),
        Some(ErrorCode::ContactsOnly)
    );
    let now = bob
        .set_contact_settings(pb::ContactSettings {
            friends_only_dm: false,
        })
        .await
        .unwrap();
    assert!(!now.friends_only_dm);
    dave.send_text(&bob_id, "hi now").await.unwrap();
    assert_eq!(text(&next_text(&bob).await), "hi now");
}

#[tokio::test]
async fn edits_obey_blocks() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let ack = alice.send_text(&id(&bob), "hi bob").await.unwrap();

    // An edit reaches the recipient again: once blocked, it is refused like a send.
    bob.block(&id(&alice)).await.unwrap();
    assert_eq!(
        code(alice.edit(&ack.conv_id, ack.seq, "hi again").await),
        Some(ErrorCode::Blocked)
    );
}
