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

use super::{Result, Store, WriteHealth, to_micros};

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
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            max_connections: 16,
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
        if options.migrate {
            MIGRATOR.run(&pool).await?;
        }
        Ok(Self {
            pool,
            health: Arc::new(WriteHealth::default()),
        })
    }

    /// Applies pending migrations on `url` and says how many ran.
    pub async fn migrate(connect: PgConnectOptions) -> Result<usize> {
        let store = Self::connect(
            connect,
            &PostgresOptions {
                migrate: false,
                max_connections: 1,
            },
        )
        .await?;
        let applied: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
        )
        .fetch_one(&store.pool)
        .await?;
        let before: i64 = if applied > 0 {
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&store.pool)
                .await?
        } else {
            0
        };
        MIGRATOR.run(&store.pool).await?;
        Ok(MIGRATOR.migrations.len().saturating_sub(before as usize))
    }

    #[allow(dead_code)] // used by the ported parts
    async fn write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// The pool, for tests and tools that read the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
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
