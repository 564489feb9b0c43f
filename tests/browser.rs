//! The web console in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver) against a real server. An admin signs in by pasting a token,
//! sees the streams with the stale one first, opens a stream, sees a value published
//! with the CLI after a reload, and signs out; a member sees only the stream granted to
//! them. The pages are screenshotted into target/console-screenshots/ (and into
//! docs/console/ with KPISTREAM_UPDATE_SCREENSHOTS=1).
//!
//! scripts/test.sh installs `chromium` and `chromium-driver`; under CI=true a missing
//! browser fails the test, elsewhere it is skipped with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::runner::kpistream;
use common::{TestServer, point, publish_envelope, sealed};
use fantoccini::{Client, ClientBuilder, Locator};
use kpistream::auth::Role;
use secrecy::ExposeSecret;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, ended with the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver, or `None` (having said why) when the browser is not installed outside CI.
fn driver() -> Option<Driver> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        if common::required() {
            panic!(
                "{CHROMIUM} and {CHROMEDRIVER} must be installed under CI=true: scripts/test.sh installs them"
            );
        }
        eprintln!(
            "skipped: {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver listens within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Driver { child, port })
}

/// A new headless browser session (its own empty profile).
async fn browser(driver: &Driver, profile: &Path, width: u32, height: u32) -> Client {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--hide-scrollbars".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={width},{height}"),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    // chromedriver is plain HTTP on loopback; the client still wants a TLS provider, and
    // the build links two: name one.
    kpistream::tls::use_ring_provider();
    ClientBuilder::rustls()
        .expect("a TLS setup for the WebDriver client")
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

/// Saves a screenshot as `name`.png in target/console-screenshots/, and in docs/console/
/// when KPISTREAM_UPDATE_SCREENSHOTS=1.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut folders: Vec<PathBuf> = vec![root.join("target/console-screenshots")];
    if std::env::var("KPISTREAM_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        folders.push(root.join("docs/console"));
    }
    for folder in folders {
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn sign_in(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/console")).await.unwrap();
    assert!(
        path(client).await.ends_with("/console/sign-in"),
        "the console sends an unknown browser to sign in"
    );
    client
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(client, Locator::Css("section.sign-in button[type=submit]")).await;
    wait_for_path(client, "/console").await;
}

async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

/// The path of the page the browser shows.
async fn path(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

/// Waits until the browser shows a page whose path ends with `end` (a click on a link
/// or a button may return before the navigation it starts is over).
async fn wait_for_path(client: &Client, end: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = path(client).await;
        if now.ends_with(end) {
            return;
        }
        if Instant::now() >= deadline {
            let headings = text_of(client, "h1, .problem").await;
            panic!("the browser shows {now} ({headings:?}), not …{end}, after 15 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap() {
        texts.push(element.text().await.unwrap());
    }
    texts
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_and_a_member_use_the_console_in_a_real_browser() {
    let Some(driver) = driver() else { return };
    let server = TestServer::start();
    let admin = server.client().await;
    let base = format!("http://{}", server.http);
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let day = |n: i64| {
        today
            .checked_sub(jiff::Span::new().days(n))
            .unwrap()
            .to_string()
    };

    // Three streams: one with a fortnight of data, one stale, one pending.
    let (signups, credential) = server.daily_stream("Daily sign-ups").await;
    let points: Vec<_> = (1..=14)
        .map(|n| point(&day(n), &(100 + (n * 37) % 23).to_string()))
        .collect();
    publish_envelope(&admin, sealed(&credential, points), true)
        .await
        .unwrap();
    let (tickets, old) = server.daily_stream("Support tickets").await;
    publish_envelope(&admin, sealed(&old, vec![point("2026-01-05", "42")]), true)
        .await
        .unwrap();
    server.daily_stream("Net promoter score").await;
    admin.create_user("grace", Role::Member).await.unwrap();
    admin.add_grant(&tickets, "user:grace").await.unwrap();
    let (_, grace) = admin
        .create_token("browser", Some("grace"), None)
        .await
        .unwrap();

    let profiles = tempfile::tempdir().unwrap();
    let client = browser(&driver, &profiles.path().join("admin"), 1280, 900).await;
    sign_in(&client, &base, &server.token).await;
    let names = text_of(&client, "table.streams tbody tr td:first-child a").await;
    assert_eq!(
        names,
        ["Support tickets", "Net promoter score", "Daily sign-ups"],
        "stale first, then pending, then active"
    );
    let badges = text_of(&client, "table.streams .badge").await;
    assert_eq!(badges, ["stale", "pending", "active"]);
    screenshot(&client, "overview").await;

    // The stream page: its chart and its points.
    click(&client, Locator::LinkText("Daily sign-ups")).await;
    wait_for_path(&client, &signups).await;
    let circles = client
        .find_all(Locator::Css("figure.chart circle"))
        .await
        .unwrap();
    assert_eq!(circles.len(), 14, "one point per period");
    let periods = text_of(&client, "table.points tbody td:first-child").await;
    assert_eq!(
        periods.first().map(String::as_str),
        Some(day(1).as_str()),
        "newest first"
    );

    // A value published with the CLI shows after a reload.
    let dir = tempfile::tempdir().unwrap();
    let credential_file = dir.path().join("signups.kpik");
    std::fs::write(&credential_file, credential.expose_secret()).unwrap();
    let today_text = today.to_string();
    let published = kpistream(
        &server,
        dir.path(),
        &Default::default(),
        &[
            "publish",
            "--credential",
            credential_file.to_str().unwrap(),
            "--period",
            &today_text,
            "--value",
            "321.5",
        ],
    );
    assert!(published.status.success(), "{published:?}");
    client.refresh().await.unwrap();
    let periods = text_of(&client, "table.points tbody td:first-child").await;
    assert_eq!(periods.first(), Some(&today_text));
    let values = text_of(&client, "table.points tbody td:nth-child(2)").await;
    assert_eq!(values.first().map(String::as_str), Some("321.5"));
    screenshot(&client, "stream").await;

    // Sign out: the console asks to sign in again.
    click(&client, Locator::Css("form.sign-out button")).await;
    wait_for_path(&client, "/console/sign-in").await;
    client.goto(&format!("{base}/console")).await.unwrap();
    wait_for_path(&client, "/console/sign-in").await;
    client.close().await.unwrap();

    // A member, on a phone-sized screen, sees the one stream granted to them.
    let phone = browser(&driver, &profiles.path().join("grace"), 360, 740).await;
    sign_in(&phone, &base, grace.expose_secret()).await;
    let names = text_of(&phone, "table.streams tbody tr td:first-child a").await;
    assert_eq!(names, ["Support tickets"]);
    phone
        .goto(&format!("{base}/console/streams/{signups}"))
        .await
        .unwrap();
    let heading = text_of(&phone, "h1").await;
    assert_eq!(heading, ["Not found"], "an ungranted stream is not found");
    phone.close().await.unwrap();
}
