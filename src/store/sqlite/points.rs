//! The SQLite side of datapoints: committing batches (points, revisions, remembered
//! batch ids) and reading points and revisions back.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use super::{SqliteStore, parse_frequency};
use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome};
use crate::ids::StreamId;
use crate::store::{
    PointRecord, PointStore, Result, RevisionRecord, StoreError, from_micros, to_micros,
};

const POINT_COLUMNS: &str =
    "period, value, external_id, updated_at, batch_id, key_id, revision_count FROM points";

fn point_from_row(row: &SqliteRow) -> Result<PointRecord> {
    Ok(PointRecord {
        period: row.get("period"),
        value: row.get("value"),
        external_id: row.get("external_id"),
        updated_at: from_micros(row.get("updated_at"))?,
        batch_id: row.get("batch_id"),
        key_id: row.get("key_id"),
        revision_count: row.get::<i64, _>("revision_count") as u32,
    })
}

pub(super) async fn commit_one(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &PreparedBatch,
    now: Timestamp,
) -> Result<Result<PublishOutcome, CommitRefusal>> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM batches WHERE stream_id = ? AND batch_id = ?")
            .bind(batch.stream_id().as_str())
            .bind(batch.batch_id())
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(stored) = stored {
        let outcome: PublishOutcome = serde_json::from_str(&stored)
            .map_err(|e| StoreError::Corrupt(format!("stored batch outcome: {e}")))?;
        return Ok(Ok(outcome.into_replay()));
    }
    let stream = sqlx::query("SELECT disabled, frequency FROM streams WHERE id = ?")
        .bind(batch.stream_id().as_str())
        .fetch_optional(&mut **tx)
        .await?;
    let Some(stream) = stream else {
        return Ok(Err(CommitRefusal::StreamGone(batch.stream_id().clone())));
    };
    if stream.get::<bool, _>("disabled") {
        return Ok(Err(CommitRefusal::Disabled(batch.stream_id().clone())));
    }
    if parse_frequency(stream.get("frequency"))? != batch.frequency() {
        return Ok(Err(CommitRefusal::FrequencyChanged(
            batch.stream_id().clone(),
        )));
    }
    let (new_points, revised) = upsert_points(tx, batch, now).await?;
    let outcome = PublishOutcome::committed(batch, revised, now);
    let json = serde_json::to_string(&outcome).expect("outcome serializes");
    sqlx::query(
        "INSERT INTO batches (stream_id, batch_id, key_id, accepted_at, outcome) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(batch.stream_id().as_str())
    .bind(batch.batch_id())
    .bind(batch.key_id().as_str())
    .bind(to_micros(now))
    .bind(json)
    .execute(&mut **tx)
    .await?;
    if let Some(latest) = batch.points().iter().map(|p| p.period.as_str()).max() {
        sqlx::query(
            "UPDATE streams SET point_count = point_count + ?, last_data_at = ?, \
             latest_period = CASE WHEN latest_period IS NULL OR latest_period < ? THEN ? ELSE latest_period END \
             WHERE id = ?",
        )
        .bind(new_points)
        .bind(to_micros(now))
        .bind(latest)
        .bind(latest)
        .bind(batch.stream_id().as_str())
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("UPDATE stream_keys SET last_used_at = ? WHERE stream_id = ? AND key_id = ?")
        .bind(to_micros(now))
        .bind(batch.stream_id().as_str())
        .bind(batch.key_id().as_str())
        .execute(&mut **tx)
        .await?;
    Ok(Ok(outcome))
}

/// One element of the JSON array `upsert_points` binds, serialized straight from the
/// batch (no `serde_json::Value` tree, no copies of the texts).
#[derive(serde::Serialize)]
struct JsonPoint<'a> {
    p: &'a str,
    v: &'a str,
    e: Option<&'a str>,
}

/// Stores the points, keeping a revision for each replaced value, in three
/// statements whatever the batch size (the points travel as one JSON array).
/// Returns (periods that were new, values replaced).
async fn upsert_points(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &PreparedBatch,
    now: Timestamp,
) -> Result<(i64, u32)> {
    let points: Vec<JsonPoint> = batch
        .points()
        .iter()
        .map(|p| JsonPoint {
            p: &p.period,
            v: &p.value,
            e: p.external_id.as_deref(),
        })
        .collect();
    let points = serde_json::to_string(&points).expect("points serialize");
    // CROSS JOIN keeps json_each as the outer loop, so each point is one primary-key
    // lookup (SQLite would otherwise scan the points table per point).
    let existing: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM json_each(?1) j CROSS JOIN points p \
         ON p.stream_id = ?2 AND p.period = json_extract(j.value, '$.p')",
    )
    .bind(&points)
    .bind(batch.stream_id().as_str())
    .fetch_one(&mut **tx)
    .await?;
    let revised = sqlx::query(
        "INSERT INTO revisions (stream_id, period, old_value, new_value, batch_id, key_id, revised_at) \
         SELECT p.stream_id, p.period, p.value, json_extract(j.value, '$.v'), ?3, ?4, ?5 \
         FROM json_each(?1) j CROSS JOIN points p ON p.stream_id = ?2 AND p.period = json_extract(j.value, '$.p') \
         WHERE p.value IS NOT json_extract(j.value, '$.v') OR p.external_id IS NOT json_extract(j.value, '$.e')",
    )
    .bind(&points)
    .bind(batch.stream_id().as_str())
    .bind(batch.batch_id())
    .bind(batch.key_id().as_str())
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "INSERT INTO points (stream_id, period, value, external_id, batch_id, key_id, updated_at) \
         SELECT ?2, json_extract(value, '$.p'), json_extract(value, '$.v'), json_extract(value, '$.e'), ?3, ?4, ?5 \
         FROM json_each(?1) WHERE true \
         ON CONFLICT (stream_id, period) DO UPDATE SET value = excluded.value, \
         external_id = excluded.external_id, batch_id = excluded.batch_id, key_id = excluded.key_id, \
         updated_at = excluded.updated_at, revision_count = points.revision_count + 1 \
         WHERE points.value IS NOT excluded.value OR points.external_id IS NOT excluded.external_id",
    )
    .bind(&points)
    .bind(batch.stream_id().as_str())
    .bind(batch.batch_id())
    .bind(batch.key_id().as_str())
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok((batch.points().len() as i64 - existing, revised as u32))
}

pub(super) async fn list_points(
    pool: &SqlitePool,
    stream: &StreamId,
    from: Option<&str>,
    to: Option<&str>,
    limit: u32,
) -> Result<Vec<PointRecord>> {
    let sql = format!(
        "SELECT {POINT_COLUMNS} WHERE stream_id = ?1 AND (?2 IS NULL OR period >= ?2) \
         AND (?3 IS NULL OR period <= ?3) ORDER BY period LIMIT ?4"
    );
    let rows = sqlx::query(&sql)
        .bind(stream.as_str())
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(point_from_row).collect()
}

pub(super) async fn points_updated_after(
    pool: &SqlitePool,
    stream: &StreamId,
    after: (Timestamp, Option<&str>),
    limit: u32,
) -> Result<Vec<PointRecord>> {
    let sql = format!(
        "SELECT {POINT_COLUMNS} WHERE stream_id = ?1 \
         AND (updated_at > ?2 OR (updated_at = ?2 AND ?3 IS NOT NULL AND period > ?3)) \
         ORDER BY updated_at, period LIMIT ?4"
    );
    let rows = sqlx::query(&sql)
        .bind(stream.as_str())
        .bind(to_micros(after.0))
        .bind(after.1)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(point_from_row).collect()
}

pub(super) async fn latest_point(
    pool: &SqlitePool,
    stream: &StreamId,
) -> Result<Option<PointRecord>> {
    let sql = format!("SELECT {POINT_COLUMNS} WHERE stream_id = ? ORDER BY period DESC LIMIT 1");
    let row = sqlx::query(&sql)
        .bind(stream.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(point_from_row).transpose()
}

pub(super) async fn list_revisions(
    pool: &SqlitePool,
    stream: &StreamId,
    period: &str,
) -> Result<Vec<RevisionRecord>> {
    let rows = sqlx::query(
        "SELECT period, old_value, new_value, batch_id, key_id, revised_at FROM revisions \
         WHERE stream_id = ? AND period = ? ORDER BY id",
    )
    .bind(stream.as_str())
    .bind(period)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RevisionRecord {
                period: row.get("period"),
                old_value: row.get("old_value"),
                new_value: row.get("new_value"),
                batch_id: row.get("batch_id"),
                key_id: row.get("key_id"),
                revised_at: from_micros(row.get("revised_at"))?,
            })
        })
        .collect()
}

#[async_trait]
impl PointStore for SqliteStore {
    async fn commit_batches(
        &self,
        batches: &[PreparedBatch],
        now: Timestamp,
    ) -> Result<Vec<Result<PublishOutcome, CommitRefusal>>> {
        let mut tx = self.write().await?;
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            results.push(commit_one(&mut tx, batch, now).await?);
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn prune_batches(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM batches WHERE accepted_at < ?")
            .bind(to_micros(before))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    async fn list_points(
        &self,
        stream: &StreamId,
        from: Option<&str>,
        to: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        list_points(&self.pool, stream, from, to, limit).await
    }
    async fn latest_point(&self, stream: &StreamId) -> Result<Option<PointRecord>> {
        latest_point(&self.pool, stream).await
    }
    async fn points_updated_after(
        &self,
        stream: &StreamId,
        after: (Timestamp, Option<&str>),
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        points_updated_after(&self.pool, stream, after, limit).await
    }
    async fn list_revisions(&self, stream: &StreamId, period: &str) -> Result<Vec<RevisionRecord>> {
        list_revisions(&self.pool, stream, period).await
    }
}
