//! A disabled connector stays disabled; a mistake on the runner's machine is not a source
//! failure; what a runner reports is bounded. The real `kpistream runner` and
//! `kpistream connector` binaries run against a real server on port 0, a REST API the
//! test serves (whose answers can be held until the test lets them go) and SQLite files.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use kpistream::client::Client;
use kpistream::proto;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::watch;
use tonic::Code;

use crate::common::runner::{
    RunnerSetup, TestRunner, Workspace, connector, kpistream, runs, sample, serve, state,
    wait_for_runs, wait_for_state,
};
use crate::common::{TestServer, values};

/// The rule, word for word as both docs must state it.
const DISABLED_RULE: &str = "Only `kpistream connector enable NAME` or a successful \
    `kpistream connector run NAME` turns a disabled connector back on; a run that was in \
    flight when it was disabled finishes (its points stay published and its cursor is \
    kept) without re-enabling it, and no runner redoes its unfinished slot while it is \
    disabled.";

/// The audit detail of a connector a manual run brought back.
const RECOVERED: &str = "recovered by a successful manual run (connector run)";

/// A REST source whose answers wait until the test opens its gate, so a run can be
/// caught in flight. It counts the requests it was sent.
#[derive(Clone)]
struct GatedApi {
    gate: Arc<watch::Sender<bool>>,
    requests: Arc<AtomicUsize>,
}

impl GatedApi {
    /// Starts it with its gate closed; returns it and the URL of its two records.
    fn start() -> (Self, String) {
        async fn items(State(api): State<GatedApi>) -> axum::Json<Value> {
            api.requests.fetch_add(1, SeqCst);
            let _ = api.gate.subscribe().wait_for(|open| *open).await;
            axum::Json(json!([
                {"day": "2024-05-01", "value": "7", "updated_at": "2024-05-01T10:00:00Z"},
                {"day": "2024-05-02", "value": "8", "updated_at": "2024-05-02T10:00:00Z"},
            ]))
        }
        let api = Self {
            gate: Arc::new(watch::channel(false).0),
            requests: Arc::default(),
        };
        let base = serve(
            Router::new()
                .route("/items", get(items))
                .with_state(api.clone()),
        );
        (api, format!("{base}/items"))
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn requests(&self) -> usize {
        self.requests.load(SeqCst)
    }

    /// Waits until a request is held at the gate: a run is in flight.
    fn wait_for_request(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.requests() == 0 {
            assert!(
                Instant::now() < deadline,
                "no run asked the API within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The points of a run of [`GatedApi`], and the cursor it leaves.
fn gated_values() -> Vec<(String, String)> {
    vec![
        ("2024-05-01".to_owned(), "7".to_owned()),
        ("2024-05-02".to_owned(), "8".to_owned()),
    ]
}
const GATED_CURSOR: &str = "2024-05-02T10:00:00Z";

/// A connector of `url` (a [`GatedApi`]) that runs when a runner first sees it and
/// otherwise once a year, i.e. never during a test; incremental on `$.updated_at`.
fn gated_connector(name: &str, credential: &Path, url: &str) -> String {
    format!(
        r#"name = "{name}"
credential_file = "{credential}"
schedule = "0 0 1 1 *"
run_on_start = true

[retry]
max_attempts = 1

[cursor]
field = "$.updated_at"

[mapping]
period = "$.day"
value = "$.value"

[source]
type = "rest"
url = "{url}"
"#,
        credential = credential.display()
    )
}

/// A workspace holding connector `name` of a [`GatedApi`] publishing to a new daily
/// stream; returns the workspace, the API and the stream's id.
async fn gated_workspace(server: &TestServer, name: &str) -> (Workspace, GatedApi, String) {
    let ws = Workspace::new();
    let (stream_id, credential) = server.daily_stream(name).await;
    let credential = ws.credential(name, &credential);
    let (api, url) = GatedApi::start();
    ws.write(
        &format!("{name}.toml"),
        &gated_connector(name, &credential, &url),
    );
    (ws, api, stream_id)
}

/// `kpistream connector ARGS` for the verbs that take no directory, expected to succeed.
fn connector_verb(server: &TestServer, ws: &Workspace, args: &[&str]) -> String {
    let args = [&["connector"], args].concat();
    succeeded(kpistream(server, ws.dir.path(), &BTreeMap::new(), &args))
}

fn succeeded(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the command failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The audit entries of `target` as `(action, detail)`, oldest first, as
/// `kpistream audit list` prints them.
fn audited(server: &TestServer, ws: &Workspace, target: &str) -> Vec<(String, String)> {
    let args = ["audit", "list", "--target", target, "--output", "json"];
    let json = succeeded(kpistream(server, ws.dir.path(), &BTreeMap::new(), &args));
    let entries: Vec<BTreeMap<String, serde_json::Value>> = serde_json::from_str(&json).unwrap();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    entries
        .into_iter()
        .map(|e| (text(&e["action"]), text(&e["detail"])))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Disabled means disabled

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_disabled_during_a_run_stays_disabled_and_keeps_what_the_run_published() {
    let server = TestServer::start();
    let client = server.client().await;
    let (ws, api, stream_id) = gated_workspace(&server, "in-flight").await;
    let mut runner = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-a"));

    api.wait_for_request();
    assert_eq!(
        connector_verb(&server, &ws, &["disable", "in-flight"]).trim(),
        "in-flight disabled"
    );
    api.open();

    let done = wait_for_runs(&client, "in-flight", 1, Duration::from_secs(30)).await;
    assert_eq!(done[0].error, "", "the run succeeded: {:#?}", done[0]);
    assert_eq!(done[0].points_published, 2);
    let after = state(&client, "in-flight").await;
    assert!(
        !after.enabled,
        "the run in flight re-enabled the connector: {after:#?}"
    );
    assert_eq!(
        after.cursor.as_deref(),
        Some(GATED_CURSOR),
        "its cursor is kept, so nothing is published twice later"
    );
    assert_eq!(after.consecutive_failures, 0);
    assert_eq!(values(&client, &stream_id).await, gated_values());
    assert!(runner.terminate().success());
    assert!(
        !runner.logs().contains("recovered"),
        "no recovery was announced:\n{}",
        runner.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_disabled_while_its_runner_was_down_is_not_redone_when_a_runner_starts() {
    let server = TestServer::start();
    let client = server.client().await;
    let (ws, api, stream_id) = gated_workspace(&server, "orphaned").await;
    let mut first = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-a"));
    api.wait_for_request();
    first.kill();
    let slot = state(&client, "orphaned")
        .await
        .unfinished_slot
        .expect("the killed run left its slot unfinished");
    connector_verb(&server, &ws, &["disable", "orphaned"]);
    // From now on the source answers at once: a redone slot would complete.
    api.open();

    let mut second = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-b"));
    second.wait_for_log("left unfinished", Duration::from_secs(20));
    // Past the dead runner's lease (3 s), when the slot could be taken again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs(&client, "orphaned").await, [], "the slot was redone");
    assert_eq!(api.requests(), 1, "the source was asked again");
    let after = state(&client, "orphaned").await;
    assert!(!after.enabled, "{after:#?}");
    assert_eq!(after.unfinished_slot, Some(slot), "nobody completed it");
    assert_eq!(after.cursor, None);
    assert_eq!(values(&client, &stream_id).await, []);
    assert!(second.terminate().success());
    let logs = second.logs();
    assert!(logs.contains("its unfinished slot is not redone"), "{logs}");
    assert!(!logs.contains("run started"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_run_brings_a_disabled_connector_back_and_the_audit_log_says_so() {
    let server = TestServer::start();
    let client = server.client().await;
    let (ws, api, stream_id) = gated_workspace(&server, "by-hand").await;
    api.open();
    connector_verb(&server, &ws, &["disable", "by-hand"]);

    let out = succeeded(connector(
        &server,
        &ws.connectors,
        &BTreeMap::new(),
        &["run", "by-hand"],
    ));
    assert!(
        out.contains("by-hand recovered: it is enabled again"),
        "{out}"
    );
    let back = state(&client, "by-hand").await;
    assert!(back.enabled && back.consecutive_failures == 0, "{back:#?}");
    assert_eq!(back.cursor.as_deref(), Some(GATED_CURSOR));
    assert_eq!(values(&client, &stream_id).await, gated_values());
    // A second manual run of an enabled connector recovers nothing.
    let again = succeeded(connector(
        &server,
        &ws.connectors,
        &BTreeMap::new(),
        &["run", "by-hand"],
    ));
    assert!(!again.contains("recovered"), "{again}");

    assert_eq!(
        audited(&server, &ws, "by-hand"),
        [
            ("connector.disabled".to_owned(), String::new()),
            ("connector.enabled".to_owned(), RECOVERED.to_owned()),
        ]
    );
}

#[test]
fn the_rule_on_disabled_connectors_is_one_identical_sentence_in_both_docs() {
    let rule = DISABLED_RULE
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for doc in ["docs/server.md", "docs/connectors.md"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(doc);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains(&rule), "{doc} does not state: {rule}");
    }
}

// ---------------------------------------------------------------------------------------
// A mistake on the runner's machine

const NO_CREDENTIAL: &str = "KPISTREAM_HOSTILE_CREDENTIAL_NOT_SET";
const NO_PASSWORD: &str = "KPISTREAM_HOSTILE_PASSWORD_NOT_SET";

/// A connector fired every second and disabled by its first counted failure, mapping
/// the fields `day` and `value` (`$.day` and `$.value` for a REST `source`).
fn every_second(name: &str, credential: &str, source: &str) -> String {
    let field = if source.contains("\"rest\"") {
        "$."
    } else {
        ""
    };
    format!(
        "name = \"{name}\"\n{credential}\nschedule = \"* * * * * *\"\n\
         max_consecutive_failures = 1\n\n[retry]\nmax_attempts = 1\n\n\
         [mapping]\nperiod = \"{field}day\"\nvalue = \"{field}value\"\n\n\
         [source]\n{source}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_variable_that_is_not_set_stops_the_run_on_the_runner_and_the_server_records_nothing()
 {
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let (api, url) = GatedApi::start();
    api.open();
    let (_, credential) = server.daily_stream("warehouse").await;
    let credential = format!(
        "credential_file = \"{}\"",
        ws.credential("warehouse", &credential).display()
    );
    // An empty file is an empty SQLite database: it has no table `kpis`.
    let database = ws.dir.path().join("warehouse.db");
    std::fs::File::create(&database).unwrap();
    let sqlite = format!(
        "type = \"sql\"\nurl = \"sqlite://{}\"\nquery = \"SELECT day, value FROM kpis\"",
        database.display()
    );
    ws.write(
        "no-credential.toml",
        &every_second(
            "no-credential",
            &format!("credential_env = \"{NO_CREDENTIAL}\""),
            &format!("type = \"rest\"\nurl = \"{url}\""),
        ),
    );
    ws.write(
        "no-password.toml",
        &every_second(
            "no-password",
            &credential,
            &format!("{sqlite}\npassword_env = \"{NO_PASSWORD}\""),
        ),
    );
    // The contrast: a query the database refuses is the source's failure, and counts.
    ws.write(
        "no-table.toml",
        &every_second("no-table", &credential, &sqlite),
    );
    let mut runner = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-a"));

    let refused =
        wait_for_state(&client, "no-table", Duration::from_secs(20), |s| !s.enabled).await;
    assert!(refused.last_error.contains("no such table"), "{refused:#?}");
    assert_eq!(runs(&client, "no-table").await.len(), 1);
    for (name, var) in [
        ("no-credential", NO_CREDENTIAL),
        ("no-password", NO_PASSWORD),
    ] {
        let logged = |logs: &str| {
            logs.lines()
                .filter(|l| l.contains("ERROR") && l.contains(name) && l.contains(var))
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while logged(&runner.logs()) < 2 {
            assert!(
                Instant::now() < deadline,
                "two slots of {name} did not log that {var} is not set:\n{}",
                runner.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(runs(&client, name).await, [], "{name} was reported");
        let untouched = state(&client, name).await;
        assert!(untouched.enabled, "{untouched:#?}");
        assert_eq!(untouched.consecutive_failures, 0);
        assert_eq!(untouched.unfinished_slot, None, "no lease was taken");
        assert_eq!(untouched.last_run_started, None);
    }
    assert_eq!(
        api.requests(),
        0,
        "the source was called without its credential"
    );
    let metrics = reqwest::get(runner.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = r#"kpistream_runner_config_errors_total{connector="no-credential"}"#;
    assert!(
        sample(&metrics, series).is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    assert!(runner.terminate().success());

    let by_hand = connector(
        &server,
        &ws.connectors,
        &BTreeMap::new(),
        &["run", "no-credential"],
    );
    let stderr = String::from_utf8_lossy(&by_hand.stderr);
    assert!(!by_hand.status.success(), "{stderr}");
    assert!(
        stderr.contains(NO_CREDENTIAL) && stderr.contains("nothing was reported to the server"),
        "{stderr}"
    );
    assert_eq!(runs(&client, "no-credential").await, []);
}

// ---------------------------------------------------------------------------------------
// Bounded text

async fn lease(client: &Client, connector: &str, slot: &prost_types::Timestamp) {
    let lease = client
        .runner()
        .acquire_lease(proto::AcquireLeaseRequest {
            connector: connector.into(),
            slot: Some(*slot),
            runner_id: "hostile-runner".into(),
            ttl_seconds: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lease.granted, "{lease:?}");
}

fn hostile_report(slot: prost_types::Timestamp, error: &str) -> proto::RunReport {
    proto::RunReport {
        connector: "hostile".into(),
        runner_id: "hostile-runner".into(),
        slot: Some(slot),
        started_at: Some(slot),
        ended_at: Some(slot),
        error: error.into(),
        max_consecutive_failures: 100,
        ..proto::RunReport::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_megabyte_run_error_is_kept_cut_with_a_marker_and_the_run_log_stays_small() {
    let server = TestServer::start();
    let client = server.client().await;
    // A hostile runner reports five runs with an error of 3 MiB each (under the 4 MiB
    // message limit), straight through the SDK's runner client.
    let huge = "e".repeat(3 << 20);
    let slot = |n: i64| prost_types::Timestamp {
        seconds: 1_900_000_000 + n * 60,
        nanos: 0,
    };
    for n in 0..5 {
        lease(&client, "hostile", &slot(n)).await;
        client
            .runner()
            .report_run(hostile_report(slot(n), &huge))
            .await
            .expect("a long error is cut, not refused");
    }
    // The ListRuns reply as the server sent it.
    let log = proto::ListRunsResponse {
        runs: runs(&client, "hostile").await,
        next_page_token: String::new(),
    };
    assert_eq!(log.runs.len(), 5);
    for run in &log.runs {
        assert!(run.error.len() <= 2_048, "{} bytes kept", run.error.len());
        assert!(run.error.starts_with("eee"), "{}", run.error);
        assert!(
            run.error.ends_with("e… [cut: 3145728 bytes in all]"),
            "{}",
            &run.error[run.error.len() - 60..]
        );
    }
    assert!(
        log.encoded_len() < 16 << 10,
        "ListRuns answered {} bytes",
        log.encoded_len()
    );
    assert_eq!(
        state(&client, "hostile").await.last_error,
        log.runs[0].error
    );

    // A cut cursor would point at the wrong record: an over-long one is refused.
    lease(&client, "hostile", &slot(5)).await;
    let refused = client
        .runner()
        .report_run(proto::RunReport {
            new_cursor: Some("9".repeat(1_025)),
            ..hostile_report(slot(5), "")
        })
        .await
        .expect_err("a 1,025-byte cursor is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("1025 bytes long; the limit is 1024"),
        "{}",
        refused.message()
    );
    assert_eq!(state(&client, "hostile").await.cursor, None);

    // The real runner: a command whose standard error is one line of a million bytes.
    let ws = Workspace::new();
    let (_, credential) = server.daily_stream("loud").await;
    let credential = ws.credential("loud", &credential);
    ws.write(
        "loud.toml",
        &format!(
            "name = \"loud\"\ncredential_file = \"{}\"\nschedule = \"0 0 1 1 *\"\n\n\
             [mapping]\nperiod = \"day\"\nvalue = \"value\"\n\n[source]\ntype = \"command\"\n\
             argv = [\"sh\", \"-c\", \"printf '%01000000d' 0 >&2; exit 3\"]\n",
            credential.display()
        ),
    );
    let out = connector(&server, &ws.connectors, &BTreeMap::new(), &["run", "loud"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.len() < 4_096 && stderr.contains(" bytes in all]"),
        "{} bytes: {stderr}",
        stderr.len()
    );
    let logged = runs(&client, "loud").await;
    assert!(logged[0].error.len() <= 2_048, "{}", logged[0].error.len());
    assert!(logged[0].error.contains("… [cut: "), "{}", logged[0].error);
}
