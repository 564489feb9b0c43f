//! `kpistream connector check`, run as a user runs it: on the repository's examples and
//! on directories holding one broken file each.

use std::path::Path;
use std::process::{Command, Output};

const VALID: &str = r#"
name = "orders"
credential_env = "ORDERS_CREDENTIAL"
schedule = "0 6 * * *"
timezone = "Europe/Paris"

[mapping]
period = "$.month"
value = "$.total"

[source]
type = "rest"
url = "https://api.example.com/orders"
"#;

fn check(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kpistream"))
        .args(["connector", "check"])
        .arg(dir)
        .output()
        .unwrap()
}

/// Checks a directory holding `broken.toml` (and any other files) and returns stderr,
/// asserting the check failed.
fn check_failing(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let output = check(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "check passed: {stderr}");
    stderr
}

fn assert_names(stderr: &str, file: &str, field: &str) {
    assert!(
        stderr.contains(file),
        "the file {file} is not named: {stderr}"
    );
    assert!(
        stderr.contains(&format!("`{field}`")),
        "the field {field} is not named: {stderr}"
    );
}

#[test]
fn the_repository_examples_pass_the_check() {
    let output = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok: billing-mrr (rest, every day at 06:00 Europe/Paris"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: shop-signups (sql, every hour UTC"),
        "{stdout}"
    );
}

#[test]
fn a_valid_file_passes_and_is_described() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.toml"), VALID).unwrap();
    let output = check(dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok: orders (rest, every day at 06:00 Europe/Paris)"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_field_is_an_error_naming_the_file_and_the_field() {
    let text = VALID.replace("timezone =", "run_on_strat = true\ntimezone =");
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "run_on_strat");
    assert!(stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn a_bad_cron_schedule_is_an_error_naming_the_file_and_the_field() {
    let text = VALID.replace("0 6 * * *", "0 6 * *");
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "schedule");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn a_bad_time_zone_is_an_error_naming_the_file_and_the_field() {
    let text = VALID.replace("Europe/Paris", "Europe/Pariss");
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "timezone");
    assert!(stderr.contains("IANA"), "{stderr}");
}

#[test]
fn an_inline_credential_is_refused_with_the_reason() {
    let text = VALID.replace(
        "credential_env = \"ORDERS_CREDENTIAL\"",
        "credential = \"kpik1-secret\"",
    );
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "credential");
    assert!(stderr.contains("credential_env"), "{stderr}");
    assert!(
        !stderr.contains("kpik1-secret"),
        "the secret was printed: {stderr}"
    );
}

#[test]
fn an_inline_token_in_the_source_auth_is_refused() {
    let text = format!("{VALID}auth = {{ type = \"bearer\", token = \"s3cr3t\" }}\n");
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "source.auth.token");
    assert!(
        !stderr.contains("s3cr3t"),
        "the secret was printed: {stderr}"
    );
}

#[test]
fn both_credential_env_and_credential_file_is_an_error() {
    let text = VALID.replace(
        "credential_env = \"ORDERS_CREDENTIAL\"",
        "credential_env = \"ORDERS_CREDENTIAL\"\ncredential_file = \"orders.kpik\"",
    );
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "credential_env");
    assert!(stderr.contains("exactly one"), "{stderr}");
}

#[test]
fn an_unknown_connection_is_an_error() {
    let text = VALID.replace(
        "url = \"https://api.example.com/orders\"",
        "connection = \"billling\"\nurl = \"/orders\"",
    );
    let connections = "[billing]\ntype = \"rest\"\nbase_url = \"https://billing.example.com\"\n";
    let stderr = check_failing(&[("broken.toml", &text), ("connections.toml", connections)]);
    assert_names(&stderr, "broken.toml", "source.connection");
    assert!(
        stderr.contains("billling") && stderr.contains("known: billing"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_template_is_an_error() {
    let text = VALID.replace("/orders\"", "/orders?since={{period.begin}}\"");
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "source.url");
    assert!(stderr.contains("{{period.begin}}"), "{stderr}");
}

#[test]
fn a_cursor_template_without_a_cursor_is_an_error() {
    let text = VALID.replace("/orders\"", "/orders?since={{cursor}}\"");
    let stderr = check_failing(&[("broken.toml", &text)]);
    assert_names(&stderr, "broken.toml", "cursor");
}

#[test]
fn duplicate_names_across_files_are_an_error() {
    let stderr = check_failing(&[("a.toml", VALID), ("b.toml", VALID)]);
    assert_names(&stderr, "b.toml", "name");
    assert!(
        stderr.contains("a.toml"),
        "the first file is not named: {stderr}"
    );
}

#[test]
fn every_problem_of_a_directory_is_reported_in_one_pass() {
    let bad_cron = VALID.replace("0 6 * * *", "61 6 * * *");
    let bad_zone = VALID
        .replace("orders", "other")
        .replace("Europe/Paris", "Mars/Olympus");
    let stderr = check_failing(&[("one.toml", &bad_cron), ("two.toml", &bad_zone)]);
    assert_names(&stderr, "one.toml", "schedule");
    assert_names(&stderr, "two.toml", "timezone");
    assert!(stderr.contains("2 problems"), "{stderr}");
}

fn connector_test(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kpistream"))
        .args(["connector", "test"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn connector_test_passes_on_the_bundled_fixtures_and_names_each_period_that_differs() {
    // The repository's connectors with their recorded fixtures, offline: no server,
    // source or credential.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&repo).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let output = connector_test(dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok: billing-mrr (6 point(s))"), "{stdout}");
    assert!(
        stdout.contains("ok: shop-signups (14 point(s))"),
        "{stdout}"
    );

    // A changed value, a month dropped and a month added are each named.
    let expected = dir.path().join("billing-mrr.expected.csv");
    let text = std::fs::read_to_string(&expected).unwrap();
    assert!(
        text.contains("2026-06,39870.50\n") && text.contains("2026-10,45210.75\n"),
        "{text}"
    );
    let tampered = text
        .replace("2026-06,39870.50\n", "2026-06,39870.05\n")
        .replace("2026-10,45210.75\n", "")
        + "2026-11,1.00\n";
    std::fs::write(&expected, tampered).unwrap();
    let output = connector_test(dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    for line in [
        "FAILED: billing-mrr",
        "  2026-06: expected 39870.05, got 39870.50",
        "  2026-10: not expected, got 45210.75",
        "  2026-11: expected 1.00, not published",
        "ok: shop-signups (14 point(s))",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    assert!(stderr.contains("1 of 2 connector(s) differ"), "{stderr}");
}

#[test]
fn a_grouped_aggregate_needs_a_credential_file_per_group() {
    let grouped = |lines: &str| format!("{VALID}\n[aggregate]\nfunction = \"count\"\n{lines}");
    let without_file = grouped("group_by = \"$.country\"\n");
    let stderr = check_failing(&[("broken.toml", &without_file)]);
    assert_names(&stderr, "broken.toml", "aggregate.group_credential_file");
    let without_placeholder =
        grouped("group_by = \"$.country\"\ngroup_credential_file = \"orders.kpik\"\n");
    let stderr = check_failing(&[("broken.toml", &without_placeholder)]);
    assert!(stderr.contains("does not hold {{group}}"), "{stderr}");
    let sql_style =
        grouped("group_by = \"country\"\ngroup_credential_file = \"orders-{{group}}.kpik\"\n");
    let stderr = check_failing(&[("broken.toml", &sql_style)]);
    assert_names(&stderr, "broken.toml", "aggregate.group_by");
}
