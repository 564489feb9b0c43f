//! The batch as it travels from validation to the store and back as an outcome.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{KeyId, StreamId};
use crate::period::Frequency;

/// A point that passed validation: its period and value are canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPoint {
    pub period: String,
    pub value: String,
    pub external_id: Option<String>,
}

/// A point refused, with its index in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRejection {
    pub index: u32,
    pub reason: String,
}

/// A verified, validated batch ready to commit.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    pub stream_id: StreamId,
    pub key_id: KeyId,
    pub batch_id: String,
    /// The frequency the points were validated against; the commit checks it still holds.
    pub frequency: Frequency,
    pub points: Vec<ValidPoint>,
    pub rejected: Vec<PointRejection>,
}

/// The result of a committed batch, stored so a replay gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishOutcome {
    pub batch_id: String,
    pub accepted: u32,
    pub revised: u32,
    pub rejected: Vec<PointRejection>,
    /// True when this is the stored result of an earlier publish of the same batch id.
    #[serde(skip)]
    pub replayed: bool,
    pub committed_at: Timestamp,
}

/// Why the store refused a batch at commit time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitRefusal {
    #[error("stream {0} no longer exists")]
    StreamGone(StreamId),
    #[error("stream {0} is disabled: an admin must enable it before it takes data")]
    Disabled(StreamId),
    #[error("stream {0} changed frequency while the batch was checked; publish it again")]
    FrequencyChanged(StreamId),
}
