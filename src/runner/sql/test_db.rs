//! The databases the SQL tests read: SQLite (a temporary file), PostgreSQL and
//! MariaDB/MySQL (`KPISTREAM_TEST_POSTGRES_URL`, `KPISTREAM_TEST_MYSQL_URL` and
//! `KPISTREAM_TEST_DB_PASSWORD`, which scripts/test.sh exports after
//! scripts/services.sh started them). Without them those tests skip, saying so,
//! except under `CI=true`, where they fail.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use super::{Database, Dialect, open};
use crate::connector::{Duration as D, RetryPolicy, SqlSource};
use crate::runner::source::Pages;
use crate::runner::template::TemplateContext;
use crate::runner::{FetchError, Record, Source as _};

const PASSWORD_ENV: &str = "KPISTREAM_TEST_DB_PASSWORD";

/// A database to read, and to write to through a connection of its own.
pub(super) struct Db {
    pub(super) dialect: Dialect,
    pub(super) url: String,
    password: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn service(dialect: Dialect, var: &str) -> Option<Db> {
    match (std::env::var(var), std::env::var(PASSWORD_ENV)) {
        (Ok(url), Ok(password)) => Some(Db {
            dialect,
            url,
            password: Some(password),
            _dir: None,
        }),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{var} and {PASSWORD_ENV} must be set under CI=true: scripts/test.sh exports them once scripts/services.sh has started the database"
        ),
        _ => {
            eprintln!(
                "skipped: {var} or {PASSWORD_ENV} is not set (run scripts/services.sh as root and source target/test-services.env)"
            );
            None
        }
    }
}

impl Db {
    pub(super) fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        // An empty file is an empty SQLite database.
        std::fs::File::create(&path).unwrap();
        let url = format!("sqlite://{}", path.display());
        Db {
            dialect: Dialect::Sqlite,
            url,
            password: None,
            _dir: Some(dir),
        }
    }

    /// The test PostgreSQL, or `None` (the test is skipped) when it is not configured.
    pub(super) fn postgres() -> Option<Db> {
        service(Dialect::Postgres, "KPISTREAM_TEST_POSTGRES_URL")
    }

    /// The test MariaDB/MySQL, or `None` (the test is skipped) when it is not configured.
    pub(super) fn mysql() -> Option<Db> {
        service(Dialect::MySql, "KPISTREAM_TEST_MYSQL_URL")
    }

    /// A table name no other test uses.
    pub(super) fn table(&self, label: &str) -> String {
        format!("kpi_{label}_{:08x}", rand::random::<u32>())
    }

    /// Runs `statements` on a writable connection (the source's is read-only).
    pub(super) async fn exec(&self, statements: &[String]) {
        let password = self.password.clone().unwrap_or_default();
        match self.dialect {
            Dialect::Postgres => {
                let options = PgConnectOptions::from_str(&self.url).unwrap();
                exec_with(options.password(&password), statements).await;
            }
            Dialect::MySql => {
                let options = MySqlConnectOptions::from_str(&self.url).unwrap();
                exec_with(options.password(&password), statements).await;
            }
            Dialect::Sqlite => {
                let options = SqliteConnectOptions::from_str(&self.url).unwrap();
                exec_with(options.create_if_missing(true), statements).await;
            }
        }
    }

    /// A source running `query` on this database, with a timeout of 10 s.
    pub(super) fn source(&self, query: &str) -> SqlSource {
        SqlSource {
            connection: None,
            url: Some(self.url.clone()),
            password_env: self.password.as_ref().map(|_| PASSWORD_ENV.to_owned()),
            password_file: None,
            query: query.to_owned(),
            statement_timeout: D::secs(10),
        }
    }

    /// Every row `query` returns with the cursor `cursor`.
    pub(super) async fn query(
        &self,
        query: &str,
        cursor: Option<&str>,
    ) -> Result<Vec<Record>, FetchError> {
        read_all(&self.source(query), cursor).await
    }
}

async fn exec_with<O>(options: O, statements: &[String])
where
    O: ConnectOptions,
    O::Connection: Sized,
    for<'c> &'c mut O::Connection: Executor<'c, Database = <O::Connection as Connection>::Database>,
{
    let mut conn = options.connect().await.unwrap();
    for s in statements {
        sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
    }
}

pub(super) fn ctx(cursor: Option<&str>) -> TemplateContext {
    TemplateContext {
        cursor: cursor.map(str::to_owned),
        period_start: "2026-11-01T00:00:00Z".parse().unwrap(),
        period_end: "2026-12-01T00:00:00Z".parse().unwrap(),
        now: "2026-11-23T06:00:00Z".parse().unwrap(),
    }
}

pub(super) fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: D(Duration::from_millis(10)),
        max_backoff: D(Duration::from_millis(20)),
    }
}

/// Opens `source` on the database its own `url` names, as a run does.
pub(super) async fn open_alone(
    source: &SqlSource,
    cursor: Option<&str>,
) -> Result<Pages, FetchError> {
    let database =
        Database::resolve(source, None).map_err(|e| FetchError::permanent(e.to_string()))?;
    open(&database, source, &ctx(cursor), &policy()).await
}

/// Every row of one run of `source`, pages concatenated.
pub(super) async fn read_all(
    source: &SqlSource,
    cursor: Option<&str>,
) -> Result<Vec<Record>, FetchError> {
    let mut pages = open_alone(source, cursor).await?;
    let mut rows = Vec::new();
    while let Some(page) = pages.next_page().await? {
        rows.extend(page);
    }
    Ok(rows)
}

pub(super) fn json(rows: &[Record]) -> String {
    serde_json::to_string(rows).unwrap()
}
