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
    /// Database URL: `sqlite://PATH` (the file and its folder are created if missing).
    pub db: String,
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
}

/// Limits enforced on every request.
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
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            http: "127.0.0.1:9090".parse().expect("valid address"),
            admin_token_file: "data/admin.token".into(),
            org_name: "My organisation".into(),
            admin_name: "admin".into(),
            limits: Limits::default(),
            ingest: IngestSettings::default(),
            tls: TlsSettings::default(),
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
}

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
    fn a_typo_is_an_error_naming_the_field() {
        let err = toml::from_str::<ServerConfig>("[limits]\nmax_point = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_point"), "{err}");
    }
}
