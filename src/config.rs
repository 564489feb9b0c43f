//! Server configuration: defaults, then a TOML file, then `KPISTREAM_*` environment
//! variables and command-line flags (the last two are merged by the CLI parser).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ingest::IngestConfig;

/// Everything `kpistream serve` can be told. Every field may be set in the TOML file
/// given with `--config`; the ones with a flag can also come from the command line or
/// the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Database URL: `sqlite://PATH` (the file and its folder are created if missing)
    /// or `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (the database must exist).
    pub db: String,
    /// Apply pending database migrations at start (default true). With false, a
    /// database behind this version's schema is refused: `kpistream migrate` first.
    pub migrate: bool,
    /// Start on a PostgreSQL whose `synchronous_commit` is `off` (default false): an
    /// acknowledged publish could then be lost if the database server crashes.
    pub allow_async_commit: bool,
    /// Address of the gRPC server. Port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// Address of the HTTP server for `/healthz` and `/metrics`.
    pub http: SocketAddr,
    /// Where the first start writes the admin's token (mode 0600).
    pub admin_token_file: PathBuf,
    /// Name of the organisation created on a fresh database.
    pub org_name: String,
    /// Name of the admin user created on a fresh database.
    pub admin_name: String,
    /// Request and batch limits.
    pub limits: Limits,
    /// Replay protection.
    pub ingest: IngestSettings,
    /// TLS for the gRPC port (off unless `cert` and `key` are set).
    pub tls: TlsSettings,
    /// Freshness alerts and webhooks: checks, retries and the SMTP server.
    pub alerts: crate::notify::settings::AlertSettings,
}

/// Limits enforced on every connection and request. The defaults keep a server with
/// the default connection limit within a few hundred MiB whatever its clients do (see
/// docs/server.md, "Limits").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted, in bytes (default 4 MiB).
    pub max_message_bytes: usize,
    /// Most points in one batch (default 10,000).
    pub max_points_per_batch: usize,
    /// Most concurrent gRPC streams (calls) on one connection (default 200).
    pub max_concurrent_streams: u32,
    /// Deadline for one request, in seconds (default 30). A client's shorter
    /// `grpc-timeout` wins.
    pub request_timeout_secs: u64,
    /// Most open gRPC connections (default 1,024); further ones are closed as soon as
    /// they are accepted. Lowered at start to fit the process's open-files limit.
    pub max_connections: usize,
    /// Most open connections to the HTTP port (`/healthz`, `/metrics`; default 64).
    pub max_http_connections: usize,
    /// Bytes of request messages the whole server receives at once (default 64 MiB).
    /// A message takes its announced length from this budget when it begins and gives
    /// it back once complete; a call that finds the budget spent waits, reading
    /// nothing more from its client. At least `max_message_bytes`.
    pub receive_budget_bytes: usize,
    /// Bytes of request messages one connection receives at once (default 8 MiB), so a
    /// few connections cannot take the whole receive budget. Between
    /// `max_message_bytes` and `receive_budget_bytes`.
    pub connection_receive_bytes: usize,
    /// HTTP/2 flow-control window of one call, in bytes (default 256 KiB): what a
    /// client may send on a call before the server has read it.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window of one connection, in bytes (default 1 MiB).
    pub connection_window_bytes: u32,
    /// Largest block of request headers, in bytes (default 16 KiB).
    pub max_header_bytes: u32,
    /// A request message must arrive in full within this many seconds of its first
    /// byte (default 30); a slower one ends its call with `DEADLINE_EXCEEDED`.
    pub message_timeout_secs: u64,
    /// A new connection that has not started its first call (TLS handshake, HTTP/2
    /// preface, request headers) within this many seconds is closed (default 10).
    pub handshake_timeout_secs: u64,
    /// A connection with no call in progress for this many seconds is closed
    /// (default 300).
    pub idle_timeout_secs: u64,
    /// The server pings each HTTP/2 connection this often, in seconds (default 60)...
    pub keepalive_interval_secs: u64,
    /// ...and closes it when the ping is not answered within this many (default 20).
    pub keepalive_timeout_secs: u64,
    /// On SIGTERM, how many seconds calls in flight get to finish before every
    /// connection still open is closed (default 10).
    pub shutdown_grace_secs: u64,
    /// Points a `Watch` may have queued for its client (default 50,000, five full
    /// batches; a batch larger than this still reaches a watcher that has caught up).
    /// A watcher further behind is ended with `ABORTED` and its queue dropped.
    pub watch_buffer_points: usize,
    /// Streams with their own series on `/metrics` (status, seconds since data, latest
    /// period end; default 1,000, by organisation and name; 0: none). Bounds the
    /// scrape's cardinality: `kpistream_stream_series_omitted` counts the rest.
    pub metrics_stream_series: u32,
}

/// Replay protection of signed batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// How far a batch's `signed_at` may be from the server's clock, in seconds (default 300).
    pub max_skew_secs: u64,
    /// How long an accepted `batch_id` answers replays with its first result, in hours (default 168, 7 days).
    pub dedup_window_hours: u64,
}

/// TLS for the gRPC port. The HTTP port (`/healthz`, `/metrics`) stays plain HTTP: keep
/// it on a loopback address, or behind a proxy that adds TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file with the server's certificate, followed by any intermediate CA
    /// certificates. Setting it and `key` serves gRPC over TLS only (no plain text).
    pub cert: Option<PathBuf>,
    /// PEM file with the private key of `cert` (PKCS#8, PKCS#1 or SEC1). Keep it
    /// readable by the server's user only.
    pub key: Option<PathBuf>,
    /// PEM file with the CA certificate that signs client certificates. Setting it
    /// requires every client to present a certificate signed by this CA (mutual TLS);
    /// the bearer token is still needed for admin and query calls.
    pub client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            db: "sqlite://data/kpistream.db".into(),
            migrate: true,
            allow_async_commit: false,
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            http: "127.0.0.1:9090".parse().expect("valid address"),
            admin_token_file: "data/admin.token".into(),
            org_name: "My organisation".into(),
            admin_name: "admin".into(),
            limits: Limits::default(),
            ingest: IngestSettings::default(),
            tls: TlsSettings::default(),
            alerts: Default::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_points_per_batch: 10_000,
            max_concurrent_streams: 200,
            request_timeout_secs: 30,
            max_connections: 1024,
            max_http_connections: 64,
            receive_budget_bytes: 64 * 1024 * 1024,
            connection_receive_bytes: 8 * 1024 * 1024,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            message_timeout_secs: 30,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            keepalive_interval_secs: 60,
            keepalive_timeout_secs: 20,
            shutdown_grace_secs: 10,
            watch_buffer_points: 50_000,
            metrics_stream_series: 1_000,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_skew_secs: 300,
            dedup_window_hours: 168,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("limits.{setting} {problem}")]
    Limit {
        setting: &'static str,
        problem: String,
    },
}

/// Largest message size the receive budget can account for (its permits count bytes
/// in a `u32`, and HTTP/2 windows stop at 2^31 - 1).
const MAX_MESSAGE_LIMIT: usize = 1 << 30;
/// Largest HTTP/2 flow-control window (RFC 9113, 6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

impl ServerConfig {
    /// Reads a TOML file; unknown fields are errors that name the file, line and field.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks that the limits work together; each error names the setting to fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let limit = |setting, problem: String| Err(ConfigError::Limit { setting, problem });
        if l.max_message_bytes == 0 || l.max_message_bytes > MAX_MESSAGE_LIMIT {
            return limit(
                "max_message_bytes",
                format!("must be between 1 and {MAX_MESSAGE_LIMIT}"),
            );
        }
        if l.connection_receive_bytes < l.max_message_bytes {
            return limit(
                "connection_receive_bytes",
                format!(
                    "({}) must be at least max_message_bytes ({}), or no message of the largest size could ever be received",
                    l.connection_receive_bytes, l.max_message_bytes
                ),
            );
        }
        if l.receive_budget_bytes < l.connection_receive_bytes
            || l.receive_budget_bytes > MAX_MESSAGE_LIMIT * 4
        {
            return limit(
                "receive_budget_bytes",
                format!(
                    "({}) must be at least connection_receive_bytes ({}) and at most {}",
                    l.receive_budget_bytes,
                    l.connection_receive_bytes,
                    MAX_MESSAGE_LIMIT * 4
                ),
            );
        }
        for (setting, value) in [
            ("stream_window_bytes", l.stream_window_bytes),
            ("connection_window_bytes", l.connection_window_bytes),
        ] {
            if value == 0 || value > MAX_WINDOW {
                return limit(setting, format!("must be between 1 and {MAX_WINDOW}"));
            }
        }
        for (setting, value) in [
            ("max_connections", l.max_connections as u64),
            ("max_http_connections", l.max_http_connections as u64),
            (
                "max_concurrent_streams",
                u64::from(l.max_concurrent_streams),
            ),
            ("max_points_per_batch", l.max_points_per_batch as u64),
            ("watch_buffer_points", l.watch_buffer_points as u64),
            ("request_timeout_secs", l.request_timeout_secs),
            ("message_timeout_secs", l.message_timeout_secs),
            ("handshake_timeout_secs", l.handshake_timeout_secs),
            ("idle_timeout_secs", l.idle_timeout_secs),
            ("keepalive_interval_secs", l.keepalive_interval_secs),
            ("keepalive_timeout_secs", l.keepalive_timeout_secs),
        ] {
            if value == 0 {
                return limit(setting, "must be at least 1".into());
            }
        }
        Ok(())
    }

    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            max_skew: Duration::from_secs(self.ingest.max_skew_secs),
            max_points_per_batch: self.limits.max_points_per_batch,
            dedup_window: Duration::from_secs(self.ingest.dedup_window_hours * 3600),
            ..IngestConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config: ServerConfig = toml::from_str("[limits]\nmax_points_per_batch = 5\n").unwrap();
        assert_eq!(config.limits.max_points_per_batch, 5);
        assert_eq!(config.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(config.db, "sqlite://data/kpistream.db");
    }

    #[test]
    fn the_tls_section_names_the_certificate_key_and_client_ca_files() {
        let text = "[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\n";
        let config: ServerConfig = toml::from_str(text).unwrap();
        assert_eq!(config.tls.cert.as_deref(), Some(Path::new("s.pem")));
        assert_eq!(config.tls.key.as_deref(), Some(Path::new("s.key")));
        assert_eq!(config.tls.client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert!(
            ServerConfig::default().tls.cert.is_none(),
            "TLS is off by default"
        );
    }

    #[test]
    fn the_default_limits_pass_their_own_checks() {
        ServerConfig::default()
            .check()
            .expect("the defaults are consistent");
    }

    #[test]
    fn a_connection_share_below_the_message_size_is_refused_naming_both() {
        let config: ServerConfig =
            toml::from_str("[limits]\nconnection_receive_bytes = 1000\n").unwrap();
        let err = config.check().unwrap_err().to_string();
        assert!(
            err.starts_with("limits.connection_receive_bytes (1000)"),
            "{err}"
        );
        assert!(err.contains("max_message_bytes (4194304)"), "{err}");
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let config: ServerConfig = toml::from_str("[limits]\nidle_timeout_secs = 0\n").unwrap();
        let err = config.check().unwrap_err().to_string();
        assert_eq!(err, "limits.idle_timeout_secs must be at least 1");
    }

    #[test]
    fn a_typo_is_an_error_naming_the_field() {
        let err = toml::from_str::<ServerConfig>("[limits]\nmax_point = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_point"), "{err}");
    }
}
