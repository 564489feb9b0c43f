//! The PostgreSQL store: for deployments that outgrow one machine, with several `serve`
//! processes in front of one database. Migrations in `migrations/postgres` run at open
//! (unless the caller asks not to). The schema mirrors SQLite's table for table; points
//! and revisions are partitioned by hash of their stream.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::shared::behind;
use super::{Result, Store, StoreError, WriteHealth, to_micros};

mod access;
mod points;
mod runner;
mod streams;

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
}

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
        Ok(Self {
            pool,
            health: Arc::new(WriteHealth::default()),
        })
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

    async fn write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// The pool, for tests and tools that read the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
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
