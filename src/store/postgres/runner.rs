//! The PostgreSQL side of connector runner state: the `connectors` rows (state and the
//! current lease) and the `connector_runs` log, whose rows are the completed slots.
//! Several servers may share the database, so every decision about a lease reads the
//! connector's row with `SELECT … FOR UPDATE` and writes in the same transaction: two
//! runners asking at once (from one server or two) are served one after the other, and
//! the second sees what the first decided.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::PostgresStore;
use crate::ids::OrgId;
use crate::runner_state::{
    ConnectorName, ConnectorState, LeaseOutcome, LeaseTtl, RUN_REQUEST_TTL_SECS, ReportOutcome,
    RunRecord, RunReport, RunnerId,
};
use crate::store::shared::{opt_micros, unique};
use crate::store::{Result, RunnerStore, StoreError, corrupt, from_micros, to_micros};

const STATE_COLUMNS: &str = "name, cursor, enabled, consecutive_failures, last_run_started, \
     last_run_ended, last_error, lease_holder, lease_slot, lease_expires_at, run_requested_at \
     FROM connectors";

/// Runs kept per connector in the run log; older ones are deleted as new ones come
/// (the same number as SQLite's).
const RUNS_KEPT: u32 = 1_000;

/// Counts are `u64` on the wire and `BIGINT` in PostgreSQL; no real run gets near the
/// limit.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn read_count(row: &PgRow, column: &str) -> Result<u64> {
    u64::try_from(row.try_get::<i64, _>(column)?).map_err(corrupt)
}

/// A connector row: its state and its lease as stored (expired or not).
struct Stored {
    state: ConnectorState,
    lease_holder: Option<String>,
    lease_slot: Option<i64>,
    lease_expires_at: Option<i64>,
}

impl Stored {
    /// Whether the lease is `report`'s runner's, for `report`'s slot.
    fn is_held_for(&self, report: &RunReport) -> bool {
        self.lease_holder.as_deref() == Some(report.runner.as_str())
            && self.lease_slot == Some(to_micros(report.slot))
    }

    /// The holder of a lease that has not expired at `now`.
    fn live_holder(&self, now: i64) -> Option<&str> {
        match (&self.lease_holder, self.lease_expires_at) {
            (Some(holder), Some(expires)) if expires > now => Some(holder),
            _ => None,
        }
    }
}

fn stored_from_row(row: &PgRow) -> Result<Stored> {
    let failures: i64 = row.try_get("consecutive_failures")?;
    Ok(Stored {
        state: ConnectorState {
            cursor: row.try_get("cursor")?,
            enabled: row.try_get("enabled")?,
            consecutive_failures: u32::try_from(failures).map_err(corrupt)?,
            last_run_started: opt_micros(row.try_get("last_run_started")?)?,
            last_run_ended: opt_micros(row.try_get("last_run_ended")?)?,
            last_error: row.try_get("last_error")?,
            unfinished_slot: opt_micros(row.try_get("lease_slot")?)?,
            run_requested_at: opt_micros(row.try_get("run_requested_at")?)?,
        },
        lease_holder: row.try_get("lease_holder")?,
        lease_slot: row.try_get("lease_slot")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
    })
}

/// The connector's row, locked until the transaction ends: whoever decides about the
/// lease next waits, then reads what this transaction wrote.
async fn stored_for_update(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    connector: &ConnectorName,
) -> Result<Option<Stored>> {
    let sql = format!("SELECT {STATE_COLUMNS} WHERE org_id = $1 AND name = $2 FOR UPDATE");
    let row = sqlx::query(&sql)
        .bind(org.as_str())
        .bind(connector.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(stored_from_row).transpose()
}

/// Creates the connector's row with the default state if it has none.
async fn ensure_row(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    connector: &ConnectorName,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO connectors (org_id, name, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(org.as_str())
    .bind(connector.as_str())
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn slot_completed(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    connector: &ConnectorName,
    slot: Timestamp,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM connector_runs WHERE org_id = $1 AND connector = $2 AND slot = $3)",
    )
    .bind(org.as_str())
    .bind(connector.as_str())
    .bind(to_micros(slot))
    .fetch_one(&mut **tx)
    .await?)
}

fn refused(stored: &Stored, now: i64, slot_completed: bool) -> Result<LeaseOutcome> {
    let holder = stored.live_holder(now);
    Ok(LeaseOutcome {
        granted: false,
        holder: holder.map(RunnerId::parse).transpose().map_err(corrupt)?,
        expires_at: match holder {
            Some(_) => opt_micros(stored.lease_expires_at)?,
            None => None,
        },
        slot_completed,
    })
}

/// Why a report is refused, as a sentence.
fn not_holder(stored: Option<&Stored>, connector: &ConnectorName, report: &RunReport) -> String {
    let holder = match stored.and_then(|s| s.lease_holder.as_deref()) {
        Some(h) if h != report.runner.as_str() => format!("runner {h:?} holds it"),
        Some(_) => "this runner's lease is for another slot".to_owned(),
        None => "nobody holds it".to_owned(),
    };
    format!(
        "runner {:?} does not hold the lease on connector {connector:?} for slot {} ({holder}); \
         a run is reported only by the runner that acquired the lease for its slot",
        report.runner.as_str(),
        report.slot
    )
}

fn run_from_row(row: &PgRow) -> Result<RunRecord> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        slot: from_micros(row.try_get("slot")?)?,
        runner: row.try_get("runner_id")?,
        started_at: from_micros(row.try_get("started_at")?)?,
        ended_at: from_micros(row.try_get("ended_at")?)?,
        records_pulled: read_count(row, "records_pulled")?,
        points_published: read_count(row, "points_published")?,
        points_rejected: read_count(row, "points_rejected")?,
        error: row.try_get("error")?,
        interrupted: row.try_get("interrupted")?,
        manual: row.try_get("manual")?,
        backfill: row.try_get("backfill")?,
    })
}

#[async_trait]
impl RunnerStore for PostgresStore {
    async fn acquire_lease(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        slot: Timestamp,
        runner: &RunnerId,
        ttl: LeaseTtl,
        now: Timestamp,
    ) -> Result<LeaseOutcome> {
        let mut tx = self.write().await?;
        ensure_row(&mut tx, org, connector, now).await?;
        // From here until commit no other transaction decides about this lease; under
        // READ COMMITTED each following statement sees what the previous holder of the
        // lock committed (its lease, or the run it reported).
        let current = stored_for_update(&mut tx, org, connector)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("connector {connector} vanished")))?;
        let now_us = to_micros(now);
        if slot_completed(&mut tx, org, connector, slot).await? {
            return refused(&current, now_us, true);
        }
        if current
            .live_holder(now_us)
            .is_some_and(|h| h != runner.as_str())
        {
            return refused(&current, now_us, false);
        }
        // Truncated to what is stored, so every answer names the same instant.
        let expires_at = now.checked_add(ttl.as_duration()).map_err(corrupt)?;
        let expires_at = from_micros(to_micros(expires_at))?;
        sqlx::query(
            "UPDATE connectors SET lease_holder = $1, lease_slot = $2, lease_expires_at = $3, \
             updated_at = $4 WHERE org_id = $5 AND name = $6",
        )
        .bind(runner.as_str())
        .bind(to_micros(slot))
        .bind(to_micros(expires_at))
        .bind(now_us)
        .bind(org.as_str())
        .bind(connector.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(LeaseOutcome {
            granted: true,
            holder: Some(runner.clone()),
            expires_at: Some(expires_at),
            slot_completed: false,
        })
    }

    async fn release_lease(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        runner: &RunnerId,
    ) -> Result<bool> {
        // One statement: the row lock it takes orders it with the other lease writes.
        let done = sqlx::query(
            "UPDATE connectors SET lease_holder = NULL, lease_slot = NULL, lease_expires_at = NULL \
             WHERE org_id = $1 AND name = $2 AND lease_holder = $3",
        )
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(runner.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn connector_state(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
    ) -> Result<ConnectorState> {
        let sql = format!("SELECT {STATE_COLUMNS} WHERE org_id = $1 AND name = $2 FOR UPDATE");
        let row = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(connector.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .as_ref()
            .map(stored_from_row)
            .transpose()?
            .map(|s| s.state)
            .unwrap_or_default())
    }

    async fn report_run(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        report: &RunReport,
        now: Timestamp,
    ) -> Result<ReportOutcome> {
        let mut tx = self.write().await?;
        let current = stored_for_update(&mut tx, org, connector).await?;
        // An expired lease nobody else has taken still counts: no other runner can have
        // fired the slot, and this transaction (holding the row's lock) completes it
        // before anyone can take the lease.
        let current = match current {
            Some(s) if s.is_held_for(report) => s,
            other => {
                return Err(StoreError::Conflict(not_holder(
                    other.as_ref(),
                    connector,
                    report,
                )));
            }
        };
        let outcome = current.state.after(report);
        // A failed statement ends the transaction in PostgreSQL; this one is the last
        // use of it when it fails, as in SQLite.
        let inserted = sqlx::query(
            "INSERT INTO connector_runs (org_id, connector, slot, runner_id, started_at, ended_at, \
             records_pulled, points_published, points_rejected, error, interrupted, manual, backfill) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(to_micros(report.slot))
        .bind(report.runner.as_str())
        .bind(to_micros(report.started_at))
        .bind(to_micros(report.ended_at))
        .bind(count(report.records_pulled))
        .bind(count(report.points_published))
        .bind(count(report.points_rejected))
        .bind(report.error.as_deref())
        .bind(report.interrupted)
        .bind(report.manual)
        .bind(report.backfill.as_deref())
        .execute(&mut *tx)
        .await;
        unique(inserted, || {
            format!("a run of connector {connector:?} for slot {}", report.slot)
        })?;
        // The log keeps each connector's newest runs; a per-second connector would
        // otherwise add 86,400 rows a day.
        sqlx::query(
            "DELETE FROM connector_runs WHERE org_id = $1 AND connector = $2 AND id <= \
             (SELECT id FROM connector_runs WHERE org_id = $1 AND connector = $2 \
              ORDER BY id DESC LIMIT 1 OFFSET $3)",
        )
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(i64::from(RUNS_KEPT))
        .execute(&mut *tx)
        .await?;
        let s = &outcome.state;
        sqlx::query(
            "UPDATE connectors SET cursor = $1, enabled = $2, consecutive_failures = $3, \
             last_run_started = $4, last_run_ended = $5, last_error = $6, lease_holder = NULL, \
             lease_slot = NULL, lease_expires_at = NULL, updated_at = $7, \
             run_requested_at = $10 WHERE org_id = $8 AND name = $9",
        )
        .bind(s.cursor.as_deref())
        .bind(s.enabled)
        .bind(i64::from(s.consecutive_failures))
        .bind(s.last_run_started.map(to_micros))
        .bind(s.last_run_ended.map(to_micros))
        .bind(s.last_error.as_deref())
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(s.run_requested_at.map(to_micros))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_connector_enabled(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        enabled: bool,
        now: Timestamp,
    ) -> Result<ConnectorState> {
        let mut tx = self.write().await?;
        ensure_row(&mut tx, org, connector, now).await?;
        sqlx::query(
            "UPDATE connectors SET enabled = $1, \
             consecutive_failures = CASE WHEN $1 THEN 0 ELSE consecutive_failures END, \
             updated_at = $2 WHERE org_id = $3 AND name = $4",
        )
        .bind(enabled)
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .execute(&mut *tx)
        .await?;
        // The UPDATE already holds the row's lock; FOR UPDATE changes nothing here.
        let state = stored_for_update(&mut tx, org, connector)
            .await?
            .map(|s| s.state)
            .unwrap_or_default();
        tx.commit().await?;
        Ok(state)
    }

    async fn set_connector_cursor(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        cursor: Option<&str>,
        now: Timestamp,
    ) -> Result<(Option<String>, ConnectorState)> {
        let mut tx = self.write().await?;
        let before = stored_for_update(&mut tx, org, connector)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connector {:?}", connector.as_str())))?;
        if let Some(holder) = before.live_holder(to_micros(now)) {
            return Err(StoreError::Conflict(format!(
                "runner {holder:?} is running connector {:?}; its report would overwrite the cursor: set it once the run has ended",
                connector.as_str()
            )));
        }
        sqlx::query(
            "UPDATE connectors SET cursor = $1, updated_at = $2, \
             lease_holder = NULL, lease_slot = NULL, lease_expires_at = NULL \
             WHERE org_id = $3 AND name = $4",
        )
        .bind(cursor)
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .execute(&mut *tx)
        .await?;
        let after = stored_for_update(&mut tx, org, connector)
            .await?
            .map(|s| s.state)
            .unwrap_or_default();
        tx.commit().await?;
        Ok((before.state.cursor, after))
    }

    async fn forget_connector(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        now: Timestamp,
    ) -> Result<(Option<ConnectorState>, u64)> {
        let mut tx = self.write().await?;
        let before = stored_for_update(&mut tx, org, connector).await?;
        if let Some(holder) = before.as_ref().and_then(|s| s.live_holder(to_micros(now))) {
            return Err(StoreError::Conflict(format!(
                "runner {holder:?} is running connector {:?}: forget it once the run has ended",
                connector.as_str()
            )));
        }
        let runs = sqlx::query("DELETE FROM connector_runs WHERE org_id = $1 AND connector = $2")
            .bind(org.as_str())
            .bind(connector.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM connectors WHERE org_id = $1 AND name = $2")
            .bind(org.as_str())
            .bind(connector.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((before.map(|s| s.state), runs))
    }

    async fn list_connectors(
        &self,
        org: &OrgId,
        requested_only: bool,
    ) -> Result<Vec<(ConnectorName, ConnectorState)>> {
        let sql = format!(
            "SELECT {STATE_COLUMNS} WHERE org_id = $1 \
             AND (NOT $2 OR run_requested_at IS NOT NULL) ORDER BY name COLLATE \"C\""
        );
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(requested_only)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let name = ConnectorName::parse(&name).map_err(corrupt)?;
                Ok((name, stored_from_row(row)?.state))
            })
            .collect()
    }

    async fn request_run(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        now: Timestamp,
    ) -> Result<ConnectorState> {
        let row = sqlx::query(
            "UPDATE connectors SET run_requested_at = CASE \
             WHEN run_requested_at IS NULL OR run_requested_at < $4 THEN $1 \
             ELSE run_requested_at END, updated_at = $1 WHERE org_id = $2 AND name = $3 \
             RETURNING name",
        )
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(to_micros(now) - RUN_REQUEST_TTL_SECS * 1_000_000)
        .fetch_optional(&self.pool)
        .await?;
        if row.is_none() {
            return Err(StoreError::NotFound(format!("connector {connector}")));
        }
        self.connector_state(org, connector).await
    }

    async fn list_runs(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, slot, runner_id, started_at, ended_at, records_pulled, points_published, \
             points_rejected, error, interrupted, manual, backfill FROM connector_runs \
             WHERE org_id = $1 AND connector = $2 AND ($4::BIGINT IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(i64::from(limit))
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, Executor};

    use super::*;
    use crate::store::postgres::PostgresOptions;

    /// Runners asking at once for one slot of a known connector, each on a connection of
    /// its own (as from several servers): exactly one is granted, and the others are
    /// told who holds it. Without `FOR UPDATE` several are granted, most runs.
    #[tokio::test]
    async fn concurrent_acquirers_get_one_lease() {
        let (Ok(url), Ok(password)) = (
            std::env::var("KPISTREAM_TEST_POSTGRES_URL"),
            std::env::var("KPISTREAM_TEST_DB_PASSWORD"),
        ) else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "KPISTREAM_TEST_POSTGRES_URL and KPISTREAM_TEST_DB_PASSWORD must be set under CI=true"
            );
            eprintln!(
                "skipped: KPISTREAM_TEST_POSTGRES_URL or KPISTREAM_TEST_DB_PASSWORD is not set"
            );
            return;
        };
        let options = PgConnectOptions::from_str(&url)
            .unwrap()
            .password(&password);
        let schema = format!("kpi_lease_{:016x}", rand::random::<u64>());
        let mut admin = options.connect().await.unwrap();
        admin
            .execute(format!("CREATE SCHEMA {schema}").as_str())
            .await
            .unwrap();
        let runners = 8;
        let store = Arc::new(
            PostgresStore::connect(
                options.clone().options([("search_path", schema.as_str())]),
                &PostgresOptions {
                    max_connections: runners,
                    ..PostgresOptions::default()
                },
            )
            .await
            .unwrap(),
        );
        let org = OrgId::generate();
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, 'Acme', 0)")
            .bind(org.as_str())
            .execute(store.pool())
            .await
            .unwrap();
        // Every runner has its connection before any asks.
        let mut warm = Vec::new();
        for _ in 0..runners {
            warm.push(store.pool().acquire().await.unwrap());
        }
        drop(warm);
        let connector = ConnectorName::parse("crm").unwrap();
        let now = Timestamp::from_second(1_795_392_000).unwrap();
        // The row exists already: a first insert alone would make the others wait.
        store
            .set_connector_enabled(&org, &connector, true, now)
            .await
            .unwrap();
        let asks = (0..runners).map(|n| {
            let (store, org, connector) = (store.clone(), org.clone(), connector.clone());
            tokio::spawn(async move {
                let runner = RunnerId::parse(&format!("runner-{n}")).unwrap();
                let ttl = LeaseTtl::new(60).unwrap();
                store
                    .acquire_lease(&org, &connector, now, &runner, ttl, now)
                    .await
                    .unwrap()
            })
        });
        let outcomes: Vec<LeaseOutcome> = futures::future::try_join_all(asks).await.unwrap();
        store.pool().close().await;
        admin
            .execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
            .await
            .unwrap();

        let granted: Vec<_> = outcomes.iter().filter(|o| o.granted).collect();
        assert_eq!(granted.len(), 1, "{outcomes:?}");
        let winner = granted[0].holder.clone();
        for refused in outcomes.iter().filter(|o| !o.granted) {
            assert_eq!(refused.holder, winner, "{outcomes:?}");
        }
    }
}
