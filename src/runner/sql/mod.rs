//! The `sql` source: one read-only query against PostgreSQL, MySQL/MariaDB or SQLite,
//! its rows mapped by column name to JSON objects and handed to the runner in pages.
//!
//! The database is protected by the database itself, not by inspecting the query:
//! - PostgreSQL runs it in `BEGIN READ ONLY` with `SET LOCAL statement_timeout`;
//!   MySQL/MariaDB with the session's transactions read-only (so a statement that
//!   commits implicitly, such as `CREATE TABLE`, still cannot write) and
//!   `max_statement_time` (MariaDB) or `max_execution_time` (MySQL); SQLite opens the
//!   file read-only and interrupts the statement at the deadline.
//! - `{{cursor}}`, `{{period.start}}`, `{{period.end}}` and `{{now}}` are bound
//!   parameters (text; cast in SQL where needed), never pasted into the query.
//! - A query cancelled at its `statement_timeout` is a permanent error: running a query
//!   that is too slow again only loads the database more. Connection and network
//!   failures are transient and retried; every refusal of the database is permanent.
//!
//! The whole result is read inside [`open`], so the read transaction and the connection
//! are closed before publishing starts (a KPI query usually aggregates to a few rows).
//!
//! The password is set through the driver's connect options, never written into a URL,
//! and every message is written here (a driver's own messages may quote a URL), so no
//! error or `Debug` output holds it.
//!
//! This file holds what the dialects share: the target and its errors, the query run
//! with retries, and the plan that maps rows to JSON by column name; `postgres`,
//! `mysql` and `sqlite` each connect, make the session read-only, set the timeout
//! and decode their column types.

#[cfg(test)]
mod conformance;
mod mysql;
mod postgres;
mod sqlite;
#[cfg(test)]
mod test_db;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Number, Value};
use sqlx::error::DatabaseError;
use sqlx::mysql::MySqlDatabaseError;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::error::DecodeError;
use super::local::ConfigError;
use super::retry::retrying;
use super::secret;
use super::source::{Pages, StoredRecord};
use super::template::{BoundQuery, Placeholder, TemplateContext, bind_sql};
use super::{FetchError, Record};
use crate::connector::{CONNECTIONS_FILE, Connection, RetryPolicy, SqlSource};

/// Longest wait for a connection to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL and MySQL cancel the query themselves; the client gives up this much later
/// in case the server never answers.
const SERVER_TIMEOUT_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for a polite goodbye to the server once the rows are read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the source for one run on `database` ([`Database::resolve`]): connects, runs
/// the query, and yields its rows as pages. Transient failures (connecting, a broken
/// connection, a busy database) are retried following `retry`; a query the database
/// refuses or cancels at `statement_timeout` is not.
pub async fn open(
    database: &Database,
    source: &SqlSource,
    ctx: &TemplateContext,
    retry: &RetryPolicy,
) -> Result<Pages, FetchError> {
    let query = bind_sql(&source.query, ctx, database.dialect.placeholder())?;
    let timeout = source.statement_timeout.0;
    let what = format!("query on {}", database.what);
    let started = Instant::now();
    let rows = retrying(retry, &what, || database.fetch_all(&query, timeout)).await?;
    tracing::debug!(
        database = %database.what,
        rows = rows.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "SQL query done"
    );
    Ok(Pages::new(rows))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    fn of(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(Self::MySql)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }

    fn placeholder(self) -> Placeholder {
        match self {
            Self::Postgres => Placeholder::Numbered,
            Self::MySql | Self::Sqlite => Placeholder::Question,
        }
    }
}

/// The database one source reads: its URL (never holding a password), the password,
/// and a description safe to print.
#[derive(Debug)]
pub struct Database {
    dialect: Dialect,
    url: String,
    password: Option<SecretString>,
    /// "PostgreSQL at db.internal:5432/billing", "the SQLite database data/kpi.db".
    what: String,
}

impl Database {
    /// The database `source` reads, its password read from this machine. `connection`
    /// is the `connections.toml` entry the source names (ignored when the source gives
    /// its own `url`; `None` also when the file no longer has it).
    pub fn resolve(
        source: &SqlSource,
        connection: Option<&Connection>,
    ) -> Result<Self, ConfigError> {
        let (url, password) = match (&source.connection, connection) {
            (None, _) => {
                let url = source.url.as_deref().ok_or_else(|| {
                    ConfigError::Definition(
                        "the SQL source has neither `url` nor `connection`".into(),
                    )
                })?;
                let password = secret::load(
                    "source.password",
                    source.password_env.as_deref(),
                    source.password_file.as_deref(),
                )?;
                (url, password)
            }
            (
                Some(name),
                Some(Connection::Sql {
                    url,
                    password_env,
                    password_file,
                }),
            ) => {
                let field = format!("{name}.password in {CONNECTIONS_FILE}");
                let password =
                    secret::load(&field, password_env.as_deref(), password_file.as_deref())?;
                (url.as_str(), password)
            }
            (Some(name), other) => {
                return Err(ConfigError::unusable_connection(name, other, "sql"));
            }
        };
        let dialect = Dialect::of(url).ok_or_else(|| {
            ConfigError::Definition(
                "the database URL is not a postgres://, mysql://, mariadb:// or sqlite:// URL"
                    .into(),
            )
        })?;
        if userinfo(url).is_some_and(|user| user.contains(':')) {
            return Err(ConfigError::Definition(
                "the database URL holds a password inline; take it out and use `password_env` or `password_file`".into(),
            ));
        }
        Ok(Self {
            dialect,
            url: url.to_owned(),
            password,
            what: describe(dialect, url),
        })
    }

    /// One attempt: connect, run the query, read every row, disconnect.
    async fn fetch_all(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
        // Boxed as `Send` here, with this call's lifetimes: left to inference, the
        // drivers' executor bounds make the compiler ask for `Send` over every lifetime
        // ("implementation of `Send` is not general enough"). The same bounds are why
        // the dialects run their setup statements with `sqlx::Executor::execute`.
        type Fetch<'a> = std::pin::Pin<
            Box<dyn Future<Output = Result<Vec<StoredRecord>, FetchError>> + Send + 'a>,
        >;
        let fetch: Fetch<'_> = match self.dialect {
            Dialect::Postgres => Box::pin(self.fetch_postgres(query, timeout)),
            Dialect::MySql => Box::pin(self.fetch_mysql(query, timeout)),
            Dialect::Sqlite => Box::pin(self.fetch_sqlite(query, timeout)),
        };
        let result = fetch.await;
        result.map_err(|e| self.scrub(e))
    }

    async fn connect<C>(
        &self,
        connecting: impl Future<Output = Result<C, sqlx::Error>>,
        timeout: Duration,
    ) -> Result<C, FetchError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(result) => result.map_err(|e| self.error(Stage::Connect, e, timeout)),
            Err(_) => Err(FetchError::transient(format!(
                "{} did not accept a connection within {}",
                self.what,
                friendly(CONNECT_TIMEOUT)
            ))),
        }
    }

    /// Closes `conn` after a query that had the client's backstop to the server's own
    /// statement timeout.
    async fn finish<C: sqlx::Connection>(
        &self,
        result: Result<Result<Vec<StoredRecord>, FetchError>, tokio::time::error::Elapsed>,
        conn: C,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
        match result {
            Ok(result) => {
                // Closing ends the read-only transaction; there is nothing to commit.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
                result
            }
            // Dropping the connection closes its socket; the server's own timeout ends
            // the query.
            Err(_) => Err(self.cancelled(timeout)),
        }
    }

    /// Reads every row, checking the columns' types on the first.
    async fn collect<R: Row, K>(
        &self,
        mut rows: BoxStream<'_, Result<R, sqlx::Error>>,
        timeout: Duration,
        kind_of: fn(&str) -> Option<K>,
        decode: fn(&R, usize, &K) -> Result<Value, DecodeError>,
    ) -> Result<Vec<StoredRecord>, FetchError>
    where
        usize: sqlx::ColumnIndex<R>,
    {
        let query_error = |e| self.error(Stage::Query, e, timeout);
        let Some(first) = rows.try_next().await.map_err(query_error)? else {
            return Ok(Vec::new());
        };
        let plan = plan(&first, kind_of)?;
        let mut records = vec![StoredRecord::new(&record(&first, &plan, decode)?)];
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            records.push(StoredRecord::new(&record(&row, &plan, decode)?));
        }
        Ok(records)
    }

    fn cancelled(&self, timeout: Duration) -> FetchError {
        FetchError::permanent(format!(
            "the query on {} was cancelled after {} (its statement_timeout); it is not retried, since running a slow query again only loads the database more",
            self.what,
            friendly(timeout)
        ))
    }

    /// Turns a driver error into a message written here, transient or permanent.
    fn error(&self, stage: Stage, error: sqlx::Error, timeout: Duration) -> FetchError {
        let what = &self.what;
        match error {
            sqlx::Error::Database(db) => self.database_error(stage, db.as_ref(), timeout),
            sqlx::Error::Io(e) => FetchError::transient(match stage {
                Stage::Connect => format!("cannot connect to {what}: {e}"),
                Stage::Query => format!("the connection to {what} broke during the query: {e}"),
            }),
            sqlx::Error::Tls(e) => {
                FetchError::transient(format!("the TLS handshake with {what} failed: {e}"))
            }
            sqlx::Error::WorkerCrashed => {
                FetchError::transient(format!("the connection to {what} stopped unexpectedly"))
            }
            sqlx::Error::Configuration(e) => {
                FetchError::permanent(format!("the URL of {what} is not valid: {e}"))
            }
            sqlx::Error::ColumnDecode { index, source } => FetchError::permanent(format!(
                "column {index} of the result from {what} cannot be read: {source}"
            )),
            other => FetchError::permanent(format!("{what} failed: {other}")),
        }
    }

    fn database_error(
        &self,
        stage: Stage,
        db: &dyn DatabaseError,
        timeout: Duration,
    ) -> FetchError {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let (timed_out, transient, reference) = match self.dialect {
            Dialect::Postgres => (
                code == "57014",
                code.starts_with("08")
                    || ["53300", "57P01", "57P02", "57P03", "40001", "40P01"]
                        .contains(&code.as_str()),
                format!(" (SQLSTATE {code})"),
            ),
            Dialect::MySql => {
                let number = db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map_or(0, MySqlDatabaseError::number);
                (
                    // MariaDB's max_statement_time, MySQL's max_execution_time.
                    number == 1969 || number == 3024,
                    [1040, 1053, 1205, 1213, 1927].contains(&number),
                    format!(" (error {number})"),
                )
            }
            Dialect::Sqlite => {
                // The extended result code; its low byte is the primary one.
                let primary = code.parse::<i32>().unwrap_or(0) & 0xff;
                (primary == 9, primary == 5 || primary == 6, String::new())
            }
        };
        if timed_out {
            return self.cancelled(timeout);
        }
        let message = match (stage, self.dialect) {
            (Stage::Connect, Dialect::Sqlite) => {
                format!("cannot open {}: {}", self.what, db.message())
            }
            (Stage::Connect, _) => format!(
                "{} refused the connection: {}{reference}",
                self.what,
                db.message()
            ),
            (Stage::Query, _) => format!(
                "{} refused the query: {}{reference}",
                self.what,
                db.message()
            ),
        };
        if transient {
            FetchError::transient(message)
        } else {
            FetchError::permanent(message)
        }
    }

    /// Belt and braces: no message leaves with the password in it, whatever a driver
    /// wrote.
    fn scrub(&self, error: FetchError) -> FetchError {
        let Some(password) = self.password.as_ref().map(|p| p.expose_secret()) else {
            return error;
        };
        if password.is_empty() {
            return error;
        }
        match error {
            FetchError::Transient {
                message,
                retry_after,
            } => FetchError::Transient {
                message: message.replace(password, "[REDACTED]"),
                retry_after,
            },
            FetchError::Permanent { message } => {
                FetchError::permanent(message.replace(password, "[REDACTED]"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Connect,
    Query,
}

/// The user part of a URL's authority, if it has one.
fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map(|(user, _)| user)
}

/// "PostgreSQL at HOST:PORT/DB" or "the SQLite database PATH": no user, no parameters.
fn describe(dialect: Dialect, url: &str) -> String {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        None => url.trim_start_matches("sqlite:"),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let name = match dialect {
        Dialect::Postgres => "PostgreSQL",
        Dialect::MySql => "MySQL/MariaDB",
        Dialect::Sqlite => return format!("the SQLite database {rest}"),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{name} at {host}/{path}")
}

/// `1s`, `500ms`, `1m 30s`.
fn friendly(duration: Duration) -> String {
    match jiff::SignedDuration::try_from(duration) {
        Ok(d) => format!("{d:#}"),
        Err(_) => format!("{duration:?}"),
    }
}

fn bind<'q, DB>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    params: &[Option<String>],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for param in params {
        query = query.bind(param.clone());
    }
    query
}

// Rows to JSON ------------------------------------------------------------------------

/// Column names and how each column's values become JSON.
type Plan<K> = Vec<(String, K)>;

fn plan<R: Row, K>(row: &R, kind_of: fn(&str) -> Option<K>) -> Result<Plan<K>, FetchError> {
    let mut plan: Plan<K> = Vec::with_capacity(row.columns().len());
    for column in row.columns() {
        let name = column.name();
        let type_name = column.type_info().name();
        if plan.iter().any(|(seen, _)| seen == name) {
            return Err(FetchError::permanent(format!(
                "the query returns two columns named {name}; give one of them another name with AS"
            )));
        }
        let kind = kind_of(type_name).ok_or_else(|| {
            FetchError::permanent(format!(
                "column {name} has the type {type_name}, which kpistream does not map to JSON; cast it in the query (to text, a number or a timestamp)"
            ))
        })?;
        plan.push((name.to_owned(), kind));
    }
    Ok(plan)
}

fn record<R: Row, K>(
    row: &R,
    plan: &Plan<K>,
    decode: fn(&R, usize, &K) -> Result<Value, DecodeError>,
) -> Result<Record, FetchError>
where
    usize: sqlx::ColumnIndex<R>,
{
    let mut object = Map::with_capacity(plan.len());
    for (index, (name, kind)) in plan.iter().enumerate() {
        let value = match row.try_get_raw(index) {
            Ok(raw) if raw.is_null() => Ok(Value::Null),
            Ok(_) => decode(row, index, kind),
            Err(e) => Err(text_of(e)),
        }
        .map_err(|reason| {
            FetchError::permanent(format!("column {name} cannot be read: {reason}"))
        })?;
        object.insert(name.clone(), value);
    }
    Ok(Value::Object(object))
}

fn number(text: &str) -> Result<Value, DecodeError> {
    Number::from_str(text)
        .map(Value::Number)
        .map_err(|_| DecodeError::NotANumber(text.to_owned()))
}

fn float(value: f64) -> Result<Value, DecodeError> {
    if !value.is_finite() {
        return Err(DecodeError::NotFinite(value.to_string()));
    }
    number(&value.to_string())
}

fn float32(value: f32) -> Result<Value, DecodeError> {
    // An f32's own shortest form: 1.1 stays 1.1, not 1.100000023841858.
    if !value.is_finite() {
        return Err(DecodeError::NotFinite(value.to_string()));
    }
    number(&value.to_string())
}

fn date(value: NaiveDate) -> Value {
    Value::String(value.format("%Y-%m-%d").to_string())
}

/// A timestamp without a zone: RFC 3339 without an offset.
fn local_timestamp(value: NaiveDateTime) -> Value {
    Value::String(value.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
}

fn utc_timestamp(value: DateTime<Utc>) -> Value {
    Value::String(value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn text_of(e: sqlx::Error) -> DecodeError {
    DecodeError::Driver(e.to_string())
}
