//! Presence: online while at least one device is connected, and when the user was
//! last seen.
//!
//! Changes come from the router's session events (the first device connecting, the
//! last one leaving) and are pushed, as ephemeral frames (datagrams where possible),
//! to the online devices of the user's 1:1 partners. Group members are never pushed
//! to: in a 10,000-member group every connect would otherwise cost 10,000 pushes.
//! They ask instead ([`PresenceService::group`]), which costs one member scan.
//!
//! In a cluster a user is online while any node holds one of their devices: a node
//! whose last session of the user ends says "offline" only if no other node has
//! one, and queries add the devices the user has elsewhere.

use std::sync::Arc;

use quip_protocol::ids::{self, Conversation};
use quip_protocol::{ErrorCode, encode_frame_bytes, pb};

use super::auth::now_ms;
use super::{Caller, ServiceError, ServiceResult};
use crate::cluster::{Cluster, ClusterError};
use crate::router::{Push, Router, SessionEvent};
use crate::store::Store;

#[derive(Debug)]
pub struct PresenceService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    cluster: Arc<dyn Cluster>,
    /// Most users per query, and most online members listed for a group.
    max_query: usize,
}

impl PresenceService {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        cluster: Arc<dyn Cluster>,
        max_query: usize,
    ) -> Self {
        Self {
            store,
            router,
            cluster,
            max_query,
        }
    }

    /// Devices each user has connected to other nodes (all 0 on a single node).
    async fn devices_elsewhere(&self, users: &[String]) -> ServiceResult<Vec<u32>> {
        if !self.cluster.spans_nodes() {
            return Ok(vec![0; users.len()]);
        }
        self.cluster
            .devices_elsewhere(users)
            .await
            .map_err(|ClusterError::Unavailable(why)| {
                ServiceError::new(ErrorCode::Unavailable, format!("presence: {why}"))
            })
    }

    /// Follows a session event: when it takes the user online (first device) or
    /// offline (last device), records last-seen and tells the partners.
    pub async fn on_session_event(&self, event: &SessionEvent) {
        let changed = if event.opened {
            event.devices == 1
        } else {
            event.devices == 0
        };
        if !changed {
            return;
        }
        if self.cluster.spans_nodes() {
            match self
                .devices_elsewhere(std::slice::from_ref(&event.user_id))
                .await
            {
                // Online on another node: neither arriving nor leaving changes that.
                Ok(elsewhere) if elsewhere[0] > 0 => {
                    self.router.forget_offline(&event.user_id, u64::MAX);
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, user = %event.user_id, "presence change not announced");
                    return;
                }
            }
        }
        let mut last_seen_ms = 0;
        if !event.opened {
            last_seen_ms = self
                .router
                .recently_offline(&event.user_id)
                .unwrap_or_else(now_ms);
            match self.store.set_last_seen(&event.user_id, last_seen_ms).await {
                Ok(()) => self.router.forget_offline(&event.user_id, last_seen_ms),
                Err(error) => {
                    tracing::warn!(%error, user = %event.user_id, "cannot record last seen")
                }
            }
        }
        let presence = pb::Presence {
            user_id: event.user_id.clone(),
            online: event.opened,
            last_seen_ms,
            devices: event.devices as u32,
            version: event.version,
        };
        let partners = match self.partners(&event.user_id).await {
            Ok(partners) => partners,
            Err(error) => {
                tracing::warn!(%error, user = %event.user_id, "cannot list presence partners");
                return;
            }
        };
        let frame = encode_frame_bytes(&pb::ServerFrame {
            req_id: 0,
            body: Some(pb::server_frame::Body::Presence(presence)),
        });
        self.router.push(&frame, &partners, 0, Push::Ephemeral);
    }

    /// Who is told of a user's presence: their friends and 1:1 partners, except
    /// users who blocked them.
    async fn partners(&self, user_id: &str) -> ServiceResult<Vec<String>> {
        let mut partners = self.relations(user_id).await?;
        for blocker in self.store.blockers_of(user_id).await? {
            partners.remove(&blocker);
        }
        Ok(partners.into_iter().collect())
    }

    /// A user's friends and 1:1 partners (both relations go both ways).
    async fn relations(&self, user_id: &str) -> ServiceResult<std::collections::BTreeSet<String>> {
        let mut related: std::collections::BTreeSet<String> = self
            .store
            .user_conversations(user_id)
            .await?
            .iter()
            .filter_map(|conv_id| {
                Conversation::parse(conv_id)?
                    .peer_of(user_id)
                    .map(str::to_owned)
            })
            .collect();
        related.extend(
            self.store
                .friends(user_id)
                .await?
                .into_iter()
                .map(|(friend, _)| friend),
        );
        Ok(related)
    }

    /// The presence of the given users, each with the version current when it was
    /// read. Any signed-in user may ask about any user, as the conversation list of a
    /// new 1:1 chat needs before a first message relates the two (see the issue note).
    pub async fn query(&self, request: &pb::PresenceRequest) -> ServiceResult<pb::PresenceList> {
        if request.user_ids.len() > self.max_query {
            return Err(ServiceError::invalid(format!(
                "at most {} users per presence query",
                self.max_query
            )));
        }
        if let Some(bad) = request.user_ids.iter().find(|id| !ids::is_user_id(id)) {
            return Err(ServiceError::invalid(format!("{bad:?} is not a user id")));
        }
        Ok(pb::PresenceList {
            presences: self.snapshot(&request.user_ids).await?,
        })
    }

    /// The presence of some users now (ids not checked).
    pub async fn snapshot(&self, user_ids: &[String]) -> ServiceResult<Vec<pb::Presence>> {
        // Read before the sessions: any change after this gets a higher version, so a
        // client keeping the highest version never drops a newer push for this answer.
        let version = self.router.presence_version();
        let elsewhere = self.devices_elsewhere(user_ids).await?;
        let mut presences = Vec::with_capacity(user_ids.len());
        for (user_id, elsewhere) in user_ids.iter().zip(elsewhere) {
            let devices = self.router.sessions_of(user_id) + elsewhere as usize;
            let last_seen_ms = match (devices, self.router.recently_offline(user_id)) {
                (0, Some(at)) => at,
                (0, None) => self.store.last_seen(user_id).await?,
                _ => 0,
            };
            presences.push(pb::Presence {
                user_id: user_id.clone(),
                online: devices > 0,
                last_seen_ms,
                devices: devices as u32,
                version,
            });
        }
        Ok(presences)
    }

    /// How many members of a group are online, and the first of them by user id.
    /// Members only.
    pub async fn group(
        &self,
        caller: Caller<'_>,
        request: &pb::GroupPresenceRequest,
    ) -> ServiceResult<pb::GroupPresence> {
        if self
            .store
            .member(&request.group_id, caller.user_id)
            .await?
            .is_none()
        {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "you are not a member of this group",
            ));
        }
        let limit = match request.limit as usize {
            0 => self.max_query,
            n => n.min(self.max_query),
        };
        const PAGE: usize = 1000;
        let (mut member_count, mut online_count) = (0u32, 0u32);
        let mut online_user_ids = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.members(&request.group_id, &after, PAGE).await?;
            let ids: Vec<String> = page.iter().map(|m| m.user_id.clone()).collect();
            let elsewhere = self.devices_elsewhere(&ids).await?;
            for (member, elsewhere) in page.iter().zip(elsewhere) {
                member_count += 1;
                if self.router.sessions_of(&member.user_id) > 0 || elsewhere > 0 {
                    online_count += 1;
                    if online_user_ids.len() < limit {
                        online_user_ids.push(member.user_id.clone());
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.user_id.clone(),
                _ => break,
            }
        }
        Ok(pb::GroupPresence {
            group_id: request.group_id.clone(),
            member_count,
            online_count,
            online_user_ids,
        })
    }
}
