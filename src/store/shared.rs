//! Small pieces both SQL backends use to read rows and name failures.

use jiff::Timestamp;

use super::{Result, StoreError, from_micros};
use crate::ids::StreamId;
use crate::period::Frequency;

pub(crate) fn stream_not_found(id: &StreamId) -> StoreError {
    StoreError::NotFound(format!("stream {id}"))
}

/// The one place a unique-constraint violation becomes `AlreadyExists(what)`.
pub(crate) fn unique<T>(
    result: std::result::Result<T, sqlx::Error>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    match result {
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            Err(StoreError::AlreadyExists(what()))
        }
        other => Ok(other?),
    }
}

pub(crate) fn parse_frequency(text: String) -> Result<Frequency> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("frequency {text:?}")))
}

pub(crate) fn opt_micros(us: Option<i64>) -> Result<Option<Timestamp>> {
    us.map(from_micros).transpose()
}

/// Refuses a database whose schema has `applied` of this version's `all` migrations,
/// when the caller asked not to migrate it (`serve --no-migrate`).
pub(crate) fn behind(applied: usize, all: usize, url: &str) -> Result<()> {
    if applied >= all {
        return Ok(());
    }
    Err(StoreError::Migration(format!(
        "the database has {applied} of this version's {all} migrations and --no-migrate was given: run `kpistream migrate --db {}` first",
        super::redact_url(url)
    )))
}

#[cfg(test)]
mod tests {
    use crate::store::redact_url;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let shown =
            redact_url("postgres://kpistream:s3cr%2Ft@db.internal:5432/kpi?sslmode=require");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert_eq!(
            shown,
            "postgres://kpistream:***@db.internal:5432/kpi?sslmode=require"
        );
        let shown = redact_url("postgres://kpistream@db/kpi?password=s3cret&sslmode=require");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("password=***") && shown.contains("sslmode=require"),
            "{shown}"
        );
        assert_eq!(
            redact_url("postgres://kpistream@db/kpi"),
            "postgres://kpistream@db/kpi"
        );
        assert_eq!(
            redact_url("sqlite://data/kpistream.db"),
            "sqlite://data/kpistream.db"
        );
        assert_eq!(
            redact_url("hunter2"),
            "(a database URL that does not parse)"
        );
    }
}
