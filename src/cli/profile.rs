//! Client profiles (`kpistream login`, `logout`) and shell completion
//! (`kpistream completion`).
//!
//! A profile is where a server is and how to talk to it: its address, a token, and the
//! TLS files. `login` checks them against the server and keeps them in
//! `$XDG_CONFIG_HOME/kpistream/profiles.toml` (`~/.config/…` without it), a file of
//! mode 0600 since it holds tokens, so that any verb works from any folder. Flags and
//! environment variables still win over the profile, one setting at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ServerArgs;
use crate::cli::exit::{UsageError, outln};

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// One profile as kept in the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub server: Option<String>,
    /// The bearer token (never shown: `Debug` prints it redacted).
    #[serde(serialize_with = "expose", default)]
    pub token: Option<SecretString>,
    pub ca_cert: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

fn expose<S: serde::Serializer>(token: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(token) => s.serialize_some(token.expose_secret()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ProfileFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// Where profiles are kept.
pub fn profiles_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
                "neither XDG_CONFIG_HOME nor HOME is set: kpistream cannot tell where to keep profiles",
            )?;
            PathBuf::from(home).join(".config")
        }
    };
    Ok(base.join("kpistream").join("profiles.toml"))
}

fn read_file(path: &Path) -> anyhow::Result<ProfileFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            // The file holds tokens: name the place, never quote the text.
            let line = e
                .span()
                .map(|span| text[..span.start].lines().count().max(1));
            anyhow::anyhow!(
                "{}{} is not a profiles file kpistream can read: {}",
                path.display(),
                line.map(|l| format!(" line {l}")).unwrap_or_default(),
                e.message()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ProfileFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_file(path: &Path, file: &ProfileFile) -> anyhow::Result<()> {
    let text = toml::to_string(file).context("profiles as TOML")?;
    crate::secret_file::write_secret_file(path, text.trim_end())
}

/// The profile `name` (or `KPISTREAM_PROFILE`, or the default one): `None` when there
/// is no such profile and none was asked for by name. Without a name, a profiles file
/// that cannot be read (no HOME, a service without access to it, a broken file) means
/// no profile, with a warning: commands given all they need still work.
pub fn load(name: Option<&str>) -> anyhow::Result<Option<Profile>> {
    let file = profiles_path().and_then(|path| Ok((read_file(&path)?, path)));
    let (mut file, path) = match (file, name) {
        (Ok(found), _) => found,
        (Err(e), Some(_)) => return Err(e),
        (Err(e), None) => {
            eprintln!("warning: no profile used: {e:#}");
            return Ok(None);
        }
    };
    match name {
        Some(name) => file.profiles.remove(name).map(Some).ok_or_else(|| {
            UsageError(format!(
                "there is no profile {name:?} in {}: create it with kpistream login --profile {name} --server … --token-file …",
                path.display()
            ))
            .into()
        }),
        None => Ok(file.profiles.remove(DEFAULT_PROFILE)),
    }
}

/// Check a server and token, and keep them as a profile for every later command.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream login --server https://kpi.example.com:50051 --token-file ada.token\n  kpistream login --profile staging --server http://10.0.0.5:50051 --token-file staging.token\n  KPISTREAM_PROFILE=staging kpistream stream list\n  kpistream logout --profile staging"
)]
pub struct LoginArgs {
    #[command(flatten)]
    server: ServerArgs,
}

impl LoginArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let name = self
            .server
            .profile
            .clone()
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        // What the flags and environment say, over what the profile held (if it exists
        // yet: login is how a named profile comes to be).
        let settings = self.server.settings_for_login()?;
        let token = settings.token()?;
        let client = super::connect_using(&settings).await?;
        let me = client.who_am_i().await.map_err(super::status)?;
        let absolute = |p: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
            p.as_ref()
                .map(|p| std::path::absolute(p).with_context(|| format!("{}", p.display())))
                .transpose()
        };
        let profile = Profile {
            server: Some(settings.server.clone()),
            token: Some(token),
            ca_cert: absolute(&settings.ca_cert)?,
            client_cert: absolute(&settings.client_cert)?,
            client_key: absolute(&settings.client_key)?,
        };
        let path = profiles_path()?;
        let mut file = read_file(&path)?;
        file.profiles.insert(name.clone(), profile);
        write_file(&path, &file)?;
        outln!(
            "logged in to {} as {:?} of organisation {:?}: profile {name:?} kept in {} (mode 0600)",
            settings.server,
            me.user,
            me.org_name,
            path.display()
        );
        Ok(())
    }
}

/// Forget a profile (the server is not told: revoke the token with `token revoke`).
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The profile to forget (default: the default profile).
    #[arg(long, env = "KPISTREAM_PROFILE")]
    profile: Option<String>,
}

impl LogoutArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.profile.unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        let path = profiles_path()?;
        let mut file = read_file(&path)?;
        if file.profiles.remove(&name).is_none() {
            return Err(UsageError(format!(
                "there is no profile {name:?} in {}",
                path.display()
            ))
            .into());
        }
        write_file(&path, &file)?;
        outln!(
            "forgot profile {name:?}; its token still works until revoked (kpistream token revoke)"
        );
        Ok(())
    }
}

/// Print a completion script for a shell.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  kpistream completion bash > /etc/bash_completion.d/kpistream\n  kpistream completion zsh > \"${fpath[1]}/_kpistream\"\n  kpistream completion fish > ~/.config/fish/completions/kpistream.fish"
)]
pub struct CompletionArgs {
    shell: clap_complete::Shell,
}

impl CompletionArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let mut command = <super::Cli as clap::CommandFactory>::command();
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut command, "kpistream", &mut out);
        use std::io::Write as _;
        std::io::stdout().lock().write_all(&out)?;
        Ok(())
    }
}
