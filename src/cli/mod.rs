//! The command line: one file per verb group. Client verbs talk to the server through
//! [`crate::client`], the same code an SDK user calls.

mod audit;
mod backup;
mod bench;
mod category;
mod connector;
mod connector_fixture;
mod copy;
pub mod exit;
mod grant;
mod key;
mod migrate;
mod notify;
mod org;
mod output;
mod profile;
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
use secrecy::{ExposeSecret, SecretString};

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
    /// Copy the SQLite database to a file, consistently, while the server runs.
    Backup(backup::BackupArgs),
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
    /// Send signed events to URLs, and read the delivery log (org admins).
    #[command(subcommand)]
    Webhook(notify::WebhookCommand),
    /// Email addresses when streams turn stale and when they recover (org admins).
    #[command(subcommand)]
    Alert(notify::AlertCommand),
    /// Check a server and token once and keep them as a profile, for every later command.
    Login(profile::LoginArgs),
    /// Forget a profile.
    Logout(profile::LogoutArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(profile::CompletionArgs),
    /// Run the connector runner: pull every connector of a directory on its schedule
    /// and publish the points to their streams.
    Runner(runner::RunnerArgs),
    /// Measure publish throughput and latency: on a server of its own (--embedded), a
    /// running server, or InfluxDB for comparison.
    Bench(bench::BenchArgs),
}

/// Where the server is and who we are: flags, else `KPISTREAM_*` variables, else the
/// profile (`kpistream login`), else the defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The profile to take the server, token and TLS files from (see kpistream login) [default: default, when it exists].
    #[arg(long, env = "KPISTREAM_PROFILE", global = true)]
    profile: Option<String>,
    /// The server's gRPC address: http://HOST:PORT, or https://HOST:PORT for TLS [default: the profile's, else http://127.0.0.1:50051].
    #[arg(long, env = "KPISTREAM_SERVER", global = true)]
    server: Option<String>,
    /// Bearer token for admin and query calls (default: --token-file, else the profile's).
    #[arg(
        long,
        env = "KPISTREAM_TOKEN",
        hide_env_values = true,
        global = true,
        value_parser = secret_arg
    )]
    token: Option<SecretString>,
    /// File holding the token, as written by the server's first start [default: the profile's token, else data/admin.token].
    #[arg(long, env = "KPISTREAM_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
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

/// The database a maintenance verb works on (`migrate`, `backup`).
#[derive(Debug, Clone, clap::Args)]
pub struct DbArg {
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE [default: sqlite://data/kpistream.db]
    #[arg(
        long,
        env = "KPISTREAM_DB",
        hide_env_values = true,
        default_value = "sqlite://data/kpistream.db",
        hide_default_value = true
    )]
    pub db: String,
}

/// A secret given on the command line or in the environment, kept out of `Debug`.
fn secret_arg(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text.to_owned()))
}

/// The default server address.
const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";
/// The token file of a server started in the current folder.
const DEFAULT_TOKEN_FILE: &str = "data/admin.token";

/// What a client verb uses, each setting from the first place that has it.
struct Settings {
    server: String,
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    profile_token: Option<SecretString>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

impl Settings {
    /// The token: `--token`, else `--token-file`, else the profile's, else the default
    /// token file.
    fn token(&self) -> anyhow::Result<SecretString> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        if self.token_file.is_none() {
            if let Some(token) = &self.profile_token {
                return Ok(token.clone());
            }
        }
        let file = self
            .token_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE));
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "no token: set KPISTREAM_TOKEN, pass --token, point --token-file at the file `kpistream serve` wrote, or run kpistream login once ({} could not be read)",
                file.display()
            )
        })?;
        Ok(SecretString::from(text.trim().to_owned()))
    }
}

impl ServerArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let profile = profile::load(self.profile.as_deref())?.unwrap_or_default();
        Ok(self.over(profile))
    }

    /// [`Self::settings`] for `login`, where a named profile may not exist yet.
    fn settings_for_login(&self) -> anyhow::Result<Settings> {
        let profile = match profile::load(self.profile.as_deref()) {
            Ok(profile) => profile.unwrap_or_default(),
            Err(e) if e.is::<exit::UsageError>() => profile::Profile::default(),
            Err(e) => return Err(e),
        };
        Ok(self.over(profile))
    }

    /// These flags and variables over `profile`. The profile's token goes only to the
    /// profile's server: never to one a flag or variable named instead.
    fn over(&self, profile: profile::Profile) -> Settings {
        let profile_token = match (&self.server, &profile.server) {
            (Some(asked), Some(own)) if asked != own => None,
            (Some(_), None) => None,
            _ => profile.token,
        };
        Settings {
            server: self
                .server
                .clone()
                .or(profile.server)
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
            token: self
                .token
                .as_ref()
                .map(|t| SecretString::from(t.expose_secret().trim().to_owned())),
            token_file: self.token_file.clone(),
            profile_token,
            ca_cert: self.ca_cert.clone().or(profile.ca_cert),
            client_cert: self.client_cert.clone().or(profile.client_cert),
            client_key: self.client_key.clone().or(profile.client_key),
        }
    }

    /// The server address this command talks to.
    fn address(&self) -> anyhow::Result<String> {
        Ok(self.settings()?.server)
    }

    /// Connects with the token from `--token`, `KPISTREAM_TOKEN`, the token file or the
    /// profile.
    async fn connect(&self) -> anyhow::Result<Client> {
        connect_using(&self.settings()?).await
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
        let settings = self.settings()?;
        Ok(Client::connect_with(&settings.server, tls_options(&settings)?).await?)
    }

    /// The CA and client certificate the settings name.
    fn tls_options(&self) -> anyhow::Result<ConnectOptions> {
        tls_options(&self.settings()?)
    }
}

/// Connects as `settings` say, with their token.
async fn connect_using(settings: &Settings) -> anyhow::Result<Client> {
    let options = ConnectOptions {
        token: Some(settings.token()?),
        ..tls_options(settings)?
    };
    Ok(Client::connect_with(&settings.server, options).await?)
}

/// The CA and client certificate of `--ca-cert`, `--client-cert`, `--client-key` (or the
/// profile).
fn tls_options(settings: &Settings) -> anyhow::Result<ConnectOptions> {
    let mut options = ConnectOptions::default();
    if let Some(ca) = &settings.ca_cert {
        options = options.ca_file(ca)?;
    }
    match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => options = options.client_identity_files(cert, key)?,
        (None, None) => {}
        (Some(_), None) => {
            return Err(exit::UsageError(
                "--client-cert needs --client-key (its private key)".into(),
            )
            .into());
        }
        (None, Some(_)) => {
            return Err(exit::UsageError(
                "--client-key needs --client-cert (its certificate)".into(),
            )
            .into());
        }
    }
    Ok(options)
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => args.run().await,
            Command::Migrate(args) => args.run().await,
            Command::Copy(args) => args.run().await,
            Command::Backup(args) => args.run().await,
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
            Command::Webhook(cmd) => cmd.run().await,
            Command::Alert(cmd) => cmd.run().await,
            Command::Login(args) => args.run().await,
            Command::Logout(args) => args.run(),
            Command::Completion(args) => args.run(),
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
                .map(|s| format!("{} ({})", s.id, crate::wire::frequency_name(s.frequency)))
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
