//! PostgreSQL: the query runs in `BEGIN READ ONLY` (the session read-only too) with
//! `SET LOCAL statement_timeout`, and its columns decode by their PostgreSQL type.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
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
    pub(super) async fn fetch_postgres(
        &self,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
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

    async fn run_postgres(
        &self,
        conn: &mut PgConnection,
        query: &BoundQuery,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>, FetchError> {
        let ms = timeout.as_millis().max(1);
        // Read-only for the session too: a query that ends the transaction (COMMIT)
        // leaves the next one read-only as well.
        for setup in [
            "SET default_transaction_read_only = on".to_owned(),
            "BEGIN READ ONLY".to_owned(),
            format!("SET LOCAL statement_timeout = {ms}"),
        ] {
            // `Executor::execute` on the connection, not `sqlx::raw_sql(..).execute(..)`:
            // in the `Send` future that `Database::fetch_all` boxes, `raw_sql` does not
            // compile ("implementation of `Executor` is not general enough").
            sqlx::Executor::execute(&mut *conn, setup.as_str())
                .await
                .map_err(|e| self.error(Stage::Query, e, timeout))?;
        }
        let rows = bind(sqlx::query(&query.sql), &query.params).fetch(&mut *conn);
        self.collect(rows, timeout, pg_kind, pg_decode).await
    }
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

fn pg_decode(row: &PgRow, i: usize, kind: &PgKind) -> Result<Value, DecodeError> {
    Ok(match kind {
        PgKind::Bool => Value::Bool(row.try_get(i).map_err(text_of)?),
        PgKind::Int2 => row.try_get::<i16, _>(i).map_err(text_of)?.into(),
        PgKind::Int4 => row.try_get::<i32, _>(i).map_err(text_of)?.into(),
        PgKind::Int8 => row.try_get::<i64, _>(i).map_err(text_of)?.into(),
        PgKind::Float4 => float32(row.try_get(i).map_err(text_of)?)?,
        PgKind::Float8 => float(row.try_get(i).map_err(text_of)?)?,
        PgKind::Numeric => {
            let decimal: rust_decimal::Decimal = row.try_get(i).map_err(|e| {
                DecodeError::Driver(format!(
                    "{e} (kpistream reads NUMERIC values of up to 28 significant digits)"
                ))
            })?;
            number(&decimal.to_string())?
        }
        PgKind::Text => Value::String(row.try_get(i).map_err(text_of)?),
        PgKind::Date => date(row.try_get(i).map_err(text_of)?),
        PgKind::Timestamp => local_timestamp(row.try_get(i).map_err(text_of)?),
        PgKind::Timestamptz => utc_timestamp(row.try_get(i).map_err(text_of)?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::conformance::*;
    use super::super::test_db::Db;

    #[tokio::test]
    async fn postgres_rows_map_by_column_name_with_exact_decimals_and_dates() {
        rows_map_by_column_name(
            Db::postgres(),
            "(id INT, day DATE, amount NUMERIC(30,4), label TEXT, paid BOOLEAN, at TIMESTAMP, at_tz TIMESTAMPTZ, ratio DOUBLE PRECISION, note TEXT)",
            "'2026-11-01 06:30:00+00'",
            "12345678901234567890.1234",
        )
        .await;
    }

    #[tokio::test]
    async fn postgres_cursor_is_bound_as_a_parameter_never_pasted_in() {
        cursor_is_bound_as_a_parameter(Db::postgres()).await;
    }

    #[tokio::test]
    async fn postgres_writes_are_refused_by_the_database() {
        writes_are_refused(Db::postgres(), "read-only transaction (SQLSTATE 25006)").await;
    }

    #[tokio::test]
    async fn postgres_a_query_over_the_statement_timeout_is_cancelled() {
        slow_query_is_cancelled(Db::postgres(), "SELECT pg_sleep(5)").await;
    }

    #[tokio::test]
    async fn postgres_an_unsupported_column_type_is_refused_with_its_name_and_type() {
        let query = "SELECT '1 day'::interval AS span";
        unsupported_type_is_named(Db::postgres(), query, "INTERVAL").await;
    }
}
