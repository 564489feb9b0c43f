//! The SQLite side of datapoints: reading points and revisions back; the publish path
//! commits them on its own writer thread (see `writer`).

use crate::store::rows::sqlite::point_from_row;
use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use std::sync::Arc;

use super::SqliteStore;
use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome};
use crate::ids::StreamId;
use crate::store::{PointRecord, PointStore, Result, RevisionRecord, from_micros, to_micros};

const POINT_COLUMNS: &str =
    "period, value, external_id, updated_at, batch_id, key_id, revision_count FROM points";

pub(super) async fn list_points(
    pool: &SqlitePool,
    stream: &StreamId,
    from: Option<&str>,
    to: Option<&str>,
    limit: u32,
) -> Result<Vec<PointRecord>> {
    let sql = format!(
        "SELECT {POINT_COLUMNS} WHERE stream = (SELECT seq FROM streams WHERE id = ?1) AND (?2 IS NULL OR period >= ?2) \
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
        "SELECT {POINT_COLUMNS} WHERE stream = (SELECT seq FROM streams WHERE id = ?1) \
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
    let sql = format!(
        "SELECT {POINT_COLUMNS} WHERE stream = (SELECT seq FROM streams WHERE id = ?) ORDER BY period DESC LIMIT 1"
    );
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
         WHERE stream = (SELECT seq FROM streams WHERE id = ?) AND period = ? ORDER BY id",
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
        batches: Arc<Vec<PreparedBatch>>,
        now: Timestamp,
    ) -> Result<Vec<Result<PublishOutcome, CommitRefusal>>> {
        self.points.commit(batches, now).await
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
