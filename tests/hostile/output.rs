//! Text a publisher or another user chose cannot drive the terminal of a person reading CLI tables.
//!
//! A publisher controls `external_id` and `batch_id`; a stream manager controls names
//! and descriptions. Printed in a table, their escape sequences and bidirectional
//! overrides are shown escaped (`\u{1b}`), the columns stay aligned, and JSON and CSV
//! output still carry the exact text.

use std::process::Output;

use kpistream::client::point_for_period as point_for;
use kpistream::proto;

use crate::common::{TestServer, batch, cli, publish_envelope, stream_request};

/// Clears the screen, sets the window title, rings the bell, then reverses the rest.
const EXTERNAL_ID: &str = "ext\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}gpj.exe";
/// Colours the terminal red, then a C1 CSI.
const BATCH_ID: &str = "batch\u{1b}[31mred\u{1b}[0m\u{9b}2J";
/// Clears the screen, homes the cursor, fakes a line, isolates the rest.
const DESCRIPTION: &str = "KPI\u{1b}[2J\u{1b}[H\nfake line\u{202e}\u{2066}";
/// Names may not hold control characters, but may hold a right-to-left override.
const NAME: &str = "Revenue \u{202e}txt.exe";

/// True for the characters that must never reach a terminal from a table.
fn raw_control(c: char) -> bool {
    c.is_control() && c != '\n' || matches!(c, '\u{202e}' | '\u{2066}')
}

/// Runs the CLI as the server's admin and returns its standard output.
fn run(server: &TestServer, args: &[&str]) -> String {
    let output: Output = cli(server.dir())
        .args(args)
        .env("KPISTREAM_SERVER", &server.grpc)
        .env("KPISTREAM_TOKEN", &server.token)
        .output()
        .expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    assert!(!stderr.chars().any(raw_control), "{args:?}: {stderr:?}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Asserts that table output holds no raw control or bidi character.
fn assert_printable(what: &str, stdout: &str) {
    assert!(!stdout.chars().any(raw_control), "{what}: {stdout:?}");
}

/// A daily stream named [`NAME`] described by [`DESCRIPTION`], whose period 2026-11-23
/// was published with [`EXTERNAL_ID`] and revised by the batch [`BATCH_ID`].
async fn hostile_stream(server: &TestServer) -> String {
    let mut request = stream_request(NAME, proto::Frequency::Daily, "UTC");
    request.description = DESCRIPTION.into();
    let (stream, credential) = server.create_stream(request).await;
    let client = server.anonymous_client().await;
    let first = batch(
        "first",
        jiff::Timestamp::now(),
        vec![point_for("2026-11-23", "1", EXTERNAL_ID)],
    );
    let revision = batch(
        BATCH_ID,
        jiff::Timestamp::now(),
        vec![point_for("2026-11-23", "2", EXTERNAL_ID)],
    );
    for b in [first, revision] {
        let answer = publish_envelope(&client, credential.seal(&b), false)
            .await
            .expect("the batch is committed");
        assert_eq!(answer.accepted, 1, "{answer:?}");
    }
    stream.id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_table_shows_a_hostile_external_id_escaped_and_aligned() {
    let server = TestServer::start();
    let stream = hostile_stream(&server).await;
    let table = run(&server, &["query", &stream]);
    assert_printable("query", &table);
    assert!(
        table.contains("ext\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}gpj.exe"),
        "{table}"
    );
    let lines: Vec<&str> = table.lines().collect();
    let column = lines[0].find("UPDATED AT").expect("the header");
    // The UPDATED AT cell (a year) starts under its header: nothing shifted it.
    let cell: String = lines[1].chars().skip(column).take(2).collect();
    assert_eq!(cell, "20", "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_table_shows_a_hostile_batch_id_escaped() {
    let server = TestServer::start();
    let stream = hostile_stream(&server).await;
    let table = run(&server, &["query", &stream, "--revisions", "2026-11-23"]);
    assert_printable("revisions", &table);
    assert!(
        table.contains("batch\\u{1b}[31mred\\u{1b}[0m\\u{9b}2J"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_show_and_stream_list_show_a_hostile_description_and_name_escaped() {
    let server = TestServer::start();
    let stream = hostile_stream(&server).await;
    let shown = run(&server, &["stream", "show", &stream]);
    assert_printable("stream show", &shown);
    assert!(
        shown.contains("description:   KPI\\u{1b}[2J\\u{1b}[H\\u{a}fake line\\u{202e}\\u{2066}\n"),
        "{shown}"
    );
    assert!(
        shown.contains("name:          Revenue \\u{202e}txt.exe\n"),
        "{shown}"
    );
    let listed = run(&server, &["stream", "list"]);
    assert_printable("stream list", &listed);
    assert!(listed.contains("Revenue \\u{202e}txt.exe"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_and_csv_output_carry_the_exact_text() {
    let server = TestServer::start();
    let stream = hostile_stream(&server).await;

    let json = run(&server, &["query", &stream, "--output", "json"]);
    let points: serde_json::Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(points[0]["external_id"], EXTERNAL_ID, "{json}");
    let json = run(&server, &["stream", "show", &stream, "--output", "json"]);
    assert!(json.contains("\\u001b[2J"), "serde escapes ESC: {json}");

    let csv = run(
        &server,
        &[
            "query",
            &stream,
            "--revisions",
            "2026-11-23",
            "--output",
            "csv",
        ],
    );
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let row = reader.records().next().expect("a revision").expect("CSV");
    assert_eq!(&row[4], BATCH_ID, "{csv:?}");
}
