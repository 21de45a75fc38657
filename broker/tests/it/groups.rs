//! Groups: lifecycle, join modes, roles and permissions, mutes, mentions, SYSTEM
//! messages, fan-out, sync, former members, and the size limit.
//!
//! Group operations are called on the broker's `GroupService` directly (a plain struct,
//! no transport needed); members are real SDK clients over QUIC, so fan-out and sync
//! are checked end to end.

use crate::common;

use std::time::Duration;

use common::{TestBroker, messages, next_message, until_sync_done};
use quip_broker::service::{Caller, ServiceResult};
use quip_sdk::{Client, ErrorCode, pb};

use pb::group_request::Op;
use pb::{GroupRole, JoinMode};

/// Runs one group operation as `client`'s user.
async fn op(broker: &TestBroker, client: &Client, op: Op) -> ServiceResult<pb::GroupResponse> {
    let user_id = client.user_id().unwrap();
    let caller = Caller {
        user_id: &user_id,
        device_id: client.device_id(),
        session_id: 0,
    };
    broker
        .broker()
        .context()
        .groups
        .handle(caller, pb::GroupRequest { op: Some(op) })
        .await
}

fn changed(response: ServiceResult<pb::GroupResponse>) -> pb::GroupChanged {
    match response.unwrap().result {
        Some(pb::group_response::Result::Changed(changed)) => changed,
        other => panic!("expected GroupChanged, got {other:?}"),
    }
}

fn refused(response: ServiceResult<pb::GroupResponse>) -> ErrorCode {
    response
        .expect_err("the operation should be refused")
        .code()
}

fn join(group_id: &str) -> Op {
    Op::Join(pb::JoinGroup {
        group_id: group_id.to_owned(),
        ..Default::default()
    })
}

fn leave(group_id: &str) -> Op {
    Op::Leave(pb::LeaveGroup {
        group_id: group_id.to_owned(),
    })
}

async fn create(
    broker: &TestBroker,
    owner: &Client,
    members: &[&Client],
    mode: JoinMode,
) -> String {
    let member_ids = members.iter().map(|c| c.user_id().unwrap()).collect();
    let created = changed(
        op(
            broker,
            owner,
            Op::Create(pb::CreateGroup {
                name: "Rustaceans".into(),
                description: "crabs".into(),
                member_ids,
                join_mode: mode as i32,
                ..Default::default()
            }),
        )
        .await,
    );
    assert_eq!(
        created.seq, 1,
        "creation is the conversation's first message"
    );
    created.group.unwrap().group_id
}

fn group_text(group_id: &str, text: &str) -> pb::SendRequest {
    pb::SendRequest {
        to: group_id.into(),
        kind: pb::MessageKind::Text as i32,
        content: Some(pb::send_request::Content::Text(pb::TextContent {
            text: text.into(),
            ..Default::default()
        })),
        client_msg_id: format!("g-{:x}", rand::random::<u64>()),
    }
}

fn mention(group_id: &str, text: &str, users: Vec<String>, all: bool) -> pb::SendRequest {
    let mut request = group_text(group_id, text);
    request.content = Some(pb::send_request::Content::Text(pb::TextContent {
        text: text.into(),
        mention_user_ids: users,
        mention_all: all,
    }));
    request
}

fn system_event(message: &pb::Message) -> &str {
    match &message.content {
        Some(pb::message::Content::System(system)) => &system.event,
        other => panic!("not a system message: {other:?}"),
    }
}

async fn send_code(client: &Client, request: pb::SendRequest) -> Option<ErrorCode> {
    client.send(request).await.err().and_then(|e| e.code())
}

#[tokio::test]
async fn lifecycle_info_members_and_system_messages() {
    let broker = TestBroker::start().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let group_id = create(&broker, &alice, &[&bob, &carol], JoinMode::Open).await;

    // Every member's devices got the creation message.
    for client in [&alice, &bob, &carol] {
        let created = next_message(client).await;
        assert_eq!((created.seq, system_event(&created)), (1, "group_created"));
        assert_eq!(created.group_id, group_id);
    }

    let info = match op(
        &broker,
        &bob,
        Op::Get(pb::GetGroup {
            group_id: group_id.clone(),
        }),
    )
    .await
    .unwrap()
    .result
    {
        Some(pb::group_response::Result::Info(info)) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (info.member_count, info.my_role),
        (3, GroupRole::Member as i32)
    );
    assert_eq!(info.owner_id, alice.user_id().unwrap());
    assert_eq!(info.conv_id, format!("group:{group_id}"));

    let list = match op(&broker, &carol, Op::ListMine(pb::ListMyGroups {}))
        .await
        .unwrap()
        .result
    {
        Some(pb::group_response::Result::List(list)) => list,
        other => panic!("{other:?}"),
    };
    assert_eq!(list.groups.len(), 1);
    assert_eq!(list.groups[0].member_count, 3);

    // Members, paginated, with roles and nicknames.
    let page = |after: String| {
        Op::Members(pb::ListMembers {
            group_id: group_id.clone(),
            after_user_id: after,
            limit: 2,
        })
    };
    let first = match op(&broker, &bob, page(String::new())).await.unwrap().result {
        Some(pb::group_response::Result::Members(page)) => page,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.members.len(), 2);
    assert!(!first.next_after_user_id.is_empty());
    let second = match op(&broker, &bob, page(first.next_after_user_id.clone()))
        .await
        .unwrap()
        .result
    {
        Some(pb::group_response::Result::Members(page)) => page,
        other => panic!("{other:?}"),
    };
    assert_eq!(second.members.len(), 1);
    assert!(second.next_after_user_id.is_empty());
    let all: Vec<_> = first.members.iter().chain(&second.members).collect();
    let owner = all
        .iter()
        .find(|m| m.user_id == alice.user_id().unwrap())
        .unwrap();
    assert_eq!(
        (owner.role, owner.nickname.as_str()),
        (GroupRole::Owner as i32, "alice")
    );

    // Info changes are SYSTEM messages too, in order with the chat.
    bob.send(group_text(&group_id, "hello group"))
        .await
        .unwrap();
    let updated = changed(
        op(
            &broker,
            &alice,
            Op::Update(pb::UpdateGroup {
                group_id: group_id.clone(),
                name: Some("Crabs".into()),
                ..Default::default()
            }),
        )
        .await,
    );
    assert_eq!(
        (updated.seq, updated.group.unwrap().name.as_str()),
        (3, "Crabs")
    );
    let got = messages(&carol, 2).await;
    assert_eq!(common::text(&got[0]), "hello group");
    assert_eq!(system_event(&got[1]), "group_updated");
    // Non-admins cannot change info; empty updates are refused.
    let rename = Op::Update(pb::UpdateGroup {
        group_id: group_id.clone(),
        name: Some("mine now".into()),
        ..Default::default()
    });
    assert_eq!(
        refused(op(&broker, &bob, rename).await),
        ErrorCode::Forbidden
    );
    let nothing = Op::Update(pb::UpdateGroup {
        group_id: group_id.clone(),
        ..Default::default()
    });
    assert_eq!(
        refused(op(&broker, &alice, nothing).await),
        ErrorCode::InvalidArgument
    );
    let too_long = Op::Create(pb::CreateGroup {
        name: "x".repeat(65),
        ..Default::default()
    });
    assert_eq!(
        refused(op(&broker, &alice, too_long).await),
        ErrorCode::InvalidArgument
    );
    let unknown = Op::Create(pb::CreateGroup {
        name: "g".into(),
        member_ids: vec!["user_nobody".into()],
        ..Default::default()
    });
    assert_eq!(
        refused(op(&broker, &alice, unknown).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn join_modes_open_approval_and_invite_only() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let admin = broker.user("admin", "a").await;
    let member = broker.user("member", "m").await;
    let outsider = broker.user("outsider", "x").await;
    let (member_id, outsider_id) = (member.user_id().unwrap(), outsider.user_id().unwrap());

    // Open: anyone joins; members may invite.
    let open = create(&broker, &owner, &[], JoinMode::Open).await;
    let joined = changed(op(&broker, &member, join(&open)).await);
    assert!(joined.seq > 0 && !joined.pending_approval);
    let invited = changed(
        op(
            &broker,
            &member,
            Op::Invite(pb::InviteMembers {
                group_id: open.clone(),
                user_ids: vec![outsider_id.clone()],
            }),
        )
        .await,
    );
    assert_eq!(invited.group.unwrap().member_count, 3);

    // Approval: a join is a request; only owners/admins see and decide it.
    let approval = create(&broker, &owner, &[&admin], JoinMode::Approval).await;
    changed(
        op(
            &broker,
            &owner,
            Op::SetRole(pb::SetMemberRole {
                group_id: approval.clone(),
                user_id: admin.user_id().unwrap(),
                role: GroupRole::Admin as i32,
            }),
        )
        .await,
    );
    let pending = changed(
        op(
            &broker,
            &member,
            Op::Join(pb::JoinGroup {
                group_id: approval.clone(),
                message: "let me in".into(),
            }),
        )
        .await,
    );
    assert!(pending.pending_approval);
    assert_eq!(pending.seq, 0);
    let list = Op::JoinRequests(pb::ListJoinRequests {
        group_id: approval.clone(),
    });
    assert_eq!(
        refused(op(&broker, &member, list.clone()).await),
        ErrorCode::Forbidden
    );
    let requests = match op(&broker, &admin, list.clone()).await.unwrap().result {
        Some(pb::group_response::Result::JoinRequests(list)) => list.requests,
        other => panic!("{other:?}"),
    };
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].user_id.as_str(), requests[0].message.as_str()),
        (member_id.as_str(), "let me in")
    );
    // The requester is not a member yet.
    assert_eq!(
        send_code(&member, group_text(&approval, "early")).await,
        Some(ErrorCode::Forbidden)
    );
    let accepted = changed(
        op(
            &broker,
            &admin,
            Op::Decide(pb::DecideJoinRequest {
                group_id: approval.clone(),
                user_id: member_id.clone(),
                accept: true,
            }),
        )
        .await,
    );
    assert_eq!(accepted.group.unwrap().member_count, 3);
    member.send(group_text(&approval, "in")).await.unwrap();
    // A rejected request leaves no member and no request behind.
    changed(op(&broker, &outsider, join(&approval)).await);
    changed(
        op(
            &broker,
            &owner,
            Op::Decide(pb::DecideJoinRequest {
                group_id: approval.clone(),
                user_id: outsider_id.clone(),
                accept: false,
            }),
        )
        .await,
    );
    let decide_again = Op::Decide(pb::DecideJoinRequest {
        group_id: approval.clone(),
        user_id: outsider_id.clone(),
        accept: true,
    });
    assert_eq!(
        refused(op(&broker, &owner, decide_again).await),
        ErrorCode::NotFound
    );
    // In approval mode plain members cannot invite; admins can.
    let by_member = Op::Invite(pb::InviteMembers {
        group_id: approval.clone(),
        user_ids: vec![outsider_id.clone()],
    });
    assert_eq!(
        refused(op(&broker, &member, by_member.clone()).await),
        ErrorCode::Forbidden
    );
    changed(op(&broker, &admin, by_member).await);

    // Invite-only: no joining at all.
    let closed = create(&broker, &owner, &[&member], JoinMode::InviteOnly).await;
    assert_eq!(
        refused(op(&broker, &outsider, join(&closed)).await),
        ErrorCode::Forbidden
    );
    let by_member = Op::Invite(pb::InviteMembers {
        group_id: closed.clone(),
        user_ids: vec![outsider_id.clone()],
    });
    assert_eq!(
        refused(op(&broker, &member, by_member).await),
        ErrorCode::Forbidden
    );
    // Joining twice is harmless.
    let again = changed(op(&broker, &member, join(&open)).await);
    assert_eq!(again.seq, 0);
}

#[tokio::test]
async fn roles_govern_kick_mute_dissolve_transfer_and_roles() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let admin = broker.user("admin", "a").await;
    let admin2 = broker.user("admin2", "a2").await;
    let member = broker.user("member", "m").await;
    let other = broker.user("other", "x").await;
    let group_id = create(
        &broker,
        &owner,
        &[&admin, &admin2, &member, &other],
        JoinMode::Open,
    )
    .await;
    let id = |c: &Client| c.user_id().unwrap();
    let set_role = |user: &Client, role: GroupRole| {
        Op::SetRole(pb::SetMemberRole {
            group_id: group_id.clone(),
            user_id: id(user),
            role: role as i32,
        })
    };
    changed(op(&broker, &owner, set_role(&admin, GroupRole::Admin)).await);
    changed(op(&broker, &owner, set_role(&admin2, GroupRole::Admin)).await);
    assert_eq!(
        refused(op(&broker, &admin, set_role(&member, GroupRole::Admin)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(op(&broker, &owner, set_role(&member, GroupRole::Owner)).await),
        ErrorCode::InvalidArgument
    );

    let kick = |user: &Client| {
        Op::Kick(pb::KickMember {
            group_id: group_id.clone(),
            user_id: id(user),
        })
    };
    assert_eq!(
        refused(op(&broker, &member, kick(&other)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(op(&broker, &admin, kick(&admin2)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(op(&broker, &admin, kick(&owner)).await),
        ErrorCode::Forbidden
    );
    let kicked = changed(op(&broker, &admin, kick(&other)).await);
    assert_eq!(kicked.group.unwrap().member_count, 4);
    assert_eq!(
        refused(op(&broker, &admin, kick(&other)).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        send_code(&other, group_text(&group_id, "still here?")).await,
        Some(ErrorCode::Forbidden)
    );

    let mute = |user: &Client, until: u64| {
        Op::Mute(pb::MuteMember {
            group_id: group_id.clone(),
            user_id: id(user),
            until_ms: until,
        })
    };
    assert_eq!(
        refused(op(&broker, &member, mute(&admin, u64::MAX)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(op(&broker, &admin, mute(&admin2, u64::MAX)).await),
        ErrorCode::Forbidden
    );
    changed(op(&broker, &admin, mute(&member, u64::MAX)).await);
    assert_eq!(
        send_code(&member, group_text(&group_id, "muted")).await,
        Some(ErrorCode::Muted)
    );
    changed(op(&broker, &admin, mute(&member, 0)).await);
    member.send(group_text(&group_id, "unmuted")).await.unwrap();
    // A mute that has run out no longer applies.
    changed(op(&broker, &admin, mute(&member, 1)).await);
    member
        .send(group_text(&group_id, "expired mute"))
        .await
        .unwrap();

    let mute_all = |on: bool| {
        Op::MuteAll(pb::SetMuteAll {
            group_id: group_id.clone(),
            mute_all: on,
        })
    };
    assert_eq!(
        refused(op(&broker, &member, mute_all(true)).await),
        ErrorCode::Forbidden
    );
    changed(op(&broker, &admin, mute_all(true)).await);
    assert_eq!(
        send_code(&member, group_text(&group_id, "hush")).await,
        Some(ErrorCode::Muted)
    );
    admin
        .send(group_text(&group_id, "admins may speak"))
        .await
        .unwrap();
    changed(op(&broker, &admin, mute_all(false)).await);
    member
        .send(group_text(&group_id, "free again"))
        .await
        .unwrap();

    // Only the owner transfers or dissolves; the owner cannot simply leave.
    let transfer = |to: &Client| {
        Op::Transfer(pb::TransferOwnership {
            group_id: group_id.clone(),
            new_owner_id: id(to),
        })
    };
    assert_eq!(
        refused(op(&broker, &admin, transfer(&admin)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(op(&broker, &owner, leave(&group_id)).await),
        ErrorCode::Forbidden
    );
    let transferred = changed(op(&broker, &owner, transfer(&admin)).await);
    assert_eq!(transferred.group.unwrap().owner_id, id(&admin));
    // The old owner is now an admin and may leave; the new one may dissolve.
    let dissolve = Op::Dissolve(pb::DissolveGroup {
        group_id: group_id.clone(),
    });
    assert_eq!(
        refused(op(&broker, &owner, dissolve.clone()).await),
        ErrorCode::Forbidden
    );
    changed(op(&broker, &owner, leave(&group_id)).await);
    let dissolved = changed(op(&broker, &admin, dissolve).await);
    assert!(dissolved.group.unwrap().dissolved);
    assert_eq!(
        send_code(&member, group_text(&group_id, "anyone?")).await,
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        refused(op(&broker, &other, join(&group_id)).await),
        ErrorCode::Forbidden
    );
    // History stays readable for the members.
    let page = member
        .history(&format!("group:{group_id}"), 0, 0, 200)
        .await
        .unwrap();
    assert_eq!(
        system_event(page.messages.last().unwrap()),
        "group_dissolved"
    );
}

#[tokio::test]
async fn mentions_need_members_and_all_needs_an_admin_and_show_in_the_list() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let bob = broker.user("bob", "b").await;
    let carol = broker.user("carol", "c").await;
    let outsider = broker.user("outsider", "x").await;
    let group_id = create(&broker, &owner, &[&bob, &carol], JoinMode::Open).await;
    let conv_id = format!("group:{group_id}");
    let bob_id = bob.user_id().unwrap();

    let stranger = mention(&group_id, "hey", vec![outsider.user_id().unwrap()], false);
    assert_eq!(
        send_code(&carol, stranger).await,
        Some(ErrorCode::InvalidArgument)
    );
    assert_eq!(
        send_code(&carol, mention(&group_id, "all!", vec![], true)).await,
        Some(ErrorCode::Forbidden)
    );

    let ack = carol
        .send(mention(&group_id, "@bob look", vec![bob_id.clone()], false))
        .await
        .unwrap();
    let got = messages(&bob, 2).await;
    assert_eq!(common::text(&got[1]), "@bob look");
    assert!(mentioned(&bob, &conv_id).await, "bob was mentioned");
    assert!(!mentioned(&owner, &conv_id).await, "the owner was not");
    bob.mark_read(&conv_id, ack.seq).await.unwrap();
    assert!(
        !mentioned(&bob, &conv_id).await,
        "read mentions no longer count"
    );

    owner
        .send(mention(&group_id, "@all meeting", vec![], true))
        .await
        .unwrap();
    assert!(mentioned(&bob, &conv_id).await && mentioned(&carol, &conv_id).await);
}

#[tokio::test]
async fn fan_out_to_50_members_with_several_devices_reaches_each_device_once_in_order() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let mut members = Vec::new();
    for i in 0..49 {
        members.push(broker.user(&format!("member{i}"), "phone").await);
    }
    let member_refs: Vec<&Client> = members.iter().collect();
    let group_id = create(&broker, &owner, &member_refs, JoinMode::Open).await;
    // Second devices for some members, and for the owner.
    let mut devices: Vec<Client> = Vec::new();
    for i in 0..10 {
        devices.push(broker.device(&format!("member{i}"), "laptop").await);
    }
    let owner_laptop = broker.device("owner", "laptop").await;

    // Three senders interleave 20 messages each.
    let senders = [&owner, &members[0], &members[1]];
    let mut sends = Vec::new();
    for i in 0..20 {
        for sender in senders {
            sends.push(sender.send(group_text(&group_id, &format!("m{i}"))));
        }
    }
    for send in sends {
        send.await.unwrap();
    }
    let last_seq = 1 + 60;
    for (i, member) in members.iter().enumerate() {
        // A sender's own device does not get its own messages back.
        let own = if i < 2 { 20 } else { 0 };
        let seqs: Vec<u64> = messages(member, (last_seq - own) as usize)
            .await
            .iter()
            .map(|m| m.seq)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "member {i}: in order without duplicates: {seqs:?}"
        );
        if own == 0 {
            assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
        }
    }
    for device in devices.iter().chain([&owner_laptop]) {
        // Devices logged in after the creation get it from the sync; all 61 arrive.
        let seqs = seqs_until(device, last_seq).await;
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
    }
    common::assert_no_message(&members[5], Duration::from_millis(300)).await;
}

#[tokio::test]
async fn offline_members_sync_messages_and_system_events_and_new_members_see_only_from_joining() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let bob = broker.user("bob", "b").await;
    let late = broker.user("late", "l").await;
    let group_id = create(&broker, &owner, &[&bob], JoinMode::Open).await;
    let conv_id = format!("group:{group_id}");
    assert_eq!(until_first_message(&bob).await.seq, 1);
    bob.close().await;

    owner
        .send(group_text(&group_id, "while you were away"))
        .await
        .unwrap();
    changed(
        op(
            &broker,
            &owner,
            Op::Update(pb::UpdateGroup {
                group_id: group_id.clone(),
                description: Some("new".into()),
                ..Default::default()
            }),
        )
        .await,
    );
    owner
        .send(group_text(&group_id, "before late joins"))
        .await
        .unwrap();
    let joined = changed(op(&broker, &late, join(&group_id)).await);
    assert_eq!(joined.seq, 5);
    owner
        .send(group_text(&group_id, "after late joined"))
        .await
        .unwrap();

    let bob = broker.device("bob", "b").await;
    let synced = until_sync_done(&bob).await;
    let kinds: Vec<String> = synced
        .iter()
        .map(|m| match &m.content {
            Some(pb::message::Content::System(s)) => s.event.clone(),
            _ => common::text(m).to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "while you were away",
            "group_updated",
            "before late joins",
            "member_joined",
            "after late joined"
        ]
    );

    // The newcomer sees the group from their joining on, live and in history.
    let got = messages(&late, 2).await;
    assert_eq!((system_event(&got[0]), got[0].seq), ("member_joined", 5));
    assert_eq!(common::text(&got[1]), "after late joined");
    let page = late.history(&conv_id, 0, 0, 50).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert!(!page.has_more);
    let from_start = late.history_after(&conv_id, 0, 50).await.unwrap();
    assert_eq!(from_start.messages.first().unwrap().seq, 5);
    // A brand-new device of the newcomer syncs from the joining too.
    let late_laptop = broker.device("late", "laptop").await;
    let synced = until_sync_done(&late_laptop).await;
    assert_eq!(synced.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![5, 6]);
}

/// Whether the user's conversation list flags `conv_id` as mentioning them.
async fn mentioned(client: &Client, conv_id: &str) -> bool {
    let list = client.conversations("", 0).await.unwrap();
    list.conversations
        .iter()
        .find(|c| c.conv_id == conv_id)
        .unwrap()
        .mentioned
}

/// The seqs of messages surfaced until one with `last_seq` arrives.
async fn seqs_until(client: &Client, last_seq: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last().copied().unwrap_or(0) < last_seq {
        seqs.push(next_message(client).await.seq);
    }
    seqs
}

async fn until_first_message(client: &Client) -> pb::Message {
    next_message(client).await
}

#[tokio::test]
async fn former_members_keep_history_up_to_their_leaving_and_get_nothing_after() {
    let broker = TestBroker::start().await;
    let owner = broker.user("owner", "o").await;
    let bob = broker.user("bob", "b").await;
    let outsider = broker.user("outsider", "x").await;
    let group_id = create(&broker, &owner, &[&bob], JoinMode::Open).await;
    let conv_id = format!("group:{group_id}");
    owner.send(group_text(&group_id, "before")).await.unwrap();
    let left = changed(op(&broker, &bob, leave(&group_id)).await);
    assert_eq!(left.seq, 3);
    owner.send(group_text(&group_id, "after")).await.unwrap();

    // Live: bob saw the messages up to and including his leaving, nothing after.
    let got = messages(&bob, 3).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(system_event(&got[2]), "member_left");
    common::assert_no_message(&bob, Duration::from_millis(300)).await;
    // History: up to the leaving.
    let page = bob.history(&conv_id, 0, 0, 50).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let after = bob.history_after(&conv_id, 3, 50).await.unwrap();
    assert!(after.messages.is_empty() && !after.has_more);
    // Sync on a new device: up to the leaving.
    let tablet = broker.device("bob", "tablet").await;
    let synced = until_sync_done(&tablet).await;
    assert_eq!(
        synced.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Cannot send; the conversation list shows nothing past the leaving.
    assert_eq!(
        send_code(&bob, group_text(&group_id, "hi?")).await,
        Some(ErrorCode::Forbidden)
    );
    let list = bob.conversations("", 0).await.unwrap();
    let summary = list
        .conversations
        .iter()
        .find(|c| c.conv_id == conv_id)
        .unwrap();
    assert_eq!(summary.last_seq, 3);
    // Someone who was never a member can neither read nor send.
    let history = outsider.history(&conv_id, 0, 0, 50).await;
    assert_eq!(history.unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert_eq!(
        send_code(&outsider, group_text(&group_id, "hi")).await,
        Some(ErrorCode::Forbidden)
    );
    let members = Op::Members(pb::ListMembers {
        group_id: group_id.clone(),
        ..Default::default()
    });
    assert_eq!(
        refused(op(&broker, &outsider, members).await),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn a_full_group_accepts_no_more_members() {
    let broker = TestBroker::start_with(|c| c.max_group_members = 3).await;
    let owner = broker.user("owner", "o").await;
    let a = broker.user("usera", "a").await;
    let b = broker.user("userb", "b").await;
    let c = broker.user("userc", "c").await;
    let too_many = Op::Create(pb::CreateGroup {
        name: "big".into(),
        member_ids: [&a, &b, &c].iter().map(|x| x.user_id().unwrap()).collect(),
        ..Default::default()
    });
    assert_eq!(
        refused(op(&broker, &owner, too_many).await),
        ErrorCode::GroupFull
    );
    let group_id = create(&broker, &owner, &[&a], JoinMode::Open).await;
    changed(op(&broker, &b, join(&group_id)).await);
    assert_eq!(
        refused(op(&broker, &c, join(&group_id)).await),
        ErrorCode::GroupFull
    );
    let invite = Op::Invite(pb::InviteMembers {
        group_id: group_id.clone(),
        user_ids: vec![c.user_id().unwrap()],
    });
    assert_eq!(
        refused(op(&broker, &owner, invite.clone()).await),
        ErrorCode::GroupFull
    );
    // Room again after someone leaves.
    changed(op(&broker, &b, leave(&group_id)).await);
    let invited = changed(op(&broker, &owner, invite).await);
    assert_eq!(invited.group.unwrap().member_count, 3);
}
