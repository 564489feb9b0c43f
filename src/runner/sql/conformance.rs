//! The checks every dialect passes, each run by a test in `postgres.rs`, `mysql.rs` and
//! `sqlite.rs` with what differs between the databases (column types, the refusal's
//! wording, a slow query). A check given `None` (a database not configured for the
//! tests) does nothing; `Db::postgres` and `Db::mysql` have said so.

use std::time::{Duration, Instant};

use super::test_db::{Db, json, read_all};
use crate::connector::Duration as D;

/// Rows map by column name, with exact decimals, dates and timestamps. `columns` is the
/// table's column list, `at_tz` the literal of its `at_tz` timestamp, and `amount` the
/// JSON the exact amount reads as.
pub(super) async fn rows_map_by_column_name(
    db: Option<Db>,
    columns: &str,
    at_tz: &str,
    amount: &str,
) {
    let Some(db) = db else { return };
    let t = db.table("rows");
    db.exec(&[
        format!("CREATE TABLE {t} {columns}"),
        format!(
            "INSERT INTO {t} VALUES (1, '2026-11-01', '12345678901234567890.1234', 'north', TRUE, '2026-11-01 06:30:00', {at_tz}, 0.25, NULL)"
        ),
    ])
    .await;
    let rows = db
        .query(
            &format!(
                "SELECT id, day, amount, label, paid, at, at_tz, ratio, note FROM {t} ORDER BY id"
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        json(&rows),
        format!(
            r#"[{{"amount":{amount},"at":"2026-11-01T06:30:00","at_tz":"2026-11-01T06:30:00Z","day":"2026-11-01","id":1,"label":"north","note":null,"paid":true,"ratio":0.25}}]"#
        )
    );
    db.exec(&[format!("DROP TABLE {t}")]).await;
}

/// The cursor is a bound parameter, never pasted into the query.
pub(super) async fn cursor_is_bound_as_a_parameter(db: Option<Db>) {
    let Some(db) = db else { return };
    let t = db.table("cursor");
    db.exec(&[
        format!("CREATE TABLE {t} (id INT, name VARCHAR(20))"),
        format!("INSERT INTO {t} VALUES (1, 'a'), (2, 'b')"),
    ])
    .await;
    let query = format!("SELECT id FROM {t} WHERE name = {{{{cursor}}}} ORDER BY id");
    let injected = db.query(&query, Some("x' OR '1'='1")).await.unwrap();
    assert!(
        injected.is_empty(),
        "the cursor was pasted into the query: {injected:?}"
    );
    assert_eq!(
        json(&db.query(&query, Some("b")).await.unwrap()),
        r#"[{"id":2}]"#
    );
    assert!(
        db.query(&query, None).await.unwrap().is_empty(),
        "no cursor binds NULL"
    );
    db.exec(&[format!("DROP TABLE {t}")]).await;
}

/// Writes (including DDL, which commits implicitly in MySQL) are refused by the
/// database itself, with `refusal` in the message.
pub(super) async fn writes_are_refused(db: Option<Db>, refusal: &str) {
    let Some(db) = db else { return };
    let t = db.table("writes");
    let created = db.table("created");
    db.exec(&[
        format!("CREATE TABLE {t} (id INT)"),
        format!("INSERT INTO {t} VALUES (1)"),
    ])
    .await;
    for write in [
        format!("INSERT INTO {t} VALUES (2)"),
        format!("DELETE FROM {t}"),
        format!("CREATE TABLE {created} (a INT)"),
    ] {
        let e = db.query(&write, None).await.unwrap_err();
        assert!(!e.is_transient(), "{write}: {e}");
        assert!(e.to_string().contains(refusal), "{write}: {e}");
    }
    let count = db
        .query(&format!("SELECT COUNT(*) AS n FROM {t}"), None)
        .await
        .unwrap();
    assert_eq!(json(&count), r#"[{"n":1}]"#);
    assert!(
        db.query(&format!("SELECT a FROM {created}"), None)
            .await
            .is_err(),
        "CREATE TABLE ran"
    );
    db.exec(&[format!("DROP TABLE {t}")]).await;
}

/// The `slow` query, over its statement timeout, is cancelled and not retried.
pub(super) async fn slow_query_is_cancelled(db: Option<Db>, slow: &str) {
    let Some(db) = db else { return };
    let mut source = db.source(slow);
    source.statement_timeout = D::secs(1);
    let started = Instant::now();
    let e = read_all(&source, None).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("was cancelled after 1s"), "{e}");
    // One attempt (policy() allows three) stopped near the timeout.
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}: {e}");
}

/// A column `span` of a type kpistream does not map is refused, naming `type_name`.
pub(super) async fn unsupported_type_is_named(db: Option<Db>, query: &str, type_name: &str) {
    let Some(db) = db else { return };
    let e = db.query(query, None).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let message = e.to_string();
    assert!(message.contains("column span"), "{message}");
    assert!(message.contains(type_name), "{message}");
}
