//! The SQLite store: one file, WAL journal, `synchronous=FULL`, so a committed
//! transaction survives power loss. Migrations in `migrations/sqlite` run at open.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteExecutor, Transaction};

use super::{
    Bootstrap, NewKey, PointRecord, Result, RevisionRecord, Store, StoreError, WriteHealth,
    corrupt, from_micros, to_micros,
};
use crate::access::GrantSpec;
use crate::auth::{Principal, Role};
use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome};
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::period::Frequency;
use crate::stream::{
    Category, DeletedCounts, KeyOrigin, PublishingKey, Stream, StreamDefinition, StreamKey,
    StreamUpdate,
};
use crate::value::ValueType;

mod access;
mod points;
mod runner;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const STREAM_COLUMNS: &str = "s.id, s.org_id, s.name, s.description, c.name AS category, \
     s.frequency, s.value_type, s.currency, s.time_zone, s.disabled, s.created_at, \
     s.updated_at, s.latest_period, s.last_data_at, s.point_count \
     FROM streams s LEFT JOIN categories c ON c.id = s.category_id";

const KEY_COLUMNS: &str =
    "key_id, public_key, origin, created_at, last_used_at, revoked_at FROM stream_keys";

/// Reads and writes go through two pools: a connection opened while the file could only
/// be read (see `open`) then serves reads only, where it does no harm, and never meets a
/// write it would fail.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    health: Arc<WriteHealth>,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if missing) and migrates the database.
    /// A folder it creates is private to the server's user (0700), and the database
    /// file is made 0600 (SQLite gives its WAL and shared-memory files the same mode):
    /// it holds token hashes and every KPI value.
    pub async fn open(url: &str) -> Result<Self> {
        if let Some(path) = database_path(url) {
            prepare_database_file(path)?;
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Migrations run on a connection of their own with foreign keys off, as SQLite
        // asks for schema changes that rebuild a table: dropping the old copy must not
        // cascade to the rows that reference it. The references are checked afterwards.
        let mut migrating =
            sqlx::ConnectOptions::connect(&options.clone().foreign_keys(false)).await?;
        MIGRATOR.run(&mut migrating).await?;
        let broken: Vec<SqliteRow> = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut migrating)
            .await?;
        if !broken.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "{} row(s) reference rows that do not exist after the migrations",
                broken.len()
            )));
        }
        sqlx::Connection::close(migrating).await?;
        let health = Arc::new(WriteHealth::default());
        let (on_release, on_acquire) = (health.clone(), health.clone());
        // A write that failed on a full disk can leave its connection inside a
        // transaction that SQLite already rolled back (the ROLLBACK sent when the
        // transaction is dropped then fails too, and the connection keeps counting a
        // transaction): every later BEGIN on it would fail. And a connection opened while
        // the file was read-only stays read-only when the file is writable again. So a
        // connection left in a transaction is closed, while writes fail the writers'
        // connections are closed after each use rather than pooled, and writers' idle
        // connections that predate a fault are replaced when next used: the store
        // recovers as soon as the disk does, without a restart.
        let writer = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(move |conn, _| {
                let keep = !sqlx::Connection::is_in_transaction(conn) && !on_release.is_failing();
                Box::pin(async move { Ok(keep) })
            })
            .before_acquire(move |_, meta| {
                let stale = on_acquire.predates_last_fault(meta.age);
                Box::pin(async move { Ok(!stale) })
            })
            .connect_with(options.clone())
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .after_release(|conn, _| {
                let keep = !sqlx::Connection::is_in_transaction(conn);
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            writer,
            health,
        })
    }

    /// A write transaction. `BEGIN IMMEDIATE` takes the write lock up front: a plain
    /// `BEGIN` that reads and then writes may be refused the upgrade ("database is
    /// locked") while another connection writes.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The pool, for checks such as `PRAGMA integrity_check`.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn category_id(
        tx: &mut Transaction<'_, Sqlite>,
        org: &OrgId,
        name: Option<&str>,
    ) -> Result<Option<i64>> {
        let Some(name) = name else { return Ok(None) };
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM categories WHERE org_id = ? AND name = ?")
                .bind(org.as_str())
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?;
        id.map(Some).ok_or_else(|| {
            StoreError::NotFound(format!(
                "category {name:?} (create it first with `kpistream category create`)"
            ))
        })
    }

    /// The stream, read in a transaction or straight from the pool.
    async fn stream_in(db: impl SqliteExecutor<'_>, org: &OrgId, id: &StreamId) -> Result<Stream> {
        let sql = format!("SELECT {STREAM_COLUMNS} WHERE s.id = ? AND s.org_id = ?");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(org.as_str())
            .fetch_optional(db)
            .await?;
        row.as_ref()
            .map(stream_from_row)
            .transpose()?
            .ok_or_else(|| stream_not_found(id))
    }

    async fn key_in(
        tx: &mut Transaction<'_, Sqlite>,
        stream: &StreamId,
        key: &KeyId,
    ) -> Result<StreamKey> {
        let sql = format!("SELECT {KEY_COLUMNS} WHERE stream_id = ? AND key_id = ?");
        let row = sqlx::query(&sql)
            .bind(stream.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref()
            .map(key_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("key {key} of stream {stream}")))
    }
}

/// The file path of a `sqlite:` URL, unless the database lives in memory.
fn database_path(url: &str) -> Option<&Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| Path::new(path))
}

/// Creates the database's folder (0700) and file (0600) if missing, and takes group and
/// world access away from an existing database file and its WAL and shared-memory files.
fn prepare_database_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |what: &str, e: std::io::Error| {
        StoreError::Database(sqlx::Error::Configuration(
            format!("cannot {what}: {e}").into(),
        ))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::secret_file::create_private_dir(parent).map_err(|e| {
            fail(
                &format!("create the database folder {}", parent.display()),
                e,
            )
        })?;
        let mode = std::fs::metadata(parent).map(|m| m.permissions().mode());
        if mode.is_ok_and(|mode| mode & 0o077 != 0) {
            tracing::warn!(folder = %parent.display(), "the database folder can be read by other users: `chmod 700` it");
        }
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(&format!("create the database {}", path.display()), e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| fail(&format!("make {} private (mode 0600)", file.display()), e))?;
            tracing::info!(file = %file.display(), "made the database file private (mode 0600)");
        }
    }
    Ok(())
}

fn stream_not_found(id: &StreamId) -> StoreError {
    StoreError::NotFound(format!("stream {id}"))
}

/// The one place a unique-constraint violation becomes `AlreadyExists(what)`.
fn unique<T>(
    result: std::result::Result<T, sqlx::Error>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    match result {
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Err(StoreError::AlreadyExists(what()))
        }
        other => Ok(other?),
    }
}

fn parse_frequency(text: String) -> Result<Frequency> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("frequency {text:?}")))
}

fn opt_micros(us: Option<i64>) -> Result<Option<Timestamp>> {
    us.map(from_micros).transpose()
}

/// The `value_type` and `currency` columns of a `streams` row.
fn value_type_from_row(row: &SqliteRow) -> Result<ValueType> {
    let currency: Option<String> = row.get("currency");
    ValueType::from_parts(row.get("value_type"), currency.as_deref()).map_err(corrupt)
}

fn stream_from_row(row: &SqliteRow) -> Result<Stream> {
    let id: String = row.get("id");
    let org: String = row.get("org_id");
    Ok(Stream {
        id: StreamId::parse(&id).map_err(corrupt)?,
        org_id: OrgId::parse(&org).map_err(corrupt)?,
        definition: StreamDefinition {
            name: row.get("name"),
            description: row.get("description"),
            category: row.get("category"),
            frequency: parse_frequency(row.get("frequency"))?,
            value_type: value_type_from_row(row)?,
            time_zone: row.get("time_zone"),
        },
        disabled: row.get("disabled"),
        created_at: from_micros(row.get("created_at"))?,
        updated_at: from_micros(row.get("updated_at"))?,
        latest_period: row.get("latest_period"),
        last_data_at: opt_micros(row.get("last_data_at"))?,
        point_count: row.get::<i64, _>("point_count") as u64,
    })
}

fn public_key_bytes(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored public key is not 32 bytes".into()))
}

fn key_from_row(row: &SqliteRow) -> Result<StreamKey> {
    let key_id: String = row.get("key_id");
    Ok(StreamKey {
        key_id: KeyId::parse(&key_id).map_err(corrupt)?,
        public_key: public_key_bytes(row.get("public_key"))?,
        origin: KeyOrigin::parse(row.get("origin")),
        created_at: from_micros(row.get("created_at"))?,
        last_used_at: opt_micros(row.get("last_used_at"))?,
        revoked_at: opt_micros(row.get("revoked_at"))?,
    })
}

fn category_from_row(row: &SqliteRow) -> Result<Category> {
    Ok(Category {
        name: row.get("name"),
        stream_count: row.get::<i64, _>("stream_count") as u64,
        created_at: from_micros(row.get("created_at"))?,
    })
}

const CATEGORY_SELECT: &str = "SELECT c.name, c.created_at, \
     (SELECT COUNT(*) FROM streams s WHERE s.category_id = c.id) AS stream_count \
     FROM categories c";

#[async_trait]
impl Store for SqliteStore {
    fn write_health(&self) -> Arc<WriteHealth> {
        self.health.clone()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn probe_write(&self, now: Timestamp) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn needs_bootstrap(&self) -> Result<bool> {
        let orgs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs")
            .fetch_one(&self.pool)
            .await?;
        Ok(orgs == 0)
    }

    async fn bootstrap(&self, first: &Bootstrap, now: Timestamp) -> Result<bool> {
        let mut tx = self.write().await?;
        let orgs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orgs")
            .fetch_one(&mut *tx)
            .await?;
        if orgs > 0 {
            return Ok(false);
        }
        access::insert_org(&mut tx, first, true, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn principal_for_token(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.org_id, u.role, u.server_admin, t.id AS token_id, t.last_used_at \
             FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.hash = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?)",
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
            sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?")
                .bind(to_micros(now))
                .bind(row.get::<String, _>("token_id"))
                .execute(&self.writer)
                .await?;
        }
        Ok(Some(Principal {
            user_id: UserId::parse(&user).map_err(corrupt)?,
            name: row.get("name"),
            org_id: OrgId::parse(&org).map_err(corrupt)?,
            role: Role::parse(row.get("role")),
            server_admin: row.get("server_admin"),
        }))
    }

    async fn create_category(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<Category> {
        let inserted =
            sqlx::query("INSERT INTO categories (org_id, name, created_at) VALUES (?, ?, ?)")
                .bind(org.as_str())
                .bind(name)
                .bind(to_micros(now))
                .execute(&self.writer)
                .await;
        unique(inserted, || format!("category {name:?}"))?;
        Ok(Category {
            name: name.to_owned(),
            stream_count: 0,
            created_at: now,
        })
    }

    async fn list_categories(&self, org: &OrgId) -> Result<Vec<Category>> {
        let sql = format!("{CATEGORY_SELECT} WHERE c.org_id = ? ORDER BY c.name");
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(category_from_row).collect()
    }

    async fn rename_category(&self, org: &OrgId, name: &str, new_name: &str) -> Result<Category> {
        let updated = sqlx::query("UPDATE categories SET name = ? WHERE org_id = ? AND name = ?")
            .bind(new_name)
            .bind(org.as_str())
            .bind(name)
            .execute(&self.writer)
            .await;
        if unique(updated, || format!("category {new_name:?}"))?.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("category {name:?}")));
        }
        let sql = format!("{CATEGORY_SELECT} WHERE c.org_id = ? AND c.name = ?");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(new_name)
            .fetch_one(&self.pool)
            .await?;
        category_from_row(&row)
    }

    async fn delete_category(&self, org: &OrgId, name: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let Some(id) = Self::category_id(&mut tx, org, Some(name))
            .await
            .map_err(|_| StoreError::NotFound(format!("category {name:?}")))?
        else {
            return Ok(());
        };
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams WHERE category_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "category {name:?} is used by {used} stream(s): move or delete them first"
            )));
        }
        sqlx::query("DELETE FROM categories WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_stream(
        &self,
        org: &OrgId,
        creator: &UserId,
        id: &StreamId,
        definition: &StreamDefinition,
        key: &NewKey,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<(Stream, StreamKey)> {
        let mut tx = self.write().await?;
        let category = Self::category_id(&mut tx, org, definition.category.as_deref()).await?;
        let at = to_micros(now);
        sqlx::query(
            "INSERT INTO streams (id, org_id, name, description, category_id, frequency, value_type, \
             currency, time_zone, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(org.as_str())
        .bind(&definition.name)
        .bind(&definition.description)
        .bind(category)
        .bind(definition.frequency.as_str())
        .bind(definition.value_type.kind())
        .bind(definition.value_type.currency_code())
        .bind(&definition.time_zone)
        .bind(creator.as_str())
        .bind(at)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        insert_key(&mut tx, id, key, at).await?;
        access::upsert_grants(&mut tx, org, id, grants, now).await?;
        // The creator manages the stream, even if `grants` named them with read.
        sqlx::query(
            "INSERT INTO grants (stream_id, grantee_kind, grantee_id, access, created_at) VALUES (?, 'user', ?, 'manage', ?) \
             ON CONFLICT (stream_id, grantee_kind, grantee_id) DO UPDATE SET access = 'manage'",
        )
        .bind(id.as_str())
        .bind(creator.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let stream = Self::stream_in(&mut *tx, org, id).await?;
        let key = Self::key_in(&mut tx, id, &key.key_id).await?;
        tx.commit().await?;
        Ok((stream, key))
    }

    async fn list_streams(&self, org: &OrgId) -> Result<Vec<Stream>> {
        let sql = format!("SELECT {STREAM_COLUMNS} WHERE s.org_id = ? ORDER BY s.name, s.id");
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stream_from_row).collect()
    }

    async fn get_stream(&self, org: &OrgId, id: &StreamId) -> Result<Stream> {
        Self::stream_in(&self.pool, org, id).await
    }

    async fn update_stream(
        &self,
        org: &OrgId,
        id: &StreamId,
        update: &StreamUpdate,
        now: Timestamp,
    ) -> Result<Stream> {
        let mut tx = self.write().await?;
        let current = Self::stream_in(&mut *tx, org, id).await?;
        let next = update.apply(&current.definition);
        let shape_changes = next.frequency != current.definition.frequency
            || next.value_type != current.definition.value_type
            || next.time_zone != current.definition.time_zone;
        if shape_changes && current.point_count > 0 {
            return Err(StoreError::Conflict(format!(
                "stream {id} already holds {} point(s): its frequency, value type and time zone \
                 are fixed once data exists (create a new stream instead)",
                current.point_count
            )));
        }
        let category = Self::category_id(&mut tx, org, next.category.as_deref()).await?;
        sqlx::query(
            "UPDATE streams SET name = ?, description = ?, category_id = ?, frequency = ?, \
             value_type = ?, currency = ?, time_zone = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&next.name)
        .bind(&next.description)
        .bind(category)
        .bind(next.frequency.as_str())
        .bind(next.value_type.kind())
        .bind(next.value_type.currency_code())
        .bind(&next.time_zone)
        .bind(to_micros(now))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let stream = Self::stream_in(&mut *tx, org, id).await?;
        tx.commit().await?;
        Ok(stream)
    }

    async fn set_stream_disabled(
        &self,
        org: &OrgId,
        id: &StreamId,
        disabled: bool,
        now: Timestamp,
    ) -> Result<Stream> {
        let mut tx = self.write().await?;
        Self::stream_in(&mut *tx, org, id).await?;
        sqlx::query("UPDATE streams SET disabled = ?, updated_at = ? WHERE id = ?")
            .bind(disabled)
            .bind(to_micros(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let stream = Self::stream_in(&mut *tx, org, id).await?;
        tx.commit().await?;
        Ok(stream)
    }

    async fn delete_stream(&self, org: &OrgId, id: &StreamId) -> Result<DeletedCounts> {
        let mut tx = self.write().await?;
        Self::stream_in(&mut *tx, org, id).await?;
        let mut counts = DeletedCounts::default();
        for (table, slot) in [
            ("points", &mut counts.points),
            ("revisions", &mut counts.revisions),
            ("stream_keys", &mut counts.keys),
        ] {
            let sql = format!("DELETE FROM {table} WHERE stream_id = ?");
            *slot = sqlx::query(&sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query("DELETE FROM batches WHERE stream_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM streams WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn add_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &NewKey,
        now: Timestamp,
    ) -> Result<StreamKey> {
        let mut tx = self.write().await?;
        Self::stream_in(&mut *tx, org, stream).await?;
        let same: Option<String> = sqlx::query_scalar(
            "SELECT key_id FROM stream_keys WHERE stream_id = ? AND public_key = ?",
        )
        .bind(stream.as_str())
        .bind(&key.public_key[..])
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = same {
            return Err(StoreError::AlreadyExists(format!(
                "this public key (as {existing} of stream {stream})"
            )));
        }
        insert_key(&mut tx, stream, key, to_micros(now)).await?;
        let key = Self::key_in(&mut tx, stream, &key.key_id).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn revoke_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &KeyId,
        now: Timestamp,
    ) -> Result<StreamKey> {
        let mut tx = self.write().await?;
        Self::stream_in(&mut *tx, org, stream).await?;
        Self::key_in(&mut tx, stream, key).await?;
        sqlx::query(
            "UPDATE stream_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE stream_id = ? AND key_id = ?",
        )
        .bind(to_micros(now))
        .bind(stream.as_str())
        .bind(key.as_str())
        .execute(&mut *tx)
        .await?;
        let key = Self::key_in(&mut tx, stream, key).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn list_keys(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<StreamKey>> {
        let mut tx = self.pool.begin().await?;
        Self::stream_in(&mut *tx, org, stream).await?;
        let sql = format!("SELECT {KEY_COLUMNS} WHERE stream_id = ? ORDER BY created_at, key_id");
        let rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .fetch_all(&mut *tx)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn publishing_key(
        &self,
        stream: &StreamId,
        key: &KeyId,
    ) -> Result<Option<PublishingKey>> {
        let row = sqlx::query(
            "SELECT k.public_key, k.revoked_at, s.frequency, s.value_type, s.currency, s.time_zone, s.disabled \
             FROM stream_keys k JOIN streams s ON s.id = k.stream_id WHERE k.stream_id = ? AND k.key_id = ?",
        )
        .bind(stream.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PublishingKey {
            public_key: public_key_bytes(row.get("public_key"))?,
            revoked_at: opt_micros(row.get("revoked_at"))?,
            frequency: parse_frequency(row.get("frequency"))?,
            value_type: value_type_from_row(&row)?,
            time_zone: row.get("time_zone"),
            disabled: row.get("disabled"),
        }))
    }

    async fn commit_batches(
        &self,
        batches: &[PreparedBatch],
        now: Timestamp,
    ) -> Result<Vec<Result<PublishOutcome, CommitRefusal>>> {
        let mut tx = self.write().await?;
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            results.push(points::commit_one(&mut tx, batch, now).await?);
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn prune_batches(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM batches WHERE accepted_at < ?")
            .bind(to_micros(before))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    async fn list_points(
        &self,
        stream: &StreamId,
        from: Option<&str>,
        to: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        points::list_points(&self.pool, stream, from, to, limit).await
    }
    async fn latest_point(&self, stream: &StreamId) -> Result<Option<PointRecord>> {
        points::latest_point(&self.pool, stream).await
    }
    async fn points_updated_after(
        &self,
        stream: &StreamId,
        after: (Timestamp, Option<&str>),
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        points::points_updated_after(&self.pool, stream, after, limit).await
    }
    async fn list_revisions(&self, stream: &StreamId, period: &str) -> Result<Vec<RevisionRecord>> {
        points::list_revisions(&self.pool, stream, period).await
    }
}

async fn insert_key(
    tx: &mut Transaction<'_, Sqlite>,
    stream: &StreamId,
    key: &NewKey,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO stream_keys (stream_id, key_id, public_key, origin, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(stream.as_str())
    .bind(key.key_id.as_str())
    .bind(&key.public_key[..])
    .bind(key.origin.as_str())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database made before the `runner` role keeps its users' tokens, team
    /// memberships and grants when the users table is rebuilt.
    #[tokio::test]
    async fn rebuilding_the_users_table_keeps_the_rows_that_reference_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let before_runner_role = sqlx::migrate::Migrator {
            migrations: Cow::Owned(MIGRATOR.migrations[..5].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let mut old = sqlx::ConnectOptions::connect(&options).await.unwrap();
        before_runner_role.run(&mut old).await.unwrap();
        for statement in [
            "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'Acme', 0)",
            "INSERT INTO users (id, org_id, name, role, created_at) VALUES ('usr_1', 'org_1', 'ana', 'member', 0)",
            "INSERT INTO tokens (id, user_id, name, hash, created_at) VALUES ('tok_1', 'usr_1', 'cli', x'00', 0)",
        ] {
            sqlx::query(statement).execute(&mut old).await.unwrap();
        }
        sqlx::Connection::close(old).await.unwrap();

        let store = SqliteStore::open(&url).await.unwrap();
        let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tokens, 1, "the token survived the rebuild");
        sqlx::query("UPDATE users SET role = 'runner' WHERE id = 'usr_1'")
            .execute(store.pool())
            .await
            .expect("the new role is allowed");
        let deleted = sqlx::query("DELETE FROM users WHERE id = 'usr_1'")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(deleted.rows_affected(), 1);
        let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(
            tokens, 0,
            "foreign keys are on again: deleting a user cascades"
        );
    }

    /// A database made by the schema before the health probe and the change index
    /// (level 6) keeps its points, and the new migration makes them readable in the
    /// order they changed and the database writable by the probe.
    #[tokio::test]
    async fn a_database_of_the_previous_schema_migrates_and_keeps_its_points() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/level6.db", dir.path().display());
        let level_6 = sqlx::migrate::Migrator {
            migrations: Cow::Owned(MIGRATOR.migrations[..6].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let mut old = sqlx::ConnectOptions::connect(&options).await.unwrap();
        level_6.run(&mut old).await.unwrap();
        for statement in [
            "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'Acme', 0)",
            "INSERT INTO streams (id, org_id, name, frequency, value_type, time_zone, created_by, created_at, updated_at) \
             VALUES ('str_abcdefghijklmnop', 'org_1', 'wau', 'daily', 'number', 'UTC', 'usr_1', 0, 0)",
            "INSERT INTO points (stream_id, period, value, batch_id, key_id, updated_at) \
             VALUES ('str_abcdefghijklmnop', '2026-11-01', '12.50', 'b1', 'key_1', 5000000), \
                    ('str_abcdefghijklmnop', '2026-10-31', '7', 'b0', 'key_1', 1000000)",
        ] {
            sqlx::query(statement).execute(&mut old).await.unwrap();
        }
        sqlx::Connection::close(old).await.unwrap();

        let store = SqliteStore::open(&url).await.unwrap();
        let stream = StreamId::parse("str_abcdefghijklmnop").unwrap();
        let changed = store
            .points_updated_after(&stream, (Timestamp::UNIX_EPOCH, None), 10)
            .await
            .unwrap();
        let periods: Vec<&str> = changed.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(
            periods,
            ["2026-10-31", "2026-11-01"],
            "in the order they changed"
        );
        assert_eq!(changed[1].value, "12.50");
        store
            .probe_write(Timestamp::now())
            .await
            .expect("the probe table exists");
    }
}
