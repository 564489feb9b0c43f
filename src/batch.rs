//! A batch of datapoints as it travels from validation to the store, and the outcome
//! that comes back. A domain type: the publish path builds batches, the store commits
//! them, and neither depends on the other for it.

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
    stream_id: StreamId,
    key_id: KeyId,
    batch_id: String,
    frequency: Frequency,
    points: Vec<ValidPoint>,
    rejected: Vec<PointRejection>,
}

impl PreparedBatch {
    /// A batch of `points` (each period at most once) signed with `key_id` for
    /// `stream_id`, validated against `frequency`; `rejected` are the points refused.
    pub fn new(
        stream_id: StreamId,
        key_id: KeyId,
        batch_id: String,
        frequency: Frequency,
        points: Vec<ValidPoint>,
        rejected: Vec<PointRejection>,
    ) -> Self {
        Self {
            stream_id,
            key_id,
            batch_id,
            frequency,
            points,
            rejected,
        }
    }

    pub fn stream_id(&self) -> &StreamId {
        &self.stream_id
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// The frequency the points were validated against; the commit checks it still holds.
    pub fn frequency(&self) -> Frequency {
        self.frequency
    }

    pub fn points(&self) -> &[ValidPoint] {
        &self.points
    }

    pub fn rejected(&self) -> &[PointRejection] {
        &self.rejected
    }

    /// The batch's stream, key, batch id and points, for what follows a commit.
    pub fn into_parts(self) -> (StreamId, KeyId, String, Vec<ValidPoint>) {
        (self.stream_id, self.key_id, self.batch_id, self.points)
    }
}

/// The result of a committed batch, stored so a replay gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishOutcome {
    batch_id: String,
    accepted: u32,
    revised: u32,
    rejected: Vec<PointRejection>,
    #[serde(skip)]
    replayed: bool,
    committed_at: Timestamp,
}

impl PublishOutcome {
    /// The outcome of committing `batch` at `at`, `revised` of its points replacing a
    /// different value.
    pub fn committed(batch: &PreparedBatch, revised: u32, at: Timestamp) -> Self {
        Self {
            batch_id: batch.batch_id.clone(),
            accepted: batch.points.len() as u32,
            revised,
            rejected: batch.rejected.clone(),
            replayed: false,
            committed_at: at,
        }
    }

    /// The same outcome, answered again to a publish of a batch id already committed.
    pub fn into_replay(mut self) -> Self {
        self.replayed = true;
        self
    }

    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// Points stored (new or revised or unchanged).
    pub fn accepted(&self) -> u32 {
        self.accepted
    }

    /// Points that replaced a different value.
    pub fn revised(&self) -> u32 {
        self.revised
    }

    pub fn rejected(&self) -> &[PointRejection] {
        &self.rejected
    }

    /// True when this is the stored result of an earlier publish of the same batch id.
    pub fn replayed(&self) -> bool {
        self.replayed
    }

    pub fn committed_at(&self) -> Timestamp {
        self.committed_at
    }

    /// The batch id and rejections, for the answer on the wire.
    pub fn into_rejected(self) -> (String, Vec<PointRejection>) {
        (self.batch_id, self.rejected)
    }
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
