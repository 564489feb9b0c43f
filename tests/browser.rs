//! The web console in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver) against a real server and a real runner. An admin signs in
//! by pasting a token, sees the streams with the stale one first, creates a stream and
//! downloads its credential, publishes with the CLI and sees the point appear without a
//! reload, corrects it and sees the revision, rotates and revokes a key, grants a team,
//! runs a connector now and sees the run finish, and signs out; a member of the team
//! sees only what is granted to them. The pages are screenshotted into
//! target/console-screenshots/ (and into docs/console/ with
//! KPISTREAM_UPDATE_SCREENSHOTS=1).
//!
//! scripts/test.sh installs `chromium` and `chromium-driver`; under CI=true a missing
//! browser fails the test, elsewhere it is skipped with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::runner::{RunnerSetup, TestRunner, kpistream, wait_for_runs};
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

/// A new headless browser session (its own empty profile, downloads into
/// `profile`/downloads).
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
        serde_json::json!({
            "binary": CHROMIUM,
            "args": args,
            "prefs": {
                "download.default_directory": profile.join("downloads"),
                "download.prompt_for_download": false,
            },
        }),
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

/// The texts of the elements `css` matches. A live page may replace them while they are
/// read: then they are read again.
async fn text_of(client: &Client, css: &str) -> Vec<String> {
    'read: for _ in 0..20 {
        let mut texts = Vec::new();
        for element in client.find_all(Locator::Css(css)).await.unwrap() {
            match element.text().await {
                Ok(text) => texts.push(text),
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    continue 'read;
                }
                Err(e) => panic!("{css}: {e}"),
            }
        }
        return texts;
    }
    panic!("{css} kept changing while it was read");
}

/// Waits until `css` matches an element whose text satisfies `wanted` (the page may
/// change by itself: live updates); its text.
async fn wait_for_text(client: &Client, css: &str, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let texts = text_of(client, css).await;
        if let Some(text) = texts.iter().find(|t| wanted(t)) {
            return text.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{css} shows {texts:?} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Marks the page in the browser, to tell later whether it was loaded again.
async fn mark_page(client: &Client) {
    client
        .execute("window.kpistreamTestMark = 'still here';", vec![])
        .await
        .unwrap();
}

async fn still_marked(client: &Client) -> bool {
    client
        .execute("return window.kpistreamTestMark || null;", vec![])
        .await
        .unwrap()
        == serde_json::json!("still here")
}

/// `kpistream publish` of one value with the credential in `file`.
fn publish_with_cli(server: &TestServer, dir: &Path, file: &Path, period: &str, value: &str) {
    let published = kpistream(
        server,
        dir,
        &Default::default(),
        &[
            "publish",
            "--credential",
            file.to_str().unwrap(),
            "--period",
            period,
            "--value",
            value,
        ],
    );
    assert!(published.status.success(), "{published:?}");
}

/// Waits for the browser's download of `name` in `folder`; its content.
async fn downloaded(folder: &Path, name: &str) -> String {
    let file = folder.join(name);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && !text.is_empty()
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not downloaded within 20 s (the folder holds {:?} files)",
            file.display(),
            std::fs::read_dir(folder).map(|d| d.count()).unwrap_or(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    admin.create_team("growth").await.unwrap();
    admin.add_team_member("growth", "grace").await.unwrap();
    let (_, grace) = admin
        .create_token("browser", Some("grace"), None)
        .await
        .unwrap();

    // A connector that publishes today's sign-ups, run once by a runner at its start.
    let work = tempfile::tempdir().unwrap();
    let connectors = work.path().join("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    let signups_file = work.path().join("signups.kpik");
    std::fs::write(&signups_file, credential.expose_secret()).unwrap();
    std::fs::write(
        connectors.join("signups.toml"),
        format!(
            "name = \"signups\"\ncredential_file = \"{}\"\nschedule = \"0 0 1 1 *\"\nrun_on_start = true\n\
             [mapping]\nperiod = \"day\"\nvalue = \"count\"\n\
             [source]\ntype = \"command\"\nargv = [\"sh\", \"-c\", \"printf '{{\\\"day\\\": \\\"{today}\\\", \\\"count\\\": 118}}\\\\n'\"]\n",
            signups_file.display()
        ),
    )
    .unwrap();
    let runner = tokio::task::block_in_place(|| {
        TestRunner::start(&server, RunnerSetup::new(&connectors, "runner-1"))
    });
    wait_for_runs(&admin, "signups", 1, Duration::from_secs(30)).await;

    let profiles = tempfile::tempdir().unwrap();
    let profile = profiles.path().join("admin");
    let client = browser(&driver, &profile, 1280, 900).await;
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

    // Create a stream; its credential is shown once, downloaded, with a copy button.
    click(&client, Locator::LinkText("New stream")).await;
    wait_for_path(&client, "/console/streams/new").await;
    client
        .find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("Daily active users")
        .await
        .unwrap();
    let zone = client
        .find(Locator::Css("input[name=time_zone]"))
        .await
        .unwrap();
    zone.clear().await.unwrap();
    zone.send_keys("Europe/Paris").await.unwrap();
    click(&client, Locator::Css("form.edit button[type=submit]")).await;
    wait_for_path(&client, "/credential").await;
    let warning = text_of(&client, ".warning").await;
    assert!(
        warning[0].contains("it will not be shown again"),
        "{warning:?}"
    );
    let copy = client
        .find(Locator::Css("button[data-copy]"))
        .await
        .unwrap();
    assert!(
        copy.is_displayed().await.unwrap(),
        "the script shows the copy button"
    );
    click(&client, Locator::Id("download")).await;
    let saved = downloaded(&profile.join("downloads"), "daily-active-users.kpik").await;
    let shown = client
        .find(Locator::Id("credential"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(
        saved.trim(),
        shown.trim(),
        "the file is the credential shown"
    );
    let dau_file = work.path().join("dau.kpik");
    std::fs::write(&dau_file, &saved).unwrap();
    let dau: kpistream::client::Credential = saved.trim().parse().unwrap();
    let dau_id = dau.stream_id().to_string();
    let first_key = dau.key_id().to_string();

    // The stream page follows what the CLI publishes, without a reload.
    click(&client, Locator::Css("p.back a")).await;
    wait_for_path(&client, &dau_id).await;
    wait_for_text(&client, "h1 .live-indicator", |t| t == "live").await;
    mark_page(&client).await;
    let paris_today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Paris").unwrap())
        .date()
        .to_string();
    publish_with_cli(&server, work.path(), &dau_file, &paris_today, "1520");
    wait_for_text(&client, "table.points tbody td.value", |t| t == "1520").await;
    // A correction shows as a revision, and the period's history says what changed.
    publish_with_cli(&server, work.path(), &dau_file, &paris_today, "1532");
    wait_for_text(&client, "table.points tbody td.value", |t| t == "1532").await;
    wait_for_text(&client, "table.points tbody td.revisions", |t| t == "1").await;
    assert!(still_marked(&client).await, "the page was not loaded again");
    click(&client, Locator::LinkText(&paris_today)).await;
    wait_for_path(&client, &format!("/periods/{paris_today}")).await;
    let change = text_of(&client, "table.revisions tbody tr").await;
    assert_eq!(change.len(), 1, "{change:?}");
    assert!(
        change[0].contains("1520") && change[0].contains("1532") && change[0].contains(&first_key),
        "old → new, and which key: {change:?}"
    );

    // Rotate the key (a new credential, once), then revoke the first one.
    client
        .goto(&format!("{base}/console/streams/{dau_id}"))
        .await
        .unwrap();
    click(&client, Locator::Css("form[action$='/keys'] button")).await;
    wait_for_path(&client, "/credential").await;
    let keys = text_of(&client, "dl.facts dd code").await;
    assert_ne!(keys[1], first_key, "a new key");
    click(&client, Locator::Css("p.back a")).await;
    wait_for_path(&client, &dau_id).await;
    let revoke = format!("button[aria-label='Revoke key {first_key}']");
    click(&client, Locator::Css(&revoke)).await;
    wait_for_text(&client, "table.keys tr.revoked td:first-child", |t| {
        t == first_key
    })
    .await;

    // Share it with the growth team.
    client
        .find(Locator::Css("form.grant input[name=name]"))
        .await
        .unwrap()
        .send_keys("growth")
        .await
        .unwrap();
    click(&client, Locator::Css("form.grant button[type=submit]")).await;
    wait_for_text(&client, "ul.grants li", |t| {
        t.starts_with("team:growth — read")
    })
    .await;

    // The stream with a fortnight of data, for the documentation's picture.
    client
        .goto(&format!("{base}/console/streams/{signups}"))
        .await
        .unwrap();
    let circles = client
        .find_all(Locator::Css("figure.chart circle"))
        .await
        .unwrap();
    assert_eq!(
        circles.len(),
        15,
        "one point per period, today's from the runner"
    );
    let periods = text_of(&client, "table.points tbody td:first-child").await;
    assert_eq!(periods.first(), Some(&today.to_string()), "newest first");
    screenshot(&client, "stream").await;

    // Connectors: run one now; its page shows the run finish.
    click(&client, Locator::LinkText("Connectors")).await;
    wait_for_path(&client, "/console/connectors").await;
    let listed = text_of(&client, "table.connectors tbody td:first-child a").await;
    assert_eq!(listed, ["signups"]);
    screenshot(&client, "connectors").await;
    click(&client, Locator::LinkText("signups")).await;
    wait_for_path(&client, "/console/connectors/signups").await;
    assert_eq!(text_of(&client, "table.runs tbody tr").await.len(), 1);
    click(&client, Locator::Css("form[action$='/run'] button")).await;
    wait_for_path(&client, "/console/connectors/signups").await;
    wait_for_text(&client, "h1 .live-indicator", |t| t == "live").await;
    mark_page(&client).await;
    let by_hand = wait_for_text(&client, "table.runs tbody tr:first-child", |t| {
        t.contains("by hand")
    })
    .await;
    assert!(by_hand.contains("runner-1"), "{by_hand}");
    wait_for_text(&client, "#run-requested", |t| t == "no").await;
    assert!(
        still_marked(&client).await,
        "the run showed without a reload"
    );
    screenshot(&client, "connector").await;
    drop(runner);

    // Sign out: the console asks to sign in again.
    click(&client, Locator::Css("form.sign-out button")).await;
    wait_for_path(&client, "/console/sign-in").await;
    client.goto(&format!("{base}/console")).await.unwrap();
    wait_for_path(&client, "/console/sign-in").await;
    client.close().await.unwrap();

    // A member, on a phone-sized screen, sees the streams granted to them (to them, and
    // to their team) and nothing else.
    let phone = browser(&driver, &profiles.path().join("grace"), 360, 740).await;
    sign_in(&phone, &base, grace.expose_secret()).await;
    let names = text_of(&phone, "table.streams tbody tr td:first-child a").await;
    assert_eq!(names, ["Support tickets", "Daily active users"]);
    assert_eq!(
        text_of(&phone, "header nav a").await,
        ["Streams", "People"],
        "no connectors, categories or audit log for a member"
    );
    phone
        .goto(&format!("{base}/console/streams/{signups}"))
        .await
        .unwrap();
    let heading = text_of(&phone, "h1").await;
    assert_eq!(heading, ["Not found"], "an ungranted stream is not found");
    phone.goto(&format!("{base}/console")).await.unwrap();
    click(&phone, Locator::Css("form.sign-out button")).await;
    wait_for_path(&phone, "/console/sign-in").await;
    phone.close().await.unwrap();
}
