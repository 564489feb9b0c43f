//! Cross-language interop: a Python publisher written only from `docs/signing.md` and the
//! `.proto` files (`tests/interop/publish.py`) publishes to the real `kpistream` binary,
//! and the points it sent are read back from Rust, exactly.
//!
//! The interpreter is `$KPISTREAM_PYTHON`, or `.venv/bin/python` made by
//! `scripts/python-venv.sh`. Without it (or without grpcio, grpcio-tools, PyNaCl) the test
//! is skipped with a message, except in CI (`CI=true`), where it fails.
//!
//! The server is started here with its own few lines rather than a shared helper, so this
//! test depends on nothing but the binary's command line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kpistream::client::Client;
use kpistream::proto;
use secrecy::SecretString;

const MODULES: &str = "import grpc, grpc_tools.protoc, nacl.signing";

/// The interpreter to use, or why there is none.
fn python() -> Result<PathBuf, String> {
    let python = std::env::var_os("KPISTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let fix = "run scripts/python-venv.sh, or set KPISTREAM_PYTHON to a Python with grpcio, grpcio-tools and pynacl";
    let output = Command::new(&python)
        .args(["-c", MODULES])
        .output()
        .map_err(|e| format!("cannot run {}: {e} ({fix})", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} lacks a module: {} ({fix})",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(python)
}

/// The real server, killed when dropped.
struct Server {
    child: Child,
    endpoint: String,
    token: String,
    stderr: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let stderr = dir.join("server.stderr");
        let token_file = dir.join("admin.token");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kpistream"))
            .arg("serve")
            .arg("--db")
            .arg(format!("sqlite://{}", dir.join("kpistream.db").display()))
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--admin-token-file")
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the kpistream binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the address, then keeps draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("gRPC listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut server = Server {
            child,
            endpoint: String::new(),
            token: String::new(),
            stderr,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.endpoint = format!("http://{addr}"),
            Err(_) => panic!(
                "the server did not print its gRPC address; stderr:\n{}",
                server.log()
            ),
        }
        server.token = std::fs::read_to_string(&token_file)
            .expect("the server wrote the admin token")
            .trim()
            .to_owned();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_daily_stream_in_paris(client: &Client) -> String {
    let created = client
        .admin()
        .create_stream(proto::CreateStreamRequest {
            name: "Python interop".into(),
            frequency: proto::Frequency::Daily as i32,
            value_type: proto::ValueType::Number as i32,
            time_zone: "Europe/Paris".into(),
            ..Default::default()
        })
        .await
        .expect("the admin creates a stream")
        .into_inner();
    assert!(created.credential.starts_with("kpik1."));
    created.credential
}

async fn run_publisher(python: &Path, server: &Server, credential: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/publish.py");
    // The credential goes through the environment, not argv, which other users can read.
    let run = tokio::process::Command::new(python)
        .arg(&script)
        .env("KPISTREAM_CREDENTIAL", credential)
        .env("KPISTREAM_SERVER", &server.endpoint)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the Python publisher finishes within 3 minutes")
        .expect("the Python publisher runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python publisher failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    serde_json::from_str(&stdout).expect("the publisher prints a JSON summary")
}

#[tokio::test]
async fn a_python_publisher_written_from_the_spec_is_accepted_by_the_real_server() {
    let python = match python() {
        Ok(python) => python,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the Python interop test cannot run in CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping the Python interop test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = Client::connect(
        &server.endpoint,
        Some(SecretString::from(server.token.clone())),
    )
    .await
    .expect("the client connects");
    let credential = create_daily_stream_in_paris(&client).await;
    let stream_id = credential.split('.').nth(1).unwrap().to_owned();

    let summary = run_publisher(&python, &server, &credential).await;
    assert_eq!(summary["ok"], true, "{summary:#}");
    assert_eq!(summary["stream_id"], stream_id.as_str());
    assert_eq!(
        summary["vectors_checked"], 16,
        "both vector files were checked"
    );
    let batch_id = |name: &str| {
        summary["batches"][name]["batch_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (batch_id("A"), batch_id("B (stream)"));

    let points = client
        .query()
        .list_points(proto::ListPointsRequest {
            stream_id: stream_id.clone(),
            ..Default::default()
        })
        .await
        .expect("the admin reads the stream")
        .into_inner()
        .points;
    let stored: Vec<(&str, &str, &str, &str)> = points
        .iter()
        .map(|p| {
            (
                p.period.as_str(),
                p.value.as_str(),
                p.external_id.as_str(),
                p.batch_id.as_str(),
            )
        })
        .collect();
    // 2026-11-23T23:30:00Z is already the 24th in Paris. The invalid points (1e3, the
    // duplicate period, the all_or_nothing batch) and the tampered batch stored nothing,
    // and the replays stored nothing again.
    assert_eq!(
        stored,
        vec![
            ("2026-11-20", "1234.50", "py-period", a.as_str()),
            ("2026-11-21", "0.000001", "py-stream", b.as_str()),
            ("2026-11-24", "-0.125", "py-at", a.as_str()),
        ]
    );
    assert!(points.iter().all(|p| p.revision_count == 0));
}
