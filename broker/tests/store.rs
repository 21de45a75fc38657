//! The sled store on its own: group commit, dedup, seq density, committed-only reads,
//! accounts and cursors, and survival across reopen.

use std::sync::Arc;

use quip_broker::store::sled::SledOptions;
use quip_broker::store::{
    CursorUpdate, Durability, NewMessage, RefreshRecord, SledStore, Store, StoreError, UserRecord,
};
use quip_protocol::pb;

fn text_message(from: &str, to: &str, client_msg_id: &str) -> NewMessage {
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
