//! The PostgreSQL store: for deployments that outgrow one machine, with several `serve`
//! processes in front of one database. Migrations in `migrations/postgres` run at open
//! (unless the caller asks not to). The schema mirrors SQLite's table for table; points
//! and revisions are partitioned by hash of their stream.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::broadcast;

use super::shared::behind;
use super::{Change, Result, Store, StoreError, WriteHealth, to_micros};
use crate::ids::StreamId;

mod access;
mod points;
mod runner;
mod streams;

super::notify::notify_store!(PostgresStore, sqlx::postgres::PgRow);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a call waits for a pooled connection before it is answered `UNAVAILABLE`:
/// while the database is down, publishes fail fast instead of queueing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How to open a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Apply pending migrations at open (`serve --no-migrate` turns this off).
    pub migrate: bool,
    /// Most connections this process holds.
    pub max_connections: u32,
    /// Start even when `synchronous_commit` is `off`, with a warning.
    pub allow_async_commit: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            max_connections: 16,
            allow_async_commit: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    health: Arc<WriteHealth>,
    /// Changes other servers announce (see [`Change`]); the listening task holds a weak
    /// reference and ends with the store.
    changes: Arc<broadcast::Sender<Change>>,
    /// Tells this server's announcements from other servers'.
    origin: Arc<str>,
}

/// The channel servers sharing a database announce their changes on.
const CHANNEL: &str = "kpistream_changes";

/// Changes a slow subscriber may fall behind by before it is told it missed some.
const CHANGES_BACKLOG: usize = 1_024;

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &PostgresOptions::default()).await
    }

    pub async fn open_with(url: &str, options: &PostgresOptions) -> Result<Self> {
        Self::connect(PgConnectOptions::from_str(url)?, options).await
    }

    /// Connects with options built by the caller (a password kept out of the URL, a
    /// `search_path`).
    pub async fn connect(connect: PgConnectOptions, options: &PostgresOptions) -> Result<Self> {
        // The connection that hears other servers' changes is one of its own, outside
        // the pool the store's calls share.
        let listening = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect.clone());
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect)
            .await?;
        check_durability(&pool, options.allow_async_commit).await?;
        if options.migrate {
            MIGRATOR.run(&pool).await?;
        } else {
            let applied = applied_migrations(&pool).await?;
            behind(applied, MIGRATOR.migrations.len(), "postgres://…")?;
        }
        let (changes, _) = broadcast::channel(CHANGES_BACKLOG);
        let changes = Arc::new(changes);
        let origin: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        // Listening before the store is handed out: no change made after `connect`
        // returns goes unheard.
        let mut listener = PgListener::connect_with(&listening).await?;
        listener.listen(CHANNEL).await?;
        tokio::spawn(listen(
            listening,
            listener,
            origin.clone(),
            Arc::downgrade(&changes),
        ));
        Ok(Self {
            pool,
            health: Arc::new(WriteHealth::default()),
            changes,
            origin,
        })
    }

    /// Announces to the other servers that `stream`'s definition or keys changed, when
    /// `tx` commits.
    pub(super) async fn announce_stream(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        stream: &StreamId,
    ) -> Result<()> {
        notify(tx, &format!("s {} {stream}", self.origin)).await
    }

    /// Announces that points of these streams were committed at `at`, when `tx` commits.
    pub(super) async fn announce_commit(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        streams: &[&str],
        at: Timestamp,
    ) -> Result<()> {
        let payloads: Vec<String> = streams
            .iter()
            .map(|stream| format!("c {} {stream} {}", self.origin, to_micros(at)))
            .collect();
        sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Applies the migrations the database at `url` lacks: how many ran, and how many
    /// the schema has.
    pub async fn migrate(url: &str) -> Result<(usize, usize)> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(PgConnectOptions::from_str(url)?)
            .await?;
        let before = applied_migrations(&pool).await?;
        MIGRATOR.run(&pool).await?;
        let all = MIGRATOR.migrations.len();
        pool.close().await;
        Ok((all.saturating_sub(before), all))
    }

    /// A write transaction, `READ COMMITTED` whatever the role's or database's default:
    /// a statement after a row lock sees what the lock waited for.
    async fn write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?)
    }

    /// The pool, for tests and tools that read the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn notify(tx: &mut Transaction<'_, Postgres>, payload: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Hears the servers' announcements on `listener` until the store is dropped. While
/// its connection is lost it listens again every second, and once back it reports that
/// changes may have gone unheard.
async fn listen(
    pool: PgPool,
    mut listener: PgListener,
    origin: Arc<str>,
    changes: Weak<broadcast::Sender<Change>>,
) {
    loop {
        loop {
            let heard = listener.try_recv().await;
            let Some(sender) = changes.upgrade() else {
                return;
            };
            match heard {
                Ok(Some(notification)) => {
                    if let Some(change) = parse_change(notification.payload(), &origin) {
                        let _ = sender.send(change);
                    }
                }
                // The connection was lost; the next call reconnects.
                Ok(None) => {
                    let _ = sender.send(Change::Missed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection that hears other servers' changes");
                    drop(sender);
                    break;
                }
            }
        }
        // Listen again, on a new connection, retrying every second; then say that
        // changes may have gone unheard meanwhile.
        listener = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if changes.strong_count() == 0 || pool.is_closed() {
                return;
            }
            let attempt = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match attempt.await {
                Ok(listener) => break listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other servers' changes; retrying")
                }
            }
        };
        let Some(sender) = changes.upgrade() else {
            return;
        };
        let _ = sender.send(Change::Missed);
    }
}

/// An announcement (`s ORIGIN STREAM` or `c ORIGIN STREAM MICROS`); `None` for this
/// server's own stream changes and for anything unreadable.
fn parse_change(payload: &str, origin: &str) -> Option<Change> {
    let mut parts = payload.split(' ');
    let (kind, from, stream) = (parts.next()?, parts.next()?, parts.next()?);
    let stream = StreamId::parse(stream).ok()?;
    match kind {
        // This server forgot its own cached keys when it made the change.
        "s" if from == origin => None,
        "s" => Some(Change::Stream(stream)),
        // Every commit, this server's too: watchers get all of a stream's commits from
        // here, in the order the database committed them.
        "c" => {
            let at = Timestamp::from_microsecond(parts.next()?.parse().ok()?).ok()?;
            Some(Change::Committed { stream, at })
        }
        _ => None,
    }
}

/// Refuses a database that acknowledges commits before they are durable, unless allowed.
async fn check_durability(pool: &PgPool, allow_async_commit: bool) -> Result<()> {
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await?;
    if setting != "off" {
        return Ok(());
    }
    if allow_async_commit {
        tracing::warn!(
            "PostgreSQL's synchronous_commit is off: a publish acknowledged just before the database server crashes can be lost"
        );
        return Ok(());
    }
    Err(StoreError::Unavailable(
        "PostgreSQL's synchronous_commit is off, so a publish kpistream acknowledges could be lost in a crash of the database server: set it to on (ALTER DATABASE … SET synchronous_commit = on), or start with --allow-async-commit to accept that".into(),
    ))
}

/// How many migrations the database has had (0 for a new one).
async fn applied_migrations(pool: &PgPool) -> Result<usize> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if table.is_none() {
        return Ok(0);
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(applied as usize)
}

#[async_trait]
impl Store for PostgresStore {
    fn write_health(&self) -> Arc<WriteHealth> {
        self.health.clone()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    /// Groups of different streams lock different rows, so several commit at once: one
    /// writer per four pooled connections, at most four, leaving the rest to queries.
    fn writers(&self) -> usize {
        (self.pool.options().get_max_connections() / 4).clamp(1, 4) as usize
    }

    async fn probe_write(&self, now: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO health_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        )
        .bind(to_micros(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::store::contract::postgres_schema_store;

    /// The schema stays ready to be distributed by organisation (docs/scale-out.md):
    /// every table has `org_id` but `orgs` itself (distributed by `id`) and the
    /// coordinator's own two; every primary, unique and foreign key includes it but
    /// those of `orgs` and of the tables looked up without an organisation (`tokens`
    /// by hash, `stream_routes` by stream id), which would be reference tables. A new
    /// table or key that breaks this fails here.
    #[tokio::test]
    async fn every_table_and_key_names_its_organisation() {
        let Some((store, _schema)) = postgres_schema_store().await else {
            return;
        };
        let names = |rows: Vec<sqlx::postgres::PgRow>| -> Vec<String> {
            rows.iter().map(|row| row.get::<String, _>(0)).collect()
        };
        let without_column = sqlx::query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                               AND a.attname = 'org_id' AND NOT a.attisdropped) \
             ORDER BY 1",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            names(without_column),
            ["_sqlx_migrations", "health_probe", "orgs"],
            "tables without org_id"
        );
        // Keys, and unique indexes (some are on an expression, such as lower(name)).
        let keys_without = sqlx::query(
            "SELECT c.relname || '.' || con.conname FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND con.contype IN ('p', 'u', 'f') \
               AND NOT c.relispartition AND con.conparentid = 0 \
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                               AND a.attname = 'org_id' AND a.attnum = ANY (con.conkey)) \
             UNION ALL \
             SELECT c.relname || '.' || i.relname FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND x.indisunique AND NOT c.relispartition \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = x.indexrelid) \
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                               AND a.attname = 'org_id' AND a.attnum = ANY (x.indkey)) \
             ORDER BY 1",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            names(keys_without),
            [
                "_sqlx_migrations._sqlx_migrations_pkey",
                "health_probe.health_probe_pkey",
                "orgs.orgs_pkey",
                "stream_routes.stream_routes_pkey",
                "tokens.tokens_hash_key",
                "tokens.tokens_pkey",
            ],
            "keys and unique indexes without org_id"
        );
        let references_from_lookups = sqlx::query(
            "SELECT c.relname || '.' || con.conname FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND con.contype = 'f' \
               AND c.relname IN ('tokens', 'stream_routes')",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            names(references_from_lookups),
            Vec::<String>::new(),
            "a reference table cannot have a foreign key to a distributed one"
        );
    }
}
