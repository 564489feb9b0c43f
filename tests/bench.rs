//! `kpistream bench --embedded --json`, the real binary: it starts a server of its own,
//! sends a tiny workload, prints one JSON document whose counts add up, and leaves
//! nothing behind. No timing is asserted: the figures depend on the machine.

mod common;

use std::path::Path;

use serde_json::Value;

/// Runs `kpistream bench --embedded --json ARGS` with its temporary folders in `dir`.
fn bench_json(dir: &Path, args: &[&str]) -> Value {
    let output = common::cli(dir)
        .args(["bench", "--embedded", "--json"])
        .args(args)
        .env("TMPDIR", dir)
        .output()
        .expect("kpistream bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kpistream bench failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON document on one line: {stdout}");
    serde_json::from_str(lines[0]).expect("the output is JSON")
}

fn number(report: &Value, path: &[&str]) -> f64 {
    let field = path.iter().fold(report, |v, key| &v[*key]);
    field
        .as_f64()
        .unwrap_or_else(|| panic!("{} is not a number in {report}", path.join(".")))
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {report}"))
}

/// Every point sent was stored, `updates` of them updates that each became a
/// revision, and none was rejected.
fn assert_counts_add_up(report: &Value, points: u64, batches: u64, updates: u64) {
    assert_eq!(count(report, "points"), points, "{report}");
    assert_eq!(count(report, "batches"), batches, "{report}");
    assert_eq!(count(report, "accepted"), points, "{report}");
    assert_eq!(count(report, "rejected"), 0, "{report}");
    assert_eq!(count(report, "update_points"), updates, "{report}");
    assert_eq!(count(report, "revised"), updates, "{report}");
    assert!(number(report, &["points_per_s"]) > 0.0);
    assert!(number(report, &["batches_per_s"]) > 0.0);
    let latency: Vec<f64> = ["p50", "p90", "p99", "max"]
        .iter()
        .map(|p| number(report, &["latency_ms", p]))
        .collect();
    assert!(latency.windows(2).all(|w| w[0] <= w[1]), "{report}");
    assert!(latency[0] > 0.0, "{report}");
}

fn assert_server_figures(report: &Value) {
    assert!(number(report, &["server", "cpu_s"]) > 0.0, "{report}");
    let idle = number(report, &["server", "rss_idle_mib"]);
    assert!(idle > 0.0, "{report}");
    assert!(
        number(report, &["server", "rss_peak_mib"]) >= idle,
        "{report}"
    );
    assert!(
        number(report, &["server", "commit_transactions"]) >= 1.0,
        "{report}"
    );
}

/// The benchmark's server folder (`kpistream-bench-…`) and the ceiling's are gone.
fn assert_nothing_left(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .expect("the test folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with("kpistream-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_embedded_run_over_three_streams_counts_every_point_and_rejects_none() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_json(
        dir.path(),
        &[
            "--streams",
            "3",
            "--points",
            "300",
            "--batch-size",
            "10",
            "--publishers",
            "2",
            "--update-share",
            "0.2",
        ],
    );
    assert_eq!(report["target"], "kpistream");
    assert_eq!(report["embedded"], true);
    assert_eq!(report["mode"], "unary");
    assert_eq!(count(&report, "streams"), 3);
    assert_eq!(count(&report, "publishers"), 2);
    // 20 % of 300 points; a publisher's first batch to each stream has nothing to
    // rewrite yet, and its later batches make up for it.
    assert_counts_add_up(&report, 300, 30, 60);
    assert_server_figures(&report);
    assert!(report["ceilings"].is_null(), "{report}");
    assert_nothing_left(dir.path());
}

#[test]
fn a_streamed_run_with_ceilings_reports_them_too() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_json(
        dir.path(),
        &[
            "--mode",
            "stream",
            "--streams",
            "3",
            "--points",
            "205",
            "--batch-size",
            "1",
            "--publishers",
            "4",
            "--update-share",
            "0.1",
            "--ceilings",
        ],
    );
    assert_eq!(report["mode"], "stream");
    assert!(report["rate"].is_null(), "{report}");
    assert_counts_add_up(&report, 205, 205, 20);
    assert_server_figures(&report);
    assert!(number(&report, &["ceilings", "verify_points_per_s"]) > 0.0);
    assert!(number(&report, &["ceilings", "verify_threads"]) >= 1.0);
    assert!(number(&report, &["ceilings", "store_points_per_s"]) > 0.0);
    assert_eq!(number(&report, &["ceilings", "store_group_batches"]), 4.0);
    assert_nothing_left(dir.path());
}

/// Open loop: batches leave when due, answered or not, so updates may find nothing
/// acknowledged yet; this run has none.
#[test]
fn a_paced_run_sends_every_point_at_the_rate_asked() {
    let dir = tempfile::tempdir().unwrap();
    let report = bench_json(
        dir.path(),
        &[
            "--points",
            "100",
            "--batch-size",
            "5",
            "--publishers",
            "3",
            "--rate",
            "1000",
        ],
    );
    assert_eq!(number(&report, &["rate"]), 1000.0);
    assert_counts_add_up(&report, 100, 20, 0);
    assert_server_figures(&report);
    assert_nothing_left(dir.path());
}

#[test]
fn a_share_outside_zero_to_one_is_refused_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let output = common::cli(dir.path())
        .args(["bench", "--embedded", "--update-share", "1.5"])
        .output()
        .expect("kpistream bench runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("give a fraction from 0 to 1"),
        "the error says what to give: {stderr}"
    );
}
