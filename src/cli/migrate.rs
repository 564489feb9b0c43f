//! `kpistream migrate`: brings a database's schema to this version's, explicitly.

use crate::cli::exit::outln;

/// Applies the database migrations this version needs and says how many ran.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  kpistream migrate --db sqlite://data/kpistream.db\n  KPISTREAM_DB=postgres://kpistream:secret@db.internal/kpistream kpistream migrate\n  kpistream serve --no-migrate   # then every server starts without touching the schema"
)]
pub struct MigrateArgs {
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE [default: sqlite://data/kpistream.db]
    #[arg(
        long,
        env = "KPISTREAM_DB",
        hide_env_values = true,
        default_value = "sqlite://data/kpistream.db",
        hide_default_value = true
    )]
    db: String,
}

impl MigrateArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let shown = crate::store::redact_url(&self.db);
        let (ran, all) = crate::store::migrate(&self.db)
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
