//! `kpistream team …`: named groups of users, to share streams with at once.

use super::output::{Cell, OutputArgs, Rows, time};
use super::{ServerArgs, status};
use crate::cli::exit::outln;
use crate::proto;
use crate::text::printable;

#[derive(Debug, clap::Subcommand)]
pub enum TeamCommand {
    /// Create an empty team (org admins).
    #[command(
        after_help = "Example:\n  kpistream team create finance\n  kpistream team add finance ada"
    )]
    Create {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the teams of your organisation with their members.
    #[command(after_help = "Example:\n  kpistream team list --output csv")]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a team and the grants given to it; its members stay (org admins).
    #[command(after_help = "Example:\n  kpistream team delete finance --yes")]
    Delete {
        name: String,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add a user to a team: they read what the team reads from their next call (org admins).
    #[command(after_help = "Example:\n  kpistream team add finance ada")]
    Add {
        team: String,
        user: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a user from a team: what they read only through it is gone with their
    /// next call (org admins).
    #[command(after_help = "Example:\n  kpistream team remove finance ada")]
    Remove {
        team: String,
        user: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl TeamCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create { name, server } => {
                let t = server
                    .connect()
                    .await?
                    .create_team(&name)
                    .await
                    .map_err(status)?;
                outln!("created team {:?}", t.name);
            }
            Self::List { output, server } => {
                let teams = server.connect().await?.teams().await.map_err(status)?;
                let mut rows = Rows::new(vec!["name", "members", "created"]);
                for t in &teams {
                    rows.push(vec![
                        t.name.clone().into(),
                        Cell::List(t.members.clone()),
                        time(&t.created_at),
                    ]);
                }
                rows.print(&output)?;
            }
            Self::Delete { name, yes, server } => {
                if !yes {
                    anyhow::bail!(
                        "deleting team {name:?} removes the grants given to it: add --yes to confirm"
                    );
                }
                server
                    .connect()
                    .await?
                    .delete_team(&name)
                    .await
                    .map_err(status)?;
                outln!("deleted team {name:?} and the grants given to it");
            }
            Self::Add { team, user, server } => {
                let t = server
                    .connect()
                    .await?
                    .add_team_member(&team, &user)
                    .await
                    .map_err(status)?;
                outln!("added {user:?} to team {:?} ({})", t.name, members(&t));
            }
            Self::Remove { team, user, server } => {
                let t = server
                    .connect()
                    .await?
                    .remove_team_member(&team, &user)
                    .await
                    .map_err(status)?;
                outln!("removed {user:?} from team {:?} ({})", t.name, members(&t));
            }
        }
        Ok(())
    }
}

/// "members: ada, bob" or "no members".
fn members(t: &proto::Team) -> String {
    if t.members.is_empty() {
        "no members".to_owned()
    } else {
        format!("members: {}", printable(&t.members.join(", ")))
    }
}
