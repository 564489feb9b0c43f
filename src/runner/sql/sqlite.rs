//! SQLite: the file opens read-only, a progress handler interrupts the statement at its
//! deadline, and values decode by their storage class (the declared type only says
//! whether an integer is a boolean and a text a timestamp).

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions, Connection as _, Row, TypeInfo, ValueRef};

use super::{
    CLOSE_TIMEOUT, Database, SERVER_TIMEOUT_GRACE, Stage, bind, float, local_timestamp, text_of,
};
use crate::runner::FetchError;
use crate::runner::error::DecodeError;
use crate::runner::source::StoredRecord;
use crate::runner::template::BoundQuery;

impl Database {
    pub(super) async fn fetch_sqlite(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
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

fn sqlite_decode(row: &SqliteRow, i: usize, kind: &SqliteKind) -> Result<Value, DecodeError> {
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
            return Err(DecodeError::Unmapped(other.to_owned()));
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
    use super::super::conformance::*;
    use super::super::test_db::Db;

    #[tokio::test]
    async fn sqlite_rows_map_by_column_name_with_exact_values_and_dates() {
        // SQLite has no exact decimal type: an exact amount is kept as text.
        rows_map_by_column_name(
            Some(Db::sqlite()),
            "(id INTEGER, day DATE, amount TEXT, label TEXT, paid BOOLEAN, at DATETIME, at_tz DATETIME, ratio REAL, note TEXT)",
            "'2026-11-01T06:30:00Z'",
            "\"12345678901234567890.1234\"",
        )
        .await;
    }

    #[tokio::test]
    async fn sqlite_cursor_is_bound_as_a_parameter_never_pasted_in() {
        cursor_is_bound_as_a_parameter(Some(Db::sqlite())).await;
    }

    #[tokio::test]
    async fn sqlite_writes_are_refused_by_the_database() {
        let refusal = "attempt to write a readonly database";
        writes_are_refused(Some(Db::sqlite()), refusal).await;
    }

    #[tokio::test]
    async fn sqlite_a_query_over_the_statement_timeout_is_interrupted() {
        slow_query_is_cancelled(
            Some(Db::sqlite()),
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c",
        )
        .await;
    }

    #[tokio::test]
    async fn sqlite_a_blob_column_is_refused_with_its_name() {
        let query = "SELECT x'00ff' AS span";
        unsupported_type_is_named(Some(Db::sqlite()), query, "BLOB").await;
    }
}
