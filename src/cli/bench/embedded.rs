//! `kpistream bench --embedded`: a `kpistream serve` of our own, on port 0 over a
//! database in a temporary folder, and what the kernel and `/metrics` tell about it.
//! The folder, database and admin token go when the server is stopped (or dropped).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long the server may take to print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Variables `serve` reads: cleared, so the caller's settings cannot leak into the
/// benchmark's server.
const SERVE_ENV: [&str; 10] = [
    "KPISTREAM_CONFIG",
    "KPISTREAM_DB",
    "KPISTREAM_LISTEN",
    "KPISTREAM_HTTP",
    "KPISTREAM_ADMIN_TOKEN_FILE",
    "KPISTREAM_MAX_SKEW_SECS",
    "KPISTREAM_MAX_POINTS_PER_BATCH",
    "KPISTREAM_TLS_CERT",
    "KPISTREAM_TLS_KEY",
    "KPISTREAM_TLS_CLIENT_CA",
];

/// A running server of our own.
pub struct EmbeddedServer {
    child: Child,
    pid: u32,
    /// `http://127.0.0.1:PORT` of its gRPC port.
    pub grpc: String,
    /// Its HTTP port (`/metrics`).
    pub http: SocketAddr,
    /// The admin token its first start wrote.
    pub token: SecretString,
    http_client: reqwest::Client,
    // Dropped last: the folder outlives the process that writes into it.
    dir: TempDir,
}

/// The server's CPU time and memory, as the kernel counts them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory now, in KiB.
    pub rss_kib: u64,
    /// The most resident memory so far (VmHWM), in KiB.
    pub peak_rss_kib: u64,
}

impl EmbeddedServer {
    /// Starts `kpistream serve` (this very binary) on a fresh database.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kpistream-bench-")
            .tempdir()
            .context("cannot create a temporary folder for the benchmark's server")?;
        let exe = std::env::current_exe()
            .context("cannot find the kpistream binary to start a server with")?;
        let log = std::fs::File::create(dir.path().join("serve.log"))
            .context("cannot create the server's log file")?;
        let mut command = Command::new(exe);
        command
            .current_dir(dir.path())
            .arg("serve")
            .arg("--db")
            .arg(format!(
                "sqlite://{}",
                dir.path().join("kpistream.db").display()
            ))
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--admin-token-file")
            .arg(dir.path().join("admin.token"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for var in SERVE_ENV {
            command.env_remove(var);
        }
        let mut child = command
            .spawn()
            .context("cannot start `kpistream serve` for the benchmark")?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let addresses = tokio::time::timeout(START_TIMEOUT, read_addresses(stdout)).await;
        let (grpc, http) = match addresses {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => anyhow::bail!(
                "the benchmark's server did not start: {e:#}{}",
                log_tail(dir.path())
            ),
            Err(_) => anyhow::bail!(
                "the benchmark's server did not print its addresses within {} s{}",
                START_TIMEOUT.as_secs(),
                log_tail(dir.path())
            ),
        };
        let token = std::fs::read_to_string(dir.path().join("admin.token"))
            .context("the benchmark's server wrote no admin token")?;
        Ok(Self {
            child,
            pid,
            grpc: format!("http://{grpc}"),
            http,
            token: SecretString::from(token.trim().to_owned()),
            http_client: reqwest::Client::new(),
            dir,
        })
    }

    /// The server's CPU time and memory now.
    pub fn stats(&self) -> anyhow::Result<ProcessStats> {
        process_stats(self.pid)
    }

    /// The value of a counter (or the sum of its labelled series) on `/metrics`;
    /// `None` when the server does not expose it.
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        let url = format!("http://{}/metrics", self.http);
        let body = self
            .http_client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("cannot read the server's metrics at {url}"))?
            .text()
            .await
            .with_context(|| format!("cannot read the server's metrics at {url}"))?;
        Ok(metric_value(&body, name))
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace) and removes its folder.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            self.child
                .kill()
                .await
                .context("cannot stop the benchmark's server")?;
        }
        let path = self.dir.path().to_owned();
        self.dir
            .close()
            .with_context(|| format!("cannot remove the benchmark's folder {}", path.display()))
    }
}

/// Reads the server's stdout until both "listening" lines came, then keeps draining it
/// on a task so that the server never blocks on a full pipe.
async fn read_addresses(stdout: ChildStdout) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let mut lines = BufReader::new(stdout).lines();
    let (mut grpc, mut http) = (None, None);
    while grpc.is_none() || http.is_none() {
        let line = lines
            .next_line()
            .await?
            .context("the benchmark's server exited before it listened")?;
        // The same prefixes tests and scripts read, up to a space.
        if let Some(rest) = line.strip_prefix("gRPC listening on ") {
            grpc = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if let Some(rest) = line.strip_prefix("HTTP listening on ") {
            http = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((grpc.expect("seen"), http.expect("seen")))
}

/// The end of the server's log, to say why it did not start.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its log ends with:\n{}", crate::text::printable(&tail))
    }
}

/// CPU time from `/proc/PID/stat` and memory from `/proc/PID/status`.
pub fn process_stats(pid: u32) -> anyhow::Result<ProcessStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let cpu_ticks = cpu_ticks(&stat)
        .with_context(|| format!("/proc/{pid}/stat has no CPU times where expected"))?;
    let kib = |field: &str| status_kib(&status, field);
    Ok(ProcessStats {
        cpu_seconds: cpu_ticks as f64 / ticks,
        rss_kib: kib("VmRSS").unwrap_or(0),
        peak_rss_kib: kib("VmHWM").unwrap_or(0),
    })
}

/// utime + stime, fields 14 and 15 of `/proc/PID/stat`, counted after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name come field 3 (state) onwards: utime is field 14, at index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The sum of the series of `name` in a Prometheus text page (`name` or `name{…}`).
fn metric_value(page: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_read_after_a_command_name_with_spaces() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn a_metric_sums_its_series_and_ignores_longer_names() {
        let page = "# TYPE x counter\nx_total 3\nx_total{a=\"1\"} 4\nx_total_more 100\n";
        assert_eq!(metric_value(page, "x_total"), Some(7.0));
        assert_eq!(metric_value(page, "y_total"), None);
    }
}
