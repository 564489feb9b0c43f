//! The README's walk-through, run as written against a real server: every command's
//! output must match the README's text, ids, times and batch ids aside.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;

use common::readme::{Step, steps_between, transcripts};

const MARKER: &str = "@@kpistream-readme-step@@";

fn walkthrough_steps(readme: &str) -> Vec<Step> {
    steps_between(
        readme,
        "<!-- walkthrough:start -->",
        "<!-- walkthrough:end -->",
    )
}

/// Starts `kpistream serve` in `dir` as the README does; with the suites on PostgreSQL
/// (`KPISTREAM_TEST_DB=postgres`), on a schema of its own.
fn start_server(dir: &Path, db: Option<&str>) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpistream"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    if let Some(db) = db {
        command.args(["--db", db]);
    }
    let mut child = command
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kpistream serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("gRPC listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server printed its gRPC address");
    (child, format!("http://{addr}"))
}

#[test]
fn the_readme_walkthrough_gives_the_output_it_shows() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let steps = walkthrough_steps(&readme);
    assert!(steps.len() >= 10, "the walk-through has its commands");

    let dir = tempfile::tempdir().unwrap();
    let schema = common::on_postgres().then(common::PgSchema::create);
    let (mut server, endpoint) = start_server(dir.path(), schema.as_ref().map(|s| s.url.as_str()));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kpistream")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut script = String::from("exec 2>&1\n");
    for step in &steps {
        script.push_str(&format!("echo '{MARKER}'\n{}\n", step.command));
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("KPISTREAM_SERVER", &endpoint)
        .env_remove("KPISTREAM_TOKEN")
        .output()
        .expect("run bash");
    let _ = server.kill();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let actual: Vec<&str> = stdout.split(&format!("{MARKER}\n")).skip(1).collect();
    assert_eq!(actual.len(), steps.len(), "every step ran:\n{stdout}");

    let (got, expected) = transcripts(&steps, &actual);
    assert_eq!(got, expected);
}
