//! One run of one connector for one scheduled slot: read what it needs from this
//! machine ([`super::local`]), take the slot's lease on the server, pull the source page
//! by page, map and filter the records, publish each page as signed batches with
//! deterministic ids, and report the run. The cursor the server keeps moves only when
//! every point of the run was acknowledged (or, when the runner is asked to stop, up to
//! the pages it acknowledged). The stream and source are in [`super::target`],
//! publishing a page in `publish.rs`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::alert::{AlertEvent, AlertKind, Alerter};
use super::error::{RunError, TargetError};
use super::local::{ConfigError, LocalInputs};
use super::mapping::{MappedPoint, cursor_cmp};
use super::pipeline::{Fate, LatestPerPeriod, Pipeline};
use super::publish::Publishing;
use super::rest::RestContext;
use super::target::{Target, open_source, stream_label};
use super::{FetchError, Record};
use crate::client::Client;
use crate::connector::{Connection, ConnectorDef, GROUP_PLACEHOLDER, OnExisting};
use crate::period::Period;
use crate::proto;
use crate::runner_state::{bounded_error, checked_cursor};
use crate::signature::Credential;
use crate::wire::timestamp;

/// What every run of one runner process shares.
pub struct RunEnv {
    /// The server, with a token of an org admin of the connectors' organisation.
    pub client: Client,
    /// This runner's id on the server (leases are held in its name).
    pub runner_id: String,
    /// How long a lease lasts unless renewed; a run renews it every third of that.
    pub lease_ttl: Duration,
    /// HTTP client and OAuth2 tokens of REST sources.
    pub rest: RestContext,
    /// Email and webhook alerts.
    pub alerter: Alerter,
    /// Turns `true` when the runner is asked to stop.
    pub stop: watch::Receiver<bool>,
}

/// A connector definition with the shared connections it may name.
#[derive(Debug, Clone)]
pub struct Job {
    /// The definition.
    pub def: Arc<ConnectorDef>,
    /// `connections.toml` of its directory.
    pub connections: Arc<BTreeMap<String, Connection>>,
}

/// The log target of a run's outcome line.
pub const RUN_OUTCOME_TARGET: &str = "kpistream::runner::outcome";

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its schedule fired, or `run_on_start` (skipped while the connector is disabled
    /// on the server).
    Schedule,
    /// `connector run NAME`: runs even when disabled, and a success re-enables the
    /// connector.
    Manual,
    /// A slot a runner left unfinished, taken up again (skipped while the connector is
    /// disabled on the server, like `Schedule`).
    Resume,
    /// `connector backfill NAME --from … --to …`: a past range pulled again by hand,
    /// beside the schedule; it moves no cursor.
    Backfill,
}

impl Trigger {
    /// Whether the run goes on while the connector is disabled on the server: only a
    /// run someone asked for by hand does.
    fn runs_when_disabled(self) -> bool {
        matches!(self, Self::Manual | Self::Backfill)
    }
}

/// The periods a backfill publishes, both included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// The first period.
    pub from: Period,
    /// The last period.
    pub to: Period,
}

impl Backfill {
    /// Whether `period` (text of the stream's frequency) is in the range.
    pub fn covers(&self, period: &str) -> bool {
        Period::parse(self.from.frequency(), period)
            .is_ok_and(|p| self.from.start() <= p.start() && p.start() <= self.to.start())
    }

    /// `FROM..TO`, as the run report and the audit log show it.
    pub fn range(&self) -> String {
        format!("{}..{}", self.from, self.to)
    }
}

/// How a run attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran and was reported.
    Ran(RunSummary),
    /// Another runner holds the slot, or the slot was already run.
    NotOurs {
        /// The runner holding it (empty when the slot is complete).
        holder: String,
        /// The slot has a run already.
        completed: bool,
    },
    /// The connector is disabled on the server; the scheduled or unfinished slot was
    /// skipped.
    Disabled,
    /// This machine lacks what the run needs (a credential or secret variable not set, a
    /// file missing): the run did not start and the server was not told.
    Misconfigured(ConfigError),
}

/// What one run did, as reported to the server.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Records the source gave.
    pub records_pulled: u64,
    /// Records the filter left out.
    pub filtered_out: u64,
    /// Records skipped because their period has a value (`on_existing = "keep"`).
    pub kept_existing: u64,
    /// Points the server stored (replays of an earlier attempt included).
    pub points_published: u64,
    /// Records that could not be mapped plus points the server refused.
    pub points_rejected: u64,
    /// Why the run failed; `None` when it succeeded.
    pub error: Option<String>,
    /// The runner was asked to stop and ended after a page.
    pub interrupted: bool,
    /// The cursor stored by this run.
    pub new_cursor: Option<String>,
    /// The server disabled the connector with this report.
    pub just_disabled: bool,
    /// The server re-enabled the connector with this report.
    pub recovered: bool,
}

/// Runs `job` for `slot` if this runner gets the slot's lease, and reports the run.
/// An `Err` means the server could not be reached for the lease or the report.
pub async fn run_slot(
    env: &RunEnv,
    job: &Job,
    slot: Timestamp,
    trigger: Trigger,
) -> Result<Outcome, tonic::Status> {
    run_job(env, job, slot, trigger, None).await
}

/// Pulls `range` again for `job` in a run of its own (`slot`: when it was asked for),
/// publishing only the range's periods and moving no cursor.
pub async fn run_backfill(
    env: &RunEnv,
    job: &Job,
    slot: Timestamp,
    range: &Backfill,
) -> Result<Outcome, tonic::Status> {
    run_job(env, job, slot, Trigger::Backfill, Some(range)).await
}

async fn run_job(
    env: &RunEnv,
    job: &Job,
    slot: Timestamp,
    trigger: Trigger,
    backfill: Option<&Backfill>,
) -> Result<Outcome, tonic::Status> {
    let name = job.def.name.clone();
    let ttl = u32::try_from(env.lease_ttl.as_secs().max(1)).unwrap_or(u32::MAX);
    let (inputs, state) = match claim(env, job, slot, trigger, ttl).await? {
        Claim::Ours(inputs, state) => (inputs, state),
        Claim::Not(outcome) => return Ok(outcome),
    };
    let keeper = tokio::spawn(keep_lease(
        env.client.clone(),
        name.clone(),
        slot,
        env.runner_id.clone(),
        ttl,
    ));
    let started_at = Timestamp::now();
    tracing::info!(connector = %name, %slot, ?trigger, "run started");
    let cursor = start_cursor(&job.def, &state);
    let mut summary = RunSummary::default();
    if let Err(e) = execute(env, job, *inputs, slot, cursor, backfill, &mut summary).await {
        // Cut here, once: the report must fit in a gRPC message, and the log line, the
        // alerts and `connector run` then show what the server keeps.
        summary.error = Some(bounded_error(&e.to_string()));
    }
    keeper.abort();
    let ended_at = Timestamp::now();

    let report = FinishedRun {
        job,
        runner_id: &env.runner_id,
        slot,
        trigger,
        backfill,
        started_at,
        ended_at,
    };
    let answer = env
        .client
        .runner()
        .report_run(report.to_proto(&summary))
        .await?
        .into_inner();
    summary.just_disabled = answer.just_disabled;
    summary.recovered = answer.recovered;
    let failures = answer.state.as_ref().map_or(0, |s| s.consecutive_failures);
    record_metrics(&name, &summary, ended_at.duration_since(started_at));
    announce(env, job, &summary, failures, ended_at).await;
    Ok(Outcome::Ran(summary))
}

/// Whether a run goes ahead, and with what.
enum Claim<'a> {
    /// The lease is this runner's: what was read from this machine (boxed: it holds a
    /// credential and a source's secrets, large beside `Not`), and the connector's state
    /// read under the lease.
    Ours(Box<LocalInputs<'a>>, proto::ConnectorState),
    /// The run does not happen.
    Not(Outcome),
}

/// Takes the slot's lease unless the connector is disabled (and the run was not asked
/// for by hand), this machine lacks what the run needs, or another runner has the slot.
async fn claim<'a>(
    env: &RunEnv,
    job: &'a Job,
    slot: Timestamp,
    trigger: Trigger,
    ttl: u32,
) -> Result<Claim<'a>, tonic::Status> {
    let name = &job.def.name;
    // A disabled connector's slot is skipped without taking the lease: a lease taken
    // only to find that out would refuse a `connector run` made at that moment.
    if !trigger.runs_when_disabled() && !connector_state(&env.client, name).await?.enabled {
        return Ok(Claim::Not(Outcome::Disabled));
    }
    // Read before the lease, so a mistake on this machine leaves the server's state
    // (lease, run log, failure count, cursor) as it was.
    let inputs = match LocalInputs::read(&env.rest, job) {
        Ok(inputs) => inputs,
        Err(error) => return Ok(Claim::Not(misconfigured(name, error))),
    };
    let lease = acquire(&env.client, name, slot, &env.runner_id, ttl).await?;
    if !lease.granted {
        return Ok(Claim::Not(Outcome::NotOurs {
            holder: lease.holder,
            completed: lease.slot_completed,
        }));
    }
    // Read again under the lease: the cursor another runner just stored, and a
    // connector disabled meanwhile.
    let state = connector_state(&env.client, name).await?;
    if !trigger.runs_when_disabled() && !state.enabled {
        env.client
            .runner()
            .release_lease(proto::ReleaseLeaseRequest {
                connector: name.clone(),
                runner_id: env.runner_id.clone(),
            })
            .await?;
        return Ok(Claim::Not(Outcome::Disabled));
    }
    Ok(Claim::Ours(Box::new(inputs), state))
}

/// Logs and counts a run that did not start for a mistake on this machine.
fn misconfigured(connector: &str, error: ConfigError) -> Outcome {
    tracing::error!(
        connector = %connector,
        "the run did not start: {error}; nothing was reported to the server, as this is \
         the runner's own configuration, not a failure of the source"
    );
    metrics::counter!("kpistream_runner_config_errors_total", "connector" => connector.to_owned())
        .increment(1);
    Outcome::Misconfigured(error)
}

/// A finished run: what its report to the server says besides the summary's counts.
struct FinishedRun<'a> {
    job: &'a Job,
    runner_id: &'a str,
    slot: Timestamp,
    trigger: Trigger,
    backfill: Option<&'a Backfill>,
    started_at: Timestamp,
    ended_at: Timestamp,
}

impl FinishedRun<'_> {
    fn to_proto(&self, summary: &RunSummary) -> proto::RunReport {
        proto::RunReport {
            connector: self.job.def.name.clone(),
            runner_id: self.runner_id.to_owned(),
            slot: Some(timestamp(self.slot)),
            started_at: Some(timestamp(self.started_at)),
            ended_at: Some(timestamp(self.ended_at)),
            records_pulled: summary.records_pulled,
            points_published: summary.points_published,
            points_rejected: summary.points_rejected,
            error: summary.error.clone().unwrap_or_default(),
            new_cursor: summary.new_cursor.clone(),
            max_consecutive_failures: self.job.def.max_consecutive_failures.max(1),
            interrupted: summary.interrupted && summary.error.is_none(),
            manual: self.trigger == Trigger::Manual,
            backfill: self.backfill.map(Backfill::range).unwrap_or_default(),
        }
    }
}

/// Logs how the run ended and tells the alert targets when the report disabled the
/// connector or brought it back.
async fn announce(
    env: &RunEnv,
    job: &Job,
    summary: &RunSummary,
    failures: u32,
    ended_at: Timestamp,
) {
    let name = &job.def.name;
    match &summary.error {
        None => tracing::info!(
            connector = %name,
            records = summary.records_pulled,
            published = summary.points_published,
            rejected = summary.points_rejected,
            filtered_out = summary.filtered_out,
            interrupted = summary.interrupted,
            "run finished"
        ),
        // Its own target, so that `connector run`, which prints the outcome itself,
        // leaves it out of the warnings it shows.
        Some(error) => tracing::warn!(
            target: RUN_OUTCOME_TARGET,
            connector = %name,
            records = summary.records_pulled,
            published = summary.points_published,
            consecutive_failures = failures,
            %error,
            "run failed"
        ),
    }
    let kind = if summary.just_disabled {
        tracing::error!(connector = %name, consecutive_failures = failures, "connector disabled after repeated failures");
        AlertKind::Disabled
    } else if summary.recovered {
        tracing::info!(connector = %name, "connector recovered and re-enabled");
        AlertKind::Recovered
    } else {
        return;
    };
    let event = AlertEvent {
        kind,
        connector: name.clone(),
        stream: stream_label(&job.def),
        consecutive_failures: failures,
        last_error: summary.error.clone().unwrap_or_default(),
        at: ended_at,
    };
    for failure in env.alerter.notify(&job.def.alerts, &event).await {
        tracing::error!(connector = %name, "alert not delivered: {failure}");
    }
}

/// Pulls, maps and publishes; counts go into `summary` as they happen, so a failure
/// half-way still reports what was done.
async fn execute(
    env: &RunEnv,
    job: &Job,
    inputs: LocalInputs<'_>,
    slot: Timestamp,
    cursor: Option<String>,
    backfill: Option<&Backfill>,
    summary: &mut RunSummary,
) -> Result<(), RunError> {
    let def = &job.def;
    let target = Target::resolve(&env.client, inputs.credential).await?;
    let calendar = &target.calendar;
    let window = match backfill {
        Some(range) => calendar.backfill_start(def, cursor.clone(), &range.from)?,
        None => calendar.window_start(def, cursor.clone())?,
    };
    if window != cursor {
        tracing::info!(connector = %def.name, cursor = ?cursor, window_start = ?window, "pulling again from before the cursor");
    }
    let ctx = calendar.template_context(slot, window)?;
    let mut pipeline = Pipeline::new(def, calendar, backfill)?;
    let mut source = open_source(env, job, inputs.source, &ctx).await?;
    let mut publish = Publishing {
        env,
        def,
        target: &target,
        slot,
        start_cursor: cursor.as_deref().unwrap_or(""),
        logged: 0,
    };
    let mut page_number = 0u32;
    while let Some(records) = source.next_page().await? {
        page_number += 1;
        summary.records_pulled += records.len() as u64;
        metrics::counter!("kpistream_runner_records_pulled_total", "connector" => def.name.clone())
            .increment(records.len() as u64);
        let points = page_points(&mut pipeline, &records, &mut publish, summary);
        if let Some(error) = pipeline.take_fatal() {
            return Err(error.into());
        }
        // A backfill corrects stored values: `on_existing = "keep"` is for the schedule.
        let points = match backfill {
            Some(_) => points,
            None => keep_new_periods(def, &publish, points, summary).await?,
        };
        publish.page(page_number, &points, summary).await?;
        if *env.stop.borrow() {
            summary.interrupted = true;
            break;
        }
    }
    // Aggregates are published once every page is in, and not at all by a run that
    // stopped early: a part of a period's records would make a wrong value.
    let poisoned = pipeline.poisoned_periods();
    if !poisoned.is_empty() {
        tracing::warn!(connector = %def.name, periods = ?poisoned, "periods with a record that could not be aggregated are not published");
    }
    if let Some(points) = pipeline.aggregates().filter(|_| !summary.interrupted) {
        publish.page(0, &points, summary).await?;
        let mut groups = GroupStreams::new(&publish.target.stream_id);
        for (group, points) in pipeline.group_aggregates() {
            publish_group(&mut publish, &mut groups, &group, &points, summary).await?;
        }
        groups.log_refused(&def.name);
    }
    if let Some(reason) = pipeline.nothing_mapped() {
        return Err(RunError::NothingMapped(reason.to_owned()));
    }
    if let Some(range) = backfill.filter(|_| pipeline.all_out_of_range()) {
        return Err(RunError::NothingInRange(range.range()));
    }
    if def.cursor.is_some() && backfill.is_none() {
        summary.new_cursor = next_cursor(def, &pipeline, cursor.as_deref(), summary.interrupted)?;
    }
    Ok(())
}

/// The streams a run's groups went to, and the groups refused, for one line in the log.
struct GroupStreams {
    /// Stream id → the group that took it (`None`: the connector's own stream).
    used: BTreeMap<String, Option<String>>,
    refused: Vec<(String, String)>,
}

impl GroupStreams {
    fn new(total: &str) -> Self {
        Self {
            used: BTreeMap::from([(total.to_owned(), None)]),
            refused: Vec::new(),
        }
    }

    /// Counts a group's points as rejected, with the reason.
    fn refuse(&mut self, group: &str, points: usize, reason: String, summary: &mut RunSummary) {
        summary.points_rejected += points as u64;
        self.refused.push((group.to_owned(), reason));
    }

    fn log_refused(&self, connector: &str) {
        const SHOWN: usize = 20;
        if self.refused.is_empty() {
            return;
        }
        let shown: Vec<String> = self
            .refused
            .iter()
            .take(SHOWN)
            .map(|(group, reason)| format!("{group}: {reason}"))
            .collect();
        let more = self.refused.len().saturating_sub(SHOWN);
        tracing::warn!(
            connector = %connector,
            groups = self.refused.len(),
            "the points of {} group(s) are not published (counted as rejected): {}{}",
            self.refused.len(),
            shown.join("; "),
            if more > 0 { format!("; and {more} more") } else { String::new() }
        );
    }
}

/// Publishes a group's aggregates to its own stream, whose credential file
/// `aggregate.group_credential_file` names. A group whose stream cannot be used (no
/// credential file, another calendar than the connector's stream, a stream another
/// group or the total already took, a publish the server refuses) has its points
/// counted as rejected: the other groups and the total are published. A server that
/// cannot answer now fails the run, as for the total.
async fn publish_group(
    total: &mut Publishing<'_>,
    groups: &mut GroupStreams,
    group: &str,
    points: &[(String, MappedPoint)],
    summary: &mut RunSummary,
) -> Result<(), RunError> {
    let def = total.def;
    let template = def
        .aggregate
        .as_ref()
        .and_then(|a| a.group_credential_file.as_deref())
        .expect("a grouped connector names its groups' credential files");
    let path = std::path::PathBuf::from(template.replace(GROUP_PLACEHOLDER, group));
    let credential = match group_credential(&path) {
        Ok(credential) => credential,
        Err(reason) => {
            groups.refuse(group, points.len(), reason, summary);
            return Ok(());
        }
    };
    let target = match Target::resolve(&total.env.client, credential).await {
        Ok(target) => target,
        Err(
            e @ TargetError::Unreadable {
                transient: true, ..
            },
        ) => return Err(e.into()),
        Err(e) => {
            groups.refuse(group, points.len(), e.to_string(), summary);
            return Ok(());
        }
    };
    if !target.calendar.same_as(&total.target.calendar) {
        let zone =
            |c: &super::target::Calendar| c.tz.iana_name().unwrap_or("a fixed zone").to_owned();
        let reason = format!(
            "its stream {} is {} in {}, the connector's is {} in {} (time zones are compared by name)",
            target.stream_id,
            target.calendar.frequency.as_str(),
            zone(&target.calendar),
            total.target.calendar.frequency.as_str(),
            zone(&total.target.calendar),
        );
        groups.refuse(group, points.len(), reason, summary);
        return Ok(());
    }
    if let Some(taken) = groups.used.get(&target.stream_id) {
        let by = match taken {
            Some(other) => format!("group {other}"),
            None => "the connector's total".to_owned(),
        };
        let reason = format!("its stream {} already takes {by}", target.stream_id);
        groups.refuse(group, points.len(), reason, summary);
        return Ok(());
    }
    groups
        .used
        .insert(target.stream_id.clone(), Some(group.to_owned()));
    let mut publish = Publishing {
        env: total.env,
        def,
        target: &target,
        slot: total.slot,
        start_cursor: total.start_cursor,
        logged: total.logged,
    };
    let published = publish.page(0, points, summary).await;
    total.logged = publish.logged;
    match published {
        Ok(()) => Ok(()),
        Err(e @ FetchError::Transient { .. }) => Err(e.into()),
        Err(e) => {
            groups.refuse(group, points.len(), e.to_string(), summary);
            Ok(())
        }
    }
}

/// The credential in a group's file; the reason names the file, never its content.
fn group_credential(path: &std::path::Path) -> Result<Credential, String> {
    let secret = super::secret::load("aggregate.group_credential_file", None, Some(path))
        .map_err(|e| e.to_string())?
        .expect("a file was given");
    secrecy::ExposeSecret::expose_secret(&secret)
        .parse::<Credential>()
        .map_err(|e| format!("{} does not hold a valid credential: {e}", path.display()))
}

/// The points of one page (a later record of a period replacing an earlier one), with
/// what became of the other records counted and refusals logged.
fn page_points(
    pipeline: &mut Pipeline<'_>,
    records: &[Record],
    publish: &mut Publishing<'_>,
    summary: &mut RunSummary,
) -> Vec<(String, MappedPoint)> {
    let mut points = LatestPerPeriod::default();
    for record in records {
        match pipeline.record(record) {
            Fate::Filtered | Fate::OutOfRange(_) => summary.filtered_out += 1,
            Fate::Point(period, point) => points.put(period, point),
            Fate::Aggregated(..) => {}
            Fate::Rejected(reason) => {
                summary.points_rejected += 1;
                publish.log_rejection(&reason, record);
            }
        }
    }
    points.into_points()
}

/// With `on_existing = "keep"`, the points whose period has no value yet.
async fn keep_new_periods(
    def: &ConnectorDef,
    publish: &Publishing<'_>,
    mut points: Vec<(String, MappedPoint)>,
    summary: &mut RunSummary,
) -> Result<Vec<(String, MappedPoint)>, RunError> {
    if def.on_existing == OnExisting::Keep && !points.is_empty() {
        let existing = publish.existing_periods(&points).await?;
        let before = points.len();
        points.retain(|(period, _)| !existing.contains(period));
        summary.kept_existing += (before - points.len()) as u64;
    }
    Ok(points)
}

/// The cursor a run stores: the greatest value it saw, when that is past the stored
/// one (a run that pulled again before the cursor, with `lookback`, and found nothing
/// newer leaves it where it was), unless the run stopped early and either aggregates
/// (it published nothing) or saw its records out of cursor order.
fn next_cursor(
    def: &ConnectorDef,
    pipeline: &Pipeline<'_>,
    stored: Option<&str>,
    interrupted: bool,
) -> Result<Option<String>, RunError> {
    if interrupted && (pipeline.aggregating() || !pipeline.ordered()) {
        tracing::warn!(
            connector = %def.name,
            "stopped early with aggregates unpublished, or records out of cursor order: the cursor stays where it was"
        );
        return Ok(None);
    }
    pipeline
        .max_cursor()
        .filter(|c| stored.is_none_or(|stored| cursor_cmp(c, stored) == Ordering::Greater))
        .map(|c| checked_cursor(c.to_owned()))
        .transpose()
        .map_err(RunError::Cursor)
}

/// The cursor a run starts from: the one stored on the server, else the connector's
/// `cursor.initial`.
pub fn start_cursor(def: &ConnectorDef, state: &proto::ConnectorState) -> Option<String> {
    state
        .cursor
        .clone()
        .or_else(|| def.cursor.as_ref().and_then(|c| c.initial.clone()))
}

/// The connector's state on the server.
pub async fn connector_state(
    client: &Client,
    connector: &str,
) -> Result<proto::ConnectorState, tonic::Status> {
    Ok(client
        .runner()
        .get_state(proto::ConnectorRef {
            connector: connector.to_owned(),
        })
        .await?
        .into_inner())
}

async fn acquire(
    client: &Client,
    connector: &str,
    slot: Timestamp,
    runner_id: &str,
    ttl: u32,
) -> Result<proto::Lease, tonic::Status> {
    Ok(client
        .runner()
        .acquire_lease(proto::AcquireLeaseRequest {
            connector: connector.to_owned(),
            slot: Some(timestamp(slot)),
            runner_id: runner_id.to_owned(),
            ttl_seconds: ttl,
        })
        .await?
        .into_inner())
}

/// Renews the lease every third of its time to live while the run goes on.
async fn keep_lease(
    client: Client,
    connector: String,
    slot: Timestamp,
    runner_id: String,
    ttl: u32,
) {
    let every = Duration::from_millis(u64::from(ttl) * 1000 / 3).max(Duration::from_millis(300));
    loop {
        tokio::time::sleep(every).await;
        match acquire(&client, &connector, slot, &runner_id, ttl).await {
            Ok(lease) if lease.granted => {}
            Ok(lease) => tracing::error!(
                connector = %connector,
                holder = %lease.holder,
                "the lease of the running slot was lost; another runner may run it too"
            ),
            Err(status) => tracing::warn!(
                connector = %connector,
                "the lease could not be renewed: {}",
                status.message()
            ),
        }
    }
}

fn record_metrics(connector: &str, summary: &RunSummary, took: jiff::SignedDuration) {
    let outcome = match (&summary.error, summary.interrupted) {
        (Some(_), _) => "failed",
        (None, true) => "interrupted",
        (None, false) => "succeeded",
    };
    metrics::counter!("kpistream_runner_runs_total", "connector" => connector.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::counter!("kpistream_runner_points_rejected_total", "connector" => connector.to_owned())
        .increment(summary.points_rejected);
    metrics::histogram!("kpistream_runner_run_duration_seconds", "connector" => connector.to_owned())
        .record(took.as_secs_f64());
    if summary.just_disabled {
        metrics::counter!("kpistream_runner_disabled_total", "connector" => connector.to_owned())
            .increment(1);
    }
}
