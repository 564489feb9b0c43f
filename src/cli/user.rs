//! `kpistream user …`: the users of your organisation, and who you are.

use super::output::{Cell, OutputArgs, Rows, time};
use super::{ServerArgs, status};
use crate::cli::exit::outln;
use crate::client::Role;
use crate::text::printable;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Manages users, teams, categories and every stream of the organisation.
    Admin,
    /// Sees and manages only what is granted to them.
    Member,
    /// Runs connectors (`kpistream runner`): keeps connector state and reads the
    /// organisation's streams, nothing else.
    Runner,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Self::Admin,
            RoleArg::Member => Self::Member,
            RoleArg::Runner => Self::Runner,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user (org admins); give them a token with `kpistream token create --user NAME`.
    #[command(
        after_help = "Example:\n  kpistream user create ada --role member\n  kpistream token create --user ada --token-out ada.token"
    )]
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "member")]
        role: RoleArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the users of your organisation with their role and teams.
    #[command(after_help = "Example:\n  kpistream user list --output json")]
    List {
        /// Only the first N by name (default: all of them, read page by page).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make a user an org admin or a member (org admins).
    #[command(after_help = "Example:\n  kpistream user role ada admin")]
    Role {
        name: String,
        #[arg(value_enum)]
        role: RoleArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a user with their tokens, team memberships and grants (org admins).
    #[command(after_help = "Example:\n  kpistream user delete ada --yes")]
    Delete {
        name: String,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show whom your token belongs to.
    #[command(after_help = "Example:\n  KPISTREAM_TOKEN=$(cat ada.token) kpistream user whoami")]
    Whoami {
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl UserCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create { name, role, server } => {
                let u = server
                    .connect()
                    .await?
                    .create_user(&name, role.into())
                    .await
                    .map_err(status)?;
                outln!(
                    "created user {:?} ({}): they need a token (kpistream token create --user {:?})",
                    u.name,
                    u.role,
                    u.name
                );
            }
            Self::List {
                limit,
                output,
                server,
            } => {
                let users = server.connect().await?.users(limit).await.map_err(status)?;
                let mut rows = Rows::new(vec!["name", "role", "teams", "created"]);
                for u in &users {
                    rows.push(vec![
                        u.name.clone().into(),
                        u.role.clone().into(),
                        Cell::List(u.teams.clone()),
                        time(&u.created_at),
                    ]);
                }
                rows.print(&output)?;
            }
            Self::Role { name, role, server } => {
                let u = server
                    .connect()
                    .await?
                    .set_user_role(&name, role.into())
                    .await
                    .map_err(status)?;
                outln!("user {:?} is now {}", u.name, article(&u.role));
            }
            Self::Delete { name, yes, server } => {
                if !yes {
                    anyhow::bail!(
                        "deleting user {name:?} removes their tokens, team memberships and grants: add --yes to confirm"
                    );
                }
                server
                    .connect()
                    .await?
                    .delete_user(&name)
                    .await
                    .map_err(status)?;
                outln!("deleted user {name:?} with their tokens, team memberships and grants");
            }
            Self::Whoami { server } => {
                let me = server.connect().await?.who_am_i().await.map_err(status)?;
                let also = if me.server_admin {
                    ", and the server admin"
                } else {
                    ""
                };
                outln!(
                    "you are \"{}\", {} of organisation \"{}\" ({}){also}",
                    printable(&me.user),
                    printable(&article(&me.role)),
                    printable(&me.org_name),
                    printable(&me.org_id)
                );
            }
        }
        Ok(())
    }
}

/// "an admin" or "a member".
fn article(role: &str) -> String {
    if role == "admin" {
        "an admin".to_owned()
    } else {
        format!("a {role}")
    }
}
