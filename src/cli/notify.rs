//! `kpistream webhook …` and `kpistream alert …`: where the server sends events and
//! freshness alerts (org admins). Rules: `docs/notifications.md`.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::output::{Cell, OutputArgs, Rows, time};
use super::token::{check_secret_out, write_secret};
use super::{ServerArgs, status};
use crate::cli::exit::outln;
use crate::client::{DeliveryTarget, NotifyScope};
use crate::proto;

/// Which streams: one, a category's, or (neither) every stream.
#[derive(Debug, Clone, clap::Args)]
pub struct ScopeArgs {
    /// Only this stream (its id).
    #[arg(long, value_name = "STREAM_ID", conflicts_with = "category")]
    stream: Option<String>,
    /// Only the streams of this category.
    #[arg(long, value_name = "NAME")]
    category: Option<String>,
}

impl ScopeArgs {
    fn scope(self) -> NotifyScope {
        NotifyScope {
            stream_id: self.stream,
            category: self.category,
        }
    }
}

fn scope_text(stream_id: &str, category: &str) -> String {
    match (stream_id, category) {
        ("", "") => "every stream".into(),
        (id, "") => format!("stream {id}"),
        (_, name) => format!("category {name}"),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook: the server POSTs signed JSON events to URL. Writes its signing
    /// secret once.
    #[command(
        after_help = "Examples:\n  kpistream webhook create https://hooks.example.com/kpi --secret-out hook.secret\n  kpistream webhook create https://ops.example.com/in --category Finance --event stream.stale --event stream.recovered --secret-out -"
    )]
    Create {
        /// http:// or https:// URL.
        url: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// An event to send (repeatable): stream.stale, stream.recovered, stream.status,
        /// point.accepted, point.revised (default: all of them).
        #[arg(long = "event", value_name = "EVENT")]
        events: Vec<String>,
        /// Where to write the signing secret: a file (mode 0600), or - for standard output.
        #[arg(long, value_name = "FILE")]
        secret_out: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the organisation's webhooks (never their secrets).
    #[command(after_help = "Example:\n  kpistream webhook list -o json")]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a webhook, with its delivery log and its pending deliveries.
    #[command(after_help = "Example:\n  kpistream webhook delete whk_3kTz9QbV1xYp")]
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a webhook again (after it was disabled by hand or for failing): its
    /// pending deliveries are sent.
    #[command(after_help = "Example:\n  kpistream webhook enable whk_3kTz9QbV1xYp")]
    Enable {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a webhook: nothing is sent to it, new events are not queued for it.
    #[command(after_help = "Example:\n  kpistream webhook disable whk_3kTz9QbV1xYp")]
    Disable {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The delivery log, newest first: of one webhook, of the alert emails (--emails),
    /// or of every target.
    #[command(
        after_help = "Examples:\n  kpistream webhook log whk_3kTz9QbV1xYp\n  kpistream webhook log --emails --limit 0 -o csv"
    )]
    Log {
        /// The webhook (default: every target).
        id: Option<String>,
        /// The alert emails' deliveries.
        #[arg(long, conflicts_with = "id")]
        emails: bool,
        /// The newest N (default 20; 0: the whole log).
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AlertCommand {
    /// Email an address when a stream turns stale and when it recovers (needs the
    /// server's [alerts.smtp]).
    #[command(
        after_help = "Examples:\n  kpistream alert subscribe ops@example.com\n  kpistream alert subscribe finance@example.com --category Finance"
    )]
    Subscribe {
        email: String,
        #[command(flatten)]
        scope: ScopeArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the alert subscriptions.
    #[command(after_help = "Example:\n  kpistream alert list")]
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete an alert subscription.
    #[command(after_help = "Example:\n  kpistream alert unsubscribe sub_8fQ2mZ0aLr4T")]
    Unsubscribe {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn webhook_row(w: &proto::Webhook) -> Vec<Cell> {
    vec![
        w.id.clone().into(),
        w.url.clone().into(),
        scope_text(&w.stream_id, &w.category).into(),
        Cell::List(w.events.clone()),
        if w.disabled_at.is_some() {
            "disabled".into()
        } else {
            "enabled".into()
        },
        w.failures.into(),
        Cell::opt(w.disabled_reason.clone()),
        time(&w.created_at),
    ]
}

const WEBHOOK_HEADERS: [&str; 8] = [
    "id",
    "url",
    "scope",
    "events",
    "state",
    "failures",
    "disabled_reason",
    "created",
];

fn print_webhook(w: &proto::Webhook, verb: &str) -> anyhow::Result<()> {
    outln!(
        "{verb} webhook {} ({})",
        w.id,
        scope_text(&w.stream_id, &w.category)
    );
    Ok(())
}

impl WebhookCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Create {
                url,
                scope,
                events,
                secret_out,
                server,
            } => {
                check_secret_out(&secret_out, "--secret-out")?;
                let (hook, secret) = server
                    .connect()
                    .await?
                    .create_webhook(&url, &scope.scope(), &events)
                    .await
                    .map_err(status)?;
                outln!(
                    "created webhook {} for {}: {}",
                    hook.id,
                    scope_text(&hook.stream_id, &hook.category),
                    hook.events.join(", ")
                );
                let label = format!("the signing secret of webhook {}", hook.id);
                write_secret(&secret_out, secret.expose_secret(), &label)?;
            }
            Self::List { output, server } => {
                let hooks = server.connect().await?.webhooks().await.map_err(status)?;
                let mut rows = Rows::new(WEBHOOK_HEADERS.to_vec());
                for hook in &hooks {
                    rows.push(webhook_row(hook));
                }
                rows.print(&output)?;
            }
            Self::Delete { id, server } => {
                server
                    .connect()
                    .await?
                    .delete_webhook(&id)
                    .await
                    .map_err(status)?;
                outln!("deleted webhook {id}");
            }
            Self::Enable { id, server } => {
                let hook = server
                    .connect()
                    .await?
                    .set_webhook_enabled(&id, true)
                    .await
                    .map_err(status)?;
                print_webhook(&hook, "enabled")?;
            }
            Self::Disable { id, server } => {
                let hook = server
                    .connect()
                    .await?
                    .set_webhook_enabled(&id, false)
                    .await
                    .map_err(status)?;
                print_webhook(&hook, "disabled")?;
            }
            Self::Log {
                id,
                emails,
                limit,
                output,
                server,
            } => {
                let target = match (&id, emails) {
                    (Some(id), _) => DeliveryTarget::Webhook(id),
                    (None, true) => DeliveryTarget::Emails,
                    (None, false) => DeliveryTarget::All,
                };
                let deliveries = server
                    .connect()
                    .await?
                    .deliveries(target, limit)
                    .await
                    .map_err(status)?;
                let mut rows = Rows::new(vec![
                    "id",
                    "event",
                    "event_id",
                    "target",
                    "stream",
                    "state",
                    "attempts",
                    "last_status",
                    "last_error",
                    "created",
                    "last_attempt",
                    "next_attempt",
                ]);
                for d in &deliveries {
                    let target = if d.webhook_id.is_empty() {
                        d.email.clone()
                    } else {
                        d.webhook_id.clone()
                    };
                    rows.push(vec![
                        d.id.into(),
                        d.event.clone().into(),
                        d.event_id.clone().into(),
                        target.into(),
                        Cell::opt(d.stream_id.clone()),
                        d.state.clone().into(),
                        d.attempts.into(),
                        if d.last_status == 0 {
                            Cell::Null
                        } else {
                            d.last_status.into()
                        },
                        Cell::opt(d.last_error.clone()),
                        time(&d.created_at),
                        time(&d.last_attempt_at),
                        time(&d.next_attempt_at),
                    ]);
                }
                rows.print(&output)?;
            }
        }
        Ok(())
    }
}

impl AlertCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Subscribe {
                email,
                scope,
                server,
            } => {
                let s = server
                    .connect()
                    .await?
                    .subscribe_alerts(&email, &scope.scope())
                    .await
                    .map_err(status)?;
                outln!(
                    "subscribed {} to the freshness alerts of {} ({})",
                    s.email,
                    scope_text(&s.stream_id, &s.category),
                    s.id
                );
            }
            Self::List { output, server } => {
                let subscriptions = server
                    .connect()
                    .await?
                    .alert_subscriptions()
                    .await
                    .map_err(status)?;
                let mut rows = Rows::new(vec!["id", "email", "scope", "created"]);
                for s in &subscriptions {
                    rows.push(vec![
                        s.id.clone().into(),
                        s.email.clone().into(),
                        scope_text(&s.stream_id, &s.category).into(),
                        time(&s.created_at),
                    ]);
                }
                rows.print(&output)?;
            }
            Self::Unsubscribe { id, server } => {
                server
                    .connect()
                    .await?
                    .unsubscribe_alerts(&id)
                    .await
                    .map_err(status)?;
                outln!("deleted alert subscription {id}");
            }
        }
        Ok(())
    }
}
