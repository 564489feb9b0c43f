//! The command line as scripts use it: the output contract (`-o table|json|jsonl|csv`,
//! `KPISTREAM_OUTPUT`, `-q`), reading past the server's page size, exit codes, and a
//! reader that goes away (`| head`). The real binary against a real server.

mod common;

use std::io::Read;
use std::process::{Output, Stdio};

use common::{TestServer, cli, day, point, publish_envelope, sealed};
use kpistream::proto;
use serde_json::Value;
use tempfile::TempDir;

/// A folder to run the CLI in, next to a running server.
struct Shell {
    server: TestServer,
    work: TempDir,
}

impl Shell {
    fn start() -> Self {
        Self {
            server: TestServer::start(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = cli(self.work.path());
        command
            .args(args)
            .env("KPISTREAM_SERVER", &self.server.grpc)
            .env("KPISTREAM_TOKEN_FILE", self.server.token_path());
        command
    }

    /// Runs `kpistream ARGS` as the first start's admin.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Standard output of a run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kpistream {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A daily stream with `n` points (day 0 … n-1, value = the day's number).
    async fn stream_with(&self, name: &str, n: i64) -> String {
        let (id, credential) = self.server.daily_stream(name).await;
        let client = self.server.anonymous_client().await;
        let days: Vec<i64> = (0..n).collect();
        for chunk in days.chunks(5_000) {
            let points = chunk
                .iter()
                .map(|&i| point(&day(i), &i.to_string()))
                .collect();
            publish_envelope(&client, sealed(&credential, points), false)
                .await
                .expect("the batch is accepted");
        }
        id
    }
}

/// A server address where nothing listens (a port just freed).
fn nowhere() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", closed.local_addr().unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("one JSON document ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn query_reads_every_point_past_the_servers_page_and_limit_caps_it() {
    let sh = Shell::start();
    let stream = sh.stream_with("Orders", 25_000).await;

    let all = sh.ok(&["query", &stream, "-o", "jsonl"]);
    let points: Vec<Value> = all.lines().map(json).collect();
    assert_eq!(points.len(), 25_000, "every point, not the first 10,000");
    for (i, p) in points.iter().enumerate() {
        assert_eq!(p["period"], day(i as i64), "in period order, none twice");
    }
    assert_eq!(points[24_999]["value"], "24999");

    let capped = sh.ok(&["query", &stream, "--limit", "12000", "-q"]);
    let periods: Vec<&str> = capped.lines().collect();
    assert_eq!(periods.len(), 12_000);
    assert_eq!(periods[11_999], day(11_999));

    let range = sh.ok(&[
        "query",
        &stream,
        "--from",
        &day(9_998),
        "--to",
        &day(10_001),
        "-q",
    ]);
    assert_eq!(
        range.lines().collect::<Vec<_>>(),
        [day(9_998), day(9_999), day(10_000), day(10_001)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_is_one_contract_with_typed_values() {
    let sh = Shell::start();
    let stream = sh.stream_with("Signups", 3).await;

    // One JSON document: the stream as an object, its keys inside, absent values null.
    let shown = json(&sh.ok(&["stream", "show", &stream, "--output", "json"]));
    assert_eq!(shown["id"], stream.as_str());
    assert_eq!(shown["points"], 3, "a count is a number");
    assert_eq!(shown["latest_period"], day(2));
    assert_eq!(shown["category"], Value::Null, "absent is null, not \"-\"");
    let keys = shown["keys"].as_array().expect("the keys as an array");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["revoked"], Value::Null);

    // CSV of one record is one header and one row.
    let csv = sh.ok(&["stream", "show", &stream, "-o", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("id,name,description,category,"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with(&format!("{stream},Signups,,,")),
        "{csv}"
    );

    // Points: values are decimal strings, counts numbers, the same through the
    // environment variable.
    let listed = sh
        .command(&["query", &stream])
        .env("KPISTREAM_OUTPUT", "json")
        .output()
        .unwrap();
    let listed = json(&String::from_utf8(listed.stdout).unwrap());
    assert_eq!(listed[1]["value"], "1");
    assert_eq!(listed[1]["revisions"], 0);
    assert_eq!(listed[1]["external_id"], Value::Null);

    // --quiet prints the references alone, for the next command.
    let ids = sh.ok(&["stream", "list", "-q"]);
    assert_eq!(ids.trim(), stream);
    assert_eq!(sh.ok(&["stream", "show", &stream, "-q"]).trim(), stream);

    // A table says what is absent.
    let table = sh.ok(&["stream", "list"]);
    let header = table.lines().next().unwrap();
    assert!(header.contains("LATEST PERIOD"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_tell_a_retry_from_a_mistake() {
    let sh = Shell::start();
    let stream = sh.stream_with("Visits", 1).await;
    let code = |output: Output| output.status.code().expect("an exit code");

    // Usage (clap's and ours).
    assert_eq!(code(sh.run(&["query"])), 2);
    assert_eq!(code(sh.run(&["query", &stream, "--output", "yaml"])), 2);
    // Not found.
    assert_eq!(code(sh.run(&["stream", "show", "str_0000000000000000"])), 4);
    // Authentication.
    let denied = sh
        .command(&["stream", "list"])
        .env("KPISTREAM_TOKEN", "kpit_not-a-token")
        .output()
        .unwrap();
    assert_eq!(code(denied), 3);
    // Unavailable: nothing listens there.
    let address = nowhere();
    let unavailable = sh
        .command(&["stream", "list"])
        .env("KPISTREAM_SERVER", &address)
        .output()
        .unwrap();
    assert_eq!(code(unavailable), 5);
    // Rejected points: the server answered, some points were refused.
    let credential = sh.work.path().join("visits.kpik");
    sh.ok(&[
        "key",
        "rotate",
        &stream,
        "--credential-out",
        credential.to_str().unwrap(),
    ]);
    let rejected = sh.run(&[
        "publish",
        "--credential",
        credential.to_str().unwrap(),
        "--period",
        "2026-02-30",
        "--value",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&rejected.stderr).into_owned();
    assert_eq!(code(rejected), 6, "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_stops_early_ends_the_command_quietly() {
    let sh = Shell::start();
    let stream = sh.stream_with("Sessions", 20_000).await;
    for format in ["table", "json", "jsonl", "csv"] {
        let mut child = sh
            .command(&["query", &stream, "-o", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -c 100`: read a little, then close the pipe.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        stdout.read_exact(&mut first).unwrap();
        drop(stdout);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.is_empty(), "{format}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{format}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_named_by_its_name_and_mistakes_read_as_sentences() {
    let sh = Shell::start();
    let stream = sh.stream_with("Daily sign-ups", 2).await;

    // By exact name, in every verb that takes a stream.
    let by_name = sh.ok(&["query", "Daily sign-ups", "-q"]);
    assert_eq!(by_name.lines().collect::<Vec<_>>(), [day(0), day(1)]);
    let shown = json(&sh.ok(&["stream", "show", "Daily sign-ups", "-o", "json"]));
    assert_eq!(shown["id"], stream.as_str());
    let keys = sh.ok(&["key", "list", "Daily sign-ups", "-q"]);
    assert_eq!(keys.lines().count(), 1);
    // Two streams of one name: the error lists both ids.
    let (other, _) = sh.server.daily_stream("Daily sign-ups").await;
    let ambiguous = sh.run(&["query", "Daily sign-ups"]);
    let said = String::from_utf8_lossy(&ambiguous.stderr).into_owned();
    assert_eq!(ambiguous.status.code(), Some(2), "{said}");
    assert!(
        said.contains("2 streams are named \"Daily sign-ups\"")
            && said.contains(&stream)
            && said.contains(&other),
        "{said}"
    );

    // Who am I names the organisation.
    let me = sh.ok(&["user", "whoami"]);
    assert!(me.contains("of organisation \""), "{me}");
    assert!(!me.contains("of organisation org_"), "{me}");

    let credential = sh.work.path().join("signups.kpik");
    sh.ok(&[
        "key",
        "rotate",
        &stream,
        "--credential-out",
        credential.to_str().unwrap(),
    ]);
    let credential = credential.to_str().unwrap();
    let said = |args: &[&str]| -> (Option<i32>, String) {
        let output = sh.run(args);
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        (output.status.code(), text)
    };
    // (flag, value, exit code, what the message says)
    let mistakes = [
        (
            "--at",
            "2026-11-02",
            2,
            "is a date, not an instant: for that day's period write --period 2026-11-02",
        ),
        (
            "--at",
            "yesterday",
            2,
            "\"yesterday\" is not an instant: write it in RFC 3339",
        ),
        (
            "--period",
            "2026-13",
            6,
            "\"2026-13\" is not a date in the calendar (months are 01 to 12)",
        ),
    ];
    for (flag, value, expected, sentence) in mistakes {
        let args = [
            "publish",
            "--credential",
            credential,
            flag,
            value,
            "--value",
            "1",
        ];
        let (code, text) = said(&args);
        assert_eq!(code, Some(expected), "{flag} {value}: {text}");
        assert!(text.contains(sentence), "{flag} {value}: {text}");
        assert!(!text.contains("parameter"), "no library wording: {text}");
    }

    // The HTTP port instead of the gRPC one.
    let http = format!("http://{}", sh.server.http);
    let (code, text) = said(&["stream", "list", "--server", &http]);
    assert_eq!(code, Some(2));
    assert!(
        text.contains("answered plain HTTP (status 404), not gRPC"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_keeps_a_profile_that_works_from_any_folder() {
    use std::os::unix::fs::PermissionsExt;
    let sh = Shell::start();
    let stream = sh.stream_with("Revenue", 1).await;
    let config = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let bare = |dir: &std::path::Path, args: &[&str]| {
        cli(dir)
            .args(args)
            .env("XDG_CONFIG_HOME", config.path())
            .output()
            .unwrap()
    };

    // Nothing to go on yet: the error says what to do.
    let before = bare(elsewhere.path(), &["stream", "list"]);
    let said = String::from_utf8_lossy(&before.stderr).into_owned();
    assert!(!before.status.success());
    assert!(said.contains("run kpistream login once"), "{said}");

    let token_file = sh.server.token_path();
    let login = bare(
        sh.work.path(),
        &[
            "login",
            "--server",
            &sh.server.grpc,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&login.stdout).into_owned()
        + &String::from_utf8_lossy(&login.stderr);
    assert!(login.status.success(), "{said}");
    assert!(said.contains("profile \"default\""), "{said}");
    let file = config.path().join("kpistream/profiles.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the profiles file holds tokens");

    // From another folder, with no flags: the profile's server and token.
    let listed = bare(elsewhere.path(), &["stream", "list", "-q"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), stream);
    // A flag still wins over the profile, and the profile's token never goes to
    // another server than the profile's.
    let nowhere = nowhere();
    let other = bare(elsewhere.path(), &["stream", "list", "--server", &nowhere]);
    let said = String::from_utf8_lossy(&other.stderr).into_owned();
    assert!(said.contains("no token"), "{said}");
    let overridden = bare(
        elsewhere.path(),
        &["stream", "list", "--server", &nowhere, "--token", "kpit_x"],
    );
    assert_eq!(overridden.status.code(), Some(5));
    // A profile asked for by name must exist; login is how it comes to be.
    let missing = bare(
        elsewhere.path(),
        &["stream", "list", "--profile", "staging"],
    );
    assert_eq!(missing.status.code(), Some(2));
    let login_as = |profile: &str| {
        bare(
            sh.work.path(),
            &[
                "login",
                "--profile",
                profile,
                "--server",
                &sh.server.grpc,
                "--token-file",
                token_file.to_str().unwrap(),
            ],
        )
    };
    let staging = login_as("staging");
    assert!(
        staging.status.success(),
        "{}",
        String::from_utf8_lossy(&staging.stderr)
    );
    let listed = bare(
        elsewhere.path(),
        &["stream", "list", "-q", "--profile", "staging"],
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), stream);
    // A broken profiles file does not stop a command that names everything itself,
    // and is never quoted (it holds tokens).
    std::fs::write(&file, "this is [not toml").unwrap();
    let flags = cli(elsewhere.path())
        .args([
            "stream",
            "list",
            "-q",
            "--server",
            &sh.server.grpc,
            "--token-file",
        ])
        .arg(&token_file)
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&flags.stderr).into_owned();
    assert!(flags.status.success(), "{said}");
    assert!(
        said.contains("warning: no profile used") && !said.contains("not toml"),
        "{said}"
    );
    std::fs::remove_file(&file).unwrap();
    assert!(login_as("default").status.success());
    // Forgotten, it no longer applies.
    assert!(bare(elsewhere.path(), &["logout"]).status.success());
    assert!(!bare(elsewhere.path(), &["stream", "list"]).status.success());
}

#[test]
fn completion_scripts_are_valid_for_their_shell() {
    let dir = tempfile::tempdir().unwrap();
    let output = cli(dir.path())
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let script = dir.path().join("kpistream.bash");
    std::fs::write(&script, &output.stdout).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("kpistream") && text.contains("stream"),
        "{text}"
    );
    for shell in ["zsh", "fish"] {
        let output = cli(dir.path())
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(
            output.status.success() && !output.stdout.is_empty(),
            "{shell}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_backfill_names_every_bad_row_by_line_and_can_skip_them() {
    let sh = Shell::start();
    let (stream, credential) = sh.server.daily_stream("Backfill").await;
    let credential_file = sh.work.path().join("backfill.kpik");
    std::fs::write(&credential_file, credential.expose_secret()).unwrap();
    let credential_file = credential_file.to_str().unwrap().to_owned();
    let publish = |file: &str, extra: &[&str]| {
        let mut args = vec!["publish", "--credential", &credential_file, "--file", file];
        args.extend_from_slice(extra);
        let output = sh.run(&args);
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        (output.status.code(), text)
    };
    let stored = || async {
        common::all_points(&sh.server.client().await, &stream)
            .await
            .len()
    };

    // Line 1 is the header; lines 3, 5 and 6 are malformed.
    let mut text = String::from("period,value,external_id\n");
    text += &format!("{},1\n", day(0));
    text += "just-one-field\n";
    text += &format!("{},2\n", day(1));
    text += &format!("{},3,x,extra\n", day(2));
    text += "\"unclosed,4\n";
    std::fs::write(sh.work.path().join("three-bad.csv"), &text).unwrap();
    let (code, said) = publish("three-bad.csv", &[]);
    assert_eq!(code, Some(2), "{said}");
    for line in [3, 5, 6] {
        assert!(
            said.contains(&format!("three-bad.csv line {line}: ")),
            "line {line}: {said}"
        );
    }
    assert!(
        said.contains("3 malformed row(s)") && said.contains("nothing was published"),
        "{said}"
    );
    assert_eq!(stored().await, 0);

    let (code, said) = publish("three-bad.csv", &["--skip-bad-rows"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("published 2 point(s)"), "{said}");
    assert_eq!(stored().await, 2);

    // A period twice: both places are file lines, not a batch's point numbers.
    let dup = format!("{},5\n{},6\n{},7\n", day(10), day(11), day(10));
    std::fs::write(sh.work.path().join("dup.csv"), dup).unwrap();
    let (code, said) = publish("dup.csv", &[]);
    assert_eq!(code, Some(6), "{said}");
    assert!(
        said.contains(&format!(
            "dup.csv line 3: period {} already has a value in this batch (line 1)",
            day(10)
        )),
        "{said}"
    );

    // A pipe cannot be read twice.
    let (code, said) = publish("/dev/stdin", &[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("is not a regular file"), "{said}");

    // Past 20 problems, the rest are counted.
    let many: String = (0..25).map(|i| format!("bad-{i}\n")).collect();
    std::fs::write(sh.work.path().join("many.csv"), many).unwrap();
    let (code, said) = publish("many.csv", &[]);
    assert_eq!(code, Some(2));
    assert_eq!(said.matches("many.csv line ").count(), 20, "{said}");
    assert!(said.contains("5 more malformed row(s)"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_copies_the_live_database_once_and_never_over_a_file() {
    use sqlx::{ConnectOptions, Row};
    use std::os::unix::fs::PermissionsExt;
    if common::on_postgres() {
        eprintln!("skipped: kpistream backup copies SQLite databases (this run is on PostgreSQL)");
        return;
    }
    let sh = Shell::start();
    sh.stream_with("Backed up", 3).await;
    let db = format!("sqlite://{}", sh.server.db_path().display());
    let to = sh.work.path().join("backup.db");
    let said = sh.ok(&["backup", "--db", &db, "--to", to.to_str().unwrap()]);
    assert!(said.contains("mode 0600"), "{said}");
    let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut copy = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&to)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let points: i64 = sqlx::query("SELECT count(*) FROM points")
        .fetch_one(&mut copy)
        .await
        .unwrap()
        .get(0);
    assert_eq!(points, 3);
    // Never over an existing file; PostgreSQL is pg_dump's.
    let again = sh.run(&["backup", "--db", &db, "--to", to.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    let pg = sh.run(&["backup", "--db", "postgres://u@h/d", "--to", "x.db"]);
    assert_eq!(pg.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_read_every_page_and_limit_caps_them() {
    let sh = Shell::start();
    let client = sh.server.client().await;
    // More users than one page of the server's listings holds (1,000).
    let names: Vec<String> = (0..1_010).map(|i| format!("user-{i:04}")).collect();
    for chunk in names.chunks(50) {
        let created = chunk.iter().map(|name| {
            let client = client.clone();
            async move {
                client
                    .create_user(name, kpistream::client::Role::Member)
                    .await
            }
        });
        for result in futures::future::join_all(created).await {
            result.expect("the user is created");
        }
    }

    client
        .create_user("zz-last", kpistream::client::Role::Member)
        .await
        .unwrap();
    let listed = sh.ok(&["user", "list", "-q"]);
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.extend(["admin", "zz-last"]);
    expected.sort();
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        expected,
        "every user once, by name, past the first page"
    );
    let capped = sh.ok(&["user", "list", "--limit", "5", "-q"]);
    assert_eq!(capped.lines().collect::<Vec<_>>(), expected[..5]);

    // The audit log: every entry, oldest first; a limit keeps the newest.
    let entries: Vec<Value> = sh
        .ok(&["audit", "list", "-o", "jsonl"])
        .lines()
        .map(json)
        .collect();
    let created: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "user.created")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    let mut once = created.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        (created.len(), once.len()),
        (1_011, 1_011),
        "every entry once"
    );
    // Entries are in the order the log recorded them (concurrent calls may record
    // their times out of that order): the user created last is last.
    assert_eq!(
        entries.last().map(|e| &e["target"]),
        Some(&Value::from("zz-last")),
        "the newest last"
    );
    let newest: Vec<Value> = sh
        .ok(&["audit", "list", "--limit", "3", "-o", "jsonl"])
        .lines()
        .map(json)
        .collect();
    assert_eq!(
        newest[..],
        entries[entries.len() - 3..],
        "the newest three, oldest first"
    );

    // The server's own pages, small: every entry once, newest page first.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .admin()
            .list_audit(proto::ListAuditRequest {
                limit: 100,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 100);
        paged.splice(0..0, page.entries.into_iter().map(|e| e.detail));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let all_details: Vec<&str> = entries
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        paged, all_details,
        "the pages put together are the whole log"
    );

    for name in ["b", "a", "c", "a"] {
        sh.server.daily_stream(name).await;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .admin()
            .list_streams(proto::ListStreamsRequest {
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(page.streams.into_iter().map(|s| s.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        names,
        ["a", "a", "b", "c"],
        "two streams of one name on two pages, both listed"
    );

    let foreign = client
        .admin()
        .list_streams(proto::ListStreamsRequest {
            page_token: "bm90IG91cnM".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::InvalidArgument);
    assert!(
        foreign.message().contains("next_page_token"),
        "{}",
        foreign.message()
    );
}
