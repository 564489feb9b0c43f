//! What every source gives the runner: pages of records, and errors that say whether
//! trying again could help. No error message ever holds a secret. [`Pages`] hands out
//! records already read in full (a query's rows, a command's output).

use std::fmt;

use async_trait::async_trait;

/// One record as the source gave it: a JSON value (an object for SQL rows and command
/// output, whatever the `records` JSONPath selects for REST).
pub type Record = serde_json::Value;

/// Why a page could not be fetched. Messages name the source and what went wrong, and
/// never contain a secret (no token, password, or URL holding one).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Worth retrying: a connection refused or reset, a timeout, HTTP 5xx or 429.
    #[error("{message}")]
    Transient {
        /// What happened.
        message: String,
        /// How long the source asked us to wait (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// Retrying would not help: HTTP 4xx, a response that is not what the mapping
    /// expects, a query the database refuses, a command that exits non-zero.
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl FetchError {
    /// A transient error without a `Retry-After`.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }

    /// Whether trying again could help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// A source opened for one run: it yields its records page by page, so a run that is
/// asked to stop (SIGTERM) can finish the page in hand, publish it and report.
/// Transient errors are retried inside `next_page` following the connector's
/// `RetryPolicy` (see [`super::retry::retrying`]); what comes out has exhausted them.
#[async_trait]
pub trait Source: Send {
    /// The next page of records, or `None` when the source has no more.
    async fn next_page(&mut self) -> Result<Option<Vec<Record>>, FetchError>;
}

/// Records handed to the runner per page by [`Pages`].
pub const PAGE_SIZE: usize = 1000;

/// A record kept as compact JSON text until its page is handed out: parsed, a small
/// record takes about fifteen times the memory of its text (measured with
/// `scripts/bench-runner.sh`), and a run may hold hundreds of thousands.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRecord(Box<str>);

impl StoredRecord {
    /// Keeps `record` as text. Numbers keep their exact text (serde_json is built with
    /// `arbitrary_precision`).
    pub fn new(record: &Record) -> Self {
        Self(record.to_string().into_boxed_str())
    }

    /// Keeps text already checked to be one JSON value, such as a validated JSON line.
    pub fn from_checked_json(text: &str) -> Self {
        Self(text.trim().into())
    }

    /// The record again.
    pub fn parse(&self) -> Result<Record, FetchError> {
        serde_json::from_str(&self.0).map_err(|e| {
            FetchError::permanent(format!(
                "a record kept for a later page cannot be read back: {e}"
            ))
        })
    }
}

/// The source of a run whose records are all in memory already (the SQL and command
/// sources read everything before the first page), kept as compact text and handed out
/// [`PAGE_SIZE`] at a time. Its `Debug` shows how many are left, never a record.
pub struct Pages {
    records: std::vec::IntoIter<StoredRecord>,
}

impl Pages {
    /// Pages of `records`, in order.
    pub fn new(records: Vec<StoredRecord>) -> Self {
        Self {
            records: records.into_iter(),
        }
    }
}

impl fmt::Debug for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages")
            .field("records_left", &self.records.len())
            .finish()
    }
}

#[async_trait]
impl Source for Pages {
    async fn next_page(&mut self) -> Result<Option<Vec<Record>>, FetchError> {
        let page = self
            .records
            .by_ref()
            .take(PAGE_SIZE)
            .map(|r| r.parse())
            .collect::<Result<Vec<Record>, FetchError>>()?;
        Ok((!page.is_empty()).then_some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_handed_out_a_thousand_at_a_time_and_debug_shows_only_their_count() {
        let records: Vec<StoredRecord> = (0..2500)
            .map(|i| StoredRecord::new(&serde_json::json!({ "i": i, "exact": 0.10 })))
            .collect();
        let mut pages = Pages::new(records);
        assert_eq!(format!("{pages:?}"), "Pages { records_left: 2500 }");
        let mut sizes = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            sizes.push(page.len());
        }
        assert_eq!(sizes, [1000, 1000, 500]);
        assert!(pages.next_page().await.unwrap().is_none(), "it stays ended");
        assert!(Pages::new(Vec::new()).next_page().await.unwrap().is_none());
    }
}
