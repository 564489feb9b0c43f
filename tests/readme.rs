//! The README's walk-through, run as written against a real server: every command's
//! output must match the README's text, ids, times and batch ids aside.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use regex::Regex;

const MARKER: &str = "@@kpistream-readme-step@@";

struct Step {
    command: String,
    expected: String,
}

fn walkthrough_steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("<!-- walkthrough:start -->") {
        let end = rest[start..]
            .find("<!-- walkthrough:end -->")
            .expect("end marker")
            + start;
        collect_steps(&rest[start..end], &mut steps);
        rest = &rest[end..];
    }
    steps
}

/// The `$ command` lines of the console blocks of one marked section, with the output
/// lines that follow each.
fn collect_steps(section: &str, steps: &mut Vec<Step>) {
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_owned(),
                expected: String::new(),
            }),
            None => {
                let step = steps.last_mut().expect("output follows a command");
                step.expected.push_str(line);
                step.expected.push('\n');
            }
        }
    }
}

/// Replaces what differs from run to run by stable placeholders, numbered in order of
/// first appearance so that "the same key twice" still has to hold.
fn normalize(text: &str) -> String {
    let mut names: HashMap<String, String> = HashMap::new();
    let ids = Regex::new(r"\b(str|key|tok)_[A-Za-z0-9]{10,32}\b").unwrap();
    let text = ids.replace_all(text, |c: &regex::Captures| {
        let n = names.len() + 1;
        names
            .entry(c[0].to_owned())
            .or_insert_with(|| format!("{}_{n:0>width$}", &c[1], width = c[0].len() - 4))
            .clone()
    });
    let time = Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z").unwrap();
    let uuid = Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let stale = Regex::new(r"(?m)^status:( +)stale$").unwrap();
    let text = time.replace_all(&text, "YYYY-MM-DDTHH:MM:SSZ");
    let text = uuid.replace_all(&text, "<uuid>");
    stale.replace_all(&text, "status:${1}active").into_owned()
}

fn start_server(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kpistream"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
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
    let (mut server, endpoint) = start_server(dir.path());
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

    let expected: String = steps
        .iter()
        .map(|s| format!("$ {}\n{}", s.command, s.expected))
        .collect();
    let got: String = steps
        .iter()
        .zip(&actual)
        .map(|(s, out)| format!("$ {}\n{}", s.command, out))
        .collect();
    assert_eq!(normalize(&got), normalize(&expected));
}
