//! `kpistream audit …`: the organisation's log of admin actions, for org admins.

use super::output::{Cell, OutputArgs, Rows, time};
use super::{ServerArgs, parse_time, status};
use crate::client::AuditFilter;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List admin actions, oldest first: who did what to which target, and when.
    #[command(
        after_help = "Examples:\n  kpistream audit list --actor ada --since 2026-11-01\n  kpistream audit list --target str_8fK2mQ1xZp4LwT9a --output json"
    )]
    List {
        /// Only actions on this target: a stream id, user name, team name, token id…
        #[arg(long, value_name = "ID")]
        target: Option<String>,
        /// Only actions of this user.
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Only actions at or after this time: RFC 3339 or a date (UTC midnight).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<jiff::Timestamp>,
        /// Only actions at or before this time: RFC 3339 or a date (UTC midnight).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<jiff::Timestamp>,
        /// Only the newest N entries, still listed oldest first (default: all of them,
        /// read page by page).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl AuditCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::List {
                target,
                actor,
                since,
                until,
                limit,
                output,
                server,
            } => {
                let filter = AuditFilter {
                    target,
                    actor,
                    since,
                    until,
                    limit,
                };
                let entries = server
                    .connect()
                    .await?
                    .audit(&filter)
                    .await
                    .map_err(status)?;
                let mut rows = Rows::new(vec![
                    "at",
                    "actor",
                    "action",
                    "target_kind",
                    "target",
                    "detail",
                ]);
                for e in &entries {
                    rows.push(vec![
                        time(&e.at),
                        e.actor.clone().into(),
                        e.action.clone().into(),
                        e.target_kind.clone().into(),
                        e.target_id.clone().into(),
                        Cell::opt(e.detail.clone()),
                    ]);
                }
                rows.print(&output)
            }
        }
    }
}
