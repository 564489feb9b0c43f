//! `kpistream token …`: bearer tokens for people and programs. A token's secret is
//! shown once, to the file (or standard output) asked for, and never again.

use crate::cli::exit::outln;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::ExposeSecret;

use super::output::{OutputArgs, Rows, time, time_text};
use super::{ServerArgs, parse_time, status};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token for yourself, or (org admins) for another user; writes it (shown
    /// once) to a 0600 file.
    #[command(
        after_help = "Examples:\n  kpistream token create --user ada --name laptop --expires-in 90d --token-out ada.token\n  kpistream token create --name ci --expires-at 2027-01-01T00:00:00Z --token-out -"
    )]
    Create {
        /// A name to tell it apart in `token list` (default: token).
        #[arg(long)]
        name: Option<String>,
        /// Whose token it is (default: yours).
        #[arg(long)]
        user: Option<String>,
        /// Valid for this long: 30d, 12h, 1 week, 6 months… (default: until revoked).
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
        expires_in: Option<jiff::Span>,
        /// Valid until this time: RFC 3339 (2027-01-01T00:00:00Z) or a date (UTC midnight).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        expires_at: Option<jiff::Timestamp>,
        /// Where to write the token: a file (mode 0600), or - for standard output.
        #[arg(long, value_name = "FILE")]
        token_out: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List tokens (never their secrets): yours, or (org admins) a user's or everybody's.
    #[command(
        after_help = "Examples:\n  kpistream token list\n  kpistream token list --user '*' --output csv"
    )]
    List {
        /// Whose tokens: a user name, or * for every user of the organisation (default: yours).
        #[arg(long)]
        user: Option<String>,
        /// Only the first N (by user, oldest first) (default: all of them, read page by page).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a token: it is refused from its next call on.
    #[command(
        after_help = "Example:\n  kpistream token revoke tok_0193f2c4a8b07d2e9c51f3a6b7d8e9f0"
    )]
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl TokenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create {
                name,
                user,
                expires_in,
                expires_at,
                token_out,
                server,
            } => {
                check_token_out(&token_out)?;
                let expires_at = match expires_in {
                    Some(span) => Some(after(span)?),
                    None => expires_at,
                };
                let (token, secret) = server
                    .connect()
                    .await?
                    .create_token(
                        name.as_deref().unwrap_or_default(),
                        user.as_deref(),
                        expires_at,
                    )
                    .await
                    .map_err(status)?;
                let label = format!(
                    "token {} {:?} of user {:?}",
                    token.id, token.name, token.user
                );
                write_secret(&token_out, secret.expose_secret(), &label)?;
                match &token.expires_at {
                    Some(_) => eprintln!("it expires at {}", time_text(&token.expires_at)),
                    None => eprintln!(
                        "it is valid until revoked (kpistream token revoke {})",
                        token.id
                    ),
                }
                Ok(())
            }
            Self::List {
                user,
                limit,
                output,
                server,
            } => {
                let tokens = server
                    .connect()
                    .await?
                    .tokens(user.as_deref(), limit)
                    .await
                    .map_err(status)?;
                let mut rows = Rows::new(vec![
                    "id",
                    "name",
                    "user",
                    "created",
                    "last_used",
                    "expires",
                    "revoked",
                ]);
                for t in &tokens {
                    rows.push(vec![
                        t.id.clone().into(),
                        t.name.clone().into(),
                        t.user.clone().into(),
                        time(&t.created_at),
                        time(&t.last_used_at),
                        time(&t.expires_at),
                        time(&t.revoked_at),
                    ]);
                }
                rows.print(&output)
            }
            Self::Revoke { id, server } => {
                let t = server
                    .connect()
                    .await?
                    .revoke_token(&id)
                    .await
                    .map_err(status)?;
                outln!(
                    "revoked token {} {:?} of user {:?} at {}: it is refused from now on",
                    t.id,
                    t.name,
                    t.user,
                    time_text(&t.revoked_at)
                );
                Ok(())
            }
        }
    }
}

/// Now plus `span`, counted in UTC so that days and months mean calendar days and months.
fn after(span: jiff::Span) -> anyhow::Result<jiff::Timestamp> {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let then = now
        .checked_add(span)
        .with_context(|| format!("--expires-in {span} is too far away"))?;
    Ok(then.timestamp())
}

/// Refuses, before anything is created, a token file that already exists.
pub fn check_token_out(path: &Path) -> anyhow::Result<()> {
    check_secret_out(path, "--token-out")
}

/// Refuses, before anything is created, a secret's file (given with `flag`) that
/// already exists.
pub fn check_secret_out(path: &Path, flag: &str) -> anyhow::Result<()> {
    if path.as_os_str() != "-" && path.exists() {
        anyhow::bail!(
            "{} already exists: choose another {flag} (a secret's file is never overwritten)",
            path.display()
        );
    }
    Ok(())
}

/// Writes a secret to a 0600 file, or to standard output for `-`. `label` says what it
/// is, for the message on standard error.
pub fn write_secret(path: &Path, secret: &str, label: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        outln!("{secret}");
        eprintln!("{label} printed above: it is shown only this once");
        return Ok(());
    }
    check_token_out(path)?;
    crate::secret_file::write_secret_file(path, secret)?;
    eprintln!(
        "{label} written to {} (mode 0600): it is shown only this once",
        path.display()
    );
    Ok(())
}
