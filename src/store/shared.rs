//! Small pieces both SQL backends use to read rows and name failures.

use jiff::Timestamp;

use super::{Result, StoreError, from_micros};
use crate::ids::StreamId;
use crate::period::Frequency;

pub(super) fn stream_not_found(id: &StreamId) -> StoreError {
    StoreError::NotFound(format!("stream {id}"))
}

/// The one place a unique-constraint violation becomes `AlreadyExists(what)`.
pub(super) fn unique<T>(
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

pub(super) fn parse_frequency(text: String) -> Result<Frequency> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("frequency {text:?}")))
}

pub(super) fn opt_micros(us: Option<i64>) -> Result<Option<Timestamp>> {
    us.map(from_micros).transpose()
}
