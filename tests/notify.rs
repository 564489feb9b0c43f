//! Notifications as their receivers see them, against the real server: a stream that
//! turns stale and recovers sends one email (through a real SMTP server) and one signed
//! webhook per change, verified by a Python receiver with the code of
//! docs/notifications.md; a webhook delivery survives a receiver that is down, or that
//! refuses it, and is logged; a webhook that keeps failing is disabled.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::interop::{self, PythonService};
use common::runner::kpistream;
use common::{Setup, TestServer, point, publish_envelope, sealed};
use kpistream::signature::Credential;
use serde_json::Value;

const SMTP_PASSWORD: &str = "CANARY-smtp-password";

/// Waits until `check` holds; panics with `what` after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cli(server: &TestServer, dir: &Path, args: &[&str]) -> Output {
    let out = kpistream(server, dir, &BTreeMap::new(), args);
    assert!(
        out.status.success(),
        "kpistream {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kpistream ARGS -o json`, parsed.
fn cli_json(server: &TestServer, dir: &Path, args: &[&str]) -> Value {
    let args: Vec<&str> = [args, &["-o", "json"]].concat();
    serde_json::from_slice(&cli(server, dir, &args).stdout).expect("one JSON document")
}

async fn publish(server: &TestServer, credential: &Credential, period: &str, value: &str) {
    let client = server.client().await;
    let envelope = sealed(credential, vec![point(period, value)]);
    let answer = publish_envelope(&client, envelope, true).await.unwrap();
    assert!(answer.rejected.is_empty(), "{answer:?}");
}

/// The period of `days` before today (UTC).
fn days_ago(days: i64) -> String {
    use jiff::ToSpan;
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    today.checked_sub(days.days()).unwrap().to_string()
}

/// A free port nothing listens on (until something does).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn alerts_config(extra: &str) -> Setup {
    Setup {
        config: Some(format!("[alerts]\ncheck_interval_secs = 1\n{extra}")),
        ..Setup::default()
    }
}

/// A header of an email as sent, unfolded.
fn header(message: &Value, name: &str) -> String {
    let data = message["data"].as_str().unwrap().replace("\r\n ", " ");
    let prefix = format!("{name}: ");
    data.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} header in {data}"))
        .to_owned()
}

fn verified(receiver: &PythonService) -> Vec<Value> {
    receiver
        .received()
        .into_iter()
        .filter(|r| r["verified"] == true)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_turns_stale_and_recovers_sends_one_signed_webhook_and_one_email_each() {
    let Some(smtp) = interop::smtp_sink(Some(("alerts", SMTP_PASSWORD))) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.secret");
    let Some(receiver) = interop::webhook_receiver(&secret_file, 0) else {
        return;
    };
    let password_file = dir.path().join("smtp.password");
    std::fs::write(&password_file, format!("{SMTP_PASSWORD}\n")).unwrap();
    let server = TestServer::start_setup(alerts_config(&format!(
        "[alerts.smtp]\nhost = \"127.0.0.1\"\nport = {}\nstarttls = false\n\
         from = \"kpistream <alerts@example.com>\"\nusername = \"alerts\"\npassword_file = \"{}\"\n",
        smtp.port,
        password_file.display()
    )));
    let (stream_id, credential) = server.daily_stream("Daily signups").await;
    let url = format!("http://127.0.0.1:{}/hooks/kpi", receiver.port);
    let secret_path = secret_file.to_str().unwrap();
    let created = cli(
        &server,
        dir.path(),
        &[
            "webhook",
            "create",
            &url,
            "--stream",
            &stream_id,
            "--event",
            "stream.stale",
            "--event",
            "stream.recovered",
            "--secret-out",
            secret_path,
        ],
    );
    let said = String::from_utf8_lossy(&created.stdout);
    assert!(said.starts_with("created webhook whk_"), "{said}");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret's file is private");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    cli(
        &server,
        dir.path(),
        &[
            "alert",
            "subscribe",
            "ops@example.com",
            "--stream",
            &stream_id,
        ],
    );

    // The latest value is years old: the stream is stale.
    publish(&server, &credential, "2020-01-01", "10").await;
    wait_until(
        "the stale alert by webhook and email",
        Duration::from_secs(30),
        || !verified(&receiver).is_empty() && !smtp.received().is_empty(),
    )
    .await;
    // Several more checks: a stream that stays stale is not alerted again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received().len(), 1, "{:#?}", receiver.received());
    assert_eq!(smtp.received().len(), 1, "{:#?}", smtp.received());
    let stale = &receiver.received()[0];
    assert_eq!(stale["verified"], true, "the documented code verifies it");
    assert_eq!(stale["event"], "stream.stale");
    let body = &stale["body"];
    assert_eq!(body["type"], "stream.stale");
    assert_eq!(stale["event_id"], body["id"]);
    assert_eq!(body["stream"]["id"], stream_id.as_str());
    assert_eq!(body["stream"]["name"], "Daily signups");
    assert_eq!(body["data"]["to"], "stale");
    assert_eq!(body["data"]["latest_period"], "2020-01-01");
    let yesterday = days_ago(1);
    assert_eq!(body["data"]["expected_period"], yesterday.as_str());
    let mail = &smtp.received()[0];
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert_eq!(
        mail["auth_user"], "alerts",
        "logged in with the password file"
    );
    assert_eq!(
        header(mail, "Subject"),
        format!(
            "kpistream: stream Daily signups is stale (latest period 2020-01-01, expected {yesterday})"
        )
    );
    let text = mail["data"].as_str().unwrap();
    assert!(
        text.contains(&format!("Stream:          Daily signups ({stream_id})")),
        "{text}"
    );

    // Yesterday's value arrives: the stream recovers.
    publish(&server, &credential, &yesterday, "12").await;
    wait_until(
        "the recovery by webhook and email",
        Duration::from_secs(30),
        || verified(&receiver).len() >= 2 && smtp.received().len() >= 2,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(verified(&receiver).len(), 2, "{:#?}", receiver.received());
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(smtp.received().len(), 2);
    let recovered = &receiver.received()[1]["body"];
    assert_eq!(recovered["type"], "stream.recovered");
    assert_eq!(
        (&recovered["data"]["from"], &recovered["data"]["to"]),
        (&Value::from("stale"), &Value::from("active"))
    );
    assert_eq!(recovered["data"]["latest_period"], yesterday.as_str());
    assert_eq!(
        header(&smtp.received()[1], "Subject"),
        format!("kpistream: stream Daily signups recovered (latest period {yesterday})")
    );

    // The log shows the four deliveries, each taken at the first attempt.
    let log = cli_json(&server, dir.path(), &["webhook", "log"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(
        log.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1),
        "{log:#?}"
    );
    let emails = cli_json(&server, dir.path(), &["webhook", "log", "--emails"]);
    assert_eq!(emails.as_array().unwrap().len(), 2);
    assert!(
        !server.logs().contains(SMTP_PASSWORD),
        "no password in the logs"
    );
    assert!(
        !server.logs().contains(&secret),
        "no webhook secret in the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_delivery_is_retried_while_its_receiver_is_down_or_refuses_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_setup(alerts_config(
        "retry_initial_secs = 1\nretry_max_secs = 2\n",
    ));
    let (_, credential) = server.daily_stream("Revenue").await;
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/in");
    let secret_file = dir.path().join("hook.secret");
    cli(
        &server,
        dir.path(),
        &[
            "webhook",
            "create",
            &url,
            "--event",
            "point.accepted",
            "--event",
            "point.revised",
            "--secret-out",
            secret_file.to_str().unwrap(),
        ],
    );
    let hooks = cli_json(&server, dir.path(), &["webhook", "list"]);
    let hook_id = hooks[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(hooks[0]["scope"], "every stream");
    let (first, second) = (days_ago(2), days_ago(1));
    let client = server.client().await;
    let envelope = sealed(
        &credential,
        vec![point(&first, "5.10"), point(&second, "6")],
    );
    publish_envelope(&client, envelope, true).await.unwrap();

    let log = |server: &TestServer| cli_json(server, dir.path(), &["webhook", "log", &hook_id]);
    // Nothing listens: each attempt fails to connect, and the delivery stays pending.
    let mut seen = Value::Null;
    wait_until("two failed attempts", Duration::from_secs(30), || {
        seen = log(&server);
        seen[0]["attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(seen.as_array().unwrap().len(), 1, "one event: {seen:#?}");
    assert_eq!(seen[0]["state"], "pending");
    assert_eq!(seen[0]["event"], "point.accepted");
    let error = seen[0]["last_error"].as_str().unwrap();
    assert!(error.contains("cannot connect"), "{error}");
    assert!(
        !error.contains("/in"),
        "the URL's path is not shown: {error}"
    );

    // The receiver comes up with a secret that is not the webhook's: it refuses.
    let receiver_secret = dir.path().join("receiver.secret");
    std::fs::write(&receiver_secret, "whsec_not-the-one").unwrap();
    let receiver = interop::webhook_receiver(&receiver_secret, port);
    let Some(receiver) = receiver else { return };
    wait_until("a refused attempt", Duration::from_secs(30), || {
        seen = log(&server);
        seen[0]["last_status"] == 401
    })
    .await;
    assert_eq!(seen[0]["state"], "pending");
    assert!(verified(&receiver).is_empty());
    assert!(receiver.received().iter().all(|r| r["verified"] == false));

    // With the right secret, the next attempt is taken.
    std::fs::copy(&secret_file, &receiver_secret).unwrap();
    wait_until("the delivery", Duration::from_secs(30), || {
        seen = log(&server);
        seen[0]["state"] == "delivered"
    })
    .await;
    let attempts = seen[0]["attempts"].as_u64().unwrap();
    assert!(attempts >= 4, "{seen:#?}");
    assert_eq!(seen[0]["last_status"], 204);
    let taken = verified(&receiver);
    assert_eq!(taken.len(), 1, "delivered once: {taken:#?}");
    let points = &taken[0]["body"]["data"]["points"];
    assert_eq!(points[0]["period"], first.as_str());
    assert_eq!(points[0]["value"], "5.10", "the exact value, as text");
    assert_eq!(points[1]["period"], second.as_str());
    assert_eq!(points[0]["revision_count"], 0);

    // A revision is its own event.
    publish(&server, &credential, &second, "7").await;
    wait_until("the revision's event", Duration::from_secs(30), || {
        verified(&receiver).len() >= 2
    })
    .await;
    let revised = &verified(&receiver)[1];
    assert_eq!(revised["event"], "point.revised");
    let points = &revised["body"]["data"]["points"];
    assert_eq!(points.as_array().unwrap().len(), 1);
    assert_eq!(
        (
            &points[0]["period"],
            &points[0]["value"],
            &points[0]["revision_count"]
        ),
        (
            &Value::from(second.as_str()),
            &Value::from("7"),
            &Value::from(1)
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_keeps_failing_is_disabled_and_enabled_again_by_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_setup(alerts_config(
        "retry_initial_secs = 1\nmax_attempts = 2\ndisable_after = 1\n",
    ));
    let (_, credential) = server.daily_stream("Revenue").await;
    let url = format!("http://127.0.0.1:{}/in", closed_port());
    let secret = dir.path().join("hook.secret");
    // Accepted points only: the stream's turning active would be a second delivery,
    // given up in the same round or the next as the scheduler has it.
    cli(
        &server,
        dir.path(),
        &[
            "webhook",
            "create",
            &url,
            "--event",
            "point.accepted",
            "--secret-out",
            secret.to_str().unwrap(),
        ],
    );
    publish(&server, &credential, &days_ago(1), "1").await;
    let mut hooks = Value::Null;
    wait_until("the webhook disabled", Duration::from_secs(30), || {
        hooks = cli_json(&server, dir.path(), &["webhook", "list"]);
        hooks[0]["state"] == "disabled"
    })
    .await;
    assert_eq!(hooks[0]["failures"], 1);
    assert_eq!(hooks[0]["disabled_reason"], "a delivery was given up");
    let hook_id = hooks[0]["id"].as_str().unwrap().to_owned();
    let log = cli_json(&server, dir.path(), &["webhook", "log", &hook_id]);
    let gave_up: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["state"] == "gave up")
        .collect();
    assert_eq!(gave_up.len(), 1, "{log:#?}");
    assert_eq!(gave_up[0]["attempts"], 2);
    assert_eq!(gave_up[0]["next_attempt"], Value::Null);

    let said = cli(&server, dir.path(), &["webhook", "enable", &hook_id]);
    assert!(String::from_utf8_lossy(&said.stdout).starts_with("enabled webhook"));
    let hooks = cli_json(&server, dir.path(), &["webhook", "list"]);
    assert_eq!(
        (&hooks[0]["state"], &hooks[0]["failures"]),
        (&Value::from("enabled"), &Value::from(0))
    );
    let audit = cli_json(&server, dir.path(), &["audit", "list"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("webhook."))
        .collect();
    assert_eq!(actions, ["webhook.created", "webhook.enabled"]);

    // An email subscription needs the server's SMTP settings.
    let out = kpistream(
        &server,
        dir.path(),
        &BTreeMap::new(),
        &["alert", "subscribe", "ops@example.com"],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("set [alerts.smtp]"), "{said}");
    cli(&server, dir.path(), &["webhook", "delete", &hook_id]);
    assert_eq!(
        cli_json(&server, dir.path(), &["webhook", "list"]),
        Value::Array(vec![])
    );
}
