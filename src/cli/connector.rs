//! `kpistream connector …`: connector definitions. Only `check` exists so far; the
//! runner and its `list`/`run`/`log` verbs come with it.

use std::path::PathBuf;

use crate::connector::check_dir;

#[derive(Debug, clap::Subcommand)]
pub enum ConnectorCommand {
    /// Read and check every connector definition of a directory without running any:
    /// fields, schedules, time zones, credential sources, connections and templates.
    #[command(
        after_help = "Examples:\n  kpistream connector check\n  kpistream connector check /etc/kpistream/connectors"
    )]
    Check {
        /// The directory of connector files (`*.toml`, with an optional `connections.toml`).
        #[arg(default_value = "connectors")]
        dir: PathBuf,
    },
}

impl ConnectorCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Check { dir } => check(dir),
        }
    }
}

fn check(dir: PathBuf) -> anyhow::Result<()> {
    let report = check_dir(&dir);
    for (file, def) in &report.connectors {
        println!(
            "ok: {} ({}, {} {}{}) in {}",
            def.name,
            def.source_kind(),
            def.schedule.describe(),
            def.timezone.as_str(),
            if def.enabled { "" } else { ", disabled" },
            file.display()
        );
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    match report.errors.len() {
        0 if report.connectors.is_empty() => {
            println!("no connector definitions in {}", dir.display());
            Ok(())
        }
        0 => Ok(()),
        n => anyhow::bail!(
            "{n} problem{} in {}",
            if n == 1 { "" } else { "s" },
            dir.display()
        ),
    }
}
