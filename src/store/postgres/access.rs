//! The PostgreSQL side of access: organisations, users, teams, tokens, grants, audit, and
//! the first start's bootstrap and the token lookup behind every call. A port of
//! `sqlite/access.rs` with the same answers and errors. Where SQLite relies on its one
//! writer (`BEGIN IMMEDIATE`) to order a read and the write that depends on it, this
//! side takes a lock: the `orgs` table for the bootstrap, the organisation's row for the
//! last-admin check. Names sort as SQLite's do (bytewise, `COLLATE "C"`; team names
//! ASCII case-folded as `COLLATE NOCASE`), whatever the database's collation.

use crate::store::rows::postgres::{token_from_row, user_from_row};
use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Postgres, Row, Transaction};

use super::PostgresStore;
use crate::access::{
    Access, AuditEntry, AuditEvent, AuditFilter, Grant, GrantSpec, Grantee, Team, TokenInfo, User,
};
use crate::auth::{Principal, Role};
use crate::ids::{OrgId, StreamId, UserId};
use crate::store::shared::{stream_not_found, unique};
use crate::store::{
    AccessStore, Bootstrap, NewToken, Result, StoreError, corrupt, from_micros, to_micros,
};

/// Creates an organisation with its first admin and that admin's token.
pub(super) async fn insert_org(
    tx: &mut Transaction<'_, Postgres>,
    first: &Bootstrap,
    server_admin: bool,
    now: Timestamp,
) -> Result<()> {
    let now = to_micros(now);
    sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(first.org_id.as_str())
        .bind(&first.org_name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO users (id, org_id, name, role, created_at, server_admin) \
         VALUES ($1, $2, $3, 'admin', $4, $5)",
    )
    .bind(first.user_id.as_str())
    .bind(first.org_id.as_str())
    .bind(&first.user_name)
    .bind(now)
    .bind(server_admin)
    .execute(&mut **tx)
    .await?;
    insert_token(tx, &first.user_id, "first", &first.token_hash, None, now).await?;
    Ok(())
}

async fn insert_token(
    tx: &mut Transaction<'_, Postgres>,
    user: &UserId,
    name: &str,
    hash: &[u8; 32],
    expires_at: Option<i64>,
    now: i64,
) -> Result<String> {
    let id = format!("tok_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(
        "INSERT INTO tokens (id, user_id, org_id, name, hash, created_at, expires_at) \
         SELECT $1, u.id, u.org_id, $3, $4, $5, $6 FROM users u WHERE u.id = $2",
    )
    .bind(&id)
    .bind(user.as_str())
    .bind(name)
    .bind(&hash[..])
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

const TOKEN_SELECT: &str = "SELECT t.id, t.name, u.name AS user_name, t.created_at, t.last_used_at, \
     t.expires_at, t.revoked_at FROM tokens t JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id";

/// User names are case-sensitive, as in SQLite.
async fn user_id(tx: &mut Transaction<'_, Postgres>, org: &OrgId, name: &str) -> Result<String> {
    sqlx::query_scalar("SELECT id FROM users WHERE org_id = $1 AND name = $2")
        .bind(org.as_str())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {name:?}")))
}

/// Team names are found whatever their case (SQLite's `COLLATE NOCASE`), through the
/// `teams_name` index on `(org_id, lower(name))`.
async fn team_id(tx: &mut Transaction<'_, Postgres>, org: &OrgId, name: &str) -> Result<String> {
    sqlx::query_scalar("SELECT id FROM teams WHERE org_id = $1 AND lower(name) = lower($2)")
        .bind(org.as_str())
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team {name:?}")))
}

/// Refuses to take the admin role from user `id` (by demotion or deletion) when they
/// are the last admin of `org`. Called inside the change's transaction, which first
/// locks the organisation's row: of two admins demoting each other at once, the second
/// waits for the first to commit, then sees its change and is refused. (`FOR NO KEY
/// UPDATE` leaves inserts that only reference the organisation free to go on.)
async fn keep_an_admin(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    id: &str,
    name: &str,
) -> Result<()> {
    sqlx::query("SELECT 1 FROM orgs WHERE id = $1 FOR NO KEY UPDATE")
        .bind(org.as_str())
        .execute(&mut **tx)
        .await?;
    let (role, admins): (String, i64) = sqlx::query_as(
        "SELECT role, (SELECT count(*) FROM users WHERE org_id = $1 AND role = 'admin') \
         FROM users WHERE id = $2",
    )
    .bind(org.as_str())
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    if Role::parse(&role) == Role::Admin && admins <= 1 {
        return Err(StoreError::LastAdmin {
            user: name.to_owned(),
            org: org.clone(),
        });
    }
    Ok(())
}

/// The (kind, id) a grantee is stored as.
async fn grantee_key(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    grantee: &Grantee,
) -> Result<(&'static str, String)> {
    let id = match grantee {
        Grantee::User(name) => user_id(tx, org, name).await?,
        Grantee::Team(name) => team_id(tx, org, name).await?,
        Grantee::Org => org.to_string(),
    };
    Ok((grantee.kind(), id))
}

async fn stream_in_org(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    stream: &StreamId,
) -> Result<()> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM streams WHERE id = $1 AND org_id = $2")
            .bind(stream.as_str())
            .bind(org.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    found.map(|_| ()).ok_or_else(|| stream_not_found(stream))
}

/// Adds or changes grants inside a transaction.
pub(super) async fn upsert_grants(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    stream: &StreamId,
    grants: &[GrantSpec],
    now: Timestamp,
) -> Result<()> {
    for grant in grants {
        let (kind, id) = grantee_key(tx, org, &grant.grantee).await?;
        sqlx::query(
            "INSERT INTO grants (stream_id, org_id, grantee_kind, grantee_id, access, created_at) \
             VALUES ($1, $6, $2, $3, $4, $5) \
             ON CONFLICT (stream_id, grantee_kind, grantee_id, org_id) DO UPDATE SET access = excluded.access",
        )
        .bind(stream.as_str())
        .bind(kind)
        .bind(id)
        .bind(grant.access.as_str())
        .bind(to_micros(now))
        .bind(org.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The grants that reach user `$1` of org `$2`: directly, through a team, or through
/// the org.
const REACHING: &str = "((g.grantee_kind = 'user' AND g.grantee_id = $1) \
     OR (g.grantee_kind = 'team' AND g.grantee_id IN (SELECT team_id FROM team_members WHERE user_id = $1)) \
     OR (g.grantee_kind = 'org' AND g.grantee_id = $2))";

/// The strongest access among the grants that reach a user, as a number: see
/// `access_at`. (A BIGINT, so it reads as an `i64`.)
const LEVEL: &str = "max(CASE g.access WHEN 'manage' THEN 2 ELSE 1 END)::BIGINT";

fn access_at(level: i64) -> Access {
    if level == 2 {
        Access::Manage
    } else {
        Access::Read
    }
}

fn parse_access(text: &str) -> Result<Access> {
    text.parse().map_err(corrupt)
}

#[async_trait]
impl AccessStore for PostgresStore {
    async fn needs_bootstrap(&self) -> Result<bool> {
        let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
            .fetch_one(&self.pool)
            .await?;
        Ok(orgs == 0)
    }

    async fn bootstrap(&self, first: &Bootstrap, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        // Two processes starting at once on an empty database: the second waits here
        // for the first to commit, then finds its organisation. The mode lets reads
        // and foreign-key checks on `orgs` go on, but no other insert.
        sqlx::query("LOCK TABLE orgs IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
            .fetch_one(&mut *tx)
            .await?;
        if orgs > 0 {
            return Ok(false);
        }
        insert_org(&mut tx, first, true, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn principal_for_token(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.org_id, o.name AS org_name, u.role, u.server_admin, t.id AS token_id, t.last_used_at \
             FROM tokens t JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id JOIN orgs o ON o.id = u.org_id \
             WHERE t.hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(&hash[..])
        .bind(to_micros(now))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let user: String = row.get("id");
        let org: String = row.get("org_id");
        let last_used: Option<i64> = row.get("last_used_at");
        // Recorded to the minute, so that reads do not each become a write.
        if last_used.is_none_or(|at| to_micros(now) - at > 60_000_000) {
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
                .bind(to_micros(now))
                .bind(row.get::<String, _>("token_id"))
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Principal {
            user_id: UserId::parse(&user).map_err(corrupt)?,
            name: row.get("name"),
            org_id: OrgId::parse(&org).map_err(corrupt)?,
            org_name: row.get("org_name"),
            role: Role::parse(row.get("role")),
            server_admin: row.get::<bool, _>("server_admin"),
        }))
    }

    async fn create_org(&self, first: &Bootstrap, now: Timestamp) -> Result<()> {
        let mut tx = self.write().await?;
        insert_org(&mut tx, first, false, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_user(
        &self,
        org: &OrgId,
        name: &str,
        role: Role,
        now: Timestamp,
    ) -> Result<User> {
        let id = UserId::generate();
        let inserted = sqlx::query(
            "INSERT INTO users (id, org_id, name, role, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.as_str())
        .bind(org.as_str())
        .bind(name)
        .bind(role.as_str())
        .bind(to_micros(now))
        .execute(&self.pool)
        .await;
        unique(inserted, || format!("user {name:?}"))?;
        Ok(User {
            id,
            name: name.to_owned(),
            role,
            created_at: now,
        })
    }

    async fn list_users(&self, org: &OrgId) -> Result<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at FROM users WHERE org_id = $1 \
             ORDER BY name COLLATE \"C\"",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_user_role(&self, org: &OrgId, name: &str, role: Role) -> Result<User> {
        let mut tx = self.write().await?;
        let id = user_id(&mut tx, org, name).await?;
        if role != Role::Admin {
            keep_an_admin(&mut tx, org, &id, name).await?;
        }
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("SELECT id, name, role, created_at FROM users WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        user_from_row(&row)
    }

    async fn delete_user(&self, org: &OrgId, name: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let id = user_id(&mut tx, org, name).await?;
        keep_an_admin(&mut tx, org, &id, name).await?;
        sqlx::query("DELETE FROM grants WHERE grantee_kind = 'user' AND grantee_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        // Tokens have no foreign key to users (see the schema).
        sqlx::query("DELETE FROM tokens WHERE user_id = $1 AND org_id = $2")
            .bind(&id)
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE id = $1 AND org_id = $2")
            .bind(&id)
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_team(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<()> {
        let inserted =
            sqlx::query("INSERT INTO teams (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
                .bind(format!("team_{}", uuid::Uuid::now_v7().simple()))
                .bind(org.as_str())
                .bind(name)
                .bind(to_micros(now))
                .execute(&self.pool)
                .await;
        unique(inserted, || format!("team {name:?}"))?;
        Ok(())
    }

    async fn list_teams(&self, org: &OrgId) -> Result<Vec<Team>> {
        // Teams by name folded as SQLite's NOCASE folds (ASCII only), members bytewise.
        let rows = sqlx::query(
            "SELECT t.name, t.created_at, u.name AS member FROM teams t \
             LEFT JOIN team_members m ON m.team_id = t.id LEFT JOIN users u ON u.id = m.user_id \
             WHERE t.org_id = $1 \
             ORDER BY lower(t.name COLLATE \"C\"), t.id, u.name COLLATE \"C\"",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut teams: Vec<Team> = Vec::new();
        for row in rows {
            let name: String = row.get("name");
            if teams.last().is_none_or(|t| t.name != name) {
                teams.push(Team {
                    name,
                    members: Vec::new(),
                    created_at: from_micros(row.get("created_at"))?,
                });
            }
            if let Some(member) = row.get::<Option<String>, _>("member") {
                teams.last_mut().expect("pushed above").members.push(member);
            }
        }
        Ok(teams)
    }

    async fn delete_team(&self, org: &OrgId, name: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let id = team_id(&mut tx, org, name).await?;
        sqlx::query("DELETE FROM grants WHERE grantee_kind = 'team' AND grantee_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_team_member(
        &self,
        org: &OrgId,
        team: &str,
        user: &str,
        member: bool,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let team_id = team_id(&mut tx, org, team).await?;
        let user_id = user_id(&mut tx, org, user).await?;
        let sql = if member {
            "INSERT INTO team_members (team_id, user_id, org_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM team_members WHERE team_id = $1 AND user_id = $2 AND org_id = $3"
        };
        sqlx::query(sql)
            .bind(&team_id)
            .bind(&user_id)
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_token(
        &self,
        org: &OrgId,
        token: &NewToken,
        now: Timestamp,
    ) -> Result<TokenInfo> {
        let mut tx = self.write().await?;
        let user = user_id(&mut tx, org, &token.user).await?;
        let user = UserId::parse(&user).map_err(corrupt)?;
        let id = insert_token(
            &mut tx,
            &user,
            &token.name,
            &token.hash,
            token.expires_at.map(to_micros),
            to_micros(now),
        )
        .await?;
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.id = $1"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        token_from_row(&row)
    }

    async fn list_tokens(&self, org: &OrgId, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(&format!(
            "{TOKEN_SELECT} WHERE u.org_id = $1 AND ($2::TEXT IS NULL OR u.name = $2) \
             ORDER BY u.name COLLATE \"C\", t.created_at"
        ))
        .bind(org.as_str())
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn token(&self, org: &OrgId, id: &str) -> Result<TokenInfo> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE u.org_id = $1 AND t.id = $2"))
            .bind(org.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(token_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("token {id}")))
    }

    async fn revoke_token(&self, org: &OrgId, id: &str, now: Timestamp) -> Result<TokenInfo> {
        self.token(org, id).await?;
        sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
            .bind(to_micros(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.token(org, id).await
    }

    async fn set_grants(
        &self,
        org: &OrgId,
        stream: &StreamId,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        stream_in_org(&mut tx, org, stream).await?;
        upsert_grants(&mut tx, org, stream, grants, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_grant(&self, org: &OrgId, stream: &StreamId, grantee: &Grantee) -> Result<()> {
        let mut tx = self.write().await?;
        stream_in_org(&mut tx, org, stream).await?;
        let (kind, id) = grantee_key(&mut tx, org, grantee).await?;
        let done = sqlx::query(
            "DELETE FROM grants WHERE stream_id = $1 AND grantee_kind = $2 AND grantee_id = $3",
        )
        .bind(stream.as_str())
        .bind(kind)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "a grant to {grantee} on stream {stream}"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_grants(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<Grant>> {
        let mut tx = self.pool.begin().await?;
        stream_in_org(&mut tx, org, stream).await?;
        // SQLite's order: NULLs first, user names bytewise, team names case-folded.
        let rows = sqlx::query(
            "SELECT g.grantee_kind, g.access, g.created_at, u.name AS user_name, t.name AS team_name \
             FROM grants g \
             LEFT JOIN users u ON g.grantee_kind = 'user' AND u.id = g.grantee_id \
             LEFT JOIN teams t ON g.grantee_kind = 'team' AND t.id = g.grantee_id \
             WHERE g.stream_id = $1 \
             ORDER BY g.grantee_kind COLLATE \"C\", u.name COLLATE \"C\" NULLS FIRST, \
             lower(t.name COLLATE \"C\") NULLS FIRST",
        )
        .bind(stream.as_str())
        .fetch_all(&mut *tx)
        .await?;
        rows.iter()
            .map(|row| {
                let grantee = match row.get::<String, _>("grantee_kind").as_str() {
                    "user" => Grantee::User(
                        row.get::<Option<String>, _>("user_name")
                            .unwrap_or_default(),
                    ),
                    "team" => Grantee::Team(
                        row.get::<Option<String>, _>("team_name")
                            .unwrap_or_default(),
                    ),
                    _ => Grantee::Org,
                };
                Ok(Grant {
                    grantee,
                    access: parse_access(row.get("access"))?,
                    created_at: from_micros(row.get("created_at"))?,
                })
            })
            .collect()
    }

    async fn stream_accesses(
        &self,
        org: &OrgId,
        user: &UserId,
    ) -> Result<HashMap<StreamId, Access>> {
        let rows = sqlx::query(&format!(
            "SELECT g.stream_id, {LEVEL} AS level FROM grants g WHERE {REACHING} GROUP BY g.stream_id"
        ))
        .bind(user.as_str())
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id = StreamId::parse(row.get("stream_id")).map_err(corrupt)?;
                Ok((id, access_at(row.get("level"))))
            })
            .collect()
    }

    async fn stream_access(
        &self,
        org: &OrgId,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<Option<Access>> {
        let level: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT {LEVEL} FROM grants g WHERE g.stream_id = $3 AND {REACHING}"
        ))
        .bind(user.as_str())
        .bind(org.as_str())
        .bind(stream.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(level.map(access_at))
    }

    async fn record_audit(&self, event: &AuditEvent<'_>, now: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (org_id, actor_id, actor_name, at, action, target_kind, target_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.org.as_str())
        .bind(event.actor_id.as_str())
        .bind(event.actor_name)
        .bind(to_micros(now))
        .bind(event.action)
        .bind(event.target_kind)
        .bind(&event.target_id)
        .bind(&event.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor_name, action, target_kind, target_id, detail FROM audit \
             WHERE org_id = $1 AND ($2::TEXT IS NULL OR target_id = $2) \
             AND ($3::TEXT IS NULL OR actor_name = $3) \
             AND ($4::BIGINT IS NULL OR at >= $4) AND ($5::BIGINT IS NULL OR at <= $5) \
             AND ($7::BIGINT IS NULL OR id < $7) ORDER BY id DESC LIMIT $6",
        )
        .bind(org.as_str())
        .bind(filter.target.as_deref())
        .bind(filter.actor.as_deref())
        .bind(filter.since.map(to_micros))
        .bind(filter.until.map(to_micros))
        .bind(if filter.limit == 0 {
            10_000
        } else {
            i64::from(filter.limit)
        })
        .bind(filter.before)
        .fetch_all(&self.pool)
        .await?;
        // The newest entries within the limit, told oldest first.
        rows.iter()
            .rev()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.get("id"),
                    at: from_micros(row.get("at"))?,
                    actor: row.get("actor_name"),
                    action: row.get("action"),
                    target_kind: row.get("target_kind"),
                    target_id: row.get("target_id"),
                    detail: row.get("detail"),
                })
            })
            .collect()
    }
}
