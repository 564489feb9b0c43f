//! The runner process operated as its users see it, against the real server, local HTTP
//! sources and a real SMTP server: a connector that keeps failing is disabled and its
//! alert targets are told once, and a manual run brings it back; two runners over one
//! directory never run a slot twice; SIGTERM ends a run after the page in hand and keeps
//! the cursor of what was acknowledged; connector files are picked up, changed and
//! removed without a restart; `connector list / disable / enable / log` and the runner's
//! `/metrics` show what happened.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::interop::{self, PythonService};
use common::runner::{
    RunnerSetup, TestRunner, Workspace, connector, kpistream, runs, sample, serve, state,
    wait_for_runs, wait_for_state,
};
use common::{TestServer, day, values};
use kpistream::proto;
use serde_json::{Value, json};

/// Waits until `check` holds; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run's slot as the runner's log writes it.
fn slot_text(run: &proto::Run) -> String {
    let slot = run.slot.as_ref().expect("every run has its slot");
    jiff::Timestamp::new(slot.seconds, slot.nanos)
        .unwrap()
        .to_string()
}

fn slot_second(run: &proto::Run) -> i64 {
    run.slot.as_ref().expect("every run has its slot").seconds
}

/// The slots of the "run started" lines of `connector` in a runner's log.
fn started_slots(log: &str, connector: &str) -> Vec<String> {
    let ansi = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    let slot = regex::Regex::new(r"\bslot=(\S+)").unwrap();
    let name = format!("connector={connector} ");
    ansi.replace_all(log, "")
        .lines()
        .filter(|line| line.contains("run started") && line.contains(&name))
        .map(|line| {
            slot.captures(line)
                .unwrap_or_else(|| panic!("a run-started line names its slot: {line}"))[1]
                .to_owned()
        })
        .collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `kpistream connector ARGS` (with `--connectors` for the verbs that read the
/// directory) and expects it to succeed.
fn connector_ok(
    server: &TestServer,
    ws: &Workspace,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> String {
    let output = if matches!(args[0], "list" | "run" | "preview") {
        connector(server, &ws.connectors, env, args)
    } else {
        kpistream(server, ws.dir.path(), env, &[&["connector"], args].concat())
    };
    assert!(
        output.status.success(),
        "`connector {}` failed:\n{}\n{}",
        args.join(" "),
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// A command connector that prints one JSON record `{"day": DAY, "value": VALUE}`.
fn echo_connector(name: &str, credential: &Path, schedule: &str, day: &str, value: &str) -> String {
    format!(
        r#"name = "{name}"
credential_file = "{credential}"
schedule = "{schedule}"

[mapping]
period = "day"
value = "value"

[source]
type = "command"
argv = ["echo", '{{"day": "{day}", "value": "{value}"}}']
"#,
        credential = credential.display()
    )
}

// ---------------------------------------------------------------------------------------
// Failures, disabling and alerts

/// A REST source that answers 500 while `broken`, and a webhook receiver.
#[derive(Clone, Default)]
struct Flaky {
    broken: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    alerts: Arc<Mutex<Vec<Value>>>,
}

impl Flaky {
    fn serve(&self) -> String {
        async fn items(State(api): State<Flaky>) -> Response {
            api.requests.fetch_add(1, SeqCst);
            if api.broken.load(SeqCst) {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the invoice database is down",
                )
                    .into_response();
            }
            axum::Json(json!([{"day": "2024-03-01", "value": "42.5"}])).into_response()
        }
        async fn hook(
            State(api): State<Flaky>,
            axum::Json(alert): axum::Json<Value>,
        ) -> StatusCode {
            api.alerts.lock().unwrap().push(alert);
            StatusCode::NO_CONTENT
        }
        serve(
            Router::new()
                .route("/items", get(items))
                .route("/hook", post(hook))
                .with_state(self.clone()),
        )
    }

    fn alerts(&self) -> Vec<Value> {
        self.alerts.lock().unwrap().clone()
    }
}

/// The emails the sink received with this subject, their quoted-printable soft line
/// breaks undone.
fn emails(sink: &PythonService, subject: &str) -> Vec<String> {
    sink.received()
        .iter()
        .map(|m| m["data"].as_str().unwrap().replace("=\r\n", ""))
        .filter(|data| data.contains(&format!("Subject: {subject}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_that_keeps_failing_is_disabled_with_one_alert_and_a_manual_run_brings_it_back()
{
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let (stream_id, credential) = server.daily_stream("invoices").await;
    let credential_file = ws.credential("invoices", &credential);
    let api = Flaky::default();
    api.broken.store(true, SeqCst);
    let base = api.serve();
    let sink = interop::smtp_sink(None);
    let mut env = BTreeMap::new();
    let mut email = String::new();
    if let Some(sink) = &sink {
        env.insert("SMTP_HOST".to_owned(), "127.0.0.1".to_owned());
        env.insert("SMTP_PORT".to_owned(), sink.port.to_string());
        email = "[alerts.email]\nto = [\"ops@example.com\"]\nfrom = \"kpistream@example.com\"\nstarttls = false\n".into();
    }
    ws.write(
        "invoices.toml",
        &format!(
            r#"name = "invoices"
credential_file = "{credential}"
schedule = "* * * * * *"
max_consecutive_failures = 3

[retry]
max_attempts = 1

[alerts]
webhook = {{ url = "{base}/hook" }}

{email}
[mapping]
period = "$.day"
value = "$.value"

[source]
type = "rest"
url = "{base}/items"
"#,
            credential = credential_file.display()
        ),
    );
    let mut setup = RunnerSetup::new(&ws.connectors, "alerting-runner");
    for (key, value) in &env {
        setup = setup.env(key, value);
    }
    let mut runner = TestRunner::start(&server, setup);

    let disabled =
        wait_for_state(&client, "invoices", Duration::from_secs(30), |s| !s.enabled).await;
    assert_eq!(disabled.consecutive_failures, 3, "{disabled:#?}");
    assert!(disabled.last_error.contains("500"), "{disabled:#?}");
    let failed = runs(&client, "invoices").await;
    assert_eq!(failed.len(), 3, "{failed:#?}");
    assert!(
        failed.iter().all(|r| r.error.contains("500")),
        "{failed:#?}"
    );
    // `max_attempts = 1`: one request per run, no retry.
    assert_eq!(api.requests.load(SeqCst), 3);

    // Disabled: the following slots are skipped, the source is not asked again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs(&client, "invoices").await.len(), 3);
    assert_eq!(api.requests.load(SeqCst), 3, "a disabled connector was run");

    wait_until(
        "the disabled webhook arrives",
        Duration::from_secs(15),
        || !api.alerts().is_empty(),
    );
    let alert = &api.alerts()[0];
    assert_eq!(alert["event"], "connector.disabled");
    assert_eq!(alert["connector"], "invoices");
    assert_eq!(alert["stream"], stream_id.as_str());
    assert_eq!(alert["consecutive_failures"], 3);
    assert!(
        alert["last_error"].as_str().unwrap().contains("500"),
        "{alert}"
    );
    assert!(
        alert["at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{alert}"
    );
    if let Some(sink) = &sink {
        let subject = "kpistream: connector invoices disabled after 3 failed runs";
        wait_until(
            "the disabled email arrives",
            Duration::from_secs(15),
            || !emails(sink, subject).is_empty(),
        );
        let message = &sink.received()[0];
        assert_eq!(message["rcpt_tos"], json!(["ops@example.com"]));
        assert_eq!(message["mail_from"], "kpistream@example.com");
        assert!(emails(sink, subject)[0].contains(&stream_id));
    }

    // The source is fixed; running it by hand re-enables it.
    api.broken.store(false, SeqCst);
    let out = connector_ok(&server, &ws, &env, &["run", "invoices"]);
    assert!(
        out.contains("invoices recovered: it is enabled again"),
        "{out}"
    );
    assert!(out.contains("1 point"), "{out}");
    let recovered = state(&client, "invoices").await;
    assert!(recovered.enabled, "{recovered:#?}");
    assert_eq!(recovered.consecutive_failures, 0);
    assert_eq!(
        values(&client, &stream_id).await,
        [("2024-03-01".to_owned(), "42.5".to_owned())]
    );
    wait_until(
        "the recovered webhook arrives",
        Duration::from_secs(15),
        || api.alerts().len() >= 2,
    );
    let alert = &api.alerts()[1];
    assert_eq!(alert["event"], "connector.recovered");
    assert_eq!(alert["connector"], "invoices");
    assert_eq!(alert["stream"], stream_id.as_str());

    // The runner fires it again on its schedule, and nobody is told anything more.
    let before = runs(&client, "invoices").await.len();
    let after = wait_for_runs(&client, "invoices", before + 2, Duration::from_secs(15)).await;
    assert!(after[0].error.is_empty(), "{:#?}", after[0]);
    assert_eq!(after[0].runner_id, runner.id);
    let events: Vec<Value> = api.alerts().iter().map(|a| a["event"].clone()).collect();
    assert_eq!(events, ["connector.disabled", "connector.recovered"]);
    if let Some(sink) = &sink {
        let recovered = "kpistream: connector invoices recovered";
        wait_until(
            "the recovered email arrives",
            Duration::from_secs(15),
            || !emails(sink, recovered).is_empty(),
        );
        assert_eq!(sink.received().len(), 2, "{:#?}", sink.received());
        assert_eq!(emails(sink, recovered).len(), 1);
        let disabled = "kpistream: connector invoices disabled after 3 failed runs";
        assert_eq!(emails(sink, disabled).len(), 1);
    }
    assert!(runner.terminate().success());
}

// ---------------------------------------------------------------------------------------
// Two runners

#[tokio::test(flavor = "multi_thread")]
async fn any_slot_runs_at_most_once_across_two_runners_sharing_a_directory() {
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let (stream_id, credential) = server.daily_stream("heartbeat").await;
    let credential_file = ws.credential("heartbeat", &credential);
    ws.write(
        "heartbeat.toml",
        &echo_connector(
            "heartbeat",
            &credential_file,
            "* * * * * *",
            "2024-05-01",
            "1",
        ),
    );
    let mut a = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-a"));
    let mut b = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-b"));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(a.terminate().success(), "{}", a.logs());
    assert!(b.terminate().success(), "{}", b.logs());

    let mut started: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for runner in [&a, &b] {
        for slot in started_slots(&runner.logs(), "heartbeat") {
            started.entry(slot).or_default().push(runner.id.clone());
        }
    }
    let twice: Vec<_> = started.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "slots run more than once: {twice:?}");

    let logged = runs(&client, "heartbeat").await;
    let slots: BTreeSet<String> = logged.iter().map(slot_text).collect();
    assert_eq!(slots.len(), logged.len(), "the run log repeats a slot");
    assert_eq!(
        slots,
        started.keys().cloned().collect(),
        "every run started was reported, and nothing else"
    );
    assert!(logged.iter().all(|r| r.error.is_empty()), "{logged:#?}");
    let by_a = logged.iter().filter(|r| r.runner_id == "runner-a").count();
    eprintln!(
        "{} slots run in about 61 s: {by_a} by runner-a, {} by runner-b",
        logged.len(),
        logged.len() - by_a
    );
    assert!(
        logged.len() >= 50,
        "only {} of about 60 slots were run",
        logged.len()
    );
    assert_eq!(
        values(&client, &stream_id).await,
        [("2024-05-01".to_owned(), "1".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------
// SIGTERM

/// Records `seq` 1..=20 (day `seq`, value `seq * 10`), 2 a page, those after `since`
/// only; each page takes 500 ms.
#[derive(Clone, Default)]
struct SlowApi {
    /// (`since`, `page`) of every request, in order.
    requests: Arc<Mutex<Vec<(String, usize)>>>,
}

const SLOW_RECORDS: u64 = 20;
const SLOW_PAGE: usize = 2;

impl SlowApi {
    fn serve(&self) -> String {
        async fn events(
            State(api): State<SlowApi>,
            Query(query): Query<HashMap<String, String>>,
        ) -> axum::Json<Value> {
            let since = query.get("since").cloned().unwrap_or_default();
            let page: usize = query["page"].parse().unwrap();
            api.requests.lock().unwrap().push((since.clone(), page));
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after: u64 = if since.is_empty() {
                0
            } else {
                since.parse().unwrap()
            };
            let records: Vec<Value> = (after + 1..=SLOW_RECORDS)
                .map(|seq| json!({"seq": seq, "day": slow_day(seq), "value": slow_value(seq)}))
                .collect();
            let page = records
                .chunks(SLOW_PAGE)
                .nth(page - 1)
                .map(<[Value]>::to_vec)
                .unwrap_or_default();
            axum::Json(Value::Array(page))
        }
        serve(
            Router::new()
                .route("/events", get(events))
                .with_state(self.clone()),
        )
    }

    fn requests(&self) -> Vec<(String, usize)> {
        self.requests.lock().unwrap().clone()
    }
}

/// Every other second: slots at even seconds.
const EVERY_2S: &str = "*/2 * * * * *";

#[tokio::test(flavor = "multi_thread")]
async fn missed_slots_are_skipped_run_once_or_all_run_after_an_outage_as_catch_up_says() {
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let policies = ["skip", "latest", "all"];
    for policy in policies {
        let name = format!("beat-{policy}");
        let (_, credential) = server.daily_stream(&name).await;
        let file = ws.credential(&name, &credential);
        let text = echo_connector(&name, &file, EVERY_2S, "2024-05-01", "1").replace(
            "[mapping]",
            &format!("catch_up = \"{policy}\"\n\n[mapping]"),
        );
        ws.write(&format!("{name}.toml"), &text);
    }
    let newest_slot = async |name: &str| runs(&client, name).await.first().map(slot_second);

    let mut a = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-a"));
    for policy in policies {
        let name = format!("beat-{policy}");
        wait_for_runs(&client, &name, 1, Duration::from_secs(20)).await;
    }
    assert!(a.terminate().success(), "{}", a.logs());
    // No runner for seven seconds: three or four slots of each connector are missed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let outage_end = jiff::Timestamp::now().as_second();
    let mut last_before = BTreeMap::new();
    for policy in policies {
        let name = format!("beat-{policy}");
        last_before.insert(policy, newest_slot(&name).await.expect("runner A ran it"));
    }
    let mut b = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "runner-b"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(b.terminate().success(), "{}", b.logs());

    for policy in policies {
        let name = format!("beat-{policy}");
        let start = last_before[policy];
        let missed: Vec<i64> = (1..)
            .map(|n| start + 2 * n)
            .take_while(|slot| *slot <= outage_end)
            .collect();
        assert!(missed.len() >= 3, "{policy}: {missed:?}");
        let ran: BTreeSet<i64> = runs(&client, &name)
            .await
            .iter()
            .map(slot_second)
            .filter(|slot| *slot > start)
            .collect();
        let ran_missed: Vec<i64> = missed.iter().copied().filter(|s| ran.contains(s)).collect();
        match policy {
            "skip" => assert!(ran_missed.is_empty(), "skip runs none: {ran:?}"),
            // The newest missed slot may fall after the outage's end (the runner read
            // its schedule a moment later), never before the last two seconds of it.
            "latest" => {
                assert!(
                    ran_missed.iter().all(|s| *s > outage_end - 2),
                    "latest runs only the newest missed slot: {ran:?} of {missed:?}"
                );
                assert!(
                    ran.iter()
                        .any(|s| *s > outage_end - 2 && *s <= outage_end + 2),
                    "{ran:?}"
                );
                assert!(ran_missed.len() <= 1, "{ran:?}");
            }
            _ => assert_eq!(ran_missed, missed, "all runs every missed slot"),
        }
    }
    assert!(
        b.logs()
            .contains("running the slots missed while no runner was up"),
        "{}",
        b.logs()
    );
}

fn slow_day(seq: u64) -> String {
    day(i64::try_from(seq).unwrap())
}

fn slow_value(seq: u64) -> String {
    (seq * 10).to_string()
}

fn slow_points(seqs: std::ops::RangeInclusive<u64>) -> Vec<(String, String)> {
    seqs.map(|seq| (slow_day(seq), slow_value(seq))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_run_after_the_page_in_hand_and_the_next_run_continues_from_its_cursor() {
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let (stream_id, credential) = server.daily_stream("events").await;
    let credential_file = ws.credential("events", &credential);
    let api = SlowApi::default();
    let base = api.serve();
    ws.write(
        "events.toml",
        &format!(
            r#"name = "events"
credential_file = "{credential}"
schedule = "0 0 1 1 *"
run_on_start = true

[cursor]
field = "$.seq"

[mapping]
period = "$.day"
value = "$.value"

[source]
type = "rest"
url = "{base}/events"
query = {{ since = "{{{{cursor}}}}" }}
pagination = {{ type = "page", param = "page" }}
"#,
            credential = credential_file.display()
        ),
    );
    let mut runner = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "first"));
    wait_until(
        "the third page is asked for",
        Duration::from_secs(20),
        || api.requests().len() >= 3,
    );
    let asked = Instant::now();
    let status = runner.terminate();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}\n{}", runner.logs());
    assert!(
        took < Duration::from_secs(10),
        "the runner took {took:?} to stop:\n{}",
        runner.logs()
    );

    let logged = runs(&client, "events").await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    let stopped = &logged[0];
    assert!(stopped.interrupted, "{stopped:#?}");
    assert_eq!(stopped.error, "");
    let pulled = stopped.records_pulled;
    assert!(
        (6..SLOW_RECORDS).contains(&pulled) && pulled % 2 == 0,
        "whole pages, at least the three asked for, not all: {stopped:#?}"
    );
    assert_eq!(stopped.points_published, pulled);
    // Every page asked for was published: the one in hand was finished, no other begun.
    let first_run = api.requests();
    assert_eq!(
        first_run,
        (1..=(pulled as usize / SLOW_PAGE))
            .map(|page| (String::new(), page))
            .collect::<Vec<_>>()
    );
    assert_eq!(values(&client, &stream_id).await, slow_points(1..=pulled));
    let kept = state(&client, "events").await;
    assert_eq!(kept.cursor.as_deref(), Some(pulled.to_string().as_str()));
    assert!(kept.enabled);
    assert_eq!(kept.consecutive_failures, 0);

    // A new runner continues from that cursor.
    let _again = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "second"));
    let logged = wait_for_runs(&client, "events", 2, Duration::from_secs(30)).await;
    let resumed = &logged[0];
    assert!(
        resumed.error.is_empty() && !resumed.interrupted,
        "{resumed:#?}"
    );
    assert_eq!(resumed.records_pulled, SLOW_RECORDS - pulled);
    let second_run = &api.requests()[first_run.len()..];
    assert_eq!(second_run[0], (pulled.to_string(), 1));
    assert!(
        second_run
            .iter()
            .all(|(since, _)| *since == pulled.to_string()),
        "{second_run:?}"
    );
    assert_eq!(
        values(&client, &stream_id).await,
        slow_points(1..=SLOW_RECORDS)
    );
    assert_eq!(
        state(&client, "events").await.cursor.as_deref(),
        Some(SLOW_RECORDS.to_string().as_str())
    );
}

// ---------------------------------------------------------------------------------------
// Hot reload

#[tokio::test(flavor = "multi_thread")]
async fn connector_files_are_picked_up_changed_and_removed_while_the_runner_runs() {
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let (stream_id, credential) = server.daily_stream("gauge").await;
    let credential_file = ws.credential("gauge", &credential);
    let runner = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "watcher"));
    let value = |expected: &'static str| {
        let client = client.clone();
        let stream_id = stream_id.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let now = values(&client, &stream_id).await;
                if now == [("2024-06-01".to_owned(), expected.to_owned())] {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "value {expected} never came: {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Added: it runs without a restart.
    let file = |schedule: &str, value: &str| {
        echo_connector("gauge", &credential_file, schedule, "2024-06-01", value)
    };
    ws.write("gauge.toml", &file("* * * * * *", "1"));
    wait_for_runs(&client, "gauge", 1, Duration::from_secs(15)).await;
    value("1").await;

    // Its source changed: the new command runs.
    ws.write("gauge.toml", &file("* * * * * *", "2"));
    value("2").await;

    // Its schedule changed: runs from then on fall on multiples of 3 s only.
    ws.write("gauge.toml", &file("*/3 * * * * *", "2"));
    wait_until(
        "the schedule change is seen",
        Duration::from_secs(10),
        || runner.logs().matches("connector changed").count() >= 2,
    );
    let changed = jiff::Timestamp::now().as_second();
    let mut later = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while later.len() < 2 {
        assert!(Instant::now() < deadline, "no runs on the new schedule");
        tokio::time::sleep(Duration::from_millis(200)).await;
        later = runs(&client, "gauge")
            .await
            .into_iter()
            .filter(|r| slot_second(r) > changed)
            .collect();
    }
    assert!(
        later.iter().all(|r| slot_second(r) % 3 == 0),
        "runs off the new schedule: {later:#?}"
    );

    // It becomes invalid: the problem is logged and the last good definition goes on.
    ws.write("gauge.toml", &file("every now and then", "3"));
    runner.wait_for_log("keeping the last good definition", Duration::from_secs(10));
    let logs = runner.logs();
    let problem = logs
        .lines()
        .find(|line| line.contains("connector definition:"))
        .unwrap_or_else(|| panic!("the problem is logged:\n{logs}"));
    assert!(problem.contains("gauge.toml"), "{problem}");
    assert!(problem.contains("schedule"), "{problem}");
    let broken = jiff::Timestamp::now().as_second();
    let deadline = Instant::now() + Duration::from_secs(15);
    let last_good = loop {
        let newest = runs(&client, "gauge").await.remove(0);
        if slot_second(&newest) > broken {
            break newest;
        }
        assert!(
            Instant::now() < deadline,
            "the last good definition stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(slot_second(&last_good) % 3, 0, "{last_good:#?}");
    value("2").await;

    // Removed: no more runs.
    ws.remove("gauge.toml");
    runner.wait_for_log("connector removed", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let count = runs(&client, "gauge").await.len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        runs(&client, "gauge").await.len(),
        count,
        "a removed connector ran"
    );
}

// ---------------------------------------------------------------------------------------
// Operations: list, disable, enable, log, metrics

/// `connector ... --output json` rows.
fn json_rows(text: &str) -> Vec<BTreeMap<String, serde_json::Value>> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON rows ({e}): {text}"))
}

fn row<'a>(
    rows: &'a [BTreeMap<String, serde_json::Value>],
    name: &str,
) -> &'a BTreeMap<String, serde_json::Value> {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} is listed: {rows:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_list_disable_enable_and_log_and_the_runner_metrics_show_what_happened() {
    let server = TestServer::start();
    let client = server.client().await;
    let ws = Workspace::new();
    let mut streams = BTreeMap::new();
    for name in ["listed", "failing", "resting"] {
        let (stream_id, credential) = server.daily_stream(name).await;
        let file = ws.credential(name, &credential);
        streams.insert(name, (stream_id, file));
    }
    ws.write(
        "listed.toml",
        &echo_connector(
            "listed",
            &streams["listed"].1,
            "* * * * * *",
            "2024-07-01",
            "5",
        ),
    );
    ws.write(
        "resting.toml",
        &format!(
            "enabled = false\n{}",
            echo_connector(
                "resting",
                &streams["resting"].1,
                "0 6 * * *",
                "2024-07-01",
                "5"
            )
        ),
    );
    ws.write(
        "failing.toml",
        &format!(
            r#"name = "failing"
credential_file = "{credential}"
schedule = "* * * * * *"
max_consecutive_failures = 1

[mapping]
period = "day"
value = "value"

[source]
type = "command"
argv = ["sh", "-c", "echo 'the warehouse is locked' >&2; exit 3"]
"#,
            credential = streams["failing"].1.display()
        ),
    );
    let env = BTreeMap::new();
    let mut runner = TestRunner::start(&server, RunnerSetup::new(&ws.connectors, "ops-runner"));
    wait_for_runs(&client, "listed", 2, Duration::from_secs(15)).await;
    wait_for_state(&client, "failing", Duration::from_secs(15), |s| !s.enabled).await;

    let listed = json_rows(&connector_ok(
        &server,
        &ws,
        &env,
        &["list", "--output", "json"],
    ));
    assert_eq!(listed.len(), 3, "{listed:#?}");
    let one = row(&listed, "listed");
    assert_eq!(one["stream"], streams["listed"].0.as_str());
    assert_eq!(one["source"], "command");
    assert_eq!(one["schedule"], "* * * * * * UTC");
    assert_eq!(one["status"], "enabled");
    assert_eq!(one["failures"], 0);
    assert_eq!(one["last_result"], "ok", "{one:?}");
    assert!(
        one["last_run"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{one:?}"
    );
    let failing = row(&listed, "failing");
    assert_eq!(failing["stream"], streams["failing"].0.as_str());
    assert_eq!(failing["status"], "disabled after failures");
    assert_eq!(failing["failures"], 1);
    assert_eq!(failing["next_run"], serde_json::Value::Null);
    assert_eq!(failing["last_result"], "failed", "{failing:?}");
    let resting = row(&listed, "resting");
    assert_eq!(resting["stream"], streams["resting"].0.as_str());
    assert_eq!(resting["status"], "disabled in its file");
    assert_eq!(resting["schedule"], "0 6 * * * UTC");
    assert_eq!(resting["last_run"], serde_json::Value::Null);
    let table = connector_ok(&server, &ws, &env, &["list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");

    // Disabled on the server: the runner skips it.
    let out = connector_ok(&server, &ws, &env, &["disable", "listed"]);
    assert_eq!(out.trim(), "listed disabled");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let count = runs(&client, "listed").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs(&client, "listed").await.len(),
        count,
        "a disabled connector ran"
    );
    let listed = json_rows(&connector_ok(
        &server,
        &ws,
        &env,
        &["list", "--output", "json"],
    ));
    assert_eq!(row(&listed, "listed")["status"], "disabled");
    assert_eq!(row(&listed, "listed")["next_run"], serde_json::Value::Null);

    // Enabled again: it runs again.
    let out = connector_ok(&server, &ws, &env, &["enable", "listed"]);
    assert_eq!(out.trim(), "listed enabled (failure count reset)");
    wait_for_runs(&client, "listed", count + 2, Duration::from_secs(15)).await;
    let failing_runs = runs(&client, "failing").await;
    assert_eq!(
        failing_runs.len(),
        1,
        "a connector disabled after failures ran"
    );

    let metrics = reqwest::get(runner.metrics_url())
        .await
        .expect("the runner serves /metrics")
        .text()
        .await
        .unwrap();
    let succeeded = sample(
        &metrics,
        r#"kpistream_runner_runs_total{connector="listed",outcome="succeeded"}"#,
    )
    .unwrap_or_else(|| panic!("runs of listed are counted:\n{metrics}"));
    assert!(
        succeeded >= (count + 2) as f64 - 0.5,
        "{succeeded}\n{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"kpistream_runner_runs_total{connector="failing",outcome="failed"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"kpistream_runner_disabled_total{connector="failing"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(runner.terminate().success());

    // The run log, as the server keeps it.
    let logged = runs(&client, "listed").await;
    let log = json_rows(&connector_ok(
        &server,
        &ws,
        &env,
        &["log", "listed", "--limit", "1000", "--output", "json"],
    ));
    assert_eq!(log.len(), logged.len());
    for (shown, run) in log.iter().zip(&logged) {
        let started = run.started_at.as_ref().unwrap();
        let started = jiff::Timestamp::new(started.seconds, 0)
            .unwrap()
            .to_string();
        assert_eq!(shown["started"], started.as_str());
        assert_eq!(shown["result"], "ok");
        assert_eq!(shown["trigger"], "schedule");
        assert_eq!(shown["records"], 1);
        assert_eq!(shown["runner"], "ops-runner");
    }
    let log = json_rows(&connector_ok(
        &server,
        &ws,
        &env,
        &["log", "failing", "--output", "json"],
    ));
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["result"], "failed", "{log:#?}");
    assert!(
        log[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("the warehouse is locked")),
        "{log:#?}"
    );
    let out = connector_ok(&server, &ws, &env, &["log", "resting"]);
    assert_eq!(out.trim(), "resting has not run yet");
}

/// The runner's `/healthz` says whether it can work: ok while the server answers it,
/// 503 with the reason once the server is gone, ok again when it is back.
#[tokio::test(flavor = "multi_thread")]
async fn the_runners_healthz_follows_whether_the_server_answers() {
    let mut server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let connectors = dir.path().join("connectors");
    std::fs::create_dir(&connectors).unwrap();
    let runner = TestRunner::start(&server, RunnerSetup::new(&connectors, "health-runner"));
    let healthz = runner.metrics_url().replace("/metrics", "/healthz");
    let check = || async {
        let response = reqwest::get(&healthz).await.expect("the runner answers");
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(check().await, (200, "ok\n".to_owned()));

    server.kill();
    let (status, body) = check().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("the kpistream server did not"), "{body}");

    server.restart_on_same_ports();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = check().await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
