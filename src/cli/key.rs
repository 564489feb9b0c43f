//! `kpistream key …`.

use crate::cli::exit::outln;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

use super::output::{OutputArgs, Rows, time, time_text};
use super::{ServerArgs, status};

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Add a new generated key; earlier keys keep working until revoked.
    #[command(
        after_help = "Example:\n  kpistream key rotate str_8fK2mQ1xZp4LwT9a --credential-out wau-2.kpik"
    )]
    Rotate {
        /// The stream: its id, or its exact name.
        stream: String,
        /// Where to write the new credential: a file (mode 0600), or - for standard output.
        #[arg(long)]
        credential_out: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a key: its signatures are refused from now on.
    #[command(after_help = "Example:\n  kpistream key revoke str_8fK2mQ1xZp4LwT9a key_Q2v9XbT1cE")]
    Revoke {
        /// The stream: its id, or its exact name.
        stream: String,
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Register your own Ed25519 public key (hex or base64url), so the private key never leaves you.
    #[command(
        after_help = "Example:\n  kpistream key add str_8fK2mQ1xZp4LwT9a --public-key d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )]
    Add {
        /// The stream: its id, or its exact name.
        stream: String,
        #[arg(long)]
        public_key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a stream's keys.
    #[command(after_help = "Example:\n  kpistream key list str_8fK2mQ1xZp4LwT9a")]
    List {
        /// The stream: its id, or its exact name.
        stream: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl KeyCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Rotate {
                stream,
                credential_out,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let (key, credential) = client.rotate_key(&stream).await.map_err(status)?;
                write_credential(&credential_out, &credential.expose_secret(), &key.key_id)?;
                eprintln!("older keys of stream {stream} keep working until you revoke them");
                Ok(())
            }
            Self::Revoke {
                stream,
                key,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let k = client.revoke_key(&stream, &key).await.map_err(status)?;
                outln!(
                    "revoked key {} of stream {stream} at {}",
                    k.key_id,
                    time_text(&k.revoked_at)
                );
                Ok(())
            }
            Self::Add {
                stream,
                public_key,
                server,
            } => {
                let bytes = decode_key(&public_key)?;
                let (client, stream) = server.connect_stream(&stream).await?;
                let k = client.add_key(&stream, &bytes).await.map_err(status)?;
                outln!("registered public key as {} of stream {stream}", k.key_id);
                outln!(
                    "sign with credential kpik1.{stream}.{}.<your seed>",
                    k.key_id
                );
                Ok(())
            }
            Self::List {
                stream,
                output,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let keys = client.keys(&stream).await.map_err(status)?;
                let mut rows = Rows::new(vec![
                    "key",
                    "origin",
                    "public_key",
                    "created",
                    "last_used",
                    "revoked",
                ]);
                for k in &keys {
                    rows.push(vec![
                        k.key_id.clone().into(),
                        k.origin.clone().into(),
                        hex::encode(&k.public_key).into(),
                        time(&k.created_at),
                        time(&k.last_used_at),
                        time(&k.revoked_at),
                    ]);
                }
                rows.print(&output)
            }
        }
    }
}

fn decode_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let text = text.trim();
    if let Ok(bytes) = hex::decode(text) {
        return Ok(bytes);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .context("the public key is neither hex nor base64url")
}

/// Writes a credential to a 0600 file, or to standard output for `-`.
pub fn write_credential(path: &Path, credential: &str, key_id: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        outln!("{credential}");
        eprintln!("credential of key {key_id} printed above: it is shown only this once");
        return Ok(());
    }
    if path.exists() {
        anyhow::bail!(
            "{} already exists: choose another --credential-out (a credential is never overwritten)",
            path.display()
        );
    }
    crate::secret_file::write_secret_file(path, credential)?;
    eprintln!(
        "credential of key {key_id} written to {} (mode 0600): it is shown only this once",
        path.display()
    );
    Ok(())
}
