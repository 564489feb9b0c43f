//! The README's "Pulling KPIs with connectors", run as written: its commands, in a copy
//! of `connectors/` with the bundled samples (the SQLite database its `python3` command
//! builds, the JSON pages `python3 -m http.server` serves on the port
//! `connections.toml` names), against a real server, leaving the real runner running as
//! the README does. Every output must match the README (ids, times and runner ids
//! aside), the streams must hold what the sample sources say, and the runner must run
//! the SQL connector by itself with the runner token the section creates.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use common::readme::{Step, steps_between, transcripts};
use common::runner::runs;
use kpistream::client::{Client, Credential};
use kpistream::proto;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use sqlx::Connection;

const START: &str = "<!-- connectors:start -->";
const END: &str = "<!-- connectors:end -->";
const MARKER: &str = "@@kpistream-connectors-step@@";
/// The sample API's port, as `connectors/connections.toml` names it.
const SAMPLE_API: &str = "127.0.0.1:8089";
/// Longest the whole section may take (it pulls a few pages and rows).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn section_steps(readme: &str) -> Vec<Step> {
    steps_between(readme, START, END)
}

/// Copies `from` into `to`, leaving out a sample database built in the repository.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.path().extension().is_none_or(|e| e != "db") {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The processes the section leaves running (the sample API and the runner), in the
/// process group of the shell that started them: stopped with SIGTERM, as the README's
/// `kill` would, then SIGKILL if they linger.
struct ProcessGroup(Pid);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if killpg(self.0, None) == Err(Errno::ESRCH) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// Runs the steps in one `bash` in `dir`, each preceded by a marker line, and returns
/// what each printed (standard output and error), with the shell's process group.
fn run_steps(steps: &[Step], dir: &Path, server: &TestServer) -> (Vec<String>, ProcessGroup) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kpistream")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut script = String::from("exec 2>&1\n");
    for step in steps {
        script.push_str(&format!("echo '{MARKER}'\n{}\n", step.command));
    }
    let out_path = dir.join("walkthrough.out");
    let out = File::create(&out_path).unwrap();
    let mut shell = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("KPISTREAM_SERVER", &server.grpc)
        // The README's runner serves its metrics on the default port; here on a free one.
        .env("KPISTREAM_RUNNER_METRICS_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .process_group(0)
        .spawn()
        .expect("bash runs");
    let group = ProcessGroup(Pid::from_raw(shell.id() as i32));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    while shell.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the section's commands did not finish within {SCRIPT_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let printed = std::fs::read_to_string(&out_path).unwrap();
    let outputs: Vec<String> = printed
        .split(&format!("{MARKER}\n"))
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(outputs.len(), steps.len(), "every step ran:\n{printed}");
    (outputs, group)
}

/// Fails on the first line where the commands' output and the README differ.
fn assert_same_output(got: &str, readme: &str) {
    let differs = got
        .lines()
        .zip(readme.lines())
        .position(|(g, r)| g != r)
        .or((got.lines().count() != readme.lines().count())
            .then(|| got.lines().count().min(readme.lines().count())));
    if let Some(n) = differs {
        panic!(
            "line {} differs from the README:\n  README: {}\n  actual: {}\n\nwhole output:\n{got}",
            n + 1,
            readme.lines().nth(n).unwrap_or("(nothing)"),
            got.lines().nth(n).unwrap_or("(nothing)"),
        );
    }
}

/// `false` (and why, printed) when python3 is missing outside CI; under `CI=true` a
/// missing python3 fails the test.
fn python3_available() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is needed to serve and build the connector samples"
        );
        eprintln!("skipped: python3 is not installed; the README's connector samples need it");
    }
    found
}

/// The stream id of the credential the README wrote to `file`.
fn stream_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("stream create wrote the credential");
    let credential: Credential = text.trim().parse().expect("a credential");
    credential.stream_id().to_string()
}

/// (month, MRR) of the sample API's records in euros of closed months, every page
/// followed by its `links.next` as the connector does, and how many records there are
/// in all.
fn sample_mrr(api: &Path) -> (Vec<(String, String)>, usize) {
    let mut next = Some("/v1/mrr.json".to_owned());
    let (mut kept, mut all) = (Vec::new(), 0);
    while let Some(page) = next {
        let text = std::fs::read_to_string(api.join(page.trim_start_matches('/'))).unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        for record in body["data"].as_array().unwrap() {
            all += 1;
            if record["currency"] == "EUR" && record["status"] == "closed" {
                kept.push((
                    record["month"].as_str().unwrap().to_owned(),
                    record["mrr"].as_str().unwrap().to_owned(),
                ));
            }
        }
        next = body["links"]["next"].as_str().map(str::to_owned);
    }
    kept.sort();
    (kept, all)
}

/// (day, sign-ups) counted from the customer rows of the database the README built,
/// internal accounts left out, and how many internal accounts there are.
async fn sample_signups(db: &Path) -> (Vec<(String, String)>, usize) {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("the README built the sample database");
    let rows: Vec<(String, bool)> = sqlx::query_as("SELECT created_at, is_internal FROM customers")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut per_day: BTreeMap<String, u32> = BTreeMap::new();
    let mut internal = 0;
    for (created_at, is_internal) in rows {
        if is_internal {
            internal += 1;
        } else {
            *per_day.entry(created_at[..10].to_owned()).or_default() += 1;
        }
    }
    let counts = per_day
        .into_iter()
        .map(|(day, n)| (day, n.to_string()))
        .collect();
    (counts, internal)
}

/// The first run of `connector` by a runner rather than by `connector run` (whose
/// runner ids start with `cli-`); panics with the run log after `timeout`.
async fn runner_run(client: &Client, connector: &str, timeout: Duration) -> proto::Run {
    let deadline = Instant::now() + timeout;
    loop {
        let all = runs(client, connector).await;
        if let Some(run) = all.iter().find(|r| !r.runner_id.starts_with("cli-")) {
            return run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no runner ran {connector} within {timeout:?}: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_connector_section_pulls_the_samples_and_keeps_running() {
    if !python3_available() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let steps = section_steps(&readme);
    assert!(steps.len() >= 12, "the section has its commands");
    assert!(
        TcpListener::bind(SAMPLE_API).is_ok(),
        "{SAMPLE_API}, where connectors/connections.toml expects the sample API, is taken \
         by another program"
    );

    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    copy_dir(&repo.join("connectors"), &work.path().join("connectors"));
    // The admin's token where the server's first start writes it and the README's
    // commands read it; the runner uses the runner token the section creates.
    std::fs::create_dir(work.path().join("data")).unwrap();
    let token_file = work.path().join("data/admin.token");
    std::fs::write(&token_file, &server.token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir: PathBuf = work.path().to_owned();
    let (outputs, group) = tokio::task::block_in_place(|| run_steps(&steps, &dir, &server));

    let (got, expected) = transcripts(&steps, &outputs);
    assert_same_output(&got, &expected);

    // What the streams hold is what the sample sources say.
    let client = server.client().await;
    let mrr = stream_of(&dir.join("mrr.kpik"));
    let signups = stream_of(&dir.join("signups.kpik"));
    let (mrr_expected, mrr_records) = sample_mrr(&dir.join("connectors/samples/api"));
    assert!(
        !mrr_expected.is_empty() && mrr_expected.len() < mrr_records,
        "the sample API has records the filter keeps and records it drops"
    );
    assert_eq!(common::values(&client, &mrr).await, mrr_expected);
    let (signups_expected, internal) =
        sample_signups(&dir.join("connectors/samples/shop.db")).await;
    assert!(
        signups_expected.len() > 1 && internal > 0,
        "the sample database has several days and internal accounts to leave out"
    );
    assert_eq!(common::values(&client, &signups).await, signups_expected);

    // The runner the section leaves running runs shop-signups by itself
    // (`run_on_start`), and that run, which counts the last day again, changes nothing.
    let own = runner_run(&client, "shop-signups", Duration::from_secs(60)).await;
    assert_eq!(own.error, "", "the runner's run succeeded: {own:?}");
    assert_eq!(common::values(&client, &signups).await, signups_expected);
    let revised: Vec<_> = common::all_points(&client, &signups)
        .await
        .into_iter()
        .filter(|p| p.revision_count > 0)
        .collect();
    assert!(
        revised.is_empty(),
        "recounting unchanged days made revisions: {revised:?}"
    );
    drop(group);
}
