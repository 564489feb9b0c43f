//! `kpistream org …`: organisations, for the server admin.

use crate::cli::exit::outln;
use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::token::{check_token_out, write_secret};
use super::{ServerArgs, status};

#[derive(Debug, clap::Subcommand)]
pub enum OrgCommand {
    /// Create an organisation with its first admin (server admin only); prints its id
    /// and writes the admin's token (shown once) to a 0600 file.
    #[command(
        after_help = "Example:\n  kpistream org create \"Acme Retail\" --admin grace --token-out grace.token\n  KPISTREAM_TOKEN=$(cat grace.token) kpistream user whoami"
    )]
    Create {
        /// The organisation's name.
        name: String,
        /// The name of its first admin.
        #[arg(long = "admin", value_name = "NAME")]
        admin_name: String,
        /// Where to write the admin's token: a file (mode 0600), or - for standard output.
        #[arg(long, value_name = "FILE")]
        token_out: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl OrgCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create {
                name,
                admin_name,
                token_out,
                server,
            } => {
                check_token_out(&token_out)?;
                let org = server
                    .connect()
                    .await?
                    .create_org(&name, &admin_name)
                    .await
                    .map_err(status)?;
                eprintln!(
                    "created organisation {} {name:?} with admin {:?}",
                    org.org_id, org.admin_name
                );
                let owner = format!("token of admin {:?}", org.admin_name);
                write_secret(&token_out, org.token.expose_secret(), &owner)?;
                if token_out.as_os_str() != "-" {
                    outln!("{}", org.org_id);
                }
                Ok(())
            }
        }
    }
}
