//! `kpistream serve`.

use crate::cli::exit::outln;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::ServerConfig;
use crate::server::{Application, GrpcSecurity};

/// Runs the ingestion server (gRPC, plus HTTP for /healthz and /metrics).
///
/// Example:
///   kpistream serve --db sqlite://data/kpistream.db --listen 127.0.0.1:50051
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  kpistream serve\n  kpistream serve --config kpistream.toml --listen 0.0.0.0:50051\n  kpistream serve --tls-cert server.pem --tls-key server.key --tls-client-ca ca.pem"
)]
pub struct ServeArgs {
    /// TOML config file; flags and KPISTREAM_* variables override its values.
    #[arg(long, env = "KPISTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE [default: sqlite://data/kpistream.db]
    #[arg(long, env = "KPISTREAM_DB", hide_env_values = true)]
    db: Option<String>,
    /// Do not apply pending database migrations at start: refuse a database behind this version (run `kpistream migrate` first)
    #[arg(long, env = "KPISTREAM_NO_MIGRATE")]
    no_migrate: bool,
    /// Start even if PostgreSQL's synchronous_commit is off (acknowledged publishes could be lost in a database crash)
    #[arg(long, env = "KPISTREAM_ALLOW_ASYNC_COMMIT")]
    allow_async_commit: bool,
    /// gRPC address [default: 127.0.0.1:50051]
    #[arg(long, env = "KPISTREAM_LISTEN")]
    listen: Option<SocketAddr>,
    /// HTTP address for /healthz and /metrics [default: 127.0.0.1:9090]
    #[arg(long, env = "KPISTREAM_HTTP")]
    http: Option<SocketAddr>,
    /// Where a fresh database's admin token is written [default: data/admin.token]
    #[arg(long, env = "KPISTREAM_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Allowed clock skew of signed batches, in seconds [default: 300]
    #[arg(long, env = "KPISTREAM_MAX_SKEW_SECS")]
    max_skew_secs: Option<u64>,
    /// Most points per batch [default: 10000]
    #[arg(long, env = "KPISTREAM_MAX_POINTS_PER_BATCH")]
    max_points_per_batch: Option<usize>,
    /// PEM certificate (chain) of the server: with --tls-key, gRPC is served over TLS only
    #[arg(long, env = "KPISTREAM_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "KPISTREAM_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate that client certificates must be signed by: requires one from every client (mTLS)
    #[arg(long, env = "KPISTREAM_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(db) = self.db {
            config.db = db;
        }
        if self.no_migrate {
            config.migrate = false;
        }
        if self.allow_async_commit {
            config.allow_async_commit = true;
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(http) = self.http {
            config.http = http;
        }
        if let Some(path) = self.admin_token_file {
            config.admin_token_file = path;
        }
        if let Some(skew) = self.max_skew_secs {
            config.ingest.max_skew_secs = skew;
        }
        if let Some(max) = self.max_points_per_batch {
            config.limits.max_points_per_batch = max;
        }
        if let Some(path) = self.tls_cert {
            config.tls.cert = Some(path);
        }
        if let Some(path) = self.tls_key {
            config.tls.key = Some(path);
        }
        if let Some(path) = self.tls_client_ca {
            config.tls.client_ca = Some(path);
        }
        Ok(config)
    }

    pub async fn run(self) -> anyhow::Result<()> {
        crate::telemetry::init_logs();
        crate::telemetry::metrics();
        let config = self.config()?;
        let db = crate::store::redact_url(&config.db);
        let app = Application::build(config).await?;
        outln!(
            "kpistream {} serving database {db}",
            env!("CARGO_PKG_VERSION")
        );
        // Tests and scripts read the address after this exact prefix, up to a space.
        let security = match app.grpc_security() {
            GrpcSecurity::Plain => "",
            GrpcSecurity::Tls => " (TLS)",
            GrpcSecurity::MutualTls => " (mTLS)",
        };
        outln!("gRPC listening on {}{security}", app.grpc_addr());
        outln!(
            "HTTP listening on {} (/healthz, /metrics, /console)",
            app.http_addr()
        );
        app.run(super::shutdown_signal())
            .await
            .context("the server stopped with an error")
    }
}
