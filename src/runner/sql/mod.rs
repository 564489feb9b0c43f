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
//! This file is longer than most: three dialects, and tests that run the same checks
//! against all three databases. Splitting it into `sql/{postgres,mysql,sqlite}.rs` is
//! the cut to make if it grows.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Number, Value};
use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column, ConnectOptions, Connection as _, Row, TypeInfo, ValueRef};

use super::retry::retrying;
use super::secret;
use super::template::{BoundQuery, Placeholder, TemplateContext, bind_sql};
use super::{FetchError, Record, Source};
use crate::connector::{CONNECTIONS_FILE, Connection, RetryPolicy, SqlSource};

/// Rows per page handed to the runner.
pub const PAGE_SIZE: usize = 1000;
/// Longest wait for a connection to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL and MySQL cancel the query themselves; the client gives up this much later
/// in case the server never answers.
const SERVER_TIMEOUT_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for a polite goodbye to the server once the rows are read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The rows of one run's query, handed out [`PAGE_SIZE`] at a time.
pub struct SqlPages {
    rows: std::vec::IntoIter<Record>,
}

impl fmt::Debug for SqlPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlPages")
            .field("rows_left", &self.rows.len())
            .finish()
    }
}

#[async_trait]
impl Source for SqlPages {
    async fn next_page(&mut self) -> Result<Option<Vec<Record>>, FetchError> {
        let page: Vec<Record> = self.rows.by_ref().take(PAGE_SIZE).collect();
        Ok((!page.is_empty()).then_some(page))
    }
}

/// Opens the source for one run: connects, runs the query, and yields its rows as pages.
///
/// `connection` is the `connections.toml` entry the source names (ignored when the
/// source gives its own `url`). Transient failures (connecting, a broken connection, a
/// busy database) are retried following `retry`; a query the database refuses or
/// cancels at `statement_timeout` is not.
pub async fn open(
    source: &SqlSource,
    connection: Option<&Connection>,
    ctx: &TemplateContext,
    retry: &RetryPolicy,
) -> Result<SqlPages, FetchError> {
    let target = Target::resolve(source, connection)?;
    let query = bind_sql(&source.query, ctx, target.dialect.placeholder())?;
    let timeout = source.statement_timeout.0;
    let what = format!("query on {}", target.what);
    let started = Instant::now();
    let rows = retrying(retry, &what, || target.fetch_all(&query, timeout)).await?;
    tracing::debug!(
        database = %target.what,
        rows = rows.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "SQL query done"
    );
    Ok(SqlPages {
        rows: rows.into_iter(),
    })
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
struct Target {
    dialect: Dialect,
    url: String,
    password: Option<SecretString>,
    /// "PostgreSQL at db.internal:5432/billing", "the SQLite database data/kpi.db".
    what: String,
}

impl Target {
    fn resolve(source: &SqlSource, connection: Option<&Connection>) -> Result<Self, FetchError> {
        let (url, password) = match (&source.connection, connection) {
            (None, _) => {
                let url = source.url.as_deref().ok_or_else(|| {
                    FetchError::permanent("the SQL source has neither `url` nor `connection`")
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
            (Some(name), Some(other)) => {
                return Err(FetchError::permanent(format!(
                    "the connection {name} in {CONNECTIONS_FILE} is a {} connection; a SQL source needs a sql one",
                    other.kind()
                )));
            }
            (Some(name), None) => {
                return Err(FetchError::permanent(format!(
                    "the connection {name} is not in {CONNECTIONS_FILE}"
                )));
            }
        };
        let dialect = Dialect::of(url).ok_or_else(|| {
            FetchError::permanent(
                "the database URL is not a postgres://, mysql://, mariadb:// or sqlite:// URL",
            )
        })?;
        if userinfo(url).is_some_and(|user| user.contains(':')) {
            return Err(FetchError::permanent(
                "the database URL holds a password inline; take it out and use `password_env` or `password_file`",
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
    ) -> Result<Vec<Record>, FetchError> {
        // Boxed as `Send` here, with this call's lifetimes: left to inference, the
        // drivers' executor bounds make the compiler ask for `Send` over every lifetime.
        type Fetch<'a> =
            std::pin::Pin<Box<dyn Future<Output = Result<Vec<Record>, FetchError>> + Send + 'a>>;
        let fetch: Fetch<'_> = match self.dialect {
            Dialect::Postgres => Box::pin(self.fetch_postgres(query, timeout)),
            Dialect::MySql => Box::pin(self.fetch_mysql(query, timeout)),
            Dialect::Sqlite => Box::pin(self.fetch_sqlite(query, timeout)),
        };
        let result = fetch.await;
        result.map_err(|e| self.scrub(e))
    }

    async fn fetch_postgres(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<Record>, FetchError> {
        let mut options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| self.error(Stage::Connect, e, timeout))?
            .application_name("kpistream runner");
        if let Some(password) = &self.password {
            options = options.password(password.expose_secret());
        }
        let mut conn: PgConnection = self.connect(options.connect(), timeout).await?;
        let run = self.run_postgres(&mut conn, query, timeout);
        let result = tokio::time::timeout(timeout + SERVER_TIMEOUT_GRACE, run).await;
        self.finish(result, conn, timeout).await
    }

    async fn fetch_mysql(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<Record>, FetchError> {
        let mut options = MySqlConnectOptions::from_str(&self.url)
            .map_err(|e| self.error(Stage::Connect, e, timeout))?;
        if let Some(password) = &self.password {
            options = options.password(password.expose_secret());
        }
        let mut conn: MySqlConnection = self.connect(options.connect(), timeout).await?;
        let run = self.run_mysql(&mut conn, query, timeout);
        let result = tokio::time::timeout(timeout + SERVER_TIMEOUT_GRACE, run).await;
        self.finish(result, conn, timeout).await
    }

    async fn run_postgres(
        &self,
        conn: &mut PgConnection,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<Record>, FetchError> {
        let ms = timeout.as_millis().max(1);
        // Read-only for the session too: a query that ends the transaction (COMMIT)
        // leaves the next one read-only as well.
        for setup in [
            "SET default_transaction_read_only = on".to_owned(),
            "BEGIN READ ONLY".to_owned(),
            format!("SET LOCAL statement_timeout = {ms}"),
        ] {
            sqlx::Executor::execute(&mut *conn, setup.as_str())
                .await
                .map_err(|e| self.error(Stage::Query, e, timeout))?;
        }
        let rows = bind(sqlx::query(&query.sql), &query.params).fetch(&mut *conn);
        self.collect(rows, timeout, pg_kind, pg_decode).await
    }

    async fn run_mysql(
        &self,
        conn: &mut MySqlConnection,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<Record>, FetchError> {
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.error(Stage::Query, e, timeout))?;
        let limit = if version.contains("MariaDB") {
            format!(
                "SET SESSION max_statement_time = {:.3}",
                timeout.as_secs_f64()
            )
        } else {
            format!(
                "SET SESSION max_execution_time = {}",
                timeout.as_millis().max(1)
            )
        };
        // The session's transactions are read-only, not only this one: DDL commits
        // implicitly and would otherwise run outside `START TRANSACTION READ ONLY`.
        for setup in [
            limit.as_str(),
            "SET SESSION TRANSACTION READ ONLY",
            "START TRANSACTION READ ONLY",
        ] {
            sqlx::Executor::execute(&mut *conn, setup)
                .await
                .map_err(|e| self.error(Stage::Query, e, timeout))?;
        }
        let rows = bind(sqlx::query(&query.sql), &query.params).fetch(&mut *conn);
        self.collect(rows, timeout, mysql_kind, mysql_decode).await
    }

    async fn fetch_sqlite(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<Record>, FetchError> {
        let options = SqliteConnectOptions::from_str(&self.url)
            .map_err(|e| self.error(Stage::Connect, e, timeout))?
            .read_only(true);
        let mut conn: SqliteConnection = self.connect(options.connect(), timeout).await?;
        // SQLite has no statement timeout: a progress handler interrupts the statement
        // at the deadline (it then fails with SQLITE_INTERRUPT).
        let deadline = Instant::now() + timeout;
        conn.lock_handle()
            .await
            .map_err(|e| self.error(Stage::Connect, e, timeout))?
            .set_progress_handler(1000, move || Instant::now() < deadline);
        let rows = bind(sqlx::query(&query.sql), &query.params).fetch(&mut conn);
        let read = self.collect(rows, timeout, sqlite_kind, sqlite_decode);
        let result = match tokio::time::timeout(timeout + SERVER_TIMEOUT_GRACE, read).await {
            Ok(result) => result,
            Err(_) => Err(self.cancelled(timeout)),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await;
        result
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
        result: Result<Result<Vec<Record>, FetchError>, tokio::time::error::Elapsed>,
        conn: C,
        timeout: Duration,
    ) -> Result<Vec<Record>, FetchError> {
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
        decode: fn(&R, usize, &K) -> Result<Value, String>,
    ) -> Result<Vec<Record>, FetchError>
    where
        usize: sqlx::ColumnIndex<R>,
    {
        let query_error = |e| self.error(Stage::Query, e, timeout);
        let Some(first) = rows.try_next().await.map_err(query_error)? else {
            return Ok(Vec::new());
        };
        let plan = plan(&first, kind_of)?;
        let mut records = vec![record(&first, &plan, decode)?];
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            records.push(record(&row, &plan, decode)?);
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
    decode: fn(&R, usize, &K) -> Result<Value, String>,
) -> Result<Record, FetchError>
where
    usize: sqlx::ColumnIndex<R>,
{
    let mut object = Map::with_capacity(plan.len());
    for (index, (name, kind)) in plan.iter().enumerate() {
        let value = match row.try_get_raw(index) {
            Ok(raw) if raw.is_null() => Ok(Value::Null),
            Ok(_) => decode(row, index, kind),
            Err(e) => Err(e.to_string()),
        }
        .map_err(|reason| {
            FetchError::permanent(format!("column {name} cannot be read: {reason}"))
        })?;
        object.insert(name.clone(), value);
    }
    Ok(Value::Object(object))
}

fn number(text: &str) -> Result<Value, String> {
    Number::from_str(text)
        .map(Value::Number)
        .map_err(|_| format!("{text:?} is not a number"))
}

fn float(value: f64) -> Result<Value, String> {
    if !value.is_finite() {
        return Err(format!("{value} has no JSON form"));
    }
    number(&value.to_string())
}

fn float32(value: f32) -> Result<Value, String> {
    // An f32's own shortest form: 1.1 stays 1.1, not 1.100000023841858.
    if !value.is_finite() {
        return Err(format!("{value} has no JSON form"));
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

fn text_of(e: sqlx::Error) -> String {
    e.to_string()
}

/// How a PostgreSQL column becomes JSON.
enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Date,
    Timestamp,
    Timestamptz,
}

fn pg_kind(type_name: &str) -> Option<PgKind> {
    Some(match type_name {
        "BOOL" => PgKind::Bool,
        "INT2" => PgKind::Int2,
        "INT4" => PgKind::Int4,
        "INT8" => PgKind::Int8,
        "FLOAT4" => PgKind::Float4,
        "FLOAT8" => PgKind::Float8,
        "NUMERIC" => PgKind::Numeric,
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" => PgKind::Text,
        "DATE" => PgKind::Date,
        "TIMESTAMP" => PgKind::Timestamp,
        "TIMESTAMPTZ" => PgKind::Timestamptz,
        _ => return None,
    })
}

fn pg_decode(row: &PgRow, i: usize, kind: &PgKind) -> Result<Value, String> {
    Ok(match kind {
        PgKind::Bool => Value::Bool(row.try_get(i).map_err(text_of)?),
        PgKind::Int2 => row.try_get::<i16, _>(i).map_err(text_of)?.into(),
        PgKind::Int4 => row.try_get::<i32, _>(i).map_err(text_of)?.into(),
        PgKind::Int8 => row.try_get::<i64, _>(i).map_err(text_of)?.into(),
        PgKind::Float4 => float32(row.try_get(i).map_err(text_of)?)?,
        PgKind::Float8 => float(row.try_get(i).map_err(text_of)?)?,
        PgKind::Numeric => {
            let decimal: rust_decimal::Decimal = row.try_get(i).map_err(|e| {
                format!("{e} (kpistream reads NUMERIC values of up to 28 significant digits)")
            })?;
            number(&decimal.to_string())?
        }
        PgKind::Text => Value::String(row.try_get(i).map_err(text_of)?),
        PgKind::Date => date(row.try_get(i).map_err(text_of)?),
        PgKind::Timestamp => local_timestamp(row.try_get(i).map_err(text_of)?),
        PgKind::Timestamptz => utc_timestamp(row.try_get(i).map_err(text_of)?),
    })
}

/// How a MySQL/MariaDB column becomes JSON.
enum MySqlKind {
    Null,
    Bool,
    Int,
    Unsigned,
    Float,
    Double,
    Decimal,
    Text,
    /// Binary strings (also what some `_bin` collations report): text if UTF-8.
    Bytes,
    Json,
    Date,
    Datetime,
    Timestamp,
}

fn mysql_kind(type_name: &str) -> Option<MySqlKind> {
    Some(match type_name {
        "NULL" => MySqlKind::Null,
        "BOOLEAN" => MySqlKind::Bool,
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => MySqlKind::Int,
        t if t.ends_with(" UNSIGNED") => MySqlKind::Unsigned,
        "FLOAT" => MySqlKind::Float,
        "DOUBLE" => MySqlKind::Double,
        "DECIMAL" => MySqlKind::Decimal,
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            MySqlKind::Text
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            MySqlKind::Bytes
        }
        "JSON" => MySqlKind::Json,
        "DATE" => MySqlKind::Date,
        "DATETIME" => MySqlKind::Datetime,
        "TIMESTAMP" => MySqlKind::Timestamp,
        _ => return None,
    })
}

fn mysql_decode(row: &MySqlRow, i: usize, kind: &MySqlKind) -> Result<Value, String> {
    // Unchecked where sqlx's type check is narrower than the wire format (YEAR as an
    // integer, DECIMAL and JSON as their text).
    Ok(match kind {
        MySqlKind::Null => Value::Null,
        MySqlKind::Bool => Value::Bool(row.try_get(i).map_err(text_of)?),
        MySqlKind::Int => row.try_get_unchecked::<i64, _>(i).map_err(text_of)?.into(),
        MySqlKind::Unsigned => row.try_get_unchecked::<u64, _>(i).map_err(text_of)?.into(),
        MySqlKind::Float => float32(row.try_get(i).map_err(text_of)?)?,
        MySqlKind::Double => float(row.try_get(i).map_err(text_of)?)?,
        // MySQL sends DECIMAL as its exact text, any precision.
        MySqlKind::Decimal => number(row.try_get_unchecked::<&str, _>(i).map_err(text_of)?)?,
        MySqlKind::Text => Value::String(row.try_get_unchecked(i).map_err(text_of)?),
        MySqlKind::Bytes => {
            let bytes: Vec<u8> = row.try_get_unchecked(i).map_err(text_of)?;
            Value::String(
                String::from_utf8(bytes)
                    .map_err(|_| "it holds bytes that are not UTF-8 text".to_owned())?,
            )
        }
        MySqlKind::Json => {
            let text: &str = row.try_get_unchecked(i).map_err(text_of)?;
            serde_json::from_str(text).map_err(|e| format!("it is not valid JSON: {e}"))?
        }
        MySqlKind::Date => date(row.try_get(i).map_err(text_of)?),
        MySqlKind::Datetime => local_timestamp(row.try_get(i).map_err(text_of)?),
        // sqlx sets the session's time zone to UTC, so TIMESTAMPs arrive in UTC.
        MySqlKind::Timestamp => utc_timestamp(row.try_get(i).map_err(text_of)?),
    })
}

/// SQLite values carry their own type; the declared column type only says whether an
/// integer is a boolean and whether a text is a timestamp.
enum SqliteKind {
    Any,
    Bool,
    Datetime,
}

fn sqlite_kind(declared: &str) -> Option<SqliteKind> {
    Some(match declared {
        "BOOLEAN" => SqliteKind::Bool,
        "DATETIME" => SqliteKind::Datetime,
        _ => SqliteKind::Any,
    })
}

fn sqlite_decode(row: &SqliteRow, i: usize, kind: &SqliteKind) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(text_of)?;
    let storage = raw.type_info().name().to_owned();
    Ok(match (storage.as_str(), kind) {
        ("INTEGER", SqliteKind::Bool) => {
            Value::Bool(row.try_get_unchecked::<i64, _>(i).map_err(text_of)? != 0)
        }
        ("INTEGER", _) => row.try_get_unchecked::<i64, _>(i).map_err(text_of)?.into(),
        ("REAL", _) => float(row.try_get_unchecked(i).map_err(text_of)?)?,
        ("TEXT", SqliteKind::Datetime) => {
            let text: String = row.try_get_unchecked(i).map_err(text_of)?;
            Value::String(normalize_sqlite_timestamp(&text).unwrap_or(text))
        }
        ("TEXT", _) => Value::String(row.try_get_unchecked(i).map_err(text_of)?),
        (other, _) => {
            return Err(format!(
                "it holds a {other} value, which kpistream does not map to JSON; cast it in the query"
            ));
        }
    })
}

/// SQLite keeps timestamps as text, often `2026-11-01 06:30:00`: RFC 3339 as the other
/// databases give it (with `Z` or the offset when the text has one).
fn normalize_sqlite_timestamp(text: &str) -> Option<String> {
    if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
        return Some(zoned.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .and_then(|naive| local_timestamp(naive).as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    //! The same checks against SQLite (a temporary file), PostgreSQL and MariaDB/MySQL
    //! (`KPISTREAM_TEST_POSTGRES_URL`, `KPISTREAM_TEST_MYSQL_URL` and
    //! `KPISTREAM_TEST_DB_PASSWORD`, which scripts/test.sh exports after
    //! scripts/services.sh started them). Without them those tests skip, saying so,
    //! except under `CI=true`, where they fail.

    use std::path::PathBuf;

    use super::*;
    use crate::connector::Duration as D;

    const PASSWORD_ENV: &str = "KPISTREAM_TEST_DB_PASSWORD";

    struct Db {
        dialect: Dialect,
        url: String,
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
        fn sqlite() -> Db {
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

        fn postgres() -> Option<Db> {
            service(Dialect::Postgres, "KPISTREAM_TEST_POSTGRES_URL")
        }

        fn mysql() -> Option<Db> {
            service(Dialect::MySql, "KPISTREAM_TEST_MYSQL_URL")
        }

        /// A table name no other test uses.
        fn table(&self, label: &str) -> String {
            format!("kpi_{label}_{:08x}", rand::random::<u32>())
        }

        /// Runs `statements` on a writable connection (the source's is read-only).
        async fn exec(&self, statements: &[String]) {
            let password = self.password.clone().unwrap_or_default();
            match self.dialect {
                Dialect::Postgres => {
                    let options = PgConnectOptions::from_str(&self.url)
                        .unwrap()
                        .password(&password);
                    let mut conn = options.connect().await.unwrap();
                    for s in statements {
                        sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
                    }
                }
                Dialect::MySql => {
                    let options = MySqlConnectOptions::from_str(&self.url)
                        .unwrap()
                        .password(&password);
                    let mut conn = options.connect().await.unwrap();
                    for s in statements {
                        sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
                    }
                }
                Dialect::Sqlite => {
                    let options = SqliteConnectOptions::from_str(&self.url)
                        .unwrap()
                        .create_if_missing(true);
                    let mut conn = options.connect().await.unwrap();
                    for s in statements {
                        sqlx::raw_sql(s).execute(&mut conn).await.unwrap();
                    }
                }
            }
        }

        fn source(&self, query: &str) -> SqlSource {
            SqlSource {
                connection: None,
                url: Some(self.url.clone()),
                password_env: self.password.as_ref().map(|_| PASSWORD_ENV.to_owned()),
                password_file: None,
                query: query.to_owned(),
                statement_timeout: D::secs(10),
            }
        }

        async fn query(
            &self,
            query: &str,
            cursor: Option<&str>,
        ) -> Result<Vec<Record>, FetchError> {
            read_all(&self.source(query), cursor).await
        }
    }

    fn ctx(cursor: Option<&str>) -> TemplateContext {
        TemplateContext {
            cursor: cursor.map(str::to_owned),
            period_start: "2026-11-01T00:00:00Z".parse().unwrap(),
            period_end: "2026-12-01T00:00:00Z".parse().unwrap(),
            now: "2026-11-23T06:00:00Z".parse().unwrap(),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: D(Duration::from_millis(10)),
            max_backoff: D(Duration::from_millis(20)),
        }
    }

    async fn read_all(source: &SqlSource, cursor: Option<&str>) -> Result<Vec<Record>, FetchError> {
        let mut pages = open(source, None, &ctx(cursor), &policy()).await?;
        let mut rows = Vec::new();
        while let Some(page) = pages.next_page().await? {
            rows.extend(page);
        }
        Ok(rows)
    }

    fn json(rows: &[Record]) -> String {
        serde_json::to_string(rows).unwrap()
    }

    // Rows map by name, with exact decimals, dates and timestamps ---------------------

    async fn rows_map_by_column_name(db: Db) {
        let t = db.table("rows");
        let (create, at_tz, expected_amount) = match db.dialect {
            Dialect::Postgres => (
                "(id INT, day DATE, amount NUMERIC(30,4), label TEXT, paid BOOLEAN, at TIMESTAMP, at_tz TIMESTAMPTZ, ratio DOUBLE PRECISION, note TEXT)",
                "'2026-11-01 06:30:00+00'",
                "12345678901234567890.1234",
            ),
            Dialect::MySql => (
                "(id INT, day DATE, amount DECIMAL(30,4), label VARCHAR(20), paid BOOLEAN, at DATETIME, at_tz TIMESTAMP NULL, ratio DOUBLE, note TEXT)",
                "'2026-11-01 06:30:00'",
                "12345678901234567890.1234",
            ),
            // SQLite has no exact decimal type: an exact amount is kept as text.
            Dialect::Sqlite => (
                "(id INTEGER, day DATE, amount TEXT, label TEXT, paid BOOLEAN, at DATETIME, at_tz DATETIME, ratio REAL, note TEXT)",
                "'2026-11-01T06:30:00Z'",
                "\"12345678901234567890.1234\"",
            ),
        };
        db.exec(&[
            format!("CREATE TABLE {t} {create}"),
            format!(
                "INSERT INTO {t} VALUES (1, '2026-11-01', '12345678901234567890.1234', 'north', TRUE, '2026-11-01 06:30:00', {at_tz}, 0.25, NULL)"
            ),
        ])
        .await;
        let rows = db
            .query(&format!("SELECT id, day, amount, label, paid, at, at_tz, ratio, note FROM {t} ORDER BY id"), None)
            .await
            .unwrap();
        assert_eq!(
            json(&rows),
            format!(
                r#"[{{"amount":{expected_amount},"at":"2026-11-01T06:30:00","at_tz":"2026-11-01T06:30:00Z","day":"2026-11-01","id":1,"label":"north","note":null,"paid":true,"ratio":0.25}}]"#
            )
        );
        db.exec(&[format!("DROP TABLE {t}")]).await;
    }

    #[tokio::test]
    async fn sqlite_rows_map_by_column_name_with_exact_values_and_dates() {
        rows_map_by_column_name(Db::sqlite()).await;
    }

    #[tokio::test]
    async fn postgres_rows_map_by_column_name_with_exact_decimals_and_dates() {
        if let Some(db) = Db::postgres() {
            rows_map_by_column_name(db).await;
        }
    }

    #[tokio::test]
    async fn mysql_rows_map_by_column_name_with_exact_decimals_and_dates() {
        if let Some(db) = Db::mysql() {
            rows_map_by_column_name(db).await;
        }
    }

    #[tokio::test]
    async fn rows_come_in_pages_of_a_thousand() {
        let db = Db::sqlite();
        let source = db.source("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) SELECT i FROM n");
        let mut pages = open(&source, None, &ctx(None), &policy()).await.unwrap();
        assert_eq!(format!("{pages:?}"), "SqlPages { rows_left: 2500 }");
        let mut sizes = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            sizes.push(page.len());
        }
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    // The cursor is a bound parameter ----------------------------------------------

    async fn cursor_is_bound_as_a_parameter(db: Db) {
        let t = db.table("cursor");
        db.exec(&[
            format!("CREATE TABLE {t} (id INT, name VARCHAR(20))"),
            format!("INSERT INTO {t} VALUES (1, 'a'), (2, 'b')"),
        ])
        .await;
        let query = format!("SELECT id FROM {t} WHERE name = {{{{cursor}}}} ORDER BY id");
        let injected = db.query(&query, Some("x' OR '1'='1")).await.unwrap();
        assert!(
            injected.is_empty(),
            "the cursor was pasted into the query: {injected:?}"
        );
        assert_eq!(
            json(&db.query(&query, Some("b")).await.unwrap()),
            r#"[{"id":2}]"#
        );
        assert!(
            db.query(&query, None).await.unwrap().is_empty(),
            "no cursor binds NULL"
        );
        db.exec(&[format!("DROP TABLE {t}")]).await;
    }

    #[tokio::test]
    async fn sqlite_cursor_is_bound_as_a_parameter_never_pasted_in() {
        cursor_is_bound_as_a_parameter(Db::sqlite()).await;
    }

    #[tokio::test]
    async fn postgres_cursor_is_bound_as_a_parameter_never_pasted_in() {
        if let Some(db) = Db::postgres() {
            cursor_is_bound_as_a_parameter(db).await;
        }
    }

    #[tokio::test]
    async fn mysql_cursor_is_bound_as_a_parameter_never_pasted_in() {
        if let Some(db) = Db::mysql() {
            cursor_is_bound_as_a_parameter(db).await;
        }
    }

    // Writes are refused by the database itself --------------------------------------

    async fn writes_are_refused(db: Db, refusal: &str) {
        let t = db.table("writes");
        let created = db.table("created");
        db.exec(&[
            format!("CREATE TABLE {t} (id INT)"),
            format!("INSERT INTO {t} VALUES (1)"),
        ])
        .await;
        for write in [
            format!("INSERT INTO {t} VALUES (2)"),
            format!("DELETE FROM {t}"),
            format!("CREATE TABLE {created} (a INT)"),
        ] {
            let e = db.query(&write, None).await.unwrap_err();
            assert!(!e.is_transient(), "{write}: {e}");
            assert!(e.to_string().contains(refusal), "{write}: {e}");
        }
        let count = db
            .query(&format!("SELECT COUNT(*) AS n FROM {t}"), None)
            .await
            .unwrap();
        assert_eq!(json(&count), r#"[{"n":1}]"#);
        assert!(
            db.query(&format!("SELECT a FROM {created}"), None)
                .await
                .is_err(),
            "CREATE TABLE ran"
        );
        db.exec(&[format!("DROP TABLE {t}")]).await;
    }

    #[tokio::test]
    async fn sqlite_writes_are_refused_by_the_database() {
        writes_are_refused(Db::sqlite(), "attempt to write a readonly database").await;
    }

    #[tokio::test]
    async fn postgres_writes_are_refused_by_the_database() {
        if let Some(db) = Db::postgres() {
            writes_are_refused(db, "read-only transaction (SQLSTATE 25006)").await;
        }
    }

    #[tokio::test]
    async fn mysql_writes_are_refused_by_the_database() {
        if let Some(db) = Db::mysql() {
            writes_are_refused(db, "READ ONLY transaction (error 1792)").await;
        }
    }

    // A query over its statement timeout is cancelled, not retried --------------------

    async fn slow_query_is_cancelled(db: Db, slow: &str) {
        let mut source = db.source(slow);
        source.statement_timeout = D::secs(1);
        let started = Instant::now();
        let e = read_all(&source, None).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(!e.is_transient(), "{e}");
        assert!(e.to_string().contains("was cancelled after 1s"), "{e}");
        // One attempt (policy() allows three) stopped near the timeout.
        assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}: {e}");
    }

    #[tokio::test]
    async fn sqlite_a_query_over_the_statement_timeout_is_interrupted() {
        slow_query_is_cancelled(
            Db::sqlite(),
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c",
        )
        .await;
    }

    #[tokio::test]
    async fn postgres_a_query_over_the_statement_timeout_is_cancelled() {
        if let Some(db) = Db::postgres() {
            slow_query_is_cancelled(db, "SELECT pg_sleep(5)").await;
        }
    }

    #[tokio::test]
    async fn mysql_a_query_over_the_statement_timeout_is_cancelled() {
        if let Some(db) = Db::mysql() {
            slow_query_is_cancelled(db, "SELECT SLEEP(5) AS slept").await;
        }
    }

    // An unsupported column type is named --------------------------------------------

    async fn unsupported_type_is_named(db: Db, query: &str, type_name: &str) {
        let e = db.query(query, None).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        let message = e.to_string();
        assert!(message.contains("column span"), "{message}");
        assert!(message.contains(type_name), "{message}");
    }

    #[tokio::test]
    async fn sqlite_a_blob_column_is_refused_with_its_name() {
        unsupported_type_is_named(Db::sqlite(), "SELECT x'00ff' AS span", "BLOB").await;
    }

    #[tokio::test]
    async fn postgres_an_unsupported_column_type_is_refused_with_its_name_and_type() {
        if let Some(db) = Db::postgres() {
            unsupported_type_is_named(db, "SELECT '1 day'::interval AS span", "INTERVAL").await;
        }
    }

    #[tokio::test]
    async fn mysql_an_unsupported_column_type_is_refused_with_its_name_and_type() {
        if let Some(db) = Db::mysql() {
            unsupported_type_is_named(db, "SELECT CAST('10:00:00' AS TIME) AS span", "TIME").await;
        }
    }

    // Passwords never print ----------------------------------------------------------

    const CANARY: &str = "CANARY-db-password-5f1d";

    fn with_canary(url: &str, dir: &tempfile::TempDir) -> SqlSource {
        let file: PathBuf = dir.path().join("password");
        std::fs::write(&file, CANARY).unwrap();
        SqlSource {
            connection: None,
            url: Some(url.to_owned()),
            password_env: None,
            password_file: Some(file),
            query: "SELECT 1 AS one".to_owned(),
            statement_timeout: D::secs(5),
        }
    }

    fn assert_no_canary(e: &FetchError) {
        assert!(!e.to_string().contains(CANARY), "{e}");
        assert!(!format!("{e:?}").contains(CANARY), "{e:?}");
    }

    #[tokio::test]
    async fn a_password_never_appears_in_errors_or_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1: connecting fails, and is worth retrying.
        for url in [
            "postgres://kpistream@127.0.0.1:1/db",
            "mysql://kpistream@127.0.0.1:1/db",
        ] {
            let e = read_all(&with_canary(url, &dir), None).await.unwrap_err();
            assert!(e.is_transient(), "{e}");
            assert!(e.to_string().contains("cannot connect to"), "{e}");
            assert!(e.to_string().contains("127.0.0.1:1/db"), "{e}");
            assert_no_canary(&e);
        }
        // A wrong password is refused by the server, and retrying would not help.
        for db in [Db::postgres(), Db::mysql()].into_iter().flatten() {
            let e = read_all(&with_canary(&db.url, &dir), None)
                .await
                .unwrap_err();
            assert!(!e.is_transient(), "{e}");
            assert!(e.to_string().contains("refused the connection"), "{e}");
            assert_no_canary(&e);
            let pages = open(&db.source("SELECT 1 AS one"), None, &ctx(None), &policy())
                .await
                .unwrap();
            assert!(!format!("{pages:?}").contains(CANARY));
        }
    }

    #[test]
    fn descriptions_hold_no_user_or_parameters() {
        assert_eq!(
            describe(
                Dialect::Postgres,
                "postgres://kpi@db.internal:5432/billing?sslmode=require"
            ),
            "PostgreSQL at db.internal:5432/billing"
        );
        assert_eq!(
            describe(Dialect::MySql, "mysql://kpi@db/shop"),
            "MySQL/MariaDB at db/shop"
        );
        assert_eq!(
            describe(Dialect::Sqlite, "sqlite://data/kpi.db?mode=ro"),
            "the SQLite database data/kpi.db"
        );
    }

    #[tokio::test]
    async fn a_named_connection_gives_the_url_and_a_wrong_kind_is_refused() {
        let db = Db::sqlite();
        db.exec(&[
            "CREATE TABLE t (n INT)".to_owned(),
            "INSERT INTO t VALUES (7)".to_owned(),
        ])
        .await;
        let source = SqlSource {
            connection: Some("warehouse".to_owned()),
            url: None,
            password_env: None,
            password_file: None,
            query: "SELECT n FROM t".to_owned(),
            statement_timeout: D::secs(5),
        };
        let connection = Connection::Sql {
            url: db.url.clone(),
            password_env: None,
            password_file: None,
        };
        let mut pages = open(&source, Some(&connection), &ctx(None), &policy())
            .await
            .unwrap();
        assert_eq!(
            json(&pages.next_page().await.unwrap().unwrap()),
            r#"[{"n":7}]"#
        );

        let rest = Connection::Rest {
            base_url: "https://api.example.com".to_owned(),
            auth: None,
        };
        let e = open(&source, Some(&rest), &ctx(None), &policy())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the connection warehouse in connections.toml is a rest connection; a SQL source needs a sql one"
        );
        let e = open(&source, None, &ctx(None), &policy())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the connection warehouse is not in connections.toml"
        );
    }
}
