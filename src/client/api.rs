//! Typed calls for the admin and query services, so programs (and the command line)
//! speak in streams, keys and points rather than in request messages.

#![warn(missing_docs)]
use secrecy::SecretString;
use tonic::Status;

use super::{Client, Credential};
use crate::auth::Role;
use crate::period::Frequency;
use crate::proto;
use crate::stream::StreamStatus;
use crate::wire::timestamp;

/// What a stream's values are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueKind {
    /// A plain number.
    Number,
    /// An amount in one ISO 4217 currency (the code).
    Currency(String),
    /// A percentage figure (`12.5` means 12.5 %).
    Percentage,
}

/// A stream to create.
#[derive(Debug, Clone)]
pub struct NewStream {
    /// Shown to readers; 1 to 200 characters.
    pub name: String,
    /// Optional longer text.
    pub description: String,
    /// A category that exists, if any.
    pub category: Option<String>,
    /// One value per period of this length.
    pub frequency: Frequency,
    /// What the values are.
    pub value: ValueKind,
    /// IANA time zone used to place timestamps in periods (`UTC` when empty).
    pub time_zone: String,
    /// Who else may read or manage it: `user:NAME`, `team:NAME` or `org`, each
    /// optionally with `:read` (the default) or `:manage`. The creator always manages it.
    pub grants: Vec<String>,
}

/// A created stream with the credential of its first key, shown this once.
#[derive(Debug)]
pub struct CreatedStream {
    /// The stream as stored.
    pub stream: proto::Stream,
    /// Its first key (public half).
    pub key: proto::StreamKey,
    /// The private key with the ids it signs for.
    pub credential: Credential,
}

/// Changes to a stream; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StreamChanges {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// A new category; `Some("")` removes it.
    pub category: Option<String>,
    /// Only while the stream has no data.
    pub frequency: Option<Frequency>,
    /// Only while the stream has no data.
    pub value: Option<ValueKind>,
    /// Only while the stream has no data.
    pub time_zone: Option<String>,
}

/// Which streams to list.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Only streams with this status.
    pub status: Option<StreamStatus>,
    /// Only names containing this text (case-insensitive).
    pub name_contains: Option<String>,
    /// At most this many streams, the first by name (0: all of them).
    pub limit: u32,
}

/// Which points of a stream to read.
#[derive(Debug, Clone, Default)]
pub struct PeriodRange {
    /// First period (inclusive), as text of the stream's frequency.
    pub from: Option<String>,
    /// Last period (inclusive).
    pub to: Option<String>,
    /// At most this many points (0: all of them; [`Client::points`] follows the
    /// server's pages of at most 10,000).
    pub limit: u32,
}

/// A new organisation with its first admin, whose token is shown this once.
#[derive(Debug)]
pub struct CreatedOrg {
    /// The organisation's id (`org_…`).
    pub org_id: String,
    /// The name of its first admin.
    pub admin_name: String,
    /// The first admin's bearer token (`kpit_…`).
    pub token: SecretString,
}

/// Which audit entries to read; every field left empty matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries about this target: a stream id, user name, team name, token id…
    pub target: Option<String>,
    /// Only actions of this user.
    pub actor: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Only entries at or before this time.
    pub until: Option<jiff::Timestamp>,
    /// At most this many entries (0: the server's maximum).
    pub limit: u32,
}

/// The wire form of a value kind: (type, currency code).
fn value_kind(v: &ValueKind) -> (proto::ValueType, String) {
    match v {
        ValueKind::Number => (proto::ValueType::Number, String::new()),
        ValueKind::Currency(code) => (proto::ValueType::Currency, code.clone()),
        ValueKind::Percentage => (proto::ValueType::Percentage, String::new()),
    }
}

fn stream_ref(id: &str) -> proto::StreamRef {
    proto::StreamRef {
        stream_id: id.to_owned(),
    }
}

fn grant_request(stream: &str, grant: &str) -> proto::GrantRequest {
    proto::GrantRequest {
        stream_id: stream.to_owned(),
        grant: grant.to_owned(),
    }
}

fn team_member(team: &str, user: &str) -> proto::TeamMemberRequest {
    proto::TeamMemberRequest {
        team: team.to_owned(),
        user: user.to_owned(),
    }
}

fn credential(text: &str) -> Result<Credential, Status> {
    text.parse().map_err(|e| {
        Status::internal(format!(
            "the server sent a credential that does not parse: {e}"
        ))
    })
}

impl Client {
    /// Creates a category.
    pub async fn create_category(&self, name: &str) -> Result<proto::Category, Status> {
        let request = proto::CreateCategoryRequest {
            name: name.to_owned(),
        };
        Ok(self.admin().create_category(request).await?.into_inner())
    }

    /// Every category of the organisation, with how many streams use it.
    pub async fn categories(&self) -> Result<Vec<proto::Category>, Status> {
        let request = proto::ListCategoriesRequest {};
        Ok(self
            .admin()
            .list_categories(request)
            .await?
            .into_inner()
            .categories)
    }

    /// Renames a category; its streams follow.
    pub async fn rename_category(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<proto::Category, Status> {
        let request = proto::RenameCategoryRequest {
            name: name.to_owned(),
            new_name: new_name.to_owned(),
        };
        Ok(self.admin().rename_category(request).await?.into_inner())
    }

    /// Deletes a category no stream uses.
    pub async fn delete_category(&self, name: &str) -> Result<(), Status> {
        let request = proto::DeleteCategoryRequest {
            name: name.to_owned(),
        };
        self.admin().delete_category(request).await?;
        Ok(())
    }

    /// Creates a stream; the credential in the answer is shown only this once.
    pub async fn create_stream(&self, new: NewStream) -> Result<CreatedStream, Status> {
        let (value_type, currency) = value_kind(&new.value);
        let request = proto::CreateStreamRequest {
            name: new.name,
            description: new.description,
            category: new.category.unwrap_or_default(),
            frequency: proto::Frequency::from(new.frequency) as i32,
            value_type: value_type as i32,
            currency,
            time_zone: new.time_zone,
            grants: new.grants,
        };
        let created = self.admin().create_stream(request).await?.into_inner();
        Ok(CreatedStream {
            stream: created.stream.unwrap_or_default(),
            key: created.key.unwrap_or_default(),
            credential: credential(&created.credential)?,
        })
    }

    /// The streams matching `filter`.
    pub async fn streams(&self, filter: &StreamFilter) -> Result<Vec<proto::Stream>, Status> {
        follow(filter.limit, move |page_size, page_token| async move {
            let request = proto::ListStreamsRequest {
                category: filter.category.clone().unwrap_or_default(),
                status: filter
                    .status
                    .map_or(0, |s| proto::StreamStatus::from(s) as i32),
                name_contains: filter.name_contains.clone().unwrap_or_default(),
                page_size,
                page_token,
            };
            let page = self.admin().list_streams(request).await?.into_inner();
            Ok((page.streams, page.next_page_token))
        })
        .await
    }

    /// A stream with its keys.
    pub async fn stream(&self, id: &str) -> Result<proto::StreamDetail, Status> {
        Ok(self.admin().get_stream(stream_ref(id)).await?.into_inner())
    }

    /// Applies `changes` to a stream.
    pub async fn update_stream(
        &self,
        id: &str,
        changes: StreamChanges,
    ) -> Result<proto::Stream, Status> {
        let (value_type, currency) = match &changes.value {
            Some(kind) => {
                let (t, c) = value_kind(kind);
                (t as i32, Some(c))
            }
            None => (0, None),
        };
        let request = proto::UpdateStreamRequest {
            stream_id: id.to_owned(),
            name: changes.name,
            description: changes.description,
            category: changes.category,
            frequency: changes
                .frequency
                .map_or(0, |f| proto::Frequency::from(f) as i32),
            value_type,
            currency,
            time_zone: changes.time_zone,
        };
        Ok(self.admin().update_stream(request).await?.into_inner())
    }

    /// Refuses publishes to a stream until it is enabled.
    pub async fn disable_stream(&self, id: &str) -> Result<proto::Stream, Status> {
        Ok(self
            .admin()
            .disable_stream(stream_ref(id))
            .await?
            .into_inner())
    }

    /// Accepts publishes to a disabled stream again.
    pub async fn enable_stream(&self, id: &str) -> Result<proto::Stream, Status> {
        Ok(self
            .admin()
            .enable_stream(stream_ref(id))
            .await?
            .into_inner())
    }

    /// Deletes a stream with its keys, points and revisions, irreversibly.
    pub async fn delete_stream(&self, id: &str) -> Result<proto::DeleteStreamResponse, Status> {
        Ok(self
            .admin()
            .delete_stream(stream_ref(id))
            .await?
            .into_inner())
    }

    /// Adds a generated key; returns it with its credential (shown this once).
    pub async fn rotate_key(&self, stream: &str) -> Result<(proto::StreamKey, Credential), Status> {
        let rotated = self
            .admin()
            .rotate_key(stream_ref(stream))
            .await?
            .into_inner();
        Ok((
            rotated.key.unwrap_or_default(),
            credential(&rotated.credential)?,
        ))
    }

    /// Revokes a key.
    pub async fn revoke_key(&self, stream: &str, key: &str) -> Result<proto::StreamKey, Status> {
        let request = proto::RevokeKeyRequest {
            stream_id: stream.to_owned(),
            key_id: key.to_owned(),
        };
        Ok(self.admin().revoke_key(request).await?.into_inner())
    }

    /// Registers a 32-byte Ed25519 public key made elsewhere.
    pub async fn add_key(
        &self,
        stream: &str,
        public_key: &[u8],
    ) -> Result<proto::StreamKey, Status> {
        let request = proto::AddKeyRequest {
            stream_id: stream.to_owned(),
            public_key: public_key.to_vec(),
        };
        Ok(self.admin().add_key(request).await?.into_inner())
    }

    /// A stream's keys, revoked ones included.
    pub async fn keys(&self, stream: &str) -> Result<Vec<proto::StreamKey>, Status> {
        Ok(self
            .admin()
            .list_keys(stream_ref(stream))
            .await?
            .into_inner()
            .keys)
    }

    /// The points of a stream in a period range, oldest first: all of them, or the
    /// first `range.limit`, following the server's pages.
    pub async fn points(
        &self,
        stream: &str,
        range: &PeriodRange,
    ) -> Result<Vec<proto::DataPoint>, Status> {
        follow(range.limit, move |size, token| async move {
            let (page, next) = self.points_page(stream, range, size, &token).await?;
            Ok((page, next.unwrap_or_default()))
        })
        .await
    }

    /// One page of a stream's points: at most `limit` (0: the server's maximum of
    /// 10,000) after the page `page_token` ended (empty: from the start of `range`),
    /// and the token of the next page when more follow.
    pub async fn points_page(
        &self,
        stream: &str,
        range: &PeriodRange,
        limit: u32,
        page_token: &str,
    ) -> Result<(Vec<proto::DataPoint>, Option<String>), Status> {
        let request = proto::ListPointsRequest {
            stream_id: stream.to_owned(),
            from: range.from.clone().unwrap_or_default(),
            to: range.to.clone().unwrap_or_default(),
            limit,
            page_token: page_token.to_owned(),
        };
        let page = self.query().list_points(request).await?.into_inner();
        let next = (!page.next_page_token.is_empty()).then_some(page.next_page_token);
        Ok((page.points, next))
    }

    /// The point of the latest period.
    pub async fn latest(&self, stream: &str) -> Result<proto::DataPoint, Status> {
        let request = proto::LatestRequest {
            stream_id: stream.to_owned(),
        };
        Ok(self.query().latest(request).await?.into_inner())
    }

    /// The stream's points as they are committed, until dropped; with `from_latest`,
    /// the latest period's point comes first. Points from a watch carry no revision
    /// count. A watch whose reader falls far behind ends with `ABORTED`: resume with
    /// [`Client::watch_since`] and the `updated_at` of the last point received.
    pub async fn watch(
        &self,
        stream: &str,
        from_latest: bool,
    ) -> Result<tonic::Streaming<proto::DataPoint>, Status> {
        let request = proto::WatchRequest {
            stream_id: stream.to_owned(),
            from_latest,
            since: None,
        };
        Ok(self.query().watch(request).await?.into_inner())
    }

    /// Like [`Client::watch`], but first every point changed after `since` (oldest
    /// change first), then the new ones: picks a watch up where an earlier one ended.
    pub async fn watch_since(
        &self,
        stream: &str,
        since: prost_types::Timestamp,
    ) -> Result<tonic::Streaming<proto::DataPoint>, Status> {
        let request = proto::WatchRequest {
            stream_id: stream.to_owned(),
            from_latest: false,
            since: Some(since),
        };
        Ok(self.query().watch(request).await?.into_inner())
    }

    /// The revisions of one period, oldest first: all of them, following the server's
    /// pages.
    pub async fn revisions(
        &self,
        stream: &str,
        period: &str,
    ) -> Result<Vec<proto::Revision>, Status> {
        follow(0, move |page_size, page_token| async move {
            let request = proto::ListRevisionsRequest {
                stream_id: stream.to_owned(),
                period: period.to_owned(),
                page_size,
                page_token,
            };
            let page = self.query().list_revisions(request).await?.into_inner();
            Ok((page.revisions, page.next_page_token))
        })
        .await
    }
}

/// Organisations, users, teams, tokens, grants and the audit log
/// (the rules: `docs/permissions.md`).
impl Client {
    /// Who the token belongs to: user, role, organisation, and whether they are the
    /// server admin.
    pub async fn who_am_i(&self) -> Result<proto::WhoAmIResponse, Status> {
        let request = proto::WhoAmIRequest {};
        Ok(self.admin().who_am_i(request).await?.into_inner())
    }

    /// Creates an organisation with its first admin (server admin only); the admin's
    /// token in the answer is shown only this once.
    pub async fn create_org(&self, name: &str, admin_name: &str) -> Result<CreatedOrg, Status> {
        let request = proto::CreateOrgRequest {
            name: name.to_owned(),
            admin_name: admin_name.to_owned(),
        };
        let created = self.admin().create_org(request).await?.into_inner();
        Ok(CreatedOrg {
            org_id: created.org_id,
            admin_name: created.admin_name,
            token: SecretString::from(created.token),
        })
    }

    /// Creates a user of the caller's organisation (org admins only). They can do
    /// nothing until they have a token: see [`Client::create_token`].
    pub async fn create_user(&self, name: &str, role: Role) -> Result<proto::User, Status> {
        let request = proto::CreateUserRequest {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
        };
        Ok(self.admin().create_user(request).await?.into_inner())
    }

    /// The users of the caller's organisation by name, with their role and teams: all
    /// of them, or the first `limit`, following the server's pages.
    pub async fn users(&self, limit: u32) -> Result<Vec<proto::User>, Status> {
        follow(limit, move |page_size, page_token| async move {
            let request = proto::ListUsersRequest {
                page_size,
                page_token,
            };
            let page = self.admin().list_users(request).await?.into_inner();
            Ok((page.users, page.next_page_token))
        })
        .await
    }

    /// Makes a user an org admin or a member (org admins only).
    pub async fn set_user_role(&self, name: &str, role: Role) -> Result<proto::User, Status> {
        let request = proto::SetUserRoleRequest {
            name: name.to_owned(),
            role: role.as_str().to_owned(),
        };
        Ok(self.admin().set_user_role(request).await?.into_inner())
    }

    /// Deletes a user with their tokens, team memberships and grants (org admins only;
    /// not oneself).
    pub async fn delete_user(&self, name: &str) -> Result<(), Status> {
        let request = proto::UserRef {
            name: name.to_owned(),
        };
        self.admin().delete_user(request).await?;
        Ok(())
    }

    /// Creates an empty team (org admins only).
    pub async fn create_team(&self, name: &str) -> Result<proto::Team, Status> {
        let request = proto::TeamRef {
            name: name.to_owned(),
        };
        Ok(self.admin().create_team(request).await?.into_inner())
    }

    /// Every team of the caller's organisation, with its members.
    pub async fn teams(&self) -> Result<Vec<proto::Team>, Status> {
        let request = proto::ListTeamsRequest {};
        Ok(self.admin().list_teams(request).await?.into_inner().teams)
    }

    /// Deletes a team and the grants given to it (org admins only); its members stay.
    pub async fn delete_team(&self, name: &str) -> Result<(), Status> {
        let request = proto::TeamRef {
            name: name.to_owned(),
        };
        self.admin().delete_team(request).await?;
        Ok(())
    }

    /// Adds a user to a team (org admins only); returns the team as it now is.
    pub async fn add_team_member(&self, team: &str, user: &str) -> Result<proto::Team, Status> {
        let request = team_member(team, user);
        Ok(self.admin().add_team_member(request).await?.into_inner())
    }

    /// Removes a user from a team (org admins only): what they could read only through
    /// the team is gone with their next call. Returns the team as it now is.
    pub async fn remove_team_member(&self, team: &str, user: &str) -> Result<proto::Team, Status> {
        let request = team_member(team, user);
        Ok(self.admin().remove_team_member(request).await?.into_inner())
    }

    /// Creates a token named `name` (empty: "token") for `user` (`None`: the caller;
    /// anyone else needs an org admin), valid until `expires_at` (`None`: until
    /// revoked). Returns it with its secret, which is shown only this once.
    pub async fn create_token(
        &self,
        name: &str,
        user: Option<&str>,
        expires_at: Option<jiff::Timestamp>,
    ) -> Result<(proto::Token, SecretString), Status> {
        let request = proto::CreateTokenRequest {
            name: name.to_owned(),
            user: user.unwrap_or_default().to_owned(),
            expires_at: expires_at.map(timestamp),
        };
        let created = self.admin().create_token(request).await?.into_inner();
        Ok((
            created.token.unwrap_or_default(),
            SecretString::from(created.secret),
        ))
    }

    /// The tokens of `user` (`None`: the caller's own; org admins may name anyone, or
    /// `"*"` for every user of the organisation), revoked and expired ones included.
    /// Never their secrets. All of them, or the first `limit`, following the server's
    /// pages.
    pub async fn tokens(
        &self,
        user: Option<&str>,
        limit: u32,
    ) -> Result<Vec<proto::Token>, Status> {
        follow(limit, move |page_size, page_token| async move {
            let request = proto::ListTokensRequest {
                user: user.unwrap_or_default().to_owned(),
                page_size,
                page_token,
            };
            let page = self.admin().list_tokens(request).await?.into_inner();
            Ok((page.tokens, page.next_page_token))
        })
        .await
    }

    /// Revokes a token by id (`tok_…`): it is refused from the next call on.
    pub async fn revoke_token(&self, id: &str) -> Result<proto::Token, Status> {
        let request = proto::RevokeTokenRequest { id: id.to_owned() };
        Ok(self.admin().revoke_token(request).await?.into_inner())
    }

    /// Shares a stream: `grant` is `user:NAME`, `team:NAME` or `org`, optionally followed
    /// by `:read` (the default) or `:manage`; it replaces that grantee's earlier grant.
    /// Needs manage on the stream. Returns the stream's grants as they now are.
    pub async fn add_grant(&self, stream: &str, grant: &str) -> Result<Vec<proto::Grant>, Status> {
        let request = grant_request(stream, grant);
        Ok(self.admin().add_grant(request).await?.into_inner().grants)
    }

    /// Takes a grantee's grant on a stream away (`user:NAME`, `team:NAME` or `org`; an
    /// access part is ignored). Needs manage on the stream. Returns the grants left.
    pub async fn remove_grant(
        &self,
        stream: &str,
        grantee: &str,
    ) -> Result<Vec<proto::Grant>, Status> {
        let request = grant_request(stream, grantee);
        Ok(self
            .admin()
            .remove_grant(request)
            .await?
            .into_inner()
            .grants)
    }

    /// Who may read or manage a stream besides the org admins. Needs manage on it.
    pub async fn grants(&self, stream: &str) -> Result<Vec<proto::Grant>, Status> {
        Ok(self
            .admin()
            .list_grants(stream_ref(stream))
            .await?
            .into_inner()
            .grants)
    }

    /// The caller's organisation's audit log entries matching `filter`, oldest first
    /// (org admins only): all of them, or the newest `filter.limit`, following the
    /// server's pages.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<proto::AuditEntry>, Status> {
        // Each page holds older entries than the one before it, oldest first within.
        let mut entries = follow(filter.limit, move |limit, page_token| async move {
            let request = proto::ListAuditRequest {
                target: filter.target.clone().unwrap_or_default(),
                actor: filter.actor.clone().unwrap_or_default(),
                since: filter.since.map(timestamp),
                until: filter.until.map(timestamp),
                limit,
                page_token,
            };
            let mut page = self.admin().list_audit(request).await?.into_inner();
            page.entries.reverse();
            Ok((page.entries, page.next_page_token))
        })
        .await?;
        entries.reverse();
        Ok(entries)
    }

    /// Sets a connector's cursor (`None`: removes it, so the next run starts from the
    /// definition's `cursor.initial`); audited. Refused (`FAILED_PRECONDITION`) while a
    /// run holds the connector's lease. Needs a runner or admin token.
    pub async fn set_cursor(
        &self,
        connector: &str,
        cursor: Option<&str>,
    ) -> Result<proto::SetCursorResponse, Status> {
        let request = proto::SetCursorRequest {
            connector: connector.to_owned(),
            cursor: cursor.map(str::to_owned),
        };
        Ok(self.runner().set_cursor(request).await?.into_inner())
    }

    /// Deletes what the server keeps of a connector (state, cursor, run log); audited.
    /// Refused (`FAILED_PRECONDITION`) while a run holds its lease.
    pub async fn forget_connector(
        &self,
        connector: &str,
    ) -> Result<proto::ForgetConnectorResponse, Status> {
        let request = proto::ConnectorRef {
            connector: connector.to_owned(),
        };
        Ok(self.runner().forget_connector(request).await?.into_inner())
    }

    /// A connector's run log, newest first: the newest `limit` runs (0: all of them),
    /// following the server's pages. Needs a runner or admin token.
    pub async fn runs(&self, connector: &str, limit: u32) -> Result<Vec<proto::Run>, Status> {
        follow(limit, move |limit, page_token| async move {
            let request = proto::ListRunsRequest {
                connector: connector.to_owned(),
                limit,
                page_token,
            };
            let page = self.runner().list_runs(request).await?.into_inner();
            Ok((page.runs, page.next_page_token))
        })
        .await
    }
}

/// Reads a listing page by page: all of it (`limit` 0) or its first `limit` items.
/// `page(size, token)` answers a page of at most `size` items (0: the server's page
/// size) and the next page's token (empty on the last page). A page that moves nothing
/// on ends the reading, whatever its token says.
pub(super) async fn follow<T, Page>(
    limit: u32,
    mut page: impl FnMut(u32, String) -> Page,
) -> Result<Vec<T>, Status>
where
    Page: Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let size = match limit {
            0 => 0,
            n => n - items.len() as u32,
        };
        let (got, next) = page(size, token.clone()).await?;
        let moved = !got.is_empty();
        items.extend(got);
        let more_wanted = limit == 0 || (items.len() as u32) < limit;
        if next.is_empty() || next == token || !moved || !more_wanted {
            items.truncate(if limit == 0 {
                items.len()
            } else {
                limit as usize
            });
            return Ok(items);
        }
        token = next;
    }
}
