//! `kpistream migrate`: brings a database's schema to this version's, explicitly.

use crate::cli::exit::outln;

/// Applies the database migrations this version needs and says how many ran.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  kpistream migrate --db sqlite://data/kpistream.db\n  KPISTREAM_DB=postgres://kpistream:secret@db.internal/kpistream kpistream migrate\n  kpistream serve --no-migrate   # then every server starts without touching the schema"
)]
pub struct MigrateArgs {
    #[command(flatten)]
    db: super::DbArg,
}

impl MigrateArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let shown = crate::store::redact_url(&self.db.db);
        let (ran, all) = crate::store::migrate(&self.db.db)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate the database {shown}: {e}"))?;
        match ran {
            0 => outln!("{shown}: the schema is up to date ({all} migrations)"),
            n => outln!(
                "{shown}: applied {n} migration(s); the schema is up to date ({all} migrations)"
            ),
        }
        Ok(())
    }
}
