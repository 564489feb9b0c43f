//! MySQL and MariaDB: the session's transactions are read-only, the statement limited by
//! `max_statement_time` (MariaDB) or `max_execution_time` (MySQL), and columns decode
//! by their MySQL type.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{ConnectOptions, Row};

use super::{
    Database, SERVER_TIMEOUT_GRACE, Stage, bind, date, float, float32, local_timestamp, number,
    text_of, utc_timestamp,
};
use crate::runner::FetchError;
use crate::runner::error::DecodeError;
use crate::runner::source::StoredRecord;
use crate::runner::template::BoundQuery;

impl Database {
    pub(super) async fn fetch_mysql(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
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

    async fn run_mysql(
        &self,
        conn: &mut MySqlConnection,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
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
            // `Executor::execute` on the connection, not `sqlx::raw_sql(..).execute(..)`:
            // in the `Send` future that `Database::fetch_all` boxes, `raw_sql` does not
            // compile ("implementation of `Executor` is not general enough").
            sqlx::Executor::execute(&mut *conn, setup)
                .await
                .map_err(|e| self.error(Stage::Query, e, timeout))?;
        }
        let rows = bind(sqlx::query(&query.sql), &query.params).fetch(&mut *conn);
        self.collect(rows, timeout, mysql_kind, mysql_decode).await
    }
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

fn mysql_decode(row: &MySqlRow, i: usize, kind: &MySqlKind) -> Result<Value, DecodeError> {
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
            Value::String(String::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?)
        }
        MySqlKind::Json => {
            let text: &str = row.try_get_unchecked(i).map_err(text_of)?;
            serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?
        }
        MySqlKind::Date => date(row.try_get(i).map_err(text_of)?),
        MySqlKind::Datetime => local_timestamp(row.try_get(i).map_err(text_of)?),
        // sqlx sets the session's time zone to UTC, so TIMESTAMPs arrive in UTC.
        MySqlKind::Timestamp => utc_timestamp(row.try_get(i).map_err(text_of)?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::conformance::*;
    use super::super::test_db::Db;

    #[tokio::test]
    async fn mysql_rows_map_by_column_name_with_exact_decimals_and_dates() {
        rows_map_by_column_name(
            Db::mysql(),
            "(id INT, day DATE, amount DECIMAL(30,4), label VARCHAR(20), paid BOOLEAN, at DATETIME, at_tz TIMESTAMP NULL, ratio DOUBLE, note TEXT)",
            "'2026-11-01 06:30:00'",
            "12345678901234567890.1234",
        )
        .await;
    }

    #[tokio::test]
    async fn mysql_cursor_is_bound_as_a_parameter_never_pasted_in() {
        cursor_is_bound_as_a_parameter(Db::mysql()).await;
    }

    #[tokio::test]
    async fn mysql_writes_are_refused_by_the_database() {
        writes_are_refused(Db::mysql(), "READ ONLY transaction (error 1792)").await;
    }

    #[tokio::test]
    async fn mysql_a_query_over_the_statement_timeout_is_cancelled() {
        slow_query_is_cancelled(Db::mysql(), "SELECT SLEEP(5) AS slept").await;
    }

    #[tokio::test]
    async fn mysql_an_unsupported_column_type_is_refused_with_its_name_and_type() {
        let query = "SELECT CAST('10:00:00' AS TIME) AS span";
        unsupported_type_is_named(Db::mysql(), query, "TIME").await;
    }
}
