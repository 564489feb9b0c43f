//! What the server keeps for connector runners: each connector's cursor, failure count
//! and enabled flag, the lease that lets one runner fire one scheduled slot, and the
//! run log. The runner process itself never touches the database; it reaches this
//! state through the `Runner` gRPC service.

use jiff::{SignedDuration, Timestamp};

/// Longest connector name or runner id accepted.
const MAX_NAME_LEN: usize = 200;
/// Longest lease a runner may take in one call.
pub const MAX_LEASE_SECS: u32 = 86_400;
/// Longest run error kept, in bytes; a longer one is cut, with a marker saying so. At
/// this size the longest `ListRuns` answer (1,000 runs, runner ids of 200 characters)
/// stays under 3 MB, within the 4 MiB that gRPC clients accept by default.
pub const MAX_ERROR_BYTES: usize = 2_048;
/// Longest cursor accepted, in bytes. A cursor is one field's value (a timestamp, an
/// id); a cut one would point at the wrong record, so a longer one is refused.
pub const MAX_CURSOR_BYTES: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} is {len} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong { field: &'static str, len: usize },
    #[error("{field} must not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("ttl_seconds must be between 1 and {MAX_LEASE_SECS}, not {0}")]
    Ttl(u32),
    #[error("max_consecutive_failures must be at least 1")]
    NoFailureLimit,
    #[error("an interrupted run has no error: report a failed run without `interrupted`")]
    InterruptedWithError,
    #[error("{field} is not a valid timestamp")]
    BadTimestamp { field: &'static str },
    #[error(
        "the cursor is {len} bytes long; the limit is {MAX_CURSOR_BYTES}: a cursor is one \
         field's value (a timestamp or an id), and a cut one would point at the wrong record"
    )]
    CursorTooLong { len: usize },
    #[error(
        "backfill {0} is not a range of two periods: write FROM..TO, such as 2026-03-01..2026-03-07"
    )]
    BadBackfill(crate::text::Excerpt),
}

/// A backfill's range as a run report gives it, `FROM..TO`, checked to be two periods.
pub fn checked_backfill(range: &str) -> Result<String, RunnerError> {
    let bad = || RunnerError::BadBackfill(crate::text::excerpt(range));
    let (from, to) = range.split_once("..").ok_or_else(bad)?;
    let from = crate::period::Period::parse_any(from).map_err(|_| bad())?;
    let to = crate::period::Period::parse_any(to).map_err(|_| bad())?;
    Ok(format!("{from}..{to}"))
}

/// A run's error as the server keeps it: at most [`MAX_ERROR_BYTES`], cut with a marker.
/// The runner cuts it the same way before sending, so its report fits in a message.
pub fn bounded_error(error: &str) -> String {
    crate::text::cut(error, MAX_ERROR_BYTES).into_owned()
}

/// `cursor`, unless it is longer than [`MAX_CURSOR_BYTES`]. The runner checks its new
/// cursor the same way before reporting, so a run with one too long fails (and says
/// why) instead of being refused by the server.
pub fn checked_cursor(cursor: String) -> Result<String, RunnerError> {
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(RunnerError::CursorTooLong { len: cursor.len() });
    }
    Ok(cursor)
}

/// A connector's name, unique within an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectorName(String);

/// The id a runner process calls itself by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunnerId(String);

fn checked(field: &'static str, text: &str) -> Result<String, RunnerError> {
    if text.is_empty() {
        return Err(RunnerError::Missing { field });
    }
    let len = text.chars().count();
    if len > MAX_NAME_LEN {
        return Err(RunnerError::TooLong { field, len });
    }
    if text.chars().any(char::is_control) {
        return Err(RunnerError::ControlCharacter { field });
    }
    Ok(text.to_owned())
}

impl ConnectorName {
    pub fn parse(text: &str) -> Result<Self, RunnerError> {
        checked("connector", text).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RunnerId {
    pub fn parse(text: &str) -> Result<Self, RunnerError> {
        checked("runner_id", text).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConnectorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for RunnerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a lease lasts: 1 s to [`MAX_LEASE_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl(u32);

impl LeaseTtl {
    pub fn new(seconds: u32) -> Result<Self, RunnerError> {
        if seconds == 0 || seconds > MAX_LEASE_SECS {
            return Err(RunnerError::Ttl(seconds));
        }
        Ok(Self(seconds))
    }

    pub fn as_duration(self) -> SignedDuration {
        SignedDuration::from_secs(i64::from(self.0))
    }
}

/// How long a run asked for (`Runner.RequestRun`) waits for a runner: past it, runners
/// leave it (its slot, the time it was asked, would be an old "now" for the run's
/// periods), and asking again asks afresh.
pub const RUN_REQUEST_TTL_SECS: i64 = 15 * 60;

/// A connector's state. A connector the server has never seen has the default one:
/// enabled, no cursor, no failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorState {
    pub cursor: Option<String>,
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub last_run_started: Option<Timestamp>,
    pub last_run_ended: Option<Timestamp>,
    pub last_error: Option<String>,
    /// A slot leased and never reported: its runner stopped or died mid-run.
    pub unfinished_slot: Option<Timestamp>,
    /// When someone asked for a run now (the web console's "Run now"); the next runner
    /// that polls runs it by hand, and the report of any run of a later slot (but a
    /// backfill's) clears this. Runners leave a request older than
    /// [`RUN_REQUEST_TTL_SECS`] to the next scheduled run.
    pub run_requested_at: Option<Timestamp>,
}

impl Default for ConnectorState {
    fn default() -> Self {
        Self {
            cursor: None,
            enabled: true,
            consecutive_failures: 0,
            last_run_started: None,
            last_run_ended: None,
            last_error: None,
            unfinished_slot: None,
            run_requested_at: None,
        }
    }
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOutcome {
    pub granted: bool,
    /// The runner holding the lease after the call, if any.
    pub holder: Option<RunnerId>,
    pub expires_at: Option<Timestamp>,
    /// The slot has a run already, so it is never granted again.
    pub slot_completed: bool,
}

/// A finished run, as a runner reports it.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub runner: RunnerId,
    pub slot: Timestamp,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub records_pulled: u64,
    pub points_published: u64,
    pub points_rejected: u64,
    /// `None` when the run succeeded.
    pub error: Option<String>,
    /// Stored only when the run succeeded.
    pub new_cursor: Option<String>,
    /// Failed runs in a row that disable the connector (at least 1).
    pub max_consecutive_failures: u32,
    /// The runner was asked to stop and ended the run early; not a failure.
    pub interrupted: bool,
    /// Someone asked for this run by hand (`connector run`): only such a run re-enables a
    /// disabled connector.
    pub manual: bool,
    /// The range of a backfill (`connector backfill`, "2026-03-01..2026-03-10"): logged,
    /// but it moves no cursor and leaves the failure count and enabled flag alone.
    pub backfill: Option<String>,
}

/// The state after a report, and whether the report changed the enabled flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOutcome {
    pub state: ConnectorState,
    pub just_disabled: bool,
    pub recovered: bool,
}

/// One entry of the run log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Increases with every run logged; pages of the log go by it.
    pub id: i64,
    pub slot: Timestamp,
    pub runner: String,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub records_pulled: u64,
    pub points_published: u64,
    pub points_rejected: u64,
    pub error: Option<String>,
    pub interrupted: bool,
    /// Someone ran it by hand (`connector run`).
    pub manual: bool,
    /// The range of a backfill run.
    pub backfill: Option<String>,
}

impl ConnectorState {
    /// The state after `report`, and whether it disabled or re-enabled the connector.
    /// The cursor only moves on success, so a failed run is pulled again from where
    /// the last good one stopped.
    pub fn after(&self, report: &RunReport) -> ReportOutcome {
        let mut next = ConnectorState {
            last_run_started: Some(report.started_at),
            last_run_ended: Some(report.ended_at),
            last_error: report.error.clone(),
            unfinished_slot: None,
            ..self.clone()
        };
        // A run of a slot at or after the request (by hand, as asked, or scheduled, or a
        // slot taken up again) pulls what there was when it was asked: the request is
        // answered. A backfill pulls a past range: it answers nothing.
        if report.backfill.is_none()
            && self
                .run_requested_at
                .is_some_and(|asked| asked <= report.slot)
        {
            next.run_requested_at = None;
        }
        if report.backfill.is_some() {
            // A pull of a past range beside the schedule: it says nothing about whether
            // the scheduled runs work, and the scheduled runs' cursor is theirs.
            next.cursor.clone_from(&self.cursor);
            next.last_error.clone_from(&self.last_error);
            return ReportOutcome {
                state: next,
                just_disabled: false,
                recovered: false,
            };
        }
        if report.interrupted {
            // Neither a success nor a failure: the acknowledged pages' cursor is kept.
            if report.new_cursor.is_some() {
                next.cursor.clone_from(&report.new_cursor);
            }
            return ReportOutcome {
                state: next,
                just_disabled: false,
                recovered: false,
            };
        }
        if report.error.is_none() {
            if report.new_cursor.is_some() {
                next.cursor.clone_from(&report.new_cursor);
            }
            next.consecutive_failures = 0;
            // Only a person brings a disabled connector back: a scheduled run that was in
            // flight when someone disabled it, or a slot redone after a crash, keeps what
            // it published (and its cursor) but must not undo `connector disable`.
            let recovered = report.manual && !self.enabled;
            next.enabled = self.enabled || recovered;
            return ReportOutcome {
                state: next,
                just_disabled: false,
                recovered,
            };
        }
        next.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let just_disabled =
            self.enabled && next.consecutive_failures >= report.max_consecutive_failures;
        if just_disabled {
            next.enabled = false;
        }
        ReportOutcome {
            state: next,
            just_disabled,
            recovered: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(error: Option<&str>, cursor: Option<&str>) -> RunReport {
        let t = Timestamp::UNIX_EPOCH;
        RunReport {
            runner: RunnerId::parse("r1").unwrap(),
            slot: t,
            started_at: t,
            ended_at: t,
            records_pulled: 0,
            points_published: 0,
            points_rejected: 0,
            error: error.map(str::to_owned),
            new_cursor: cursor.map(str::to_owned),
            max_consecutive_failures: 2,
            interrupted: false,
            manual: false,
            backfill: None,
        }
    }

    #[test]
    fn a_requested_run_is_cleared_by_a_run_of_a_later_slot_but_not_by_a_backfill() {
        let t = Timestamp::UNIX_EPOCH;
        let asked = ConnectorState {
            run_requested_at: Some(t),
            ..ConnectorState::default()
        };
        let earlier = RunReport {
            manual: true,
            slot: t - SignedDuration::from_secs(1),
            ..report(None, None)
        };
        assert_eq!(asked.after(&earlier).state.run_requested_at, Some(t));
        let backfill = RunReport {
            backfill: Some("2026-03-01..2026-03-07".into()),
            ..report(None, None)
        };
        assert_eq!(asked.after(&backfill).state.run_requested_at, Some(t));
        let manual = RunReport {
            manual: true,
            ..report(Some("503"), None)
        };
        assert_eq!(
            asked.after(&manual).state.run_requested_at,
            None,
            "a failed run is still the run asked for: its error is in the log"
        );
        let scheduled = report(None, None);
        assert_eq!(
            asked.after(&scheduled).state.run_requested_at,
            None,
            "a slot taken up again or scheduled at the time answers it too"
        );
    }

    #[test]
    fn a_backfill_changes_neither_cursor_nor_failures_nor_the_enabled_flag() {
        let start = ConnectorState {
            cursor: Some("5".into()),
            enabled: false,
            consecutive_failures: 1,
            last_error: Some("503".into()),
            ..ConnectorState::default()
        };
        for error in [None, Some("timeout")] {
            let backfill = RunReport {
                backfill: Some("2026-03-01..2026-03-07".into()),
                manual: true,
                ..report(error, Some("9"))
            };
            let after = start.after(&backfill);
            assert_eq!(
                (
                    after.state.cursor.as_deref(),
                    after.state.consecutive_failures
                ),
                (Some("5"), 1)
            );
            assert_eq!(after.state.last_error.as_deref(), Some("503"));
            assert!(!after.state.enabled && !after.just_disabled && !after.recovered);
        }
        assert_eq!(
            checked_backfill("2026-03-01..2026-W12").unwrap(),
            "2026-03-01..2026-W12"
        );
        for bad in ["2026-03-01", "2026-03-01..soon", "a..b"] {
            assert!(checked_backfill(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_run_keeps_the_cursor_and_the_limit_disables_once() {
        let start = ConnectorState {
            cursor: Some("5".into()),
            ..ConnectorState::default()
        };
        let first = start.after(&report(Some("503"), Some("9")));
        assert_eq!(first.state.cursor.as_deref(), Some("5"));
        assert!(!first.just_disabled);
        let second = first.state.after(&report(Some("503"), None));
        assert!(second.just_disabled && !second.state.enabled);
        let third = second.state.after(&report(Some("503"), None));
        assert!(!third.just_disabled);
        assert_eq!(third.state.consecutive_failures, 3);
        let good = third.state.after(&RunReport {
            manual: true,
            ..report(None, Some("9"))
        });
        assert!(good.recovered && good.state.enabled);
        assert_eq!(good.state.cursor.as_deref(), Some("9"));
        assert_eq!(good.state.consecutive_failures, 0);
    }

    #[test]
    fn only_a_manual_success_re_enables_a_disabled_connector() {
        let disabled = ConnectorState {
            cursor: Some("5".into()),
            enabled: false,
            consecutive_failures: 4,
            ..ConnectorState::default()
        };
        let scheduled = disabled.after(&report(None, Some("9")));
        assert!(!scheduled.recovered && !scheduled.state.enabled);
        assert_eq!(scheduled.state.cursor.as_deref(), Some("9"));
        assert_eq!(scheduled.state.consecutive_failures, 0);
        let failed_by_hand = disabled.after(&RunReport {
            manual: true,
            ..report(Some("503"), None)
        });
        assert!(!failed_by_hand.recovered && !failed_by_hand.state.enabled);
        assert!(!failed_by_hand.just_disabled, "it was disabled already");
        let by_hand = scheduled.state.after(&RunReport {
            manual: true,
            ..report(None, None)
        });
        assert!(by_hand.recovered && by_hand.state.enabled);
        let again = by_hand.state.after(&RunReport {
            manual: true,
            ..report(None, None)
        });
        assert!(!again.recovered, "an enabled connector does not recover");
    }

    #[test]
    fn an_interrupted_run_keeps_its_cursor_without_touching_failures() {
        let failing = ConnectorState {
            consecutive_failures: 1,
            ..ConnectorState::default()
        };
        let stopped = failing.after(&RunReport {
            interrupted: true,
            ..report(None, Some("7"))
        });
        assert_eq!(stopped.state.cursor.as_deref(), Some("7"));
        assert_eq!(stopped.state.consecutive_failures, 1);
        assert!(!stopped.recovered && !stopped.just_disabled);
    }

    #[test]
    fn errors_are_cut_and_long_cursors_refused() {
        assert_eq!(bounded_error("503"), "503");
        let cut = bounded_error(&"e".repeat(10_000));
        assert_eq!(cut.len(), MAX_ERROR_BYTES);
        assert!(cut.ends_with("[cut: 10000 bytes in all]"));
        assert!(checked_cursor("9".repeat(MAX_CURSOR_BYTES)).is_ok());
        assert!(matches!(
            checked_cursor("9".repeat(MAX_CURSOR_BYTES + 1)),
            Err(RunnerError::CursorTooLong { len: 1025 })
        ));
    }

    #[test]
    fn names_are_checked() {
        assert!(ConnectorName::parse("").is_err());
        assert!(ConnectorName::parse("a\nb").is_err());
        assert!(ConnectorName::parse(&"x".repeat(201)).is_err());
        assert!(LeaseTtl::new(0).is_err());
        assert!(LeaseTtl::new(30).is_ok());
    }
}
