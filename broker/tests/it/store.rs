//! The sled store on its own: group commit, dedup, seq density, committed-only reads,
//! accounts and cursors, amendments (recall/edit), and survival across reopen.

use std::sync::Arc;

use quip_broker::store::sled::SledOptions;
use quip_broker::store::{
    Amend, AmendChange, CursorUpdate, Durability, MarksMoved, NewMessage, RefreshRecord, SledStore,
    Store, StoreError, UserRecord,
};
use quip_protocol::pb;

/// A 1:1 text message (shared with `store_redis`).
pub fn text_message(from: &str, to: &str, client_msg_id: &str) -> NewMessage {
    let conv_id = quip_protocol::ids::single_conv_id(from, to);
    NewMessage::new(
        pb::Message {
            conv_id,
            from: from.into(),
            to: to.into(),
            kind: pb::MessageKind::Text as i32,
            content: Some(pb::message::Content::Text(pb::TextContent {
                text: format!("hello {client_msg_id}"),
                ..Default::default()
            })),
            client_msg_id: client_msg_id.into(),
            ..Default::default()
        },
        vec![from.into(), to.into()],
    )
}

fn open(dir: &std::path::Path, durability: Durability) -> Arc<SledStore> {
    Arc::new(
        SledStore::open(
            dir,
            SledOptions {
                durability,
                ..SledOptions::default()
            },
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_covers_many_appends_with_few_flushes_and_acks_after_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Fsync);
    const N: usize = 2000;
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = store.clone();
        // Each sender has its own conversation so appends are independent.
        let from = format!("user_s{i:04}");
        tasks.push(tokio::spawn(async move {
            let flushes_at_submit = store.stats().flushes;
            let appended = store
                .append(text_message(&from, "user_zz", "m1"))
                .await
                .unwrap();
            let flushes_at_ack = store.stats().flushes;
            (appended.message.seq, flushes_at_submit, flushes_at_ack)
        }));
    }
    for task in tasks {
        let (seq, at_submit, at_ack) = task.await.unwrap();
        assert_eq!(seq, 1);
        assert!(
            at_ack > at_submit,
            "an ACK came back before any flush completed after its submission"
        );
    }
    let stats = store.stats();
    assert_eq!(stats.appends, N as u64);
    assert!(
        stats.flushes < stats.appends,
        "group commit should need fewer flushes ({}) than appends ({})",
        stats.flushes,
        stats.appends
    );
}

#[tokio::test]
async fn seqs_are_dense_and_resends_are_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Os);
    // Submitted without awaiting in between: call order must be seq order.
    let pending: Vec<_> = (0..50)
        .map(|i| store.append(text_message("user_a", "user_b", &format!("c{i}"))))
        .collect();
    for (i, appended) in pending.into_iter().enumerate() {
        let appended = appended.await.unwrap();
        assert_eq!(appended.message.seq, i as u64 + 1);
        assert!(!appended.duplicate);
    }
    let again = store
        .append(text_message("user_a", "user_b", "c7"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.seq, 8);
    // Same client_msg_id from another sender is a different message.
    let other = store
        .append(text_message("user_b", "user_a", "c7"))
        .await
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 51);

    let conv = quip_protocol::ids::single_conv_id("user_a", "user_b");
    assert_eq!(store.last_seq(&conv).await.unwrap(), 51);
    let all = store.range(&conv, 1, u64::MAX, 1000).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<_>>()
    );
    let (page, has_more) = store.before(&conv, 11, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![6, 7, 8, 9, 10]
    );
    assert!(has_more);
    let (page, has_more) = store.before(&conv, 4, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(!has_more);
    assert_eq!(
        store.user_conversations("user_a").await.unwrap(),
        vec![conv.clone()]
    );
    assert_eq!(
        store.user_conversations("user_b").await.unwrap(),
        vec![conv]
    );
}

#[tokio::test]
async fn messages_accounts_and_cursors_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let conv = quip_protocol::ids::single_conv_id("user_a", "user_b");
    {
        let store = open(dir.path(), Durability::Fsync);
        for i in 0..10 {
            store
                .append(text_message("user_a", "user_b", &format!("m{i}")))
                .await
                .unwrap();
        }
        store
            .create_user(UserRecord {
                user_id: "user_a".into(),
                username: "Alice".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let taken = store
            .create_user(UserRecord {
                user_id: "user_x".into(),
                username: "alice".into(),
                ..Default::default()
            })
            .await;
        assert!(
            matches!(taken, Err(StoreError::UsernameTaken)),
            "usernames are case-insensitive"
        );
        store
            .put_refresh(
                [7; 32],
                RefreshRecord {
                    user_id: "user_a".into(),
                    device_id: "d".into(),
                    expires_at_ms: u64::MAX,
                    issued_at_ms: 1,
                },
            )
            .await
            .unwrap();
        let update = |delivered, read| CursorUpdate {
            conv_id: conv.clone(),
            delivered_seq: delivered,
            read_seq: read,
        };
        store
            .update_cursors("user_b", "phone", vec![update(7, 5)])
            .await
            .unwrap();
        // Cursors never move backwards.
        store
            .update_cursors("user_b", "phone", vec![update(3, 2)])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = open(dir.path(), Durability::Fsync);
    assert_eq!(store.last_seq(&conv).await.unwrap(), 10);
    let next = store
        .append(text_message("user_a", "user_b", "m10"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 11, "seq continues after reopen");
    let resend = store
        .append(text_message("user_a", "user_b", "m3"))
        .await
        .unwrap();
    assert!(resend.duplicate, "dedup survives reopen");
    assert_eq!(
        store
            .user_by_username("ALICE")
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "user_a"
    );
    assert!(store.take_refresh([7; 32]).await.unwrap().is_some());
    assert!(
        store.take_refresh([7; 32]).await.unwrap().is_none(),
        "refresh tokens work once"
    );
    assert_eq!(
        store.device_cursors("user_b", "phone").await.unwrap(),
        vec![(conv.clone(), 7)]
    );
    assert_eq!(store.read_seq("user_b", &conv).await.unwrap(), 5);
}

/// A RECALL or EDIT event of `target_seq`, as the chat service builds it.
pub fn amendment(
    from: &str,
    to: &str,
    id: &str,
    target_seq: u64,
    change: AmendChange,
) -> NewMessage {
    let mut message = text_message(from, to, id);
    let text = match &change {
        AmendChange::Edit { text } => Some(text.clone()),
        AmendChange::Recall { .. } => None,
    };
    message.message.kind = match change {
        AmendChange::Edit { .. } => pb::MessageKind::Edit,
        AmendChange::Recall { .. } => pb::MessageKind::Recall,
    } as i32;
    message.message.content = Some(pb::message::Content::Amendment(pb::Amendment {
        target_seq,
        target_msg_id: String::new(),
        text,
    }));
    message.amend = Some(Amend { target_seq, change });
    message
}

pub fn edit(text: &str) -> AmendChange {
    AmendChange::Edit {
        text: pb::TextContent {
            text: text.into(),
            ..Default::default()
        },
    }
}

#[tokio::test]
async fn amendments_rewrite_their_target_and_a_recall_erases_every_copy_of_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Os);
    let conv = quip_protocol::ids::single_conv_id("user_a", "user_b");
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
    assert!(target.edited_at_ms > 0);
    assert!(
        matches!(&target.content, Some(pb::message::Content::Text(t)) if t.text == "secret v2")
    );

    // An edit and a recall of the same message in one batch: the recall wins and
    // erases the text from the target and from both edit events.
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
    second_edit.unwrap();
    recall.unwrap();
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
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    assert_eq!(store.last_seq(&conv).await.unwrap(), 4);
    assert_eq!(store.amendments_in(&conv, 1, 4).await.unwrap(), 3);
    assert_eq!(store.amendments_in(&conv, 3, 4).await.unwrap(), 2);
}

#[tokio::test]
async fn marks_report_only_when_they_move_and_list_by_conversation() {
    let dir = tempfile::tempdir().unwrap();
    marks_move_forward_and_report_when_they_move(open(dir.path(), Durability::Os)).await;
}

/// Shared by the sled and Redis stores: cursors and marks only move forward, a move
/// is reported once, and marks list by conversation.
pub async fn marks_move_forward_and_report_when_they_move(
    store: Arc<dyn quip_broker::store::Store>,
) {
    let conv = "group:group_g";
    let update = |delivered, read| CursorUpdate {
        conv_id: conv.into(),
        delivered_seq: delivered,
        read_seq: read,
    };
    let moved = store
        .update_cursors("user_b", "phone", vec![update(5, 3)])
        .await
        .unwrap();
    assert_eq!(
        moved,
        vec![MarksMoved {
            conv_id: conv.into(),
            read_seq: 3,
            delivered_seq: 5
        }]
    );
    // Another device of the same user behind the first: the user's marks stay, the
    // device's own cursor moves.
    let moved = store
        .update_cursors("user_b", "laptop", vec![update(4, 2)])
        .await
        .unwrap();
    assert!(moved.is_empty());
    assert_eq!(
        store.device_cursors("user_b", "laptop").await.unwrap(),
        vec![(conv.to_owned(), 4)]
    );
    // Cursors never move backwards.
    let moved = store
        .update_cursors("user_b", "phone", vec![update(3, 2)])
        .await
        .unwrap();
    assert!(moved.is_empty());
    assert_eq!(
        store.device_cursors("user_b", "phone").await.unwrap(),
        vec![(conv.to_owned(), 5)]
    );
    let moved = store
        .update_cursors("user_b", "phone", vec![update(0, 9)])
        .await
        .unwrap();
    assert_eq!(
        moved,
        vec![MarksMoved {
            conv_id: conv.into(),
            read_seq: 9,
            delivered_seq: 0
        }]
    );
    store
        .update_cursors("user_c", "phone", vec![update(0, 7)])
        .await
        .unwrap();
    store.mark_sent("user_a", conv, 2).await.unwrap();
    assert_eq!(
        store.read_marks(conv).await.unwrap(),
        vec![
            ("user_a".to_owned(), 2),
            ("user_b".to_owned(), 9),
            ("user_c".to_owned(), 7)
        ]
    );
    assert_eq!(
        store.delivered_marks(conv).await.unwrap(),
        vec![("user_b".to_owned(), 5)]
    );
    assert_eq!(store.read_seq("user_c", conv).await.unwrap(), 7);
    assert_eq!(store.read_seq("user_d", conv).await.unwrap(), 0);
    assert!(
        store
            .device_cursors("user_d", "phone")
            .await
            .unwrap()
            .is_empty()
    );
    store.set_last_seen("user_b", 1234).await.unwrap();
    assert_eq!(store.last_seen("user_b").await.unwrap(), 1234);
    assert_eq!(store.last_seen("user_c").await.unwrap(), 0);
}

#[tokio::test]
async fn blocks_and_friends_only_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Durability::Fsync);
        store.block("user_a", "user_b", 5).await.unwrap();
        store
            .put_user_settings(
                "user_c",
                quip_broker::store::UserSettingsRecord {
                    friends_only_dm: true,
                },
            )
            .await
            .unwrap();
        assert!(store.is_blocked("user_a", "user_b").await.unwrap());
        assert!(!store.is_blocked("user_b", "user_a").await.unwrap());
        store.flush().await.unwrap();
    }
    // The in-memory answers for "who blocks anyone / who is friends-only" are rebuilt
    // from the tree at open.
    let store = open(dir.path(), Durability::Fsync);
    assert!(store.is_blocked("user_a", "user_b").await.unwrap());
    assert!(store.user_settings("user_c").await.unwrap().friends_only_dm);
    assert!(!store.user_settings("user_a").await.unwrap().friends_only_dm);
    assert!(store.unblock("user_a", "user_b").await.unwrap());
    assert!(!store.is_blocked("user_a", "user_b").await.unwrap());
}

/// Concurrent changes to different fields of one record all survive: a device's
/// last-seen updates never undo its logout (the revocation field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_changes_are_atomic_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Durability::Os);
    store
        .create_user(quip_broker::store::UserRecord {
            user_id: "user_r".into(),
            username: "racer".into(),
            role: "user".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    concurrent_field_changes_all_survive(store).await;
}

/// Shared by the sled and Redis stores: 40 tasks set a device's last-seen while one
/// revokes it, and the same for a user's role and disabled flag; every field ends as
/// its writer left it.
pub async fn concurrent_field_changes_all_survive(store: Arc<dyn quip_broker::store::Store>) {
    let mut tasks = Vec::new();
    for i in 1..=40u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .change_device(
                    "user_r",
                    "phone",
                    Box::new(move |device| device.last_seen_ms = device.last_seen_ms.max(i)),
                )
                .await
                .unwrap();
            if i == 20 {
                store
                    .change_device(
                        "user_r",
                        "phone",
                        Box::new(|device| device.tokens_valid_after_ms = 999),
                    )
                    .await
                    .unwrap();
                store
                    .change_user("user_r", Box::new(|user| user.disabled = true))
                    .await
                    .unwrap()
                    .expect("the user exists");
            } else {
                store
                    .change_user("user_r", Box::new(move |user| user.created_at_ms = i))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let device = store.device("user_r", "phone").await.unwrap().unwrap();
    assert_eq!(
        (device.tokens_valid_after_ms, device.last_seen_ms),
        (999, 40)
    );
    let user = store.user_by_id("user_r").await.unwrap().unwrap();
    assert!(user.disabled, "the disabling survived every other change");
    assert!(
        store
            .change_user("user_nobody", Box::new(|user| user.disabled = true))
            .await
            .unwrap()
            .is_none()
    );
}
