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
use sqlx::{Sqlite, Transaction};

use super::shared::{behind, opt_micros, parse_frequency, stream_not_found, unique};
use super::{Result, Store, StoreError, WriteHealth, to_micros};

mod access;
mod points;
mod runner;
mod streams;
mod writer;

super::notify::notify_store!(SqliteStore, sqlx::sqlite::SqliteRow);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Reads and writes go through two pools: a connection opened while the file could only
/// be read (see `open`) then serves reads only, where it does no harm, and never meets a
/// write it would fail.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    /// The publish path's writer thread (see `writer`).
    points: writer::GroupWriter,
    health: Arc<WriteHealth>,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if missing) and migrates the database.
    /// A folder it creates is private to the server's user (0700), and the database
    /// file is made 0600 (SQLite gives its WAL and shared-memory files the same mode):
    /// it holds token hashes and every KPI value.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, true).await
    }

    /// Applies the migrations the database at `url` lacks: how many ran, and how many
    /// the schema has.
    pub async fn migrate(url: &str) -> Result<(usize, usize)> {
        let before = match database_path(url) {
            Some(path) if path.exists() => {
                let options = SqliteConnectOptions::from_str(url)?.read_only(true);
                let mut conn = sqlx::ConnectOptions::connect(&options).await?;
                let applied = applied_migrations(&mut conn).await?;
                sqlx::Connection::close(conn).await?;
                applied
            }
            _ => 0,
        };
        Self::open_with(url, true).await?;
        let all = MIGRATOR.migrations.len();
        Ok((all.saturating_sub(before), all))
    }

    /// Opens the database; with `migrate` false, one whose schema is behind this
    /// version's is refused rather than brought forward.
    pub async fn open_with(url: &str, migrate: bool) -> Result<Self> {
        // The publish path's writer opens the file on a connection of its own, so the
        // data must live in a file, not in one connection's memory.
        let path = database_path(url)
            .ok_or_else(|| StoreError::UnsupportedUrl("an in-memory SQLite database".into()))?;
        prepare_database_file(path)?;
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
        if migrate {
            MIGRATOR.run(&mut migrating).await?;
        } else {
            let applied = applied_migrations(&mut migrating).await?;
            behind(applied, MIGRATOR.migrations.len(), url)?;
        }
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
        let points = writer::GroupWriter::start(path.to_owned(), health.clone())
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            pool,
            writer,
            points,
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
}

/// How many migrations the database has had (0 for a new one).
async fn applied_migrations(conn: &mut sqlx::SqliteConnection) -> Result<usize> {
    let table: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if table == 0 {
        return Ok(0);
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await?;
    Ok(applied as usize)
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
    let fail =
        |what: &str, e: std::io::Error| StoreError::Unavailable(format!("cannot {what}: {e}"));
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
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::ids::StreamId;
    use crate::store::PointStore;

    /// A run logged before runs recorded what started them reads as a scheduled run.
    #[tokio::test]
    async fn runs_logged_before_triggers_were_recorded_read_as_scheduled() {
        use crate::store::RunnerStore;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        // Level 9: before 0010_run_trigger.
        let mut old = database_at_level(&url, 9).await;
        for statement in [
            "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'Acme', 0)",
            "INSERT INTO connectors (org_id, name, updated_at) VALUES ('org_1', 'crm', 0)",
            "INSERT INTO connector_runs (org_id, connector, slot, runner_id, started_at, \
             ended_at, records_pulled, points_published, points_rejected, error, interrupted) \
             VALUES ('org_1', 'crm', 0, 'r1', 1, 2, 3, 3, 0, NULL, 0)",
        ] {
            sqlx::query(statement).execute(&mut old).await.unwrap();
        }
        sqlx::Connection::close(old).await.unwrap();

        let store = SqliteStore::open(&url).await.unwrap();
        let org = crate::ids::OrgId::parse("org_1").unwrap();
        let crm = crate::runner_state::ConnectorName::parse("crm").unwrap();
        let runs = store.list_runs(&org, &crm, 10, None).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].manual, runs[0].backfill.as_deref()), (false, None));
        assert_eq!(runs[0].records_pulled, 3, "the run kept its counts");
    }

    /// A database made before the `runner` role keeps its users' tokens, team
    /// memberships and grants when the users table is rebuilt.
    #[tokio::test]
    async fn rebuilding_the_users_table_keeps_the_rows_that_reference_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        // Level 5: before the runner role.
        let mut old = database_at_level(&url, 5).await;
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

    /// A new database at `url` migrated to schema level `level` only, as an older
    /// kpistream left it.
    async fn database_at_level(url: &str, level: usize) -> sqlx::SqliteConnection {
        let migrator = sqlx::migrate::Migrator {
            migrations: Cow::Owned(MIGRATOR.migrations[..level].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        let options = SqliteConnectOptions::from_str(url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
        migrator.run(&mut conn).await.unwrap();
        conn
    }

    /// A database made by the schema before the health probe and the change index
    /// (level 6) keeps its points, and the new migration makes them readable in the
    /// order they changed and the database writable by the probe.
    #[tokio::test]
    async fn a_database_of_the_previous_schema_migrates_and_keeps_its_points() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/level6.db", dir.path().display());
        let mut old = database_at_level(&url, 6).await;
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

    /// A database of schema level 7 (streams named by text id in points, revisions and
    /// batch ids) keeps all three through the move to integer stream keys: its points
    /// and revisions read back, a batch id it remembered is still answered as a replay,
    /// and a stream created afterwards gets its own key.
    #[tokio::test]
    async fn a_level_7_database_moves_to_integer_stream_keys_with_its_data() {
        use crate::batch::{PreparedBatch, ValidPoint};
        use crate::ids::{KeyId, OrgId, UserId};
        use crate::store::{NewKey, StreamStore};
        use crate::stream::{KeyOrigin, StreamDefinition};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/level7.db", dir.path().display());
        let mut old = database_at_level(&url, 7).await;
        let outcome = r#"{"batch_id":"b1","accepted":2,"revised":1,"rejected":[],"committed_at":"1970-01-01T00:00:05Z"}"#;
        for statement in [
            "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'Acme', 0)".to_owned(),
            "INSERT INTO users (id, org_id, name, role, created_at) VALUES ('usr_1', 'org_1', 'ada', 'admin', 0)".to_owned(),
            "INSERT INTO streams (id, org_id, name, frequency, value_type, time_zone, created_by, created_at, updated_at, point_count) \
             VALUES ('str_abcdefghijklmnop', 'org_1', 'wau', 'daily', 'number', 'UTC', 'usr_1', 0, 0, 2), \
                    ('str_bcdefghijklmnopq', 'org_1', 'mrr', 'daily', 'number', 'UTC', 'usr_1', 0, 0, 1)".to_owned(),
            "INSERT INTO stream_keys (stream_id, key_id, public_key, origin, created_at) \
             VALUES ('str_abcdefghijklmnop', 'key_1', x'01', 'generated', 0)".to_owned(),
            "INSERT INTO points (stream_id, period, value, batch_id, key_id, updated_at, revision_count) \
             VALUES ('str_abcdefghijklmnop', '2026-11-01', '12.50', 'b1', 'key_1', 5000000, 1), \
                    ('str_abcdefghijklmnop', '2026-10-31', '7', 'b1', 'key_1', 5000000, 0), \
                    ('str_bcdefghijklmnopq', '2026-10-31', '99', 'b9', 'key_9', 6000000, 0)".to_owned(),
            "INSERT INTO revisions (stream_id, period, old_value, new_value, batch_id, key_id, revised_at) \
             VALUES ('str_abcdefghijklmnop', '2026-11-01', '12.00', '12.50', 'b1', 'key_1', 5000000)".to_owned(),
            format!("INSERT INTO batches (stream_id, batch_id, key_id, accepted_at, outcome) \
             VALUES ('str_abcdefghijklmnop', 'b1', 'key_1', 5000000, '{outcome}')"),
        ] {
            sqlx::query(&statement).execute(&mut old).await.unwrap();
        }
        sqlx::Connection::close(old).await.unwrap();

        let store = SqliteStore::open(&url).await.unwrap();
        let wau = StreamId::parse("str_abcdefghijklmnop").unwrap();
        let mrr = StreamId::parse("str_bcdefghijklmnopq").unwrap();
        let points = store.list_points(&wau, None, None, 10).await.unwrap();
        let read: Vec<(&str, &str, u32)> = points
            .iter()
            .map(|p| (p.period.as_str(), p.value.as_str(), p.revision_count))
            .collect();
        assert_eq!(read, [("2026-10-31", "7", 0), ("2026-11-01", "12.50", 1)]);
        let other = store.list_points(&mrr, None, None, 10).await.unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].value, "99");
        let revisions = store.list_revisions(&wau, "2026-11-01").await.unwrap();
        assert_eq!(revisions.len(), 1);
        assert_eq!(
            (
                revisions[0].old_value.as_str(),
                revisions[0].new_value.as_str()
            ),
            ("12.00", "12.50")
        );

        let replay = PreparedBatch::new(
            wau.clone(),
            KeyId::parse("key_1").unwrap(),
            "b1".into(),
            crate::period::Frequency::Daily,
            vec![ValidPoint {
                period: "2026-11-02".into(),
                value: "1".into(),
                external_id: None,
            }],
            vec![],
        );
        let answer = store
            .commit_batches(Arc::new(vec![replay]), Timestamp::now())
            .await
            .unwrap();
        let outcome = answer[0].as_ref().expect("the batch id is remembered");
        assert!(
            outcome.replayed(),
            "a batch id of the old schema is a replay"
        );
        assert_eq!((outcome.accepted(), outcome.revised()), (2, 1));
        assert_eq!(
            store.list_points(&wau, None, None, 10).await.unwrap().len(),
            2
        );

        let definition = StreamDefinition {
            name: "new".into(),
            description: String::new(),
            category: None,
            frequency: crate::period::Frequency::Daily,
            value_type: crate::value::ValueType::Number,
            time_zone: "UTC".into(),
        };
        let fresh = StreamId::generate();
        let key = NewKey {
            key_id: KeyId::generate(),
            public_key: [3; 32],
            origin: KeyOrigin::Generated,
        };
        store
            .create_stream(
                &OrgId::parse("org_1").unwrap(),
                &UserId::parse("usr_1").unwrap(),
                &fresh,
                &definition,
                &key,
                &[],
                Timestamp::now(),
            )
            .await
            .expect("a stream created after the move gets a key of its own");
        let batch = PreparedBatch::new(
            fresh.clone(),
            key.key_id.clone(),
            "b1".into(),
            crate::period::Frequency::Daily,
            vec![ValidPoint {
                period: "2026-10-31".into(),
                value: "5".into(),
                external_id: None,
            }],
            vec![],
        );
        let answer = store
            .commit_batches(Arc::new(vec![batch]), Timestamp::now())
            .await
            .unwrap();
        assert!(!answer[0].as_ref().unwrap().replayed());
        assert_eq!(
            store.list_points(&fresh, None, None, 10).await.unwrap()[0].value,
            "5"
        );
        assert_eq!(
            store.list_points(&mrr, None, None, 10).await.unwrap()[0].value,
            "99"
        );
    }

    /// A database of schema level 8 loses the points' change index and keeps its
    /// points, which a resuming watch still reads in the order they changed.
    #[tokio::test]
    async fn a_level_8_database_drops_the_change_index_and_keeps_the_order_of_changes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/level8.db", dir.path().display());
        let mut old = database_at_level(&url, 8).await;
        for statement in [
            "INSERT INTO orgs (id, name, created_at) VALUES ('org_1', 'Acme', 0)",
            "INSERT INTO users (id, org_id, name, role, created_at) VALUES ('usr_1', 'org_1', 'ada', 'admin', 0)",
            "INSERT INTO streams (id, org_id, name, frequency, value_type, time_zone, created_by, created_at, updated_at, point_count, seq) \
             VALUES ('str_abcdefghijklmnop', 'org_1', 'wau', 'daily', 'number', 'UTC', 'usr_1', 0, 0, 3, 1)",
            "INSERT INTO points (stream, period, value, batch_id, key_id, updated_at) \
             VALUES (1, '2026-11-01', '1', 'b2', 'key_1', 9000000), \
                    (1, '2026-11-02', '2', 'b1', 'key_1', 5000000), \
                    (1, '2026-11-03', '3', 'b2', 'key_1', 9000000)",
        ] {
            sqlx::query(statement).execute(&mut old).await.unwrap();
        }
        let indexes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'points_by_change'",
        )
        .fetch_one(&mut old)
        .await
        .unwrap();
        assert_eq!(indexes, 1, "level 8 has the change index");
        sqlx::Connection::close(old).await.unwrap();

        let store = SqliteStore::open(&url).await.unwrap();
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'points_by_change'",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "the migration drops the change index");
        let wau = StreamId::parse("str_abcdefghijklmnop").unwrap();
        let changed = store
            .points_updated_after(&wau, (Timestamp::UNIX_EPOCH, None), 10)
            .await
            .unwrap();
        let periods: Vec<&str> = changed.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(periods, ["2026-11-02", "2026-11-01", "2026-11-03"]);
    }
}
