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

use std::str::FromStr;

use common::{Setup, TestServer, cli, point, required, values};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Executor};

/// A schema of the test database, dropped at the end of the test.
struct Schema {
    options: PgConnectOptions,
    name: String,
    /// `--db` for a server that keeps its tables in this schema (password included).
    url: String,
    password: String,
}

impl Schema {
    async fn new() -> Option<Schema> {
        let (url, password) = match (
            std::env::var("KPISTREAM_TEST_POSTGRES_URL"),
            std::env::var("KPISTREAM_TEST_DB_PASSWORD"),
        ) {
            (Ok(url), Ok(password)) => (url, password),
            _ if required() => panic!(
                "KPISTREAM_TEST_POSTGRES_URL and KPISTREAM_TEST_DB_PASSWORD must be set under CI=true: scripts/test.sh exports them once scripts/services.sh has started PostgreSQL"
            ),
            _ => {
                eprintln!(
                    "skipped: KPISTREAM_TEST_POSTGRES_URL or KPISTREAM_TEST_DB_PASSWORD is not set (run scripts/services.sh as root and source target/test-services.env)"
                );
                return None;
            }
        };
        let options = PgConnectOptions::from_str(&url)
            .expect("a PostgreSQL URL")
            .password(&password);
        let name = format!("kpi_serve_{:016x}", rand::random::<u64>());
        let mut conn = options
            .connect()
            .await
            .expect("the test PostgreSQL answers");
        conn.execute(format!("CREATE SCHEMA {name}").as_str())
            .await
            .expect("a schema for the test");
        let with_password = url.replacen("://kpistream@", &format!("://kpistream:{password}@"), 1);
        assert_ne!(
            with_password, url,
            "KPISTREAM_TEST_POSTGRES_URL names the role kpistream"
        );
        let separator = if url.contains('?') { '&' } else { '?' };
        Some(Schema {
            url: format!("{with_password}{separator}options=-c%20search_path%3D{name}"),
            options,
            name,
            password,
        })
    }

    /// The URL with one more `-c` setting for the server's sessions.
    fn url_with(&self, setting: &str) -> String {
        format!("{}%20-c%20{setting}", self.url)
    }

    async fn count(&self, table: &str) -> i64 {
        let mut conn = self.options.connect().await.unwrap();
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}.{table}", self.name))
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (options, name) = (self.options.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut conn = options.connect().await.ok()?;
                    conn.execute(format!("DROP SCHEMA {name} CASCADE").as_str())
                        .await
                        .ok()
                })
        })
        .join();
    }
}

fn server_on(url: &str, args: &[&str]) -> TestServer {
    TestServer::start_setup(Setup {
        db: Some(url.to_owned()),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Setup::default()
    })
}

#[tokio::test]
async fn a_server_on_postgres_stores_and_serves_points_across_a_restart() {
    let Some(schema) = Schema::new().await else {
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
        !logs.contains(&schema.password),
        "the database password is not logged:\n{logs}"
    );
}

#[tokio::test]
async fn migrate_then_no_migrate_agree_on_the_schema() {
    let Some(schema) = Schema::new().await else {
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
    assert!(!said.contains(&schema.password), "{said}");

    let migrated = cli(dir.path())
        .args(["migrate", "--db", &schema.url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(said.contains("applied 1 migration(s)"), "{said}");
    assert!(said.contains("kpistream:***@"), "{said}");
    assert!(!said.contains(&schema.password), "{said}");
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
    let Some(schema) = Schema::new().await else {
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
    let Some(schema) = Schema::new().await else {
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
    let seen = next_point(&mut watched).await;
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
