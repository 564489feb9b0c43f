//! Connector definitions: one TOML file per connector in `connectors/`, read and checked
//! by [`load_dir`]. The `///` docs on these structs are the user reference
//! (`docs/connectors.md` repeats them). No secret is ever stored here: only the names of
//! the environment variables or files that hold them, read later as `SecretString`s.
//!
//! `kpistream runner` ([`crate::runner`]) fires them; `kpistream connector check` only
//! reads and checks them.

mod check;
mod command;
mod load;
mod rest;
mod schedule;
mod sql;

use std::path::PathBuf;

use serde::Deserialize;

pub use command::{CommandSource, OutputFormat};
pub use load::{
    CONNECTIONS_FILE, Connection, DefinitionError, DirReport, check_dir, load_connections,
    load_dir, load_file,
};
pub use rest::{ApiKeyPlacement, Method, Pagination, RestAuth, RestSource};
pub use schedule::{Duration, Schedule, TimeZoneName};
pub use sql::SqlSource;

/// One connector: where it pulls from, when, and which stream it publishes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorDef {
    /// Unique name of the connector across the directory (used by `connector run NAME`,
    /// in logs and in alerts). Letters, digits, `-` and `_`.
    pub name: String,
    /// Whether the runner fires it (default `true`). Write `enabled = false` in a new
    /// file until its mapping has been checked.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Name of the environment variable holding the stream's credential (the text
    /// `kpistream stream create` printed). Exactly one of `credential_env` and
    /// `credential_file`; a credential is never written inline.
    pub credential_env: Option<String>,
    /// Path of a file holding the stream's credential (relative paths are read from the
    /// runner's working directory). Keep it mode 0600.
    pub credential_file: Option<PathBuf>,
    /// When to run: a standard 5-field cron expression (`minute hour day-of-month month
    /// day-of-week`, day 0 or 7 is Sunday) such as `"0 6 * * *"`, or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`.
    pub schedule: Schedule,
    /// IANA time zone the schedule is read in (default `"UTC"`), e.g. `"Europe/Paris"`.
    #[serde(default)]
    pub timezone: TimeZoneName,
    /// Also run once when the runner starts (default `false`).
    #[serde(default)]
    pub run_on_start: bool,
    /// Scheduled slots missed while no runner was up, found when a runner starts:
    /// `"skip"` (default: the next slot runs as usual, and a cursor makes it pull what
    /// the missed ones would have), `"latest"` (run the newest missed slot at once) or
    /// `"all"` (run every missed slot, oldest first, at most 1,000).
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Failed runs in a row after which the connector is disabled and its alert targets
    /// are told (default 10).
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: u32,
    /// How transient errors (connect, timeout, 5xx, 429) within one run are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Who is told when the connector is disabled or recovers.
    #[serde(default)]
    pub alerts: Alerts,
    /// What to do with a record for a period that already has a value: `"replace"`
    /// (default: publish it as a new revision) or `"keep"` (skip it).
    #[serde(default)]
    pub on_existing: OnExisting,
    /// Conditions a record must meet to be published (default: every record).
    pub filter: Option<Filter>,
    /// The field or column that makes pulls incremental (default: every run pulls all).
    pub cursor: Option<Cursor>,
    /// How much to pull again before the cursor on every run, for sources that restate
    /// the past: a span such as `"7d"` or `"48h"`, or a number of the stream's periods
    /// (`lookback = 3`). Needs a timestamp `[cursor]`; `{{cursor}}` then reads the start
    /// of the window. Default: none.
    pub lookback: Option<Lookback>,
    /// How a record becomes a datapoint.
    pub mapping: Mapping,
    /// Aggregate each period's records into one value (default: one record per period,
    /// the later record of a period wins).
    pub aggregate: Option<Aggregate>,
    /// Where the records come from.
    pub source: Source,
}

impl ConnectorDef {
    /// The source's kind, as written in `type`.
    pub fn source_kind(&self) -> &'static str {
        match self.source {
            Source::Rest(_) => "rest",
            Source::Sql(_) => "sql",
            Source::Command(_) => "command",
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_max_failures() -> u32 {
    10
}

/// Retries of transient errors within one run: exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts of one request, the first included (default 5; 1 means no retry).
    pub max_attempts: u32,
    /// Wait before the first retry (default `"1s"`); doubled at every retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts (default `"5m"`). A `Retry-After` header is
    /// honoured up to this bound.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::secs(1),
            max_backoff: Duration::secs(300),
        }
    }
}

/// Alert targets, told when the connector is disabled and when it recovers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// An email over SMTP.
    pub email: Option<EmailAlert>,
    /// A JSON POST to a URL.
    pub webhook: Option<WebhookAlert>,
}

/// Email alerts. The SMTP server's address and credentials come from environment
/// variables named here, so one file works in every environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAlert {
    /// Recipients' addresses.
    pub to: Vec<String>,
    /// Sender's address.
    pub from: String,
    /// Environment variable holding the SMTP server's host name (default `"SMTP_HOST"`).
    #[serde(default = "default_smtp_host_env")]
    pub smtp_host_env: String,
    /// Environment variable holding the SMTP port (default `"SMTP_PORT"`; 587 if unset).
    #[serde(default = "default_smtp_port_env")]
    pub smtp_port_env: String,
    /// Upgrade the connection with STARTTLS (default `true`).
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// Environment variable holding the SMTP user name (none: no authentication).
    pub smtp_username_env: Option<String>,
    /// Environment variable holding the SMTP password.
    pub smtp_password_env: Option<String>,
}

fn default_smtp_host_env() -> String {
    "SMTP_HOST".into()
}

fn default_smtp_port_env() -> String {
    "SMTP_PORT".into()
}

/// Webhook alerts: a JSON document POSTed to a URL. Exactly one of `url` and `url_env`
/// (use `url_env` when the URL itself is a secret, as chat webhooks are).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAlert {
    /// The URL, `http://` or `https://`.
    pub url: Option<String>,
    /// Environment variable holding the URL.
    pub url_env: Option<String>,
}

/// What a runner does at start with the slots missed while no runner was up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Nothing: the next scheduled slot runs as usual.
    #[default]
    Skip,
    /// The newest missed slot runs at once.
    Latest,
    /// Every missed slot runs, oldest first, one after the other.
    All,
}

/// What a record for a period that already has a value does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExisting {
    /// Publish it: the stored value gets a new revision.
    #[default]
    Replace,
    /// Skip it: the first value stays.
    Keep,
}

/// Record filter: `conditions` combined by `match`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `"all"` (default): every condition must hold; `"any"`: one is enough.
    #[serde(rename = "match", default)]
    pub match_: Match,
    /// The conditions, for example
    /// `conditions = [{ field = "status", equals = "paid" }, { field = "amount", gt = 0 }]`.
    pub conditions: Vec<Condition>,
}

/// How a filter's conditions combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// Every condition holds.
    #[default]
    All,
    /// At least one condition holds.
    Any,
}

/// One condition on a record field: `field` and exactly one operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The record field: a JSONPath for REST (`"$.status"`), a column for SQL, a key or
    /// header for a command.
    pub field: String,
    /// The field equals this string, number or boolean.
    pub equals: Option<toml::Value>,
    /// The field is missing or differs from this value.
    pub not_equals: Option<toml::Value>,
    /// The field, as text, contains this string.
    pub contains: Option<String>,
    /// The field is greater than this number (or, for a string, sorts after it).
    pub gt: Option<toml::Value>,
    /// The field is less than this number (or, for a string, sorts before it).
    pub lt: Option<toml::Value>,
    /// `true`: the field is present and not null; `false`: it is missing or null.
    pub exists: Option<bool>,
}

/// The cursor of incremental pulls: the runner keeps the greatest value seen and the
/// next run pulls only records after it (`{{cursor}}` in the source).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The record field holding it (JSONPath for REST, column for SQL, key for a
    /// command), usually a timestamp or an increasing id.
    pub field: String,
    /// Value of `{{cursor}}` on the first run (default: empty).
    pub initial: Option<String>,
}

/// How far before the cursor each run pulls again.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum Lookback {
    /// This many of the stream's periods before the cursor's period.
    Periods(u32),
    /// A span of calendar time (`"7d"`, `"48h"`, `"2w"`), counted in the stream's time
    /// zone.
    Span(jiff::Span),
}

impl TryFrom<toml::Value> for Lookback {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, String> {
        let how =
            "write a span such as \"7d\", \"48h\" or \"2w\", or a number of periods such as 3";
        match value {
            toml::Value::Integer(n) if n > 0 => u32::try_from(n)
                .map(Self::Periods)
                .map_err(|_| format!("{n} periods is too many")),
            toml::Value::String(text) => match text.parse::<jiff::Span>() {
                Ok(span) if span.is_positive() => Ok(Self::Span(span)),
                _ => Err(format!("{text:?} is not a positive span of time: {how}")),
            },
            other => Err(format!("{other} is not a lookback: {how}")),
        }
    }
}

/// What `aggregate.group_credential_file` holds where each group's value goes.
pub const GROUP_PLACEHOLDER: &str = "{{group}}";

/// Each period's records aggregated into the period's one value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// `"count"` (records), `"sum"`, `"min"`, `"max"`, `"avg"` (of `mapping.value`),
    /// `"first"`, `"last"` (`mapping.value` of the period's first or last record, in the
    /// source's order) or `"count_distinct"` (distinct values of `field`).
    pub function: AggregateFunction,
    /// `count_distinct` only: the record field whose distinct values are counted.
    pub field: Option<String>,
    /// `avg` only: decimals kept, rounded half away from zero (default 4).
    #[serde(default = "default_avg_scale")]
    pub scale: u32,
    /// A record field whose values split the aggregate into groups, each published to
    /// a stream of its own (besides the total, which goes to the connector's stream).
    /// Needs `group_credential_file`.
    pub group_by: Option<String>,
    /// The credential file of each group's stream: a path holding `{{group}}`, which
    /// becomes the group's value (read like `credential_file`). Each group's stream has
    /// the frequency and time zone of the connector's own stream, which gets the total.
    pub group_credential_file: Option<String>,
}

fn default_avg_scale() -> u32 {
    4
}

/// How a period's records make its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFunction {
    /// How many records.
    Count,
    /// The sum of their values.
    Sum,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The mean value, rounded to `scale` decimals.
    Avg,
    /// The value of the period's first record.
    First,
    /// The value of the period's last record.
    Last,
    /// How many distinct values of `field`.
    CountDistinct,
}

impl AggregateFunction {
    /// Its name in a connector file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Avg => "avg",
            Self::First => "first",
            Self::Last => "last",
            Self::CountDistinct => "count_distinct",
        }
    }

    /// Whether it reads `mapping.value` (`count` and `count_distinct` do not).
    pub fn reads_value(self) -> bool {
        !matches!(self, Self::Count | Self::CountDistinct)
    }
}

/// How one record becomes one datapoint: its period (or timestamp), value and external
/// id. Fields are JSONPath expressions relative to the record for REST (`"$.month"`),
/// column names for SQL, keys or CSV headers for a command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The field holding the period in the stream's notation (`"2026-11"`, `"2026-W48"`).
    /// Exactly one of `period` and `timestamp`.
    pub period: Option<String>,
    /// The field holding an RFC 3339 timestamp, placed into the stream's period.
    pub timestamp: Option<String>,
    /// The field holding the value, an exact decimal (a number or a string). Not used
    /// (and may be left out) when `[aggregate]` counts records.
    pub value: Option<String>,
    /// The field identifying the source record, stored with the point (optional).
    pub external_id: Option<String>,
}

/// Where records come from, by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    /// An HTTP JSON API.
    Rest(Box<RestSource>),
    /// A PostgreSQL, MySQL/MariaDB or SQLite query.
    Sql(SqlSource),
    /// A program whose standard output is JSON lines or CSV.
    Command(CommandSource),
}
