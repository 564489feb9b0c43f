//! The `command` source: runs a program without a shell, waits for it to exit, and
//! reads its standard output as JSON lines or CSV. The whole output is read and checked
//! before the first page is handed out, so a program that fails half way publishes
//! nothing.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Map, Value as Json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::FetchError;
use super::source::{Pages, StoredRecord};
use super::template::{TemplateContext, render};
use crate::connector::{CommandSource, OutputFormat};

/// Largest standard output read from a program.
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// Lines of standard error quoted when a program fails.
const STDERR_LINES: usize = 5;
/// Bytes of standard error kept (its end) while the program runs.
const STDERR_KEPT: usize = 16 << 10;

/// Runs the command with its templates filled in, and reads its output. Every failure
/// is permanent: running the same program again would fail the same way.
///
/// `hidden_env` names variables of the runner's environment the program must not see
/// (the stream credential's), unless the source passes them on explicitly in `env`.
pub async fn open(
    source: &CommandSource,
    ctx: &TemplateContext,
    hidden_env: &[&str],
) -> Result<Pages, FetchError> {
    run(source, ctx, MAX_OUTPUT_BYTES, hidden_env).await
}

async fn run(
    source: &CommandSource,
    ctx: &TemplateContext,
    max_output: usize,
    hidden_env: &[&str],
) -> Result<Pages, FetchError> {
    // Messages name the program as written in the file, never a rendered argument.
    let name = source.argv.first().map(String::as_str).unwrap_or_default();
    let argv = source
        .argv
        .iter()
        .map(|arg| render(arg, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let env = source
        .env
        .iter()
        .map(|(key, value)| Ok((key.clone(), render(value, ctx)?)))
        .collect::<Result<Vec<_>, FetchError>>()?;
    let secrets = secret_values(source, &argv, &env);

    let mut child = spawn(name, &argv, &env, source.working_dir.as_deref(), hidden_env)?;
    let limit = source.timeout.0;
    let output = tokio::time::timeout(limit, collect(&mut child, max_output)).await;
    let (stdout, stderr, status) = match output {
        Ok(Ok(output)) => output,
        Ok(Err(failure)) => {
            stop(&mut child).await;
            return Err(FetchError::permanent(failure.message(name, max_output)));
        }
        Err(_) => {
            stop(&mut child).await;
            return Err(FetchError::permanent(format!(
                "command {name:?} did not finish within {} and was stopped",
                seconds(limit)
            )));
        }
    };
    if !status.success() {
        return Err(FetchError::permanent(failed(
            name, status, &stderr, &secrets,
        )));
    }
    let records = match source.format {
        OutputFormat::Jsonl => parse_jsonl(&stdout, name)?,
        OutputFormat::Csv => parse_csv(&stdout, name)?,
    };
    tracing::debug!(program = name, records = records.len(), "command finished");
    Ok(Pages::new(records))
}

fn spawn(
    name: &str,
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&Path>,
    hidden_env: &[&str],
) -> Result<Child, FetchError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| FetchError::permanent("the command source names no program"))?;
    let mut command = Command::new(program);
    for var in hidden_env {
        command.env_remove(var);
    }
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Its own process group, so a timeout stops what it started too.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = working_dir {
        // Spawning in a missing directory fails as "not found" too; say which it is.
        if !dir.is_dir() {
            return Err(FetchError::permanent(format!(
                "the working directory {} of command {name:?} does not exist",
                dir.display()
            )));
        }
        command.current_dir(dir);
    }
    command.spawn().map_err(|e| {
        FetchError::permanent(match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "command {name:?} was not found: is it installed, and on the runner's PATH or \
                 given by its path?"
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("command {name:?} could not be run: permission denied")
            }
            _ => format!("command {name:?} could not be started: {e}"),
        })
    })
}

/// Why a program's output could not be collected.
enum Failure {
    TooLarge,
    Read(std::io::Error),
}

impl Failure {
    fn message(&self, name: &str, max_output: usize) -> String {
        match self {
            Self::TooLarge => format!(
                "command {name:?} wrote more than {} MiB on its standard output and was stopped",
                max_output >> 20
            ),
            Self::Read(e) => format!("the output of command {name:?} could not be read: {e}"),
        }
    }
}

/// Reads standard output (up to `max_output` bytes) and the end of standard error, then
/// waits for the program to exit.
async fn collect(
    child: &mut Child,
    max_output: usize,
) -> Result<(Vec<u8>, Vec<u8>, ExitStatus), Failure> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (stdout, stderr) = tokio::try_join!(read_capped(stdout, max_output), read_tail(stderr))?;
    let status = child.wait().await.map_err(Failure::Read)?;
    Ok((stdout, stderr, status))
}

async fn read_capped(pipe: impl AsyncRead + Unpin, max: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    pipe.take(max as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(Failure::Read)?;
    if out.len() > max {
        return Err(Failure::TooLarge);
    }
    Ok(out)
}

/// Reads a pipe to its end, keeping only its last bytes.
async fn read_tail(mut pipe: impl AsyncRead + Unpin) -> Result<Vec<u8>, Failure> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await.map_err(Failure::Read)?;
        if n == 0 {
            return Ok(kept);
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > STDERR_KEPT {
            kept.drain(..kept.len() - STDERR_KEPT);
        }
    }
}

/// Kills the program and reaps it, so no zombie is left behind.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        // The whole group: the program and anything it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if child.start_kill().is_ok() {
        let _ = child.wait().await;
    }
}

/// The message of a non-zero exit: the status and the last lines of standard error,
/// with every value that came from `{{env.…}}` hidden.
fn failed(name: &str, status: ExitStatus, stderr: &[u8], secrets: &[String]) -> String {
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was ended ({status})"),
    };
    let mut text = String::from_utf8_lossy(stderr).into_owned();
    for secret in secrets {
        text = text.replace(secret.as_str(), "[REDACTED]");
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
    if tail.is_empty() {
        return format!("command {name:?} {how} and wrote nothing on its standard error");
    }
    format!(
        "command {name:?} {how}; its standard error ends with:\n{}",
        tail.join("\n")
    )
}

/// The rendered arguments and environment values whose text used `{{env.NAME}}`: they
/// may hold secrets, so a program echoing them on standard error does not leak them.
fn secret_values(source: &CommandSource, argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let raw = source.argv.iter().zip(argv).chain(
        source
            .env
            .values()
            .zip(env.iter().map(|(_, rendered)| rendered)),
    );
    raw.filter(|(raw, _)| uses_env(raw))
        .map(|(_, rendered)| rendered.clone())
        .filter(|rendered| !rendered.is_empty())
        .collect()
}

fn uses_env(text: &str) -> bool {
    text.split("{{")
        .skip(1)
        .any(|after| after.trim_start().starts_with("env."))
}

fn parse_jsonl(stdout: &[u8], name: &str) -> Result<Vec<StoredRecord>, FetchError> {
    let mut records = Vec::new();
    for (index, line) in stdout.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let number = index + 1;
        let value: Json = serde_json::from_slice(line).map_err(|e| {
            FetchError::permanent(format!(
                "line {number} of the output of command {name:?} is not JSON: {e}"
            ))
        })?;
        if !value.is_object() {
            return Err(FetchError::permanent(format!(
                "line {number} of the output of command {name:?} is not a JSON object \
                 (write one object per line, like {{\"month\": \"2026-03\", \"value\": 12}})"
            )));
        }
        // serde_json read the line, so it is UTF-8.
        records.push(StoredRecord::from_checked_json(
            std::str::from_utf8(line).unwrap_or_default(),
        ));
    }
    Ok(records)
}

fn parse_csv(stdout: &[u8], name: &str) -> Result<Vec<StoredRecord>, FetchError> {
    let invalid = |e: csv::Error| {
        let at = e
            .position()
            .map(|p| format!(" at line {}", p.line()))
            .unwrap_or_default();
        FetchError::permanent(format!(
            "the CSV output of command {name:?} is not valid{at}: {}",
            csv_reason(&e)
        ))
    };
    let mut reader = csv::Reader::from_reader(stdout);
    let headers = reader.headers().map_err(invalid)?.clone();
    reader
        .records()
        .map(|row| {
            let row = row.map_err(invalid)?;
            let object: Map<String, Json> = headers
                .iter()
                .zip(row.iter())
                .map(|(h, v)| (h.to_owned(), Json::String(v.to_owned())))
                .collect();
            Ok(StoredRecord::new(&Json::Object(object)))
        })
        .collect()
}

/// A CSV error without its position (the message gives it once).
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("a row has {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "a field is not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

/// A timeout as the connector file would write it (`60s`, `1500ms`).
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Instant;

    use serde_json::json;

    use crate::connector::Duration as Timeout;
    use crate::runner::Source as _;

    fn source(argv: &[&str], format: OutputFormat) -> CommandSource {
        CommandSource {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            working_dir: None,
            env: BTreeMap::new(),
            timeout: Timeout::secs(10),
            format,
        }
    }

    fn sh(script: &str, format: OutputFormat) -> CommandSource {
        source(&["sh", "-c", script], format)
    }

    fn ctx() -> TemplateContext {
        TemplateContext {
            cursor: Some("41".into()),
            period_start: "2026-03-01T00:00:00Z".parse().unwrap(),
            period_end: "2026-04-01T00:00:00Z".parse().unwrap(),
            now: "2026-03-15T06:00:00Z".parse().unwrap(),
        }
    }

    async fn all_pages(
        source: &CommandSource,
    ) -> Result<Vec<Vec<crate::runner::Record>>, FetchError> {
        let mut pages = open(source, &ctx(), &[]).await?;
        let mut out = Vec::new();
        while let Some(page) = pages.next_page().await? {
            out.push(page);
        }
        Ok(out)
    }

    async fn error(source: &CommandSource) -> String {
        let err = all_pages(source).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
        err.to_string()
    }

    #[tokio::test]
    async fn json_lines_become_records_and_blank_lines_are_skipped() {
        let script = r#"printf '{"month":"2026-01","v":12345678901234567890.123456789}\n\n  \r\n{"month":"2026-02","v":0.1}\r\n'"#;
        let pages = all_pages(&sh(script, OutputFormat::Jsonl)).await.unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].len(), 2);
        assert_eq!(
            pages[0][0]["v"].to_string(),
            "12345678901234567890.123456789"
        );
        assert_eq!(pages[0][1], json!({"month": "2026-02", "v": 0.1}));
    }

    #[tokio::test]
    async fn records_come_in_pages_of_a_thousand() {
        let script = r#"i=0; while [ $i -lt 2500 ]; do echo "{\"i\":$i}"; i=$((i+1)); done"#;
        let pages = all_pages(&sh(script, OutputFormat::Jsonl)).await.unwrap();
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(pages[2][499], json!({"i": 2499}));
        assert!(
            all_pages(&sh("true", OutputFormat::Jsonl))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_bad_json_line_fails_the_run_naming_its_line() {
        let script = r#"printf '{"a":1}\n\n{"a":\n'"#;
        let err = error(&sh(script, OutputFormat::Jsonl)).await;
        assert!(
            err.starts_with("line 3 of the output of command \"sh\" is not JSON"),
            "{err}"
        );
        let err = error(&sh("echo '[1,2]'", OutputFormat::Jsonl)).await;
        assert!(
            err.starts_with("line 1 of the output of command \"sh\" is not a JSON object"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn csv_rows_become_objects_of_strings_keyed_by_the_header() {
        let script = r#"printf 'month,amount,note\n2026-01,12.50,"a, b"\n2026-02,7,\n'"#;
        let pages = all_pages(&sh(script, OutputFormat::Csv)).await.unwrap();
        assert_eq!(
            pages,
            [vec![
                json!({"month": "2026-01", "amount": "12.50", "note": "a, b"}),
                json!({"month": "2026-02", "amount": "7", "note": ""}),
            ]]
        );
        let err = error(&sh(r#"printf 'a,b\n1,2\n3\n'"#, OutputFormat::Csv)).await;
        assert_eq!(
            err,
            "the CSV output of command \"sh\" is not valid at line 3: a row has 1 fields where the header has 2"
        );
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_its_status_and_the_end_of_standard_error() {
        let script =
            "echo '{\"a\":1}'; for i in 1 2 3 4 5 6 7; do echo \"problem $i\" >&2; done; exit 3";
        let err = error(&sh(script, OutputFormat::Jsonl)).await;
        assert_eq!(
            err,
            "command \"sh\" exited with status 3; its standard error ends with:\n\
             problem 3\nproblem 4\nproblem 5\nproblem 6\nproblem 7"
        );
        let err = error(&sh("exit 1", OutputFormat::Jsonl)).await;
        assert_eq!(
            err,
            "command \"sh\" exited with status 1 and wrote nothing on its standard error"
        );
    }

    #[tokio::test]
    async fn values_from_the_environment_never_appear_in_an_error() {
        // PATH is set wherever tests run; it stands for a secret here.
        let secret = std::env::var("PATH").unwrap();
        let mut failing = sh(
            "echo \"token $API_TOKEN rejected\" >&2; exit 2",
            OutputFormat::Jsonl,
        );
        failing
            .env
            .insert("API_TOKEN".into(), "{{ env.PATH }}".into());
        let err = error(&failing).await;
        assert!(err.ends_with("token [REDACTED] rejected"), "{err}");
        assert!(!err.contains(&secret), "{err}");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let err = error(&source(
            &["kpistream-no-such-program", "x"],
            OutputFormat::Jsonl,
        ))
        .await;
        assert!(
            err.starts_with("command \"kpistream-no-such-program\" was not found"),
            "{err}"
        );
        let mut elsewhere = source(&["true"], OutputFormat::Jsonl);
        elsewhere.working_dir = Some("/kpistream/no/such/dir".into());
        let err = error(&elsewhere).await;
        assert_eq!(
            err,
            "the working directory /kpistream/no/such/dir of command \"true\" does not exist"
        );
    }

    #[tokio::test]
    async fn a_program_past_its_timeout_is_killed() {
        let mut slow = source(&["sleep", "10"], OutputFormat::Jsonl);
        slow.timeout = Timeout::secs(1);
        let started = Instant::now();
        let err = error(&slow).await;
        let took = started.elapsed();
        assert_eq!(
            err,
            "command \"sleep\" did not finish within 1s and was stopped"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }

    #[tokio::test]
    async fn a_timeout_stops_what_the_program_started_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let mut slow = sh(
            &format!("sleep 30 & echo $! > {}; sleep 10", pid_file.display()),
            OutputFormat::Jsonl,
        );
        slow.timeout = Timeout::secs(1);
        error(&slow).await;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "));
        assert!(!alive, "the program's own child {pid} was stopped with it");
    }

    #[tokio::test]
    async fn the_stream_credential_variable_is_hidden_from_the_program() {
        // SAFETY: a variable only this test reads; no other thread looks it up.
        unsafe { std::env::set_var("KPISTREAM_TEST_HIDDEN_CREDENTIAL", "kpik1.secret") };
        let probe = sh(
            "printf '{\"seen\":\"%s\"}\\n' \"${KPISTREAM_TEST_HIDDEN_CREDENTIAL:-hidden}\"",
            OutputFormat::Jsonl,
        );
        let mut pages = run(
            &probe,
            &ctx(),
            1 << 20,
            &["KPISTREAM_TEST_HIDDEN_CREDENTIAL"],
        )
        .await
        .unwrap();
        let page = pages.next_page().await.unwrap().unwrap();
        assert_eq!(page[0]["seen"], "hidden");
    }

    #[tokio::test]
    async fn output_beyond_the_limit_is_refused() {
        let noisy = sh(
            "while :; do echo '{\"padding\":\"xxxxxxxxxxxxxxxxxxxx\"}'; done",
            OutputFormat::Jsonl,
        );
        let err = run(&noisy, &ctx(), 1 << 20, &[]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "command \"sh\" wrote more than 1 MiB on its standard output and was stopped"
        );
    }

    #[tokio::test]
    async fn templates_are_filled_in_arguments_and_environment_in_the_working_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut templated = source(
            &[
                "sh",
                "-c",
                r#"printf '{"cursor":"%s","start":"%s","end":"%s","dir":"%s"}\n' "$1" "$START" "$2" "$(pwd)""#,
                "sh",
                "{{cursor}}",
                "until {{period.end}}",
            ],
            OutputFormat::Jsonl,
        );
        templated
            .env
            .insert("START".into(), "{{period.start}}".into());
        templated.working_dir = Some(dir.path().to_owned());
        let pages = all_pages(&templated).await.unwrap();
        let dir = dir.path().canonicalize().unwrap();
        assert_eq!(
            pages,
            [vec![json!({
                "cursor": "41",
                "start": "2026-03-01T00:00:00Z",
                "end": "until 2026-04-01T00:00:00Z",
                "dir": dir.display().to_string(),
            })]]
        );
    }
}
