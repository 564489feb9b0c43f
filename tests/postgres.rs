//! `kpistream serve` on PostgreSQL, seen from outside: it stores and serves points
//! across a restart, `kpistream migrate` and `--no-migrate` agree on the schema, a
//! database that acknowledges commits before they are durable is refused unless
//! allowed, and the password of a database URL is never printed.
//!
//! Each test gets a schema of its own on the test database of
//! `KPISTREAM_TEST_POSTGRES_URL` and `KPISTREAM_TEST_DB_PASSWORD` (scripts/test.sh
//! exports both after scripts/services.sh started PostgreSQL). Without them the tests
//! skip, saying so, except under `CI=true`, where they fail.

mod common;

use common::{PgSchema, Setup, TestServer, cli, point, required, values};

fn server_on(url: &str, args: &[&str]) -> TestServer {
    TestServer::start_setup(Setup {
        db: Some(url.to_owned()),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Setup::default()
    })
}

#[tokio::test]
async fn a_server_on_postgres_stores_and_serves_points_across_a_restart() {
    let Some(schema) = PgSchema::for_test() else {
        return;
    };
    let mut server = server_on(&schema.url, &[]);
    let (stream, credential) = server.daily_stream("revenue").await;
    let publisher = server.anonymous_client().await;
    let first = publisher
        .publish(
            &credential,
            vec![point("2026-11-01", "12.50"), point("2026-11-02", "7")],
            false,
        )
        .await
        .expect("the batch is stored");
    assert_eq!(first.accepted, 2);
    let revision = publisher
        .publish(&credential, vec![point("2026-11-02", "8.000")], false)
        .await
        .expect("the revision is stored");
    assert_eq!((revision.accepted, revision.revised), (1, 1));
    assert_eq!(schema.count("points").await, 2, "points live in PostgreSQL");
    assert_eq!(schema.count("revisions").await, 1);

    server.restart();
    let client = server.client().await;
    assert_eq!(
        values(&client, &stream).await,
        [
            ("2026-11-01".to_owned(), "12.50".to_owned()),
            ("2026-11-02".to_owned(), "8.000".to_owned())
        ]
    );
    let logs = server.logs();
    assert!(
        !logs.contains(schema.password()),
        "the database password is not logged:\n{logs}"
    );
}

#[tokio::test]
async fn migrate_then_no_migrate_agree_on_the_schema() {
    let Some(schema) = PgSchema::for_test() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A server told not to migrate refuses an empty database, and says what to run.
    let refused = cli(dir.path())
        .args([
            "serve",
            "--no-migrate",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--db", &schema.url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("--no-migrate was given: run `kpistream migrate --db postgres://"),
        "{said}"
    );
    assert!(!said.contains(schema.password()), "{said}");

    let migrated = cli(dir.path())
        .args(["migrate", "--db", &schema.url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.status.success(), "{migrated:?}");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert!(
        said.contains(&format!("applied {migrations} migration(s)")),
        "{said}"
    );
    assert!(said.contains("kpistream:***@"), "{said}");
    assert!(!said.contains(schema.password()), "{said}");
    let again = cli(dir.path())
        .args(["migrate", "--db", &schema.url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("the schema is up to date"),
        "{again:?}"
    );

    let server = server_on(&schema.url, &["--no-migrate"]);
    let (stream, credential) = server.daily_stream("signups").await;
    server
        .anonymous_client()
        .await
        .publish(&credential, vec![point("2026-11-03", "41")], false)
        .await
        .expect("stored");
    assert_eq!(
        values(&server.client().await, &stream).await,
        [("2026-11-03".to_owned(), "41".to_owned())]
    );
}

#[tokio::test]
async fn asynchronous_commit_is_refused_unless_allowed() {
    let Some(schema) = PgSchema::for_test() else {
        return;
    };
    let url = schema.url_with("synchronous_commit%3Doff");
    let dir = tempfile::tempdir().unwrap();
    let refused = cli(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--db", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("synchronous_commit is off") && said.contains("--allow-async-commit"),
        "{said}"
    );

    let server = server_on(&url, &["--allow-async-commit"]);
    let (_, credential) = server.daily_stream("visits").await;
    server
        .anonymous_client()
        .await
        .publish(&credential, vec![point("2026-11-04", "3")], false)
        .await
        .expect("stored");
    assert!(
        server
            .logs()
            .contains("a publish acknowledged just before the database server crashes can be lost"),
        "{}",
        server.logs()
    );
}

/// A second server on the same database, sharing the first one's admin token.
fn second_server(first: &TestServer, url: &str) -> TestServer {
    TestServer::start_setup(Setup {
        db: Some(url.to_owned()),
        token_file: Some(first.token_path()),
        ..Setup::default()
    })
}

async fn next_point(
    points: &mut tonic::Streaming<kpistream::proto::DataPoint>,
) -> kpistream::proto::DataPoint {
    tokio::time::timeout(std::time::Duration::from_secs(10), points.message())
        .await
        .expect("a point within 10 s")
        .expect("the watch goes on")
        .expect("a point")
}

#[tokio::test]
async fn two_servers_on_one_database_serve_as_one() {
    let Some(schema) = PgSchema::for_test() else {
        return;
    };
    let a = server_on(&schema.url, &[]);
    let b = second_server(&a, &schema.url);
    let (stream, credential) = a.daily_stream("orders").await;
    let (a_client, b_client) = (a.client().await, b.client().await);

    // Published through either, read through either.
    let a_publisher = a.anonymous_client().await;
    let b_publisher = b.anonymous_client().await;
    a_publisher
        .publish(&credential, vec![point("2026-11-01", "1")], false)
        .await
        .unwrap();
    b_publisher
        .publish(&credential, vec![point("2026-11-02", "2")], false)
        .await
        .unwrap();
    let both = [
        ("2026-11-01".to_owned(), "1".to_owned()),
        ("2026-11-02".to_owned(), "2".to_owned()),
    ];
    assert_eq!(values(&a_client, &stream).await, both);
    assert_eq!(values(&b_client, &stream).await, both);

    // A watch on one server sees what is published through the other.
    let mut watched = a_client.watch(&stream, false).await.unwrap();
    b_publisher
        .publish(&credential, vec![point("2026-11-03", "3")], false)
        .await
        .unwrap();
    // (A commit from before the watch began may still be on its way to it: skip it.)
    let seen = loop {
        let seen = next_point(&mut watched).await;
        if seen.period != "2026-11-02" && seen.period != "2026-11-01" {
            break seen;
        }
    };
    assert_eq!(
        (seen.period.as_str(), seen.value.as_str()),
        ("2026-11-03", "3")
    );

    // One batch id raced to both servers is stored once, and both answer its outcome.
    for round in 0..5 {
        let period = format!("2026-12-{:02}", round + 1);
        let envelope = common::sealed(&credential, vec![point(&period, "7")]);
        let (to_a, to_b) = tokio::join!(
            common::publish_envelope(&a_publisher, envelope.clone(), false),
            common::publish_envelope(&b_publisher, envelope, false)
        );
        let (to_a, to_b) = (to_a.unwrap(), to_b.unwrap());
        assert_eq!((to_a.accepted, to_b.accepted), (1, 1));
        assert_eq!(
            u32::from(to_a.replayed) + u32::from(to_b.replayed),
            1,
            "one server stored the batch, the other answered it as a replay"
        );
        assert_eq!(to_a.committed_at, to_b.committed_at);
    }
    assert_eq!(
        schema.count("batches").await,
        8,
        "3 single batches and 5 raced ones"
    );
    assert_eq!(schema.count("points").await, 8);

    // A key revoked through one server is refused by the other within a second.
    a_publisher
        .publish(&credential, vec![point("2026-11-04", "4")], false)
        .await
        .expect("the key works through a, which now caches it");
    b_client
        .revoke_key(&stream, credential.key_id().as_str())
        .await
        .expect("revoked through b");
    let revoked_at = std::time::Instant::now();
    loop {
        let refused = a_publisher
            .publish(&credential, vec![point("2026-11-05", "5")], false)
            .await;
        match refused {
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
                assert!(status.message().contains("revoked"), "{status:?}");
                break;
            }
            Ok(_) => assert!(
                revoked_at.elapsed() < std::time::Duration::from_secs(1),
                "a key revoked through b was still taken by a after 1 s"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, on a free
/// port), which the test may stop and start without touching anybody else's.
struct OwnCluster {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnCluster {
    /// `None` (the test skips) unless running as root with PostgreSQL's programs
    /// installed; under `CI=true` both are required.
    fn start() -> Option<OwnCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| v.ok())
                    .map(|v| v.path().join("bin"))
                    .filter(|bin| bin.join("initdb").exists())
                    .max()
            });
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
        let Some(bin) = bin.filter(|_| root) else {
            assert!(
                !required(),
                "this test needs root and PostgreSQL's programs under CI=true"
            );
            eprintln!("skipped: needs root and PostgreSQL's programs (initdb, pg_ctl)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let uid = std::process::Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .expect("id runs");
        let uid: u32 = String::from_utf8_lossy(&uid.stdout)
            .trim()
            .parse()
            .expect("a postgres user");
        std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = OwnCluster { bin, dir, port };
        cluster.as_postgres(&format!(
            "{}/initdb -D {}/data -A trust -U postgres >/dev/null",
            cluster.bin.display(),
            cluster.dir.path().display()
        ));
        cluster.up();
        Some(cluster)
    }

    fn as_postgres(&self, command: &str) {
        let status = std::process::Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c", command])
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{command} failed");
    }

    fn up(&self) {
        self.as_postgres(&format!(
            "{}/pg_ctl -D {dir}/data -l {dir}/log -w -o \"-p {} -k {dir} -c listen_addresses=127.0.0.1\" start >/dev/null",
            self.bin.display(),
            self.port,
            dir = self.dir.path().display()
        ));
    }

    fn down(&self) {
        self.as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m fast -w stop >/dev/null",
            self.bin.display(),
            self.dir.path().display()
        ));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("su")
            .args([
                "postgres",
                "-s",
                "/bin/sh",
                "-c",
                &format!(
                    "{}/pg_ctl -D {}/data -m immediate -w stop",
                    self.bin.display(),
                    self.dir.path().display()
                ),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn a_server_rides_out_a_database_outage_and_keeps_every_acknowledged_batch() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let server = server_on(&cluster.url(), &[]);
    let (stream, credential) = server.daily_stream("uptime").await;
    let publisher = server.anonymous_client().await;

    // One publisher, one new period per batch, for as long as the test says.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, credential) = (stop.clone(), credential.clone());
        tokio::spawn(async move {
            let (mut acknowledged, mut unavailable, mut slowest_refusal) =
                (Vec::new(), 0u32, std::time::Duration::ZERO);
            // Acknowledged after the first refusal: once the database was back.
            let mut after_outage = 0u32;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let (period, value) = (common::day(n), n.to_string());
                let sent = std::time::Instant::now();
                match publisher
                    .publish(&credential, vec![point(&period, &value)], false)
                    .await
                {
                    Ok(_) => {
                        acknowledged.push((period, value));
                        if unavailable > 0 {
                            after_outage += 1;
                        }
                    }
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                        unavailable += 1;
                        slowest_refusal = slowest_refusal.max(sent.elapsed());
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            (acknowledged, unavailable, slowest_refusal, after_outage)
        })
    };

    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    cluster.down();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, _) = server.http_get("/healthz");
    assert_eq!(status, 503, "not ready while the database is down");
    cluster.up();
    let back = std::time::Instant::now();
    loop {
        if server.http_get("/healthz").0 == 200 {
            break;
        }
        assert!(
            back.elapsed() < std::time::Duration::from_secs(30),
            "the server did not recover within 30 s of the database's return\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, unavailable, slowest_refusal, after_outage) = load.await.unwrap();
    assert!(
        after_outage > 0,
        "publishes are acknowledged again once the database is back, without a restart"
    );

    assert!(
        unavailable > 0,
        "publishes failed while the database was down"
    );
    assert!(
        slowest_refusal < std::time::Duration::from_secs(10),
        "publishes failed fast, not after {slowest_refusal:?}"
    );
    let stored = values(&server.client().await, &stream).await;
    for point in &acknowledged {
        assert!(stored.contains(point), "acknowledged {point:?} is missing");
    }
    assert!(
        acknowledged.len() > 10,
        "publishes went through before and after the outage"
    );
}

/// Everything an admin of the organisation can list or query, in one comparable value.
async fn everything(
    client: &kpistream::client::Client,
    runner: &kpistream::client::Client,
) -> String {
    use kpistream::client::{AuditFilter, PeriodRange, StreamFilter};
    use kpistream::proto;
    let mut out = Vec::new();
    out.push(format!("{:?}", client.who_am_i().await.unwrap()));
    out.push(format!("{:?}", client.categories().await.unwrap()));
    out.push(format!("{:?}", client.users(0).await.unwrap()));
    out.push(format!("{:?}", client.teams().await.unwrap()));
    out.push(format!("{:?}", client.tokens(None, 0).await.unwrap()));
    out.push(format!("{:?}", client.webhooks().await.unwrap()));
    let deliveries = client
        .deliveries(kpistream::client::DeliveryTarget::All, 0)
        .await
        .unwrap();
    out.push(format!("{deliveries:?}"));
    out.push(format!(
        "{:?}",
        client.audit(&AuditFilter::default()).await.unwrap()
    ));
    let streams = client.streams(&StreamFilter::default()).await.unwrap();
    out.push(format!("{streams:?}"));
    for stream in &streams {
        out.push(format!("{:?}", client.stream(&stream.id).await.unwrap()));
        out.push(format!("{:?}", client.keys(&stream.id).await.unwrap()));
        out.push(format!("{:?}", client.grants(&stream.id).await.unwrap()));
        let points = client
            .points(&stream.id, &PeriodRange::default())
            .await
            .unwrap();
        for point in &points {
            out.push(format!(
                "{:?}",
                client.revisions(&stream.id, &point.period).await.unwrap()
            ));
        }
        out.push(format!("{points:?}"));
    }
    let mut state = runner.runner();
    out.push(format!(
        "{:?}",
        state
            .get_state(proto::ConnectorRef {
                connector: "crm".into()
            })
            .await
            .unwrap()
            .into_inner()
    ));
    out.push(format!(
        "{:?}",
        state
            .list_runs(proto::ListRunsRequest {
                connector: "crm".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    ));
    out.join("\n")
}

#[tokio::test]
async fn copy_moves_a_whole_sqlite_deployment_to_postgres() {
    use kpistream::auth::Role;
    use kpistream::client::Client;
    use kpistream::proto;
    let Some(schema) = PgSchema::for_test() else {
        return;
    };
    // A SQLite deployment with every kind of record, made through the API.
    let mut sqlite = TestServer::start();
    let admin = sqlite.client().await;
    admin.create_category("Sales").await.unwrap();
    admin.create_user("grace", Role::Member).await.unwrap();
    admin.create_user("bot", Role::Runner).await.unwrap();
    admin.create_team("finance").await.unwrap();
    admin.add_team_member("finance", "grace").await.unwrap();
    admin
        .create_token("laptop", Some("grace"), None)
        .await
        .unwrap();
    let (_, bot_token) = admin
        .create_token("runner", Some("bot"), None)
        .await
        .unwrap();
    admin.create_org("Globex", "hank").await.unwrap();
    let (revenue, credential) = sqlite
        .create_stream(proto::CreateStreamRequest {
            category: "Sales".into(),
            description: "Booked revenue".into(),
            ..common::stream_request("revenue", proto::Frequency::Daily, "Europe/Paris")
        })
        .await;
    let (old, _) = sqlite.daily_stream("retired").await;
    admin.add_grant(&revenue.id, "user:grace").await.unwrap();
    admin
        .add_grant(&revenue.id, "team:finance:manage")
        .await
        .unwrap();
    admin.add_grant(&old, "org").await.unwrap();
    let publisher = sqlite.anonymous_client().await;
    let first = common::sealed(
        &credential,
        vec![point("2026-11-01", "10.50"), point("2026-11-02", "11")],
    );
    common::publish_envelope(&publisher, first, false)
        .await
        .unwrap();
    publisher
        .publish(&credential, vec![point("2026-11-02", "12.25")], false)
        .await
        .unwrap();
    let (_, rotated) = admin.rotate_key(&revenue.id).await.unwrap();
    admin
        .revoke_key(&revenue.id, credential.key_id().as_str())
        .await
        .unwrap();
    let third = common::sealed(&rotated, vec![point("2026-11-03", "9")]);
    common::publish_envelope(&publisher, third.clone(), false)
        .await
        .unwrap();
    admin.disable_stream(&old).await.unwrap();
    use secrecy::ExposeSecret;
    let runner = Client::connect(
        &sqlite.grpc,
        Some(secrecy::SecretString::from(
            bot_token.expose_secret().to_owned(),
        )),
    )
    .await
    .unwrap();
    let slot = prost_types::Timestamp {
        seconds: 1_795_000_000,
        nanos: 0,
    };
    let lease = runner
        .runner()
        .acquire_lease(proto::AcquireLeaseRequest {
            connector: "crm".into(),
            slot: Some(slot),
            runner_id: "runner-1".into(),
            ttl_seconds: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lease.granted);
    runner
        .runner()
        .report_run(proto::RunReport {
            connector: "crm".into(),
            runner_id: "runner-1".into(),
            slot: Some(slot),
            started_at: Some(slot),
            ended_at: Some(prost_types::Timestamp {
                seconds: slot.seconds + 3,
                nanos: 0,
            }),
            records_pulled: 40,
            points_published: 38,
            points_rejected: 2,
            new_cursor: Some("2026-11-03".into()),
            max_consecutive_failures: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    // A webhook with a delivery that failed (nothing listens), disabled so that the log
    // stands still.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/in",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let (hook, _) = admin
        .create_webhook(
            &url,
            &kpistream::client::NotifyScope::default(),
            &["point.accepted".to_owned()],
        )
        .await
        .unwrap();
    publisher
        .publish(&rotated, vec![point("2026-11-04", "1")], false)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = admin
            .deliveries(kpistream::client::DeliveryTarget::All, 0)
            .await
            .unwrap();
        if log.first().is_some_and(|d| d.attempts >= 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a delivery attempt within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    admin.set_webhook_enabled(&hook.id, false).await.unwrap();
    let before = everything(&admin, &runner).await;

    // Copy, with the SQLite server stopped, into the empty PostgreSQL schema.
    sqlite.terminate();
    let copy = |dir: &std::path::Path| {
        cli(dir)
            .args(["copy", "--from"])
            .arg(format!("sqlite://{}", sqlite.db_path().display()))
            .args(["--to", &schema.url])
            .output()
            .unwrap()
    };
    let copied = copy(sqlite.dir());
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(copied.status.success(), "{copied:?}");
    assert!(said.contains("every table's count matches"), "{said}");
    assert!(!said.contains(schema.password()), "{said}");
    let again = copy(sqlite.dir());
    assert!(
        !again.status.success(),
        "a second copy into a full database is refused"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds data"),
        "{again:?}"
    );

    // A server on the copy answers every listing and query as the original did.
    let postgres = TestServer::start_setup(Setup {
        db: Some(schema.url.clone()),
        token_file: Some(sqlite.token_path()),
        ..Setup::default()
    });
    let pg_runner = Client::connect(
        &postgres.grpc,
        Some(secrecy::SecretString::from(
            bot_token.expose_secret().to_owned(),
        )),
    )
    .await
    .unwrap();
    let after = everything(&postgres.client().await, &pg_runner).await;
    assert_eq!(before, after);
    // Remembered batch ids came along: a batch sent again is a replay.
    let replay = common::publish_envelope(&postgres.anonymous_client().await, third, false)
        .await
        .unwrap();
    assert!(replay.replayed);
    // New rows continue after the copied ones.
    postgres
        .client()
        .await
        .create_category("Ops")
        .await
        .unwrap();
    postgres
        .anonymous_client()
        .await
        .publish(&rotated, vec![point("2026-11-02", "13")], false)
        .await
        .unwrap();
    assert_eq!(
        postgres
            .client()
            .await
            .revisions(&revenue.id, "2026-11-02")
            .await
            .unwrap()
            .len(),
        2
    );
}
