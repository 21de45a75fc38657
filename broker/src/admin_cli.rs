//! `quip-broker admin …`: creating the first administrator, or granting the role,
//! straight in the data dir. The store allows one process at a time, so the broker
//! must be stopped (otherwise this fails with the store's lock error). The other way
//! to get a first admin is the `admin_usernames` setting.

use std::sync::Arc;

use crate::config::{AdminCommand, Config};
use crate::service::auth::ROLE_ADMIN;
use crate::service::{AuthService, CredentialRules, TokenIssuer};
use crate::store::sled::SledOptions;
use crate::store::{SledStore, Store};

pub async fn run(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(
            &config.data_dir.join("store"),
            SledOptions {
                durability: config.durability,
                ..SledOptions::default()
            },
        )
        .map_err(|error| {
            anyhow::anyhow!("cannot open the store (is the broker running?): {error}")
        })?,
    );
    match command {
        AdminCommand::Create {
            username,
            password,
            nickname,
        } => {
            // Tokens are not issued here; the issuer only completes the service.
            let auth = AuthService::new(
                store.clone(),
                TokenIssuer::new(&rand::random::<[u8; 32]>(), 60, 60),
                CredentialRules {
                    username_min_len: config.username_min_len,
                    username_max_len: config.username_max_len,
                    password_min_len: config.password_min_len,
                    password_max_len: config.password_max_len,
                },
                &[],
            );
            let user = auth
                .create_account(&username, &password, &nickname, ROLE_ADMIN)
                .await
                .map_err(|error| anyhow::anyhow!("{}", error.to_pb()))?;
            tracing::info!(target: "quip::audit", user_id = %user.user_id, username = %user.username, "admin created from the command line");
            println!("created admin {} ({})", user.username, user.user_id);
        }
        AdminCommand::Grant { username } => {
            let mut user = store
                .user_by_username(&username)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user named {username:?}"))?;
            user.role = ROLE_ADMIN.into();
            store.update_user(user.clone()).await?;
            tracing::info!(target: "quip::audit", user_id = %user.user_id, username = %user.username, "admin granted from the command line");
            println!("{} ({}) is an admin now", user.username, user.user_id);
        }
    }
    store.flush().await?;
    Ok(())
}
