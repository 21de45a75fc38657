//! Load scenarios, one per file.

pub mod pairs;
pub mod resume;

use quip_sdk::Client;

use crate::target::Target;

/// Registers a fresh user (unique per run) on its own client.
pub async fn new_user(
    target: &Target,
    prefix: &str,
    index: usize,
    run: u32,
) -> anyhow::Result<Client> {
    let client = target.client(&format!("{prefix}-{index}")).await?;
    client
        .register(
            &format!("lt{run:08x}{prefix}{index}"),
            "loadtest-password",
            None,
        )
        .await?;
    Ok(client)
}
