//! Shared by the black-box tests: starts the real `kpistream serve` binary on port 0 in
//! a temporary folder, connects the SDK client to it, and kills it when dropped.
//!
//! Each test binary uses a different part of this module, hence the `dead_code` allow.
#![allow(dead_code)]

pub mod interop;
pub mod readme;
pub mod runner;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kpistream::client::{Client, Credential, new_batch, point_for_period};
use kpistream::proto;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use secrecy::SecretString;
use tempfile::TempDir;
use tonic::Status;

/// How long the server may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping server may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variables the binary reads; cleared so the host's cannot leak in.
const SERVER_ENV: [&str; 16] = [
    "KPISTREAM_CONFIG",
    "KPISTREAM_DB",
    "KPISTREAM_LISTEN",
    "KPISTREAM_HTTP",
    "KPISTREAM_ADMIN_TOKEN_FILE",
    "KPISTREAM_MAX_SKEW_SECS",
    "KPISTREAM_MAX_POINTS_PER_BATCH",
    "KPISTREAM_SERVER",
    "KPISTREAM_TOKEN",
    "KPISTREAM_TOKEN_FILE",
    "KPISTREAM_TLS_CERT",
    "KPISTREAM_TLS_KEY",
    "KPISTREAM_TLS_CLIENT_CA",
    "KPISTREAM_CA_CERT",
    "KPISTREAM_CLIENT_CERT",
    "KPISTREAM_CLIENT_KEY",
];

/// How to start a [`TestServer`]: what [`TestServer::start`] does, unless changed.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// `--db` (default `sqlite://DIR/kpistream.db`).
    pub db: Option<String>,
    /// `--admin-token-file` (default `DIR/admin.token`).
    pub token_file: Option<PathBuf>,
    /// Further `serve` flags.
    pub args: Vec<String>,
    /// The process's limit of open files (soft and hard).
    pub open_files: Option<u64>,
    /// Run the server as the unprivileged user `nobody` (the test must run as root),
    /// so that file permissions bind it.
    pub as_nobody: bool,
    /// Lines of a `[limits]` section, written to a config file the server is given.
    pub limits: Option<String>,
    /// Further sections of that config file (TOML), such as `[alerts]`.
    pub config: Option<String>,
}

/// The user and group id of `nobody`.
pub const NOBODY: u32 = 65534;

/// Whether the black-box suites run against PostgreSQL (`KPISTREAM_TEST_DB=postgres`,
/// which scripts/test.sh sets for a second run of them) instead of SQLite files.
pub fn on_postgres() -> bool {
    std::env::var("KPISTREAM_TEST_DB").is_ok_and(|v| v == "postgres")
}

/// A schema of the test PostgreSQL (`KPISTREAM_TEST_POSTGRES_URL`,
/// `KPISTREAM_TEST_DB_PASSWORD`) for one server's tables, dropped with it.
pub struct PgSchema {
    /// `--db` for a server keeping its tables in the schema (password included).
    pub url: String,
    name: String,
    admin: (String, String),
}

impl PgSchema {
    /// A schema for a test that needs PostgreSQL: `None` (the test skips, saying so)
    /// without the test database's variables, except under `CI=true`, where it fails.
    pub fn for_test() -> Option<PgSchema> {
        let configured = std::env::var("KPISTREAM_TEST_POSTGRES_URL").is_ok()
            && std::env::var("KPISTREAM_TEST_DB_PASSWORD").is_ok();
        if !configured {
            assert!(
                !required(),
                "KPISTREAM_TEST_POSTGRES_URL and KPISTREAM_TEST_DB_PASSWORD must be set under CI=true: scripts/test.sh exports them once scripts/services.sh has started PostgreSQL"
            );
            eprintln!(
                "skipped: KPISTREAM_TEST_POSTGRES_URL or KPISTREAM_TEST_DB_PASSWORD is not set (run scripts/services.sh as root and source target/test-services.env)"
            );
            return None;
        }
        Some(PgSchema::create())
    }

    pub fn create() -> PgSchema {
        let (url, password) = match (
            std::env::var("KPISTREAM_TEST_POSTGRES_URL"),
            std::env::var("KPISTREAM_TEST_DB_PASSWORD"),
        ) {
            (Ok(url), Ok(password)) => (url, password),
            _ => panic!(
                "KPISTREAM_TEST_DB=postgres needs KPISTREAM_TEST_POSTGRES_URL and KPISTREAM_TEST_DB_PASSWORD (scripts/services.sh writes them to target/test-services.env)"
            ),
        };
        let name = format!("kpi_suite_{:016x}", rand::random::<u64>());
        pg_execute(&url, &password, &format!("CREATE SCHEMA {name}"));
        let with_password = url.replacen("://kpistream@", &format!("://kpistream:{password}@"), 1);
        assert_ne!(
            with_password, url,
            "KPISTREAM_TEST_POSTGRES_URL names the role kpistream"
        );
        let separator = if url.contains('?') { '&' } else { '?' };
        PgSchema {
            url: format!("{with_password}{separator}options=-c%20search_path%3D{name}"),
            name,
            admin: (url, password),
        }
    }
}

impl PgSchema {
    /// The test database's password (tests check it is never printed).
    pub fn password(&self) -> &str {
        &self.admin.1
    }

    /// The URL with one more `-c` setting for the server's sessions.
    pub fn url_with(&self, setting: &str) -> String {
        format!("{}%20-c%20{setting}", self.url)
    }

    /// How many rows `table` of the schema holds.
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::ConnectOptions;
        let (url, password) = &self.admin;
        let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url)
            .expect("a PostgreSQL URL")
            .password(password);
        let mut conn = options
            .connect()
            .await
            .expect("the test PostgreSQL answers");
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}.{table}", self.name))
            .fetch_one(&mut conn)
            .await
            .expect("the count")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Never panics here (a test that already failed would abort): a schema left
        // behind is dropped with the test database.
        let (url, password) = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            pg_execute(
                &url,
                &password,
                &format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
            )
        })
        .join();
    }
}

/// Runs one statement on the test PostgreSQL, from a thread with a runtime of its own
/// (callers may be inside a runtime, or dropping out of one).
fn pg_execute(url: &str, password: &str, statement: &str) {
    use sqlx::{ConnectOptions, Executor};
    let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url)
        .expect("a PostgreSQL URL")
        .password(password);
    let statement = statement.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                let mut conn = options
                    .connect()
                    .await
                    .expect("the test PostgreSQL answers");
                conn.execute(statement.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            })
    })
    .join()
    .expect("the statement ran");
}

/// A running `kpistream serve` process over a database in its own temporary folder.
pub struct TestServer {
    /// The PostgreSQL schema holding its tables, when the suites run on PostgreSQL.
    /// Declared first so it is dropped after the process is killed (see `Drop`).
    pg: Option<PgSchema>,
    dir: TempDir,
    child: Option<Child>,
    setup: Setup,
    /// `--listen` and `--http` of the next start.
    listen: (String, String),
    starts: u32,
    /// `http://127.0.0.1:PORT` of the gRPC server.
    pub grpc: String,
    /// Address of the HTTP server (`/healthz`, `/metrics`).
    pub http: SocketAddr,
    /// The admin token the first start wrote.
    pub token: String,
}

impl TestServer {
    /// Starts a server with the default settings on a fresh database.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server on a fresh database with extra `serve` flags.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_setup(Setup {
            args: extra_args.iter().map(|a| a.to_string()).collect(),
            ..Setup::default()
        })
    }

    /// Starts a server on a fresh database with these lines in its config's `[limits]`.
    pub fn start_with_limits(limits: &str) -> Self {
        Self::start_setup(Setup {
            limits: Some(limits.to_owned()),
            ..Setup::default()
        })
    }

    /// Starts a server in a fresh temporary folder as `setup` says.
    pub fn start_setup(mut setup: Setup) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        if setup.limits.is_some() || setup.config.is_some() {
            let mut text = setup.config.take().unwrap_or_default();
            if let Some(limits) = setup.limits.take() {
                text = format!("[limits]\n{limits}\n\n{text}");
            }
            let path = dir.path().join("server.toml");
            std::fs::write(&path, text).expect("config file");
            setup.args.push("--config".into());
            setup.args.push(path.display().to_string());
        }
        if setup.as_nobody {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY))
                .expect("the test runs as root, so the folder can be given to nobody");
        }
        let pg = (setup.db.is_none() && on_postgres()).then(PgSchema::create);
        if let Some(schema) = &pg {
            setup.db = Some(schema.url.clone());
        }
        let mut server = Self {
            pg,
            dir,
            child: None,
            setup,
            listen: ("127.0.0.1:0".into(), "127.0.0.1:0".into()),
            starts: 0,
            grpc: String::new(),
            http: "127.0.0.1:0".parse().unwrap(),
            token: String::new(),
        };
        server.spawn();
        server.token = std::fs::read_to_string(server.token_path())
            .expect("the first start writes the admin token file")
            .trim()
            .to_owned();
        assert!(!server.token.is_empty(), "the admin token file is empty");
        server
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `--db` URL of the PostgreSQL schema the server keeps its tables in, when
    /// the suites run on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.pg.as_ref().map(|schema| schema.url.as_str())
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir().join("kpistream.db")
    }

    pub fn token_path(&self) -> PathBuf {
        self.setup
            .token_file
            .clone()
            .unwrap_or_else(|| self.dir().join("admin.token"))
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("the server is running");
        Pid::from_raw(child.id() as i32)
    }

    /// The server's log (stderr) of every start so far, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir().join(format!("server-{start}.log"))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("log file");
        let db = self
            .setup
            .db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.db_path().display()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_kpistream"));
        command
            .current_dir(self.dir())
            .arg("serve")
            .args(["--db", &db])
            .args(["--listen", &self.listen.0, "--http", &self.listen.1])
            .arg("--admin-token-file")
            .arg(self.token_path())
            .args(&self.setup.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for var in SERVER_ENV {
            command.env_remove(var);
        }
        if let Some(files) = self.setup.open_files {
            limit_open_files(&mut command, files);
        }
        if self.setup.as_nobody {
            use std::os::unix::process::CommandExt;
            command.uid(NOBODY).gid(NOBODY);
        }
        let mut child = command.spawn().expect("the kpistream binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let (grpc, http) = self.wait_for_addresses(stdout);
        self.grpc = format!("http://{grpc}");
        self.http = http;
    }

    /// Reads stdout on a thread (which keeps draining it afterwards) until both
    /// "listening" lines arrived.
    fn wait_for_addresses(&self, stdout: std::process::ChildStdout) -> (SocketAddr, SocketAddr) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining so the server never blocks.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "the server did not print its addresses within {START_TIMEOUT:?}\n{}",
                    self.logs()
                )
            });
            if let Some(rest) = line.strip_prefix("gRPC listening on ") {
                // A TLS server adds " (TLS)" or " (mTLS)" after the address.
                let addr = rest.split_whitespace().next().expect("gRPC address");
                grpc = Some(addr.parse().expect("gRPC address"));
            } else if let Some(rest) = line.strip_prefix("HTTP listening on ") {
                let addr = rest.split_whitespace().next().expect("HTTP address");
                http = Some(addr.parse().expect("HTTP address"));
            }
        }
        (grpc.unwrap(), http.unwrap())
    }

    /// A client carrying the admin token.
    pub async fn client(&self) -> Client {
        Client::connect(&self.grpc, Some(SecretString::from(self.token.clone())))
            .await
            .expect("the client connects")
    }

    /// A client with no token (enough for publishing).
    pub async fn anonymous_client(&self) -> Client {
        Client::connect(&self.grpc, None)
            .await
            .expect("the client connects")
    }

    /// Creates a stream and returns it with the credential of its first key.
    pub async fn create_stream(
        &self,
        request: proto::CreateStreamRequest,
    ) -> (proto::Stream, Credential) {
        let created = self
            .client()
            .await
            .admin()
            .create_stream(request)
            .await
            .expect("the stream is created")
            .into_inner();
        let credential = created.credential.parse().expect("the credential parses");
        (created.stream.expect("the created stream"), credential)
    }

    /// Creates a daily number stream in UTC.
    pub async fn daily_stream(&self, name: &str) -> (String, Credential) {
        let (stream, credential) = self
            .create_stream(stream_request(name, proto::Frequency::Daily, "UTC"))
            .await;
        (stream.id, credential)
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        child.wait().expect("the killed server is reaped");
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid();
        kill(pid, Signal::SIGTERM).expect("SIGTERM is delivered");
        self.wait_for_exit()
    }

    /// Waits for the server to exit on its own, killing it after [`EXIT_TIMEOUT`].
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let child = self.child.as_mut().expect("the server is running");
        loop {
            if let Some(status) = child.try_wait().expect("wait on the server") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "the server did not exit within {EXIT_TIMEOUT:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same folder and database (killing it first if it
    /// still runs). The addresses change; the token stays.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        self.spawn();
    }

    /// Starts the server again on the same folder, database and ports (a load
    /// balancer's view: the next server answers at the same address).
    pub fn restart_on_same_ports(&mut self) {
        let grpc = self.grpc.trim_start_matches("http://").to_owned();
        self.listen = (grpc, self.http.to_string());
        self.restart();
    }

    /// Reads a line of `/proc/PID/status` (such as `VmRSS`) as a number of kB.
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// The value of a line of `/metrics` (the first that starts with `name`, labels
    /// included), 0 when there is none.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The server's resident memory, in MiB.
    pub fn rss_mib(&self) -> u64 {
        self.status_kb("VmRSS") / 1024
    }

    /// A plain HTTP/1.0 GET on the HTTP port: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.http).expect("HTTP port accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.http).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("HTTP response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("HTTP response has a head and a body");
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {head:?}"));
        (code, body.to_owned())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Makes `command`'s process start with at most `files` open files (soft and hard limit).
pub fn limit_open_files(command: &mut Command, files: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, files, files)
                .map_err(std::io::Error::from)
        });
    }
}

/// Whether tests that need a service or privilege must run (CI) or may skip.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A number stream of `frequency` in `time_zone`.
pub fn stream_request(
    name: &str,
    frequency: proto::Frequency,
    time_zone: &str,
) -> proto::CreateStreamRequest {
    proto::CreateStreamRequest {
        name: name.to_owned(),
        frequency: frequency as i32,
        value_type: proto::ValueType::Number as i32,
        time_zone: time_zone.to_owned(),
        ..Default::default()
    }
}

/// A point for a period, without an external id.
pub fn point(period: &str, value: &str) -> proto::Point {
    point_for_period(period, value, "")
}

/// A batch with an explicit id and `signed_at`.
pub fn batch(
    batch_id: &str,
    signed_at: jiff::Timestamp,
    points: Vec<proto::Point>,
) -> proto::Batch {
    proto::Batch {
        batch_id: batch_id.to_owned(),
        signed_at: Some(prost_types::Timestamp {
            seconds: signed_at.as_second(),
            nanos: signed_at.subsec_nanosecond(),
        }),
        points,
    }
}

/// A fresh batch (new UUIDv7 id, signed now) sealed with `credential`.
pub fn sealed(credential: &Credential, points: Vec<proto::Point>) -> proto::SignedBatch {
    credential.seal(&new_batch(points))
}

/// Publishes an envelope as it is.
pub async fn publish_envelope(
    client: &Client,
    envelope: proto::SignedBatch,
    all_or_nothing: bool,
) -> Result<proto::PublishResponse, Status> {
    client
        .ingest()
        .publish(proto::PublishRequest {
            batch: Some(envelope),
            all_or_nothing,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Every point of a stream, oldest first (the client follows the server's pages of at
/// most 10,000).
pub async fn all_points(client: &Client, stream_id: &str) -> Vec<proto::DataPoint> {
    client
        .points(stream_id, &kpistream::client::PeriodRange::default())
        .await
        .expect("the points of the stream")
}

/// (period, value) pairs of a stream's points.
pub async fn values(client: &Client, stream_id: &str) -> Vec<(String, String)> {
    all_points(client, stream_id)
        .await
        .into_iter()
        .map(|p| (p.period, p.value))
        .collect()
}

/// The stream as `GetStream` shows it, with its keys.
pub async fn show(client: &Client, stream_id: &str) -> proto::StreamDetail {
    client
        .admin()
        .get_stream(proto::StreamRef {
            stream_id: stream_id.to_owned(),
        })
        .await
        .expect("the stream is shown")
        .into_inner()
}

/// The `n`th day after 2000-01-01, as daily period text: many distinct periods.
pub fn day(n: i64) -> String {
    use jiff::ToSpan;
    jiff::civil::date(2000, 1, 1)
        .checked_add(n.days())
        .expect("a date in range")
        .to_string()
}

/// A `kpistream` CLI command run in `dir`, with the host's KPISTREAM_* variables and
/// client profiles out of its way.
pub fn cli(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpistream"));
    command.current_dir(dir).stdin(Stdio::null());
    // No profile of the host's (kpistream login) reaches a test.
    command.env("XDG_CONFIG_HOME", dir.join(".no-kpistream-profiles"));
    for var in SERVER_ENV {
        command.env_remove(var);
    }
    command
}

/// A transaction a test holds open so that the server's writer waits: SQLite's write
/// lock, or on PostgreSQL the stream's row (the writer locks it before anything else).
pub enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    pub async fn take(server: &TestServer, stream: &str) -> WriteLock {
        use sqlx::ConnectOptions;
        if let Some(url) = server.postgres_url() {
            let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
            let mut conn = options.connect().await.expect("the test connects");
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("SELECT 1 FROM streams WHERE id = $1 FOR UPDATE")
                .bind(stream)
                .execute(&mut conn)
                .await
                .expect("the test locks the stream's row");
            return WriteLock::Postgres(conn);
        }
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(server.db_path())
            .connect()
            .await
            .expect("the test opens the database");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("the test takes the write lock");
        WriteLock::Sqlite(conn)
    }

    pub async fn release(&mut self) {
        match self {
            WriteLock::Sqlite(conn) => sqlx::query("COMMIT").execute(conn).await.map(|_| ()),
            WriteLock::Postgres(conn) => sqlx::query("COMMIT").execute(conn).await.map(|_| ()),
        }
        .expect("the test ends its transaction");
    }
}
