//! `kpistream category …`.

use super::output::{OutputArgs, Rows, time};
use super::{ServerArgs, status};
use crate::cli::exit::outln;

#[derive(Debug, clap::Subcommand)]
pub enum CategoryCommand {
    /// Create a category.
    #[command(after_help = "Example:\n  kpistream category create Product")]
    Create {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List categories with how many streams use each.
    #[command(after_help = "Example:\n  kpistream category list --output csv")]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Rename a category; its streams follow.
    #[command(after_help = "Example:\n  kpistream category rename Product Growth")]
    Rename {
        name: String,
        new_name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a category no stream uses.
    #[command(after_help = "Example:\n  kpistream category delete Growth")]
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl CategoryCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create { name, server } => {
                let c = server
                    .connect()
                    .await?
                    .create_category(&name)
                    .await
                    .map_err(status)?;
                outln!("created category {:?}", c.name);
            }
            Self::List { output, server } => {
                let categories = server.connect().await?.categories().await.map_err(status)?;
                let mut rows = Rows::new(vec!["name", "streams", "created"]);
                for c in &categories {
                    rows.push(vec![
                        c.name.clone().into(),
                        c.stream_count.into(),
                        time(&c.created_at),
                    ]);
                }
                rows.print(&output)?;
            }
            Self::Rename {
                name,
                new_name,
                server,
            } => {
                let c = server
                    .connect()
                    .await?
                    .rename_category(&name, &new_name)
                    .await
                    .map_err(status)?;
                outln!(
                    "renamed category {name:?} to {:?} ({} streams)",
                    c.name,
                    c.stream_count
                );
            }
            Self::Delete { name, server } => {
                server
                    .connect()
                    .await?
                    .delete_category(&name)
                    .await
                    .map_err(status)?;
                outln!("deleted category {name:?}");
            }
        }
        Ok(())
    }
}
