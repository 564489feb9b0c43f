//! Starts the real `kpistream runner` binary against a [`TestServer`], with its log in a
//! file the test can read, and runs `kpistream connector …` verbs the same way; a
//! connector [`Workspace`], a local HTTP source ([`serve`]) and waits on a connector's
//! server-side state.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use kpistream::client::{Client, Credential};
use kpistream::proto;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{TestServer, cli};

/// A running `kpistream runner` process.
pub struct TestRunner {
    child: Option<Child>,
    log: PathBuf,
    /// The runner's id on the server.
    pub id: String,
}

/// What a runner is started with besides the server: its connector directory, id,
/// extra environment (credentials, source secrets) and flags.
pub struct RunnerSetup<'a> {
    pub connectors: &'a Path,
    pub id: &'a str,
    pub env: BTreeMap<String, String>,
    pub args: Vec<String>,
}

impl<'a> RunnerSetup<'a> {
    pub fn new(connectors: &'a Path, id: &'a str) -> Self {
        Self {
            connectors,
            id,
            env: BTreeMap::new(),
            args: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }
}

impl TestRunner {
    /// Starts a runner with a 3 s lease, a 200 ms reload interval and metrics on port 0,
    /// and waits until it says it is watching its directory.
    pub fn start(server: &TestServer, setup: RunnerSetup<'_>) -> Self {
        let log = setup
            .connectors
            .parent()
            .unwrap_or(setup.connectors)
            .join(format!("runner-{}-{}.log", setup.id, unique()));
        let file = File::create(&log).expect("runner log file");
        let mut command = cli(setup.connectors.parent().unwrap_or(setup.connectors));
        command
            .arg("runner")
            .arg("--connectors")
            .arg(setup.connectors)
            .args(["--runner-id", setup.id])
            .args(["--lease-ttl", "3s", "--reload-interval", "200ms"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(&setup.args)
            .env("KPISTREAM_SERVER", &server.grpc)
            .env("KPISTREAM_TOKEN", &server.token)
            .env("RUST_LOG", "info,kpistream=debug")
            .env("NO_COLOR", "1")
            .envs(&setup.env)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        let child = command.spawn().expect("the runner starts");
        let runner = Self {
            child: Some(child),
            log,
            id: setup.id.to_owned(),
        };
        runner.wait_for_log("watching", Duration::from_secs(20));
        runner
    }

    /// Everything the runner printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the runner did not log {needle:?} within {timeout:?}:\n{}",
            self.logs()
        );
    }

    /// The `/metrics` address the runner printed.
    pub fn metrics_url(&self) -> String {
        let logs = self.logs();
        let line = logs
            .lines()
            .find(|l| l.starts_with("runner metrics on "))
            .expect("the runner prints its metrics address");
        line.trim_start_matches("runner metrics on ").to_owned()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("the runner runs").id() as i32)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = kill(self.pid(), Signal::SIGKILL);
        let mut child = self.child.take().unwrap();
        child.wait().expect("the killed runner is reaped");
    }

    /// SIGTERM, and wait (at most 60 s) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM is delivered");
        let deadline = Instant::now() + Duration::from_secs(60);
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let logs = self.logs();
                self.kill();
                panic!("the runner did not stop within 60 s after SIGTERM:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRunner {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `kpistream ARGS` against `server`, run from `dir` with `env` added.
pub fn kpistream(
    server: &TestServer,
    dir: &Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> Output {
    cli(dir)
        .args(args)
        .env("KPISTREAM_SERVER", &server.grpc)
        .env("KPISTREAM_TOKEN", &server.token)
        .env("NO_COLOR", "1")
        .envs(env)
        .output()
        .expect("the CLI runs")
}

/// `kpistream connector ARGS --connectors DIR` against `server`, with `env` added.
pub fn connector(
    server: &TestServer,
    connectors: &Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> Output {
    let dir = connectors.to_str().expect("a UTF-8 path");
    let args: Vec<&str> = [&["connector"], args, &["--connectors", dir]].concat();
    kpistream(
        server,
        connectors.parent().unwrap_or(connectors),
        env,
        &args,
    )
}

/// The connector's run log, newest first.
pub async fn runs(client: &Client, connector: &str) -> Vec<proto::Run> {
    client
        .runs(connector, 0)
        .await
        .expect("the run log is readable")
}

/// Waits until the connector has at least `n` runs; panics after `timeout`.
pub async fn wait_for_runs(
    client: &Client,
    connector: &str,
    n: usize,
    timeout: Duration,
) -> Vec<proto::Run> {
    let deadline = Instant::now() + timeout;
    loop {
        let runs = runs(client, connector).await;
        if runs.len() >= n {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{connector} has {} runs after {timeout:?}, expected {n}: {runs:#?}",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The connector's server-side state.
pub async fn state(client: &Client, connector: &str) -> proto::ConnectorState {
    client
        .runner()
        .get_state(proto::ConnectorRef {
            connector: connector.into(),
        })
        .await
        .expect("the state is readable")
        .into_inner()
}

/// A folder with a `connectors/` directory and the credential files its connectors name.
pub struct Workspace {
    pub dir: TempDir,
    pub connectors: PathBuf,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let connectors = dir.path().join("connectors");
        std::fs::create_dir(&connectors).unwrap();
        Self { dir, connectors }
    }

    /// Writes the stream credential to a 0600 file outside the connector directory.
    pub fn credential(&self, name: &str, credential: &Credential) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kpik"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(credential.expose_secret().as_bytes())
            .unwrap();
        path
    }

    /// Replaces a connector file at once (written aside, then renamed), as editors do.
    pub fn write(&self, file: &str, text: &str) {
        let aside = self.connectors.join(format!(".{file}.partial"));
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, self.connectors.join(file)).unwrap();
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.connectors.join(file)).unwrap();
    }
}

/// Serves `router` on a free port of 127.0.0.1 from a thread of its own (so the test
/// may block while the runner calls it); returns `http://127.0.0.1:PORT`.
pub fn serve(router: Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    format!("http://{address}")
}

/// Waits until the connector's server-side state satisfies `check`.
pub async fn wait_for_state(
    client: &Client,
    connector: &str,
    timeout: Duration,
    check: impl Fn(&proto::ConnectorState) -> bool,
) -> proto::ConnectorState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = state(client, connector).await;
        if check(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the state of {connector} did not change as expected within {timeout:?}: {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one sample of a Prometheus text exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
