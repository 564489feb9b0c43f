//! `kpistream backup`: a consistent copy of a SQLite database, taken while the server
//! runs.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use sqlx::ConnectOptions;

use crate::cli::exit::{UsageError, outln};

/// Copy the SQLite database to a file, consistently, while the server keeps running.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream backup --to /backups/kpistream-$(date +%F).db\n  kpistream backup --db sqlite:///var/lib/kpistream/kpistream.db --to /backups/kpistream.db\n\nTo restore: stop the server, replace its database file with the backup (and remove\nthe -wal and -shm files next to it), start the server. On PostgreSQL, use pg_dump."
)]
pub struct BackupArgs {
    #[command(flatten)]
    db: super::DbArg,
    /// The backup file to write (it must not exist yet); mode 0600.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
}

impl BackupArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let shown = crate::store::redact_url(&self.db.db);
        if !self.db.db.starts_with("sqlite:") {
            return Err(UsageError(format!(
                "kpistream backup copies a SQLite database; {shown} is not one: back up PostgreSQL with pg_dump (or its own backup tools)"
            ))
            .into());
        }
        let options: sqlx::sqlite::SqliteConnectOptions = self
            .db
            .db
            .parse()
            .with_context(|| format!("{shown} is not a SQLite URL"))?;
        let options = options.read_only(true).create_if_missing(false);
        let mut conn = options
            .connect()
            .await
            .with_context(|| format!("cannot open the database {shown}"))?;
        // An empty file of our own, 0600 (the database holds token hashes and the audit
        // log), which VACUUM INTO then fills; it refuses a file that already exists.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.to)
            .with_context(|| {
                format!(
                    "cannot create {} (a backup is never written over an existing file)",
                    self.to.display()
                )
            })?;
        file.flush()?;
        drop(file);
        let target = self
            .to
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", self.to.display()))?;
        // One read transaction: the copy is the database as of one instant, whatever
        // the server commits meanwhile.
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&mut conn)
            .await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&self.to);
            return Err(e)
                .with_context(|| format!("cannot back {shown} up to {}", self.to.display()));
        }
        let size = std::fs::metadata(&self.to)?.len();
        outln!(
            "backed {shown} up to {} ({:.1} MiB, mode 0600)",
            self.to.display(),
            size as f64 / (1024.0 * 1024.0)
        );
        Ok(())
    }
}
