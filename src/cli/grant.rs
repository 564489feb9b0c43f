//! `kpistream grant …`: who may read or manage a stream.

use super::output::{OutputArgs, Rows, time};
use super::{ServerArgs, status};
use crate::cli::exit::outln;
use crate::proto;
use crate::text::printable;

#[derive(Debug, clap::Subcommand)]
pub enum GrantCommand {
    /// Share a stream with a user, a team or the whole organisation, to read (the
    /// default) or to manage; replaces that grantee's earlier grant.
    #[command(
        after_help = "Examples:\n  kpistream grant add str_8fK2mQ1xZp4LwT9a team:finance\n  kpistream grant add str_8fK2mQ1xZp4LwT9a user:ada:manage\n  kpistream grant add str_8fK2mQ1xZp4LwT9a org"
    )]
    Add {
        /// The stream: its id, or its exact name.
        stream: String,
        /// user:NAME, team:NAME or org, optionally followed by :read (default) or :manage.
        #[arg(value_name = "GRANTEE[:ACCESS]")]
        grant: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Take a grant away: the grantee loses what it gave them with their next call.
    #[command(after_help = "Example:\n  kpistream grant remove str_8fK2mQ1xZp4LwT9a team:finance")]
    Remove {
        /// The stream: its id, or its exact name.
        stream: String,
        /// user:NAME, team:NAME or org.
        grantee: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List who may read or manage a stream (org admins may always do both).
    #[command(after_help = "Example:\n  kpistream grant list str_8fK2mQ1xZp4LwT9a --output json")]
    List {
        /// The stream: its id, or its exact name.
        stream: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl GrantCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Add {
                stream,
                grant,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let grants = client.add_grant(&stream, &grant).await.map_err(status)?;
                outln!("stream {stream} is now shared with {}", summary(&grants));
            }
            Self::Remove {
                stream,
                grantee,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let grants = client
                    .remove_grant(&stream, &grantee)
                    .await
                    .map_err(status)?;
                outln!(
                    "removed the grant of {grantee} on stream {stream}; it is now shared with {}",
                    summary(&grants)
                );
            }
            Self::List {
                stream,
                output,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let grants = client.grants(&stream).await.map_err(status)?;
                let mut rows = Rows::new(vec!["grantee", "access", "created"]);
                for g in &grants {
                    rows.push(vec![
                        g.grantee.clone().into(),
                        g.access.clone().into(),
                        time(&g.created_at),
                    ]);
                }
                rows.print(&output)?;
            }
        }
        Ok(())
    }
}

/// "team:finance (read), user:admin (manage)", or "nobody but the org admins".
fn summary(grants: &[proto::Grant]) -> String {
    if grants.is_empty() {
        return "nobody but the org admins".to_owned();
    }
    grants
        .iter()
        .map(|g| format!("{} ({})", printable(&g.grantee), printable(&g.access)))
        .collect::<Vec<_>>()
        .join(", ")
}
