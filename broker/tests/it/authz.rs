//! Authorization (issue 11), where no other test proves it: for each request kind the
//! refusal's stable code for whoever may not, and success for whoever may; revocations
//! (logging a device out, logging out everywhere, disabling an account, resetting a
//! password) closing the user's live QUIC and WebSocket sessions at once and refusing
//! their tokens; and secrets kept out of `Debug` output, `print-config` and the logs.
//! The README's "Security" table names the test behind each row. Real brokers on
//! loopback, real SDK clients, raw QUIC sessions and real WebSockets; nothing here
//! asserts how long anything took.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use common::web::{self, Account, Web, close_code, heartbeat};
use common::{PASSWORD, TestBroker, WAIT};
use quip_broker::Config;
use quip_broker::service::{CallLimits, Caller, ServiceResult};
use quip_protocol::ErrorCode;
use quip_sdk::{Client, ClientOptions, GroupUpdate, Trust, pb};
use reqwest::Method;
use serde_json::{Value, json};

fn id(client: &Client) -> String {
    client.user_id().expect("logged in")
}

fn code<T: std::fmt::Debug>(result: quip_sdk::Result<T>) -> Option<ErrorCode> {
    result.expect_err("the broker refuses").code()
}

const FORBIDDEN: Option<ErrorCode> = Some(ErrorCode::Forbidden);
const NOT_FOUND: Option<ErrorCode> = Some(ErrorCode::NotFound);

// ---------------------------------------------------------------------------------
// Recall and edit

#[tokio::test]
async fn group_recall_and_edit_follow_roles_membership_and_a_live_group() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let admin = broker.user("admin", "a").await;
    let peer = broker.user("peer", "p").await;
    let member = broker.user("member", "m").await;
    let leaver = broker.user("leaver", "l").await;
    let outsider = broker.user("outsider", "x").await;
    let members = [id(&admin), id(&peer), id(&member), id(&leaver)];
    let group = owner
        .create_group("team", "", &members, pb::JoinMode::Open)
        .await
        .unwrap()
        .group
        .unwrap();
    let (group_id, conv) = (group.group_id.clone(), group.conv_id.clone());
    for user in [&admin, &peer] {
        owner
            .set_member_role(&group_id, &id(user), pb::GroupRole::Admin)
            .await
            .unwrap();
    }
    let by_member = member.send_group_text(&group_id, "m").await.unwrap().seq;
    let by_admin = admin.send_group_text(&group_id, "a").await.unwrap().seq;
    let by_peer = peer.send_group_text(&group_id, "p").await.unwrap().seq;
    let by_owner = owner.send_group_text(&group_id, "o").await.unwrap().seq;

    // Recalling another's message needs a higher group role; editing is the sender's.
    assert_eq!(code(member.recall(&conv, by_admin).await), FORBIDDEN);
    assert_eq!(code(admin.recall(&conv, by_peer).await), FORBIDDEN);
    assert_eq!(code(admin.recall(&conv, by_owner).await), FORBIDDEN);
    assert_eq!(code(owner.edit(&conv, by_member, "mine").await), FORBIDDEN);
    // Outsiders are not in the conversation at all.
    assert_eq!(code(outsider.recall(&conv, by_member).await), FORBIDDEN);
    assert_eq!(code(outsider.edit(&conv, by_member, "x").await), FORBIDDEN);
    // Those who may.
    admin.recall(&conv, by_member).await.unwrap();
    owner.recall(&conv, by_admin).await.unwrap();
    peer.edit(&conv, by_peer, "p, edited").await.unwrap();

    // Muted: an edit speaks again (MUTED); a recall of one's own only removes.
    let before_mute = member.send_group_text(&group_id, "hm").await.unwrap().seq;
    admin
        .mute_member(&group_id, &id(&member), u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        code(member.edit(&conv, before_mute, "x").await),
        Some(ErrorCode::Muted)
    );
    member.recall(&conv, before_mute).await.unwrap();
    admin.mute_member(&group_id, &id(&member), 0).await.unwrap();

    // A former member changes nothing, not even their own messages.
    let left_behind = leaver.send_group_text(&group_id, "bye").await.unwrap().seq;
    leaver.leave_group(&group_id).await.unwrap();
    assert_eq!(code(leaver.recall(&conv, left_behind).await), FORBIDDEN);
    assert_eq!(code(leaver.edit(&conv, left_behind, "x").await), FORBIDDEN);

    // A dissolved group is read-only: no recall or edit by anyone, of anything.
    let last_words = member.send_group_text(&group_id, "last").await.unwrap().seq;
    let closing = owner
        .send_group_text(&group_id, "closing")
        .await
        .unwrap()
        .seq;
    member.edit(&conv, last_words, "last!").await.unwrap();
    owner.dissolve_group(&group_id).await.unwrap();
    assert_eq!(code(member.recall(&conv, last_words).await), FORBIDDEN);
    assert_eq!(code(member.edit(&conv, last_words, "x").await), FORBIDDEN);
    assert_eq!(code(owner.recall(&conv, last_words).await), FORBIDDEN);
    assert_eq!(code(owner.recall(&conv, closing).await), FORBIDDEN);
    let page = member.history(&conv, 0, 0, 200).await.unwrap();
    let last = page.messages.iter().find(|m| m.seq == last_words).unwrap();
    assert!(!last.recalled, "{last:?}");
    assert_eq!(common::text(last), "last!");
}

#[tokio::test]
async fn one_to_one_recall_is_the_senders_and_not_stopped_by_a_block() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let first = alice.send_text(&id(&bob), "one").await.unwrap();
    let second = alice.send_text(&id(&bob), "two").await.unwrap();
    let conv = first.conv_id.clone();
    // Not the recipient's, nor a stranger's (who is not in the conversation).
    assert_eq!(code(bob.recall(&conv, first.seq).await), FORBIDDEN);
    assert_eq!(code(carol.recall(&conv, first.seq).await), FORBIDDEN);
    assert_eq!(code(carol.edit(&conv, first.seq, "x").await), FORBIDDEN);
    // Blocked by bob, alice may no longer edit (an edit reaches bob again) but may
    // still take back what she sent: a recall only removes.
    bob.block(&id(&alice)).await.unwrap();
    assert_eq!(
        code(alice.edit(&conv, second.seq, "again").await),
        Some(ErrorCode::Blocked)
    );
    alice.recall(&conv, first.seq).await.unwrap();
    let page = bob.history(&conv, 0, 0, 50).await.unwrap();
    assert!(
        page.messages
            .iter()
            .any(|m| m.seq == first.seq && m.recalled)
    );
}

// ---------------------------------------------------------------------------------
// Typing, presence, receipts

/// Runs a typing notice through the chat service as `client`'s user (the wire's
/// `Typing` has no answer to carry a refusal).
async fn typing(broker: &TestBroker, client: &Client, conv_id: &str) -> ServiceResult<usize> {
    let user_id = id(client);
    let caller = Caller {
        user_id: &user_id,
        device_id: client.device_id(),
        session_id: 0,
    };
    let notice = pb::Typing {
        conv_id: conv_id.to_owned(),
        kind: pb::TypingKind::Typing as i32,
    };
    broker.broker().context().chat.typing(caller, &notice).await
}

#[tokio::test]
async fn typing_needs_a_current_place_in_the_conversation() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let leaver = broker.user("leaver", "l").await;
    let single = alice.send_text(&id(&bob), "hi").await.unwrap().conv_id;
    let group = alice
        .create_group("team", "", &[id(&bob), id(&leaver)], pb::JoinMode::Open)
        .await
        .unwrap()
        .group
        .unwrap();
    leaver.leave_group(&group.group_id).await.unwrap();

    let refused = |result: ServiceResult<usize>| result.expect_err("refused").code();
    assert!(typing(&broker, &alice, &single).await.is_ok());
    assert!(typing(&broker, &bob, &single).await.is_ok());
    assert!(typing(&broker, &bob, &group.conv_id).await.is_ok());
    assert_eq!(
        refused(typing(&broker, &carol, &single).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(typing(&broker, &leaver, &group.conv_id).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(typing(&broker, &carol, &group.conv_id).await),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn group_presence_is_for_members_and_presence_for_any_signed_in_user() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let member = broker.user("member", "m").await;
    let leaver = broker.user("leaver", "l").await;
    let stranger = broker.user("stranger", "s").await;
    let group = owner
        .create_group("team", "", &[id(&member), id(&leaver)], pb::JoinMode::Open)
        .await
        .unwrap()
        .group
        .unwrap();
    leaver.leave_group(&group.group_id).await.unwrap();

    let presence = member.group_presence(&group.group_id, 0).await.unwrap();
    assert_eq!(presence.member_count, 2);
    assert_eq!(
        code(leaver.group_presence(&group.group_id, 0).await),
        FORBIDDEN
    );
    assert_eq!(
        code(stranger.group_presence(&group.group_id, 0).await),
        FORBIDDEN
    );
    // A user's own presence is anyone's to ask (a new 1:1 chat shows it before the
    // first message); only malformed ids are refused.
    let owner_id = id(&owner);
    let seen = stranger.presence(&[owner_id.as_str()]).await.unwrap();
    assert!(seen[0].online, "{seen:?}");
    assert_eq!(
        code(stranger.presence(&["not-a-user"]).await),
        Some(ErrorCode::InvalidArgument)
    );
}

#[tokio::test]
async fn receipts_and_readers_follow_what_the_caller_may_read() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let member = broker.user("member", "m").await;
    let leaver = broker.user("leaver", "l").await;
    let outsider = broker.user("outsider", "x").await;
    let group = owner
        .create_group("team", "", &[id(&member), id(&leaver)], pb::JoinMode::Open)
        .await
        .unwrap()
        .group
        .unwrap();
    let conv = group.conv_id.clone();
    let before = owner
        .send_group_text(&group.group_id, "before")
        .await
        .unwrap()
        .seq;
    member.mark_read(&conv, before).await.unwrap();
    leaver.leave_group(&group.group_id).await.unwrap();
    let after = owner
        .send_group_text(&group.group_id, "after")
        .await
        .unwrap()
        .seq;
    member.mark_read(&conv, after).await.unwrap();

    // A member sees counts and readers of everything.
    let counts = member.receipts(&conv, &[before, after]).await.unwrap();
    assert_eq!(
        (counts.counts[1].recipients, counts.counts[1].read),
        (1, 1),
        "{counts:?}"
    );
    let readers = member.readers(&conv, after, "", 0).await.unwrap();
    assert_eq!(readers.user_ids, vec![id(&member)]);
    // A former member: what they saw, nothing after their leaving.
    let counts = leaver.receipts(&conv, &[before, after]).await.unwrap();
    assert_eq!(counts.counts[0].read, 1, "{counts:?}");
    assert_eq!(
        (counts.counts[1].recipients, counts.counts[1].read),
        (0, 0),
        "{counts:?}"
    );
    let readers = leaver.readers(&conv, after, "", 0).await.unwrap();
    assert!(readers.user_ids.is_empty(), "{readers:?}");
    // Outsiders: refused, in groups and in other people's 1:1 chats.
    assert_eq!(code(outsider.receipts(&conv, &[before]).await), FORBIDDEN);
    assert_eq!(
        code(outsider.readers(&conv, before, "", 0).await),
        FORBIDDEN
    );
    let single = owner.send_text(&id(&member), "1:1").await.unwrap();
    member.mark_read(&single.conv_id, single.seq).await.unwrap();
    let readers = owner
        .readers(&single.conv_id, single.seq, "", 0)
        .await
        .unwrap();
    assert_eq!(readers.user_ids, vec![id(&member)]);
    assert_eq!(
        code(outsider.readers(&single.conv_id, single.seq, "", 0).await),
        FORBIDDEN
    );
    assert_eq!(
        code(outsider.receipts(&single.conv_id, &[single.seq]).await),
        FORBIDDEN
    );
}

// ---------------------------------------------------------------------------------
// Calls

#[tokio::test]
async fn only_the_two_ends_of_a_call_may_act_on_it() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "phone").await;
    let alice_laptop = broker.device("alice", "laptop").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    assert_eq!(
        code(
            carol
                .call_invite("user_doesnotexist", pb::CallMedia::Audio)
                .await
        ),
        NOT_FOUND
    );
    let call = alice
        .call_invite(&id(&bob), pb::CallMedia::Audio)
        .await
        .unwrap();
    assert_eq!(call.ended, 0, "bob's device rings: {call:?}");
    let call_id = call.call_id.as_str();

    use pb::CallAction::{Accept, Cancel, Hangup};
    // Someone else, or another device of the caller: not in the call.
    assert_eq!(code(carol.call_action(call_id, Accept).await), FORBIDDEN);
    assert_eq!(code(carol.call_action(call_id, Hangup).await), FORBIDDEN);
    assert_eq!(
        code(alice_laptop.call_action(call_id, Cancel).await),
        FORBIDDEN
    );
    // Each side does only its own part.
    assert_eq!(code(alice.call_action(call_id, Accept).await), FORBIDDEN);
    assert_eq!(code(bob.call_action(call_id, Cancel).await), FORBIDDEN);
    bob.call_action(call_id, Accept).await.unwrap();
    alice.call_action(call_id, Hangup).await.unwrap();
    assert_eq!(code(alice.call_action(call_id, Hangup).await), NOT_FOUND);
}

// ---------------------------------------------------------------------------------
// Contacts

#[tokio::test]
async fn contact_requests_are_decided_by_their_recipient_and_cancelled_by_their_sender() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let (alice_id, bob_id) = (id(&alice), id(&bob));
    alice.send_contact_request(&bob_id, "hi").await.unwrap();

    // Nobody but bob decides alice's request, and only alice cancels it.
    assert_eq!(
        code(carol.accept_contact_request(&alice_id).await),
        NOT_FOUND
    );
    assert_eq!(
        code(carol.reject_contact_request(&alice_id).await),
        NOT_FOUND
    );
    assert_eq!(code(alice.accept_contact_request(&bob_id).await), NOT_FOUND);
    assert_eq!(code(bob.cancel_contact_request(&alice_id).await), NOT_FOUND);
    assert_eq!(code(carol.cancel_contact_request(&bob_id).await), NOT_FOUND);
    assert_eq!(bob.contact_requests().await.unwrap().incoming.len(), 1);
    bob.accept_contact_request(&alice_id).await.unwrap();
    assert_eq!(alice.friends().await.unwrap()[0].user_id, bob_id);

    // One's own friends and blocks only.
    assert_eq!(code(carol.delete_friend(&alice_id).await), NOT_FOUND);
    assert_eq!(code(carol.unblock(&alice_id).await), NOT_FOUND);
    assert!(carol.friends().await.unwrap().is_empty());
    assert_eq!(bob.friends().await.unwrap()[0].user_id, alice_id);
}

// ---------------------------------------------------------------------------------
// Group operations

#[tokio::test]
async fn group_operations_need_membership_their_role_and_a_live_group() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let admin = broker.user("admin", "a").await;
    let member = broker.user("member", "m").await;
    let outsider = broker.user("outsider", "x").await;
    let candidate = broker.user("candidate", "c").await;
    let group = owner
        .create_group(
            "team",
            "",
            &[id(&admin), id(&member)],
            pb::JoinMode::Approval,
        )
        .await
        .unwrap()
        .group
        .unwrap();
    let group_id = group.group_id.clone();
    owner
        .set_member_role(&group_id, &id(&admin), pb::GroupRole::Admin)
        .await
        .unwrap();
    let rename = || GroupUpdate {
        name: Some("renamed".into()),
        ..Default::default()
    };

    // The group's card is public; everything else is for members.
    let info = outsider.group_info(&group_id).await.unwrap();
    assert_eq!(
        (info.my_role, info.member_count),
        (pb::GroupRole::Unspecified as i32, 3)
    );
    assert_eq!(
        code(outsider.group_members(&group_id, "", 0).await),
        FORBIDDEN
    );
    assert_eq!(code(outsider.leave_group(&group_id).await), FORBIDDEN);
    assert_eq!(
        code(outsider.kick(&group_id, &id(&member)).await),
        FORBIDDEN
    );
    assert_eq!(
        code(outsider.invite(&group_id, &[id(&candidate)]).await),
        FORBIDDEN
    );
    assert_eq!(
        code(outsider.update_group(&group_id, rename()).await),
        FORBIDDEN
    );
    assert_eq!(code(outsider.join_requests(&group_id).await), FORBIDDEN);

    // Join requests are decided by owners and admins only.
    let pending = candidate.join_group(&group_id, "please").await.unwrap();
    assert!(pending.pending_approval);
    assert_eq!(code(member.join_requests(&group_id).await), FORBIDDEN);
    assert_eq!(
        code(
            member
                .decide_join_request(&group_id, &id(&candidate), true)
                .await
        ),
        FORBIDDEN
    );
    let decided = admin
        .decide_join_request(&group_id, &id(&candidate), true)
        .await
        .unwrap();
    assert_eq!(decided.group.unwrap().member_count, 4);

    // Dissolved: nothing changes any more, for anyone; members still read.
    owner.dissolve_group(&group_id).await.unwrap();
    let outsider_id = id(&outsider);
    assert_eq!(
        code(
            owner
                .invite(&group_id, std::slice::from_ref(&outsider_id))
                .await
        ),
        FORBIDDEN
    );
    assert_eq!(code(owner.kick(&group_id, &id(&member)).await), FORBIDDEN);
    assert_eq!(
        code(owner.update_group(&group_id, rename()).await),
        FORBIDDEN
    );
    assert_eq!(
        code(
            owner
                .set_member_role(&group_id, &id(&member), pb::GroupRole::Admin)
                .await
        ),
        FORBIDDEN
    );
    assert_eq!(
        code(admin.mute_member(&group_id, &id(&member), u64::MAX).await),
        FORBIDDEN
    );
    assert_eq!(code(owner.set_mute_all(&group_id, true).await), FORBIDDEN);
    assert_eq!(
        code(owner.transfer_group(&group_id, &id(&admin)).await),
        FORBIDDEN
    );
    assert_eq!(code(owner.dissolve_group(&group_id).await), FORBIDDEN);
    assert_eq!(code(member.leave_group(&group_id).await), FORBIDDEN);
    assert_eq!(code(outsider.join_group(&group_id, "").await), FORBIDDEN);
    assert!(member.group_info(&group_id).await.unwrap().dissolved);
    let page = member.group_members(&group_id, "", 0).await.unwrap();
    assert_eq!(page.members.len(), 4);
    let history = member.history(&group.conv_id, 0, 0, 50).await.unwrap();
    assert!(!history.messages.is_empty());
}

// ---------------------------------------------------------------------------------
// Revocation: live sessions on both transports, and the tokens

/// A Hello frame with `auth` for `device_id`.
fn hello(device_id: &str, auth: pb::hello::Auth) -> Vec<u8> {
    let frame = pb::ClientFrame {
        req_id: 1,
        body: Some(pb::client_frame::Body::Hello(pb::Hello {
            auth: Some(auth),
            device_id: device_id.to_owned(),
            client_version: "authz-test".into(),
            ..Default::default()
        })),
    };
    let mut bytes = BytesMut::new();
    quip_protocol::encode_frame(&frame, &mut bytes);
    bytes.to_vec()
}

/// A device's tokens, from a REST login.
struct Tokens {
    account: Account,
    refresh_token: String,
}

async fn log_in(web: &Web, username: &str, device_id: &str) -> Tokens {
    let (status, body) = web.login_with(username, PASSWORD, device_id).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    Tokens {
        account: Account {
            user_id: data["user_id"].as_str().unwrap().into(),
            token: data["token"].as_str().unwrap().into(),
            device_id: device_id.into(),
        },
        refresh_token: data["refresh_token"].as_str().unwrap().into(),
    }
}

/// One user with a live QUIC session (raw: its `HelloOk` seen) on one device and a
/// live WebSocket on another, and the tokens of both devices.
struct Victim {
    user_id: String,
    quic: QuicSession,
    quic_tokens: Tokens,
    ws: web::Socket,
    ws_tokens: Tokens,
}

impl Victim {
    async fn new(broker: &TestBroker, web: &Web, username: &str) -> Victim {
        let registered = web.account(username).await;
        let quic_tokens = log_in(web, username, &format!("{username}-quic")).await;
        let auth = pb::hello::Auth::AccessToken(quic_tokens.account.token.clone());
        let quic = QuicSession::open(broker, &hello(&quic_tokens.account.device_id, auth)).await;
        let ws_tokens = log_in(web, username, &format!("{username}-web")).await;
        let ws = web.synced_socket(&ws_tokens.account).await;
        Victim {
            user_id: registered.user_id,
            quic,
            quic_tokens,
            ws,
            ws_tokens,
        }
    }
}

/// A raw QUIC session: the control stream stays open (closing it ends the session).
struct QuicSession {
    connection: quinn::Connection,
    _control: (quinn::SendStream, quinn::RecvStream),
}

impl QuicSession {
    /// Sends `hello` on a new connection's control stream; the answer must be HelloOk.
    async fn open(broker: &TestBroker, hello: &[u8]) -> QuicSession {
        let options = quip_sdk::TransportOptions::default();
        let connection = quip_sdk::dial(broker.addr(), &broker.trust(), "localhost", &options)
            .await
            .unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(hello).await.unwrap();
        let mut buf = BytesMut::new();
        let decoder = quip_protocol::FrameDecoder::new(1 << 20);
        let first = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(frame) = decoder.decode::<pb::ServerFrame>(&mut buf).unwrap() {
                    return frame;
                }
                let chunk = recv.read_chunk(4096, true).await.unwrap().expect("open");
                buf.extend_from_slice(&chunk.bytes);
            }
        })
        .await
        .expect("the broker answers the Hello");
        assert!(
            matches!(first.body, Some(pb::server_frame::Body::HelloOk(_))),
            "{first:?}"
        );
        QuicSession {
            connection,
            _control: (send, recv),
        }
    }
}

/// The application code the broker closed a QUIC session with.
async fn quic_closed(session: &QuicSession) -> Option<ErrorCode> {
    let closed = tokio::time::timeout(WAIT, session.connection.closed())
        .await
        .expect("the broker closes the session");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ErrorCode::from_close_code(close.error_code.into_inner())
        }
        other => panic!("expected an application close, got {other}"),
    }
}

/// A Hello with these credentials: the broker's error code (it must refuse, and close
/// the connection with the same code).
async fn hello_refused(broker: &TestBroker, device_id: &str, auth: pb::hello::Auth) -> ErrorCode {
    let (frame, closed) = common::raw_exchange(broker, &hello(device_id, auth)).await;
    let error = match frame.and_then(|f| f.body) {
        Some(pb::server_frame::Body::Error(error)) => error,
        other => panic!("expected an Error frame, got {other:?}"),
    };
    assert_eq!(closed, Some(error.error_code()), "{error:?}");
    error.error_code()
}

/// Both tokens of a device are refused over QUIC with `code`.
async fn quic_tokens_refused(broker: &TestBroker, tokens: &Tokens, code: ErrorCode) {
    let device = &tokens.account.device_id;
    let access = pb::hello::Auth::AccessToken(tokens.account.token.clone());
    assert_eq!(hello_refused(broker, device, access).await, code, "access");
    let refresh = pb::hello::Auth::RefreshToken(tokens.refresh_token.clone());
    assert_eq!(
        hello_refused(broker, device, refresh).await,
        code,
        "refresh"
    );
}

/// Both tokens of a device are refused over REST with `status` and `code`, and its
/// access token opens no WebSocket.
async fn web_tokens_refused(web: &Web, tokens: &Tokens, status: u16, code: ErrorCode) {
    let expected = (status, Some(code as i64));
    let (got, reply) = web
        .call(Method::GET, "/api/me", Some(&tokens.account.token), None)
        .await;
    assert_eq!((got, reply["code"].as_i64()), expected, "{reply}");
    let body =
        json!({"refresh_token": tokens.refresh_token, "device_id": tokens.account.device_id});
    let (got, reply) = web
        .call(Method::POST, "/api/refresh", None, Some(body))
        .await;
    assert_eq!((got, reply["code"].as_i64()), expected, "{reply}");
    let url = format!(
        "ws://{}/ws?token={}&device_id={}",
        web.addr, tokens.account.token, tokens.account.device_id
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

const WS_LOGGED_OUT: Option<u16> = Some(4000 + ErrorCode::LoggedOut as u16);
const WS_DISABLED: Option<u16> = Some(4000 + ErrorCode::AccountDisabled as u16);

#[tokio::test]
async fn logging_out_one_device_ends_its_session_on_either_transport_and_its_tokens() {
    let broker = web::start(|_| {}).await;
    let web = Web::new(&broker);
    let mut victim = Victim::new(&broker, &web, "victim").await;
    let keeper = log_in(&web, "victim", "victim-keeper").await.account;
    let logout = |device: &str| format!("/api/devices/{device}/logout");

    // The QUIC device: its connection closes, the WebSocket device carries on.
    let out = web
        .post(
            &logout(&victim.quic_tokens.account.device_id),
            &keeper.token,
            None,
        )
        .await;
    assert_eq!(out, json!({"sessions": 1}));
    assert_eq!(quic_closed(&victim.quic).await, Some(ErrorCode::LoggedOut));
    heartbeat(&mut victim.ws).await;
    quic_tokens_refused(&broker, &victim.quic_tokens, ErrorCode::LoggedOut).await;

    // The WebSocket device.
    let out = web
        .post(
            &logout(&victim.ws_tokens.account.device_id),
            &keeper.token,
            None,
        )
        .await;
    assert_eq!(out, json!({"sessions": 1}));
    assert_eq!(close_code(&mut victim.ws).await, WS_LOGGED_OUT);
    web_tokens_refused(&web, &victim.ws_tokens, 401, ErrorCode::LoggedOut).await;

    // The device that did it keeps working, and so does a new password login.
    let me = web.get("/api/me", &keeper.token).await;
    assert_eq!(me["user_id"], victim.user_id.as_str());
    log_in(&web, "victim", "victim-quic").await;
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session_on_both_transports_and_their_tokens() {
    let broker = web::start(|_| {}).await;
    let web = Web::new(&broker);
    let mut victim = Victim::new(&broker, &web, "victim").await;
    let keeper = log_in(&web, "victim", "victim-keeper").await.account;

    let out = web
        .post(
            "/api/devices/logout-all",
            &keeper.token,
            Some(json!({"keep_current": true})),
        )
        .await;
    assert_eq!(out, json!({"sessions": 2}));
    assert_eq!(quic_closed(&victim.quic).await, Some(ErrorCode::LoggedOut));
    assert_eq!(close_code(&mut victim.ws).await, WS_LOGGED_OUT);
    quic_tokens_refused(&broker, &victim.quic_tokens, ErrorCode::LoggedOut).await;
    web_tokens_refused(&web, &victim.ws_tokens, 401, ErrorCode::LoggedOut).await;
    web.get("/api/devices", &keeper.token).await;
}

#[tokio::test]
async fn disabling_an_account_ends_its_sessions_on_both_transports_and_its_tokens() {
    let broker = web::start(|c| c.admin_usernames = vec!["root".into()]).await;
    let web = Web::new(&broker);
    let root = web.account("root").await;
    let mut victim = Victim::new(&broker, &web, "victim").await;
    let bystander = web.account("bystander").await;
    let mut bystander_ws = web.synced_socket(&bystander).await;

    // Only an admin may.
    web.refused(
        Method::POST,
        &format!("/api/admin/users/{}/disable", victim.user_id),
        &bystander.token,
        None,
        403,
        ErrorCode::Forbidden as i64,
    )
    .await;
    heartbeat(&mut victim.ws).await;
    web.post(
        &format!("/api/admin/users/{}/disable", victim.user_id),
        &root.token,
        None,
    )
    .await;
    assert_eq!(
        quic_closed(&victim.quic).await,
        Some(ErrorCode::AccountDisabled)
    );
    assert_eq!(close_code(&mut victim.ws).await, WS_DISABLED);
    quic_tokens_refused(&broker, &victim.quic_tokens, ErrorCode::AccountDisabled).await;
    web_tokens_refused(&web, &victim.ws_tokens, 403, ErrorCode::AccountDisabled).await;
    heartbeat(&mut bystander_ws).await;

    // Enabled again, the old tokens stay revoked; a password login works.
    web.post(
        &format!("/api/admin/users/{}/enable", victim.user_id),
        &root.token,
        None,
    )
    .await;
    let (status, reply) = web
        .call(
            Method::GET,
            "/api/me",
            Some(&victim.quic_tokens.account.token),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (401, Some(ErrorCode::LoggedOut as i64)),
        "{reply}"
    );
    log_in(&web, "victim", "victim-web").await;
}

#[tokio::test]
async fn a_password_reset_ends_the_sessions_on_both_transports_and_the_old_tokens() {
    let broker = web::start(|c| c.admin_usernames = vec!["root".into()]).await;
    let web = Web::new(&broker);
    let root = web.account("root").await;
    let mut victim = Victim::new(&broker, &web, "victim").await;
    let path = format!("/api/admin/users/{}/password", victim.user_id);
    let new_password = json!({"new_password": "a brand new password"});

    // Only an admin may (nobody, not even the user, changes it with a token alone).
    web.refused(
        Method::POST,
        &path,
        &victim.ws_tokens.account.token,
        Some(new_password.clone()),
        403,
        ErrorCode::Forbidden as i64,
    )
    .await;
    heartbeat(&mut victim.ws).await;
    web.post(&path, &root.token, Some(new_password)).await;
    assert_eq!(quic_closed(&victim.quic).await, Some(ErrorCode::LoggedOut));
    assert_eq!(close_code(&mut victim.ws).await, WS_LOGGED_OUT);
    quic_tokens_refused(&broker, &victim.quic_tokens, ErrorCode::LoggedOut).await;
    web_tokens_refused(&web, &victim.ws_tokens, 401, ErrorCode::LoggedOut).await;
    let (status, reply) = web.login_with("victim", PASSWORD, "victim-web").await;
    assert_eq!(
        (status, reply["code"].as_i64()),
        (401, Some(ErrorCode::InvalidCredentials as i64)),
        "{reply}"
    );
    let (status, reply) = web
        .login_with("victim", "a brand new password", "victim-web")
        .await;
    assert_eq!(status, 200, "{reply}");
}

// ---------------------------------------------------------------------------------
// Secrets

const JWT_SECRET: &str = "jwt-secret-never-printed-0123456789abcdef";
const TURN_SECRET: &str = "turn-secret-never-printed";
const REDIS_PASSWORD: &str = "redis-password-never-printed";

#[test]
fn secrets_stay_out_of_debug_output_and_print_config() {
    let mut config = Config::for_tests(std::path::Path::new("unused"));
    config.jwt_secret = Some(JWT_SECRET.into());
    config.turn_secret = Some(TURN_SECRET.into());
    config.redis = Some(format!("redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"));
    let limits = CallLimits {
        ring_timeout: Duration::from_secs(45),
        reconnect_grace: Duration::from_secs(15),
        max_signal_bytes: 65_536,
        ice_servers: vec!["turn:turn.example.com:3478".into()],
        turn_secret: Some(TURN_SECRET.into()),
        turn_credential_ttl_secs: 86_400,
    };
    let outputs = [
        format!("{config:?}"),
        format!("{config:#?}"),
        toml::to_string(&config).unwrap(),
        toml::to_string_pretty(&config).unwrap(),
        format!("{limits:?}"),
    ];
    for output in &outputs {
        for secret in [JWT_SECRET, TURN_SECRET, REDIS_PASSWORD, "127.0.0.1:6379"] {
            assert!(!output.contains(secret), "{secret} in {output}");
        }
    }
    // Debug still shows everything else, and which secrets are set.
    let debug = &outputs[0];
    assert!(debug.contains("max_frame_bytes: 1048576"), "{debug}");
    assert!(
        debug.contains("jwt_secret: Some(\"<redacted>\")"),
        "{debug}"
    );
    assert!(debug.contains("redis: Some(\"<redacted>\")"), "{debug}");
    assert!(outputs[4].contains("turn_secret: Some(\"<redacted>\")"));
    // `print-config` output loads back as the same configuration, minus the secrets.
    let back: Config = toml::from_str(&outputs[2]).unwrap();
    assert_eq!(
        (back.jwt_secret, back.turn_secret, back.redis),
        (None, None, None)
    );
    assert_eq!(back.max_frame_bytes, config.max_frame_bytes);
}

#[tokio::test]
async fn a_running_broker_s_debug_output_holds_no_secret() {
    let broker = TestBroker::start_with(|c| {
        c.jwt_secret = Some(JWT_SECRET.into());
        c.turn_secret = Some(TURN_SECRET.into());
        c.ice_servers = vec!["turn:turn.example.com:3478".into()];
    })
    .await;
    let alice = broker.user("alice", "a").await;
    let tokens = alice.tokens().unwrap();
    let debug = format!("{:?}", broker.broker().context());
    for secret in [
        JWT_SECRET,
        TURN_SECRET,
        PASSWORD,
        &tokens.access_token,
        &tokens.refresh_token,
    ] {
        assert!(!debug.contains(secret), "{secret} in the context's Debug");
    }
}

/// The broker process of a test, stopped when the test ends (also when it fails).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines a child process writes to stdout and stderr, collected as they come.
fn collect_lines(
    reader: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            into.lock().unwrap().push(line);
        }
    })
}

/// Waits for the first collected line that `pick` accepts.
async fn line_where<T>(lines: &Mutex<Vec<String>>, pick: impl Fn(&str) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(found) = lines.lock().unwrap().iter().find_map(|l| pick(l)) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not logged: {:?}", lines.lock().unwrap()))
}

#[tokio::test]
async fn secrets_passwords_and_tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_quip-broker"))
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .env("QUIP_JWT_SECRET", JWT_SECRET)
            .env("QUIP_TURN_SECRET", TURN_SECRET)
            .env("QUIP_ICE_SERVERS", "turn:turn.example.com:3478")
            .env(
                "QUIP_LOG",
                "info,quip_broker=trace,quip_bridge_ws=trace,quip=trace",
            )
            .env("QUIP_RATE_LOGINS_PER_IP_PER_MIN", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the broker binary starts"),
    );
    let readers = [
        collect_lines(child.0.stdout.take().unwrap(), lines.clone()),
        collect_lines(child.0.stderr.take().unwrap(), lines.clone()),
    ];
    let (quic_addr, fingerprint) = line_where(&lines, |line| {
        let rest = line.strip_prefix("quip broker on quic://")?;
        let (addr, rest) = rest.split_once(" (certificate SHA-256 ")?;
        Some((
            addr.parse::<SocketAddr>().ok()?,
            rest.trim_end_matches(')').to_owned(),
        ))
    })
    .await;
    let http_addr: SocketAddr = line_where(&lines, |line| {
        let value: Value = serde_json::from_str(line).ok()?;
        value["http_addr"].as_str()?.parse().ok()
    })
    .await;

    // QUIC: registration, login, refresh, and a call that hands out TURN credentials.
    let client = |device: &str| {
        let options = ClientOptions {
            device_id: device.into(),
            ..ClientOptions::default()
        };
        let trust = Trust::fingerprint_hex(&fingerprint).unwrap();
        Client::connect_with(quic_addr, trust, options)
    };
    let alice = client("alice-phone").await.unwrap();
    let registered = alice.register("alice", PASSWORD, None).await.unwrap();
    let refreshed = alice.refresh().await.unwrap();
    let bob = client("bob-phone").await.unwrap();
    bob.register("bob", "bob's own password", None)
        .await
        .unwrap();
    let call = alice
        .call_invite(&id(&bob), pb::CallMedia::Audio)
        .await
        .unwrap();
    let turn_credential = call.ice_servers[0].credential.clone();
    assert!(!turn_credential.is_empty(), "{call:?}");
    alice
        .call_action(&call.call_id, pb::CallAction::Cancel)
        .await
        .unwrap();
    // A wrong password, too.
    let wrong = client("alice-laptop").await.unwrap();
    assert!(wrong.login("alice", "a wrong password").await.is_err());

    // REST and a WebSocket: the token travels in a URL there.
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("http://{http_addr}/api/login"))
        .json(&json!({"username": "bob", "password": "bob's own password", "device_id": "bob-web"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let web_token = login["data"]["token"].as_str().unwrap().to_owned();
    let web_refresh = login["data"]["refresh_token"].as_str().unwrap().to_owned();
    let url = format!("ws://{http_addr}/ws?token={web_token}&device_id=bob-web");
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    drop(socket);
    bob.send_text(&id(&alice), "hello").await.unwrap();
    line_where(&lines, |line| line.contains("registered").then_some(())).await;
    alice.close().await;
    bob.close().await;

    drop(child);
    for reader in readers {
        reader.join().unwrap();
    }
    let lines = lines.lock().unwrap();
    assert!(lines.len() > 5, "the broker logged: {lines:?}");
    for secret in [
        JWT_SECRET,
        TURN_SECRET,
        PASSWORD,
        "bob's own password",
        "a wrong password",
        &registered.access_token,
        &registered.refresh_token,
        &refreshed.access_token,
        &refreshed.refresh_token,
        &turn_credential,
        &web_token,
        &web_refresh,
    ] {
        for line in lines.iter() {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}
