//! The `Store` trait: the only door to storage. SQLite is the embedded default; other
//! backends implement the same trait and pass the same conformance suite.

#[cfg(test)]
mod contract;
pub mod copy;
mod health;
pub mod notify;
pub mod postgres;
mod rows;
mod shared;
mod sqlite;
mod sqlx_error;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

pub use health::{Readiness, WriteHealth};
pub use notify::NotifyStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::collections::HashMap;

use crate::access::{
    Access, AuditEntry, AuditEvent, AuditFilter, Grant, GrantSpec, Grantee, Team, TokenInfo, User,
};
use crate::auth::{Principal, Role};
use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome};
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::runner_state::{
    ConnectorName, ConnectorState, LeaseOutcome, LeaseTtl, ReportOutcome, RunRecord, RunReport,
    RunnerId,
};
use crate::stream::{
    Category, DeletedCounts, PublishingKey, Stream, StreamDefinition, StreamKey, StreamUpdate,
};

/// What a store operation can fail with, whatever the backend: the driver's errors are
/// classified into these in one place (`sqlx_error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The change is refused by the data as it stands: a rule of kpistream's, or a
    /// constraint of the database (unique, foreign key, check).
    #[error("{0}")]
    Conflict(String),
    /// The change would leave an organisation that nobody can administer.
    #[error(
        "user {user:?} is the only admin of organisation {org}: make another user an admin first"
    )]
    LastAdmin { user: String, org: OrgId },
    /// The database cannot take the operation now: an I/O error, a full disk, a
    /// read-only file, a lock held too long, a file it cannot open, no connection. The
    /// one error that marks writes failing on `/healthz` (see [`WriteHealth`]).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not read back as its type, or the database file is damaged
    /// or is not a database.
    #[error("the database holds a value kpistream cannot read: {0}")]
    Corrupt(String),
    /// The database's schema could not be brought to this version's (at open).
    #[error("could not apply the database migrations: {0}")]
    Migration(String),
    /// The URL names no database kpistream can keep its data in. Holds only the
    /// URL's scheme: the rest may carry a password.
    #[error(
        "unsupported database URL ({0}): use sqlite://PATH (a file) or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A new stream key, public half only.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_id: KeyId,
    pub public_key: [u8; 32],
    pub origin: crate::stream::KeyOrigin,
}

/// One stored datapoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointRecord {
    pub period: String,
    pub value: String,
    pub external_id: Option<String>,
    pub updated_at: Timestamp,
    pub batch_id: String,
    pub key_id: String,
    pub revision_count: u32,
}

/// One replaced value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    pub period: String,
    pub old_value: String,
    pub new_value: String,
    pub batch_id: String,
    pub key_id: String,
    pub revised_at: Timestamp,
}

/// What the first start creates.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub org_id: OrgId,
    pub org_name: String,
    pub user_id: UserId,
    pub user_name: String,
    pub token_hash: [u8; 32],
}

/// A token to store: only its hash.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The name of the user it belongs to.
    pub user: String,
    pub name: String,
    pub hash: [u8; 32],
    pub expires_at: Option<Timestamp>,
}

/// Organisations, users, teams, tokens, grants and the audit log. The first start's
/// bootstrap and the token lookup behind every call live here too: both are about who
/// may act (an organisation, its admin, a token), not about streams or data.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Whether the database has no organisation yet, so the first start must create one.
    async fn needs_bootstrap(&self) -> Result<bool>;
    /// Creates the first organisation, admin and token if the database has none.
    /// Returns false (and changes nothing) when an organisation exists.
    async fn bootstrap(&self, first: &Bootstrap, now: Timestamp) -> Result<bool>;
    /// The principal a token hash belongs to, if the token is valid at `now`.
    async fn principal_for_token(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<Principal>>;
    /// Creates an organisation with its first admin and that admin's token.
    async fn create_org(&self, first: &Bootstrap, now: Timestamp) -> Result<()>;
    async fn create_user(
        &self,
        org: &OrgId,
        name: &str,
        role: Role,
        now: Timestamp,
    ) -> Result<User>;
    async fn list_users(&self, org: &OrgId) -> Result<Vec<User>>;
    async fn set_user_role(&self, org: &OrgId, name: &str, role: Role) -> Result<User>;
    /// Removes a user with their tokens, team memberships and grants.
    async fn delete_user(&self, org: &OrgId, name: &str) -> Result<()>;
    async fn create_team(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<()>;
    async fn list_teams(&self, org: &OrgId) -> Result<Vec<Team>>;
    async fn delete_team(&self, org: &OrgId, name: &str) -> Result<()>;
    /// Adds (`member`) or removes a user from a team.
    async fn set_team_member(
        &self,
        org: &OrgId,
        team: &str,
        user: &str,
        member: bool,
    ) -> Result<()>;
    async fn create_token(
        &self,
        org: &OrgId,
        token: &NewToken,
        now: Timestamp,
    ) -> Result<TokenInfo>;
    async fn list_tokens(&self, org: &OrgId, user: Option<&str>) -> Result<Vec<TokenInfo>>;
    async fn token(&self, org: &OrgId, id: &str) -> Result<TokenInfo>;
    async fn revoke_token(&self, org: &OrgId, id: &str, now: Timestamp) -> Result<TokenInfo>;
    /// Adds grants, or changes the access of existing ones.
    async fn set_grants(
        &self,
        org: &OrgId,
        stream: &StreamId,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<()>;
    async fn remove_grant(&self, org: &OrgId, stream: &StreamId, grantee: &Grantee) -> Result<()>;
    async fn list_grants(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<Grant>>;
    /// The access `user` has to each stream reached by a grant (directly, through a
    /// team or through the org). Org admins' implicit access is not included.
    async fn stream_accesses(
        &self,
        org: &OrgId,
        user: &UserId,
    ) -> Result<HashMap<StreamId, Access>>;
    async fn stream_access(
        &self,
        org: &OrgId,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<Option<Access>>;
    async fn record_audit(&self, event: &AuditEvent<'_>, now: Timestamp) -> Result<()>;
    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}

/// What connector runners keep on the server: per-connector state, leases, run log.
/// Connectors are named per organisation; nothing crosses organisations.
#[async_trait]
pub trait RunnerStore: Send + Sync + 'static {
    /// In one write transaction: grants (or renews, for the same runner) the lease on
    /// `connector` for `slot` until `now + ttl`, unless another runner holds an
    /// unexpired lease or `slot` already has a run.
    async fn acquire_lease(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        slot: Timestamp,
        runner: &RunnerId,
        ttl: LeaseTtl,
        now: Timestamp,
    ) -> Result<LeaseOutcome>;
    /// Ends `runner`'s lease; false if it held none.
    async fn release_lease(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        runner: &RunnerId,
    ) -> Result<bool>;
    /// The connector's state, or the default one for a connector never seen.
    async fn connector_state(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
    ) -> Result<ConnectorState>;
    /// Logs the run, updates the state, completes the slot and ends the lease, in one
    /// transaction. `Conflict` unless `report.runner` holds the lease for `report.slot`.
    async fn report_run(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        report: &RunReport,
        now: Timestamp,
    ) -> Result<ReportOutcome>;
    /// Enables (resetting the failure count) or disables the connector.
    async fn set_connector_enabled(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        enabled: bool,
        now: Timestamp,
    ) -> Result<ConnectorState>;
    /// Sets the connector's cursor (`None`: none, so the next run starts from the
    /// definition's `cursor.initial`), in one transaction; returns the cursor it had and
    /// the state after. `NotFound` for a connector the server keeps nothing of;
    /// `Conflict` while a runner holds an unexpired lease (that run's report would
    /// overwrite the cursor). An expired lease is ended, so a late report is refused.
    async fn set_connector_cursor(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        cursor: Option<&str>,
        now: Timestamp,
    ) -> Result<(Option<String>, ConnectorState)>;
    /// Deletes what the server keeps of a connector (state, cursor, run log), in one
    /// transaction; returns the state it had (`None`: it had none) and the runs deleted.
    /// `Conflict` while a runner holds an unexpired lease.
    async fn forget_connector(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        now: Timestamp,
    ) -> Result<(Option<ConnectorState>, u64)>;
    /// Every connector the server keeps state of (or only those with a run asked for),
    /// by name, with its state.
    async fn list_connectors(
        &self,
        org: &OrgId,
        requested_only: bool,
    ) -> Result<Vec<(ConnectorName, ConnectorState)>>;
    /// Asks the runners for a run of `connector` now (the request already there is
    /// kept, unless older than `RUN_REQUEST_TTL_SECS`); returns the state after.
    /// `NotFound` for a connector the server keeps nothing of.
    async fn request_run(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        now: Timestamp,
    ) -> Result<ConnectorState>;
    /// The newest `limit` runs older than the run `before` (all runs when `None`),
    /// newest first.
    async fn list_runs(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<RunRecord>>;
}

/// Streams and what defines them: categories, streams, and the keys that sign their
/// batches, with the lookup the publish path checks a batch against.
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    async fn create_category(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<Category>;
    async fn list_categories(&self, org: &OrgId) -> Result<Vec<Category>>;
    async fn rename_category(&self, org: &OrgId, name: &str, new_name: &str) -> Result<Category>;
    async fn delete_category(&self, org: &OrgId, name: &str) -> Result<()>;

    /// Creates a stream with its first key; the creator gets manage, `grants` are added.
    #[allow(clippy::too_many_arguments)]
    async fn create_stream(
        &self,
        org: &OrgId,
        creator: &UserId,
        id: &StreamId,
        definition: &StreamDefinition,
        key: &NewKey,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<(Stream, StreamKey)>;
    async fn list_streams(&self, org: &OrgId) -> Result<Vec<Stream>>;
    /// The first `limit` streams of every organisation (by organisation, name and id),
    /// and how many there are in all: the server's own view, for its metrics.
    async fn all_streams(&self, limit: u32) -> Result<(Vec<Stream>, u64)>;
    async fn get_stream(&self, org: &OrgId, id: &StreamId) -> Result<Stream>;
    /// Applies `update`; changes of frequency, type or time zone are refused once the
    /// stream holds data.
    async fn update_stream(
        &self,
        org: &OrgId,
        id: &StreamId,
        update: &StreamUpdate,
        now: Timestamp,
    ) -> Result<Stream>;
    async fn set_stream_disabled(
        &self,
        org: &OrgId,
        id: &StreamId,
        disabled: bool,
        now: Timestamp,
    ) -> Result<Stream>;
    async fn delete_stream(&self, org: &OrgId, id: &StreamId) -> Result<DeletedCounts>;

    async fn add_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &NewKey,
        now: Timestamp,
    ) -> Result<StreamKey>;
    async fn revoke_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &KeyId,
        now: Timestamp,
    ) -> Result<StreamKey>;
    async fn list_keys(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<StreamKey>>;
    /// The key and stream settings the publish path checks a batch against.
    async fn publishing_key(&self, stream: &StreamId, key: &KeyId)
    -> Result<Option<PublishingKey>>;
}

/// Datapoints: committing verified batches (group commit, dedup by batch id) and
/// reading points and their revisions back.
#[async_trait]
pub trait PointStore: Send + Sync + 'static {
    /// Commits the batches in one transaction (group commit) and returns one result
    /// each, in order. A batch id already committed for its stream returns the stored
    /// outcome with `replayed` set, and stores nothing.
    /// The batches come back to the caller through the `Arc` once the result is in.
    async fn commit_batches(
        &self,
        batches: Arc<Vec<PreparedBatch>>,
        now: Timestamp,
    ) -> Result<Vec<Result<PublishOutcome, CommitRefusal>>>;
    /// Forgets batch ids accepted before `before` (the end of the dedup window).
    async fn prune_batches(&self, before: Timestamp) -> Result<u64>;

    async fn list_points(
        &self,
        stream: &StreamId,
        from: Option<&str>,
        to: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointRecord>>;
    async fn latest_point(&self, stream: &StreamId) -> Result<Option<PointRecord>>;
    /// Points last changed after `after`: after an instant, or at that instant and
    /// after a period. Ordered by the change, then the period: how a watch catches up
    /// from where it stopped.
    async fn points_updated_after(
        &self,
        stream: &StreamId,
        after: (Timestamp, Option<&str>),
        limit: u32,
    ) -> Result<Vec<PointRecord>>;
    async fn list_revisions(&self, stream: &StreamId, period: &str) -> Result<Vec<RevisionRecord>>;
}

/// A change another server made to a database this one shares (PostgreSQL), heard
/// through the database (`LISTEN`/`NOTIFY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A stream's definition, status or keys changed: cached keys of it are stale.
    Stream(StreamId),
    /// Points of `stream` were committed with the time `at` (by any server sharing the
    /// database; heard in the order the database committed them).
    Committed { stream: StreamId, at: Timestamp },
    /// The server stopped hearing changes for a while (its connection to the database
    /// was lost): anything cached may be stale.
    Missed,
}

/// The whole store, as callers hold it (`Arc<dyn Store>`): its parts, and whether the
/// database answers and takes writes. Methods of the parts are callable on a
/// `dyn Store` as they are; on a concrete store, bring the part's trait into scope.
#[async_trait]
pub trait Store: StreamStore + PointStore + AccessStore + RunnerStore + NotifyStore {
    /// Where callers report storage faults and successful writes (see [`WriteHealth`]).
    fn write_health(&self) -> Arc<WriteHealth>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;
    /// Checks the database takes a write: commits a one-row change that nothing reads.
    async fn probe_write(&self, now: Timestamp) -> Result<()>;
    /// Changes made through the database by the servers sharing it, for a store that
    /// can have several (`None`: this server is the database's only writer). With a
    /// feed, watchers get every commit from it, this server's own included.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }
    /// How many group commits the store takes at once: one writer each, owning a
    /// share of the streams. A single-writer database (SQLite) takes one.
    fn writers(&self) -> usize {
        1
    }
}

/// How `serve` opens its database.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Apply pending migrations at open; without, a database behind this version's
    /// schema is refused (`kpistream migrate` brings it forward).
    pub migrate: bool,
    /// Start on a PostgreSQL whose `synchronous_commit` is `off` (an acknowledged
    /// publish could then be lost in a crash of the database server), with a warning.
    pub allow_async_commit: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            allow_async_commit: false,
        }
    }
}

/// Opens the store a database URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, &OpenOptions::default()).await
}

/// Opens the store a database URL names: `sqlite://PATH` or `postgres://…`.
pub async fn open_with(url: &str, options: &OpenOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(
            SqliteStore::open_with(url, options.migrate).await?,
        ));
    }
    if is_postgres(url) {
        let options = postgres::PostgresOptions {
            migrate: options.migrate,
            allow_async_commit: options.allow_async_commit,
            ..postgres::PostgresOptions::default()
        };
        return Ok(Arc::new(PostgresStore::open_with(url, &options).await?));
    }
    Err(StoreError::unsupported(url))
}

/// Applies the migrations a database lacks; returns how many ran and how many the
/// schema has.
pub async fn migrate(url: &str) -> Result<(usize, usize)> {
    if url.starts_with("sqlite:") {
        return SqliteStore::migrate(url).await;
    }
    if is_postgres(url) {
        return PostgresStore::migrate(url).await;
    }
    Err(StoreError::unsupported(url))
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A database URL as it may be printed or logged: its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            let secret_query = parsed
                .query_pairs()
                .any(|(key, _)| SECRET_PARAMETERS.contains(&key.as_ref()));
            if secret_query {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if SECRET_PARAMETERS.contains(&key.as_ref()) {
                            "***".to_owned()
                        } else {
                            value.into_owned()
                        };
                        (key.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            if parsed.as_str() == url {
                url.to_owned()
            } else {
                parsed.to_string()
            }
        }
        // Not a URL the parser takes: not shown, in case it holds a secret.
        Err(_) if url.starts_with("sqlite:") => url.to_owned(),
        Err(_) => "(a database URL that does not parse)".to_owned(),
    }
}

impl StoreError {
    /// An unsupported database URL, named by its scheme only.
    pub(crate) fn unsupported(url: &str) -> Self {
        let scheme = url.split(':').next().unwrap_or_default();
        let scheme: String = scheme
            .chars()
            .take(20)
            .filter(char::is_ascii_alphanumeric)
            .collect();
        StoreError::UnsupportedUrl(format!("a {scheme:?} URL"))
    }
}

/// Microseconds since the epoch, as stored.
pub(crate) fn to_micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

pub(crate) fn from_micros(us: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(us).map_err(corrupt)
}

/// A stored value that does not read back as its type.
pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}
