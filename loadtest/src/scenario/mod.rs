//! Load scenarios, one per file.

pub mod group;
pub mod idle;
pub mod load_args;
pub mod mixed;
pub mod pairs;
pub mod resume;
pub mod startup;

use quip_sdk::Client;

use crate::target::Target;

/// Registers a fresh user (unique per run) on its own client of node `node`.
pub async fn new_user(
    target: &Target,
    node: usize,
    prefix: &str,
    index: usize,
    run: u32,
) -> anyhow::Result<Client> {
    let client = target.client(node, &format!("{prefix}-{index}")).await?;
    client
        .register(
            &format!("lt{run:08x}{prefix}{index}"),
            crate::users::PASSWORD,
            None,
        )
        .await?;
    Ok(client)
}
