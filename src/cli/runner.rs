//! `kpistream runner`: the connector runner process.

use std::path::PathBuf;

use anyhow::Context;

use super::ServerArgs;
use crate::connector::Duration;
use crate::runner::process::{RunnerConfig, default_runner_id, run};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream runner\n  kpistream runner --connectors /etc/kpistream/connectors --metrics-addr 0.0.0.0:9465"
)]
pub struct RunnerArgs {
    /// The directory of connector files; added, changed and removed files are picked
    /// up without a restart.
    #[arg(long, env = "KPISTREAM_CONNECTORS", default_value = "connectors")]
    connectors: PathBuf,
    /// This runner's id on the server (default: host name and process id). Leases are
    /// held in its name.
    #[arg(long, env = "KPISTREAM_RUNNER_ID")]
    runner_id: Option<String>,
    /// How long a slot's lease lasts without renewal: a runner that dies frees its
    /// running slots after this long (running slots renew it every third of it).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// How often the connector directory is checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// Where the runner serves /metrics and /healthz; "off" serves nothing.
    #[arg(
        long,
        env = "KPISTREAM_RUNNER_METRICS_ADDR",
        default_value = "127.0.0.1:9465"
    )]
    metrics_addr: String,
    #[command(flatten)]
    server: ServerArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    Duration::try_from(text.to_owned())
}

impl RunnerArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        crate::telemetry::init_logs();
        let metrics_addr = match self.metrics_addr.as_str() {
            "off" => None,
            addr => Some(addr.parse().with_context(|| {
                format!(
                    "--metrics-addr {addr:?} is not an address such as 127.0.0.1:9465 (or \"off\")"
                )
            })?),
        };
        if !self.connectors.is_dir() {
            anyhow::bail!(
                "the connector directory {} does not exist (pass --connectors DIR)",
                self.connectors.display()
            );
        }
        let client = self.server.connect().await?;
        let config = RunnerConfig {
            dir: self.connectors,
            runner_id: self.runner_id.unwrap_or_else(default_runner_id),
            lease_ttl: self.lease_ttl.0,
            reload_every: self.reload_interval.0,
            metrics_addr,
        };
        run(client, config, super::shutdown_signal()).await
    }
}
