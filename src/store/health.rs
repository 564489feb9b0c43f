//! Whether the store takes writes. A read (`ping`) answering does not mean a publish
//! can commit: a full disk or a database file made read-only fails every write while
//! reads go on. The publish path and the API report each storage fault here and each
//! successful commit, and `/healthz` answers "not ready" while the last write failed,
//! probing with a small write of its own so that it notices the recovery even when no
//! publisher is sending. A probe writes one small row, which can fit where a publish
//! did not (a nearly full disk), so it is tried only once the last fault is
//! [`FAULT_HOLD`] old. The store also reads the time of the last fault: a database
//! connection opened before it may be the broken one (opened read-only, say), so it is
//! replaced rather than reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoreError;

/// How long after a storage fault `/healthz` stays "not ready" unless a real write
/// succeeds; after it, each check probes with a write of its own.
pub const FAULT_HOLD: Duration = Duration::from_secs(10);

/// What `/healthz` should answer about writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Writes fail; `probe` says whether a probe may now clear the fault.
    Failing {
        reason: String,
        probe: bool,
    },
}

/// The last storage fault, until a write succeeds again.
#[derive(Debug, Default)]
pub struct WriteHealth {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Why writes fail, while they do.
    fault: Option<String>,
    /// When the last fault happened, or the recovery from it: kept after the recovery.
    last_fault_at: Option<Instant>,
}

impl WriteHealth {
    /// Records the outcome of a write: a storage fault marks the store failing (other
    /// errors, such as a refusal or a missing row, say nothing about the disk).
    pub fn observe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(e),
        }
    }

    /// Records a storage fault, if `error` is one. Only `Unavailable` is: `Corrupt`
    /// names data that does not read (one stream's row, say), which a read of it meets
    /// again and again while writes work, and which no write or probe repairs; it is
    /// logged as an internal error where it is met instead.
    pub fn failed(&self, error: &StoreError) {
        if !matches!(error, StoreError::Unavailable(_)) {
            return;
        }
        metrics::counter!("kpistream_store_errors_total").increment(1);
        let mut state = self.lock();
        if state.fault.is_none() {
            tracing::error!(error = %error, "writes to the database fail; /healthz answers 503 until one succeeds");
            metrics::gauge!("kpistream_store_writable").set(0.0);
        }
        state.fault = Some(error.to_string());
        state.last_fault_at = Some(Instant::now());
    }

    /// Records a write that committed.
    pub fn succeeded(&self) {
        let mut state = self.lock();
        if state.fault.take().is_some() {
            tracing::info!("writes to the database succeed again");
            // Connections opened while writes failed may be broken too (opened
            // read-only, say): they count as opened before a fault.
            state.last_fault_at = Some(Instant::now());
        }
        metrics::gauge!("kpistream_store_writable").set(1.0);
    }

    /// Whether writes fail (the last one did and none has succeeded since).
    pub fn is_failing(&self) -> bool {
        self.lock().fault.is_some()
    }

    /// Whether writes work, as far as the last ones showed.
    pub fn readiness(&self) -> Readiness {
        let state = self.lock();
        match &state.fault {
            None => Readiness::Ready,
            Some(reason) => Readiness::Failing {
                reason: reason.clone(),
                probe: state
                    .last_fault_at
                    .is_none_or(|at| at.elapsed() >= FAULT_HOLD),
            },
        }
    }

    /// Whether a connection opened `age` ago predates the last storage fault.
    pub fn predates_last_fault(&self, age: Duration) -> bool {
        self.lock()
            .last_fault_at
            .is_some_and(|at| age > at.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("write health lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_fault_lasts_until_a_write_succeeds() {
        let health = WriteHealth::default();
        health.observe::<()>(&Err(StoreError::Unavailable(
            "database or disk is full (code 13)".into(),
        )));
        assert!(
            matches!(health.readiness(), Readiness::Failing { reason, probe: false } if reason.contains("disk is full"))
        );
        health.observe(&Ok(()));
        assert_eq!(health.readiness(), Readiness::Ready);
        assert!(health.predates_last_fault(Duration::from_secs(3600)));
        assert!(!health.predates_last_fault(Duration::ZERO));
    }

    #[test]
    fn a_refusal_is_not_a_storage_fault() {
        let health = WriteHealth::default();
        health.observe::<()>(&Err(StoreError::Conflict("in use".into())));
        assert_eq!(health.readiness(), Readiness::Ready);
    }

    #[test]
    fn a_value_that_does_not_read_is_not_a_storage_fault() {
        let health = WriteHealth::default();
        health.failed(&StoreError::Corrupt("frequency \"fortnightly\"".into()));
        assert_eq!(health.readiness(), Readiness::Ready);
    }
}
