//! Group member lists for fan-out, cached in memory.
//!
//! Fan-out to a group needs its member ids on every message; reading them from the
//! store each time would cost a range scan per message. The cache holds one shared
//! `Arc<[String]>` per group, dropped on every membership change (the group service
//! calls [`MemberCache::invalidate`] after the change commits) and reloaded on the next
//! message. In a cluster every node holds its own cache, so an invalidation is also
//! broadcast to the other nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::cluster::{Cluster, Outbound};
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct MemberCache {
    store: Arc<dyn Store>,
    groups: DashMap<String, Arc<[String]>>,
    /// Bumped by every invalidation. A load that began before an invalidation may have
    /// read the old list, so it is not cached (returned, but not kept).
    epoch: AtomicU64,
    /// The other nodes, told of every invalidation (cluster mode).
    cluster: std::sync::OnceLock<std::sync::Weak<dyn Cluster>>,
}

impl MemberCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            groups: DashMap::new(),
            epoch: AtomicU64::new(0),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// The ids of a group's current members.
    pub async fn member_ids(&self, group_id: &str) -> Result<Arc<[String]>, StoreError> {
        if let Some(ids) = self.groups.get(group_id) {
            return Ok(ids.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let ids: Arc<[String]> = self
            .store
            .members(group_id, "", usize::MAX)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        if let dashmap::Entry::Vacant(slot) = self.groups.entry(group_id.to_owned()) {
            // Checked under the shard lock that `invalidate` also takes.
            if self.epoch.load(Ordering::Acquire) == epoch {
                slot.insert(ids.clone());
            }
        }
        Ok(ids)
    }

    /// From now on, invalidations reach the other nodes of `cluster` too.
    pub fn join_cluster(&self, cluster: std::sync::Weak<dyn Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Forgets a group's list, here and on every other node; call after every
    /// committed membership change.
    pub fn invalidate(&self, group_id: &str) {
        if let Some(cluster) = self.cluster.get().and_then(std::sync::Weak::upgrade) {
            cluster.forward(Outbound::MembersChanged {
                group_id: group_id.to_owned(),
            });
        }
        self.invalidate_here(group_id);
    }

    /// [`invalidate`](MemberCache::invalidate) on this node only.
    pub fn invalidate_here(&self, group_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.groups.remove(group_id);
    }
}
