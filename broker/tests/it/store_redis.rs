//! The Redis store on its own, against a real `redis-server` per test: the behaviours
//! of the sled store tests that are not sled-specific (dense seqs, dedup, ordered
//! commits, amendments, marks, group writes, contacts, accounts, files), and riding
//! out Redis going away and coming back.

use std::sync::{Arc, Mutex};

use quip_broker::store::{
    AmendChange, ContactRequestRecord, CursorUpdate, DeviceRecord, FileRecord, GroupRecord,
    GroupWrite, JoinRequestRecord, MemberRecord, NewMessage, RedisOptions, RedisStore,
    RefreshRecord, Store, StoreError, UserRecord, UserSettingsRecord,
};
use quip_protocol::{ids, pb};

use crate::common::WAIT;
use crate::common::redis::RedisServer;

async fn open(server: &RedisServer) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::connect(RedisOptions {
            url: server.url(),
            dedup_window_ms: 24 * 3600 * 1000,
        })
        .await
        .expect("connects to redis"),
    )
}

// The same messages as the sled tests build.
use crate::store::{amendment, edit, text_message};

fn seqs(messages: &[pb::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn seqs_are_dense_and_resends_are_deduplicated() {
    let server = RedisServer::start();
    let store = open(&server).await;
    // Submitted without awaiting in between: call order must be seq order.
    let pending: Vec<_> = (0..50)
        .map(|i| store.append(text_message("user_a", "user_b", &format!("c{i}"))))
        .collect();
    for (i, appended) in pending.into_iter().enumerate() {
        let appended = appended.await.unwrap();
        assert_eq!(appended.message.seq, i as u64 + 1);
        assert!(!appended.duplicate);
        assert!(appended.message.msg_id.starts_with("msg_"));
        assert!(appended.message.sent_at_ms > 0);
    }
    let again = store
        .append(text_message("user_a", "user_b", "c7"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.seq, 8);
    assert_eq!(
        store.sent("user_a", "c7").await.unwrap().map(|m| m.seq),
        Some(8)
    );
    assert_eq!(store.sent("user_a", "nope").await.unwrap(), None);
    // Same client_msg_id from another sender is a different message.
    let other = store
        .append(text_message("user_b", "user_a", "c7"))
        .await
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 51);

    let conv = ids::single_conv_id("user_a", "user_b");
    assert_eq!(store.last_seq(&conv).await.unwrap(), 51);
    let all = store.range(&conv, 1, u64::MAX, 1000).await.unwrap();
    assert_eq!(seqs(&all), (1..=51).collect::<Vec<_>>());
    // Stored as appended: the seq the script added, the ids Rust assigned.
    assert_eq!(all[7], again.message);
    assert_eq!(
        seqs(&store.range(&conv, 10, 20, 3).await.unwrap()),
        vec![10, 11, 12]
    );
    assert!(store.range(&conv, 52, 60, 10).await.unwrap().is_empty());
    assert!(store.range(&conv, 5, 4, 10).await.unwrap().is_empty());
    let (page, has_more) = store.before(&conv, 11, 5).await.unwrap();
    assert_eq!(seqs(&page), vec![6, 7, 8, 9, 10]);
    assert!(has_more);
    let (page, has_more) = store.before(&conv, 4, 5).await.unwrap();
    assert_eq!(seqs(&page), vec![1, 2, 3]);
    assert!(!has_more);
    let (page, has_more) = store.before(&conv, u64::MAX, 2).await.unwrap();
    assert_eq!(seqs(&page), vec![50, 51]);
    assert!(has_more);
    assert_eq!(
        store.user_conversations("user_a").await.unwrap(),
        vec![conv.clone()]
    );
    assert_eq!(
        store.user_conversations("user_b").await.unwrap(),
        vec![conv.clone()]
    );
    assert_eq!(store.last_seq("single:user_x:user_y").await.unwrap(), 0);
    let stats = store.stats();
    assert_eq!(stats.appends, 51);
    assert!(stats.batches >= 1 && stats.batches <= stats.appends);
    assert_eq!(stats.flushes, stats.batches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_dense_seqs_and_commit_hooks_run_in_seq_order() {
    let server = RedisServer::start();
    let store = open(&server).await;
    const TASKS: usize = 16;
    const EACH: usize = 25;
    let committed = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let committed = committed.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                // Every task posts to the same group conversation.
                let mut message =
                    text_message(&format!("user_t{t:02}"), "user_zz", &format!("m{i}"));
                message.message.conv_id = ids::group_conv_id("group_busy");
                message.participants.clear();
                let committed = committed.clone();
                let appended = store
                    .append_then(
                        message,
                        Some(Box::new(move |m: &pb::Message| {
                            committed.lock().unwrap().push(m.seq);
                        })),
                    )
                    .await
                    .unwrap();
                assert!(!appended.duplicate);
                mine.push(appended.message.seq);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one task's appends keep their order: {mine:?}"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    let n = (TASKS * EACH) as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>(), "dense seqs, none twice");
    assert_eq!(
        *committed.lock().unwrap(),
        (1..=n).collect::<Vec<_>>(),
        "commit hooks ran once each, in seq order"
    );
    let conv = ids::group_conv_id("group_busy");
    assert_eq!(store.last_seq(&conv).await.unwrap(), n);
    let stats = store.stats();
    assert_eq!(stats.appends, n);
    assert!(stats.batches <= stats.appends);
}

#[tokio::test]
async fn commit_hooks_do_not_run_for_duplicates_and_a_panicking_hook_is_survived() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let runs = Arc::new(Mutex::new(0));
    let hook = |runs: &Arc<Mutex<i32>>| -> quip_broker::store::OnCommit {
        let runs = runs.clone();
        Box::new(move |_| *runs.lock().unwrap() += 1)
    };
    store
        .append_then(text_message("user_a", "user_b", "x"), Some(hook(&runs)))
        .await
        .unwrap();
    let again = store
        .append_then(text_message("user_a", "user_b", "x"), Some(hook(&runs)))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(*runs.lock().unwrap(), 1);
    let panicked = store
        .append_then(
            text_message("user_a", "user_b", "y"),
            Some(Box::new(|_| panic!("hook panics"))),
        )
        .await
        .unwrap();
    assert_eq!(panicked.message.seq, 2);
    let after = store
        .append(text_message("user_a", "user_b", "z"))
        .await
        .unwrap();
    assert_eq!(
        after.message.seq, 3,
        "the writer survived the panicking hook"
    );
}

#[tokio::test]
async fn amendments_rewrite_their_target_and_a_recall_erases_every_copy_of_the_text() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let conv = ids::single_conv_id("user_a", "user_b");
    store
        .append(text_message("user_a", "user_b", "m1"))
        .await
        .unwrap();
    let edited = store
        .append(amendment("user_a", "user_b", "e1", 1, edit("secret v2")))
        .await
        .unwrap();
    assert_eq!(edited.message.seq, 2, "an edit takes the next seq");
    let target = store.range(&conv, 1, 1, 1).await.unwrap().pop().unwrap();
    assert_eq!(target.edited_at_ms, edited.message.sent_at_ms);
    assert_eq!(target.seq, 1);
    assert!(
        matches!(&target.content, Some(pb::message::Content::Text(t)) if t.text == "secret v2")
    );

    // An edit and a recall of the same message submitted together: the recall wins
    // and erases the text from the target and from both edit events.
    let (second_edit, recall) = tokio::join!(
        store.append(amendment("user_a", "user_b", "e2", 1, edit("secret v3"))),
        store.append(amendment(
            "user_a",
            "user_b",
            "r1",
            1,
            AmendChange::Recall {
                by: "user_a".into()
            }
        )),
    );
    assert_eq!(second_edit.unwrap().message.seq, 3);
    assert_eq!(recall.unwrap().message.seq, 4);
    let all = store.range(&conv, 1, 10, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    let target = &all[0];
    assert!(target.recalled);
    assert_eq!(target.recalled_by, "user_a");
    assert_eq!(target.content, None);
    for event in &all[1..] {
        let Some(pb::message::Content::Amendment(amendment)) = &event.content else {
            panic!("an amendment event: {event:?}");
        };
        assert_eq!(
            amendment.text, None,
            "no copy of the text is left: {event:?}"
        );
    }

    // A recalled message cannot be edited or recalled again, and a refused
    // amendment takes no seq.
    let refused = store
        .append(amendment("user_a", "user_b", "e3", 1, edit("back")))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let missing = store
        .append(amendment("user_a", "user_b", "e4", 99, edit("nothing")))
        .await;
    assert!(
        matches!(missing, Err(StoreError::Conflict(_))),
        "{missing:?}"
    );
    assert_eq!(store.last_seq(&conv).await.unwrap(), 4);
    assert_eq!(store.amendments_in(&conv, 1, 4).await.unwrap(), 3);
    assert_eq!(store.amendments_in(&conv, 3, 4).await.unwrap(), 2);
    assert_eq!(store.amendments_in(&conv, 4, 3).await.unwrap(), 0);

    // A resent recall gets its original answer although its target is recalled now.
    let resent = store
        .append(amendment(
            "user_a",
            "user_b",
            "r1",
            1,
            AmendChange::Recall {
                by: "user_a".into(),
            },
        ))
        .await
        .unwrap();
    assert!(resent.duplicate);
    assert_eq!(resent.message.seq, 4);
    assert_eq!(
        store.sent("user_a", "r1").await.unwrap().map(|m| m.seq),
        Some(4)
    );
}

#[tokio::test]
async fn mentions_keep_the_highest_seq_per_user_and_for_everyone() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let conv = ids::group_conv_id("group_m");
    let mention = |id: &str, users: &[&str], all: bool| {
        let mut message = text_message("user_a", "user_zz", id);
        message.message.conv_id = conv.clone();
        message.message.content = Some(pb::message::Content::Text(pb::TextContent {
            text: "hey".into(),
            mention_user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
            mention_all: all,
        }));
        message
    };
    store
        .append(mention("m1", &["user_b"], false))
        .await
        .unwrap();
    store.append(mention("m2", &[], false)).await.unwrap();
    assert_eq!(store.mention_seq("user_b", &conv).await.unwrap(), 1);
    assert_eq!(store.mention_seq("user_c", &conv).await.unwrap(), 0);
    store.append(mention("m3", &[], true)).await.unwrap();
    assert_eq!(store.mention_seq("user_c", &conv).await.unwrap(), 3);
    store
        .append(mention("m4", &["user_b", "user_c"], false))
        .await
        .unwrap();
    assert_eq!(store.mention_seq("user_b", &conv).await.unwrap(), 4);
    assert_eq!(store.mention_seq("user_c", &conv).await.unwrap(), 4);
}

#[tokio::test]
async fn marks_report_only_when_they_move_and_list_by_conversation() {
    let server = RedisServer::start();
    crate::store::marks_move_forward_and_report_when_they_move(open(&server).await).await;
}

/// A SYSTEM message announcing `writes` in group `group_id`.
fn announce(group_id: &str, id: &str, also_to: &[&str], writes: Vec<GroupWrite>) -> NewMessage {
    NewMessage {
        message: pb::Message {
            conv_id: ids::group_conv_id(group_id),
            from: "user_owner".into(),
            group_id: group_id.into(),
            kind: pb::MessageKind::System as i32,
            content: Some(pb::message::Content::System(pb::SystemContent {
                event: "test".into(),
                ..Default::default()
            })),
            client_msg_id: id.into(),
            ..Default::default()
        },
        participants: also_to.iter().map(|u| (*u).to_owned()).collect(),
        group_writes: writes,
        amend: None,
    }
}

fn member(group_id: &str, user_id: &str, role: i32) -> MemberRecord {
    MemberRecord {
        group_id: group_id.into(),
        user_id: user_id.into(),
        role,
        joined_at_ms: 10,
        // The store sets it: whatever the caller says is replaced.
        joined_after_seq: 777,
        muted_until_ms: 0,
    }
}

#[tokio::test]
async fn group_writes_commit_with_their_message_and_set_its_seqs() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let gid = "group_g1";
    let conv = ids::group_conv_id(gid);
    let group = GroupRecord {
        group_id: gid.into(),
        name: "first".into(),
        owner_id: "user_owner".into(),
        member_count: 2,
        ..Default::default()
    };
    let created = store
        .append(announce(
            gid,
            "s1",
            &["user_owner"],
            vec![
                GroupWrite::Group(group.clone()),
                GroupWrite::Join(member(gid, "user_owner", 2)),
                GroupWrite::Join(member(gid, "user_m", 0)),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(created.message.seq, 1);
    assert_eq!(store.group(gid).await.unwrap(), Some(group));
    let m = store.member(gid, "user_m").await.unwrap().unwrap();
    assert_eq!(m.joined_after_seq, 0);
    assert_eq!(m.joined_at_ms, 10);
    // Joining members get the conversation in their list, like the participants.
    assert_eq!(
        store.user_conversations("user_m").await.unwrap(),
        vec![conv.clone()]
    );
    assert_eq!(
        store.user_conversations("user_owner").await.unwrap(),
        vec![conv.clone()]
    );

    store
        .append(text_message("user_owner", "user_m", "chat"))
        .await
        .unwrap();
    for i in 0..3 {
        let mut message = text_message("user_m", "user_zz", &format!("g{i}"));
        message.message.conv_id = conv.clone();
        message.participants.clear();
        store.append(message).await.unwrap();
    }
    // seq 4 is the last chat message; user_late's join is seq 5.
    store
        .put_join_request(JoinRequestRecord {
            group_id: gid.into(),
            user_id: "user_late".into(),
            message: "let me in".into(),
            requested_at_ms: 5,
        })
        .await
        .unwrap();
    store
        .put_join_request(JoinRequestRecord {
            group_id: gid.into(),
            user_id: "user_alpha".into(),
            message: String::new(),
            requested_at_ms: 6,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .join_requests(gid)
            .await
            .unwrap()
            .iter()
            .map(|r| r.user_id.as_str())
            .collect::<Vec<_>>(),
        vec!["user_alpha", "user_late"],
        "by user id"
    );
    let joined = store
        .append(announce(
            gid,
            "s2",
            &["user_late"],
            vec![GroupWrite::Join(member(gid, "user_late", 0))],
        ))
        .await
        .unwrap();
    assert_eq!(joined.message.seq, 5);
    let late = store.member(gid, "user_late").await.unwrap().unwrap();
    assert_eq!(late.joined_after_seq, 4, "sees the group from its join on");
    assert_eq!(
        store.join_requests(gid).await.unwrap().len(),
        1,
        "joining cleared the pending request"
    );
    assert!(
        store
            .take_join_request(gid, "user_late")
            .await
            .unwrap()
            .is_none()
    );
    let alpha = store.take_join_request(gid, "user_alpha").await.unwrap();
    assert_eq!(alpha.map(|r| r.requested_at_ms), Some(6));
    assert!(store.join_requests(gid).await.unwrap().is_empty());

    // Members page in user id order.
    let page = |after: &'static str, limit| {
        let store = store.clone();
        async move {
            store
                .members(gid, after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.user_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page("", 10).await,
        vec!["user_late", "user_m", "user_owner"]
    );
    assert_eq!(page("", 2).await, vec!["user_late", "user_m"]);
    assert_eq!(page("user_m", 2).await, vec!["user_owner"]);
    assert_eq!(
        page("user_l", usize::MAX).await,
        vec!["user_late", "user_m", "user_owner"]
    );
    assert!(page("user_owner", 5).await.is_empty());

    // An update replaces the record as given.
    let mut muted = store.member(gid, "user_m").await.unwrap().unwrap();
    muted.muted_until_ms = 99;
    store
        .append(announce(
            gid,
            "s3",
            &[],
            vec![GroupWrite::Update(muted.clone())],
        ))
        .await
        .unwrap();
    assert_eq!(store.member(gid, "user_m").await.unwrap(), Some(muted));

    // Leaving keeps the history up to and including the message announcing it.
    let left = store
        .append(announce(
            gid,
            "s4",
            &[],
            vec![GroupWrite::Leave {
                group_id: gid.into(),
                user_id: "user_m".into(),
                joined_after_seq: 0,
            }],
        ))
        .await
        .unwrap();
    assert_eq!(left.message.seq, 7);
    assert!(store.member(gid, "user_m").await.unwrap().is_none());
    let former = store.former_member(gid, "user_m").await.unwrap().unwrap();
    assert_eq!((former.joined_after_seq, former.left_seq), (0, 7));
    assert_eq!(page("", 10).await, vec!["user_late", "user_owner"]);
    assert_eq!(
        store.user_conversations("user_m").await.unwrap(),
        vec![conv.clone(), ids::single_conv_id("user_m", "user_owner")],
        "a group left stays in the list"
    );

    // Rejoining clears the former-member record.
    store
        .append(announce(
            gid,
            "s5",
            &["user_m"],
            vec![GroupWrite::Join(member(gid, "user_m", 0))],
        ))
        .await
        .unwrap();
    assert!(store.former_member(gid, "user_m").await.unwrap().is_none());
    assert_eq!(
        store
            .member(gid, "user_m")
            .await
            .unwrap()
            .unwrap()
            .joined_after_seq,
        7
    );

    // Groups list in id order.
    for gid in ["group_c", "group_a", "group_b"] {
        store
            .append(announce(
                gid,
                &format!("create-{gid}"),
                &["user_owner"],
                vec![GroupWrite::Group(GroupRecord {
                    group_id: gid.into(),
                    name: gid.into(),
                    ..Default::default()
                })],
            ))
            .await
            .unwrap();
    }
    let groups = |after: &'static str, limit| {
        let store = store.clone();
        async move {
            store
                .groups(after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|g| g.group_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        groups("", 10).await,
        vec!["group_a", "group_b", "group_c", "group_g1"]
    );
    assert_eq!(groups("group_a", 2).await, vec!["group_b", "group_c"]);
    assert!(groups("group_g1", 2).await.is_empty());
    assert_eq!(
        store.user_conversations("user_owner").await.unwrap(),
        vec![
            ids::group_conv_id("group_a"),
            ids::group_conv_id("group_b"),
            ids::group_conv_id("group_c"),
            conv.clone(),
            ids::single_conv_id("user_m", "user_owner"),
        ],
        "ordered by conversation id"
    );
}

#[tokio::test]
async fn friends_requests_and_blocks() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let request = |from: &str, to: &str, at| ContactRequestRecord {
        from_user_id: from.into(),
        to_user_id: to.into(),
        message: format!("{from} here"),
        requested_at_ms: at,
    };
    store
        .put_contact_request(request("user_a", "user_b", 1))
        .await
        .unwrap();
    store
        .put_contact_request(request("user_c", "user_b", 2))
        .await
        .unwrap();
    store
        .put_contact_request(request("user_a", "user_d", 3))
        .await
        .unwrap();
    let incoming = store.contact_requests("user_b", true).await.unwrap();
    assert_eq!(
        incoming,
        vec![
            request("user_a", "user_b", 1),
            request("user_c", "user_b", 2)
        ]
    );
    let outgoing = store.contact_requests("user_a", false).await.unwrap();
    assert_eq!(
        outgoing,
        vec![
            request("user_a", "user_b", 1),
            request("user_a", "user_d", 3)
        ]
    );
    assert_eq!(
        store
            .take_contact_request("user_c", "user_b")
            .await
            .unwrap(),
        Some(request("user_c", "user_b", 2))
    );
    assert_eq!(
        store
            .take_contact_request("user_c", "user_b")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .contact_requests("user_c", false)
            .await
            .unwrap()
            .is_empty()
    );

    // Becoming friends drops the requests between the two, both ways.
    store
        .put_contact_request(request("user_b", "user_a", 4))
        .await
        .unwrap();
    store.add_friends("user_a", "user_b", 50).await.unwrap();
    assert!(
        store
            .contact_requests("user_b", true)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .contact_requests("user_b", false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.contact_requests("user_a", false).await.unwrap(),
        vec![request("user_a", "user_d", 3)]
    );
    assert!(store.is_friend("user_a", "user_b").await.unwrap());
    assert!(store.is_friend("user_b", "user_a").await.unwrap());
    store.add_friends("user_a", "user_0", 60).await.unwrap();
    assert_eq!(
        store.friends("user_a").await.unwrap(),
        vec![("user_0".to_owned(), 60), ("user_b".to_owned(), 50)]
    );
    assert!(store.remove_friends("user_b", "user_a").await.unwrap());
    assert!(!store.remove_friends("user_b", "user_a").await.unwrap());
    assert!(!store.is_friend("user_a", "user_b").await.unwrap());
    assert_eq!(
        store.friends("user_a").await.unwrap(),
        vec![("user_0".to_owned(), 60)]
    );

    // Blocking drops requests too, and is one-way.
    store.block("user_d", "user_a", 70).await.unwrap();
    store.block("user_e", "user_a", 80).await.unwrap();
    assert!(
        store
            .contact_requests("user_a", false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.is_blocked("user_d", "user_a").await.unwrap());
    assert!(!store.is_blocked("user_a", "user_d").await.unwrap());
    assert_eq!(
        store.blocks("user_d").await.unwrap(),
        vec![("user_a".to_owned(), 70)]
    );
    assert_eq!(
        store.blockers_of("user_a").await.unwrap(),
        vec!["user_d".to_owned(), "user_e".to_owned()]
    );
    assert!(store.unblock("user_d", "user_a").await.unwrap());
    assert!(!store.unblock("user_d", "user_a").await.unwrap());
    assert!(!store.is_blocked("user_d", "user_a").await.unwrap());
    assert_eq!(
        store.blockers_of("user_a").await.unwrap(),
        vec!["user_e".to_owned()]
    );

    assert!(!store.user_settings("user_c").await.unwrap().friends_only_dm);
    store
        .put_user_settings(
            "user_c",
            UserSettingsRecord {
                friends_only_dm: true,
            },
        )
        .await
        .unwrap();
    assert!(store.user_settings("user_c").await.unwrap().friends_only_dm);
    store
        .put_user_settings(
            "user_c",
            UserSettingsRecord {
                friends_only_dm: false,
            },
        )
        .await
        .unwrap();
    assert!(!store.user_settings("user_c").await.unwrap().friends_only_dm);
}

fn user(user_id: &str, username: &str) -> UserRecord {
    UserRecord {
        user_id: user_id.into(),
        username: username.into(),
        nickname: username.into(),
        role: "user".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn accounts_devices_and_refresh_tokens() {
    let server = RedisServer::start();
    let store = open(&server).await;
    store.create_user(user("user_b", "Bob")).await.unwrap();
    store.create_user(user("user_a", "Alice")).await.unwrap();
    let taken = store.create_user(user("user_x", "alice")).await;
    assert!(
        matches!(taken, Err(StoreError::UsernameTaken)),
        "usernames are case-insensitive: {taken:?}"
    );
    assert!(
        store.user_by_id("user_x").await.unwrap().is_none(),
        "nothing of it stays"
    );
    assert_eq!(
        store
            .user_by_username("ALICE")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "user_a"
    );
    assert!(store.user_by_username("carol").await.unwrap().is_none());
    let mut alice = store.user_by_id("user_a").await.unwrap().unwrap();
    alice.nickname = "Al".into();
    store.update_user(alice.clone()).await.unwrap();
    assert_eq!(store.user_by_id("user_a").await.unwrap(), Some(alice));
    let missing = store.update_user(user("user_nobody", "nobody")).await;
    assert!(
        matches!(missing, Err(StoreError::Conflict(_))),
        "{missing:?}"
    );
    assert!(store.user_by_id("user_nobody").await.unwrap().is_none());

    // Racing registrations of one name: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| store.create_user(user(&format!("user_r{i}"), "Racer")))
        .collect();
    let won = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(won, 1);
    let racer = store.user_by_username("racer").await.unwrap().unwrap();

    let users = |after: &str, limit| {
        let store = store.clone();
        let after = after.to_owned();
        async move {
            store
                .users(&after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|u| u.user_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        users("", 10).await,
        vec![
            "user_a".to_owned(),
            "user_b".to_owned(),
            racer.user_id.clone()
        ]
    );
    assert_eq!(users("user_a", 1).await, vec!["user_b".to_owned()]);
    assert!(users(&racer.user_id, 5).await.is_empty());

    let device = |id: &str, first| DeviceRecord {
        device_id: id.into(),
        client_version: "1".into(),
        transport: "quic".into(),
        first_seen_ms: first,
        ..Default::default()
    };
    store
        .put_device("user_a", device("phone", 2))
        .await
        .unwrap();
    store
        .put_device("user_a", device("laptop", 1))
        .await
        .unwrap();
    let mut phone = device("phone", 2);
    phone.last_seen_ms = 9;
    store.put_device("user_a", phone.clone()).await.unwrap();
    assert_eq!(
        store.devices("user_a").await.unwrap(),
        vec![device("laptop", 1), phone.clone()],
        "by device id"
    );
    assert_eq!(store.device("user_a", "phone").await.unwrap(), Some(phone));
    assert!(store.device("user_a", "tablet").await.unwrap().is_none());
    assert!(store.devices("user_b").await.unwrap().is_empty());

    let refresh = |expires_at_ms| RefreshRecord {
        user_id: "user_a".into(),
        device_id: "phone".into(),
        expires_at_ms,
        issued_at_ms: 1,
    };
    store.put_refresh([7; 32], refresh(u64::MAX)).await.unwrap();
    assert_eq!(
        store.take_refresh([7; 32]).await.unwrap(),
        Some(refresh(u64::MAX))
    );
    assert!(
        store.take_refresh([7; 32]).await.unwrap().is_none(),
        "refresh tokens work once"
    );
    // An expired token is still found (and refused as expired by the service).
    store.put_refresh([8; 32], refresh(5)).await.unwrap();
    assert_eq!(store.take_refresh([8; 32]).await.unwrap(), Some(refresh(5)));
    assert!(store.take_refresh([9; 32]).await.unwrap().is_none());
}

#[tokio::test]
async fn file_records_and_their_conversations() {
    let server = RedisServer::start();
    let store = open(&server).await;
    let file = FileRecord {
        file_id: "file_1".into(),
        sha256: "ab".repeat(32),
        name: "cat.png".into(),
        size: 1234,
        mime: "image/png".into(),
        uploader: "user_a".into(),
        uploaded_at_ms: 5,
        width: 10,
        height: 20,
        has_thumbnail: true,
    };
    assert!(store.file("file_1").await.unwrap().is_none());
    store.put_file(file.clone()).await.unwrap();
    assert_eq!(store.file("file_1").await.unwrap(), Some(file));
    assert!(store.file_conversations("file_1").await.unwrap().is_empty());
    for conv in [
        "single:user_a:user_b",
        "group:group_x",
        "single:user_a:user_b",
    ] {
        store.add_file_conversation("file_1", conv).await.unwrap();
    }
    assert_eq!(
        store.file_conversations("file_1").await.unwrap(),
        vec![
            "group:group_x".to_owned(),
            "single:user_a:user_b".to_owned()
        ]
    );
    store.flush().await.unwrap();
    assert_eq!(store.size_on_disk(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_fast_and_the_same_store_works_when_it_is_back() {
    let mut server = RedisServer::start();
    let store = open(&server).await;
    let conv = ids::single_conv_id("user_a", "user_b");
    for i in 0..3 {
        store
            .append(text_message("user_a", "user_b", &format!("m{i}")))
            .await
            .unwrap();
    }
    store.create_user(user("user_a", "alice")).await.unwrap();

    server.stop();
    let down = tokio::time::timeout(WAIT, store.append(text_message("user_a", "user_b", "m3")))
        .await
        .expect("an append fails rather than hangs while Redis is down");
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    let read = tokio::time::timeout(WAIT, store.last_seq(&conv))
        .await
        .expect("a read fails rather than hangs while Redis is down");
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    let cursors = tokio::time::timeout(
        WAIT,
        store.update_cursors(
            "user_b",
            "phone",
            vec![CursorUpdate {
                conv_id: conv.clone(),
                delivered_seq: 1,
                read_seq: 1,
            }],
        ),
    )
    .await
    .expect("a cursor update fails rather than hangs while Redis is down");
    assert!(
        matches!(cursors, Err(StoreError::Unavailable(_))),
        "{cursors:?}"
    );

    // Back, with its data (AOF, fsync always) but not its script cache.
    server.restart();
    let resent = tokio::time::timeout(WAIT, store.append(text_message("user_a", "user_b", "m3")))
        .await
        .expect("no hang after Redis is back")
        .expect("the same store works again");
    assert!(!resent.duplicate);
    assert_eq!(resent.message.seq, 4, "seqs continue without a gap");
    let again = store
        .append(text_message("user_a", "user_b", "m1"))
        .await
        .unwrap();
    assert!(again.duplicate, "dedup survived the restart");
    assert_eq!(again.message.seq, 2);
    assert_eq!(
        seqs(&store.range(&conv, 1, 10, 10).await.unwrap()),
        vec![1, 2, 3, 4]
    );
    let moved = store
        .update_cursors(
            "user_b",
            "phone",
            vec![CursorUpdate {
                conv_id: conv.clone(),
                delivered_seq: 4,
                read_seq: 4,
            }],
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 1, "the cursor script is loaded again");
    assert_eq!(
        store
            .user_by_username("Alice")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "user_a"
    );
}

#[tokio::test]
async fn connecting_to_no_redis_is_unavailable() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let result = tokio::time::timeout(
        WAIT,
        RedisStore::connect(RedisOptions {
            url,
            dedup_window_ms: 1000,
        }),
    )
    .await
    .expect("connect gives up rather than hangs");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

/// Concurrent changes to different fields of one record all survive: a device's
/// last-seen updates never undo its logout (the revocation field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_changes_are_atomic_per_field() {
    let server = RedisServer::start();
    let store = open(&server).await;
    store.create_user(user("user_r", "racer")).await.unwrap();
    crate::store::concurrent_field_changes_all_survive(store).await;
}
