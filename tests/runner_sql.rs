//! The runner and `kpistream connector …` against real databases: sample tables in
//! SQLite (a file next to the server's), PostgreSQL and MariaDB, read by SQL connectors
//! that pull incrementally, are killed mid-run and redone, try to write, run over their
//! statement timeout or log in with a wrong password; and a command source end to end.
//!
//! PostgreSQL and MariaDB come from `KPISTREAM_TEST_POSTGRES_URL`,
//! `KPISTREAM_TEST_MYSQL_URL` and `KPISTREAM_TEST_DB_PASSWORD` (scripts/test.sh exports
//! them once scripts/services.sh started the databases). Without them those tests skip,
//! saying so, except under `CI=true`, where they fail. Every CLI output, runner log and
//! run-log error of these tests is checked for the database password.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::runner::{RunnerSetup, TestRunner, connector, runs, state, wait_for_runs};
use common::{TestServer, all_points, day};
use kpistream::client::Client;
use kpistream::proto;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

/// The test databases' password, as scripts/test.sh exports it.
const PASSWORD_VAR: &str = "KPISTREAM_TEST_DB_PASSWORD";
/// The variable the connectors read the password from (set in the runner's and the CLI's
/// environment by the tests).
const SOURCE_PASSWORD_VAR: &str = "SOURCE_DB_PASSWORD";
/// A schedule that does not fire while the tests run: runs come from `connector run`,
/// `run_on_start` or a slot taken up again.
const NEVER: &str = "0 0 1 1 *";

// Databases --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
    MariaDb,
}

/// A database the test writes its sample tables into and its connectors read.
struct Db {
    kind: Kind,
    url: String,
    password: Option<String>,
}

impl Db {
    /// A new SQLite file in `dir`.
    fn sqlite(dir: &std::path::Path) -> Db {
        let path = dir.join(format!("source-{:08x}.db", rand::random::<u32>()));
        // An empty file is an empty database; the connectors open it read-only.
        std::fs::File::create(&path).unwrap();
        Db {
            kind: Kind::Sqlite,
            url: format!("sqlite://{}", path.display()),
            password: None,
        }
    }

    fn postgres() -> Option<Db> {
        service(Kind::Postgres, "KPISTREAM_TEST_POSTGRES_URL")
    }

    fn mariadb() -> Option<Db> {
        service(Kind::MariaDb, "KPISTREAM_TEST_MYSQL_URL")
    }

    /// A table name no other test uses, so the tests run in parallel.
    fn table(label: &str) -> String {
        format!("kpi_{label}_{:08x}", rand::random::<u32>())
    }

    /// A writable connection (the connectors' are read-only).
    async fn connect(&self) -> Conn {
        let password = self.password.clone().unwrap_or_default();
        match self.kind {
            Kind::Sqlite => Conn::Sqlite(
                SqliteConnectOptions::from_str(&self.url)
                    .unwrap()
                    .create_if_missing(true)
                    .connect()
                    .await
                    .expect("the SQLite file opens"),
            ),
            Kind::Postgres => Conn::Postgres(
                PgConnectOptions::from_str(&self.url)
                    .unwrap()
                    .password(&password)
                    .connect()
                    .await
                    .expect("PostgreSQL accepts the test role"),
            ),
            Kind::MariaDb => Conn::MariaDb(
                MySqlConnectOptions::from_str(&self.url)
                    .unwrap()
                    .password(&password)
                    .connect()
                    .await
                    .expect("MariaDB accepts the test role"),
            ),
        }
    }

    /// Runs `statements` on a writable connection.
    async fn exec(&self, statements: &[String]) {
        let mut conn = self.connect().await;
        for statement in statements {
            conn.exec(statement).await;
        }
        conn.close().await;
    }

    /// The number of rows of `table`, or the database's error (no such table).
    async fn count(&self, table: &str) -> Result<i64, String> {
        let mut conn = self.connect().await;
        let count = conn.count(table).await;
        conn.close().await;
        count
    }

    /// The `[source]` table of a connector reading this database.
    fn source(&self, query: &str, statement_timeout: &str) -> String {
        let password = match self.password {
            Some(_) => format!("password_env = \"{SOURCE_PASSWORD_VAR}\"\n"),
            None => String::new(),
        };
        format!(
            "[source]\ntype = \"sql\"\nurl = \"{}\"\n{password}statement_timeout = \"{statement_timeout}\"\nquery = '''\n{query}\n'''\n",
            self.url
        )
    }

    /// What the runner and the CLI need in their environment to read this database.
    fn env(&self) -> BTreeMap<String, String> {
        self.password
            .iter()
            .map(|p| (SOURCE_PASSWORD_VAR.to_owned(), p.clone()))
            .collect()
    }
}

fn service(kind: Kind, var: &str) -> Option<Db> {
    match (std::env::var(var), std::env::var(PASSWORD_VAR)) {
        (Ok(url), Ok(password)) => Some(Db {
            kind,
            url,
            password: Some(password),
        }),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{var} and {PASSWORD_VAR} must be set under CI=true: scripts/test.sh exports them once scripts/services.sh has started the databases"
        ),
        _ => {
            eprintln!(
                "skipped: {var} or {PASSWORD_VAR} is not set (run scripts/services.sh as root, then `set -a; . target/test-services.env; set +a`)"
            );
            None
        }
    }
}

/// A writable connection to one of the three databases.
enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    MariaDb(MySqlConnection),
}

impl Conn {
    async fn exec(&mut self, statement: &str) {
        let done = match self {
            Conn::Sqlite(c) => sqlx::raw_sql(statement).execute(c).await.map(drop),
            Conn::Postgres(c) => sqlx::raw_sql(statement).execute(c).await.map(drop),
            Conn::MariaDb(c) => sqlx::raw_sql(statement).execute(c).await.map(drop),
        };
        done.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    async fn count(&mut self, table: &str) -> Result<i64, String> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            Conn::Sqlite(c) => sqlx::query_scalar(&sql).fetch_one(c).await,
            Conn::Postgres(c) => sqlx::query_scalar(&sql).fetch_one(c).await,
            Conn::MariaDb(c) => sqlx::query_scalar(&sql).fetch_one(c).await,
        }
        .map_err(|e| e.to_string())
    }

    async fn close(self) {
        let _ = match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
            Conn::MariaDb(c) => c.close().await,
        };
    }
}

// A server, a stream, and a connector directory --------------------------------------

/// What `kpistream connector …` printed.
struct Cli {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// A server with one daily stream, its credential in a 0600 file, and an empty
/// connector directory.
struct Fixture {
    server: TestServer,
    client: Client,
    connectors: PathBuf,
    credential: PathBuf,
    stream_id: String,
    /// Added to the environment of the runner and the CLI.
    env: BTreeMap<String, String>,
}

impl Fixture {
    async fn new(stream: &str) -> Self {
        let server = TestServer::start();
        let client = server.client().await;
        let (stream_id, credential) = server.daily_stream(stream).await;
        let connectors = server.dir().join("connectors");
        std::fs::create_dir(&connectors).unwrap();
        let file = server.dir().join(format!("{stream}.kpik"));
        std::fs::write(&file, credential.expose_secret()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            server,
            client,
            connectors,
            credential: file,
            stream_id,
            env: BTreeMap::new(),
        }
    }

    /// Writes `NAME.toml`: the name, the stream credential and a schedule that never
    /// fires during the test, then `body` (top-level keys first, then tables).
    fn write(&self, name: &str, body: &str) {
        let text = format!(
            "name = \"{name}\"\ncredential_file = \"{}\"\nschedule = \"{NEVER}\"\n{body}",
            self.credential.display()
        );
        std::fs::write(self.connectors.join(format!("{name}.toml")), text).unwrap();
    }

    /// `kpistream connector ARGS`; its output never holds the database password.
    fn cli(&self, args: &[&str]) -> Cli {
        let output = if matches!(args[0], "list" | "run" | "preview") {
            connector(&self.server, &self.connectors, &self.env, args)
        } else {
            // The server-side verbs (log, enable, disable) take no directory.
            common::cli(self.server.dir())
                .arg("connector")
                .args(args)
                .env("KPISTREAM_SERVER", &self.server.grpc)
                .env("KPISTREAM_TOKEN", &self.server.token)
                .env("NO_COLOR", "1")
                .envs(&self.env)
                .output()
                .expect("the CLI runs")
        };
        let cli = Cli {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        let what = format!("the output of `kpistream connector {}`", args.join(" "));
        assert_no_password(&what, &cli.stdout);
        assert_no_password(&what, &cli.stderr);
        cli
    }

    /// `connector run NAME`, which must succeed.
    fn run_ok(&self, name: &str) -> Cli {
        let cli = self.cli(&["run", name]);
        assert!(
            cli.ok,
            "`connector run {name}` failed:\n{}{}",
            cli.stdout, cli.stderr
        );
        cli
    }

    /// The connector's run log, newest first; no error in it holds the password.
    async fn runs(&self, name: &str) -> Vec<proto::Run> {
        let runs = runs(&self.client, name).await;
        for run in &runs {
            assert_no_password(&format!("a run-log error of {name}"), &run.error);
        }
        runs
    }

    fn runner(&self, id: &str) -> TestRunner {
        let mut setup = RunnerSetup::new(&self.connectors, id);
        for (key, value) in &self.env {
            setup = setup.env(key, value);
        }
        TestRunner::start(&self.server, setup)
    }

    /// The stored point of `period`, if any.
    async fn point(&self, period: &str) -> Option<proto::DataPoint> {
        self.client
            .query()
            .list_points(proto::ListPointsRequest {
                stream_id: self.stream_id.clone(),
                from: period.into(),
                to: period.into(),
                limit: 1,
                ..Default::default()
            })
            .await
            .expect("the stream is readable")
            .into_inner()
            .points
            .pop()
    }
}

/// Panics (without quoting `text`) when the test databases' password is in it.
fn assert_no_password(what: &str, text: &str) {
    let password = std::env::var(PASSWORD_VAR).unwrap_or_default();
    assert!(
        password.is_empty() || !text.contains(&password),
        "{what} holds the database password"
    );
}

/// A runner's log, checked for the password.
fn runner_logs(runner: &TestRunner) -> String {
    let logs = runner.logs();
    assert_no_password(&format!("the log of runner {}", runner.id), &logs);
    logs
}

fn seconds(t: &Option<prost_types::Timestamp>) -> f64 {
    let t = t.as_ref().expect("a timestamp");
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

// 1. Incremental SQL connectors ------------------------------------------------------

/// A sample row: id, day, the amount as an SQL literal, and the exact value text the
/// database gives back for it.
type Row = (i64, &'static str, &'static str, &'static str);

async fn incremental_runs_publish_only_new_rows(db: Db) {
    let mut fx = Fixture::new("revenue").await;
    fx.env = db.env();
    let t = Db::table("revenue");
    // Amounts as the column type gives them back: text in SQLite, NUMERIC keeps the
    // scale of each value in PostgreSQL, DECIMAL(28,12) writes 12 decimals in MariaDB.
    let (create, cast, first, second): (&str, &str, Vec<Row>, Vec<Row>) = match db.kind {
        Kind::Sqlite => (
            "(id INTEGER PRIMARY KEY, day TEXT NOT NULL, amount TEXT NOT NULL)",
            "CAST({{cursor}} AS INTEGER)",
            vec![
                (1, "2026-01-01", "'1234.50'", "1234.50"),
                (2, "2026-01-02", "'0.000000000001'", "0.000000000001"),
                (3, "2026-01-03", "'-17'", "-17"),
            ],
            vec![
                (
                    4,
                    "2026-01-04",
                    "'98765432109876.123456789012'",
                    "98765432109876.123456789012",
                ),
                (5, "2026-01-05", "'0'", "0"),
            ],
        ),
        Kind::Postgres => (
            "(id INT PRIMARY KEY, day DATE NOT NULL, amount NUMERIC NOT NULL)",
            "{{cursor}}::int",
            vec![
                (1, "2026-01-01", "1234.50", "1234.50"),
                (2, "2026-01-02", "0.000000000001", "0.000000000001"),
                (3, "2026-01-03", "-17", "-17"),
            ],
            vec![
                (
                    4,
                    "2026-01-04",
                    "98765432109876.123456789012",
                    "98765432109876.123456789012",
                ),
                (5, "2026-01-05", "0", "0"),
            ],
        ),
        Kind::MariaDb => (
            "(id INT PRIMARY KEY, day DATE NOT NULL, amount DECIMAL(28,12) NOT NULL)",
            "CAST({{cursor}} AS SIGNED)",
            vec![
                (1, "2026-01-01", "1234.50", "1234.500000000000"),
                (2, "2026-01-02", "0.000000000001", "0.000000000001"),
                (3, "2026-01-03", "-17", "-17.000000000000"),
            ],
            vec![
                (
                    4,
                    "2026-01-04",
                    "98765432109876.123456789012",
                    "98765432109876.123456789012",
                ),
                (5, "2026-01-05", "0.25", "0.250000000000"),
            ],
        ),
    };
    let insert = |rows: &[Row]| -> Vec<String> {
        rows.iter()
            .map(|(id, day, amount, _)| format!("INSERT INTO {t} VALUES ({id}, '{day}', {amount})"))
            .collect()
    };
    let mut setup = vec![format!("CREATE TABLE {t} {create}")];
    setup.extend(insert(&first));
    db.exec(&setup).await;

    let query = format!("SELECT id, day, amount FROM {t} WHERE id > {cast} ORDER BY id");
    fx.write(
        "revenue",
        &format!(
            "[cursor]\nfield = \"id\"\ninitial = \"0\"\n[mapping]\nperiod = \"day\"\nvalue = \"amount\"\n{}",
            db.source(&query, "10s")
        ),
    );

    let run = fx.run_ok("revenue");
    assert!(
        run.stdout
            .contains("3 records pulled, 3 points published, 0 rejected"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("cursor now \"3\""), "{}", run.stdout);
    let after_first = all_points(&fx.client, &fx.stream_id).await;
    assert_eq!(after_first.len(), 3);

    db.exec(&insert(&second)).await;
    let run = fx.run_ok("revenue");
    assert!(
        run.stdout
            .contains("2 records pulled, 2 points published, 0 rejected"),
        "the second run pulls only the rows added since the first: {}",
        run.stdout
    );
    assert!(run.stdout.contains("cursor now \"5\""), "{}", run.stdout);

    let runs = fx.runs("revenue").await;
    let counts: Vec<(u64, u64, &str)> = runs
        .iter()
        .map(|r| (r.records_pulled, r.points_published, r.error.as_str()))
        .collect();
    assert_eq!(counts, [(2, 2, ""), (3, 3, "")], "newest first: {runs:#?}");
    assert_eq!(
        state(&fx.client, "revenue").await.cursor.as_deref(),
        Some("5")
    );

    let points = all_points(&fx.client, &fx.stream_id).await;
    let stored: Vec<(&str, &str)> = points
        .iter()
        .map(|p| (p.period.as_str(), p.value.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = first
        .iter()
        .chain(&second)
        .map(|(_, day, _, value)| (*day, *value))
        .collect();
    assert_eq!(stored, expected, "exact values, each period once");
    for (before, after) in after_first.iter().zip(&points) {
        assert_eq!(
            (&after.batch_id, after.revision_count),
            (&before.batch_id, 0),
            "{}: the second run did not publish the first run's rows again",
            after.period
        );
    }
    if db.kind != Kind::Sqlite {
        db.exec(&[format!("DROP TABLE {t}")]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_incremental_runs_publish_only_the_rows_added_since_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    incremental_runs_publish_only_new_rows(Db::sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_incremental_runs_publish_only_the_rows_added_since_the_cursor() {
    if let Some(db) = Db::postgres() {
        incremental_runs_publish_only_new_rows(db).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_incremental_runs_publish_only_the_rows_added_since_the_cursor() {
    if let Some(db) = Db::mariadb() {
        incremental_runs_publish_only_new_rows(db).await;
    }
}

// 2. A command source ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_command_source_run_by_the_runner_stores_its_json_lines_as_points() {
    let fx = Fixture::new("tickets").await;
    // Four lines: exact numbers and strings, one line the mapping cannot use, and the
    // length of the stream credential's variable as the program sees it (0: hidden).
    let script = r#"printf '%s\n' '{"day": "2026-03-01", "amount": 1234.50, "ref": "t-1"}' '{"day": "2026-03-02", "amount": "0.000000000001", "ref": "t-2"}' '{"day": "2026-03-03", "ref": "t-3"}' "{\"day\": \"2026-03-04\", \"amount\": ${#TICKETS_CREDENTIAL}, \"ref\": \"t-4\"}""#;
    let body = format!(
        "run_on_start = true\n[mapping]\nperiod = \"day\"\nvalue = \"amount\"\nexternal_id = \"ref\"\n[source]\ntype = \"command\"\nargv = [\"sh\", \"-c\", '''{script}''']\n"
    );
    // The credential comes from a variable here, which the runner hides from the program.
    let text = format!(
        "name = \"tickets\"\ncredential_env = \"TICKETS_CREDENTIAL\"\nschedule = \"{NEVER}\"\n{body}"
    );
    std::fs::write(fx.connectors.join("tickets.toml"), text).unwrap();
    let credential = std::fs::read_to_string(&fx.credential).unwrap();
    let runner = TestRunner::start(
        &fx.server,
        RunnerSetup::new(&fx.connectors, "cmd-runner").env("TICKETS_CREDENTIAL", &credential),
    );

    let runs = wait_for_runs(&fx.client, "tickets", 1, Duration::from_secs(30)).await;
    let run = &runs[0];
    assert_eq!(run.error, "", "{}", runner.logs());
    assert_eq!(
        (
            run.records_pulled,
            run.points_published,
            run.points_rejected
        ),
        (4, 3, 1)
    );
    let points: Vec<(String, String, String)> = all_points(&fx.client, &fx.stream_id)
        .await
        .into_iter()
        .map(|p| (p.period, p.value, p.external_id))
        .collect();
    let expected = [
        ("2026-03-01", "1234.50", "t-1"),
        ("2026-03-02", "0.000000000001", "t-2"),
        ("2026-03-04", "0", "t-4"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(points, expected);
    let logs = runner_logs(&runner);
    assert!(
        logs.contains("record not mapped") && logs.contains("t-3"),
        "the runner logs the line it could not map:\n{logs}"
    );
}

// 3. A runner killed mid-run ---------------------------------------------------------

/// Rows of the table the killed runner reads: 30 pages of 1,000, enough that
/// publishing them takes a moment.
const ROWS: i64 = 30_000;

fn amount(id: i64) -> String {
    format!("{}.{:02}", id * 3, id % 100)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_killed_mid_run_is_redone_after_restart_without_duplicates_or_gaps() {
    let fx = Fixture::new("daily-sales").await;
    let db = Db::sqlite(fx.server.dir());
    let t = Db::table("sales");
    db.exec(&[
        format!(
            "CREATE TABLE {t} (id INTEGER PRIMARY KEY, day TEXT NOT NULL, amount TEXT NOT NULL)"
        ),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
             INSERT INTO {t} SELECT i, date('2000-01-01', '+' || (i - 1) || ' days'), \
             printf('%d.%02d', i * 3, i % 100) FROM n"
        ),
    ])
    .await;
    assert_eq!(db.count(&t).await, Ok(ROWS));
    let query = format!(
        "SELECT id, day, amount FROM {t} WHERE id > CAST({{{{cursor}}}} AS INTEGER) ORDER BY id"
    );
    fx.write(
        "sales",
        &format!(
            "run_on_start = true\n[cursor]\nfield = \"id\"\ninitial = \"0\"\n[mapping]\nperiod = \"day\"\nvalue = \"amount\"\n{}",
            db.source(&query, "30s")
        ),
    );

    let mut first = fx.runner("first");
    // The first page is on the server: kill the runner while the other 29 are going.
    let first_page_end = day(999);
    let deadline = Instant::now() + Duration::from_secs(60);
    while fx.point(&first_page_end).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the first page never arrived:\n{}",
            first.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    runner_logs(&first);
    let before = all_points(&fx.client, &fx.stream_id).await;
    assert!(
        !before.is_empty() && (before.len() as i64) < ROWS,
        "the kill must land mid-run ({} of {ROWS} points stored); add rows if this machine publishes them all first",
        before.len()
    );
    let left = state(&fx.client, "sales").await;
    let slot = left
        .unfinished_slot
        .expect("the killed run's slot is left unfinished");
    assert!(
        fx.runs("sales").await.is_empty(),
        "the killed run never reported"
    );

    let second = fx.runner("second");
    let runs = wait_for_runs(&fx.client, "sales", 1, Duration::from_secs(60)).await;
    let logs = runner_logs(&second);
    assert!(logs.contains("left unfinished"), "{logs}");
    assert_eq!(runs.len(), 1, "one run for the slot: {runs:#?}");
    let run = &runs[0];
    assert_eq!(run.slot, Some(slot), "the unfinished slot was redone");
    assert_eq!(run.error, "", "{logs}");
    assert!(!run.interrupted);
    assert_eq!(run.runner_id, "second");
    assert_eq!(
        (
            run.records_pulled,
            run.points_published,
            run.points_rejected
        ),
        (ROWS as u64, ROWS as u64, 0)
    );
    let after = state(&fx.client, "sales").await;
    assert_eq!(after.cursor.as_deref(), Some(ROWS.to_string().as_str()));
    assert_eq!(after.unfinished_slot, None);

    let points = all_points(&fx.client, &fx.stream_id).await;
    assert_eq!(points.len() as i64, ROWS, "every row stored once");
    for (i, p) in points.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(
            (p.period.as_str(), p.value.as_str(), p.revision_count),
            (day(id - 1).as_str(), amount(id).as_str(), 0),
            "row {id}"
        );
    }
    for old in &before {
        let now = &points[before.iter().position(|p| p.period == old.period).unwrap()];
        assert_eq!(
            now.batch_id, old.batch_id,
            "{}: published before the kill, answered `replayed` after",
            old.period
        );
    }
}

// 4. Writing queries are refused by the database -------------------------------------

async fn a_writing_query_is_refused(db: Db, writes: &[(&str, String)], refusal: &str, t: &str) {
    let mut fx = Fixture::new("orders").await;
    fx.env = db.env();
    let created = writes
        .iter()
        .find(|(name, _)| *name == "create")
        .map(|(_, q)| q.split_whitespace().nth(2).unwrap().to_owned())
        .expect("a CREATE TABLE among the writes");
    for (name, query) in writes {
        fx.write(
            name,
            &format!(
                "[retry]\nmax_attempts = 1\n[mapping]\nperiod = \"day\"\nvalue = \"amount\"\n{}",
                db.source(query, "10s")
            ),
        );
    }
    for (name, _) in writes {
        let run = fx.cli(&["run", name]);
        assert!(!run.ok, "{name}: the run fails:\n{}", run.stdout);
        assert!(run.stderr.contains(refusal), "{name}: {}", run.stderr);

        let log = fx.cli(&["log", name]);
        assert!(log.ok, "{}", log.stderr);
        assert!(
            log.stdout.contains("  failed  ") && log.stdout.contains(refusal),
            "`connector log {name}` shows the database's refusal:\n{}",
            log.stdout
        );
        let runs = fx.runs(name).await;
        assert_eq!(runs.len(), 1);
        assert!(runs[0].error.contains(refusal), "{}", runs[0].error);
        assert_eq!(runs[0].points_published, 0);
        assert_eq!(state(&fx.client, name).await.consecutive_failures, 1);
    }
    assert_eq!(db.count(t).await, Ok(2), "the table is unchanged");
    assert!(
        db.count(&created).await.is_err(),
        "CREATE TABLE {created} did not run"
    );
    assert!(all_points(&fx.client, &fx.stream_id).await.is_empty());
    if db.kind != Kind::Sqlite {
        db.exec(&[format!("DROP TABLE {t}")]).await;
    }
}

/// Creates the sample table of the write tests, with two rows.
async fn orders_table(db: &Db) -> String {
    let t = Db::table("orders");
    let amount_type = match db.kind {
        Kind::Sqlite => "TEXT",
        Kind::Postgres | Kind::MariaDb => "NUMERIC(12,2)",
    };
    db.exec(&[
        format!("CREATE TABLE {t} (id INT PRIMARY KEY, day VARCHAR(10) NOT NULL, amount {amount_type} NOT NULL)"),
        format!("INSERT INTO {t} VALUES (1, '2026-02-01', '10.50'), (2, '2026-02-02', '11.25')"),
    ])
    .await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_query_that_writes_is_refused_by_the_database_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::sqlite(dir.path());
    let t = orders_table(&db).await;
    let created = Db::table("created");
    let writes = [
        ("delete", format!("DELETE FROM {t} RETURNING day, amount")),
        (
            "insert",
            format!("INSERT INTO {t} VALUES (3, '2026-02-03', '1') RETURNING day, amount"),
        ),
        (
            "create",
            format!("CREATE TABLE {created} AS SELECT day, amount FROM {t}"),
        ),
    ];
    a_writing_query_is_refused(db, &writes, "attempt to write a readonly database", &t).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_query_that_writes_is_refused_by_the_database_and_logged() {
    let Some(db) = Db::postgres() else { return };
    let t = orders_table(&db).await;
    let created = Db::table("created");
    let writes = [
        (
            "delete",
            format!(
                "WITH gone AS (DELETE FROM {t} RETURNING day, amount) SELECT day, amount FROM gone"
            ),
        ),
        (
            "insert",
            format!("INSERT INTO {t} VALUES (3, '2026-02-03', 1) RETURNING day, amount"),
        ),
        (
            "create",
            format!("CREATE TABLE {created} AS SELECT day, amount FROM {t}"),
        ),
    ];
    a_writing_query_is_refused(db, &writes, "read-only transaction (SQLSTATE 25006)", &t).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_a_query_that_writes_is_refused_by_the_database_and_logged() {
    let Some(db) = Db::mariadb() else { return };
    let t = orders_table(&db).await;
    let created = Db::table("created");
    let writes = [
        ("delete", format!("DELETE FROM {t} RETURNING day, amount")),
        (
            "insert",
            format!("INSERT INTO {t} VALUES (3, '2026-02-03', 1)"),
        ),
        ("create", format!("CREATE TABLE {created} (a INT)")),
    ];
    a_writing_query_is_refused(db, &writes, "READ ONLY transaction (error 1792)", &t).await;
}

// 5. A query over its statement timeout ----------------------------------------------

/// How the slow run is started.
enum Via {
    Cli,
    Runner,
}

async fn a_slow_query_is_cancelled(db: Db, slow: &str, via: Via) {
    let mut fx = Fixture::new("slow").await;
    fx.env = db.env();
    // The default retry policy: a retried cancellation would take well over 5 s.
    let start = match via {
        Via::Cli => "",
        Via::Runner => "run_on_start = true\n",
    };
    fx.write(
        "slow",
        &format!(
            "{start}[mapping]\nperiod = \"day\"\nvalue = \"n\"\n{}",
            db.source(slow, "1s")
        ),
    );
    let said = match via {
        Via::Cli => {
            let run = fx.cli(&["run", "slow"]);
            assert!(!run.ok, "{}", run.stdout);
            run.stderr
        }
        Via::Runner => {
            let runner = fx.runner("slow-runner");
            wait_for_runs(&fx.client, "slow", 1, Duration::from_secs(30)).await;
            runner.wait_for_log("run failed", Duration::from_secs(10));
            runner_logs(&runner)
        }
    };
    assert!(
        said.contains("was cancelled after 1s (its statement_timeout)"),
        "{said}"
    );

    let runs = fx.runs("slow").await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert!(
        run.error
            .contains("was cancelled after 1s (its statement_timeout)"),
        "{}",
        run.error
    );
    // The query sleeps (or counts) for 5 s or more; the run ends at its 1 s timeout, not
    // at the client's backstop (timeout + 5 s) nor after a retry.
    let took = seconds(&run.ended_at) - seconds(&run.started_at);
    assert!(
        (0.9..5.0).contains(&took),
        "the run took {took:.2} s: {}",
        run.error
    );
    let log = fx.cli(&["log", "slow"]);
    assert!(log.stdout.contains("cancelled after 1s"), "{}", log.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_a_query_over_its_statement_timeout_is_interrupted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    a_slow_query_is_cancelled(
        Db::sqlite(dir.path()),
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT '2026-01-01' AS day, count(*) AS n FROM c",
        Via::Runner,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_query_over_its_statement_timeout_is_cancelled_and_logged() {
    if let Some(db) = Db::postgres() {
        let slow = "SELECT '2026-01-01' AS day, 1 AS n FROM pg_sleep(5)";
        a_slow_query_is_cancelled(db, slow, Via::Cli).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_a_query_over_its_statement_timeout_is_cancelled_and_logged() {
    if let Some(db) = Db::mariadb() {
        let slow = "SELECT '2026-01-01' AS day, SLEEP(5) AS n";
        a_slow_query_is_cancelled(db, slow, Via::Cli).await;
    }
}

// 6. The database password never shows ----------------------------------------------

async fn no_password_is_ever_printed(db: Db, refusal: &str) {
    let mut fx = Fixture::new("accounts").await;
    fx.env = db.env();
    let canary = format!("canary-{:016x}", rand::random::<u64>());
    fx.env.insert("WRONG_DB_PASSWORD".into(), canary.clone());
    let query = "SELECT '2026-04-01' AS day, 42 AS n";
    let mapping = "[retry]\nmax_attempts = 1\n[mapping]\nperiod = \"day\"\nvalue = \"n\"\n";
    fx.write(
        "good",
        &format!("run_on_start = true\n{mapping}{}", db.source(query, "10s")),
    );
    let wrong = db
        .source(query, "10s")
        .replace(SOURCE_PASSWORD_VAR, "WRONG_DB_PASSWORD");
    fx.write("wrong", &format!("run_on_start = true\n{mapping}{wrong}"));

    let runner = fx.runner("secrets");
    wait_for_runs(&fx.client, "good", 1, Duration::from_secs(30)).await;
    wait_for_runs(&fx.client, "wrong", 1, Duration::from_secs(30)).await;
    runner.wait_for_log("run failed", Duration::from_secs(10));
    let manual = fx.cli(&["run", "wrong"]);
    assert!(!manual.ok);
    let good = fx.runs("good").await;
    assert_eq!(good[0].error, "");
    assert_eq!(good[0].points_published, 1);
    let wrong_runs = fx.runs("wrong").await;
    assert_eq!(wrong_runs.len(), 2);

    let outputs = [
        ("the runner's log", runner_logs(&runner)),
        ("`connector run wrong`", manual.stderr + &manual.stdout),
        ("`connector log wrong`", fx.cli(&["log", "wrong"]).stdout),
        ("`connector list`", fx.cli(&["list"]).stdout),
        (
            "the run-log errors",
            wrong_runs.iter().map(|r| r.error.clone()).collect(),
        ),
    ];
    for (what, text) in &outputs {
        if *what != "`connector list`" {
            assert!(
                text.contains("refused the connection") && text.contains(refusal),
                "{what} says the database refused the login:\n{text}"
            );
        }
        assert!(!text.contains(&canary), "{what} holds the wrong password");
        assert_no_password(what, text);
    }
    let server_log = fx.server.logs();
    assert!(
        !server_log.contains(&canary),
        "the server's log holds the wrong password"
    );
    assert_no_password("the server's log", &server_log);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_no_database_password_is_printed_even_when_the_login_fails() {
    if let Some(db) = Db::postgres() {
        no_password_is_ever_printed(db, "password authentication failed").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_no_database_password_is_printed_even_when_the_login_fails() {
    if let Some(db) = Db::mariadb() {
        no_password_is_ever_printed(db, "Access denied").await;
    }
}
