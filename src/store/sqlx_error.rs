//! The one place a driver error becomes a [`StoreError`], so that what calls the store
//! (the gRPC mapping, `/healthz`, the CLI) reads what went wrong, not which driver said
//! it. A refused constraint is read through sqlx's `DatabaseError::kind()`, which every
//! backend fills in; what `kind()` does not tell (a full disk, a read-only file, a
//! damaged file) comes from the backend's own codes: SQLite's primary result codes.
//!
//! Messages keep the database's own sentence, which an operator needs, and only that:
//! never the statement or its values (PostgreSQL puts the values of a refused row in
//! the error's detail, which is not read here).

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use sqlx::sqlite::SqliteError;

use super::StoreError;

/// SQLite's primary result codes (the low byte of an extended code), as named in
/// <https://www.sqlite.org/rescode.html>.
mod sqlite_code {
    pub const BUSY: i32 = 5;
    pub const LOCKED: i32 = 6;
    pub const READONLY: i32 = 8;
    pub const IOERR: i32 = 10;
    pub const CORRUPT: i32 = 11;
    pub const FULL: i32 = 13;
    pub const CANTOPEN: i32 = 14;
    pub const CONSTRAINT: i32 = 19;
    pub const NOTADB: i32 = 26;
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match error {
            E::Database(db) => from_database(db.as_ref()),
            E::Migrate(e) => StoreError::from(*e),
            E::RowNotFound => StoreError::NotFound("the row the query expected".into()),
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::ColumnIndexOutOfBounds { .. }
            | E::TypeNotFound { .. } => StoreError::Corrupt(error.to_string()),
            E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::PoolTimedOut
            | E::PoolClosed
            | E::WorkerCrashed
            | E::BeginFailed
            | E::InvalidSavePointStatement
            | E::Configuration(_)
            | E::InvalidArgument(_)
            | E::Encode(_)
            | E::AnyDriverError(_) => StoreError::Unavailable(error.to_string()),
            // sqlx may add variants; until one is classified it stays a fault of the
            // database, as every driver error was before this mapping.
            _ => StoreError::Unavailable(error.to_string()),
        }
    }
}

impl From<MigrateError> for StoreError {
    fn from(error: MigrateError) -> Self {
        StoreError::Migration(error.to_string())
    }
}

fn from_database(db: &dyn DatabaseError) -> StoreError {
    let said = match db.code() {
        Some(code) => format!("{} (code {code})", db.message()),
        None => db.message().to_owned(),
    };
    let code = sqlite_primary_code(db);
    let refused = matches!(
        db.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
    ) || code == Some(sqlite_code::CONSTRAINT);
    if refused {
        return StoreError::Conflict(format!("the database refused the change: {said}"));
    }
    match code {
        Some(sqlite_code::CORRUPT | sqlite_code::NOTADB) => StoreError::Corrupt(said),
        Some(
            sqlite_code::BUSY
            | sqlite_code::LOCKED
            | sqlite_code::READONLY
            | sqlite_code::IOERR
            | sqlite_code::FULL
            | sqlite_code::CANTOPEN,
        ) => StoreError::Unavailable(said),
        // Anything else the database refuses (SQLITE_ERROR, such as a BEGIN on a
        // connection that a failed write left inside a transaction) is a fault of the
        // database too: it was before this mapping, and /healthz must see it.
        Some(_) | None => StoreError::Unavailable(said),
    }
}

/// The primary result code of a SQLite error (sqlx reports the extended one).
fn sqlite_primary_code(db: &dyn DatabaseError) -> Option<i32> {
    let sqlite = db.try_downcast_ref::<SqliteError>()?;
    let extended: i32 = sqlite.code()?.parse().ok()?;
    Some(extended & 0xff)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, SqliteConnection};

    use super::*;

    async fn connect(url: &str) -> SqliteConnection {
        let options = SqliteConnectOptions::from_str(url)
            .unwrap()
            .create_if_missing(true);
        options.connect().await.unwrap()
    }

    async fn run(conn: &mut SqliteConnection, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(sql).execute(conn).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_refused_constraint_is_a_conflict_in_the_databases_words() {
        let mut conn = connect("sqlite::memory:").await;
        run(
            &mut conn,
            "CREATE TABLE t (name TEXT UNIQUE, n INTEGER CHECK (n > 0))",
        )
        .await
        .unwrap();
        run(&mut conn, "INSERT INTO t VALUES ('a', 1)")
            .await
            .unwrap();
        let twice = run(&mut conn, "INSERT INTO t VALUES ('a', 1)").await;
        assert!(
            matches!(&twice, Err(StoreError::Conflict(m)) if m.contains("UNIQUE constraint failed")),
            "{twice:?}"
        );
        let unchecked = run(&mut conn, "INSERT INTO t VALUES ('b', 0)").await;
        assert!(
            matches!(&unchecked, Err(StoreError::Conflict(m)) if m.contains("CHECK constraint failed")),
            "{unchecked:?}"
        );
    }

    #[tokio::test]
    async fn a_write_to_a_read_only_database_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.db");
        let mut conn = connect(&format!("sqlite://{}", path.display())).await;
        run(&mut conn, "CREATE TABLE t (n INTEGER)").await.unwrap();
        let mut read_only = connect(&format!("sqlite://{}?mode=ro", path.display())).await;
        let refused = run(&mut read_only, "INSERT INTO t VALUES (1)").await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("readonly") && m.contains("(code 8)")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.db");
        std::fs::write(&path, "not a database, ".repeat(64)).unwrap();
        let mut conn = connect(&format!("sqlite://{}", path.display())).await;
        let read = run(&mut conn, "SELECT * FROM sqlite_master").await;
        assert!(
            matches!(&read, Err(StoreError::Corrupt(m)) if m.contains("not a database")),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_stored_value_that_does_not_decode_is_corrupt() {
        let mut conn = connect("sqlite::memory:").await;
        let read: Result<i64, StoreError> = sqlx::query_scalar("SELECT 'twelve'")
            .fetch_one(&mut conn)
            .await
            .map_err(StoreError::from);
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    }

    #[test]
    fn a_pool_that_cannot_give_a_connection_is_unavailable() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let error = StoreError::from(error);
            assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        }
        let timed_out = StoreError::from(sqlx::Error::PoolTimedOut).to_string();
        assert!(timed_out.contains("pool timed out"), "{timed_out}");
    }
}
