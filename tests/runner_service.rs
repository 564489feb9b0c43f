//! `kpistream.v1.Runner` against the real server: one runner per slot, a dead runner's
//! lease expires, completed slots stay completed, the cursor moves only on success,
//! repeated failures disable a connector and only a manual success brings it back, and
//! only the connector's organisation's admins reach it.

mod common;

use std::time::Duration;

use common::TestServer;
use common::runner::state;
use kpistream::client::{AuditFilter, Client, Role};
use kpistream::proto;
use tonic::Code;

/// A scheduled fire time; each test picks its own so no two share one.
fn slot(n: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_800_000_000 + n * 60,
        nanos: 0,
    }
}

fn now() -> prost_types::Timestamp {
    let now = jiff::Timestamp::now();
    prost_types::Timestamp {
        seconds: now.as_second(),
        nanos: now.subsec_nanosecond(),
    }
}

async fn acquire(client: &Client, connector: &str, n: i64, runner: &str, ttl: u32) -> proto::Lease {
    client
        .runner()
        .acquire_lease(proto::AcquireLeaseRequest {
            connector: connector.into(),
            slot: Some(slot(n)),
            runner_id: runner.into(),
            ttl_seconds: ttl,
        })
        .await
        .expect("the lease call answers")
        .into_inner()
}

fn report(
    connector: &str,
    n: i64,
    runner: &str,
    error: &str,
    cursor: Option<&str>,
) -> proto::RunReport {
    proto::RunReport {
        connector: connector.into(),
        runner_id: runner.into(),
        slot: Some(slot(n)),
        started_at: Some(now()),
        ended_at: Some(now()),
        records_pulled: 4,
        points_published: 3,
        points_rejected: 1,
        error: error.into(),
        new_cursor: cursor.map(str::to_owned),
        max_consecutive_failures: 3,
        interrupted: false,
        manual: false,
        backfill: String::new(),
    }
}

/// Takes the lease for slot `n` and reports a run for it.
async fn run(
    client: &Client,
    connector: &str,
    n: i64,
    error: &str,
    cursor: Option<&str>,
) -> proto::ReportRunResponse {
    assert!(acquire(client, connector, n, "r1", 30).await.granted);
    client
        .runner()
        .report_run(report(connector, n, "r1", error, cursor))
        .await
        .expect("the holder's report is accepted")
        .into_inner()
}

/// The audit entries of connector `target`, oldest first.
async fn audit_of(client: &Client, target: &str) -> Vec<proto::AuditEntry> {
    let filter = AuditFilter {
        target: Some(target.into()),
        ..AuditFilter::default()
    };
    client
        .audit(&filter)
        .await
        .expect("an admin reads the audit log")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_one_of_two_concurrent_acquires_for_a_slot_is_granted() {
    let server = TestServer::start();
    let (a, b) = (server.client().await, server.client().await);
    for n in 0..20 {
        let (first, second) = tokio::join!(
            acquire(&a, "billing", n, "runner-a", 30),
            acquire(&b, "billing", n, "runner-b", 30),
        );
        assert!(
            first.granted != second.granted,
            "slot {n}: exactly one runner gets the lease ({first:?}, {second:?})"
        );
        let winner = if first.granted {
            "runner-a"
        } else {
            "runner-b"
        };
        assert_eq!(first.holder, winner);
        assert_eq!(second.holder, winner);
        a.runner()
            .report_run(report("billing", n, winner, "", None))
            .await
            .expect("the winner reports");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loser_takes_the_lease_once_the_winners_expires() {
    let server = TestServer::start();
    let client = server.client().await;
    let won = acquire(&client, "crm", 1, "runner-a", 1).await;
    assert!(won.granted);
    let lost = acquire(&client, "crm", 1, "runner-b", 1).await;
    assert!(!lost.granted);
    assert_eq!(lost.holder, "runner-a");
    assert_eq!(lost.expires_at, won.expires_at);

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let taken = acquire(&client, "crm", 1, "runner-b", 30).await;
    assert!(taken.granted, "runner-a died: its lease has expired");
    assert_eq!(taken.holder, "runner-b");
    let late = client
        .runner()
        .report_run(report("crm", 1, "runner-a", "", Some("9")))
        .await
        .expect_err("the dead runner lost its lease");
    assert_eq!(late.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_slot_is_never_granted_again() {
    let server = TestServer::start();
    let client = server.client().await;
    run(&client, "warehouse", 1, "", None).await;
    for runner in ["r1", "r2"] {
        let again = acquire(&client, "warehouse", 1, runner, 30).await;
        assert!(
            !again.granted && again.slot_completed,
            "{runner}: {again:?}"
        );
    }
    let failed = run(&client, "warehouse", 2, "timeout", None).await;
    assert_eq!(failed.state.unwrap().consecutive_failures, 1);
    assert!(!acquire(&client, "warehouse", 2, "r2", 30).await.granted);
    assert!(acquire(&client, "warehouse", 3, "r2", 30).await.granted);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_success_advances_the_cursor_and_a_failure_does_not() {
    let server = TestServer::start();
    let client = server.client().await;
    let fresh = state(&client, "orders").await;
    assert!(fresh.enabled && fresh.cursor.is_none() && fresh.consecutive_failures == 0);

    let first = run(&client, "orders", 1, "", Some("2026-11-01T00:00:00Z")).await;
    assert_eq!(
        first.state.unwrap().cursor.as_deref(),
        Some("2026-11-01T00:00:00Z")
    );
    let failed = run(
        &client,
        "orders",
        2,
        "HTTP 503",
        Some("2026-11-09T00:00:00Z"),
    )
    .await;
    let failed = failed.state.unwrap();
    assert_eq!(failed.cursor.as_deref(), Some("2026-11-01T00:00:00Z"));
    assert_eq!(failed.last_error, "HTTP 503");
    let stored = state(&client, "orders").await;
    assert_eq!(stored.cursor.as_deref(), Some("2026-11-01T00:00:00Z"));
    assert!(stored.last_run_started.is_some() && stored.last_run_ended.is_some());

    let without = run(&client, "orders", 3, "", None).await.state.unwrap();
    assert_eq!(
        without.cursor.as_deref(),
        Some("2026-11-01T00:00:00Z"),
        "no new cursor keeps the old one"
    );
    assert_eq!(without.last_error, "");

    let runs = client
        .runner()
        .list_runs(proto::ListRunsRequest {
            connector: "orders".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].slot, Some(slot(3)), "newest first");
    assert_eq!(runs[1].error, "HTTP 503");
    assert_eq!(
        (
            runs[1].records_pulled,
            runs[1].points_published,
            runs[1].points_rejected
        ),
        (4, 3, 1)
    );
    assert_eq!(runs[1].runner_id, "r1");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_up_to_the_limit_disable_the_connector_and_only_a_manual_success_recovers_it() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut disabled_by = Vec::new();
    for n in 1..=5 {
        let out = run(&client, "flaky", n, "connection refused", None).await;
        if out.just_disabled {
            disabled_by.push(n);
        }
        assert_eq!(out.state.unwrap().enabled, n < 3, "run {n}");
    }
    assert_eq!(
        disabled_by,
        vec![3],
        "just_disabled exactly once, at the limit of 3"
    );
    assert_eq!(state(&client, "flaky").await.consecutive_failures, 5);

    // A scheduled run that succeeds while the connector is disabled (one in flight when
    // it was disabled, or a slot redone after a crash) keeps its cursor and ends the
    // streak of failures, but the connector stays disabled.
    let scheduled = run(&client, "flaky", 6, "", Some("42")).await;
    assert!(!scheduled.recovered && !scheduled.just_disabled);
    let scheduled_state = scheduled.state.unwrap();
    assert!(!scheduled_state.enabled);
    assert_eq!(scheduled_state.consecutive_failures, 0);
    assert_eq!(scheduled_state.cursor.as_deref(), Some("42"));

    assert!(acquire(&client, "flaky", 7, "r1", 30).await.granted);
    let by_hand = client
        .runner()
        .report_run(proto::RunReport {
            manual: true,
            ..report("flaky", 7, "r1", "", Some("43"))
        })
        .await
        .expect("the holder's report is accepted")
        .into_inner();
    assert!(by_hand.recovered && !by_hand.just_disabled);
    let good_state = by_hand.state.unwrap();
    assert!(good_state.enabled);
    assert_eq!(good_state.consecutive_failures, 0);
    assert!(
        !run(&client, "flaky", 8, "", None).await.recovered,
        "only once"
    );
    let audited: Vec<_> = audit_of(&client, "flaky")
        .await
        .into_iter()
        .map(|e| (e.action, e.detail))
        .collect();
    assert_eq!(
        audited,
        vec![(
            "connector.enabled".to_owned(),
            "recovered by a successful manual run (connector run)".to_owned()
        )],
        "the manual recovery is audited, the automatic disabling is not an admin action"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_disables_and_enables_a_connector_and_it_is_audited() {
    let server = TestServer::start();
    let client = server.client().await;
    run(&client, "manual", 1, "boom", None).await;
    let set = |enabled| {
        let client = client.clone();
        async move {
            client
                .runner()
                .set_enabled(proto::SetEnabledRequest {
                    connector: "manual".into(),
                    enabled,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let off = set(false).await;
    assert!(!off.enabled);
    assert_eq!(off.consecutive_failures, 1);
    let on = set(true).await;
    assert!(on.enabled);
    assert_eq!(
        on.consecutive_failures, 0,
        "a manual enable resets the failures"
    );

    let actions: Vec<_> = audit_of(&client, "manual")
        .await
        .into_iter()
        .map(|e| (e.action, e.target_kind))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("connector.disabled".to_owned(), "connector".to_owned()),
            ("connector.enabled".to_owned(), "connector".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_without_the_lease_cannot_report() {
    let server = TestServer::start();
    let client = server.client().await;
    let nobody = client
        .runner()
        .report_run(report("sales", 1, "r1", "", Some("1")))
        .await
        .expect_err("nobody holds the lease");
    assert_eq!(nobody.code(), Code::FailedPrecondition);
    assert!(
        nobody.message().contains("does not hold the lease"),
        "{}",
        nobody.message()
    );

    assert!(acquire(&client, "sales", 1, "r1", 30).await.granted);
    let other = client
        .runner()
        .report_run(report("sales", 1, "r2", "", Some("1")))
        .await
        .expect_err("r2 is not the holder");
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert!(
        other.message().contains("\"r1\" holds it"),
        "{}",
        other.message()
    );
    let wrong_slot = client
        .runner()
        .report_run(report("sales", 2, "r1", "", Some("1")))
        .await
        .expect_err("the lease is for slot 1");
    assert_eq!(wrong_slot.code(), Code::FailedPrecondition);
    assert_eq!(state(&client, "sales").await.cursor, None);

    client
        .runner()
        .release_lease(proto::ReleaseLeaseRequest {
            connector: "sales".into(),
            runner_id: "r1".into(),
        })
        .await
        .unwrap();
    assert!(
        acquire(&client, "sales", 1, "r2", 30).await.granted,
        "released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn members_are_refused_and_calls_without_a_token_are_unauthenticated() {
    let server = TestServer::start();
    let admin = server.client().await;
    admin.create_user("ada", Role::Member).await.unwrap();
    let (_, secret) = admin
        .create_token("runner", Some("ada"), None)
        .await
        .unwrap();
    let member = Client::connect(&server.grpc, Some(secret)).await.unwrap();
    let anonymous = server.anonymous_client().await;
    let request = || proto::ConnectorRef {
        connector: "billing".into(),
    };

    let refused = member.runner().get_state(request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = member
        .runner()
        .acquire_lease(proto::AcquireLeaseRequest {
            connector: "billing".into(),
            slot: Some(slot(1)),
            runner_id: "r1".into(),
            ttl_seconds: 30,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let unknown = anonymous.runner().get_state(request()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let invalid = admin
        .runner()
        .acquire_lease(proto::AcquireLeaseRequest {
            connector: "billing".into(),
            slot: Some(slot(1)),
            runner_id: "r1".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_organisation_sees_its_own_connector_of_the_same_name() {
    let server = TestServer::start();
    let first = server.client().await;
    let other = first.create_org("Other", "bob").await.unwrap();
    let second = Client::connect(&server.grpc, Some(other.token))
        .await
        .unwrap();

    run(&first, "billing", 1, "", Some("first-org-cursor")).await;
    assert!(acquire(&first, "billing", 2, "r1", 30).await.granted);

    let theirs = state(&second, "billing").await;
    assert_eq!(theirs.cursor, None);
    assert!(theirs.enabled && theirs.last_run_started.is_none());
    let lease = acquire(&second, "billing", 2, "r9", 30).await;
    assert!(
        lease.granted,
        "the first org's lease is not theirs: {lease:?}"
    );
    let runs = second
        .runner()
        .list_runs(proto::ListRunsRequest {
            connector: "billing".into(),
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert!(runs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_left_unfinished_is_shown_and_an_interrupted_run_keeps_its_cursor() {
    let server = TestServer::start();
    let client = server.client().await;
    assert!(acquire(&client, "erp", 4, "runner-a", 1).await.granted);
    assert_eq!(
        state(&client, "erp").await.unfinished_slot,
        Some(slot(4)),
        "a leased slot without a report is unfinished"
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(acquire(&client, "erp", 4, "runner-b", 30).await.granted);
    let bad = client
        .runner()
        .report_run(proto::RunReport {
            interrupted: true,
            ..report("erp", 4, "runner-b", "boom", Some("c5"))
        })
        .await
        .expect_err("an interrupted run carries no error");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let done = client
        .runner()
        .report_run(proto::RunReport {
            interrupted: true,
            ..report("erp", 4, "runner-b", "", Some("c5"))
        })
        .await
        .expect("an interrupted run is reported")
        .into_inner();
    let s = done.state.unwrap();
    assert_eq!(s.cursor.as_deref(), Some("c5"));
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(s.unfinished_slot, None);
    let runs = client
        .runner()
        .list_runs(proto::ListRunsRequest {
            connector: "erp".into(),
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert!(runs[0].interrupted && runs[0].error.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_log_keeps_the_newest_thousand_runs_of_a_connector() {
    let server = TestServer::start();
    let client = server.client().await;
    for n in 0..1_003 {
        run(&client, "ticker", 10_000 + n, "", None).await;
    }
    run(&client, "other", 1, "", None).await;
    let kept = client
        .runner()
        .list_runs(proto::ListRunsRequest {
            connector: "ticker".into(),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(kept.len(), 1_000);
    assert_eq!(kept[0].slot, Some(slot(10_000 + 1_002)), "newest first");
    assert_eq!(
        kept[999].slot,
        Some(slot(10_000 + 3)),
        "the three oldest are gone"
    );
    let other = client
        .runner()
        .list_runs(proto::ListRunsRequest {
            connector: "other".into(),
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(other.len(), 1, "pruning is per connector");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_token_keeps_connector_state_and_reads_streams_but_changes_nothing_else() {
    let server = TestServer::start();
    let admin = server.client().await;
    let (stream_id, _) = server.daily_stream("signups").await;
    admin.create_user("ci-runner", Role::Runner).await.unwrap();
    let (_, secret) = admin
        .create_token("runner", Some("ci-runner"), None)
        .await
        .unwrap();
    let runner = Client::connect(&server.grpc, Some(secret)).await.unwrap();

    assert!(acquire(&runner, "billing", 1, "r1", 30).await.granted);
    runner
        .runner()
        .report_run(report("billing", 1, "r1", "", Some("7")))
        .await
        .expect("a runner reports its runs");
    assert_eq!(state(&runner, "billing").await.cursor.as_deref(), Some("7"));

    let stream = runner
        .stream(&stream_id)
        .await
        .expect("a runner reads any stream");
    assert!(stream.keys.is_empty(), "but not its keys");
    assert!(runner.points(&stream_id, &Default::default()).await.is_ok());
    let listed = runner.streams(&Default::default()).await.unwrap();
    assert_eq!(listed.len(), 1, "it lists every stream of its organisation");

    let refused = runner.disable_stream(&stream_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = runner
        .create_stream(kpistream::client::NewStream {
            name: "sneaky".into(),
            description: String::new(),
            category: None,
            frequency: kpistream::period::Frequency::Daily,
            value: kpistream::client::ValueKind::Number,
            time_zone: "UTC".into(),
            grants: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("runner"),
        "{}",
        refused.message()
    );
    let refused = runner.create_user("eve", Role::Admin).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manage_grant_gives_a_runner_neither_keys_nor_changes() {
    let server = TestServer::start();
    let admin = server.client().await;
    let (stream_id, _) = server.daily_stream("signups").await;
    admin.create_user("ci-runner", Role::Runner).await.unwrap();
    admin
        .add_grant(&stream_id, "user:ci-runner:manage")
        .await
        .unwrap();
    let (_, secret) = admin
        .create_token("runner", Some("ci-runner"), None)
        .await
        .unwrap();
    let runner = Client::connect(&server.grpc, Some(secret)).await.unwrap();

    let shown = runner.stream(&stream_id).await.unwrap();
    assert!(shown.keys.is_empty(), "GetStream shows a runner no keys");
    let refused = runner.keys(&stream_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = runner.disable_stream(&stream_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}
