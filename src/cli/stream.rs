//! `kpistream stream …`.

use crate::cli::exit::outln;
use std::path::PathBuf;

use super::output::{Cell, OutputArgs, Record, Rows, time};
use super::{ServerArgs, status};
use crate::client::{NewStream, StreamChanges, StreamFilter, ValueKind};
use crate::period::Frequency;
use crate::proto;
use crate::stream::StreamStatus;
use crate::wire::{frequency_name, status_name, type_name};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FrequencyArg {
    Daily,
    Weekly,
    Monthly,
    Quarterly,
}

impl From<FrequencyArg> for Frequency {
    fn from(f: FrequencyArg) -> Self {
        match f {
            FrequencyArg::Daily => Self::Daily,
            FrequencyArg::Weekly => Self::Weekly,
            FrequencyArg::Monthly => Self::Monthly,
            FrequencyArg::Quarterly => Self::Quarterly,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TypeArg {
    Number,
    Currency,
    Percentage,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusArg {
    Pending,
    Active,
    Stale,
    Disabled,
}

impl From<StatusArg> for StreamStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => Self::Pending,
            StatusArg::Active => Self::Active,
            StatusArg::Stale => Self::Stale,
            StatusArg::Disabled => Self::Disabled,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum StreamCommand {
    /// Create a stream; prints its id and writes its credential (shown once) to a 0600 file.
    #[command(
        after_help = "Example:\n  kpistream stream create --name \"Weekly active users\" --frequency weekly --type number \\\n    --category Product --tz Europe/Paris --credential-out wau.kpik"
    )]
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        frequency: FrequencyArg,
        #[arg(long = "type")]
        value_type: TypeArg,
        /// ISO 4217 code, for --type currency.
        #[arg(long)]
        currency: Option<String>,
        /// IANA time zone used to place timestamps in periods.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// A category that exists (see `kpistream category create`).
        #[arg(long)]
        category: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Share it: user:NAME, team:NAME or org, optionally :read (default) or :manage.
        /// Repeat for several. You manage the streams you create.
        #[arg(long = "grant", value_name = "GRANTEE[:ACCESS]")]
        grants: Vec<String>,
        /// Where to write the credential: a file (mode 0600), or - for standard output.
        #[arg(long)]
        credential_out: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List streams, optionally filtered.
    #[command(
        after_help = "Example:\n  kpistream stream list --category Product --status stale --output json"
    )]
    List {
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        status: Option<StatusArg>,
        /// Case-insensitive part of the name.
        #[arg(long)]
        name: Option<String>,
        /// Only the first N by name (default: all of them, read page by page).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a stream: status, latest period, last data, point count and keys.
    #[command(after_help = "Example:\n  kpistream stream show str_8fK2mQ1xZp4LwT9a")]
    Show {
        /// The stream: its id, or its exact name.
        stream: String,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change a stream's name, description or category (frequency, type, currency and
    /// time zone only while it has no data).
    #[command(
        after_help = "Example:\n  kpistream stream update str_8fK2mQ1xZp4LwT9a --name \"WAU (all platforms)\" --category Growth"
    )]
    Update {
        /// The stream: its id, or its exact name.
        stream: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A category that exists, or "" to remove it.
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        frequency: Option<FrequencyArg>,
        #[arg(long = "type")]
        value_type: Option<TypeArg>,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        tz: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Refuse publishes to a stream until it is enabled again.
    #[command(after_help = "Example:\n  kpistream stream disable str_8fK2mQ1xZp4LwT9a")]
    Disable {
        /// The stream: its id, or its exact name.
        stream: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Accept publishes to a disabled stream again.
    #[command(after_help = "Example:\n  kpistream stream enable str_8fK2mQ1xZp4LwT9a")]
    Enable {
        /// The stream: its id, or its exact name.
        stream: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a stream with its keys, points and revisions, irreversibly.
    #[command(after_help = "Example:\n  kpistream stream delete str_8fK2mQ1xZp4LwT9a --yes")]
    Delete {
        /// The stream: its id, or its exact name.
        stream: String,
        /// Confirms the deletion.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl StreamCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create {
                name,
                frequency,
                value_type,
                currency,
                tz,
                category,
                description,
                grants,
                credential_out,
                server,
            } => {
                let new = NewStream {
                    name,
                    description,
                    category,
                    frequency: frequency.into(),
                    value: value_kind(value_type, currency)?,
                    time_zone: tz,
                    grants,
                };
                let created = server
                    .connect()
                    .await?
                    .create_stream(new)
                    .await
                    .map_err(status)?;
                let stream = &created.stream;
                eprintln!(
                    "created stream {} {:?} ({}, {})",
                    stream.id,
                    stream.name,
                    frequency_name(stream.frequency),
                    type_name(stream)
                );
                super::key::write_credential(
                    &credential_out,
                    &created.credential.expose_secret(),
                    &created.key.key_id,
                )?;
                if credential_out.as_os_str() != "-" {
                    outln!("{}", stream.id);
                }
                Ok(())
            }
            Self::List {
                category,
                status: st,
                name,
                limit,
                output,
                server,
            } => {
                let filter = StreamFilter {
                    category,
                    status: st.map(Into::into),
                    name_contains: name,
                    limit,
                };
                let streams = server
                    .connect()
                    .await?
                    .streams(&filter)
                    .await
                    .map_err(status)?;
                let mut rows = Rows::new(vec![
                    "id",
                    "name",
                    "category",
                    "frequency",
                    "type",
                    "status",
                    "latest_period",
                    "points",
                ]);
                for s in &streams {
                    rows.push(vec![
                        s.id.clone().into(),
                        s.name.clone().into(),
                        Cell::opt(s.category.clone()),
                        frequency_name(s.frequency).into(),
                        type_name(s).into(),
                        status_name(s.status).into(),
                        Cell::opt(s.latest_period.clone()),
                        s.point_count.into(),
                    ]);
                }
                rows.print(&output)
            }
            Self::Show {
                stream,
                output,
                server,
            } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let detail = client.stream(&stream).await.map_err(status)?;
                print_detail(&detail, &output)
            }
            Self::Update {
                stream,
                name,
                description,
                category,
                frequency,
                value_type,
                currency,
                tz,
                server,
            } => {
                let value = match (value_type, currency) {
                    (None, None) => None,
                    (Some(kind), currency) => Some(value_kind(kind, currency)?),
                    (None, Some(code)) => Some(ValueKind::Currency(code)),
                };
                let changes = StreamChanges {
                    name,
                    description,
                    category,
                    frequency: frequency.map(Into::into),
                    value,
                    time_zone: tz,
                };
                let (client, stream) = server.connect_stream(&stream).await?;
                let s = client
                    .update_stream(&stream, changes)
                    .await
                    .map_err(status)?;
                outln!(
                    "updated stream {} {:?} ({}, {}, category {:?})",
                    s.id,
                    s.name,
                    frequency_name(s.frequency),
                    type_name(&s),
                    s.category
                );
                Ok(())
            }
            Self::Disable { stream, server } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let s = client.disable_stream(&stream).await.map_err(status)?;
                outln!(
                    "stream {} is disabled: publishes are refused until it is enabled",
                    s.id
                );
                Ok(())
            }
            Self::Enable { stream, server } => {
                let (client, stream) = server.connect_stream(&stream).await?;
                let s = client.enable_stream(&stream).await.map_err(status)?;
                outln!(
                    "stream {} is enabled (status {})",
                    s.id,
                    status_name(s.status)
                );
                Ok(())
            }
            Self::Delete {
                stream,
                yes,
                server,
            } => {
                if !yes {
                    anyhow::bail!(
                        "deleting stream {stream} removes its keys, points and revisions irreversibly: add --yes to confirm"
                    );
                }
                let (client, stream) = server.connect_stream(&stream).await?;
                let d = client.delete_stream(&stream).await.map_err(status)?;
                outln!(
                    "deleted stream {stream}: {} points, {} revisions and {} keys removed",
                    d.points_deleted,
                    d.revisions_deleted,
                    d.keys_deleted
                );
                Ok(())
            }
        }
    }
}

fn value_kind(kind: TypeArg, currency: Option<String>) -> anyhow::Result<ValueKind> {
    match (kind, currency) {
        (TypeArg::Currency, currency) => Ok(ValueKind::Currency(currency.unwrap_or_default())),
        (_, Some(_)) => anyhow::bail!("--currency goes with --type currency only"),
        (TypeArg::Number, None) => Ok(ValueKind::Number),
        (TypeArg::Percentage, None) => Ok(ValueKind::Percentage),
    }
}

fn print_detail(detail: &proto::StreamDetail, output: &OutputArgs) -> anyhow::Result<()> {
    let s = detail.stream.clone().unwrap_or_default();
    let mut keys = Rows::new(vec!["key", "origin", "created", "last_used", "revoked"]);
    for k in &detail.keys {
        keys.push(vec![
            k.key_id.clone().into(),
            k.origin.clone().into(),
            time(&k.created_at),
            time(&k.last_used_at),
            time(&k.revoked_at),
        ]);
    }
    let record = Record {
        fields: vec![
            ("id", s.id.clone().into()),
            ("name", s.name.clone().into()),
            ("description", Cell::opt(s.description.clone())),
            ("category", Cell::opt(s.category.clone())),
            ("frequency", frequency_name(s.frequency).into()),
            ("type", type_name(&s).into()),
            ("time_zone", s.time_zone.clone().into()),
            ("status", status_name(s.status).into()),
            ("latest_period", Cell::opt(s.latest_period.clone())),
            ("last_data", time(&s.last_data_at)),
            ("points", s.point_count.into()),
            ("created", time(&s.created_at)),
        ],
        lists: vec![("keys", keys)],
    };
    record.print(output)
}
