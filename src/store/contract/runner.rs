//! Connector runner state: leases on scheduled slots, run reports, the enabled flag and
//! the run log.

use jiff::{SignedDuration, Timestamp};

use super::{TestOrg, assert_conflict, at, new_org};
use crate::runner_state::{
    ConnectorName, ConnectorState, LeaseOutcome, LeaseTtl, ReportOutcome, RunRecord, RunReport,
    RunnerId,
};

use crate::store::{Store, StoreError};

/// Runs kept per connector (docs/server.md, "Run log").
const RUNS_KEPT: usize = 1_000;

fn connector(name: &str) -> ConnectorName {
    ConnectorName::parse(name).unwrap()
}

fn runner(id: &str) -> RunnerId {
    RunnerId::parse(id).unwrap()
}

/// The scheduled slot `n` hours after the start.
fn slot(n: i64) -> Timestamp {
    at(n * 3_600)
}

/// A successful run of `slot` by `runner`, from one second after the slot to two.
fn report(runner_id: &str, slot: Timestamp) -> RunReport {
    RunReport {
        runner: runner(runner_id),
        slot,
        started_at: slot + SignedDuration::from_secs(1),
        ended_at: slot + SignedDuration::from_secs(2),
        records_pulled: 10,
        points_published: 9,
        points_rejected: 1,
        error: None,
        new_cursor: None,
        max_consecutive_failures: 3,
        interrupted: false,
        manual: false,
        backfill: None,
    }
}

fn failed(runner_id: &str, slot: Timestamp, error: &str) -> RunReport {
    RunReport {
        error: Some(error.into()),
        new_cursor: Some("moved".into()),
        ..report(runner_id, slot)
    }
}

fn granted(holder: &str, expires_at: Timestamp) -> LeaseOutcome {
    LeaseOutcome {
        granted: true,
        holder: Some(runner(holder)),
        expires_at: Some(expires_at),
        slot_completed: false,
    }
}

fn refused(holder: Option<(&str, Timestamp)>, slot_completed: bool) -> LeaseOutcome {
    LeaseOutcome {
        granted: false,
        holder: holder.map(|(h, _)| runner(h)),
        expires_at: holder.map(|(_, e)| e),
        slot_completed,
    }
}

/// Asks for the lease on connector "crm" of `org`: `(runner, slot)` at second `now`,
/// for 60 s.
async fn lease(
    store: &dyn Store,
    org: &TestOrg,
    (id, slot): (&str, Timestamp),
    now: Timestamp,
) -> LeaseOutcome {
    let ttl = LeaseTtl::new(60).unwrap();
    store
        .acquire_lease(&org.id, &connector("crm"), slot, &runner(id), ttl, now)
        .await
        .unwrap()
}

/// Leases `report`'s slot for its runner, then reports it, at the report's end.
async fn run(store: &dyn Store, org: &TestOrg, name: &str, report: &RunReport) -> ReportOutcome {
    let ttl = LeaseTtl::new(60).unwrap();
    let name = connector(name);
    let lease = store
        .acquire_lease(
            &org.id,
            &name,
            report.slot,
            &report.runner,
            ttl,
            report.started_at,
        )
        .await
        .unwrap();
    assert!(lease.granted, "{lease:?}");
    store
        .report_run(&org.id, &name, report, report.ended_at)
        .await
        .unwrap()
}

async fn state(store: &dyn Store, org: &TestOrg) -> ConnectorState {
    store
        .connector_state(&org.id, &connector("crm"))
        .await
        .unwrap()
}

async fn slots_listed(store: &dyn Store, org: &TestOrg, name: &str, limit: u32) -> Vec<Timestamp> {
    let runs = store
        .list_runs(&org.id, &connector(name), limit, None)
        .await
        .unwrap();
    runs.into_iter().map(|r| r.slot).collect()
}

pub async fn a_connector_never_seen_has_the_default_state(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    assert_eq!(state(store, &org).await, ConnectorState::default());
    assert!(slots_listed(store, &org, "crm", 10).await.is_empty());
    let released = store
        .release_lease(&org.id, &connector("crm"), &runner("r1"))
        .await
        .unwrap();
    assert!(!released);
}

pub async fn a_lease_is_granted_to_the_first_runner_for_its_slot(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    assert_eq!(
        lease(store, &org, ("r1", slot(0)), at(5)).await,
        granted("r1", at(65))
    );
    assert_eq!(
        state(store, &org).await,
        ConnectorState {
            unfinished_slot: Some(slot(0)),
            ..ConnectorState::default()
        },
        "a leased slot without a report is unfinished"
    );
}

pub async fn the_holder_renews_its_lease(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    lease(store, &org, ("r1", slot(0)), at(5)).await;
    assert_eq!(
        lease(store, &org, ("r1", slot(0)), at(30)).await,
        granted("r1", at(90))
    );
    assert_eq!(
        lease(store, &org, ("r2", slot(0)), at(70)).await,
        refused(Some(("r1", at(90))), false),
        "the renewed lease outlasts the first one"
    );
}

pub async fn another_runner_is_refused_while_the_lease_is_unexpired(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    lease(store, &org, ("r1", slot(0)), at(5)).await;
    let just_before = at(65) - SignedDuration::from_micros(1);
    let held = refused(Some(("r1", at(65))), false);
    assert_eq!(lease(store, &org, ("r2", slot(0)), at(6)).await, held);
    assert_eq!(lease(store, &org, ("r2", slot(0)), just_before).await, held);
    assert_eq!(
        lease(store, &org, ("r2", slot(1)), at(6)).await,
        held,
        "the lease is on the connector, whatever the slot"
    );
    assert_eq!(state(store, &org).await.unfinished_slot, Some(slot(0)));
}

pub async fn an_expired_lease_is_taken_by_another_runner(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    lease(store, &org, ("r1", slot(0)), at(5)).await;
    assert_eq!(
        lease(store, &org, ("r2", slot(0)), at(65)).await,
        granted("r2", at(125)),
        "a lease ends at its expiry"
    );
    assert_eq!(
        lease(store, &org, ("r1", slot(0)), at(70)).await,
        refused(Some(("r2", at(125))), false)
    );
    let late = store
        .report_run(&org.id, &connector("crm"), &report("r1", slot(0)), at(71))
        .await;
    assert_conflict(late);
}

pub async fn a_completed_slot_is_never_leased_again(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    run(store, &org, "crm", &report("r1", slot(0))).await;
    let completed = refused(None, true);
    assert_eq!(lease(store, &org, ("r1", slot(0)), at(10)).await, completed);
    assert_eq!(lease(store, &org, ("r2", slot(0)), at(10)).await, completed);
    assert_eq!(
        lease(store, &org, ("r2", slot(1)), at(11)).await,
        granted("r2", at(71))
    );
    assert_eq!(
        lease(store, &org, ("r1", slot(0)), at(12)).await,
        refused(Some(("r2", at(71))), true),
        "the answer names the holder of the connector's lease"
    );
}

pub async fn release_ends_only_the_holders_lease(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (org_id, crm) = (&org.id, &connector("crm"));
    lease(store, &org, ("r1", slot(0)), at(5)).await;
    let release =
        |id: &'static str| async move { store.release_lease(org_id, crm, &runner(id)).await };
    assert!(!release("r2").await.unwrap(), "r2 holds nothing");
    assert_eq!(state(store, &org).await.unfinished_slot, Some(slot(0)));
    assert!(release("r1").await.unwrap());
    assert_eq!(state(store, &org).await, ConnectorState::default());
    assert!(!release("r1").await.unwrap(), "released already");
    assert_eq!(
        lease(store, &org, ("r2", slot(0)), at(10)).await,
        granted("r2", at(70)),
        "a released slot was not completed"
    );
}

pub async fn a_report_needs_the_lease_for_its_slot(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (org_id, crm) = (&org.id, &connector("crm"));
    let try_report = |id: &'static str, slot| async move {
        store
            .report_run(org_id, crm, &report(id, slot), at(30))
            .await
    };
    // Nothing was leased yet (the connector has no row either).
    assert_conflict(try_report("r1", slot(0)).await);
    lease(store, &org, ("r1", slot(0)), at(5)).await;
    assert_conflict(try_report("r2", slot(0)).await);
    assert_conflict(try_report("r1", slot(1)).await);

    assert!(slots_listed(store, &org, "crm", 10).await.is_empty());
    assert_eq!(
        state(store, &org).await,
        ConnectorState {
            unfinished_slot: Some(slot(0)),
            ..ConnectorState::default()
        },
        "a refused report changes nothing"
    );
    try_report("r1", slot(0))
        .await
        .expect("r1 holds the lease for slot 0");
}

pub async fn a_successful_report_logs_the_run_moves_the_cursor_and_ends_the_lease(
    store: &dyn Store,
) {
    let org = new_org(store, "Acme").await;
    let first = RunReport {
        new_cursor: Some("41".into()),
        ..report("r1", slot(0))
    };
    let outcome = run(store, &org, "crm", &first).await;
    let expected = ConnectorState {
        cursor: Some("41".into()),
        enabled: true,
        consecutive_failures: 0,
        last_run_started: Some(slot(0) + SignedDuration::from_secs(1)),
        last_run_ended: Some(slot(0) + SignedDuration::from_secs(2)),
        last_error: None,
        unfinished_slot: None,
        run_requested_at: None,
    };
    assert_eq!(
        outcome,
        ReportOutcome {
            state: expected.clone(),
            just_disabled: false,
            recovered: false,
        }
    );
    assert_eq!(state(store, &org).await, expected);
    let runs = store
        .list_runs(&org.id, &connector("crm"), 10, None)
        .await
        .unwrap();
    assert_eq!(
        runs,
        [RunRecord {
            id: runs[0].id,
            slot: slot(0),
            runner: "r1".into(),
            started_at: first.started_at,
            ended_at: first.ended_at,
            records_pulled: 10,
            points_published: 9,
            points_rejected: 1,
            error: None,
            interrupted: false,
            manual: false,
            backfill: None,
        }]
    );
    assert_eq!(
        lease(store, &org, ("r2", slot(1)), at(10)).await,
        granted("r2", at(70)),
        "the report ended r1's lease"
    );
    let second = run(store, &org, "crm", &report("r2", slot(1))).await;
    assert_eq!(
        second.state.cursor.as_deref(),
        Some("41"),
        "no new cursor keeps the old one"
    );
}

pub async fn a_report_on_an_expired_lease_nobody_took_is_accepted(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    lease(store, &org, ("r1", slot(0)), at(5)).await;
    let late = store
        .report_run(&org.id, &connector("crm"), &report("r1", slot(0)), at(500))
        .await
        .expect("no other runner can have fired the slot");
    assert_eq!(late.state.unfinished_slot, None);
    assert_eq!(slots_listed(store, &org, "crm", 10).await, [slot(0)]);
}

pub async fn failed_reports_keep_the_cursor_and_disable_at_the_limit(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let good = RunReport {
        new_cursor: Some("5".into()),
        ..report("r1", slot(0))
    };
    run(store, &org, "crm", &good).await;
    let limit_two = |slot| RunReport {
        max_consecutive_failures: 2,
        ..failed("r1", slot, "503 Service Unavailable")
    };
    let first = run(store, &org, "crm", &limit_two(slot(1))).await;
    assert_eq!(
        first.state.cursor.as_deref(),
        Some("5"),
        "a failed run moves no cursor"
    );
    assert_eq!(first.state.consecutive_failures, 1);
    assert_eq!(
        first.state.last_error.as_deref(),
        Some("503 Service Unavailable")
    );
    assert!(first.state.enabled && !first.just_disabled);

    let second = run(store, &org, "crm", &limit_two(slot(2))).await;
    assert_eq!(second.state.consecutive_failures, 2);
    assert!(!second.state.enabled && second.just_disabled);
    assert_eq!(state(store, &org).await, second.state);

    let third = run(store, &org, "crm", &limit_two(slot(3))).await;
    assert!(!third.just_disabled, "disabled once, alerted once");
    assert_eq!(third.state.consecutive_failures, 3);
}

pub async fn a_manual_success_recovers_a_disabled_connector(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    store
        .set_connector_enabled(&org.id, &connector("crm"), false, at(1))
        .await
        .unwrap();
    let scheduled = run(store, &org, "crm", &report("r1", slot(1))).await;
    assert!(
        !scheduled.state.enabled && !scheduled.recovered,
        "leases do not depend on enabled"
    );
    let manual = RunReport {
        manual: true,
        ..report("r1", slot(2))
    };
    let recovered = run(store, &org, "crm", &manual).await;
    assert!(recovered.state.enabled && recovered.recovered);
    assert!(state(store, &org).await.enabled);
}

pub async fn a_requested_run_is_listed_until_a_run_of_its_slot_reports(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let other = new_org(store, "Globex").await;
    let missing = store.request_run(&org.id, &connector("crm"), at(1)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "a connector the server keeps nothing of: {missing:?}"
    );
    run(store, &org, "crm", &report("r1", slot(1))).await;
    run(store, &org, "erp", &report("r1", slot(1))).await;
    run(store, &other, "crm", &report("r1", slot(1))).await;
    let asked = store
        .request_run(&org.id, &connector("crm"), slot(2))
        .await
        .unwrap();
    assert_eq!(asked.run_requested_at, Some(slot(2)));
    let again = store
        .request_run(
            &org.id,
            &connector("crm"),
            slot(2) + SignedDuration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        again.run_requested_at,
        Some(slot(2)),
        "the first request is kept"
    );
    let listed = store.list_connectors(&org.id, false).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["crm", "erp"], "by name, of its organisation only");
    assert_eq!(listed[0].1.run_requested_at, Some(slot(2)));
    assert_eq!(listed[1].1.run_requested_at, None);
    let theirs = store.list_connectors(&other.id, false).await.unwrap();
    assert_eq!(
        theirs[0].1.run_requested_at, None,
        "another organisation's crm"
    );

    // A backfill does not answer the request; the run by hand of its slot does.
    let backfill = RunReport {
        backfill: Some("2026-01-01..2026-01-02".into()),
        ..report("r1", slot(2) + SignedDuration::from_secs(1))
    };
    run(store, &org, "crm", &backfill).await;
    assert_eq!(state(store, &org).await.run_requested_at, Some(slot(2)));
    let manual = RunReport {
        manual: true,
        ..report("r1", slot(2))
    };
    let done = run(store, &org, "crm", &manual).await;
    assert_eq!(done.state.run_requested_at, None);
    assert_eq!(state(store, &org).await.run_requested_at, None);
    let requested = store.list_connectors(&org.id, true).await.unwrap();
    assert!(requested.is_empty(), "{requested:?}");

    // A request nobody took up within its time is asked afresh.
    let ttl = SignedDuration::from_secs(crate::runner_state::RUN_REQUEST_TTL_SECS);
    let asked = store
        .request_run(&org.id, &connector("erp"), slot(3))
        .await
        .unwrap();
    assert_eq!(asked.run_requested_at, Some(slot(3)));
    let kept = store
        .request_run(&org.id, &connector("erp"), slot(3) + ttl)
        .await
        .unwrap();
    assert_eq!(kept.run_requested_at, Some(slot(3)), "not yet too old");
    let late = slot(3) + ttl + SignedDuration::from_secs(1);
    let again = store
        .request_run(&org.id, &connector("erp"), late)
        .await
        .unwrap();
    assert_eq!(again.run_requested_at, Some(late));
    let requested = store.list_connectors(&org.id, true).await.unwrap();
    let names: Vec<&str> = requested.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["erp"], "only those with a request");
}

pub async fn enabling_a_connector_resets_its_failures(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let crm = connector("crm");
    run(store, &org, "crm", &failed("r1", slot(0), "timeout")).await;

    let disabled = store
        .set_connector_enabled(&org.id, &crm, false, at(10))
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(
        disabled.consecutive_failures, 1,
        "disabling keeps the count"
    );
    assert_eq!(state(store, &org).await, disabled);
    let enabled = store
        .set_connector_enabled(&org.id, &crm, true, at(20))
        .await
        .unwrap();
    assert_eq!(
        enabled,
        ConnectorState {
            enabled: true,
            consecutive_failures: 0,
            ..disabled
        }
    );
    assert_eq!(state(store, &org).await, enabled);

    let unseen = store
        .set_connector_enabled(&org.id, &connector("erp"), false, at(30))
        .await
        .unwrap();
    assert_eq!(
        unseen,
        ConnectorState {
            enabled: false,
            ..ConnectorState::default()
        }
    );
}

pub async fn runs_are_listed_newest_first_up_to_the_limit(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    run(store, &org, "crm", &report("r1", slot(0))).await;
    run(store, &org, "crm", &failed("r2", slot(1), "timeout")).await;
    let stopped = RunReport {
        interrupted: true,
        new_cursor: Some("7".into()),
        ..report("r1", slot(2))
    };
    let outcome = run(store, &org, "crm", &stopped).await;
    assert_eq!(outcome.state.cursor.as_deref(), Some("7"));
    assert_eq!(
        outcome.state.consecutive_failures, 1,
        "an interrupted run is no failure"
    );

    let runs = store
        .list_runs(&org.id, &connector("crm"), 10, None)
        .await
        .unwrap();
    let listed: Vec<_> = runs
        .iter()
        .map(|r| (r.slot, r.runner.as_str(), r.error.as_deref(), r.interrupted))
        .collect();
    assert_eq!(
        listed,
        [
            (slot(2), "r1", None, true),
            (slot(1), "r2", Some("timeout"), false),
            (slot(0), "r1", None, false),
        ]
    );
    assert_eq!(
        slots_listed(store, &org, "crm", 2).await,
        [slot(2), slot(1)]
    );
    assert!(slots_listed(store, &org, "erp", 10).await.is_empty());
}

pub async fn a_cursor_is_set_by_hand_only_while_no_run_holds_the_lease(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let crm = connector("crm");
    let moved = RunReport {
        new_cursor: Some("2026-03-10".into()),
        ..report("r1", slot(0))
    };
    run(store, &org, "crm", &moved).await;
    let (before, after) = store
        .set_connector_cursor(&org.id, &crm, Some("2026-03-01"), at(100))
        .await
        .unwrap();
    assert_eq!(before.as_deref(), Some("2026-03-10"));
    assert_eq!(after.cursor.as_deref(), Some("2026-03-01"));
    assert_eq!(
        state(store, &org).await.cursor.as_deref(),
        Some("2026-03-01")
    );

    assert!(lease(store, &org, ("r2", slot(1)), at(200)).await.granted);
    let busy = store
        .set_connector_cursor(&org.id, &crm, None, at(210))
        .await;
    assert_conflict(busy);
    assert_eq!(
        state(store, &org).await.cursor.as_deref(),
        Some("2026-03-01"),
        "unchanged"
    );
    // Once the lease has expired, the cursor can be cleared.
    let (before, after) = store
        .set_connector_cursor(&org.id, &crm, None, at(400))
        .await
        .unwrap();
    assert_eq!(
        (before.as_deref(), after.cursor),
        (Some("2026-03-01"), None)
    );
    // The expired lease ended with it: the late run's report is refused.
    assert_eq!(state(store, &org).await.unfinished_slot, None);
    let unknown = store
        .set_connector_cursor(&org.id, &connector("never-seen"), Some("x"), at(500))
        .await;
    assert!(
        matches!(unknown, Err(crate::store::StoreError::NotFound(_))),
        "{unknown:?}"
    );
}

pub async fn a_forgotten_connector_starts_again_from_nothing(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let crm = connector("crm");
    for n in 0..3 {
        let moved = RunReport {
            new_cursor: Some(format!("c{n}")),
            ..report("r1", slot(n))
        };
        run(store, &org, "crm", &moved).await;
    }
    run(store, &org, "erp", &report("r1", slot(0))).await;
    assert!(
        lease(store, &org, ("r2", slot(9)), at(100_000))
            .await
            .granted
    );
    assert_conflict(store.forget_connector(&org.id, &crm, at(100_010)).await);

    let (before, runs) = store
        .forget_connector(&org.id, &crm, at(200_000))
        .await
        .unwrap();
    assert_eq!(
        (before.and_then(|s| s.cursor), runs),
        (Some("c2".to_owned()), 3)
    );
    assert_eq!(state(store, &org).await, ConnectorState::default());
    assert!(slots_listed(store, &org, "crm", 10).await.is_empty());
    assert_eq!(
        slots_listed(store, &org, "erp", 10).await,
        [slot(0)],
        "another connector keeps its runs"
    );
    // A slot run before is no longer completed: the run log is gone with the state.
    assert!(
        lease(store, &org, ("r1", slot(0)), at(200_001))
            .await
            .granted
    );
    let (again, runs) = store
        .forget_connector(&org.id, &connector("never-seen"), at(200_002))
        .await
        .unwrap();
    assert_eq!((again, runs), (None, 0));
}

pub async fn the_run_log_pages_back_from_the_newest_run(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    for n in 0..5 {
        run(store, &org, "crm", &report("r1", slot(n))).await;
    }
    let crm = connector("crm");
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_runs(&org.id, &crm, 2, before).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        pages.push(page.iter().map(|r| r.slot).collect::<Vec<_>>());
    }
    assert_eq!(
        pages,
        [
            vec![slot(4), slot(3)],
            vec![slot(2), slot(1)],
            vec![slot(0)]
        ],
        "newest first, each page before the last"
    );
}

pub async fn the_run_log_keeps_each_connectors_newest_runs(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    run(store, &org, "erp", &report("r1", slot(0))).await;
    for n in 0..=RUNS_KEPT as i64 {
        run(store, &org, "crm", &report("r1", slot(n))).await;
    }
    let kept = slots_listed(store, &org, "crm", 2 * RUNS_KEPT as u32).await;
    assert_eq!(kept.len(), RUNS_KEPT);
    assert_eq!(kept.first(), Some(&slot(RUNS_KEPT as i64)));
    assert_eq!(kept.last(), Some(&slot(1)), "the oldest run went");
    assert_eq!(
        slots_listed(store, &org, "erp", 10).await,
        [slot(0)],
        "another connector keeps its runs"
    );
}
