//! Tests of what the dialects share: pages, passwords kept out of every message,
//! descriptions of a database, named connections. The checks each dialect passes are
//! in `conformance.rs`, run from each dialect's file.

use std::path::PathBuf;

use super::test_db::{Db, ctx, json, open_alone, policy, read_all};
use super::*;
use crate::connector::Duration as D;
use crate::runner::Source as _;

#[tokio::test]
async fn rows_come_in_pages_of_a_thousand() {
    let db = Db::sqlite();
    let source = db.source("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) SELECT i FROM n");
    let mut pages = open_alone(&source, None).await.unwrap();
    assert_eq!(format!("{pages:?}"), "Pages { records_left: 2500 }");
    let mut sizes = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.len());
    }
    assert_eq!(sizes, [1000, 1000, 500]);
}

// Passwords never print ----------------------------------------------------------

const CANARY: &str = "CANARY-db-password-5f1d";

fn with_canary(url: &str, dir: &tempfile::TempDir) -> SqlSource {
    let file: PathBuf = dir.path().join("password");
    std::fs::write(&file, CANARY).unwrap();
    SqlSource {
        connection: None,
        url: Some(url.to_owned()),
        password_env: None,
        password_file: Some(file),
        query: "SELECT 1 AS one".to_owned(),
        statement_timeout: D::secs(5),
    }
}

fn assert_no_canary(e: &FetchError) {
    assert!(!e.to_string().contains(CANARY), "{e}");
    assert!(!format!("{e:?}").contains(CANARY), "{e:?}");
}

#[tokio::test]
async fn a_password_never_appears_in_errors_or_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: connecting fails, and is worth retrying.
    for url in [
        "postgres://kpistream@127.0.0.1:1/db",
        "mysql://kpistream@127.0.0.1:1/db",
    ] {
        let e = read_all(&with_canary(url, &dir), None).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("cannot connect to"), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1/db"), "{e}");
        assert_no_canary(&e);
    }
    // A wrong password is refused by the server, and retrying would not help.
    for db in [Db::postgres(), Db::mysql()].into_iter().flatten() {
        let e = read_all(&with_canary(&db.url, &dir), None)
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert!(e.to_string().contains("refused the connection"), "{e}");
        assert_no_canary(&e);
        let pages = open_alone(&db.source("SELECT 1 AS one"), None)
            .await
            .unwrap();
        assert!(!format!("{pages:?}").contains(CANARY));
    }
}

#[test]
fn descriptions_hold_no_user_or_parameters() {
    assert_eq!(
        describe(
            Dialect::Postgres,
            "postgres://kpi@db.internal:5432/billing?sslmode=require"
        ),
        "PostgreSQL at db.internal:5432/billing"
    );
    assert_eq!(
        describe(Dialect::MySql, "mysql://kpi@db/shop"),
        "MySQL/MariaDB at db/shop"
    );
    assert_eq!(
        describe(Dialect::Sqlite, "sqlite://data/kpi.db?mode=ro"),
        "the SQLite database data/kpi.db"
    );
}

#[tokio::test]
async fn a_named_connection_gives_the_url_and_a_wrong_kind_is_refused() {
    let db = Db::sqlite();
    db.exec(&[
        "CREATE TABLE t (n INT)".to_owned(),
        "INSERT INTO t VALUES (7)".to_owned(),
    ])
    .await;
    let source = SqlSource {
        connection: Some("warehouse".to_owned()),
        url: None,
        password_env: None,
        password_file: None,
        query: "SELECT n FROM t".to_owned(),
        statement_timeout: D::secs(5),
    };
    let connection = Connection::Sql {
        url: db.url.clone(),
        password_env: None,
        password_file: None,
    };
    let database = Database::resolve(&source, Some(&connection)).unwrap();
    let mut pages = open(&database, &source, &ctx(None), &policy())
        .await
        .unwrap();
    assert_eq!(
        json(&pages.next_page().await.unwrap().unwrap()),
        r#"[{"n":7}]"#
    );

    let rest = Connection::Rest {
        base_url: "https://api.example.com".to_owned(),
        auth: None,
    };
    let e = Database::resolve(&source, Some(&rest)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the connection warehouse in connections.toml is a rest connection; this source needs a sql one"
    );
    let e = Database::resolve(&source, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the connection warehouse is not in connections.toml"
    );
}
