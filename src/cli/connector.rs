//! `kpistream connector …`: check, list, run now, preview, enable and disable connectors,
//! and read their run log. State comes from the server's `Runner` service, the same
//! one `kpistream runner` uses.

use crate::cli::exit::outln;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::output::{Cell, OutputArgs, Rows, time};
use super::{ServerArgs, status};
use crate::cli::exit::UsageError;
use crate::connector::{ConnectorDef, check_dir};
use crate::proto;
use crate::runner::Source;
use crate::runner::local::LocalInputs;
use crate::runner::pipeline::{Fate, Pipeline};
use crate::runner::process::default_runner_id;
use crate::runner::rest::RestContext;
use crate::runner::run::{
    Backfill, Job, Outcome, RunEnv, Trigger, connector_state, run_backfill, run_slot, start_cursor,
};
use crate::runner::target::{Target, open_source_with, stream_label};
use crate::text::printable;

/// What `connector run` and `backfill` show of the run's log by default: its warnings
/// (records refused and why, groups not published), but not the outcome line, which
/// they print themselves.
const CONNECTOR_RUN_LOGS: &str = "warn,kpistream::runner::outcome=off";

#[derive(Debug, clap::Subcommand)]
pub enum ConnectorCommand {
    /// Read and check every connector definition of a directory without running any:
    /// fields, schedules, time zones, credential sources, connections and templates.
    #[command(
        after_help = "Examples:\n  kpistream connector check\n  kpistream connector check /etc/kpistream/connectors"
    )]
    Check {
        /// The directory of connector files (`*.toml`, with an optional `connections.toml`).
        #[arg(default_value = "connectors")]
        dir: PathBuf,
    },
    /// List the connectors of a directory with their schedule, next and last run,
    /// status and failures in a row.
    #[command(
        after_help = "Examples:\n  kpistream connector list\n  kpistream connector list --connectors /etc/kpistream/connectors -o json"
    )]
    List {
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a connector now ("update data"), even when it is disabled: a successful run
    /// re-enables it.
    #[command(after_help = "Example:\n  kpistream connector run billing-mrr")]
    Run {
        /// The connector's name.
        name: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pull and map without publishing: prints each record and the point it would
    /// become (or why it would not), to check a mapping before enabling a connector.
    #[command(after_help = "Example:\n  kpistream connector preview billing-mrr --limit 5")]
    Preview {
        /// The connector's name.
        name: String,
        /// Records shown at most (the pull stops after the page that reaches it).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A connector's runs, newest first: start, end, records pulled, points published,
    /// rejected, error.
    #[command(
        after_help = "Examples:\n  kpistream connector log billing-mrr\n  kpistream connector log billing-mrr --limit 100 -o csv"
    )]
    Log {
        /// The connector's name.
        name: String,
        /// The newest N runs (0: all of them, read page by page).
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a connector on the server (this also resets its failure count).
    #[command(after_help = "Example:\n  kpistream connector enable billing-mrr")]
    Enable {
        /// The connector's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pull a past range of periods again and publish it, beside the schedule: the
    /// cursor does not move (a connector with a cursor pulls from the first period's
    /// start). Runs even when the connector is disabled; logged and audited.
    #[command(
        after_help = "Examples:\n  kpistream connector backfill billing-mrr --from 2026-01 --to 2026-03\n  kpistream connector backfill shop-signups --from 2026-03-01 --to 2026-03-07"
    )]
    Backfill {
        /// The connector's name.
        name: String,
        /// The first period, in the stream's notation (2026-03-01, 2026-W09, 2026-03, 2026-Q1).
        #[arg(long, value_name = "PERIOD")]
        from: String,
        /// The last period (included).
        #[arg(long, value_name = "PERIOD")]
        to: String,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Record what a connector's source answers now (pulled as its next run would, from
    /// its cursor; nothing published or moved) to NAME.fixture.json beside it, and the
    /// points those records map to to NAME.expected.csv, for `connector test`.
    #[command(after_help = "Example:\n  kpistream connector record billing-mrr")]
    Record {
        /// The connector's name.
        name: String,
        /// Records kept at most (the pull stops after the page that reaches it).
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        #[command(flatten)]
        dir: DirArg,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Check every connector of a directory that has a recorded fixture: its filter,
    /// mapping and aggregation applied to the recorded records must give the points of
    /// NAME.expected.csv. Offline: no server, source or credential is needed.
    #[command(
        after_help = "Examples:\n  kpistream connector test\n  kpistream connector test /etc/kpistream/connectors"
    )]
    Test {
        /// The directory of connector files and their fixtures.
        #[arg(default_value = "connectors")]
        dir: PathBuf,
    },
    /// Set a connector's cursor (back, after an incident): its next run pulls from there.
    /// Audited with the old and new values; refused while a run holds the lease.
    #[command(
        after_help = "Examples:\n  kpistream connector rewind billing-mrr --to 2026-03-01T00:00:00Z\n  kpistream connector rewind billing-mrr --clear"
    )]
    Rewind {
        /// The connector's name.
        name: String,
        /// The cursor value, as the connector's cursor field holds it.
        #[arg(long, value_name = "CURSOR", required_unless_present = "clear")]
        to: Option<String>,
        /// Remove the cursor: the next run starts from the definition's `cursor.initial`.
        #[arg(long, conflicts_with = "to")]
        clear: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete what the server keeps of a connector: its state, cursor and run log, as
    /// for a connector removed for good or renamed. Its next run starts from
    /// `cursor.initial`. Audited; refused while a run holds the lease.
    #[command(after_help = "Example:\n  kpistream connector forget old-billing --yes")]
    Forget {
        /// The connector's name.
        name: String,
        /// Confirms it: the cursor and run log cannot be brought back.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a connector on the server: runners skip it until it is enabled or run
    /// successfully by hand.
    #[command(after_help = "Example:\n  kpistream connector disable billing-mrr")]
    Disable {
        /// The connector's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The connector directory of the client verbs.
#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// The directory of connector files.
    #[arg(
        long = "connectors",
        env = "KPISTREAM_CONNECTORS",
        default_value = "connectors"
    )]
    dir: PathBuf,
}

impl ConnectorCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Check { dir } => check(dir),
            Self::List {
                dir,
                output,
                server,
            } => list(&dir.dir, &output, &server).await,
            Self::Run { name, dir, server } => {
                crate::telemetry::init_logs_at(CONNECTOR_RUN_LOGS);
                run_now(&name, &dir.dir, &server).await
            }
            Self::Preview {
                name,
                limit,
                dir,
                server,
            } => preview(&name, limit, &dir.dir, &server).await,
            Self::Log {
                name,
                limit,
                output,
                server,
            } => log(&name, limit, &output, &server).await,
            Self::Record {
                name,
                limit,
                dir,
                server,
            } => super::connector_fixture::record(&name, limit, &dir.dir, &server).await,
            Self::Test { dir } => super::connector_fixture::test(&dir),
            Self::Backfill {
                name,
                from,
                to,
                dir,
                server,
            } => {
                crate::telemetry::init_logs_at(CONNECTOR_RUN_LOGS);
                backfill(&name, (&from, &to), &dir.dir, &server).await
            }
            Self::Rewind {
                name,
                to,
                clear: _,
                server,
            } => rewind(&name, to, &server).await,
            Self::Forget { name, yes, server } => forget(&name, yes, &server).await,
            Self::Enable { name, server } => set_enabled(&name, true, &server).await,
            Self::Disable { name, server } => set_enabled(&name, false, &server).await,
        }
    }
}

fn check(dir: PathBuf) -> anyhow::Result<()> {
    let report = check_dir(&dir);
    for (file, def) in &report.connectors {
        outln!(
            "ok: {} ({}, {} {}{}) in {}",
            def.name,
            def.source_kind(),
            def.schedule.describe(),
            def.timezone.as_str(),
            if def.enabled { "" } else { ", disabled" },
            file.display()
        );
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    match report.errors.len() {
        0 if report.connectors.is_empty() => {
            outln!("no connector definitions in {}", dir.display());
            Ok(())
        }
        0 => Ok(()),
        n => anyhow::bail!(
            "{n} problem{} in {}",
            if n == 1 { "" } else { "s" },
            dir.display()
        ),
    }
}

/// Every valid definition of `dir`; problems are printed and fail the command.
pub(super) fn definitions(dir: &Path) -> anyhow::Result<Vec<Job>> {
    let report = check_dir(dir);
    if !report.errors.is_empty() {
        for error in &report.errors {
            eprintln!("error: {error}");
        }
        anyhow::bail!(
            "{} has problems; `kpistream connector check {}` lists them",
            dir.display(),
            dir.display()
        );
    }
    let connections = Arc::new(report.connections);
    Ok(report
        .connectors
        .into_iter()
        .map(|(_, def)| Job {
            def: Arc::new(def),
            connections: connections.clone(),
        })
        .collect())
}

pub(super) fn definition(dir: &Path, name: &str) -> anyhow::Result<Job> {
    let jobs = definitions(dir)?;
    let names: Vec<String> = jobs.iter().map(|j| j.def.name.clone()).collect();
    jobs.into_iter()
        .find(|j| j.def.name == name)
        .with_context(|| {
            format!(
                "no connector named {name:?} in {} (there: {})",
                dir.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })
}

async fn list(dir: &Path, output: &OutputArgs, server: &ServerArgs) -> anyhow::Result<()> {
    let jobs = definitions(dir)?;
    let client = server.connect().await?;
    let mut rows = Rows::new(vec![
        "name",
        "stream",
        "source",
        "schedule",
        "next_run",
        "last_run",
        "last_result",
        "status",
        "failures",
    ]);
    let now = jiff::Timestamp::now();
    for job in &jobs {
        let def = &job.def;
        let state = connector_state(&client, &def.name).await.map_err(status)?;
        let status = status_of(def, &state);
        let next = if def.enabled && state.enabled {
            def.schedule
                .next_after(now, def.timezone.tz())
                .map_or(Cell::Null, |t| t.to_string().into())
        } else {
            Cell::Null
        };
        let last_result = match (&state.last_run_ended, state.last_error.is_empty()) {
            (None, _) => Cell::Null,
            (Some(_), true) => "ok".into(),
            (Some(_), false) => "failed".into(),
        };
        rows.push(vec![
            def.name.clone().into(),
            stream_label(def).into(),
            def.source_kind().into(),
            format!("{} {}", def.schedule.as_str(), def.timezone.as_str()).into(),
            next,
            time(&state.last_run_ended),
            last_result,
            status.into(),
            state.consecutive_failures.into(),
        ]);
    }
    rows.print(output)
}

fn status_of(def: &ConnectorDef, state: &proto::ConnectorState) -> String {
    match (def.enabled, state.enabled) {
        (true, true) => "enabled".into(),
        (false, _) => "disabled in its file".into(),
        (true, false) if state.consecutive_failures > 0 => "disabled after failures".into(),
        (true, false) => "disabled".into(),
    }
}

/// What a run asked for on the command line runs with; the sender stops it.
fn cli_env(client: crate::client::Client) -> (tokio::sync::watch::Sender<bool>, RunEnv) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let env = RunEnv {
        client,
        runner_id: format!("cli-{}", default_runner_id()),
        lease_ttl: std::time::Duration::from_secs(60),
        rest: RestContext::new(),
        alerter: crate::runner::alert::Alerter::new(),
        stop,
    };
    (stop_tx, env)
}

/// A run asked for by hand is its own slot, to the microsecond the server keeps: a
/// second `connector run` within the same second is a new run, not a completed slot.
fn now_slot() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
}

async fn run_now(name: &str, dir: &Path, server: &ServerArgs) -> anyhow::Result<()> {
    let job = definition(dir, name)?;
    let (_stop, env) = cli_env(server.connect().await?);
    let outcome = run_slot(&env, &job, now_slot(), Trigger::Manual)
        .await
        .map_err(status)?;
    print_outcome(name, outcome)
}

async fn backfill(
    name: &str,
    (from, to): (&str, &str),
    dir: &Path,
    server: &ServerArgs,
) -> anyhow::Result<()> {
    let job = definition(dir, name)?;
    let client = server.connect().await?;
    let credential = crate::runner::local::load_credential(&job.def)
        .map_err(|e| anyhow::anyhow!("{name} did not run: {e}"))?;
    let stream = client
        .stream(&credential.stream_id().to_string())
        .await
        .map_err(status)?
        .stream
        .context("the server answered without the stream")?;
    let frequency = crate::wire::frequency(stream.frequency)
        .ok()
        .flatten()
        .context("the server answered with an unknown frequency")?;
    let period = |flag: &str, text: &str| {
        crate::period::Period::parse(frequency, text).map_err(|e| {
            UsageError(format!(
                "--{flag} {text:?} is not a period of {name}'s {frequency} stream: {e} (for example {})",
                frequency.example()
            ))
        })
    };
    let range = Backfill {
        from: period("from", from)?,
        to: period("to", to)?,
    };
    if range.to.start() < range.from.start() {
        return Err(UsageError(format!("--to {to} is before --from {from}")).into());
    }
    let (_stop, env) = cli_env(client);
    let outcome = run_backfill(&env, &job, now_slot(), &range)
        .await
        .map_err(status)?;
    outln!("backfill of {name} over {}:", range.range());
    print_outcome(name, outcome)
}

async fn forget(name: &str, yes: bool, server: &ServerArgs) -> anyhow::Result<()> {
    if !yes {
        return Err(UsageError(format!(
            "forgetting {name} deletes its cursor and run log for good: run it again with --yes"
        ))
        .into());
    }
    let answer = server
        .connect()
        .await?
        .forget_connector(name)
        .await
        .map_err(status)?;
    if !answer.existed {
        outln!("the server kept nothing of {name}");
        return Ok(());
    }
    outln!(
        "forgot {name}: cursor {} and {} run(s) deleted; its next run starts from cursor.initial",
        shown_cursor(answer.cursor.as_deref()),
        answer.runs_deleted
    );
    Ok(())
}

async fn rewind(name: &str, to: Option<String>, server: &ServerArgs) -> anyhow::Result<()> {
    let answer = server
        .connect()
        .await?
        .set_cursor(name, to.as_deref())
        .await
        .map_err(status)?;
    outln!(
        "cursor of {name} set from {} to {}: its next run pulls from there",
        shown_cursor(answer.previous_cursor.as_deref()),
        shown_cursor(to.as_deref())
    );
    Ok(())
}

/// A cursor as `forget` and `rewind` print it: quoted and escaped, or `none`.
fn shown_cursor(cursor: Option<&str>) -> String {
    cursor.map_or("none".to_owned(), |c| format!("{:?}", printable(c)))
}

/// How a run asked for by hand ended; an error when it failed or did not run.
fn print_outcome(name: &str, outcome: Outcome) -> anyhow::Result<()> {
    match outcome {
        Outcome::Ran(summary) => {
            outln!(
                "{name}: {} pulled, {} published, {} rejected, {} filtered out",
                count(summary.records_pulled, "record"),
                count(summary.points_published, "point"),
                summary.points_rejected,
                summary.filtered_out
            );
            if summary.kept_existing > 0 {
                outln!(
                    "{} records skipped: their period has a value (on_existing = \"keep\")",
                    summary.kept_existing
                );
            }
            if let Some(cursor) = &summary.new_cursor {
                outln!("cursor now {cursor:?}");
            }
            if summary.recovered {
                outln!("{name} recovered: it is enabled again");
            }
            match summary.error {
                None => Ok(()),
                Some(error) => {
                    if summary.just_disabled {
                        eprintln!("{name} is now disabled after repeated failures");
                    }
                    anyhow::bail!("the run of {name} failed: {error}")
                }
            }
        }
        Outcome::NotOurs { holder, .. } => {
            anyhow::bail!("{name} is running right now on runner {holder}; try again when it ends")
        }
        Outcome::Misconfigured(error) => anyhow::bail!(
            "{name} did not run: {error} (a mistake on this machine: nothing was reported to the server)"
        ),
        Outcome::Disabled => unreachable!("runs asked for by hand ignore the disabled flag"),
    }
}

/// `1 record`, `2 records`.
fn count(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// A connector's source opened as its next run would open it: from the stored cursor
/// (moved back by `lookback` and to whole periods), with this machine's credential and
/// secrets. Nothing is leased, published or reported.
pub(super) struct Pull {
    pub(super) job: Job,
    pub(super) target: Target,
    pub(super) cursor: Option<String>,
    pub(super) window: Option<String>,
    pub(super) source: Box<dyn Source>,
}

impl Pull {
    pub(super) async fn open(name: &str, dir: &Path, server: &ServerArgs) -> anyhow::Result<Self> {
        let job = definition(dir, name)?;
        let client = server.connect().await?;
        let state = connector_state(&client, name).await.map_err(status)?;
        let cursor = start_cursor(&job.def, &state);
        let rest = RestContext::new();
        let inputs = LocalInputs::read(&rest, &job).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let target = Target::resolve(&client, inputs.credential)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let window = target
            .calendar
            .window_start(&job.def, cursor.clone())
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let ctx = target
            .calendar
            .template_context(jiff::Timestamp::now(), window.clone())
            .map_err(|e| anyhow::anyhow!(e))?;
        let source = open_source_with(&rest, &job, inputs.source, &ctx)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        Ok(Self {
            job,
            target,
            cursor,
            window,
            source,
        })
    }

    /// The next page of records, `None` after the last.
    pub(super) async fn next_page(&mut self) -> anyhow::Result<Option<Vec<crate::runner::Record>>> {
        let name = &self.job.def.name;
        self.source
            .next_page()
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
    }
}

async fn preview(name: &str, limit: usize, dir: &Path, server: &ServerArgs) -> anyhow::Result<()> {
    let mut pull = Pull::open(name, dir, server).await?;
    let job = pull.job.clone();
    let def = &job.def;
    let filter = match &def.filter {
        None => "none".to_owned(),
        Some(f) => format!(
            "{} of {} condition{}",
            match f.match_ {
                crate::connector::Match::All => "all",
                crate::connector::Match::Any => "any",
            },
            f.conditions.len(),
            if f.conditions.len() == 1 { "" } else { "s" }
        ),
    };
    outln!(
        "preview of {name} ({} source, stream {}, cursor {}, filter: {filter}); nothing is published",
        def.source_kind(),
        pull.target.stream_id,
        pull.cursor
            .as_deref()
            .map_or("none".to_owned(), |c| format!("{c:?}")),
    );
    if pull.window != pull.cursor {
        outln!(
            "pulling from {:?} (lookback and whole periods)",
            pull.window.as_deref().unwrap_or_default()
        );
    }
    let calendar = pull.target.calendar.clone();
    let mut pipeline =
        Pipeline::new(def, &calendar, None).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let (mut shown, mut published, mut filtered, mut unmapped) = (0usize, 0, 0, 0);
    'pages: while let Some(records) = pull.next_page().await? {
        for record in records {
            if shown == limit {
                break 'pages;
            }
            shown += 1;
            outln!("record {shown}: {record}");
            // Text from the source reaches the terminal escaped.
            match pipeline.record(&record) {
                Fate::Filtered | Fate::OutOfRange(_) => {
                    filtered += 1;
                    outln!("  -> filtered out");
                }
                Fate::Point(period, point) => {
                    published += 1;
                    let id = if point.external_id.is_empty() {
                        String::new()
                    } else {
                        format!(" (external id {})", printable(&point.external_id))
                    };
                    outln!(
                        "  -> {} = {}{id}",
                        printable(&period),
                        printable(&point.value)
                    );
                }
                Fate::Aggregated(period, group) => {
                    published += 1;
                    match group {
                        Some(group) => outln!(
                            "  -> into {} of group {}",
                            printable(&period),
                            printable(&group)
                        ),
                        None => outln!("  -> into {}", printable(&period)),
                    }
                }
                Fate::Rejected(reason) => {
                    unmapped += 1;
                    let reason = reason.replace("record not mapped", "not mapped");
                    let reason = reason.replace("record not aggregated", "not aggregated");
                    outln!("  -> {}", printable(&reason));
                }
            }
        }
    }
    let plural = if shown == 1 { "" } else { "s" };
    let periods = pipeline.aggregated_periods();
    let Some(aggregates) = pipeline.aggregates() else {
        outln!(
            "{shown} record{plural} shown: {published} would be published, {filtered} filtered out, {unmapped} not mapped"
        );
        return Ok(());
    };
    let function = def.aggregate.as_ref().map_or("", |a| a.function.name());
    outln!(
        "{shown} record{plural} shown: {published} aggregated ({function}) into {periods} period(s), {filtered} filtered out, {unmapped} not mapped; the values of the records shown:"
    );
    for (period, point) in aggregates {
        outln!("  {} = {}", printable(&period), printable(&point.value));
    }
    for (group, points) in pipeline.group_aggregates() {
        for (period, point) in points {
            outln!(
                "  {} of group {} = {}",
                printable(&period),
                printable(&group),
                printable(&point.value)
            );
        }
    }
    Ok(())
}

async fn log(
    name: &str,
    limit: u32,
    output: &OutputArgs,
    server: &ServerArgs,
) -> anyhow::Result<()> {
    let client = server.connect().await?;
    let runs = client.runs(name, limit).await.map_err(status)?;
    let mut rows = Rows::new(vec![
        "started",
        "ended",
        "trigger",
        "records",
        "published",
        "rejected",
        "result",
        "error",
        "runner",
    ]);
    for run in runs {
        let result = match (run.error.is_empty(), run.interrupted) {
            (true, false) => "ok",
            (true, true) => "stopped early (runner asked to stop)",
            (false, _) => "failed",
        };
        let trigger = match (run.backfill.as_str(), run.manual) {
            ("", false) => "schedule".to_owned(),
            ("", true) => "manual".to_owned(),
            (range, _) => format!("backfill {range}"),
        };
        rows.push(vec![
            time(&run.started_at),
            time(&run.ended_at),
            trigger.into(),
            run.records_pulled.into(),
            run.points_published.into(),
            run.points_rejected.into(),
            result.into(),
            Cell::opt(run.error),
            run.runner_id.into(),
        ]);
    }
    if rows.rows.is_empty() && output.output == super::output::Format::Table && !output.quiet {
        outln!("{name} has not run yet");
        return Ok(());
    }
    rows.print(output)
}

async fn set_enabled(name: &str, enabled: bool, server: &ServerArgs) -> anyhow::Result<()> {
    let client = server.connect().await?;
    let state = client
        .runner()
        .set_enabled(proto::SetEnabledRequest {
            connector: name.to_owned(),
            enabled,
        })
        .await
        .map_err(status)?
        .into_inner();
    outln!(
        "{name} {}",
        if state.enabled {
            "enabled (failure count reset)"
        } else {
            "disabled"
        }
    );
    Ok(())
}
