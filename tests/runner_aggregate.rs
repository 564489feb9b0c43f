//! Connectors that get the numbers right over time, run with `kpistream connector run`
//! against a real server: a REST connector summing invoices per month and a SQL
//! connector counting sign-up rows per day publish exactly what an independent
//! computation in the test gives, across pages and runs, and store nothing when nothing
//! changed; a source that restates a value three days back is picked up with
//! `lookback = "7d"` and not without it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use common::runner::{Workspace, connector, kpistream, serve};
use common::{TestServer, all_points, stream_request};
use kpistream::client::Client;
use kpistream::proto;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Never fires by itself during a test: runs come from `connector run`.
const NEVER: &str = "0 0 1 1 *";

// ---------------------------------------------------------------------------------
// A REST API of records sorted by one field, served from `since` on (inclusive), in
// pages of `per_page`, numbered from 1.

#[derive(Default)]
struct Api {
    records: Vec<Value>,
    /// The `since` of every request, in order.
    since: Vec<String>,
}

type Shared = Arc<Mutex<Api>>;

/// Serves `/records?since=…&page=…&per_page=…`, comparing `since` with `field`.
fn start_api(field: &'static str) -> (String, Shared) {
    let shared = Shared::default();
    let router = Router::new()
        .route(
            "/records",
            get(
                move |State(api): State<Shared>, Query(q): Query<BTreeMap<String, String>>| async move {
                    let mut api = api.lock().unwrap();
                    let since = q.get("since").cloned().unwrap_or_default();
                    api.since.push(since.clone());
                    let mut selected: Vec<&Value> = api
                        .records
                        .iter()
                        .filter(|r| r[field].as_str().unwrap() >= since.as_str())
                        .collect();
                    selected.sort_by_key(|r| r[field].as_str().unwrap().to_owned());
                    let page: usize = q["page"].parse().unwrap();
                    let per_page: usize = q["per_page"].parse().unwrap();
                    let data: Vec<&Value> =
                        selected.into_iter().skip((page - 1) * per_page).take(per_page).collect();
                    axum::Json(json!({ "data": data }))
                },
            ),
        )
        .with_state(shared.clone());
    (format!("{}/records", serve(router)), shared)
}

/// A connector file reading `url` page by page with `since={{cursor}}`.
fn rest_connector(name: &str, credential: &Path, url: &str, sections: &str) -> String {
    format!(
        r#"name = "{name}"
credential_file = "{credential}"
schedule = "{NEVER}"
{sections}

[source]
type = "rest"
url = "{url}"
records = "$.data[*]"
query = {{ since = "{{{{cursor}}}}", per_page = "10" }}
pagination = {{ type = "page", param = "page" }}
"#,
        credential = credential.display(),
    )
}

/// `kpistream connector run NAME`, which must succeed; returns what it printed.
fn run(server: &TestServer, ws: &Workspace, name: &str) -> String {
    let output = tokio::task::block_in_place(|| {
        connector(server, &ws.connectors, &BTreeMap::new(), &["run", name])
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "connector run {name} failed:\n{text}"
    );
    text
}

/// (period, value, revision count) of every point of the stream.
async fn stored(client: &Client, stream: &str) -> Vec<(String, String, u32)> {
    all_points(client, stream)
        .await
        .into_iter()
        .map(|p| (p.period, p.value, p.revision_count))
        .collect()
}

async fn stream(
    server: &TestServer,
    name: &str,
    frequency: proto::Frequency,
) -> (String, kpistream::signature::Credential) {
    let (stream, credential) = server
        .create_stream(stream_request(name, frequency, "UTC"))
        .await;
    (stream.id, credential)
}

/// The connector `signups`: a count per day of the `signups` rows of `db` (`columns`
/// selected), from a `created_at` cursor, with `aggregate` lines added.
fn signups_connector(credential: &Path, db: &Path, aggregate: &str, columns: &str) -> String {
    format!(
        r#"name = "signups"
credential_file = "{credential}"
schedule = "{NEVER}"

[cursor]
field = "created_at"
initial = "2026-03-01 00:00:00"

[mapping]
timestamp = "created_at"

[aggregate]
function = "count"
{aggregate}
[source]
type = "sql"
url = "sqlite://{db}"
query = "SELECT {columns} FROM signups WHERE created_at >= {{{{cursor}}}} ORDER BY created_at"
"#,
        credential = credential.display(),
        db = db.display(),
    )
}

/// A SQLite database `shop.db` in the workspace, with the table `ddl` creates.
async fn shop_database(ws: &Workspace, ddl: &str) -> (std::path::PathBuf, sqlx::SqlitePool) {
    let db_path = ws.dir.path().join("shop.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db_path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::query(ddl).execute(&pool).await.unwrap();
    (db_path, pool)
}

// ---------------------------------------------------------------------------------
// Aggregation

/// Invoice `i`: issued every 37 hours from 2026-01-01, for an amount with cents.
fn invoice(i: u32) -> Value {
    let issued = jiff::Timestamp::from_second(1_767_225_600 + i64::from(i) * 37 * 3600).unwrap();
    json!({
        "id": format!("inv-{i}"),
        "issued_at": issued.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "amount": format!("{}.{:02}", (i * 37) % 500, (i * 13) % 100),
    })
}

/// The sum of the invoices' amounts per month, computed here.
fn monthly_sums(invoices: &[Value]) -> BTreeMap<String, Decimal> {
    let mut sums = BTreeMap::new();
    for inv in invoices {
        let month = inv["issued_at"].as_str().unwrap()[..7].to_owned();
        let amount = Decimal::from_str(inv["amount"].as_str().unwrap()).unwrap();
        *sums.entry(month).or_insert(Decimal::ZERO) += amount;
    }
    sums
}

fn as_stored(sums: &BTreeMap<String, Decimal>, revisions: &[u32]) -> Vec<(String, String, u32)> {
    sums.iter()
        .zip(revisions)
        .map(|((month, sum), r)| (month.clone(), sum.to_string(), *r))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rest_connector_sums_invoices_per_month_across_pages_and_runs() {
    let server = tokio::task::block_in_place(TestServer::start);
    let client = server.client().await;
    let (stream_id, credential) = stream(&server, "Invoiced", proto::Frequency::Monthly).await;
    let ws = Workspace::new();
    let credential = ws.credential("invoiced", &credential);
    let (url, api) = start_api("issued_at");
    let sections = r#"
[cursor]
field = "$.issued_at"
initial = "2026-01-01T00:00:00Z"

[mapping]
timestamp = "$.issued_at"
value = "$.amount"

[aggregate]
function = "sum"
"#;
    ws.write(
        "invoiced.toml",
        &rest_connector("invoiced", &credential, &url, sections),
    );

    // 50 invoices, January to March: five pages of ten.
    let mut invoices: Vec<Value> = (0..50).map(invoice).collect();
    api.lock().unwrap().records = invoices.clone();
    let first = monthly_sums(&invoices);
    let preview = tokio::task::block_in_place(|| {
        connector(
            &server,
            &ws.connectors,
            &BTreeMap::new(),
            &["preview", "invoiced", "--limit", "100"],
        )
    });
    let preview = String::from_utf8_lossy(&preview.stdout).into_owned();
    assert!(
        preview.contains("50 aggregated (sum) into 3 period(s)"),
        "{preview}"
    );
    for (month, sum) in &first {
        assert!(
            preview.contains(&format!("\n  {month} = {sum}\n")),
            "{month}: {preview}"
        );
    }
    assert_eq!(
        stored(&client, &stream_id).await,
        [],
        "a preview publishes nothing"
    );
    // Recorded, the same records give the same sums offline.
    let recorded = tokio::task::block_in_place(|| {
        connector(
            &server,
            &ws.connectors,
            &BTreeMap::new(),
            &["record", "invoiced"],
        )
    });
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    let expected = std::fs::read_to_string(ws.connectors.join("invoiced.expected.csv")).unwrap();
    let sums: String = first.iter().map(|(m, s)| format!("{m},{s}\n")).collect();
    assert_eq!(expected, format!("period,value\n{sums}"));
    let tested = tokio::task::block_in_place(|| {
        common::runner::kpistream(
            &server,
            ws.dir.path(),
            &BTreeMap::new(),
            &["connector", "test", ws.connectors.to_str().unwrap()],
        )
    });
    let said = String::from_utf8_lossy(&tested.stdout).into_owned();
    assert!(
        tested.status.success() && said.contains("ok: invoiced (3 point(s))"),
        "{said}"
    );
    let printed = run(&server, &ws, "invoiced");
    assert!(
        printed.contains("50 records pulled, 3 points published"),
        "{printed}"
    );
    let first = monthly_sums(&invoices);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["2026-01", "2026-02", "2026-03"]
    );
    assert_eq!(
        stored(&client, &stream_id).await,
        as_stored(&first, &[0, 0, 0])
    );

    // More invoices in March and April. The second run pulls from the start of the
    // cursor's month, so March is summed again from all its invoices, not added onto.
    invoices.extend((50..70).map(invoice));
    api.lock().unwrap().records = invoices.clone();
    run(&server, &ws, "invoiced");
    let second = monthly_sums(&invoices);
    assert_eq!(second.len(), 4);
    assert_ne!(second["2026-03"], first["2026-03"]);
    assert_eq!(
        stored(&client, &stream_id).await,
        as_stored(&second, &[0, 0, 1, 0]),
        "January and February untouched, March revised once, April new"
    );
    let since = api.lock().unwrap().since.clone();
    assert_eq!(
        since.first().map(String::as_str),
        Some("2026-01-01T00:00:00Z")
    );
    assert!(
        since.contains(&"2026-03-01T00:00:00Z".to_owned()),
        "the second run starts at the cursor's month: {since:?}"
    );

    // A run with nothing new publishes the same sums: nothing is revised.
    run(&server, &ws, "invoiced");
    assert_eq!(
        stored(&client, &stream_id).await,
        as_stored(&second, &[0, 0, 1, 0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sql_connector_counts_rows_per_day_across_pages_and_runs() {
    let server = tokio::task::block_in_place(TestServer::start);
    let client = server.client().await;
    let (stream_id, credential) = stream(&server, "Daily sign-ups", proto::Frequency::Daily).await;
    let ws = Workspace::new();
    let credential = ws.credential("signups", &credential);
    let (db_path, pool) = shop_database(
        &ws,
        "CREATE TABLE signups (id INTEGER PRIMARY KEY, email TEXT, created_at TEXT NOT NULL)",
    )
    .await;
    // Sign-up `i` at minute 7·i from 2026-03-01 00:00 (local text, no offset).
    let signup_at = |i: i64| {
        jiff::civil::date(2026, 3, 1)
            .at(0, 0, 0, 0)
            .checked_add(jiff::Span::new().minutes(7 * i))
            .unwrap()
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let insert = async |range: std::ops::Range<i64>| {
        let mut tx = pool.begin().await.unwrap();
        for i in range {
            sqlx::query("INSERT INTO signups VALUES (?, ?, ?)")
                .bind(i)
                .bind(format!("user{}@example.com", i % 997))
                .bind(signup_at(i))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    };
    let counts = |n: i64| {
        let mut per_day: BTreeMap<String, u32> = BTreeMap::new();
        for i in 0..n {
            *per_day.entry(signup_at(i)[..10].to_owned()).or_default() += 1;
        }
        per_day
    };
    ws.write(
        "signups.toml",
        &signups_connector(&credential, &db_path, "", "id, created_at"),
    );

    // 2,500 rows (three pages of at most 1,000) over 13 days.
    insert(0..2_500).await;
    let printed = run(&server, &ws, "signups");
    assert!(printed.contains("2500 records pulled"), "{printed}");
    let first = counts(2_500);
    let expect = |per_day: &BTreeMap<String, u32>, revised: &str| -> Vec<(String, String, u32)> {
        per_day
            .iter()
            .map(|(day, n)| (day.clone(), n.to_string(), u32::from(day == revised)))
            .collect()
    };
    assert_eq!(stored(&client, &stream_id).await, expect(&first, ""));

    // The last day gets more sign-ups, and a day follows: the next run counts the last
    // day again from its start.
    let last_day = first.keys().last().unwrap().clone();
    insert(2_500..2_700).await;
    let printed = run(&server, &ws, "signups");
    let second = counts(2_700);
    assert_eq!(first.len() + 1, second.len(), "one more day: {second:?}");
    let revised = stored(&client, &stream_id).await;
    assert_eq!(revised, expect(&second, &last_day), "{printed}");

    // Nothing new: the same counts, no revision.
    run(&server, &ws, "signups");
    assert_eq!(stored(&client, &stream_id).await, revised);
}

// ---------------------------------------------------------------------------------
// Lookback

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_restated_three_days_back_is_revised_with_a_lookback_and_not_without() {
    let server = tokio::task::block_in_place(TestServer::start);
    let client = server.client().await;
    let (url, api) = start_api("date");
    let ws = Workspace::new();
    let day = |d: u32| format!("2026-03-{d:02}");
    api.lock().unwrap().records = (1..=10)
        .map(|d| json!({ "date": day(d), "spend": format!("{d}00.50") }))
        .collect();
    let mapping = r#"
[mapping]
period = "$.date"
value = "$.spend"
"#;
    let cursor = "[cursor]\nfield = \"$.date\"\ninitial = \"2026-03-01\"\n";
    let mut streams = Vec::new();
    for (name, lookback) in [
        ("spend-lookback", "lookback = \"7d\"\n"),
        ("spend-plain", ""),
    ] {
        let (id, credential) = stream(&server, name, proto::Frequency::Daily).await;
        let credential = ws.credential(name, &credential);
        let sections = format!("{lookback}\n{cursor}{mapping}");
        ws.write(
            &format!("{name}.toml"),
            &rest_connector(name, &credential, &url, &sections),
        );
        run(&server, &ws, name);
        streams.push(id);
    }
    let original: Vec<(String, String, u32)> =
        (1..=10).map(|d| (day(d), format!("{d}00.50"), 0)).collect();
    for id in &streams {
        assert_eq!(stored(&client, id).await, original);
    }

    // The source restates March 7th, three days before its latest day.
    api.lock().unwrap().records[6]["spend"] = json!("777.25");
    api.lock().unwrap().since.clear();
    for name in ["spend-lookback", "spend-plain"] {
        run(&server, &ws, name);
    }
    let mut restated = original.clone();
    restated[6] = (day(7), "777.25".into(), 1);
    assert_eq!(
        stored(&client, &streams[0]).await,
        restated,
        "picked up with the lookback"
    );
    assert_eq!(stored(&client, &streams[1]).await, original, "not without");
    let since = api.lock().unwrap().since.clone();
    assert!(
        since.contains(&day(3)),
        "seven days before the cursor: {since:?}"
    );
    assert!(since.contains(&day(10)), "the cursor itself: {since:?}");

    let revisions = client.revisions(&streams[0], &day(7)).await.unwrap();
    assert_eq!(revisions.len(), 1, "{revisions:?}");
    assert_eq!(
        (
            revisions[0].old_value.as_str(),
            revisions[0].new_value.as_str()
        ),
        ("700.50", "777.25")
    );
    assert!(
        revisions[0].batch_id.starts_with("run-"),
        "the connector's batch: {revisions:?}"
    );
}

// ---------------------------------------------------------------------------------
// Backfill and rewind

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backfill_publishes_a_past_range_without_moving_the_cursor_and_a_rewind_is_audited() {
    let server = tokio::task::block_in_place(TestServer::start);
    let client = server.client().await;
    let (url, api) = start_api("date");
    let ws = Workspace::new();
    let day = |d: u32| format!("2026-03-{d:02}");
    api.lock().unwrap().records = (1..=20)
        .map(|d| json!({ "date": day(d), "spend": format!("{d}.5") }))
        .collect();
    let (stream_id, credential) = stream(&server, "Spend", proto::Frequency::Daily).await;
    let credential = ws.credential("spend", &credential);
    let sections = "[cursor]\nfield = \"$.date\"\ninitial = \"2026-03-15\"\n\n\
                    [mapping]\nperiod = \"$.date\"\nvalue = \"$.spend\"\n";
    ws.write(
        "spend.toml",
        &rest_connector("spend", &credential, &url, sections),
    );
    let days = |ds: &[u32]| -> Vec<(String, String, u32)> {
        ds.iter().map(|&d| (day(d), format!("{d}.5"), 0)).collect()
    };
    run(&server, &ws, "spend");
    assert_eq!(
        stored(&client, &stream_id).await,
        days(&[15, 16, 17, 18, 19, 20])
    );
    let cursor = || async { common::runner::state(&client, "spend").await.cursor };
    assert_eq!(cursor().await.as_deref(), Some("2026-03-20"));

    let cli = |args: &[&str]| {
        tokio::task::block_in_place(|| connector(&server, &ws.connectors, &BTreeMap::new(), args))
    };
    api.lock().unwrap().since.clear();
    let output = cli(&[
        "backfill",
        "spend",
        "--from",
        "2026-03-03",
        "--to",
        "2026-03-05",
    ]);
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("backfill of spend over 2026-03-03..2026-03-05"),
        "{printed}"
    );
    assert_eq!(
        stored(&client, &stream_id).await,
        days(&[3, 4, 5, 15, 16, 17, 18, 19, 20]),
        "only the range's periods"
    );
    let since = api.lock().unwrap().since.clone();
    assert!(
        !since.is_empty() && since.iter().all(|s| s == "2026-03-03"),
        "every page pulled from the range's start: {since:?}"
    );
    assert_eq!(
        cursor().await.as_deref(),
        Some("2026-03-20"),
        "the cursor did not move"
    );

    let bad = cli(&[
        "backfill",
        "spend",
        "--from",
        "2026-03",
        "--to",
        "2026-03-05",
    ]);
    let said = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_eq!(bad.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--from \"2026-03\" is not a period of spend's daily stream"),
        "{said}"
    );

    let output = tokio::task::block_in_place(|| {
        common::runner::kpistream(
            &server,
            ws.dir.path(),
            &BTreeMap::new(),
            &["connector", "rewind", "spend", "--to", "2026-03-10"],
        )
    });
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        printed.contains("cursor of spend set from \"2026-03-20\" to \"2026-03-10\""),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    run(&server, &ws, "spend");
    assert_eq!(
        stored(&client, &stream_id).await,
        days(&[3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]),
        "pulled again from the rewound cursor, nothing revised"
    );

    let logged = common::runner::runs(&client, "spend").await;
    let backfills: Vec<&str> = logged
        .iter()
        .map(|r| r.backfill.as_str())
        .filter(|b| !b.is_empty())
        .collect();
    assert_eq!(
        backfills,
        ["2026-03-03..2026-03-05"],
        "the run log marks the backfill"
    );
    let filter = kpistream::client::AuditFilter {
        target: Some("spend".into()),
        ..Default::default()
    };
    let audit: Vec<(String, String, String)> = client
        .audit(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.detail))
        .collect();
    let admin =
        |action: &str, detail: &str| ("admin".to_owned(), action.to_owned(), detail.to_owned());
    assert_eq!(
        audit,
        [
            admin(
                "connector.backfilled",
                "2026-03-03..2026-03-05: 3 points published"
            ),
            admin(
                "connector.cursor_set",
                "from \"2026-03-20\" to \"2026-03-10\""
            ),
        ]
    );

    // Forgetting deletes the state and the run log, once confirmed.
    let forget = |yes: bool| {
        let mut args = vec!["connector", "forget", "spend"];
        if yes {
            args.push("--yes");
        }
        tokio::task::block_in_place(|| {
            common::runner::kpistream(&server, ws.dir.path(), &BTreeMap::new(), &args)
        })
    };
    let refused = forget(false);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    let runs_before = common::runner::runs(&client, "spend").await.len();
    let forgot = forget(true);
    let said = String::from_utf8_lossy(&forgot.stdout).into_owned();
    assert!(
        said.contains(&format!(
            "forgot spend: cursor \"2026-03-20\" and {runs_before} run(s) deleted"
        )),
        "{said}{}",
        String::from_utf8_lossy(&forgot.stderr)
    );
    assert_eq!(cursor().await, None);
    assert!(common::runner::runs(&client, "spend").await.is_empty());
    let last = client.audit(&filter).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail),
        (
            "connector.forgotten",
            format!("cursor \"2026-03-20\", {runs_before} run(s) deleted")
        )
    );
}

// ---------------------------------------------------------------------------------
// Groups

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_count_grouped_by_country_goes_to_a_stream_per_country_and_the_total_to_its_own() {
    let server = tokio::task::block_in_place(TestServer::start);
    let client = server.client().await;
    let ws = Workspace::new();
    let (total_id, total) = stream(&server, "Sign-ups", proto::Frequency::Daily).await;
    let total = ws.credential("signups", &total);
    let mut group_ids = BTreeMap::new();
    for country in ["fr", "de"] {
        let (id, credential) = stream(
            &server,
            &format!("Sign-ups {country}"),
            proto::Frequency::Daily,
        )
        .await;
        ws.credential(&format!("signups-{country}"), &credential);
        group_ids.insert(country, id);
    }
    // Italy's stream is weekly: its daily counts cannot go there. Spain has no stream.
    let (weekly_id, weekly) = stream(&server, "Sign-ups it", proto::Frequency::Weekly).await;
    ws.credential("signups-it", &weekly);
    let group_file = total.with_file_name("signups-{{group}}.kpik");
    assert!(
        ws.dir.path().join("signups-fr.kpik").exists(),
        "the workspace names credential files NAME.kpik"
    );

    let (db_path, pool) = shop_database(
        &ws,
        "CREATE TABLE signups (id INTEGER PRIMARY KEY, country TEXT, created_at TEXT NOT NULL)",
    )
    .await;
    // Britain's file holds France's credential: one stream takes one group only.
    std::fs::copy(
        ws.dir.path().join("signups-fr.kpik"),
        ws.dir.path().join("signups-gb.kpik"),
    )
    .unwrap();
    const COUNTRIES: [&str; 5] = ["fr", "de", "fr", "es", "gb"];
    let row = |i: i64| {
        let at = jiff::civil::date(2026, 3, 1)
            .at(0, 0, 0, 0)
            .checked_add(jiff::Span::new().minutes(11 * i))
            .unwrap()
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
        // Every 10th row is Italian.
        let country = if i % 10 == 9 {
            "it"
        } else {
            COUNTRIES[(i % 5) as usize]
        };
        (country, at)
    };
    let insert = async |range: std::ops::Range<i64>| {
        let mut tx = pool.begin().await.unwrap();
        for i in range {
            let (country, at) = row(i);
            sqlx::query("INSERT INTO signups VALUES (?, ?, ?)")
                .bind(i)
                .bind(country)
                .bind(at)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    };
    // The counts per country and day, and in all, computed here.
    let counts = |n: i64| {
        let mut per: BTreeMap<(String, String), u32> = BTreeMap::new();
        for i in 0..n {
            let (country, at) = row(i);
            *per.entry((country.to_owned(), at[..10].to_owned()))
                .or_default() += 1;
            *per.entry((String::new(), at[..10].to_owned())).or_default() += 1;
        }
        per
    };
    let of = |per: &BTreeMap<(String, String), u32>, country: &str| -> Vec<(String, String)> {
        per.iter()
            .filter(|((c, _), _)| c == country)
            .map(|((_, day), n)| (day.clone(), n.to_string()))
            .collect()
    };
    let groups = format!(
        "group_by = \"country\"\ngroup_credential_file = \"{}\"\n",
        group_file.display()
    );
    ws.write(
        "signups.toml",
        &signups_connector(&total, &db_path, &groups, "id, country, created_at"),
    );

    let values = async |id: &str| -> Vec<(String, String)> {
        stored(&client, id)
            .await
            .into_iter()
            .map(|(p, v, _)| (p, v))
            .collect()
    };
    insert(0..1_500).await;
    let printed = run(&server, &ws, "signups");
    let first = counts(1_500);
    assert_eq!(
        values(&total_id).await,
        of(&first, ""),
        "the total of every country"
    );
    for (country, id) in &group_ids {
        assert_eq!(values(id).await, of(&first, country), "{country}");
    }
    assert!(
        values(&weekly_id).await.is_empty(),
        "a weekly stream takes no daily count"
    );
    let refused: usize = ["es", "it", "gb"].iter().map(|c| of(&first, c).len()).sum();
    assert!(
        printed.contains(&format!("{refused} rejected")),
        "Spain's, Italy's and Britain's days are counted as rejected: {printed}"
    );
    assert!(
        printed.contains("gb: its stream") && printed.contains("already takes group fr"),
        "{printed}"
    );

    // More rows: the groups' last days are counted again from the cursor's day.
    insert(1_500..1_800).await;
    run(&server, &ws, "signups");
    let second = counts(1_800);
    assert_eq!(values(&total_id).await, of(&second, ""));
    for (country, id) in &group_ids {
        assert_eq!(values(id).await, of(&second, country), "{country}");
    }
    let before: Vec<_> = stored(&client, &group_ids["fr"]).await;
    run(&server, &ws, "signups");
    assert_eq!(
        stored(&client, &group_ids["fr"]).await,
        before,
        "nothing new, no revision"
    );

    // `connector record` keeps the groups in the expected file, and `connector test`
    // checks them.
    let recorded = tokio::task::block_in_place(|| {
        connector(
            &server,
            &ws.connectors,
            &BTreeMap::new(),
            &["record", "signups"],
        )
    });
    assert!(recorded.status.success(), "{recorded:?}");
    let expected = std::fs::read_to_string(ws.connectors.join("signups.expected.csv")).unwrap();
    assert!(
        expected.starts_with("group,period,value\n,2026-03-"),
        "{expected}"
    );
    assert!(expected.contains("\nfr,2026-03-"), "{expected}");
    let dir = ws.connectors.to_str().unwrap();
    let tested = tokio::task::block_in_place(|| {
        kpistream(
            &server,
            ws.dir.path(),
            &BTreeMap::new(),
            &["connector", "test", dir],
        )
    });
    assert!(tested.status.success(), "{tested:?}");
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(said.starts_with("ok: signups ("), "{said}");
}
