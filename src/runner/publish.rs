//! Publishing one page of a run: signed batches of at most 1,000 points with
//! deterministic ids, retried while the server is unavailable, each refused point
//! counted and logged with the server's reason.

use std::collections::HashSet;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::error::RunError;
use super::mapping::MappedPoint;
use super::run::{RunEnv, RunSummary};
use super::target::Target;
use super::{FetchError, Record, retry};
use crate::client::{PeriodRange, point_for_period};
use crate::connector::ConnectorDef;
use crate::proto;
use crate::wire::timestamp;

/// Most points in one published batch.
const BATCH_POINTS: usize = 1_000;
/// Rejections logged one by one per run; the rest are counted.
const LOGGED_REJECTIONS: u64 = 20;

/// The part of a run that signs and publishes.
pub(super) struct Publishing<'a> {
    pub(super) env: &'a RunEnv,
    pub(super) def: &'a ConnectorDef,
    pub(super) target: &'a Target,
    pub(super) slot: Timestamp,
    pub(super) start_cursor: &'a str,
    pub(super) logged: u64,
}

impl Publishing<'_> {
    /// The periods among `points` that have a value on the server already.
    pub(super) async fn existing_periods(
        &self,
        points: &[(String, MappedPoint)],
    ) -> Result<HashSet<String>, RunError> {
        let (from, to) = points
            .iter()
            .fold((None::<&str>, None::<&str>), |(lo, hi), (p, _)| {
                (
                    Some(lo.map_or(p.as_str(), |lo| lo.min(p.as_str()))),
                    Some(hi.map_or(p.as_str(), |hi| hi.max(p.as_str()))),
                )
            });
        let range = PeriodRange {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            limit: 0,
        };
        let stored = self
            .env
            .client
            .points(&self.target.stream_id, &range)
            .await
            .map_err(|s| RunError::StoredPeriods(s.message().to_owned()))?;
        Ok(stored.into_iter().map(|p| p.period).collect())
    }

    /// Publishes one page's points in batches of at most [`BATCH_POINTS`].
    pub(super) async fn page(
        &mut self,
        page: u32,
        points: &[(String, MappedPoint)],
        summary: &mut RunSummary,
    ) -> Result<(), FetchError> {
        for (chunk_number, chunk) in points.chunks(BATCH_POINTS).enumerate() {
            let batch_points: Vec<proto::Point> = chunk
                .iter()
                .map(|(period, p)| point_for_period(period, &p.value, &p.external_id))
                .collect();
            let batch = proto::Batch {
                batch_id: self.batch_id(page, chunk_number, &batch_points),
                signed_at: Some(timestamp(Timestamp::now())),
                points: batch_points,
            };
            let sealed = self.target.credential.seal(&batch);
            let what = format!("publish page {page} of {}", self.def.name);
            let response = retry::retrying(&self.def.retry, &what, || {
                let request = proto::PublishRequest {
                    batch: Some(sealed.clone()),
                    all_or_nothing: false,
                };
                let mut ingest = self.env.client.ingest();
                async move {
                    ingest
                        .publish(request)
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(publish_error)
                }
            })
            .await?;
            summary.points_published += u64::from(response.accepted);
            metrics::counter!("kpistream_runner_points_published_total", "connector" => self.def.name.clone())
                .increment(u64::from(response.accepted));
            for rejection in &response.rejected {
                summary.points_rejected += 1;
                let index = rejection.index as usize;
                let period = chunk.get(index).map_or("?", |(p, _)| p.as_str());
                let reason = format!(
                    "point for {period} refused by the server: {}",
                    rejection.reason
                );
                if self.logged < LOGGED_REJECTIONS {
                    tracing::warn!(connector = %self.def.name, "{reason}");
                }
                self.logged += 1;
            }
        }
        Ok(())
    }

    /// Logs a record that could not be mapped, cut to 200 characters, while the run
    /// has logged fewer than [`LOGGED_REJECTIONS`] rejections of either kind.
    pub(super) fn log_rejection(&mut self, reason: &str, record: &Record) {
        if self.logged < LOGGED_REJECTIONS {
            let shown = record.to_string();
            let shown: String = shown.chars().take(200).collect();
            tracing::warn!(connector = %self.def.name, record = %shown, "{reason}");
        }
        self.logged += 1;
    }

    /// `run-` and 32 hex digits of SHA-256 over the connector, the slot, the cursor the
    /// run started from, the page, the batch within the page and the points: a run
    /// redone after a crash sends the same ids for the same points (the server answers
    /// `replayed` and stores nothing twice), and a source whose data changed meanwhile
    /// gets new ids, so nothing new is dropped as a replay.
    fn batch_id(&self, page: u32, chunk: usize, points: &[proto::Point]) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.def.name.as_str(),
            &self.slot.to_string(),
            self.start_cursor,
            &page.to_string(),
            &chunk.to_string(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for p in points {
            if let Some(proto::point::When::Period(period)) = &p.when {
                hash.update(period.as_bytes());
            }
            hash.update([0]);
            hash.update(p.value.as_bytes());
            hash.update([0]);
            hash.update(p.external_id.as_bytes());
            hash.update([0]);
        }
        format!("run-{}", &hex::encode(hash.finalize())[..32])
    }
}

/// UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and RESOURCE_EXHAUSTED are worth retrying
/// (the server restarting, overloaded); anything else is the batch's own fault.
fn publish_error(status: tonic::Status) -> FetchError {
    use tonic::Code;
    let message = format!(
        "the server refused the batch: {} ({:?})",
        status.message(),
        status.code()
    );
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted => {
            FetchError::transient(message)
        }
        _ => FetchError::permanent(message),
    }
}
