//! The back office: user and group management and server stats, for users with the
//! "admin" role. The role is read from the store on every request, so taking it away
//! takes effect at once. Every action that changes something is logged on the
//! `quip::audit` tracing target with the admin who did it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quip_protocol::{ErrorCode, ids, pb};

use super::auth::{ROLE_ADMIN, ROLE_USER};
use super::{AccountService, AuthService, Caller, GroupService, ServiceError, ServiceResult};
use crate::router::Router;
use crate::store::{Store, UserRecord};

use pb::admin_request::Op;
use pb::admin_response::Result as Answer;

/// Page size when a listing asks for none, and the largest page.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;
/// Users or groups looked at per listing when searching, so one search cannot walk
/// a huge store in one request: the page says where to continue.
const SCAN_BUDGET: usize = 10_000;
/// The window of `messages_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct AdminService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    account: Arc<AccountService>,
    groups: Arc<GroupService>,
    calls: Arc<super::CallService>,
    started: Instant,
    /// (when, messages stored since start), one sample a second.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

impl AdminService {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        account: Arc<AccountService>,
        groups: Arc<GroupService>,
        calls: Arc<super::CallService>,
    ) -> Self {
        Self {
            store,
            router,
            account,
            groups,
            calls,
            started: Instant::now(),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Records the store's append count; the server calls it every second.
    pub fn sample(&self) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        samples.push_back((now, self.store.stats().appends));
        while samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
    }

    pub async fn handle(
        &self,
        auth: &AuthService,
        caller: Caller<'_>,
        request: pb::AdminRequest,
    ) -> ServiceResult<pb::AdminResponse> {
        let admin = self.require_admin(caller.user_id).await?;
        let done = || Answer::Done(pb::AdminDone {});
        let result = match request.op {
            None => return Err(ServiceError::invalid("admin request has no operation")),
            Some(Op::ListUsers(list)) => Answer::Users(self.list_users(&list).await?),
            Some(Op::GetUser(get)) => Answer::User(self.user_detail(&get.user_id).await?),
            Some(Op::ListGroups(list)) => Answer::Groups(self.list_groups(&list).await?),
            Some(Op::Stats(_)) => Answer::Stats(self.stats()),
            Some(Op::SetDisabled(set)) => {
                let user = self.user(&set.user_id).await?;
                if user.user_id == admin.user_id && set.disabled {
                    return Err(ServiceError::invalid("you cannot disable yourself"));
                }
                let disabled = set.disabled;
                self.store
                    .change_user(
                        &user.user_id,
                        Box::new(move |user| user.disabled = disabled),
                    )
                    .await?;
                if set.disabled {
                    self.account
                        .revoke_user(
                            &set.user_id,
                            ErrorCode::AccountDisabled,
                            "account is disabled",
                        )
                        .await?;
                }
                audit(
                    &admin,
                    if set.disabled {
                        "disable_user"
                    } else {
                        "enable_user"
                    },
                    &set.user_id,
                );
                done()
            }
            Some(Op::ResetPassword(reset)) => {
                let mut user = self.user(&reset.user_id).await?;
                auth.set_password(&mut user, &reset.new_password).await?;
                let hash = user.password_hash;
                self.store
                    .change_user(
                        &user.user_id,
                        Box::new(move |user| user.password_hash = hash.clone()),
                    )
                    .await?;
                self.account
                    .revoke_user(
                        &reset.user_id,
                        ErrorCode::LoggedOut,
                        "your password was reset",
                    )
                    .await?;
                audit(&admin, "reset_password", &reset.user_id);
                done()
            }
            Some(Op::SetRole(set)) => {
                if set.role != ROLE_ADMIN && set.role != ROLE_USER {
                    return Err(ServiceError::invalid("role must be \"user\" or \"admin\""));
                }
                let user = self.user(&set.user_id).await?;
                if user.user_id == admin.user_id && set.role != ROLE_ADMIN {
                    return Err(ServiceError::invalid(
                        "you cannot take your own admin role; another admin can",
                    ));
                }
                let role = set.role.clone();
                self.store
                    .change_user(
                        &user.user_id,
                        Box::new(move |user| user.role = role.clone()),
                    )
                    .await?;
                audit(&admin, &format!("set_role:{}", set.role), &set.user_id);
                done()
            }
            Some(Op::DissolveGroup(dissolve)) => {
                if !ids::is_group_id(&dissolve.group_id) {
                    return Err(ServiceError::invalid("group_id must be a group id"));
                }
                self.groups
                    .dissolve_by_admin(caller, &dissolve.group_id)
                    .await?;
                audit(&admin, "dissolve_group", &dissolve.group_id);
                done()
            }
        };
        Ok(pb::AdminResponse {
            result: Some(result),
        })
    }

    async fn require_admin(&self, user_id: &str) -> ServiceResult<UserRecord> {
        match self.store.user_by_id(user_id).await? {
            Some(user) if user.role == ROLE_ADMIN && !user.disabled => Ok(user),
            _ => Err(ServiceError::new(
                ErrorCode::Forbidden,
                "administrators only",
            )),
        }
    }

    async fn user(&self, user_id: &str) -> ServiceResult<UserRecord> {
        if !ids::is_user_id(user_id) {
            return Err(ServiceError::invalid("user_id must be a user id"));
        }
        self.store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| ServiceError::new(ErrorCode::NotFound, "no such user"))
    }

    async fn admin_user(&self, user: UserRecord) -> ServiceResult<pb::AdminUser> {
        let sessions = self.router.sessions_of(&user.user_id);
        let last_seen_ms = if sessions == 0 {
            self.store.last_seen(&user.user_id).await?
        } else {
            0
        };
        Ok(pb::AdminUser {
            user_id: user.user_id,
            username: user.username,
            nickname: user.nickname,
            role: user.role,
            disabled: user.disabled,
            created_at_ms: user.created_at_ms,
            online: sessions > 0,
            sessions: sessions as u32,
            last_seen_ms,
        })
    }

    async fn list_users(&self, list: &pb::ListUsers) -> ServiceResult<pb::UserPage> {
        let limit = page_size(list.limit);
        let query = list.query.to_lowercase();
        let mut users = Vec::new();
        let mut after = list.after_user_id.clone();
        let mut scanned = 0;
        let mut next_after_user_id = String::new();
        'scan: loop {
            let batch = self.store.users(&after, 256).await?;
            let exhausted = batch.len() < 256;
            for user in batch {
                scanned += 1;
                after = user.user_id.clone();
                let matches = query.is_empty()
                    || user.username.to_lowercase().contains(&query)
                    || user.nickname.to_lowercase().contains(&query);
                if matches {
                    users.push(self.admin_user(user).await?);
                    if users.len() == limit {
                        next_after_user_id = after.clone();
                        break 'scan;
                    }
                }
                if scanned >= SCAN_BUDGET {
                    next_after_user_id = after.clone();
                    break 'scan;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(pb::UserPage {
            users,
            next_after_user_id,
        })
    }

    async fn user_detail(&self, user_id: &str) -> ServiceResult<pb::UserDetail> {
        let user = self.user(user_id).await?;
        let devices = self.account.devices(user_id, None).await?;
        let mut groups = 0;
        for conv_id in self.store.user_conversations(user_id).await? {
            if let Some(ids::Conversation::Group { group_id }) = ids::Conversation::parse(&conv_id)
                && self.store.member(group_id, user_id).await?.is_some()
            {
                groups += 1;
            }
        }
        Ok(pb::UserDetail {
            user: Some(self.admin_user(user).await?),
            devices,
            groups,
        })
    }

    async fn list_groups(&self, list: &pb::ListAllGroups) -> ServiceResult<pb::AdminGroupPage> {
        let limit = page_size(list.limit);
        let query = list.query.to_lowercase();
        let mut groups = Vec::new();
        let mut after = list.after_group_id.clone();
        let mut scanned = 0;
        let mut next_after_group_id = String::new();
        'scan: loop {
            let batch = self.store.groups(&after, 256).await?;
            let exhausted = batch.len() < 256;
            for group in batch {
                scanned += 1;
                after = group.group_id.clone();
                if query.is_empty() || group.name.to_lowercase().contains(&query) {
                    groups.push(self.groups.public_info(&group));
                    if groups.len() == limit {
                        next_after_group_id = after.clone();
                        break 'scan;
                    }
                }
                if scanned >= SCAN_BUDGET {
                    next_after_group_id = after.clone();
                    break 'scan;
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(pb::AdminGroupPage {
            groups,
            next_after_group_id,
        })
    }

    fn stats(&self) -> pb::ServerStats {
        let by_transport = self.router.sessions_by_transport();
        let appends = self.store.stats().appends;
        let messages_per_second = {
            let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            match samples.front() {
                Some((at, count)) => {
                    let seconds = at.elapsed().as_secs_f64();
                    if seconds > 0.0 {
                        appends.saturating_sub(*count) as f64 / seconds
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            }
        };
        pb::ServerStats {
            quic_sessions: by_transport.get("quic").copied().unwrap_or(0) as u64,
            websocket_sessions: by_transport.get("websocket").copied().unwrap_or(0) as u64,
            users_online: self.router.users_online() as u64,
            messages_per_second,
            messages_since_start: appends,
            store_bytes: self.store.size_on_disk(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            active_calls: self.calls.active() as u64,
            slow_consumer_closes: self.router.slow_consumer_closes(),
        }
    }
}

fn page_size(limit: u32) -> usize {
    match limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// One line per administrative change, with who made it.
fn audit(admin: &UserRecord, action: &str, subject: &str) {
    tracing::info!(
        target: "quip::audit",
        admin_id = %admin.user_id,
        admin = %admin.username,
        action,
        subject,
        "admin action"
    );
}
