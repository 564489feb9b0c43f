//! Reading the store's rows into kpistream's types: one text for both SQL backends,
//! instantiated for SQLite's rows and PostgreSQL's (the tables and columns are the
//! same). A value that does not read as its type is `StoreError::Corrupt`.

macro_rules! row_readers {
    ($row:ty) => {
        use sqlx::Row;

        use crate::access::{TokenInfo, User};
        use crate::auth::Role;
        use crate::ids::{KeyId, OrgId, StreamId, UserId};
        use crate::store::shared::{opt_micros, parse_frequency};
        use crate::store::{PointRecord, Result, StoreError, corrupt, from_micros};
        use crate::stream::{Category, KeyOrigin, Stream, StreamDefinition, StreamKey};
        use crate::value::ValueType;

        /// The `value_type` and `currency` columns of a `streams` row.
        pub(crate) fn value_type_from_row(row: &$row) -> Result<ValueType> {
            let currency: Option<String> = row.try_get("currency")?;
            ValueType::from_parts(row.try_get("value_type")?, currency.as_deref()).map_err(corrupt)
        }

        pub(crate) fn stream_from_row(row: &$row) -> Result<Stream> {
            let id: String = row.try_get("id")?;
            let org: String = row.try_get("org_id")?;
            Ok(Stream {
                id: StreamId::parse(&id).map_err(corrupt)?,
                org_id: OrgId::parse(&org).map_err(corrupt)?,
                definition: StreamDefinition {
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    category: row.try_get("category")?,
                    frequency: parse_frequency(row.try_get("frequency")?)?,
                    value_type: value_type_from_row(row)?,
                    time_zone: row.try_get("time_zone")?,
                },
                disabled: row.try_get("disabled")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                updated_at: from_micros(row.try_get("updated_at")?)?,
                latest_period: row.try_get("latest_period")?,
                last_data_at: opt_micros(row.try_get("last_data_at")?)?,
                point_count: u64::try_from(row.try_get::<i64, _>("point_count")?)
                    .map_err(corrupt)?,
            })
        }

        pub(crate) fn public_key_bytes(bytes: Vec<u8>) -> Result<[u8; 32]> {
            bytes
                .try_into()
                .map_err(|_| StoreError::Corrupt("a stored public key is not 32 bytes".into()))
        }

        pub(crate) fn key_from_row(row: &$row) -> Result<StreamKey> {
            let key_id: String = row.try_get("key_id")?;
            Ok(StreamKey {
                key_id: KeyId::parse(&key_id).map_err(corrupt)?,
                public_key: public_key_bytes(row.try_get("public_key")?)?,
                origin: KeyOrigin::parse(row.try_get("origin")?),
                created_at: from_micros(row.try_get("created_at")?)?,
                last_used_at: opt_micros(row.try_get("last_used_at")?)?,
                revoked_at: opt_micros(row.try_get("revoked_at")?)?,
            })
        }

        pub(crate) fn category_from_row(row: &$row) -> Result<Category> {
            Ok(Category {
                name: row.try_get("name")?,
                stream_count: u64::try_from(row.try_get::<i64, _>("stream_count")?)
                    .map_err(corrupt)?,
                created_at: from_micros(row.try_get("created_at")?)?,
            })
        }

        pub(crate) fn user_from_row(row: &$row) -> Result<User> {
            Ok(User {
                id: UserId::parse(row.try_get("id")?).map_err(corrupt)?,
                name: row.try_get("name")?,
                role: Role::parse(row.try_get("role")?),
                created_at: from_micros(row.try_get("created_at")?)?,
            })
        }

        pub(crate) fn token_from_row(row: &$row) -> Result<TokenInfo> {
            Ok(TokenInfo {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                user: row.try_get("user_name")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                last_used_at: opt_micros(row.try_get("last_used_at")?)?,
                expires_at: opt_micros(row.try_get("expires_at")?)?,
                revoked_at: opt_micros(row.try_get("revoked_at")?)?,
            })
        }

        pub(crate) fn point_from_row(row: &$row) -> Result<PointRecord> {
            Ok(PointRecord {
                period: row.try_get("period")?,
                value: row.try_get("value")?,
                external_id: row.try_get("external_id")?,
                updated_at: from_micros(row.try_get("updated_at")?)?,
                batch_id: row.try_get("batch_id")?,
                key_id: row.try_get("key_id")?,
                revision_count: u32::try_from(row.try_get::<i64, _>("revision_count")?)
                    .map_err(corrupt)?,
            })
        }
    };
}

/// SQLite's rows.
pub(crate) mod sqlite {
    row_readers!(sqlx::sqlite::SqliteRow);
}

/// PostgreSQL's rows.
pub(crate) mod postgres {
    row_readers!(sqlx::postgres::PgRow);
}
