//! The runner binary and `kpistream connector` against a REST API the test serves: a
//! local axum server with an OAuth2 client-credentials token endpoint and paginated
//! JSON datasets that can be made slow, scripted to fail, or made to echo what they
//! were sent. A preview publishes nothing; an incremental connector pulls only what is
//! new; a runner killed mid-run is redone by the next one with nothing stored twice or
//! missed; transient errors are retried (honouring `Retry-After`) and others fail at
//! once; secrets show nowhere.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use common::runner::{RunnerSetup, TestRunner, connector, kpistream, runs, state, wait_for_runs};
use common::{TestServer, all_points, day};
use kpistream::client::Client;
use kpistream::proto;
use serde_json::{Value, json};
use tempfile::TempDir;

const CLIENT_ID: &str = "kpistream-test-client";
const CLIENT_SECRET: &str = "test-client-secret-5c1d";
const CANARY_SECRET: &str = "CANARY-oauth-client-secret-7f3a";
const CANARY_KEY: &str = "CANARY-api-key-in-query-2b9e";
/// The `cursor.initial` of the incremental connectors: before every record.
const INITIAL_CURSOR: &str = "2026-01-01T00:00:00Z";

// ---------------------------------------------------------------------------------
// The API

/// How a dataset checks who asks.
#[derive(Clone, Copy, Default, PartialEq)]
enum Guard {
    /// A bearer token the token endpoint issued.
    #[default]
    OAuth,
    /// `api_key` in the query.
    ApiKey,
}

/// Records served at `/v1/NAME`, only those with `updated_at` after the
/// `updated_since` parameter, sorted by it, `per_page` at a time (`page` from 1).
#[derive(Default)]
struct Dataset {
    records: Vec<Value>,
    guard: Guard,
    /// How long each page takes.
    page_delay: Duration,
    /// Answers given before any data, one per request: status and `Retry-After`.
    script: VecDeque<(u16, Option<u64>)>,
    /// Every request is answered with this status and an echo of what it sent.
    failure: Option<u16>,
}

/// One request to a dataset as the API saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    query: HashMap<String, String>,
    status: u16,
}

#[derive(Default)]
struct ApiState {
    client_secret: String,
    api_key: String,
    datasets: HashMap<String, Dataset>,
    seen: HashMap<String, Vec<Seen>>,
    issued: Vec<String>,
    /// The token endpoint answers this status, echoing the credentials it was sent.
    token_failure: Option<u16>,
}

type Shared = Arc<Mutex<ApiState>>;

/// The API server, running in a task of the test's runtime.
struct Api {
    base: String,
    state: Shared,
}

impl Api {
    async fn start(client_secret: &str, api_key: &str) -> Self {
        let state: Shared = Arc::new(Mutex::new(ApiState {
            client_secret: client_secret.into(),
            api_key: api_key.into(),
            ..ApiState::default()
        }));
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/v1/{dataset}", get(records))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    fn with<T>(&self, change: impl FnOnce(&mut ApiState) -> T) -> T {
        change(&mut self.state.lock().unwrap())
    }

    fn dataset(&self, name: &str, dataset: Dataset) {
        self.with(|s| s.datasets.insert(name.into(), dataset));
    }

    fn change(&self, name: &str, change: impl FnOnce(&mut Dataset)) {
        self.with(|s| change(s.datasets.get_mut(name).expect("a dataset")));
    }

    fn seen(&self, name: &str) -> Vec<Seen> {
        self.with(|s| s.seen.get(name).cloned().unwrap_or_default())
    }
}

/// What the caller sent, as an error page that echoes its request would show it.
fn echo(uri: &Uri, headers: &HeaderMap, extra: &str) -> String {
    let sent: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
        .collect();
    format!("refused {uri} sent with [{}] {extra}", sent.join(", "))
}

async fn token(State(state): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let decoded = sent
        .strip_prefix("Basic ")
        .and_then(|b| BASE64_STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let mut api = state.lock().unwrap();
    let refused = |status: u16| {
        let body = echo(&uri, &headers, &format!("decoded as {decoded}"));
        (StatusCode::from_u16(status).unwrap(), body).into_response()
    };
    if let Some(status) = api.token_failure {
        return refused(status);
    }
    if decoded != format!("{CLIENT_ID}:{}", api.client_secret) {
        return refused(401);
    }
    let token = format!("access-token-{}", api.issued.len() + 1);
    api.issued.push(token.clone());
    axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

async fn records(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let at = Instant::now();
    let (status, retry_after, body, delay) = {
        let mut api = state.lock().unwrap();
        let answer = answer(&mut api, &name, &query, &uri, &headers);
        let status = answer.0;
        api.seen
            .entry(name)
            .or_default()
            .push(Seen { at, query, status });
        answer
    };
    tokio::time::sleep(delay).await;
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Status, `Retry-After`, body and delay of the answer to one request.
fn answer(
    api: &mut ApiState,
    name: &str,
    query: &HashMap<String, String>,
    uri: &Uri,
    headers: &HeaderMap,
) -> (u16, Option<u64>, String, Duration) {
    let refused = |status| (status, None, echo(uri, headers, ""), Duration::ZERO);
    let Some(dataset) = api.datasets.get_mut(name) else {
        return refused(404);
    };
    let authorized = match dataset.guard {
        Guard::OAuth => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| api.issued.iter().any(|i| i == t)),
        Guard::ApiKey => query.get("api_key") == Some(&api.api_key),
    };
    if !authorized {
        return refused(401);
    }
    if let Some(status) = dataset.failure {
        return refused(status);
    }
    if let Some((status, retry_after)) = dataset.script.pop_front() {
        let body = json!({"error": "try again later"}).to_string();
        return (status, retry_after, body, Duration::ZERO);
    }
    let since = query.get("updated_since").filter(|s| !s.is_empty());
    let mut selected: Vec<&Value> = dataset
        .records
        .iter()
        .filter(|r| since.is_none_or(|s| text(r, "updated_at") > s.as_str()))
        .collect();
    selected.sort_by_key(|r| text(r, "updated_at"));
    let number =
        |param: &str, default: usize| query.get(param).map_or(default, |v| v.parse().unwrap());
    let (page, per_page) = (number("page", 1), number("per_page", 100));
    let data: Vec<&Value> = selected
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let body = json!({ "data": data }).to_string();
    (200, None, body, dataset.page_delay)
}

fn text<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field].as_str().expect("a text field")
}

/// Record `n`: the daily period `day(n)`, updated at minute `n` of a day.
fn record(n: i64, status: &str, currency: &str, amount: &str) -> Value {
    json!({
        "id": format!("r{n}"),
        "day": day(n),
        "updated_at": updated_at(n),
        "status": status,
        "currency": currency,
        "amount": amount,
    })
}

fn updated_at(n: i64) -> String {
    format!("2026-03-01T{:02}:{:02}:00Z", n / 60, n % 60)
}

/// Paid records `from..=to` in euros, worth `n.25` each.
fn records_between(from: i64, to: i64) -> Vec<Value> {
    (from..=to)
        .map(|n| record(n, "paid", "EUR", &format!("{n}.25")))
        .collect()
}

// ---------------------------------------------------------------------------------
// Connectors

/// A connector directory with a stream's credential and the OAuth2 client secret in
/// files, and the environment its connectors read.
struct Setup {
    _dir: TempDir,
    connectors: PathBuf,
    credential: PathBuf,
    secret: PathBuf,
    stream_id: String,
    env: BTreeMap<String, String>,
}

impl Setup {
    async fn new(server: &TestServer, stream: &str) -> Self {
        let (stream_id, credential) = server.daily_stream(stream).await;
        let dir = tempfile::tempdir().unwrap();
        let connectors = dir.path().join("connectors");
        std::fs::create_dir(&connectors).unwrap();
        let secret = private_file(dir.path(), "client-secret", CLIENT_SECRET);
        let credential = private_file(dir.path(), "credential", &credential.expose_secret());
        Self {
            _dir: dir,
            connectors,
            credential,
            secret,
            stream_id,
            env: BTreeMap::new(),
        }
    }

    /// Writes `NAME.toml`: a REST connector of `url` mapping `$.day` and `$.amount`,
    /// with `top` among the top-level fields, `sections` (filter, cursor) before the
    /// mapping, and `source` in `[source]`. Retries wait 100 ms, then 200 ms…
    fn write(&self, name: &str, top: &str, sections: &str, url: &str, source: &str) {
        let text = format!(
            r#"name = "{name}"
credential_file = "{credential}"
max_consecutive_failures = 100
{top}

[retry]
max_attempts = 4
initial_backoff = "100ms"
max_backoff = "10s"

{sections}

[mapping]
period = "$.day"
value = "$.amount"
external_id = "$.id"

[source]
type = "rest"
url = "{url}"
records = "$.data[*]"
{source}
"#,
            credential = self.credential.display(),
        );
        std::fs::write(self.connectors.join(format!("{name}.toml")), text).unwrap();
    }

    /// OAuth2 client credentials with the secret in a file.
    fn oauth(&self, api: &Api) -> String {
        format!(
            r#"auth = {{ type = "oauth2_client_credentials", token_url = "{}/oauth/token", client_id = "{CLIENT_ID}", client_secret_file = "{}" }}"#,
            api.base,
            self.secret.display()
        )
    }

    /// `kpistream connector ARGS` (output collected; the test's runtime keeps serving).
    fn cli(&self, server: &TestServer, args: &[&str]) -> Output {
        blocking(|| connector(server, &self.connectors, &self.env, args))
    }

    /// `kpistream connector log NAME` (a verb that takes no directory).
    fn log(&self, server: &TestServer, name: &str) -> Output {
        blocking(|| {
            kpistream(
                server,
                &self.connectors,
                &BTreeMap::new(),
                &["connector", "log", name],
            )
        })
    }

    fn runner(&self, server: &TestServer, id: &str) -> TestRunner {
        let mut setup = RunnerSetup::new(&self.connectors, id);
        for (key, value) in &self.env {
            setup = setup.env(key, value);
        }
        blocking(|| TestRunner::start(server, setup))
    }
}

fn private_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{content}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The incremental part of a connector: a cursor on `$.updated_at` sent back as
/// `updated_since`, pages of `per_page` numbered from 1.
fn incremental(per_page: u32) -> (String, String) {
    (
        format!("[cursor]\nfield = \"$.updated_at\"\ninitial = \"{INITIAL_CURSOR}\""),
        format!(
            "query = {{ updated_since = \"{{{{cursor}}}}\", per_page = \"{per_page}\" }}\n\
             pagination = {{ type = \"page\", param = \"page\" }}"
        ),
    )
}

/// Never fires by itself during a test (once a year).
const YEARLY: &str = "schedule = \"0 0 1 1 *\"";

/// Runs blocking work (a process, a wait on a log) without stalling the API's task.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn succeeded(output: &Output, what: &str) -> String {
    let text = out(output);
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// What the preview printed under the record with this id.
fn previewed<'a>(stdout: &'a str, id: &str) -> &'a str {
    let needle = format!("\"id\":\"{id}\"");
    let mut lines = stdout.lines();
    lines
        .find(|l| l.starts_with("record ") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no record {id} in the preview:\n{stdout}"));
    lines.next().map(str::trim).unwrap_or_default()
}

/// (period, value) of the stream's points, checking none was ever revised.
async fn unrevised_values(client: &Client, stream_id: &str) -> Vec<(String, String)> {
    all_points(client, stream_id)
        .await
        .into_iter()
        .map(|p| {
            assert_eq!(p.revision_count, 0, "{} was revised: {p:?}", p.period);
            (p.period, p.value)
        })
        .collect()
}

fn expected_values(from: i64, to: i64) -> Vec<(String, String)> {
    (from..=to).map(|n| (day(n), format!("{n}.25"))).collect()
}

/// Waits until the connector has a run `matching` (newest first) and returns it.
async fn wait_for_run(
    client: &Client,
    name: &str,
    what: &str,
    matching: impl Fn(&proto::Run) -> bool,
) -> proto::Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = runs(client, name).await;
        if let Some(run) = runs.iter().find(|r| matching(r)) {
            return run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} had no run that {what} within 30 s: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preview_shows_what_an_all_filter_and_an_any_filter_keep_and_publishes_nothing() {
    let server = blocking(TestServer::start);
    let api = Api::start(CLIENT_SECRET, "").await;
    api.dataset(
        "invoices",
        Dataset {
            records: vec![
                record(100, "paid", "EUR", "10.50"),
                record(101, "paid", "USD", "20"),
                record(102, "open", "EUR", "30.25"),
                record(103, "open", "USD", "40"),
                record(104, "paid", "EUR", "twelve"),
            ],
            ..Dataset::default()
        },
    );
    let setup = Setup::new(&server, "invoiced").await;
    let (cursor, paging) = incremental(2);
    for (name, matching) in [("paid-and-eur", "all"), ("paid-or-eur", "any")] {
        let filter = format!(
            "[filter]\nmatch = \"{matching}\"\nconditions = [\n  \
             {{ field = \"$.status\", equals = \"paid\" }},\n  \
             {{ field = \"$.currency\", equals = \"EUR\" }},\n]\n\n{cursor}"
        );
        let source = format!("{}\n{paging}", setup.oauth(&api));
        let url = format!("{}/v1/invoices", api.base);
        setup.write(name, YEARLY, &filter, &url, &source);
    }

    let all = succeeded(&setup.cli(&server, &["preview", "paid-and-eur"]), "preview");
    assert!(
        all.contains("filter: all of 2 conditions") && all.contains("nothing is published"),
        "{all}"
    );
    let published = |n: i64, value: &str| format!("-> {} = {value} (external id r{n})", day(n));
    assert_eq!(previewed(&all, "r100"), published(100, "10.50"), "{all}");
    for id in ["r101", "r102", "r103"] {
        assert_eq!(previewed(&all, id), "-> filtered out", "{id}:\n{all}");
    }
    assert!(
        previewed(&all, "r104").starts_with("-> not mapped: ")
            && previewed(&all, "r104").contains("$.amount"),
        "{all}"
    );
    assert!(
        all.contains("5 records shown: 1 would be published, 3 filtered out, 1 not mapped"),
        "{all}"
    );

    let any = succeeded(&setup.cli(&server, &["preview", "paid-or-eur"]), "preview");
    assert!(any.contains("filter: any of 2 conditions"), "{any}");
    assert_eq!(previewed(&any, "r100"), published(100, "10.50"), "{any}");
    assert_eq!(previewed(&any, "r101"), published(101, "20"), "{any}");
    assert_eq!(previewed(&any, "r102"), published(102, "30.25"), "{any}");
    assert_eq!(previewed(&any, "r103"), "-> filtered out", "{any}");
    assert!(
        previewed(&any, "r104").starts_with("-> not mapped: "),
        "{any}"
    );
    assert!(
        any.contains("5 records shown: 3 would be published, 1 filtered out, 1 not mapped"),
        "{any}"
    );

    // Both previews pulled every page (3 pages of 2, then an empty one) ...
    let pages: Vec<String> = api
        .seen("invoices")
        .iter()
        .map(|s| s.query["page"].clone())
        .collect();
    assert_eq!(pages, ["1", "2", "3", "4", "1", "2", "3", "4"]);
    // ... and neither published, moved a cursor, or logged a run.
    let client = server.client().await;
    assert_eq!(all_points(&client, &setup.stream_id).await, []);
    for name in ["paid-and-eur", "paid-or-eur"] {
        let state = state(&client, name).await;
        assert_eq!(state.cursor, None, "{name}: {state:?}");
        assert_eq!(runs(&client, name).await, [], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incremental_connector_run_twice_publishes_only_what_the_api_gained_in_between() {
    let server = blocking(TestServer::start);
    let api = Api::start(CLIENT_SECRET, "").await;
    api.dataset(
        "orders",
        Dataset {
            records: records_between(1, 6),
            ..Dataset::default()
        },
    );
    let setup = Setup::new(&server, "orders").await;
    let (cursor, paging) = incremental(2);
    let source = format!("{}\n{paging}", setup.oauth(&api));
    let url = format!("{}/v1/orders", api.base);
    setup.write("orders", YEARLY, &cursor, &url, &source);
    let client = server.client().await;

    let first = succeeded(&setup.cli(&server, &["run", "orders"]), "the first run");
    assert!(
        first.contains("orders: 6 records pulled, 6 points published, 0 rejected"),
        "{first}"
    );
    let runs_1 = runs(&client, "orders").await;
    assert_eq!(runs_1.len(), 1, "{runs_1:#?}");
    assert_eq!(
        (runs_1[0].records_pulled, runs_1[0].points_published),
        (6, 6)
    );
    assert_eq!(state(&client, "orders").await.cursor, Some(updated_at(6)));
    let before = all_points(&client, &setup.stream_id).await;
    assert_eq!(
        unrevised_values(&client, &setup.stream_id).await,
        expected_values(1, 6)
    );
    let first_requests = api.seen("orders").len();

    api.change("orders", |d| d.records.extend(records_between(7, 9)));
    let second = succeeded(&setup.cli(&server, &["run", "orders"]), "the second run");
    assert!(
        second.contains("orders: 3 records pulled, 3 points published, 0 rejected"),
        "{second}"
    );
    let runs_2 = runs(&client, "orders").await;
    assert_eq!(runs_2.len(), 2, "{runs_2:#?}");
    assert_eq!(
        (runs_2[0].records_pulled, runs_2[0].points_published),
        (3, 3),
        "the newest run: {runs_2:#?}"
    );
    assert_eq!(state(&client, "orders").await.cursor, Some(updated_at(9)));
    assert_eq!(
        unrevised_values(&client, &setup.stream_id).await,
        expected_values(1, 9)
    );
    // The first six points are the first run's, untouched.
    let after = all_points(&client, &setup.stream_id).await;
    assert_eq!(after[..6], before[..]);

    // The API was asked from the initial cursor, then from the first run's.
    let seen = api.seen("orders");
    let since = |requests: &[Seen]| -> Vec<String> {
        requests
            .iter()
            .map(|s| s.query["updated_since"].clone())
            .collect()
    };
    assert_eq!(since(&seen[..first_requests]), vec![INITIAL_CURSOR; 4]);
    assert_eq!(since(&seen[first_requests..]), vec![updated_at(6); 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_run_is_redone_by_the_next_with_nothing_stored_twice_or_missed() {
    let server = blocking(TestServer::start);
    let api = Api::start(CLIENT_SECRET, "").await;
    // 8 pages of 5 records, 400 ms each.
    api.dataset(
        "ledger",
        Dataset {
            records: records_between(1, 40),
            page_delay: Duration::from_millis(400),
            ..Dataset::default()
        },
    );
    let setup = Setup::new(&server, "ledger").await;
    let (cursor, paging) = incremental(5);
    let source = format!("{}\n{paging}", setup.oauth(&api));
    let url = format!("{}/v1/ledger", api.base);
    let top = format!("{YEARLY}\nrun_on_start = true");
    setup.write("ledger", &top, &cursor, &url, &source);
    let client = server.client().await;

    let mut first = setup.runner(&server, "runner-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    let published = loop {
        let points = all_points(&client, &setup.stream_id).await;
        if points.len() >= 10 {
            break points;
        }
        assert!(
            Instant::now() < deadline,
            "two pages were not published within 30 s:\n{}",
            first.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    blocking(|| first.kill());
    let left = all_points(&client, &setup.stream_id).await;
    assert!(
        left.len() < 40,
        "the run was to be killed half-way, yet all {} points are there",
        left.len()
    );
    let before = state(&client, "ledger").await;
    let slot = before
        .unfinished_slot
        .expect("the killed run's slot is unfinished");
    assert_eq!(before.cursor, None);
    assert_eq!(runs(&client, "ledger").await, []);

    let mut second = setup.runner(&server, "runner-b");
    let done = wait_for_runs(&client, "ledger", 1, Duration::from_secs(30)).await;
    blocking(|| second.terminate());
    assert!(
        second.logs().contains("left unfinished"),
        "{}",
        second.logs()
    );

    let runs = runs(&client, "ledger").await;
    assert_eq!(runs.len(), 1, "the slot completed once: {runs:#?}");
    let run = &runs[0];
    assert_eq!(run.slot, Some(slot), "{done:#?}");
    assert_eq!(run.runner_id, "runner-b");
    assert_eq!(run.error, "");
    assert!(!run.interrupted);
    assert_eq!((run.records_pulled, run.points_published), (40, 40));

    assert_eq!(
        unrevised_values(&client, &setup.stream_id).await,
        expected_values(1, 40)
    );
    // What was published before the kill was answered as a replay, not stored again.
    let after = all_points(&client, &setup.stream_id).await;
    for point in &published {
        assert!(after.contains(point), "{point:?} was stored again");
    }
    let after = state(&client, "ledger").await;
    assert_eq!(after.cursor, Some(updated_at(40)));
    assert_eq!(after.unfinished_slot, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_errors_are_retried_honouring_retry_after_and_a_400_fails_at_once() {
    let server = blocking(TestServer::start);
    let api = Api::start(CLIENT_SECRET, "").await;
    let scripted = |script: &[(u16, Option<u64>)], from: i64| Dataset {
        records: records_between(from, from + 2),
        script: script.iter().copied().collect(),
        ..Dataset::default()
    };
    api.dataset("flaky", scripted(&[(503, None), (503, None)], 1));
    api.dataset("bad", scripted(&[(400, None)], 11));
    api.dataset("throttled", scripted(&[(429, Some(2))], 21));
    let setup = Setup::new(&server, "retried").await;
    for name in ["flaky", "bad", "throttled"] {
        let url = format!("{}/v1/{name}", api.base);
        setup.write(name, YEARLY, "", &url, &setup.oauth(&api));
    }
    let client = server.client().await;
    let statuses = |name: &str| -> Vec<u16> { api.seen(name).iter().map(|s| s.status).collect() };

    let flaky = succeeded(&setup.cli(&server, &["run", "flaky"]), "flaky");
    assert!(flaky.contains("3 points published"), "{flaky}");
    assert_eq!(statuses("flaky"), [503, 503, 200]);
    let run = &runs(&client, "flaky").await[0];
    assert_eq!((run.error.as_str(), run.points_published), ("", 3));

    let bad = setup.cli(&server, &["run", "bad"]);
    assert!(!bad.status.success(), "{}", out(&bad));
    assert!(out(&bad).contains("400 Bad Request"), "{}", out(&bad));
    assert_eq!(statuses("bad"), [400], "one request, no retry");
    let run = &runs(&client, "bad").await[0];
    assert!(run.error.contains("400 Bad Request"), "{run:?}");
    assert_eq!(run.points_published, 0);
    let log = succeeded(&setup.log(&server, "bad"), "connector log");
    let row = log
        .lines()
        .find(|l| l.contains("  failed  "))
        .unwrap_or_else(|| panic!("no failed run in the log:\n{log}"));
    assert!(row.contains("400 Bad Request"), "{log}");

    let throttled = succeeded(&setup.cli(&server, &["run", "throttled"]), "throttled");
    assert!(throttled.contains("3 points published"), "{throttled}");
    let seen = api.seen("throttled");
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(1_900),
        "Retry-After: 2 was not waited for: {waited:?}"
    );
    assert_eq!(
        unrevised_values(&client, &setup.stream_id).await.len(),
        6,
        "flaky's and throttled's records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_show_in_no_log_output_run_error_or_server_log_even_when_the_api_echoes_them() {
    let server = blocking(TestServer::start);
    let api = Api::start(CANARY_SECRET, CANARY_KEY).await;
    api.dataset(
        "sales",
        Dataset {
            records: records_between(1, 3),
            ..Dataset::default()
        },
    );
    api.dataset(
        "visits",
        Dataset {
            records: records_between(1, 3),
            guard: Guard::ApiKey,
            ..Dataset::default()
        },
    );
    let mut setup = Setup::new(&server, "canary").await;
    setup.env = BTreeMap::from([
        ("KPI_TEST_OAUTH_SECRET".to_owned(), CANARY_SECRET.to_owned()),
        ("KPI_TEST_API_KEY".to_owned(), CANARY_KEY.to_owned()),
    ]);
    let often = "schedule = \"*/2 * * * * *\"\nrun_on_start = true";
    let oauth = format!(
        r#"auth = {{ type = "oauth2_client_credentials", token_url = "{}/oauth/token", client_id = "{CLIENT_ID}", client_secret_env = "KPI_TEST_OAUTH_SECRET" }}"#,
        api.base
    );
    let key = r#"auth = { type = "api_key", in = "query", name = "api_key", value_env = "KPI_TEST_API_KEY" }"#;
    setup.write(
        "sales",
        often,
        "",
        &format!("{}/v1/sales", api.base),
        &oauth,
    );
    setup.write("visits", often, "", &format!("{}/v1/visits", api.base), key);
    let client = server.client().await;
    // Runs that started after a change of the API, by whole seconds.
    let since = |at: i64| move |r: &proto::Run| r.started_at.is_some_and(|s| s.seconds > at);
    let mut texts: Vec<(String, String)> = Vec::new();

    // The runner pulls both, then meets 500s, then 401s and a token endpoint that
    // refuses, every error page echoing what it was sent.
    let mut runner = setup.runner(&server, "canary-runner");
    for name in ["sales", "visits"] {
        wait_for_run(&client, name, "succeeded", |r| r.error.is_empty()).await;
    }
    let phase = jiff::Timestamp::now().as_second();
    api.change("sales", |d| d.failure = Some(500));
    api.change("visits", |d| d.failure = Some(500));
    for name in ["sales", "visits"] {
        let after = since(phase);
        wait_for_run(&client, name, "failed with 500", |r| {
            after(r) && r.error.contains("500 Internal Server Error")
        })
        .await;
    }
    let phase = jiff::Timestamp::now().as_second();
    api.change("sales", |d| d.failure = Some(401));
    api.change("visits", |d| d.failure = Some(401));
    api.with(|s| s.token_failure = Some(401));
    let after = since(phase);
    wait_for_run(&client, "sales", "failed at the token endpoint", |r| {
        after(r) && r.error.contains("OAuth2 token request") && r.error.contains("401")
    })
    .await;
    wait_for_run(&client, "visits", "failed with 401", |r| {
        after(r) && r.error.contains("401 Unauthorized")
    })
    .await;
    blocking(|| runner.terminate());
    texts.push(("the runner's log".into(), runner.logs()));

    // The CLI, while everything fails and once it works again.
    let mut verbs = |label: &str, setup: &Setup| {
        for args in [
            ["run", "sales"],
            ["run", "visits"],
            ["preview", "sales"],
            ["preview", "visits"],
        ] {
            let output = setup.cli(&server, &args);
            texts.push((
                format!("{label} connector {}", args.join(" ")),
                out(&output),
            ));
        }
    };
    verbs("failing:", &setup);
    api.change("sales", |d| d.failure = None);
    api.change("visits", |d| d.failure = None);
    api.with(|s| s.token_failure = None);
    verbs("working:", &setup);
    for name in ["sales", "visits"] {
        texts.push((
            format!("connector log {name}"),
            out(&setup.log(&server, name)),
        ));
    }
    texts.push(("connector list".into(), out(&setup.cli(&server, &["list"]))));
    let mut errors = Vec::new();
    for name in ["sales", "visits"] {
        for run in runs(&client, name).await {
            errors.push(run.error.clone());
            texts.push((format!("a run error of {name}"), run.error));
        }
    }
    texts.push(("the server's log".into(), server.logs()));

    let encoded = BASE64_STANDARD.encode(format!("{CLIENT_ID}:{CANARY_SECRET}"));
    for (what, text) in &texts {
        for secret in [CANARY_SECRET, CANARY_KEY, encoded.as_str()] {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
    // The secrets were used, and the echoes reached the errors with them masked.
    assert!(api.with(|s| !s.issued.is_empty()), "no token was issued");
    assert!(
        api.seen("visits")
            .iter()
            .any(|s| s.status == 200 && s.query["api_key"] == CANARY_KEY),
        "the API key never got through"
    );
    for name in ["sales", "visits"] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("refused /v1/{name}")) && e.contains("[REDACTED]")),
            "no echo of {name}'s request among the errors: {errors:#?}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|e| e.contains("refused /oauth/token") && e.contains("[REDACTED]")),
        "no echo of the token request among the errors: {errors:#?}"
    );
    let run = texts
        .iter()
        .find(|(what, _)| what == "working: connector run visits")
        .unwrap();
    assert!(run.1.contains("3 points published"), "{}", run.1);
}
