//! The PostgreSQL side of streams: categories, streams and their keys, and the key lookup
//! the publish path checks each batch against. Ported from `sqlite/streams.rs` with the
//! same answers and errors; what differs is said where it does. Category names are
//! unique per organisation whatever their case (`UNIQUE INDEX (org_id, lower(name))`),
//! so they are looked up by `lower(name)`, where SQLite's column is `COLLATE NOCASE`.
//! Writes that read before they change lock the stream's row (`FOR UPDATE OF s`), as
//! SQLite's one writer serialises them.

use crate::store::rows::postgres::{
    category_from_row, key_from_row, public_key_bytes, stream_from_row, value_type_from_row,
};
use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{PgExecutor, Postgres, Row, Transaction};

use super::{PostgresStore, access};
use crate::access::GrantSpec;
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::store::shared::{opt_micros, parse_frequency, stream_not_found, unique};
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
     (SELECT count(*) FROM streams s WHERE s.category_id = c.id) AS stream_count \
     FROM categories c";

/// The order SQLite lists categories in: its `NOCASE` folds ASCII letters only and then
/// compares bytes, which is `lower` under the "C" collation.
const CATEGORY_ORDER: &str = "lower(c.name COLLATE \"C\")";

fn category_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "category {name:?} (create it first with `kpistream category create`)"
    ))
}

async fn category_id(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    name: Option<&str>,
) -> Result<Option<i64>> {
    let Some(name) = name else { return Ok(None) };
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM categories WHERE org_id = $1 AND lower(name) = lower($2)",
    )
    .bind(org.as_str())
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    id.map(Some).ok_or_else(|| category_not_found(name))
}

/// The stream, read in a transaction or straight from the pool.
async fn stream_in(db: impl PgExecutor<'_>, org: &OrgId, id: &StreamId) -> Result<Stream> {
    stream_query(db, org, id, "").await
}

/// The stream, its row locked until the transaction ends.
async fn stream_for_update(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    id: &StreamId,
) -> Result<Stream> {
    stream_query(&mut **tx, org, id, " FOR UPDATE OF s").await
}

async fn stream_query(
    db: impl PgExecutor<'_>,
    org: &OrgId,
    id: &StreamId,
    lock: &str,
) -> Result<Stream> {
    let sql = format!("SELECT {STREAM_COLUMNS} WHERE s.id = $1 AND s.org_id = $2{lock}");
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
    tx: &mut Transaction<'_, Postgres>,
    stream: &StreamId,
    key: &KeyId,
) -> Result<StreamKey> {
    let sql = format!("SELECT {KEY_COLUMNS} WHERE stream_id = $1 AND key_id = $2");
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
    tx: &mut Transaction<'_, Postgres>,
    (org, stream): (&OrgId, &StreamId),
    key: &NewKey,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO stream_keys (stream_id, org_id, key_id, public_key, origin, created_at) \
         VALUES ($1, $6, $2, $3, $4, $5)",
    )
    .bind(stream.as_str())
    .bind(key.key_id.as_str())
    .bind(&key.public_key[..])
    .bind(key.origin.as_str())
    .bind(at)
    .bind(org.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl StreamStore for PostgresStore {
    async fn create_category(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<Category> {
        let inserted =
            sqlx::query("INSERT INTO categories (org_id, name, created_at) VALUES ($1, $2, $3)")
                .bind(org.as_str())
                .bind(name)
                .bind(to_micros(now))
                .execute(&self.pool)
                .await;
        unique(inserted, || format!("category {name:?}"))?;
        Ok(Category {
            name: name.to_owned(),
            stream_count: 0,
            created_at: now,
        })
    }

    async fn list_categories(&self, org: &OrgId) -> Result<Vec<Category>> {
        let sql = format!("{CATEGORY_SELECT} WHERE c.org_id = $1 ORDER BY {CATEGORY_ORDER}");
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(category_from_row).collect()
    }

    async fn rename_category(&self, org: &OrgId, name: &str, new_name: &str) -> Result<Category> {
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE categories SET name = $1 WHERE org_id = $2 AND lower(name) = lower($3)",
        )
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
        let sql = format!("{CATEGORY_SELECT} WHERE c.org_id = $1 AND lower(c.name) = lower($2)");
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
        // Locked: a stream being created in it holds a key-share lock on the row, so
        // this waits for it and then counts it.
        let id: i64 = sqlx::query_scalar(
            "SELECT id FROM categories WHERE org_id = $1 AND lower(name) = lower($2) FOR UPDATE",
        )
        .bind(org.as_str())
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("category {name:?}")))?;
        let used: i64 = sqlx::query_scalar("SELECT count(*) FROM streams WHERE category_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "category {name:?} is used by {used} stream(s): move or delete them first"
            )));
        }
        sqlx::query("DELETE FROM categories WHERE id = $1")
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
        // `seq` is an identity column: PostgreSQL numbers the stream.
        sqlx::query(
            "INSERT INTO streams (id, org_id, name, description, category_id, frequency, value_type, \
             currency, time_zone, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        sqlx::query("INSERT INTO stream_routes (stream_id, org_id) VALUES ($1, $2)")
            .bind(id.as_str())
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        insert_key(&mut tx, (org, id), key, at).await?;
        access::upsert_grants(&mut tx, org, id, grants, now).await?;
        // The creator manages the stream, even if `grants` named them with read.
        sqlx::query(
            "INSERT INTO grants (stream_id, org_id, grantee_kind, grantee_id, access, created_at) \
             VALUES ($1, $4, 'user', $2, 'manage', $3) \
             ON CONFLICT (stream_id, grantee_kind, grantee_id, org_id) DO UPDATE SET access = 'manage'",
        )
        .bind(id.as_str())
        .bind(creator.as_str())
        .bind(at)
        .bind(org.as_str())
        .execute(&mut *tx)
        .await?;
        let stream = stream_in(&mut *tx, org, id).await?;
        let key = key_in(&mut tx, id, &key.key_id).await?;
        tx.commit().await?;
        Ok((stream, key))
    }

    async fn list_streams(&self, org: &OrgId) -> Result<Vec<Stream>> {
        // Byte order, as SQLite's BINARY collation, whatever the database's collation.
        let sql = format!(
            "SELECT {STREAM_COLUMNS} WHERE s.org_id = $1 \
             ORDER BY s.name COLLATE \"C\", s.id COLLATE \"C\""
        );
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stream_from_row).collect()
    }

    async fn all_streams(&self, limit: u32) -> Result<(Vec<Stream>, u64)> {
        let sql = format!(
            "SELECT {STREAM_COLUMNS} \
             ORDER BY s.org_id COLLATE \"C\", s.name COLLATE \"C\", s.id COLLATE \"C\" LIMIT $1"
        );
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
        let current = stream_for_update(&mut tx, org, id).await?;
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
            "UPDATE streams SET name = $1, description = $2, category_id = $3, frequency = $4, \
             value_type = $5, currency = $6, time_zone = $7, updated_at = $8 WHERE id = $9",
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
        self.announce_stream(&mut tx, id).await?;
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
        stream_for_update(&mut tx, org, id).await?;
        sqlx::query("UPDATE streams SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(disabled)
            .bind(to_micros(now))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let stream = stream_in(&mut *tx, org, id).await?;
        self.announce_stream(&mut tx, id).await?;
        tx.commit().await?;
        Ok(stream)
    }

    async fn delete_stream(&self, org: &OrgId, id: &StreamId) -> Result<DeletedCounts> {
        let mut tx = self.write().await?;
        // Points, revisions and batch ids name the stream by its `seq`; bound as a value,
        // it lets the planner go straight to the stream's partition.
        let seq: i64 =
            sqlx::query_scalar("SELECT seq FROM streams WHERE id = $1 AND org_id = $2 FOR UPDATE")
                .bind(id.as_str())
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| stream_not_found(id))?;
        let mut counts = DeletedCounts::default();
        for (sql, slot) in [
            (
                "DELETE FROM points WHERE stream = $1",
                Some(&mut counts.points),
            ),
            (
                "DELETE FROM revisions WHERE stream = $1",
                Some(&mut counts.revisions),
            ),
            ("DELETE FROM batches WHERE stream = $1", None),
        ] {
            let deleted = sqlx::query(sql)
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let Some(slot) = slot {
                *slot = deleted;
            }
        }
        counts.keys = sqlx::query("DELETE FROM stream_keys WHERE stream_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Its grants go with it (`ON DELETE CASCADE`); its route has no foreign key.
        sqlx::query("DELETE FROM streams WHERE id = $1 AND org_id = $2")
            .bind(id.as_str())
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM stream_routes WHERE stream_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        self.announce_stream(&mut tx, id).await?;
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
        // Locked, so two requests adding one public key are answered one after the other.
        stream_for_update(&mut tx, org, stream).await?;
        let same: Option<String> = sqlx::query_scalar(
            "SELECT key_id FROM stream_keys WHERE stream_id = $1 AND public_key = $2",
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
        insert_key(&mut tx, (org, stream), key, to_micros(now)).await?;
        let key = key_in(&mut tx, stream, &key.key_id).await?;
        self.announce_stream(&mut tx, stream).await?;
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
            "UPDATE stream_keys SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE stream_id = $2 AND key_id = $3",
        )
        .bind(to_micros(now))
        .bind(stream.as_str())
        .bind(key.as_str())
        .execute(&mut *tx)
        .await?;
        let key = key_in(&mut tx, stream, key).await?;
        self.announce_stream(&mut tx, stream).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn list_keys(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<StreamKey>> {
        let mut tx = self.pool.begin().await?;
        stream_in(&mut *tx, org, stream).await?;
        let sql = format!(
            "SELECT {KEY_COLUMNS} WHERE stream_id = $1 ORDER BY created_at, key_id COLLATE \"C\""
        );
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
            "SELECT k.public_key, k.revoked_at, s.frequency, s.value_type, s.currency, s.time_zone, \
             s.disabled FROM stream_keys k JOIN streams s ON s.id = k.stream_id \
             WHERE k.stream_id = $1 AND k.key_id = $2",
        )
        .bind(stream.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PublishingKey {
            public_key: public_key_bytes(row.try_get("public_key")?)?,
            revoked_at: opt_micros(row.try_get("revoked_at")?)?,
            frequency: parse_frequency(row.try_get("frequency")?)?,
            value_type: value_type_from_row(&row)?,
            time_zone: row.try_get("time_zone")?,
            disabled: row.try_get("disabled")?,
        }))
    }
}
