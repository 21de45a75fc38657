//! The back office over real QUIC (issue 8): the admin role (from the config's
//! `admin_usernames`), FORBIDDEN for everyone else, listing and searching users and
//! groups, disabling accounts, resetting passwords, roles, dissolving groups, stats.
//! Real brokers on loopback, real SDK clients; nothing here asserts how long
//! anything took.

use crate::common;

use std::collections::BTreeSet;

use common::{PASSWORD, TestBroker, WAIT, next_message};
use quip_protocol::ErrorCode;
use quip_sdk::{Client, ConnectionState, Event, ROLE_ADMIN, ROLE_USER, pb};

async fn with_root() -> (TestBroker, Client) {
    let broker = TestBroker::start_with(|c| {
        c.admin_usernames = vec!["root".into()];
        // These tests log in often from one address.
        c.rate_logins_per_ip_per_min = 0;
    })
    .await;
    let root = broker.user("root", "root-console").await;
    (broker, root)
}

fn id(client: &Client) -> String {
    client.user_id().expect("logged in")
}

fn code<T: std::fmt::Debug>(result: quip_sdk::Result<T>) -> Option<ErrorCode> {
    result.expect_err("the broker refuses").code()
}

/// Waits for the client's terminal `State(Closed)` and returns its reason; fails if
/// the client tried to reconnect first.
async fn closed_for_good(client: &Client) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next_event().await {
                Some(Event::State(ConnectionState::Closed { reason })) => return reason,
                Some(Event::State(ConnectionState::Reconnecting { reason, .. })) => {
                    panic!("reconnecting after the broker ended the session: {reason}")
                }
                Some(_) => continue,
                None => panic!("event stream ended without State(Closed)"),
            }
        }
    })
    .await
    .expect("the session is closed in time")
}

/// A password login on a fresh client.
async fn login(broker: &TestBroker, username: &str, password: &str) -> quip_sdk::Result<Client> {
    let client = broker.client(&format!("{username}-login")).await;
    client.login(username, password).await.map(|_| client)
}

fn system_event(message: &pb::Message) -> Option<&str> {
    match &message.content {
        Some(pb::message::Content::System(system)) => Some(&system.event),
        _ => None,
    }
}

/// Every user matching `query`, page by page (`limit` per page).
async fn all_users(root: &Client, query: &str, limit: u32) -> Vec<pb::AdminUser> {
    let mut users = Vec::new();
    let mut after = String::new();
    for _ in 0..20 {
        let page = root.admin_list_users(query, &after, limit).await.unwrap();
        assert!(page.users.len() <= limit as usize, "{page:?}");
        users.extend(page.users);
        if page.next_after_user_id.is_empty() {
            return users;
        }
        after = page.next_after_user_id;
    }
    panic!("paging does not end: {users:?}");
}

#[tokio::test]
async fn only_admins_may_use_the_back_office() {
    let (broker, root) = with_root().await;
    let alice = broker.user("alice", "a").await;
    assert_eq!(root.role().as_deref(), Some(ROLE_ADMIN));
    assert_eq!(alice.role().as_deref(), Some(ROLE_USER));
    let group = alice
        .create_group("mine", "", &[], pb::JoinMode::Open)
        .await
        .unwrap()
        .group
        .unwrap();
    let root_id = id(&root);

    let forbidden = Some(ErrorCode::Forbidden);
    assert_eq!(code(alice.admin_list_users("", "", 10).await), forbidden);
    assert_eq!(code(alice.admin_user(&root_id).await), forbidden);
    assert_eq!(
        code(alice.admin_set_disabled(&root_id, true).await),
        forbidden
    );
    assert_eq!(
        code(alice.admin_reset_password(&root_id, "hijacked pass").await),
        forbidden
    );
    assert_eq!(
        code(alice.admin_set_role(&id(&alice), ROLE_ADMIN).await),
        forbidden
    );
    assert_eq!(code(alice.admin_list_groups("", "", 10).await), forbidden);
    assert_eq!(
        code(alice.admin_dissolve_group(&group.group_id).await),
        forbidden
    );
    assert_eq!(code(alice.admin_stats().await), forbidden);

    // Nothing changed: root still logs in, alice is still a user, the group lives.
    login(&broker, "root", PASSWORD).await.unwrap();
    let me = root.admin_user(&id(&alice)).await.unwrap();
    assert_eq!(me.user.unwrap().role, ROLE_USER);
    assert!(!alice.group_info(&group.group_id).await.unwrap().dissolved);
    // The same admin name, in other letters, on a new login.
    let again = login(&broker, "ROOT", PASSWORD).await.unwrap();
    assert_eq!(again.role().as_deref(), Some(ROLE_ADMIN));
}

#[tokio::test]
async fn users_are_listed_searched_paged_and_shown_with_devices() {
    let (broker, root) = with_root().await;
    let alice = broker.user("alice", "a1").await;
    let _alice_laptop = broker.device("alice", "a2").await;
    let alina = broker.user("alina", "n").await;
    let carol = broker.client("c").await;
    carol
        .register("carol", PASSWORD, Some("Alicia Keys"))
        .await
        .unwrap();
    let bob = broker.user("bob", "b").await;
    let everyone: BTreeSet<String> = [&root, &alice, &alina, &carol, &bob]
        .into_iter()
        .map(id)
        .collect();

    // Everyone, one page, ordered by user id.
    let page = root.admin_list_users("", "", 0).await.unwrap();
    let ids: Vec<String> = page.users.iter().map(|u| u.user_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ordered by user id");
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        everyone,
        "{page:?}"
    );

    // Paged, two at a time: the same users, each once, in order.
    let paged: Vec<String> = all_users(&root, "", 2)
        .await
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    assert_eq!(paged, ids);

    // A substring of the username or nickname, case-insensitively.
    let names = |users: Vec<pb::AdminUser>| {
        users
            .into_iter()
            .map(|u| u.username)
            .collect::<BTreeSet<_>>()
    };
    let expected: BTreeSet<String> = ["alice", "alina", "carol"].map(String::from).into();
    assert_eq!(names(all_users(&root, "ali", 50).await), expected);
    assert_eq!(names(all_users(&root, "ALI", 1).await), expected);
    assert_eq!(
        names(all_users(&root, "keys", 50).await),
        ["carol".to_string()].into()
    );
    assert!(all_users(&root, "zzz", 50).await.is_empty());

    // What a listed user carries.
    let alice_row = page
        .users
        .iter()
        .find(|u| u.username == "alice")
        .unwrap()
        .clone();
    assert_eq!(alice_row.user_id, id(&alice));
    assert_eq!(alice_row.nickname, "alice");
    assert_eq!(alice_row.role, ROLE_USER);
    assert!(!alice_row.disabled);
    assert!(alice_row.created_at_ms > 0);
    assert!(alice_row.online);
    assert_eq!(alice_row.sessions, 2);
    let carol_row = page.users.iter().find(|u| u.username == "carol").unwrap();
    assert_eq!(carol_row.nickname, "Alicia Keys");
    let root_row = page.users.iter().find(|u| u.username == "root").unwrap();
    assert_eq!(root_row.role, ROLE_ADMIN);

    // One user in detail: devices and groups.
    alice
        .create_group("book club", "", &[id(&bob)], pb::JoinMode::Open)
        .await
        .unwrap();
    let detail = root.admin_user(&id(&alice)).await.unwrap();
    let user = detail.user.clone().unwrap();
    assert_eq!(user.username, "alice");
    assert_eq!(user.sessions, 2);
    let devices: BTreeSet<&str> = detail
        .devices
        .iter()
        .map(|d| d.device_id.as_str())
        .collect();
    assert_eq!(devices, ["a1", "a2"].into(), "{detail:?}");
    assert!(detail.devices.iter().all(|d| d.online && !d.current));
    assert_eq!(detail.groups, 1);
    assert_eq!(root.admin_user(&id(&alina)).await.unwrap().groups, 0);

    let nobody = quip_protocol::ids::new_user_id(0x0123_4567_89ab_cdef);
    assert_eq!(
        code(root.admin_user(&nobody).await),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn disabling_ends_the_sessions_and_logins_until_enabled() {
    let (broker, root) = with_root().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let alice_id = id(&alice);
    let tokens = alice.tokens().unwrap();

    root.admin_set_disabled(&alice_id, true).await.unwrap();
    let reason = closed_for_good(&alice).await;
    assert!(
        reason.contains("ACCOUNT_DISABLED") || reason.contains("disabled"),
        "{reason}"
    );
    assert_eq!(
        code(login(&broker, "alice", PASSWORD).await),
        Some(ErrorCode::AccountDisabled)
    );
    // Its tokens are revoked too.
    let with_token = broker.client("a").await;
    assert!(
        with_token
            .login_with_refresh_token(&tokens.refresh_token)
            .await
            .is_err()
    );
    let user = tokio::time::timeout(WAIT, async {
        loop {
            let user = root.admin_user(&alice_id).await.unwrap().user.unwrap();
            if !user.online {
                return user;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the disabled user goes offline");
    assert!(user.disabled);
    let listed = root.admin_list_users("alice", "", 10).await.unwrap();
    assert!(listed.users[0].disabled);
    // Others are not affected.
    bob.ping().await.unwrap();

    root.admin_set_disabled(&alice_id, false).await.unwrap();
    let alice = login(&broker, "alice", PASSWORD).await.unwrap();
    alice.send_text(&id(&bob), "I'm back").await.unwrap();
    assert!(
        !root
            .admin_user(&alice_id)
            .await
            .unwrap()
            .user
            .unwrap()
            .disabled
    );
}

#[tokio::test]
async fn resetting_a_password_ends_the_sessions_and_the_old_password() {
    let (broker, root) = with_root().await;
    let bob = broker.user("bob", "b").await;
    let bob_id = id(&bob);

    root.admin_reset_password(&bob_id, "a brand new secret")
        .await
        .unwrap();
    closed_for_good(&bob).await;
    assert_eq!(
        code(login(&broker, "bob", PASSWORD).await),
        Some(ErrorCode::InvalidCredentials)
    );
    let bob = login(&broker, "bob", "a brand new secret").await.unwrap();
    assert_eq!(id(&bob), bob_id);
    bob.ping().await.unwrap();

    assert_eq!(
        code(root.admin_reset_password(&bob_id, "short").await),
        Some(ErrorCode::InvalidArgument)
    );
}

#[tokio::test]
async fn roles_are_granted_and_taken_away() {
    let (broker, root) = with_root().await;
    let carol = broker.user("carol", "c").await;
    let carol_id = id(&carol);

    root.admin_set_role(&carol_id, ROLE_ADMIN).await.unwrap();
    let row = root.admin_user(&carol_id).await.unwrap().user.unwrap();
    assert_eq!(row.role, ROLE_ADMIN);
    let carol = login(&broker, "carol", PASSWORD).await.unwrap();
    assert_eq!(carol.role().as_deref(), Some(ROLE_ADMIN));
    carol.admin_stats().await.unwrap();

    root.admin_set_role(&carol_id, ROLE_USER).await.unwrap();
    let carol = login(&broker, "carol", PASSWORD).await.unwrap();
    assert_eq!(carol.role().as_deref(), Some(ROLE_USER));
    assert_eq!(code(carol.admin_stats().await), Some(ErrorCode::Forbidden));

    assert_eq!(
        code(root.admin_set_role(&carol_id, "superuser").await),
        Some(ErrorCode::InvalidArgument)
    );
}

#[tokio::test]
async fn groups_are_listed_searched_and_dissolved() {
    let (broker, root) = with_root().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    let mut created = Vec::new();
    for name in ["Rust fans", "Go fans", "Cooking"] {
        let group = alice
            .create_group(name, "", &[id(&bob)], pb::JoinMode::Open)
            .await
            .unwrap()
            .group
            .unwrap();
        created.push(group);
    }
    let names = |page: pb::AdminGroupPage| {
        page.groups
            .into_iter()
            .map(|g| g.name)
            .collect::<BTreeSet<_>>()
    };

    let all = root.admin_list_groups("", "", 0).await.unwrap();
    let ids: Vec<String> = all.groups.iter().map(|g| g.group_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ordered by group id");
    assert_eq!(ids.len(), 3, "{all:?}");
    assert_eq!(
        names(root.admin_list_groups("FANS", "", 0).await.unwrap()),
        ["Go fans".to_string(), "Rust fans".to_string()].into()
    );
    assert_eq!(
        names(root.admin_list_groups("rust", "", 0).await.unwrap()),
        ["Rust fans".to_string()].into()
    );
    // Paging by group id.
    let first = root.admin_list_groups("", "", 2).await.unwrap();
    assert_eq!(first.groups.len(), 2);
    assert!(!first.next_after_group_id.is_empty());
    let rest = root
        .admin_list_groups("", &first.next_after_group_id, 2)
        .await
        .unwrap();
    assert_eq!(rest.groups.len(), 1, "{rest:?}");
    assert_eq!(rest.groups[0].group_id, ids[2]);

    // Dissolving: the members get the SYSTEM message; the group can no longer change.
    let rust = created[0].clone();
    root.admin_dissolve_group(&rust.group_id).await.unwrap();
    for member in [&alice, &bob] {
        let dissolved = tokio::time::timeout(WAIT, async {
            loop {
                let message = next_message(member).await;
                if message.conv_id == rust.conv_id
                    && system_event(&message) == Some("group_dissolved")
                {
                    return message;
                }
            }
        })
        .await
        .expect("the SYSTEM message arrives");
        assert_eq!(dissolved.conv_id, rust.conv_id);
    }
    assert!(alice.group_info(&rust.group_id).await.unwrap().dissolved);
    assert_eq!(
        code(alice.send_group_text(&rust.group_id, "anyone?").await),
        Some(ErrorCode::Forbidden)
    );
    let listed = root.admin_list_groups("rust", "", 0).await.unwrap();
    assert!(listed.groups.iter().all(|g| g.dissolved), "{listed:?}");
    // The others live on.
    alice
        .send_group_text(&created[1].group_id, "still here")
        .await
        .unwrap();

    let nowhere = quip_protocol::ids::new_group_id(0x0123_4567_89ab_cdef);
    assert_eq!(
        code(root.admin_dissolve_group(&nowhere).await),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn stats_count_sessions_and_messages() {
    let (broker, root) = with_root().await;
    let alice = broker.user("alice", "a").await;
    let bob = broker.user("bob", "b").await;
    for n in 0..3 {
        alice
            .send_text(&id(&bob), &format!("message {n}"))
            .await
            .unwrap();
    }
    let stats = root.admin_stats().await.unwrap();
    assert!(stats.quic_sessions >= 2, "{stats:?}");
    assert!(stats.users_online >= 2, "{stats:?}");
    assert!(stats.messages_since_start >= 3, "{stats:?}");
    assert!(stats.uptime_ms > 0, "{stats:?}");
    assert!(stats.store_bytes > 0, "{stats:?}");
    assert_eq!(stats.active_calls, 0);
}

/// `quip-broker admin create` makes the first admin straight in a stopped broker's
/// data dir; `admin grant` promotes an existing user.
#[tokio::test]
async fn the_command_line_creates_and_grants_admins() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_quip-broker"))
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("QUIP_ADMIN_PASSWORD", PASSWORD)
            .env("QUIP_LOG", "warn")
            .output()
            .expect("quip-broker runs")
    };
    let created = run(&["admin", "create", "--username", "root"]);
    assert!(created.status.success(), "{created:?}");
    let unknown = run(&["admin", "grant", "--username", "nobody"]);
    assert!(
        !unknown.status.success(),
        "granting to a missing user fails"
    );

    let dir = data.path().to_owned();
    let mut broker = TestBroker::start_with(move |c| c.data_dir = dir).await;
    let root = broker.client("root-laptop").await;
    root.login("root", PASSWORD).await.unwrap();
    assert_eq!(root.role().as_deref(), Some(ROLE_ADMIN));
    assert!(root.admin_stats().await.is_ok());
    let alice = broker.user("alice", "a").await;
    assert_eq!(alice.role().as_deref(), Some(ROLE_USER));
    alice.close().await;
    root.close().await;
    broker.stop().await;

    let granted = run(&["admin", "grant", "--username", "alice"]);
    assert!(granted.status.success(), "{granted:?}");
    let dir = data.path().to_owned();
    let broker = TestBroker::start_with(move |c| c.data_dir = dir).await;
    let alice = broker.client("alice-laptop").await;
    alice.login("alice", PASSWORD).await.unwrap();
    assert_eq!(alice.role().as_deref(), Some(ROLE_ADMIN));
}
