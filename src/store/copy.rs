//! Moving a whole deployment from SQLite to PostgreSQL (`kpistream copy`): every table,
//! row for row, read in one snapshot of the source and written in one transaction of
//! the target, so the target holds all of it or none of it. The two schemas have the
//! same tables and columns (see `migrations/postgres`) but for PostgreSQL's `org_id` on
//! every table of an organisation's rows and its `stream_routes`, found through the
//! stream, user or team a SQLite row names; beyond that a row needs no translation but
//! SQLite's integers that PostgreSQL keeps as booleans.

use futures::TryStreamExt;
use sqlx::{Row, SqliteConnection};

use super::{PostgresStore, Result, SqliteStore, StoreError};

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// An integer 0/1 in SQLite, a `BOOLEAN` in PostgreSQL.
    Bool,
    Bytes,
}

use Kind::{Bool, Bytes, Int, Text};

/// A table, its columns, and the order its rows are read in (so that a row comes after
/// those it references: an audit or run id, a revision id, keep their order).
struct Table {
    name: &'static str,
    /// The SQLite table its rows come from (the same name, but for `stream_routes`).
    source: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// Columns the SQLite table does not have, and the expression that gives them (an
    /// organisation's id, found through the row the SQLite table references).
    computed: &'static [(&'static str, &'static str)],
    order: &'static str,
    /// An identity column whose sequence must continue after the copied ids.
    identity: Option<&'static str>,
}

impl Table {
    /// Every column written: the ones read as they are, then the computed ones (text),
    /// each with what the SQLite `SELECT` reads for it.
    fn all(&self) -> impl Iterator<Item = (&'static str, Kind, &'static str)> {
        let read = self.columns.iter().map(|&(name, kind)| (name, kind, name));
        let computed = self.computed.iter().map(|&(name, from)| (name, Text, from));
        read.chain(computed)
    }
}

/// The organisation of a row naming a stream by its id, by its number, a user or a team.
const ORG_OF_STREAM_ID: &str = "(SELECT s.org_id FROM streams s WHERE s.id = stream_id)";
const ORG_OF_STREAM: &str = "(SELECT s.org_id FROM streams s WHERE s.seq = stream)";
const ORG_OF_USER: &str = "(SELECT u.org_id FROM users u WHERE u.id = user_id)";
const ORG_OF_TEAM: &str = "(SELECT t.org_id FROM teams t WHERE t.id = team_id)";

/// Every table holding data, in an order where references point backwards.
const TABLES: &[Table] = &[
    Table {
        name: "orgs",
        source: "orgs",
        computed: &[],
        columns: &[("id", Text), ("name", Text), ("created_at", Int)],
        order: "id",
        identity: None,
    },
    Table {
        name: "users",
        source: "users",
        computed: &[],
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("role", Text),
            ("created_at", Int),
            ("server_admin", Bool),
        ],
        order: "id",
        identity: None,
    },
    Table {
        name: "tokens",
        source: "tokens",
        computed: &[("org_id", ORG_OF_USER)],
        columns: &[
            ("id", Text),
            ("user_id", Text),
            ("name", Text),
            ("hash", Bytes),
            ("created_at", Int),
            ("last_used_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
        ],
        order: "id",
        identity: None,
    },
    Table {
        name: "categories",
        source: "categories",
        computed: &[],
        columns: &[
            ("id", Int),
            ("org_id", Text),
            ("name", Text),
            ("created_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "streams",
        source: "streams",
        computed: &[],
        columns: &[
            ("id", Text),
            ("seq", Int),
            ("org_id", Text),
            ("name", Text),
            ("description", Text),
            ("category_id", Int),
            ("frequency", Text),
            ("value_type", Text),
            ("currency", Text),
            ("time_zone", Text),
            ("disabled", Bool),
            ("created_by", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("latest_period", Text),
            ("last_data_at", Int),
            ("point_count", Int),
        ],
        order: "seq",
        identity: Some("seq"),
    },
    Table {
        name: "stream_routes",
        source: "streams",
        computed: &[("stream_id", "id")],
        columns: &[("org_id", Text)],
        order: "id",
        identity: None,
    },
    Table {
        name: "stream_keys",
        source: "stream_keys",
        computed: &[("org_id", ORG_OF_STREAM_ID)],
        columns: &[
            ("stream_id", Text),
            ("key_id", Text),
            ("public_key", Bytes),
            ("origin", Text),
            ("created_at", Int),
            ("last_used_at", Int),
            ("revoked_at", Int),
        ],
        order: "stream_id, created_at, key_id",
        identity: None,
    },
    Table {
        name: "teams",
        source: "teams",
        computed: &[],
        columns: &[
            ("id", Text),
            ("org_id", Text),
            ("name", Text),
            ("created_at", Int),
        ],
        order: "id",
        identity: None,
    },
    Table {
        name: "team_members",
        source: "team_members",
        computed: &[("org_id", ORG_OF_TEAM)],
        columns: &[("team_id", Text), ("user_id", Text)],
        order: "team_id, user_id",
        identity: None,
    },
    Table {
        name: "grants",
        source: "grants",
        computed: &[("org_id", ORG_OF_STREAM_ID)],
        columns: &[
            ("stream_id", Text),
            ("grantee_kind", Text),
            ("grantee_id", Text),
            ("access", Text),
            ("created_at", Int),
        ],
        order: "stream_id, grantee_kind, grantee_id",
        identity: None,
    },
    Table {
        name: "audit",
        source: "audit",
        computed: &[],
        columns: &[
            ("id", Int),
            ("org_id", Text),
            ("actor_id", Text),
            ("actor_name", Text),
            ("at", Int),
            ("action", Text),
            ("target_kind", Text),
            ("target_id", Text),
            ("detail", Text),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "connectors",
        source: "connectors",
        computed: &[],
        columns: &[
            ("org_id", Text),
            ("name", Text),
            ("cursor", Text),
            ("enabled", Bool),
            ("consecutive_failures", Int),
            ("last_run_started", Int),
            ("last_run_ended", Int),
            ("last_error", Text),
            ("lease_holder", Text),
            ("lease_slot", Int),
            ("lease_expires_at", Int),
            ("updated_at", Int),
            ("run_requested_at", Int),
        ],
        order: "org_id, name",
        identity: None,
    },
    Table {
        name: "connector_runs",
        source: "connector_runs",
        computed: &[],
        columns: &[
            ("id", Int),
            ("org_id", Text),
            ("connector", Text),
            ("slot", Int),
            ("runner_id", Text),
            ("started_at", Int),
            ("ended_at", Int),
            ("records_pulled", Int),
            ("points_published", Int),
            ("points_rejected", Int),
            ("error", Text),
            ("interrupted", Bool),
            ("manual", Bool),
            ("backfill", Text),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "points",
        source: "points",
        computed: &[("org_id", ORG_OF_STREAM)],
        columns: &[
            ("stream", Int),
            ("period", Text),
            ("value", Text),
            ("external_id", Text),
            ("batch_id", Text),
            ("key_id", Text),
            ("updated_at", Int),
            ("revision_count", Int),
        ],
        order: "stream, period",
        identity: None,
    },
    Table {
        name: "revisions",
        source: "revisions",
        computed: &[("org_id", ORG_OF_STREAM)],
        columns: &[
            ("id", Int),
            ("stream", Int),
            ("period", Text),
            ("old_value", Text),
            ("new_value", Text),
            ("batch_id", Text),
            ("key_id", Text),
            ("revised_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "batches",
        source: "batches",
        computed: &[("org_id", ORG_OF_STREAM)],
        columns: &[
            ("stream", Int),
            ("batch_id", Text),
            ("key_id", Text),
            ("accepted_at", Int),
            ("outcome", Text),
        ],
        order: "stream, batch_id",
        identity: None,
    },
    Table {
        name: "webhooks",
        source: "webhooks",
        computed: &[],
        columns: &[
            ("org_id", Text),
            ("id", Text),
            ("url", Text),
            ("secret", Text),
            ("stream_id", Text),
            ("category", Text),
            ("events", Text),
            ("created_at", Int),
            ("failures", Int),
            ("disabled_at", Int),
            ("disabled_reason", Text),
        ],
        order: "org_id, id",
        identity: None,
    },
    Table {
        name: "alert_subscriptions",
        source: "alert_subscriptions",
        computed: &[],
        columns: &[
            ("org_id", Text),
            ("id", Text),
            ("email", Text),
            ("stream_id", Text),
            ("category", Text),
            ("created_at", Int),
        ],
        order: "org_id, id",
        identity: None,
    },
    Table {
        name: "deliveries",
        source: "deliveries",
        computed: &[],
        columns: &[
            ("id", Int),
            ("org_id", Text),
            ("event_id", Text),
            ("event", Text),
            ("webhook_id", Text),
            ("email", Text),
            ("stream_id", Text),
            ("payload", Text),
            ("created_at", Int),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("last_attempt_at", Int),
            ("last_status", Int),
            ("last_error", Text),
            ("delivered_at", Int),
            ("gave_up_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "stream_alerts",
        source: "stream_alerts",
        computed: &[],
        columns: &[
            ("org_id", Text),
            ("stream_id", Text),
            ("status", Text),
            ("changed_at", Int),
        ],
        order: "org_id, stream_id",
        identity: None,
    },
    Table {
        name: "webhook_cursors",
        source: "webhook_cursors",
        computed: &[],
        columns: &[
            ("org_id", Text),
            ("webhook_id", Text),
            ("stream_id", Text),
            ("updated_at", Int),
            ("period", Text),
        ],
        order: "org_id, webhook_id, stream_id",
        identity: None,
    },
];

/// Rows per `INSERT` into the target.
const CHUNK: usize = 2_000;

/// What a copy moved, table by table, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

impl Copied {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Counts every table's rows in `from`, in one snapshot: what [`copy`] will move.
pub async fn source_counts(from: &SqliteStore) -> Result<Vec<(&'static str, u64)>> {
    let mut conn = from.pool().acquire().await?;
    let mut counts = Vec::with_capacity(TABLES.len());
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    for table in TABLES {
        counts.push((table.name, count(&mut conn, table.source).await?));
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(counts)
}

async fn count(conn: &mut SqliteConnection, table: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await?;
    Ok(n as u64)
}

/// Copies every row of `from` into `to`, which must hold no data. Reads one snapshot of
/// the source (a read transaction: publishes to it meanwhile are not half-copied), writes
/// one transaction into the target, and checks each table's count on both sides before
/// committing. `progress` hears each chunk: the table and its rows so far.
pub async fn copy(
    from: &SqliteStore,
    to: &PostgresStore,
    mut progress: impl FnMut(&'static str, u64),
) -> Result<Copied> {
    let mut target = to.pool().begin().await?;
    for table in TABLES {
        let any: bool =
            sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {})", table.name))
                .fetch_one(&mut *target)
                .await?;
        if any {
            return Err(StoreError::Conflict(format!(
                "the target database already holds data (table {} is not empty): copy only into a new, empty database",
                table.name
            )));
        }
    }
    let mut source = from.pool().acquire().await?;
    sqlx::query("BEGIN").execute(&mut *source).await?;
    let mut copied = Copied { tables: Vec::new() };
    for table in TABLES {
        let expected = count(&mut source, table.source).await?;
        let columns: Vec<String> = table
            .all()
            .map(|(name, _, from)| {
                if name == from {
                    name.to_owned()
                } else {
                    format!("{from} AS {name}")
                }
            })
            .collect();
        let select = format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            table.source,
            table.order
        );
        let mut rows = sqlx::query(&select).fetch(&mut *source);
        let mut chunk = Chunk::new(table);
        let mut done = 0u64;
        while let Some(row) = rows.try_next().await? {
            chunk.push(&row)?;
            if chunk.len == CHUNK {
                done += chunk.insert(&mut target).await?;
                progress(table.name, done);
                chunk = Chunk::new(table);
            }
        }
        drop(rows);
        if chunk.len > 0 {
            done += chunk.insert(&mut target).await?;
            progress(table.name, done);
        }
        let written: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", table.name))
            .fetch_one(&mut *target)
            .await?;
        if done != expected || written as u64 != expected {
            return Err(StoreError::Conflict(format!(
                "table {}: {expected} rows in the source, {done} read and {written} written: nothing was copied",
                table.name
            )));
        }
        if let Some(column) = table.identity {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{0}', '{column}'), \
                 GREATEST((SELECT max({column}) FROM {0}), 1), (SELECT count(*) > 0 FROM {0}))",
                table.name
            ))
            .execute(&mut *target)
            .await?;
        }
        copied.tables.push((table.name, expected));
    }
    sqlx::query("COMMIT").execute(&mut *source).await?;
    target.commit().await?;
    Ok(copied)
}

/// One column's values of a chunk of rows.
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

/// Up to [`CHUNK`] rows of a table, by column, bound as arrays into one `INSERT`.
struct Chunk {
    table: &'static Table,
    columns: Vec<Values>,
    len: usize,
}

impl Chunk {
    fn new(table: &'static Table) -> Self {
        let columns = table
            .all()
            .map(|(_, kind, _)| match kind {
                Text => Values::Text(Vec::with_capacity(CHUNK)),
                Int => Values::Int(Vec::with_capacity(CHUNK)),
                Bool => Values::Bool(Vec::with_capacity(CHUNK)),
                Bytes => Values::Bytes(Vec::with_capacity(CHUNK)),
            })
            .collect();
        Self {
            table,
            columns,
            len: 0,
        }
    }

    fn push(&mut self, row: &sqlx::sqlite::SqliteRow) -> Result<()> {
        for (i, values) in self.columns.iter_mut().enumerate() {
            match values {
                Values::Text(v) => v.push(row.try_get(i)?),
                Values::Int(v) => v.push(row.try_get(i)?),
                Values::Bool(v) => v.push(row.try_get::<Option<i64>, _>(i)?.map(|n| n != 0)),
                Values::Bytes(v) => v.push(row.try_get(i)?),
            }
        }
        self.len += 1;
        Ok(())
    }

    async fn insert(self, target: &mut sqlx::PgConnection) -> Result<u64> {
        let names: Vec<&str> = self.table.all().map(|(name, _, _)| name).collect();
        let arrays: Vec<String> = self
            .table
            .all()
            .enumerate()
            .map(|(i, (_, kind, _))| {
                let ty = match kind {
                    Text => "text",
                    Int => "bigint",
                    Bool => "boolean",
                    Bytes => "bytea",
                };
                format!("${}::{ty}[]", i + 1)
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) SELECT * FROM unnest({})",
            self.table.name,
            names.join(", "),
            arrays.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for values in self.columns {
            query = match values {
                Values::Text(v) => query.bind(v),
                Values::Int(v) => query.bind(v),
                Values::Bool(v) => query.bind(v),
                Values::Bytes(v) => query.bind(v),
            };
        }
        Ok(query.execute(target).await?.rows_affected())
    }
}
