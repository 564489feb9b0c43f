//! The SQLite side of connector runner state: the `connectors` rows (state and the
//! current lease) and the `connector_runs` log, whose rows are the completed slots.
//! Every decision about a lease reads and writes in one `BEGIN IMMEDIATE` transaction,
//! so two runners asking at once are served one after the other.

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::{SqliteStore, opt_micros, unique};
use crate::ids::OrgId;
use crate::runner_state::{
    ConnectorName, ConnectorState, LeaseOutcome, LeaseTtl, RUN_REQUEST_TTL_SECS, ReportOutcome,
    RunRecord, RunReport, RunnerId,
};
use crate::store::{Result, RunnerStore, StoreError, corrupt, from_micros, to_micros};

const STATE_COLUMNS: &str = "name, cursor, enabled, consecutive_failures, last_run_started, \
     last_run_ended, last_error, lease_holder, lease_slot, lease_expires_at, run_requested_at \
     FROM connectors";

/// Runs kept per connector in the run log; older ones are deleted as new ones come.
pub const RUNS_KEPT: u32 = 1_000;

/// Counts are `u64` on the wire and `i64` in SQLite; no real run gets near the limit.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn read_count(row: &SqliteRow, column: &str) -> Result<u64> {
    u64::try_from(row.get::<i64, _>(column)).map_err(corrupt)
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

fn stored_from_row(row: &SqliteRow) -> Result<Stored> {
    let failures: i64 = row.get("consecutive_failures");
    Ok(Stored {
        state: ConnectorState {
            cursor: row.get("cursor"),
            enabled: row.get("enabled"),
            consecutive_failures: u32::try_from(failures).map_err(corrupt)?,
            last_run_started: opt_micros(row.get("last_run_started"))?,
            last_run_ended: opt_micros(row.get("last_run_ended"))?,
            last_error: row.get("last_error"),
            unfinished_slot: opt_micros(row.get("lease_slot"))?,
            run_requested_at: opt_micros(row.get("run_requested_at"))?,
        },
        lease_holder: row.get("lease_holder"),
        lease_slot: row.get("lease_slot"),
        lease_expires_at: row.get("lease_expires_at"),
    })
}

async fn stored(
    tx: &mut Transaction<'_, Sqlite>,
    org: &OrgId,
    connector: &ConnectorName,
) -> Result<Option<Stored>> {
    let sql = format!("SELECT {STATE_COLUMNS} WHERE org_id = ? AND name = ?");
    let row = sqlx::query(&sql)
        .bind(org.as_str())
        .bind(connector.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(stored_from_row).transpose()
}

/// Creates the connector's row with the default state if it has none.
async fn ensure_row(
    tx: &mut Transaction<'_, Sqlite>,
    org: &OrgId,
    connector: &ConnectorName,
    now: Timestamp,
) -> Result<()> {
    sqlx::query("INSERT OR IGNORE INTO connectors (org_id, name, updated_at) VALUES (?, ?, ?)")
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(to_micros(now))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn slot_completed(
    tx: &mut Transaction<'_, Sqlite>,
    org: &OrgId,
    connector: &ConnectorName,
    slot: Timestamp,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM connector_runs WHERE org_id = ? AND connector = ? AND slot = ?)",
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

fn run_from_row(row: &SqliteRow) -> Result<RunRecord> {
    Ok(RunRecord {
        id: row.get("id"),
        slot: from_micros(row.get("slot"))?,
        runner: row.get("runner_id"),
        started_at: from_micros(row.get("started_at"))?,
        ended_at: from_micros(row.get("ended_at"))?,
        records_pulled: read_count(row, "records_pulled")?,
        points_published: read_count(row, "points_published")?,
        points_rejected: read_count(row, "points_rejected")?,
        error: row.get("error"),
        interrupted: row.get("interrupted"),
        manual: row.get("manual"),
        backfill: row.get("backfill"),
    })
}

#[async_trait]
impl RunnerStore for SqliteStore {
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
        let current = stored(&mut tx, org, connector)
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
            "UPDATE connectors SET lease_holder = ?, lease_slot = ?, lease_expires_at = ?, \
             updated_at = ? WHERE org_id = ? AND name = ?",
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
        let done = sqlx::query(
            "UPDATE connectors SET lease_holder = NULL, lease_slot = NULL, lease_expires_at = NULL \
             WHERE org_id = ? AND name = ? AND lease_holder = ?",
        )
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(runner.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn connector_state(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
    ) -> Result<ConnectorState> {
        let sql = format!("SELECT {STATE_COLUMNS} WHERE org_id = ? AND name = ?");
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
        let current = stored(&mut tx, org, connector).await?;
        // An expired lease nobody else has taken still counts: no other runner can have
        // fired the slot, and this transaction completes it before anyone can.
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
        let inserted = sqlx::query(
            "INSERT INTO connector_runs (org_id, connector, slot, runner_id, started_at, ended_at, \
             records_pulled, points_published, points_rejected, error, interrupted, manual, backfill) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            "DELETE FROM connector_runs WHERE org_id = ?1 AND connector = ?2 AND id <= \
             (SELECT id FROM connector_runs WHERE org_id = ?1 AND connector = ?2 \
              ORDER BY id DESC LIMIT 1 OFFSET ?3)",
        )
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(i64::from(RUNS_KEPT))
        .execute(&mut *tx)
        .await?;
        let s = &outcome.state;
        sqlx::query(
            "UPDATE connectors SET cursor = ?, enabled = ?, consecutive_failures = ?, \
             last_run_started = ?, last_run_ended = ?, last_error = ?, lease_holder = NULL, \
             lease_slot = NULL, lease_expires_at = NULL, run_requested_at = ?, updated_at = ? \
             WHERE org_id = ? AND name = ?",
        )
        .bind(s.cursor.as_deref())
        .bind(s.enabled)
        .bind(i64::from(s.consecutive_failures))
        .bind(s.last_run_started.map(to_micros))
        .bind(s.last_run_ended.map(to_micros))
        .bind(s.last_error.as_deref())
        .bind(s.run_requested_at.map(to_micros))
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
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
            "UPDATE connectors SET enabled = ?1, \
             consecutive_failures = CASE WHEN ?1 THEN 0 ELSE consecutive_failures END, \
             updated_at = ?2 WHERE org_id = ?3 AND name = ?4",
        )
        .bind(enabled)
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .execute(&mut *tx)
        .await?;
        let state = stored(&mut tx, org, connector)
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
        let before = stored(&mut tx, org, connector)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("connector {:?}", connector.as_str())))?;
        if let Some(holder) = before.live_holder(to_micros(now)) {
            return Err(StoreError::Conflict(format!(
                "runner {holder:?} is running connector {:?}; its report would overwrite the cursor: set it once the run has ended",
                connector.as_str()
            )));
        }
        sqlx::query(
            "UPDATE connectors SET cursor = ?1, updated_at = ?2, \
             lease_holder = NULL, lease_slot = NULL, lease_expires_at = NULL \
             WHERE org_id = ?3 AND name = ?4",
        )
        .bind(cursor)
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .execute(&mut *tx)
        .await?;
        let after = stored(&mut tx, org, connector)
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
        let before = stored(&mut tx, org, connector).await?;
        if let Some(holder) = before.as_ref().and_then(|s| s.live_holder(to_micros(now))) {
            return Err(StoreError::Conflict(format!(
                "runner {holder:?} is running connector {:?}: forget it once the run has ended",
                connector.as_str()
            )));
        }
        let runs = sqlx::query("DELETE FROM connector_runs WHERE org_id = ? AND connector = ?")
            .bind(org.as_str())
            .bind(connector.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM connectors WHERE org_id = ? AND name = ?")
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
            "SELECT {STATE_COLUMNS} WHERE org_id = ?1 \
             AND (NOT ?2 OR run_requested_at IS NOT NULL) ORDER BY name"
        );
        let rows = sqlx::query(&sql)
            .bind(org.as_str())
            .bind(requested_only)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let name = ConnectorName::parse(row.get::<&str, _>("name")).map_err(corrupt)?;
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
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE connectors SET run_requested_at = CASE \
             WHEN run_requested_at IS NULL OR run_requested_at < ?4 THEN ?1 \
             ELSE run_requested_at END, updated_at = ?1 WHERE org_id = ?2 AND name = ?3",
        )
        .bind(to_micros(now))
        .bind(org.as_str())
        .bind(connector.as_str())
        .bind(to_micros(now) - RUN_REQUEST_TTL_SECS * 1_000_000)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("connector {connector}")));
        }
        let state = stored(&mut tx, org, connector)
            .await?
            .map(|s| s.state)
            .unwrap_or_default();
        tx.commit().await?;
        Ok(state)
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
             points_rejected, error, interrupted, manual, backfill FROM connector_runs WHERE org_id = ?1 AND connector = ?2 \
             AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?3",
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
