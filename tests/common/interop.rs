//! Helpers written in Python (tests/interop/), run from the test venv: a real SMTP
//! server that keeps what it receives, and a webhook receiver that verifies signatures
//! with the code of docs/notifications.md.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

/// The venv's Python (`KPISTREAM_PYTHON`); `None`, having said why, outside CI.
pub fn python() -> Option<OsString> {
    let python = std::env::var_os("KPISTREAM_PYTHON");
    if python.is_none() {
        if super::required() {
            panic!("KPISTREAM_PYTHON must be set under CI=true: scripts/test.sh sets it");
        }
        eprintln!(
            "skipped: KPISTREAM_PYTHON is not set (run scripts/python-venv.sh and set it to .venv/bin/python)"
        );
    }
    python
}

/// A script of tests/interop/ that listens on a port, prints it first, and appends what
/// it receives to a JSON-lines file.
pub struct PythonService {
    pub port: u16,
    out: PathBuf,
    child: Child,
    _dir: TempDir,
}

impl PythonService {
    /// Starts `script` with `--out FILE` and `args`; `None` without Python, outside CI.
    pub fn start(script: &str, args: &[&str]) -> Option<Self> {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/interop")
            .join(script);
        let mut child = Command::new(python)
            .arg(path)
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{script} starts: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep reading so the script never writes into a closed pipe.
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{script} prints its port within 30 s"))
            .unwrap_or_else(|| panic!("{script} printed its port"))
            .unwrap();
        Some(Self {
            port: first.trim().parse().expect("a port number"),
            out,
            child,
            _dir: dir,
        })
    }

    /// What it received so far, one JSON value per message.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for PythonService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/interop/smtp_sink.py: accepts every message (from a client that logs in as
/// `login`'s user and password, when given); each message as {"mail_from", "rcpt_tos",
/// "data", "auth_user"}.
pub fn smtp_sink(login: Option<(&str, &str)>) -> Option<PythonService> {
    let mut args = vec!["--port", "0"];
    if let Some((user, password)) = login {
        args.extend(["--user", user, "--password", password]);
    }
    PythonService::start("smtp_sink.py", &args)
}

/// tests/interop/webhook_receiver.py on `port` (0: any), verifying with the secret in
/// `secret_file`; each request as {"verified", "event", "event_id", "body"}.
pub fn webhook_receiver(secret_file: &Path, port: u16) -> Option<PythonService> {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/notifications.md");
    PythonService::start(
        "webhook_receiver.py",
        &[
            "--docs",
            docs,
            "--secret-file",
            secret_file.to_str().expect("a UTF-8 path"),
            "--port",
            &port.to_string(),
        ],
    )
}
