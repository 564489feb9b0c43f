//! The command line: one file per verb group. Client verbs talk to the server through
//! [`crate::client`], the same code an SDK user calls.

mod audit;
mod bench;
mod category;
mod connector;
mod copy;
pub mod exit;
mod grant;
mod key;
mod migrate;
mod org;
mod output;
mod publish;
mod query;
mod runner;
mod serve;
mod stream;
mod team;
mod token;
mod user;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::client::{Client, ConnectOptions};

#[derive(Debug, Parser)]
#[command(
    name = "kpistream",
    version,
    args_override_self = true,
    about = "KPI data streams: signed datapoints, stored exactly, shared with the right people"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ingestion server.
    Serve(serve::ServeArgs),
    /// Apply the database migrations this version needs (serve does it at start unless --no-migrate).
    Migrate(migrate::MigrateArgs),
    /// Move a whole deployment from its SQLite file into a new PostgreSQL database.
    Copy(copy::CopyArgs),
    /// Create, list, show, change, disable and delete streams.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Rotate, revoke, register and list a stream's signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Manage the categories streams are filed under.
    #[command(subcommand)]
    Category(category::CategoryCommand),
    /// Sign and publish datapoints with a stream's credential.
    Publish(publish::PublishArgs),
    /// Read a stream's values, its latest value or a period's revisions.
    Query(query::QueryArgs),
    /// Share a stream with users, teams or the whole organisation, and take it back.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// Create, list, change and delete the users of your organisation; show who you are.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Group users into teams, to share streams with all of them at once.
    #[command(subcommand)]
    Team(team::TeamCommand),
    /// Create, list and revoke the bearer tokens of admin and query calls.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Read your organisation's log of admin actions (org admins).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Create further organisations (the server admin).
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// Check, list, run now, preview, enable and disable connectors, and read their run log.
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
    /// Run the connector runner: pull every connector of a directory on its schedule
    /// and publish the points to their streams.
    Runner(runner::RunnerArgs),
    /// Measure publish throughput and latency: on a server of its own (--embedded), a
    /// running server, or InfluxDB for comparison.
    Bench(bench::BenchArgs),
}

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's gRPC address: http://HOST:PORT, or https://HOST:PORT for TLS.
    #[arg(
        long,
        env = "KPISTREAM_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// Bearer token for admin and query calls (default: read from --token-file).
    #[arg(long, env = "KPISTREAM_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the token, as written by the server's first start.
    #[arg(
        long,
        env = "KPISTREAM_TOKEN_FILE",
        default_value = "data/admin.token",
        global = true
    )]
    token_file: PathBuf,
    /// PEM CA certificate that signed the server's certificate, for https:// with a private CA (default: the public roots).
    #[arg(long, env = "KPISTREAM_CA_CERT", value_name = "FILE", global = true)]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mutual TLS); needs --client-key.
    #[arg(
        long,
        env = "KPISTREAM_CLIENT_CERT",
        value_name = "FILE",
        global = true
    )]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "KPISTREAM_CLIENT_KEY", value_name = "FILE", global = true)]
    client_key: Option<PathBuf>,
}

impl ServerArgs {
    /// Connects with the token from `--token`, `KPISTREAM_TOKEN` or the token file.
    async fn connect(&self) -> anyhow::Result<Client> {
        let token = match &self.token {
            Some(t) => SecretString::from(t.trim().to_owned()),
            None => {
                let text = std::fs::read_to_string(&self.token_file).with_context(|| {
                    format!(
                        "no token: set KPISTREAM_TOKEN, pass --token, or point --token-file at the file `kpistream serve` wrote ({} could not be read)",
                        self.token_file.display()
                    )
                })?;
                SecretString::from(text.trim().to_owned())
            }
        };
        let options = ConnectOptions {
            token: Some(token),
            ..self.tls_options()?
        };
        Ok(Client::connect_with(&self.server, options).await?)
    }

    /// Connects, and finds the stream `reference` names: its id, or its exact name
    /// among the streams this token can see (several streams of that name are an error
    /// listing them).
    async fn connect_stream(&self, reference: &str) -> anyhow::Result<(Client, String)> {
        let client = self.connect().await?;
        let id = stream_id(&client, reference).await?;
        Ok((client, id))
    }

    /// Connects without a token (publishing needs none).
    async fn connect_anonymous(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_with(&self.server, self.tls_options()?).await?)
    }

    /// The CA and client certificate from `--ca-cert`, `--client-cert`, `--client-key`.
    fn tls_options(&self) -> anyhow::Result<ConnectOptions> {
        let mut options = ConnectOptions::default();
        if let Some(ca) = &self.ca_cert {
            options = options.ca_file(ca)?;
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => options = options.client_identity_files(cert, key)?,
            (None, None) => {}
            (Some(_), None) => anyhow::bail!("--client-cert needs --client-key (its private key)"),
            (None, Some(_)) => anyhow::bail!("--client-key needs --client-cert (its certificate)"),
        }
        Ok(options)
    }
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => args.run().await,
            Command::Migrate(args) => args.run().await,
            Command::Copy(args) => args.run().await,
            Command::Stream(cmd) => cmd.run().await,
            Command::Key(cmd) => cmd.run().await,
            Command::Category(cmd) => cmd.run().await,
            Command::Publish(args) => args.run().await,
            Command::Query(args) => args.run().await,
            Command::Grant(cmd) => cmd.run().await,
            Command::User(cmd) => cmd.run().await,
            Command::Team(cmd) => cmd.run().await,
            Command::Token(cmd) => cmd.run().await,
            Command::Audit(cmd) => cmd.run().await,
            Command::Org(cmd) => cmd.run().await,
            Command::Connector(cmd) => cmd.run().await,
            Command::Runner(args) => args.run().await,
            Command::Bench(args) => args.run().await,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The id of the stream `reference` names: a generated id (`str_` and 16 characters)
/// as it is, otherwise the one stream with exactly that name; no stream of that name
/// leaves the text to be tried as an id (the server then answers whether it exists).
async fn stream_id(client: &Client, reference: &str) -> anyhow::Result<String> {
    let looks_like_id = reference.len() == 20 && reference.starts_with("str_");
    if looks_like_id {
        return Ok(reference.to_owned());
    }
    let filter = crate::client::StreamFilter {
        name_contains: Some(reference.to_owned()),
        ..Default::default()
    };
    let named: Vec<_> = client
        .streams(&filter)
        .await
        .map_err(status)?
        .into_iter()
        .filter(|s| s.name == reference)
        .collect();
    match named.as_slice() {
        [] => Ok(reference.to_owned()),
        [one] => Ok(one.id.clone()),
        several => {
            let ids: Vec<String> = several
                .iter()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s.id,
                        crate::cli::stream::frequency_name(s.frequency)
                    )
                })
                .collect();
            Err(exit::UsageError(format!(
                "{} streams are named {:?}: name one by its id: {}",
                several.len(),
                crate::text::printable(reference),
                ids.join(", ")
            ))
            .into())
        }
    }
}

/// Turns a gRPC status into an error that reads as a sentence and keeps its code
/// (for the exit code). The server's message may echo text a client chose: it is made
/// printable here.
pub(crate) fn status(err: tonic::Status) -> anyhow::Error {
    // What tonic says when an HTTP server that is not gRPC answered: most likely the
    // address is kpistream's own HTTP port (`/healthz`, `/metrics`).
    if err.message().starts_with("grpc-status header missing") {
        let http = err
            .message()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        return anyhow::Error::new(exit::UsageError(format!(
            "the server answered plain HTTP (status {http}), not gRPC: --server must name kpistream's gRPC address (serve --listen, port 50051 by default), not its HTTP port (serve --http: /healthz and /metrics)"
        )));
    }
    anyhow::Error::new(exit::StatusError {
        code: err.code(),
        message: crate::text::printable(err.message()).into_owned(),
    })
}

/// A time on the command line: RFC 3339 (`2026-11-23T09:30:00Z`) or a date, taken as
/// midnight UTC.
pub(crate) fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            format!("{text:?} is not a time: write 2026-11-23T09:30:00Z (RFC 3339) or 2026-11-23")
        })
}
