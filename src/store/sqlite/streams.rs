//! The SQLite side of streams: categories, streams and their keys, and the key lookup
//! the publish path checks each batch against.

use crate::store::rows::sqlite::{
    category_from_row, key_from_row, public_key_bytes, stream_from_row, value_type_from_row,
};
use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Row, Sqlite, SqliteExecutor, Transaction};

use super::{SqliteStore, access, opt_micros, parse_frequency, stream_not_found, unique};
use crate::access::GrantSpec;
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::store::{NewKey, Result, StoreError, StreamStore, to_micros};
use crate::stream::{
    Category, DeletedCounts, PublishingKey, Stream, StreamDefinition, StreamKey, StreamUpdate,
};

const STREAM_COLUMNS: &str = "s.id, s.org_id, s.name, s.description, c.name AS category, \
     s.frequency, s.value_type, s.currency, s.time_zone, s.disabled, s.created_at, \
     s.updated_at, s.latest_period, s.last_data_at, s.point_count \
     FROM streams s LEFT JOIN categories c ON c.id = s.category_id";

const KEY_COLUMNS: &str =
    "key_id, public_key, origin, created_at, last_used_at, revoked_at FROM stream_keys";

const CATEGORY_SELECT: &str = "SELECT c.name, c.created_at, \
     (SELECT COUNT(*) FROM streams s WHERE s.category_id = c.id) AS stream_count \
     FROM categories c";

async fn category_id(
    tx: &mut Transaction<'_, Sqlite>,
    org: &OrgId,
    name: Option<&str>,
) -> Result<Option<i64>> {
    let Some(name) = name else { return Ok(None) };
    let id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM categories WHERE org_id = ? AND name = ?")
            .bind(org.as_str())
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    id.map(Some).ok_or_else(|| {
        StoreError::NotFound(format!(
            "category {name:?} (create it first with `kpistream category create`)"
        ))
    })
}

/// The stream, read in a transaction or straight from the pool.
async fn stream_in(db: impl SqliteExecutor<'_>, org: &OrgId, id: &StreamId) -> Result<Stream> {
    let sql = format!("SELECT {STREAM_COLUMNS} WHERE s.id = ? AND s.org_id = ?");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .bind(org.as_str())
        .fetch_optional(db)
        .await?;
    row.as_ref()
        .map(stream_from_row)
        .transpose()?
        .ok_or_else(|| stream_not_found(id))
}

async fn key_in(
    tx: &mut Transaction<'_, Sqlite>,
    stream: &StreamId,
    key: &KeyId,
) -> Result<StreamKey> {
    let sql = format!("SELECT {KEY_COLUMNS} WHERE stream_id = ? AND key_id = ?");
    let row = sqlx::query(&sql)
        .bind(stream.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref()
        .map(key_from_row)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("key {key} of stream {stream}")))
}

async fn insert_key(
    tx: &mut Transaction<'_, Sqlite>,
    stream: &StreamId,
    key: &NewKey,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO stream_keys (stream_id, key_id, public_key, origin, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(stream.as_str())
    .bind(key.key_id.as_str())
    .bind(&key.public_key[..])
    .bind(key.origin.as_str())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl StreamStore for SqliteStore {
    async fn create_category(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<Category> {
        let inserted =
            sqlx::query("INSERT INTO categories (org_id, name, created_at) VALUES (?, ?, ?)")
                .bind(org.as_str())
                .bind(name)
                .bind(to_micros(now))
                .execute(&self.writer)
                .await;
        unique(inserted, || format!("category {name:?}"))?;
        Ok(Category {
            name: name.to_owned(),
            stream_count: 0,
            created_at: now,
        })
    }

    async fn list_categories(&self, org: &OrgId) -> Result<Vec<Category>> {
        let sql = format!("{CATEGORY_SELECT} WHERE c.org_id = ? ORDER BY c.name");
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(category_from_row).collect()
    }

    async fn rename_category(&self, org: &OrgId, name: &str, new_name: &str) -> Result<Category> {
        let mut tx = self.write().await?;
        let updated = sqlx::query("UPDATE categories SET name = ? WHERE org_id = ? AND name = ?")
            .bind(new_name)
            .bind(org.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await;
        if unique(updated, || format!("category {new_name:?}"))?.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("category {name:?}")));
        }
        for sql in crate::store::notify::RENAME_CATEGORY_SCOPES {
            sqlx::query(sql)
                .bind(new_name)
                .bind(org.as_str())
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let sql = format!("{CATEGORY_SELECT} WHERE c.org_id = ? AND c.name = ?");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(new_name)
            .fetch_one(&mut *tx)
            .await?;
        let category = category_from_row(&row)?;
        tx.commit().await?;
        Ok(category)
    }

    async fn delete_category(&self, org: &OrgId, name: &str) -> Result<()> {
        let mut tx = self.write().await?;
        let Some(id) = category_id(&mut tx, org, Some(name))
            .await
            .map_err(|_| StoreError::NotFound(format!("category {name:?}")))?
        else {
            return Ok(());
        };
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams WHERE category_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "category {name:?} is used by {used} stream(s): move or delete them first"
            )));
        }
        sqlx::query("DELETE FROM categories WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_stream(
        &self,
        org: &OrgId,
        creator: &UserId,
        id: &StreamId,
        definition: &StreamDefinition,
        key: &NewKey,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<(Stream, StreamKey)> {
        let mut tx = self.write().await?;
        let category = category_id(&mut tx, org, definition.category.as_deref()).await?;
        let at = to_micros(now);
        sqlx::query(
            "INSERT INTO streams (id, org_id, name, description, category_id, frequency, value_type, \
             currency, time_zone, created_by, created_at, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM streams))",
        )
        .bind(id.as_str())
        .bind(org.as_str())
        .bind(&definition.name)
        .bind(&definition.description)
        .bind(category)
        .bind(definition.frequency.as_str())
        .bind(definition.value_type.kind())
        .bind(definition.value_type.currency_code())
        .bind(&definition.time_zone)
        .bind(creator.as_str())
        .bind(at)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        insert_key(&mut tx, id, key, at).await?;
        access::upsert_grants(&mut tx, org, id, grants, now).await?;
        // The creator manages the stream, even if `grants` named them with read.
        sqlx::query(
            "INSERT INTO grants (stream_id, grantee_kind, grantee_id, access, created_at) VALUES (?, 'user', ?, 'manage', ?) \
             ON CONFLICT (stream_id, grantee_kind, grantee_id) DO UPDATE SET access = 'manage'",
        )
        .bind(id.as_str())
        .bind(creator.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let stream = stream_in(&mut *tx, org, id).await?;
        let key = key_in(&mut tx, id, &key.key_id).await?;
        tx.commit().await?;
        Ok((stream, key))
    }

    async fn list_streams(&self, org: &OrgId) -> Result<Vec<Stream>> {
        let sql = format!("SELECT {STREAM_COLUMNS} WHERE s.org_id = ? ORDER BY s.name, s.id");
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stream_from_row).collect()
    }

    async fn all_streams(&self, limit: u32) -> Result<(Vec<Stream>, u64)> {
        let sql = format!("SELECT {STREAM_COLUMNS} ORDER BY s.org_id, s.name, s.id LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM streams")
            .fetch_one(&self.pool)
            .await?;
        let streams = rows.iter().map(stream_from_row).collect::<Result<_>>()?;
        Ok((streams, u64::try_from(total).unwrap_or_default()))
    }

    async fn get_stream(&self, org: &OrgId, id: &StreamId) -> Result<Stream> {
        stream_in(&self.pool, org, id).await
    }

    async fn update_stream(
        &self,
        org: &OrgId,
        id: &StreamId,
        update: &StreamUpdate,
        now: Timestamp,
    ) -> Result<Stream> {
        let mut tx = self.write().await?;
        let current = stream_in(&mut *tx, org, id).await?;
        let next = update.apply(&current.definition);
        let shape_changes = next.frequency != current.definition.frequency
            || next.value_type != current.definition.value_type
            || next.time_zone != current.definition.time_zone;
        if shape_changes && current.point_count > 0 {
            return Err(StoreError::Conflict(format!(
                "stream {id} already holds {} point(s): its frequency, value type and time zone \
                 are fixed once data exists (create a new stream instead)",
                current.point_count
            )));
        }
        let category = category_id(&mut tx, org, next.category.as_deref()).await?;
        sqlx::query(
            "UPDATE streams SET name = ?, description = ?, category_id = ?, frequency = ?, \
             value_type = ?, currency = ?, time_zone = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&next.name)
        .bind(&next.description)
        .bind(category)
        .bind(next.frequency.as_str())
        .bind(next.value_type.kind())
        .bind(next.value_type.currency_code())
        .bind(&next.time_zone)
        .bind(to_micros(now))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let stream = stream_in(&mut *tx, org, id).await?;
        tx.commit().await?;
        Ok(stream)
    }

    async fn set_stream_disabled(
        &self,
        org: &OrgId,
        id: &StreamId,
        disabled: bool,
        now: Timestamp,
    ) -> Result<Stream> {
        let mut tx = self.write().await?;
        stream_in(&mut *tx, org, id).await?;
        sqlx::query("UPDATE streams SET disabled = ?, updated_at = ? WHERE id = ?")
            .bind(disabled)
            .bind(to_micros(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let stream = stream_in(&mut *tx, org, id).await?;
        tx.commit().await?;
        Ok(stream)
    }

    async fn delete_stream(&self, org: &OrgId, id: &StreamId) -> Result<DeletedCounts> {
        let mut tx = self.write().await?;
        stream_in(&mut *tx, org, id).await?;
        let mut counts = DeletedCounts::default();
        // Points, revisions and batch ids name the stream by its `seq`.
        for (sql, slot) in [
            (
                "DELETE FROM points WHERE stream = (SELECT seq FROM streams WHERE id = ?)",
                Some(&mut counts.points),
            ),
            (
                "DELETE FROM revisions WHERE stream = (SELECT seq FROM streams WHERE id = ?)",
                Some(&mut counts.revisions),
            ),
            (
                "DELETE FROM stream_keys WHERE stream_id = ?",
                Some(&mut counts.keys),
            ),
            (
                "DELETE FROM batches WHERE stream = (SELECT seq FROM streams WHERE id = ?)",
                None,
            ),
        ] {
            let deleted = sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let Some(slot) = slot {
                *slot = deleted;
            }
        }
        sqlx::query("DELETE FROM streams WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn add_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &NewKey,
        now: Timestamp,
    ) -> Result<StreamKey> {
        let mut tx = self.write().await?;
        stream_in(&mut *tx, org, stream).await?;
        let same: Option<String> = sqlx::query_scalar(
            "SELECT key_id FROM stream_keys WHERE stream_id = ? AND public_key = ?",
        )
        .bind(stream.as_str())
        .bind(&key.public_key[..])
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = same {
            return Err(StoreError::AlreadyExists(format!(
                "this public key (as {existing} of stream {stream})"
            )));
        }
        insert_key(&mut tx, stream, key, to_micros(now)).await?;
        let key = key_in(&mut tx, stream, &key.key_id).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn revoke_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &KeyId,
        now: Timestamp,
    ) -> Result<StreamKey> {
        let mut tx = self.write().await?;
        stream_in(&mut *tx, org, stream).await?;
        key_in(&mut tx, stream, key).await?;
        sqlx::query(
            "UPDATE stream_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE stream_id = ? AND key_id = ?",
        )
        .bind(to_micros(now))
        .bind(stream.as_str())
        .bind(key.as_str())
        .execute(&mut *tx)
        .await?;
        let key = key_in(&mut tx, stream, key).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn list_keys(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<StreamKey>> {
        let mut tx = self.pool.begin().await?;
        stream_in(&mut *tx, org, stream).await?;
        let sql = format!("SELECT {KEY_COLUMNS} WHERE stream_id = ? ORDER BY created_at, key_id");
        let rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .fetch_all(&mut *tx)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn publishing_key(
        &self,
        stream: &StreamId,
        key: &KeyId,
    ) -> Result<Option<PublishingKey>> {
        let row = sqlx::query(
            "SELECT k.public_key, k.revoked_at, s.frequency, s.value_type, s.currency, s.time_zone, s.disabled \
             FROM stream_keys k JOIN streams s ON s.id = k.stream_id WHERE k.stream_id = ? AND k.key_id = ?",
        )
        .bind(stream.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PublishingKey {
            public_key: public_key_bytes(row.get("public_key"))?,
            revoked_at: opt_micros(row.get("revoked_at"))?,
            frequency: parse_frequency(row.get("frequency"))?,
            value_type: value_type_from_row(&row)?,
            time_zone: row.get("time_zone"),
            disabled: row.get("disabled"),
        }))
    }
}
