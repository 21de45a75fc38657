//! Groups: lifecycle, roles, join modes, mutes, and the SYSTEM messages that record
//! every change in the group conversation.
//!
//! Every change is one append: the SYSTEM message plus the `GroupWrite`s that apply
//! the change, committed atomically with the message's seq. Members therefore learn
//! of changes in order with the chat, also after being offline, and a crash can never
//! separate a change from its announcement. Changes to one group are serialized by a
//! per-group lock so that checks (roles, size) and the write see the same state.

use std::sync::Arc;

use dashmap::DashMap;
use quip_protocol::{ErrorCode, ids, pb};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::auth::now_ms;
use super::chat::{Caller, ChatService};
use super::error::{ServiceError, ServiceResult};
use crate::store::{
    CursorUpdate, GroupRecord, GroupWrite, JoinRequestRecord, MemberRecord, NewMessage, Store,
};

/// Limits on groups, from the config.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    pub max_members: u32,
    pub max_name_chars: usize,
    pub max_description_chars: usize,
    pub max_avatar_url_bytes: usize,
    pub members_default_page: u32,
    pub members_max_page: u32,
    /// Most users in one create or invite request.
    pub max_batch_users: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_members: 10_000,
            max_name_chars: 64,
            max_description_chars: 512,
            max_avatar_url_bytes: 1024,
            members_default_page: 100,
            members_max_page: 500,
            max_batch_users: 500,
        }
    }
}

#[derive(Debug)]
pub struct GroupService {
    store: Arc<dyn Store>,
    chat: Arc<ChatService>,
    limits: GroupLimits,
    locks: DashMap<String, Arc<Mutex<()>>>,
}

use pb::group_request::Op;
use pb::{GroupRole as Role, JoinMode};

/// A SYSTEM message to append, with the changes it announces.
struct Announcement {
    event: &'static str,
    user_ids: Vec<String>,
    text: String,
    writes: Vec<GroupWrite>,
    /// Users who must also receive it live besides the current members (new members).
    also_to: Vec<String>,
}

impl Announcement {
    /// An announcement to the current members only.
    fn new(
        event: &'static str,
        user_ids: Vec<String>,
        text: String,
        writes: Vec<GroupWrite>,
    ) -> Self {
        Self {
            event,
            user_ids,
            text,
            writes,
            also_to: Vec::new(),
        }
    }
}

impl GroupService {
    pub fn new(store: Arc<dyn Store>, chat: Arc<ChatService>, limits: GroupLimits) -> Self {
        Self {
            store,
            chat,
            limits,
            locks: DashMap::new(),
        }
    }

    /// Runs one group request.
    pub async fn handle(
        &self,
        caller: Caller<'_>,
        request: pb::GroupRequest,
    ) -> ServiceResult<pb::GroupResponse> {
        use pb::group_response::Result as R;
        let op = request
            .op
            .ok_or_else(|| ServiceError::invalid("group request has no operation"))?;
        let result = match op {
            Op::Create(create) => R::Changed(self.create(caller, create).await?),
            Op::ListMine(_) => R::List(self.list_mine(caller.user_id).await?),
            Op::Get(get) => R::Info(self.get(caller.user_id, &get.group_id).await?),
            Op::Members(list) => R::Members(self.members(caller.user_id, &list).await?),
            Op::Join(join) => R::Changed(self.join(caller, &join).await?),
            Op::Leave(leave) => R::Changed(self.leave(caller, &leave.group_id).await?),
            Op::Invite(invite) => R::Changed(self.invite(caller, &invite).await?),
            Op::Kick(kick) => R::Changed(self.kick(caller, &kick).await?),
            Op::Dissolve(dissolve) => R::Changed(self.dissolve(caller, &dissolve.group_id).await?),
            Op::Transfer(transfer) => R::Changed(self.transfer(caller, &transfer).await?),
            Op::Update(update) => R::Changed(self.update(caller, update).await?),
            Op::SetRole(set) => R::Changed(self.set_role(caller, &set).await?),
            Op::Mute(mute) => R::Changed(self.mute(caller, &mute).await?),
            Op::MuteAll(mute) => R::Changed(self.mute_all(caller, &mute).await?),
            Op::JoinRequests(list) => {
                R::JoinRequests(self.join_requests(caller.user_id, &list.group_id).await?)
            }
            Op::Decide(decide) => R::Changed(self.decide(caller, &decide).await?),
        };
        Ok(pb::GroupResponse {
            result: Some(result),
        })
    }

    async fn create(
        &self,
        caller: Caller<'_>,
        create: pb::CreateGroup,
    ) -> ServiceResult<pb::GroupChanged> {
        self.check_text(&create.name, &create.description, &create.avatar_url, true)?;
        let mut member_ids = self.existing_users(&create.member_ids).await?;
        member_ids.retain(|id| id != caller.user_id);
        if member_ids.len() as u64 + 1 > u64::from(self.limits.max_members) {
            return Err(full(self.limits.max_members));
        }
        let join_mode = match JoinMode::try_from(create.join_mode) {
            Ok(JoinMode::Unspecified) => JoinMode::Open,
            Ok(mode) => mode,
            Err(_) => return Err(ServiceError::invalid("unknown join mode")),
        };
        let now = now_ms();
        let group = GroupRecord {
            group_id: ids::new_group_id(rand::random()),
            name: create.name.trim().to_owned(),
            description: create.description,
            avatar_url: create.avatar_url,
            owner_id: caller.user_id.to_owned(),
            join_mode: join_mode as i32,
            mute_all: false,
            created_at_ms: now,
            dissolved: false,
            member_count: member_ids.len() as u32 + 1,
        };
        let mut writes = vec![GroupWrite::Group(group.clone())];
        writes.push(GroupWrite::Join(new_member(
            &group.group_id,
            caller.user_id,
            Role::Owner,
        )));
        for id in &member_ids {
            writes.push(GroupWrite::Join(new_member(
                &group.group_id,
                id,
                Role::Member,
            )));
        }
        let mut everyone = vec![caller.user_id.to_owned()];
        everyone.extend(member_ids.iter().cloned());
        let text = format!(
            "{} created the group \"{}\"",
            self.name_of(caller.user_id).await,
            group.name
        );
        let announcement = Announcement {
            event: "group_created",
            user_ids: everyone.clone(),
            text,
            writes,
            also_to: everyone,
        };
        let _lock = self.lock(&group.group_id).await;
        let seq = self.announce(caller, &group.group_id, announcement).await?;
        tracing::info!(group_id = %group.group_id, members = group.member_count, "group created");
        Ok(changed(self.info(&group, Role::Owner), seq))
    }

    async fn list_mine(&self, user_id: &str) -> ServiceResult<pb::GroupList> {
        let mut groups = Vec::new();
        for conv_id in self.store.user_conversations(user_id).await? {
            let Some(group_id) = conv_id.strip_prefix(ids::GROUP_CONV_PREFIX) else {
                continue;
            };
            let (Some(group), Some(member)) = (
                self.store.group(group_id).await?,
                self.store.member(group_id, user_id).await?,
            ) else {
                continue;
            };
            groups.push(self.info(&group, role(&member)));
        }
        groups.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| a.group_id.cmp(&b.group_id))
        });
        Ok(pb::GroupList { groups })
    }

    async fn get(&self, user_id: &str, group_id: &str) -> ServiceResult<pb::GroupInfo> {
        let group = self.group(group_id).await?;
        let my_role = self
            .store
            .member(group_id, user_id)
            .await?
            .map_or(Role::Unspecified, |m| role(&m));
        Ok(self.info(&group, my_role))
    }

    async fn members(
        &self,
        user_id: &str,
        list: &pb::ListMembers,
    ) -> ServiceResult<pb::MemberPage> {
        self.group(&list.group_id).await?;
        self.member_of(&list.group_id, user_id).await?;
        let limit = match list.limit {
            0 => self.limits.members_default_page,
            n => n.min(self.limits.members_max_page),
        } as usize;
        let mut records = self
            .store
            .members(&list.group_id, &list.after_user_id, limit + 1)
            .await?;
        let more = records.len() > limit;
        records.truncate(limit);
        let next_after_user_id = if more {
            records
                .last()
                .map(|m| m.user_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut members = Vec::with_capacity(records.len());
        for record in records {
            members.push(pb::GroupMember {
                nickname: self.name_of(&record.user_id).await,
                user_id: record.user_id,
                role: record.role,
                joined_at_ms: record.joined_at_ms,
                muted_until_ms: record.muted_until_ms,
            });
        }
        Ok(pb::MemberPage {
            members,
            next_after_user_id,
        })
    }

    async fn join(
        &self,
        caller: Caller<'_>,
        join: &pb::JoinGroup,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&join.group_id).await;
        let group = self.live_group(&join.group_id).await?;
        if let Some(member) = self.store.member(&join.group_id, caller.user_id).await? {
            return Ok(changed(self.info(&group, role(&member)), 0));
        }
        match JoinMode::try_from(group.join_mode).unwrap_or(JoinMode::Open) {
            JoinMode::InviteOnly => Err(ServiceError::new(
                ErrorCode::Forbidden,
                "this group is invite-only",
            )),
            JoinMode::Approval => {
                if join.message.chars().count() > self.limits.max_description_chars {
                    return Err(ServiceError::invalid("join message is too long"));
                }
                self.store
                    .put_join_request(JoinRequestRecord {
                        group_id: join.group_id.clone(),
                        user_id: caller.user_id.to_owned(),
                        message: join.message.clone(),
                        requested_at_ms: now_ms(),
                    })
                    .await?;
                let mut result = changed(self.info(&group, Role::Unspecified), 0);
                result.pending_approval = true;
                Ok(result)
            }
            JoinMode::Open | JoinMode::Unspecified => {
                let text = format!("{} joined", self.name_of(caller.user_id).await);
                self.add_members(
                    caller,
                    group,
                    vec![caller.user_id.to_owned()],
                    "member_joined",
                    text,
                )
                .await
            }
        }
    }

    async fn leave(&self, caller: Caller<'_>, group_id: &str) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(group_id).await;
        let mut group = self.live_group(group_id).await?;
        let member = self.member_of(group_id, caller.user_id).await?;
        if role(&member) == Role::Owner {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "the owner cannot leave: transfer ownership or dissolve the group",
            ));
        }
        group.member_count = group.member_count.saturating_sub(1);
        let text = format!("{} left", self.name_of(caller.user_id).await);
        let seq = self
            .announce(
                caller,
                group_id,
                Announcement::new(
                    "member_left",
                    vec![caller.user_id.to_owned()],
                    text,
                    vec![GroupWrite::Group(group.clone()), leave_write(&member)],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, Role::Unspecified), seq))
    }

    async fn invite(
        &self,
        caller: Caller<'_>,
        invite: &pb::InviteMembers,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&invite.group_id).await;
        let group = self.live_group(&invite.group_id).await?;
        let inviter = self.member_of(&invite.group_id, caller.user_id).await?;
        let open = group.join_mode == JoinMode::Open as i32;
        if !open && role(&inviter) < Role::Admin {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "only owners and admins may invite to this group",
            ));
        }
        let mut new_ids = Vec::new();
        for id in self.existing_users(&invite.user_ids).await? {
            if self.store.member(&invite.group_id, &id).await?.is_none() {
                new_ids.push(id);
            }
        }
        if new_ids.is_empty() {
            return Ok(changed(self.info(&group, role(&inviter)), 0));
        }
        let mut names = Vec::new();
        for id in &new_ids {
            names.push(self.name_of(id).await);
        }
        let text = format!(
            "{} added {}",
            self.name_of(caller.user_id).await,
            names.join(", ")
        );
        self.add_members(caller, group, new_ids, "members_invited", text)
            .await
    }

    async fn kick(
        &self,
        caller: Caller<'_>,
        kick: &pb::KickMember,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&kick.group_id).await;
        let mut group = self.live_group(&kick.group_id).await?;
        let actor = self.member_of(&kick.group_id, caller.user_id).await?;
        let target = self.target_member(&kick.group_id, &kick.user_id).await?;
        require_above(&actor, &target, "kick")?;
        group.member_count = group.member_count.saturating_sub(1);
        let text = format!(
            "{} removed {}",
            self.name_of(caller.user_id).await,
            self.name_of(&kick.user_id).await
        );
        let seq = self
            .announce(
                caller,
                &kick.group_id,
                Announcement::new(
                    "member_kicked",
                    vec![kick.user_id.clone()],
                    text,
                    vec![GroupWrite::Group(group.clone()), leave_write(&target)],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, role(&actor)), seq))
    }

    async fn dissolve(
        &self,
        caller: Caller<'_>,
        group_id: &str,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(group_id).await;
        let mut group = self.live_group(group_id).await?;
        let actor = self.member_of(group_id, caller.user_id).await?;
        require_role(&actor, Role::Owner, "dissolve the group")?;
        group.dissolved = true;
        let text = format!("{} dissolved the group", self.name_of(caller.user_id).await);
        let seq = self
            .announce(
                caller,
                group_id,
                Announcement::new(
                    "group_dissolved",
                    Vec::new(),
                    text,
                    vec![GroupWrite::Group(group.clone())],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, Role::Owner), seq))
    }

    /// Dissolves a group on an administrator's order (the admin service checked the
    /// role): like an owner's dissolve, announced to the members.
    pub async fn dissolve_by_admin(
        &self,
        admin: Caller<'_>,
        group_id: &str,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(group_id).await;
        let mut group = self.live_group(group_id).await?;
        group.dissolved = true;
        let seq = self
            .announce(
                admin,
                group_id,
                Announcement::new(
                    "group_dissolved",
                    Vec::new(),
                    "An administrator dissolved the group".into(),
                    vec![GroupWrite::Group(group.clone())],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, Role::Unspecified), seq))
    }

    /// A group as an outsider sees it (no role).
    pub fn public_info(&self, group: &GroupRecord) -> pb::GroupInfo {
        self.info(group, Role::Unspecified)
    }

    async fn transfer(
        &self,
        caller: Caller<'_>,
        transfer: &pb::TransferOwnership,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&transfer.group_id).await;
        let mut group = self.live_group(&transfer.group_id).await?;
        let mut owner = self.member_of(&transfer.group_id, caller.user_id).await?;
        require_role(&owner, Role::Owner, "transfer ownership")?;
        let mut heir = self
            .target_member(&transfer.group_id, &transfer.new_owner_id)
            .await?;
        if heir.user_id == owner.user_id {
            return Err(ServiceError::invalid("you already own this group"));
        }
        owner.role = Role::Admin as i32;
        heir.role = Role::Owner as i32;
        group.owner_id = heir.user_id.clone();
        let text = format!(
            "{} made {} the owner",
            self.name_of(caller.user_id).await,
            self.name_of(&heir.user_id).await
        );
        let seq = self
            .announce(
                caller,
                &transfer.group_id,
                Announcement::new(
                    "owner_changed",
                    vec![heir.user_id.clone()],
                    text,
                    vec![
                        GroupWrite::Group(group.clone()),
                        GroupWrite::Update(owner),
                        GroupWrite::Update(heir),
                    ],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, Role::Admin), seq))
    }

    async fn update(
        &self,
        caller: Caller<'_>,
        update: pb::UpdateGroup,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&update.group_id).await;
        let mut group = self.live_group(&update.group_id).await?;
        let actor = self.member_of(&update.group_id, caller.user_id).await?;
        require_role(&actor, Role::Admin, "change the group's info")?;
        let mut changes = Vec::new();
        if let Some(name) = update.name {
            group.name = name.trim().to_owned();
            changes.push(format!("renamed the group to \"{}\"", group.name));
        }
        if let Some(description) = update.description {
            group.description = description;
            changes.push("changed the description".to_owned());
        }
        if let Some(avatar_url) = update.avatar_url {
            group.avatar_url = avatar_url;
            changes.push("changed the avatar".to_owned());
        }
        match JoinMode::try_from(update.join_mode) {
            Ok(JoinMode::Unspecified) => {}
            Ok(mode) => {
                group.join_mode = mode as i32;
                changes.push(format!(
                    "set joining to {}",
                    mode.as_str_name().to_lowercase()
                ));
            }
            Err(_) => return Err(ServiceError::invalid("unknown join mode")),
        }
        if changes.is_empty() {
            return Err(ServiceError::invalid("nothing to change"));
        }
        self.check_text(&group.name, &group.description, &group.avatar_url, true)?;
        let text = format!(
            "{} {}",
            self.name_of(caller.user_id).await,
            changes.join(", ")
        );
        let seq = self
            .announce(
                caller,
                &update.group_id,
                Announcement::new(
                    "group_updated",
                    Vec::new(),
                    text,
                    vec![GroupWrite::Group(group.clone())],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, role(&actor)), seq))
    }

    async fn set_role(
        &self,
        caller: Caller<'_>,
        set: &pb::SetMemberRole,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&set.group_id).await;
        let group = self.live_group(&set.group_id).await?;
        let actor = self.member_of(&set.group_id, caller.user_id).await?;
        require_role(&actor, Role::Owner, "change roles")?;
        let new_role = match Role::try_from(set.role) {
            Ok(role @ (Role::Member | Role::Admin)) => role,
            _ => {
                return Err(ServiceError::invalid(
                    "role must be MEMBER or ADMIN; ownership moves with a transfer",
                ));
            }
        };
        let mut target = self.target_member(&set.group_id, &set.user_id).await?;
        if role(&target) == Role::Owner {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "the owner's role changes only by transfer",
            ));
        }
        target.role = new_role as i32;
        let text = format!(
            "{} made {} {}",
            self.name_of(caller.user_id).await,
            self.name_of(&set.user_id).await,
            if new_role == Role::Admin {
                "an admin"
            } else {
                "a member"
            }
        );
        let seq = self
            .announce(
                caller,
                &set.group_id,
                Announcement::new(
                    "role_changed",
                    vec![set.user_id.clone()],
                    text,
                    vec![GroupWrite::Update(target)],
                ),
            )
            .await?;
        Ok(changed(self.info(&group, Role::Owner), seq))
    }

    async fn mute(
        &self,
        caller: Caller<'_>,
        mute: &pb::MuteMember,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&mute.group_id).await;
        let group = self.live_group(&mute.group_id).await?;
        let actor = self.member_of(&mute.group_id, caller.user_id).await?;
        let mut target = self.target_member(&mute.group_id, &mute.user_id).await?;
        require_above(&actor, &target, "mute")?;
        target.muted_until_ms = mute.until_ms;
        let (event, verb) = if mute.until_ms == 0 {
            ("member_unmuted", "unmuted")
        } else {
            ("member_muted", "muted")
        };
        let text = format!(
            "{} {verb} {}",
            self.name_of(caller.user_id).await,
            self.name_of(&mute.user_id).await
        );
        let seq = self
            .announce(
                caller,
                &mute.group_id,
                Announcement {
                    event,
                    user_ids: vec![mute.user_id.clone()],
                    text,
                    writes: vec![GroupWrite::Update(target)],
                    also_to: Vec::new(),
                },
            )
            .await?;
        Ok(changed(self.info(&group, role(&actor)), seq))
    }

    async fn mute_all(
        &self,
        caller: Caller<'_>,
        mute: &pb::SetMuteAll,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&mute.group_id).await;
        let mut group = self.live_group(&mute.group_id).await?;
        let actor = self.member_of(&mute.group_id, caller.user_id).await?;
        require_role(&actor, Role::Admin, "mute everyone")?;
        group.mute_all = mute.mute_all;
        let (event, text) = if mute.mute_all {
            ("mute_all_on", "only owners and admins can send now")
        } else {
            ("mute_all_off", "everyone can send again")
        };
        let text = format!("{}: {text}", self.name_of(caller.user_id).await);
        let seq = self
            .announce(
                caller,
                &mute.group_id,
                Announcement {
                    event,
                    user_ids: Vec::new(),
                    text,
                    writes: vec![GroupWrite::Group(group.clone())],
                    also_to: Vec::new(),
                },
            )
            .await?;
        Ok(changed(self.info(&group, role(&actor)), seq))
    }

    async fn join_requests(
        &self,
        user_id: &str,
        group_id: &str,
    ) -> ServiceResult<pb::JoinRequestList> {
        self.group(group_id).await?;
        let actor = self.member_of(group_id, user_id).await?;
        require_role(&actor, Role::Admin, "see join requests")?;
        let requests = self
            .store
            .join_requests(group_id)
            .await?
            .into_iter()
            .map(|r| pb::JoinRequestInfo {
                group_id: r.group_id,
                user_id: r.user_id,
                message: r.message,
                requested_at_ms: r.requested_at_ms,
            })
            .collect();
        Ok(pb::JoinRequestList { requests })
    }

    async fn decide(
        &self,
        caller: Caller<'_>,
        decide: &pb::DecideJoinRequest,
    ) -> ServiceResult<pb::GroupChanged> {
        let _lock = self.lock(&decide.group_id).await;
        let group = self.live_group(&decide.group_id).await?;
        let actor = self.member_of(&decide.group_id, caller.user_id).await?;
        require_role(&actor, Role::Admin, "decide join requests")?;
        let request = self
            .store
            .take_join_request(&decide.group_id, &decide.user_id)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such join request"))?;
        if !decide.accept {
            return Ok(changed(self.info(&group, role(&actor)), 0));
        }
        let text = format!(
            "{} joined (approved by {})",
            self.name_of(&request.user_id).await,
            self.name_of(caller.user_id).await
        );
        let result = self
            .add_members(
                caller,
                group,
                vec![request.user_id.clone()],
                "member_joined",
                text,
            )
            .await;
        if result.is_err() {
            // Keep the request so it can be decided again (e.g. once there is room).
            self.store.put_join_request(request).await?;
        }
        result
    }

    /// Adds users (not yet members) to a live group, with one SYSTEM message.
    async fn add_members(
        &self,
        caller: Caller<'_>,
        mut group: GroupRecord,
        user_ids: Vec<String>,
        event: &'static str,
        text: String,
    ) -> ServiceResult<pb::GroupChanged> {
        let count = group.member_count as usize + user_ids.len();
        if count > self.limits.max_members as usize {
            return Err(full(self.limits.max_members));
        }
        group.member_count = count as u32;
        let mut writes = vec![GroupWrite::Group(group.clone())];
        writes.extend(
            user_ids
                .iter()
                .map(|id| GroupWrite::Join(new_member(&group.group_id, id, Role::Member))),
        );
        let seq = self
            .announce(
                caller,
                &group.group_id,
                Announcement {
                    event,
                    user_ids: user_ids.clone(),
                    text,
                    writes,
                    also_to: user_ids,
                },
            )
            .await?;
        let my_role = self
            .store
            .member(&group.group_id, caller.user_id)
            .await?
            .map_or(Role::Unspecified, |m| role(&m));
        Ok(changed(self.info(&group, my_role), seq))
    }

    /// Appends the SYSTEM message with its changes, fans it out to the members (and
    /// `also_to`), and drops the cached member list. Returns the message's seq.
    async fn announce(
        &self,
        caller: Caller<'_>,
        group_id: &str,
        announcement: Announcement,
    ) -> ServiceResult<u64> {
        let mut recipients: Vec<String> = self.chat.members().member_ids(group_id).await?.to_vec();
        for id in &announcement.also_to {
            if !recipients.contains(id) {
                recipients.push(id.clone());
            }
        }
        let message = pb::Message {
            conv_id: ids::group_conv_id(group_id),
            from: caller.user_id.to_owned(),
            from_device: caller.device_id.to_owned(),
            group_id: group_id.to_owned(),
            kind: pb::MessageKind::System as i32,
            content: Some(pb::message::Content::System(pb::SystemContent {
                event: announcement.event.to_owned(),
                user_ids: announcement.user_ids,
                text: announcement.text,
                call: None,
            })),
            client_msg_id: format!("sys-{:032x}", rand::random::<u128>()),
            ..Default::default()
        };
        let new_message = NewMessage {
            message,
            // New members' conversation lists gain the group.
            participants: announcement.also_to,
            group_writes: announcement.writes,
            amend: None,
        };
        // System messages reach every device of the actor too (no origin to skip).
        let posted = self
            .chat
            .post(new_message, Arc::from(recipients), None)
            .await;
        self.chat.members().invalidate(group_id);
        let seq = posted?.message.seq;
        // The actor has seen their own change: it does not count as unread for them.
        let read = CursorUpdate {
            conv_id: ids::group_conv_id(group_id),
            delivered_seq: 0,
            read_seq: seq,
        };
        if let Err(error) = self
            .store
            .update_cursors(caller.user_id, caller.device_id, vec![read])
            .await
        {
            tracing::warn!(%error, "could not move the actor's read mark");
        }
        Ok(seq)
    }

    async fn lock(&self, group_id: &str) -> OwnedMutexGuard<()> {
        let lock = self.locks.entry(group_id.to_owned()).or_default().clone();
        lock.lock_owned().await
    }

    async fn group(&self, group_id: &str) -> ServiceResult<GroupRecord> {
        if !ids::is_group_id(group_id) {
            return Err(ServiceError::invalid("malformed group id"));
        }
        self.store
            .group(group_id)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such group"))
    }

    /// A group that can still change (not dissolved).
    async fn live_group(&self, group_id: &str) -> ServiceResult<GroupRecord> {
        let group = self.group(group_id).await?;
        if group.dissolved {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "the group was dissolved",
            ));
        }
        Ok(group)
    }

    /// The caller's membership, or FORBIDDEN.
    async fn member_of(&self, group_id: &str, user_id: &str) -> ServiceResult<MemberRecord> {
        self.store.member(group_id, user_id).await?.ok_or_else(|| {
            ServiceError::new(ErrorCode::Forbidden, "you are not a member of this group")
        })
    }

    /// Another user's membership, or NOT_FOUND.
    async fn target_member(&self, group_id: &str, user_id: &str) -> ServiceResult<MemberRecord> {
        self.store.member(group_id, user_id).await?.ok_or_else(|| {
            ServiceError::new(
                ErrorCode::NotFound,
                "that user is not a member of this group",
            )
        })
    }

    /// The given ids, deduplicated, each checked to be an existing user.
    async fn existing_users(&self, user_ids: &[String]) -> ServiceResult<Vec<String>> {
        if user_ids.len() > self.limits.max_batch_users {
            return Err(ServiceError::invalid(format!(
                "at most {} users per request",
                self.limits.max_batch_users
            )));
        }
        let mut out: Vec<String> = Vec::with_capacity(user_ids.len());
        for id in user_ids {
            if out.contains(id) {
                continue;
            }
            if !ids::is_user_id(id) || self.store.user_by_id(id).await?.is_none() {
                return Err(ServiceError::new(
                    ErrorCode::NotFound,
                    format!("no such user {id:?}"),
                ));
            }
            out.push(id.clone());
        }
        Ok(out)
    }

    fn check_text(
        &self,
        name: &str,
        description: &str,
        avatar_url: &str,
        name_required: bool,
    ) -> ServiceResult<()> {
        let name_chars = name.trim().chars().count();
        if (name_required && name_chars == 0) || name_chars > self.limits.max_name_chars {
            return Err(ServiceError::invalid(format!(
                "group name must be 1 to {} characters",
                self.limits.max_name_chars
            )));
        }
        if description.chars().count() > self.limits.max_description_chars {
            return Err(ServiceError::invalid(format!(
                "description is longer than {} characters",
                self.limits.max_description_chars
            )));
        }
        if avatar_url.len() > self.limits.max_avatar_url_bytes {
            return Err(ServiceError::invalid("avatar url is too long"));
        }
        Ok(())
    }

    /// A user's display name for SYSTEM message texts.
    async fn name_of(&self, user_id: &str) -> String {
        match self.store.user_by_id(user_id).await {
            Ok(Some(user)) => user.nickname,
            _ => user_id.to_owned(),
        }
    }
}

fn new_member(group_id: &str, user_id: &str, role: Role) -> MemberRecord {
    MemberRecord {
        group_id: group_id.to_owned(),
        user_id: user_id.to_owned(),
        role: role as i32,
        joined_at_ms: now_ms(),
        joined_after_seq: 0,
        muted_until_ms: 0,
    }
}

fn leave_write(member: &MemberRecord) -> GroupWrite {
    GroupWrite::Leave {
        group_id: member.group_id.clone(),
        user_id: member.user_id.clone(),
        joined_after_seq: member.joined_after_seq,
    }
}

fn role(member: &MemberRecord) -> Role {
    Role::try_from(member.role).unwrap_or(Role::Member)
}

fn require_role(member: &MemberRecord, needed: Role, action: &str) -> ServiceResult<()> {
    if role(member) >= needed {
        Ok(())
    } else {
        Err(ServiceError::new(
            ErrorCode::Forbidden,
            format!(
                "only {} may {action}",
                if needed == Role::Owner {
                    "the owner"
                } else {
                    "owners and admins"
                }
            ),
        ))
    }
}

/// Kicking and muting need an admin or owner acting on someone of a lower role.
fn require_above(actor: &MemberRecord, target: &MemberRecord, action: &str) -> ServiceResult<()> {
    require_role(actor, Role::Admin, action)?;
    if role(target) >= role(actor) {
        return Err(ServiceError::new(
            ErrorCode::Forbidden,
            format!("you may only {action} members below your role"),
        ));
    }
    Ok(())
}

fn full(max: u32) -> ServiceError {
    ServiceError::new(
        ErrorCode::GroupFull,
        format!("a group has at most {max} members"),
    )
}

impl GroupService {
    fn info(&self, group: &GroupRecord, my_role: Role) -> pb::GroupInfo {
        pb::GroupInfo {
            group_id: group.group_id.clone(),
            conv_id: ids::group_conv_id(&group.group_id),
            name: group.name.clone(),
            description: group.description.clone(),
            avatar_url: group.avatar_url.clone(),
            owner_id: group.owner_id.clone(),
            join_mode: group.join_mode,
            member_count: group.member_count,
            max_members: self.limits.max_members,
            mute_all: group.mute_all,
            created_at_ms: group.created_at_ms,
            dissolved: group.dissolved,
            my_role: my_role as i32,
        }
    }
}

fn changed(group: pb::GroupInfo, seq: u64) -> pb::GroupChanged {
    pb::GroupChanged {
        group: Some(group),
        seq,
        pending_approval: false,
    }
}
