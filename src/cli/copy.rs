//! `kpistream copy`: moves a whole deployment from its SQLite file to PostgreSQL.

use crate::cli::exit::outln;
use std::io::IsTerminal;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::store::{PostgresStore, SqliteStore, copy, redact_url};

/// Copy every organisation, user, token, team, grant, category, stream, key, point,
/// revision, remembered batch id, connector state, run and audit entry from a SQLite
/// database into a new PostgreSQL database.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stop the server first (or accept that what it writes after the copy's snapshot stays behind). The target must be empty: it is migrated, filled in one transaction, and checked table by table.\n\nExample:\n  kpistream copy --from sqlite://data/kpistream.db --to postgres://kpistream:secret@db.internal/kpistream\n  kpistream serve --db postgres://kpistream:secret@db.internal/kpistream"
)]
pub struct CopyArgs {
    /// The SQLite database to read: sqlite://PATH
    #[arg(long, value_name = "URL")]
    from: String,
    /// The PostgreSQL database to fill: postgres://USER:PASSWORD@HOST/DATABASE (created tables, no rows)
    #[arg(
        long,
        value_name = "URL",
        env = "KPISTREAM_COPY_TO",
        hide_env_values = true
    )]
    to: String,
}

impl CopyArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let (from_shown, to_shown) = (redact_url(&self.from), redact_url(&self.to));
        let Some(path) = self.from.strip_prefix("sqlite://") else {
            bail!("--from must be a SQLite database, sqlite://PATH (got {from_shown})");
        };
        if !std::path::Path::new(path.split('?').next().unwrap_or_default()).is_file() {
            bail!("--from {from_shown}: there is no database file at {path}");
        }
        if !(self.to.starts_with("postgres://") || self.to.starts_with("postgresql://")) {
            bail!("--to must be a PostgreSQL database, postgres://USER:PASSWORD@HOST/DATABASE");
        }
        let source = SqliteStore::open_with(&self.from, false)
            .await
            .with_context(|| format!("cannot open {from_shown}"))?;
        let target = PostgresStore::open(&self.to)
            .await
            .with_context(|| format!("cannot open {to_shown}"))?;
        let counts = copy::source_counts(&source).await?;
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let bar = progress_bar(total);
        let mut before = 0u64;
        let mut current = "";
        let copied = copy::copy(&source, &target, |table, done| {
            if table != current {
                before += counts
                    .iter()
                    .find(|(name, _)| *name == current)
                    .map_or(0, |(_, n)| *n);
                current = table;
                bar.set_message(table);
            }
            bar.set_position(before + done);
        })
        .await
        .with_context(|| format!("cannot copy {from_shown} to {to_shown}"))?;
        bar.finish_and_clear();
        for (table, rows) in &copied.tables {
            outln!("{table:<16} {rows:>12}");
        }
        outln!(
            "copied {} rows from {from_shown} to {to_shown}; every table's count matches",
            copied.rows()
        );
        Ok(())
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:40}] {pos}/{len} rows ({eta} left)")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}
