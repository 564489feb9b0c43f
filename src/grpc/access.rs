//! The access half of `kpistream.v1.StreamAdmin`: organisations, users, teams, tokens,
//! stream grants and the audit log. Rules: `docs/permissions.md`.

use secrecy::ExposeSecret;
use tonic::Request;

use super::admin::AdminService;
use super::admin::MAX_LISTED;
use super::{ApiError, convert, paging};

/// Most audit entries one page holds.
const MAX_AUDIT_ENTRIES: u32 = 10_000;
use crate::access::{
    AccessError, AuditEntry, AuditFilter, Grant, GrantSpec, Team, TokenInfo, User,
};
use crate::auth::{self, Principal, Role};
use crate::ids::{OrgId, UserId};
use crate::proto;
use crate::store::{Bootstrap, NewToken, StoreError};
use crate::stream::check_name;
use crate::text::{check_name_len, excerpt};
use crate::wire;

fn role(text: &str) -> Result<Role, ApiError> {
    match text.to_ascii_lowercase().as_str() {
        "" | "member" => Ok(Role::Member),
        "admin" => Ok(Role::Admin),
        "runner" => Ok(Role::Runner),
        _ => Err(ApiError::Invalid(format!(
            "unknown role {}: use admin, member or runner",
            excerpt(text)
        ))),
    }
}

fn user(u: &User, teams: &[Team]) -> proto::User {
    proto::User {
        name: u.name.clone(),
        role: u.role.as_str().to_owned(),
        created_at: Some(wire::timestamp(u.created_at)),
        teams: teams
            .iter()
            .filter(|t| t.members.contains(&u.name))
            .map(|t| t.name.clone())
            .collect(),
    }
}

fn team(t: &Team) -> proto::Team {
    proto::Team {
        name: t.name.clone(),
        members: t.members.clone(),
        created_at: Some(wire::timestamp(t.created_at)),
    }
}

fn token(t: &TokenInfo) -> proto::Token {
    proto::Token {
        id: t.id.clone(),
        name: t.name.clone(),
        user: t.user.clone(),
        created_at: Some(wire::timestamp(t.created_at)),
        last_used_at: wire::opt_timestamp(t.last_used_at),
        expires_at: wire::opt_timestamp(t.expires_at),
        revoked_at: wire::opt_timestamp(t.revoked_at),
    }
}

fn grant(g: &Grant) -> proto::Grant {
    proto::Grant {
        grantee: g.grantee.to_string(),
        access: g.access.as_str().to_owned(),
        created_at: Some(wire::timestamp(g.created_at)),
    }
}

fn audit_entry(e: &AuditEntry) -> proto::AuditEntry {
    proto::AuditEntry {
        at: Some(wire::timestamp(e.at)),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target_kind: e.target_kind.clone(),
        target_id: e.target_id.clone(),
        detail: e.detail.clone(),
    }
}

impl AdminService {
    pub(super) async fn do_who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<proto::WhoAmIResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        Ok(proto::WhoAmIResponse {
            user: who.name,
            role: who.role.as_str().to_owned(),
            org_id: who.org_id.to_string(),
            server_admin: who.server_admin,
            org_name: who.org_name,
        })
    }

    pub(super) async fn do_create_org(
        &self,
        request: Request<proto::CreateOrgRequest>,
    ) -> Result<proto::CreateOrgResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        if !who.server_admin {
            return Err(AccessError::NotServerAdmin("create organisations").into());
        }
        let r = request.into_inner();
        check_name("organisation name", &r.name)?;
        check_name("admin name", &r.admin_name)?;
        let secret = auth::generate_token();
        let first = Bootstrap {
            org_id: OrgId::generate(),
            org_name: r.name.trim().to_owned(),
            user_id: UserId::generate(),
            user_name: r.admin_name.trim().to_owned(),
            token_hash: auth::hash_token(&secret),
        };
        self.state
            .store
            .create_org(&first, jiff::Timestamp::now())
            .await?;
        let detail = format!(
            "name {:?}, first admin {:?}",
            first.org_name, first.user_name
        );
        self.state
            .audit(&who, "org.created", "org", first.org_id.as_str(), detail)
            .await;
        Ok(proto::CreateOrgResponse {
            org_id: first.org_id.to_string(),
            admin_name: first.user_name,
            token: secret.expose_secret().to_owned(),
        })
    }

    pub(super) async fn do_create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<proto::User, ApiError> {
        let who = self.state.admin(&request, "create users").await?;
        let r = request.into_inner();
        check_name("user name", &r.name)?;
        let role = role(&r.role)?;
        let created = self
            .state
            .store
            .create_user(&who.org_id, r.name.trim(), role, jiff::Timestamp::now())
            .await?;
        self.state
            .audit(
                &who,
                "user.created",
                "user",
                &created.name,
                format!("role {}", role.as_str()),
            )
            .await;
        Ok(user(&created, &[]))
    }

    pub(super) async fn do_list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<proto::ListUsersResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        let r = request.get_ref();
        let users = self.state.store.list_users(&who.org_id).await?;
        let (users, next_page_token) = paging::page(
            users,
            |u| u.name.clone(),
            &r.page_token,
            paging::size(r.page_size, MAX_LISTED, MAX_LISTED),
        )?;
        let teams = self.state.store.list_teams(&who.org_id).await?;
        Ok(proto::ListUsersResponse {
            users: users.iter().map(|u| user(u, &teams)).collect(),
            next_page_token,
        })
    }

    pub(super) async fn do_set_user_role(
        &self,
        request: Request<proto::SetUserRoleRequest>,
    ) -> Result<proto::User, ApiError> {
        let who = self.state.admin(&request, "change roles").await?;
        let r = request.into_inner();
        check_name_len("user name", &r.name)?;
        let role = role(&r.role)?;
        let changed = self
            .state
            .store
            .set_user_role(&who.org_id, &r.name, role)
            .await?;
        self.state
            .audit(
                &who,
                "user.role_changed",
                "user",
                &changed.name,
                format!("role {}", role.as_str()),
            )
            .await;
        let teams = self.state.store.list_teams(&who.org_id).await?;
        Ok(user(&changed, &teams))
    }

    pub(super) async fn do_delete_user(
        &self,
        request: Request<proto::UserRef>,
    ) -> Result<proto::DeleteUserResponse, ApiError> {
        let who = self.state.admin(&request, "delete users").await?;
        let name = request.into_inner().name;
        check_name_len("user name", &name)?;
        if name == who.name {
            // Refused either way. The last admin hears the rule that matters to them
            // (the organisation needs an admin); another admin, who to ask instead.
            let users = self.state.store.list_users(&who.org_id).await?;
            if users.iter().filter(|u| u.role == Role::Admin).count() <= 1 {
                return Err(StoreError::LastAdmin {
                    user: name,
                    org: who.org_id,
                }
                .into());
            }
            return Err(ApiError::Invalid(
                "you cannot delete yourself: ask another org admin".into(),
            ));
        }
        self.state.store.delete_user(&who.org_id, &name).await?;
        self.state
            .audit(&who, "user.deleted", "user", &name, "")
            .await;
        Ok(proto::DeleteUserResponse {})
    }

    async fn team_named(&self, org: &OrgId, name: &str) -> Result<proto::Team, ApiError> {
        let teams = self.state.store.list_teams(org).await?;
        teams
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(team)
            .ok_or_else(|| StoreError::NotFound(format!("team {name:?}")).into())
    }

    pub(super) async fn do_create_team(
        &self,
        request: Request<proto::TeamRef>,
    ) -> Result<proto::Team, ApiError> {
        let who = self.state.admin(&request, "create teams").await?;
        let name = request.into_inner().name;
        check_name("team name", &name)?;
        self.state
            .store
            .create_team(&who.org_id, name.trim(), jiff::Timestamp::now())
            .await?;
        self.state
            .audit(&who, "team.created", "team", name.trim(), "")
            .await;
        self.team_named(&who.org_id, name.trim()).await
    }

    pub(super) async fn do_list_teams(
        &self,
        request: Request<proto::ListTeamsRequest>,
    ) -> Result<proto::ListTeamsResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        let teams = self.state.store.list_teams(&who.org_id).await?;
        Ok(proto::ListTeamsResponse {
            teams: teams.iter().map(team).collect(),
        })
    }

    pub(super) async fn do_delete_team(
        &self,
        request: Request<proto::TeamRef>,
    ) -> Result<proto::DeleteTeamResponse, ApiError> {
        let who = self.state.admin(&request, "delete teams").await?;
        let name = request.into_inner().name;
        check_name_len("team name", &name)?;
        self.state.store.delete_team(&who.org_id, &name).await?;
        self.state
            .audit(&who, "team.deleted", "team", &name, "")
            .await;
        Ok(proto::DeleteTeamResponse {})
    }

    pub(super) async fn do_team_member(
        &self,
        request: Request<proto::TeamMemberRequest>,
        member: bool,
    ) -> Result<proto::Team, ApiError> {
        let who = self.state.admin(&request, "change teams").await?;
        let r = request.into_inner();
        check_name_len("team name", &r.team)?;
        check_name_len("user name", &r.user)?;
        self.state
            .store
            .set_team_member(&who.org_id, &r.team, &r.user, member)
            .await?;
        let action = if member {
            "team.member_added"
        } else {
            "team.member_removed"
        };
        self.state
            .audit(&who, action, "team", &r.team, format!("user {:?}", r.user))
            .await;
        self.team_named(&who.org_id, &r.team).await
    }

    /// The user a token call is about: the caller by default; anyone else needs an org admin.
    fn token_owner(
        who: &Principal,
        named: &str,
        action: &'static str,
    ) -> Result<Option<String>, ApiError> {
        check_name_len("user name", named)?;
        match named {
            "" => Ok(Some(who.name.clone())),
            name if name == who.name => Ok(Some(who.name.clone())),
            _ if !who.is_admin() => Err(AccessError::NotYourToken(action).into()),
            "*" => Ok(None),
            name => Ok(Some(name.to_owned())),
        }
    }

    pub(super) async fn do_create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<proto::CreateTokenResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        let r = request.into_inner();
        let owner = Self::token_owner(&who, &r.user, "create")?
            .ok_or_else(|| ApiError::Invalid("name one user for the token".into()))?;
        let name = if r.name.trim().is_empty() {
            "token".to_owned()
        } else {
            r.name.trim().to_owned()
        };
        check_name("token name", &name)?;
        let expires_at = convert::optional_time("expires_at", r.expires_at)?;
        if expires_at.is_some_and(|at| at <= jiff::Timestamp::now()) {
            return Err(ApiError::Invalid("the expiry is in the past".into()));
        }
        let secret = auth::generate_token();
        let new = NewToken {
            user: owner.clone(),
            name,
            hash: auth::hash_token(&secret),
            expires_at,
        };
        let created = self
            .state
            .store
            .create_token(&who.org_id, &new, jiff::Timestamp::now())
            .await?;
        let detail = format!("for user {owner:?}, name {:?}", created.name);
        self.state
            .audit(&who, "token.created", "token", &created.id, detail)
            .await;
        Ok(proto::CreateTokenResponse {
            token: Some(token(&created)),
            secret: secret.expose_secret().to_owned(),
        })
    }

    pub(super) async fn do_list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Result<proto::ListTokensResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        let owner = Self::token_owner(&who, &request.get_ref().user, "list")?;
        if let Some(name) = owner.as_deref().filter(|n| *n != who.name) {
            let users = self.state.store.list_users(&who.org_id).await?;
            if !users.iter().any(|u| u.name == name) {
                return Err(StoreError::NotFound(format!("user {name:?}")).into());
            }
        }
        let tokens = self
            .state
            .store
            .list_tokens(&who.org_id, owner.as_deref())
            .await?;
        let r = request.get_ref();
        let (tokens, next_page_token) = paging::page(
            tokens,
            |t| {
                let created = format!("{:020}", t.created_at.as_microsecond());
                paging::key_of(&[&t.user, &created, &t.id])
            },
            &r.page_token,
            paging::size(r.page_size, MAX_LISTED, MAX_LISTED),
        )?;
        Ok(proto::ListTokensResponse {
            tokens: tokens.iter().map(token).collect(),
            next_page_token,
        })
    }

    pub(super) async fn do_revoke_token(
        &self,
        request: Request<proto::RevokeTokenRequest>,
    ) -> Result<proto::Token, ApiError> {
        let who = self.state.principal(&request).await?;
        let id = request.into_inner().id;
        check_name_len("token id", &id)?;
        let found = self.state.store.token(&who.org_id, &id).await?;
        Self::token_owner(&who, &found.user, "revoke")?;
        let revoked = self
            .state
            .store
            .revoke_token(&who.org_id, &id, jiff::Timestamp::now())
            .await?;
        self.state
            .audit(
                &who,
                "token.revoked",
                "token",
                &id,
                format!("of user {:?}", revoked.user),
            )
            .await;
        Ok(token(&revoked))
    }

    async fn grants_of(
        &self,
        org: &OrgId,
        stream: &crate::ids::StreamId,
    ) -> Result<proto::ListGrantsResponse, ApiError> {
        let grants = self.state.store.list_grants(org, stream).await?;
        Ok(proto::ListGrantsResponse {
            grants: grants.iter().map(grant).collect(),
        })
    }

    pub(super) async fn do_add_grant(
        &self,
        request: Request<proto::GrantRequest>,
    ) -> Result<proto::ListGrantsResponse, ApiError> {
        let (who, stream) = self.manager(&request, &request.get_ref().stream_id).await?;
        let spec: GrantSpec = request.get_ref().grant.parse()?;
        self.state
            .store
            .set_grants(
                &who.org_id,
                &stream,
                std::slice::from_ref(&spec),
                jiff::Timestamp::now(),
            )
            .await?;
        self.state
            .audit(
                &who,
                "grant.added",
                "stream",
                stream.as_str(),
                spec.to_string(),
            )
            .await;
        self.grants_of(&who.org_id, &stream).await
    }

    pub(super) async fn do_remove_grant(
        &self,
        request: Request<proto::GrantRequest>,
    ) -> Result<proto::ListGrantsResponse, ApiError> {
        let (who, stream) = self.manager(&request, &request.get_ref().stream_id).await?;
        let spec: GrantSpec = request.get_ref().grant.parse()?;
        self.state
            .store
            .remove_grant(&who.org_id, &stream, &spec.grantee)
            .await?;
        self.state
            .audit(
                &who,
                "grant.removed",
                "stream",
                stream.as_str(),
                spec.grantee.to_string(),
            )
            .await;
        self.grants_of(&who.org_id, &stream).await
    }

    pub(super) async fn do_list_grants(
        &self,
        request: Request<proto::StreamRef>,
    ) -> Result<proto::ListGrantsResponse, ApiError> {
        let (who, stream) = self.manager(&request, &request.get_ref().stream_id).await?;
        self.grants_of(&who.org_id, &stream).await
    }

    pub(super) async fn do_list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Result<proto::ListAuditResponse, ApiError> {
        let who = self.state.admin(&request, "read the audit log").await?;
        let r = request.into_inner();
        check_name_len("target", &r.target)?;
        check_name_len("actor", &r.actor)?;
        let before = paging::after_id(&r.page_token)?;
        let limit = paging::size(r.limit, MAX_AUDIT_ENTRIES, MAX_AUDIT_ENTRIES);
        let filter = AuditFilter {
            target: Some(r.target).filter(|t| !t.is_empty()),
            actor: Some(r.actor).filter(|a| !a.is_empty()),
            since: convert::optional_time("since", r.since)?,
            until: convert::optional_time("until", r.until)?,
            // One more than the page holds: whether another page follows.
            limit: limit + 1,
            before,
        };
        let mut entries = self.state.store.list_audit(&who.org_id, &filter).await?;
        // Oldest first: the extra entry, if any, is the first.
        let next_page_token = if entries.len() > limit as usize {
            entries.remove(0);
            paging::token(&entries[0].id.to_string())
        } else {
            String::new()
        };
        Ok(proto::ListAuditResponse {
            entries: entries.iter().map(audit_entry).collect(),
            next_page_token,
        })
    }
}
