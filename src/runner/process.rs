//! The runner process: reads the connector directory (and reads it again whenever a
//! file is added, changed or removed), fires each enabled connector at its scheduled
//! times, takes up slots a dead runner left unfinished, serves its own `/metrics`, and
//! on SIGTERM lets running connectors finish the page in hand, report, and exits.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::alert::Alerter;
use super::rest::RestContext;
use super::run::{Job, Outcome, RunEnv, Trigger, connector_state, run_slot};
use crate::client::Client;
use crate::connector::{CatchUp, check_dir};
use crate::proto;

/// How a runner process is set up.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The connector directory.
    pub dir: PathBuf,
    /// This runner's id on the server.
    pub runner_id: String,
    /// Lease time to live; a runner that dies frees its slots after this long.
    pub lease_ttl: Duration,
    /// How often the directory is checked for changes.
    pub reload_every: Duration,
    /// Where `/metrics` and `/healthz` are served (`None`: nowhere).
    pub metrics_addr: Option<SocketAddr>,
}

/// `/healthz`: whether the runner can do its work, that is whether the server answers
/// it (with its token): 200 `ok`, or 503 with the reason.
async fn server_health(client: &Client) -> (axum::http::StatusCode, String) {
    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    match tokio::time::timeout(Duration::from_secs(3), client.who_am_i()).await {
        Ok(Ok(_)) => (axum::http::StatusCode::OK, "ok\n".into()),
        Ok(Err(status)) => (
            unavailable,
            format!(
                "the kpistream server did not serve the runner: {} ({:?})\n",
                crate::text::printable(status.message()),
                status.code()
            ),
        ),
        Err(_) => (
            unavailable,
            "the kpistream server did not answer within 3 s\n".into(),
        ),
    }
}

/// A default runner id: the host name and the process id.
pub fn default_runner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "runner".into());
    format!("{host}-{}", std::process::id())
}

/// One loaded connector and when it fires next.
struct Scheduled {
    job: Job,
    file: PathBuf,
    digest: [u8; 32],
    next: Option<Timestamp>,
}

/// How often a runner asks the server for the runs asked for by hand, and how long it
/// waits for the answer.
const REQUEST_POLL: Duration = Duration::from_secs(2);
const REQUEST_POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a runner waits before it asks again after the server did not answer.
const REQUEST_POLL_BACKOFF: Duration = Duration::from_secs(15);

/// The runs asked for by hand that this runner took up.
struct Requests {
    /// When to ask the server next.
    next_poll: tokio::time::Instant,
    /// (connector, requested time) of each request this runner started a run for: a
    /// request is run once here, whatever came of it (a failed run is in the log; a run
    /// the server could not hear of is taken up again as any slot is).
    taken: HashSet<(String, Timestamp)>,
    /// The server answered UNIMPLEMENTED: it is older than this runner.
    unsupported: bool,
}

/// Most missed slots `catch_up = "all"` runs; older ones are dropped, saying so.
pub const MAX_CATCH_UP_SLOTS: usize = 1_000;

/// A slot to take up again: tried once a second at most, until `until`.
struct Resume {
    slot: Timestamp,
    until: Timestamp,
    next_try: Timestamp,
}

/// Runs until `shutdown` resolves; then waits for the running connectors to finish
/// their page and report.
pub async fn run(
    client: Client,
    config: RunnerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("the runner's metrics address {addr} cannot be bound: {e}")
        })?;
        let bound = listener.local_addr()?;
        println!("runner metrics on http://{bound}/metrics");
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(|| async { crate::telemetry::metrics().render() }),
            )
            .route(
                "/healthz",
                axum::routing::get({
                    let client = client.clone();
                    move || {
                        let client = client.clone();
                        async move { server_health(&client).await }
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    crate::telemetry::metrics();
    let (stop_tx, stop) = watch::channel(false);
    let env = Arc::new(RunEnv {
        client,
        runner_id: config.runner_id.clone(),
        lease_ttl: config.lease_ttl,
        rest: RestContext::new(),
        alerter: Alerter::new(),
        stop,
    });
    println!(
        "runner {} watching {} (lease {}s)",
        config.runner_id,
        config.dir.display(),
        config.lease_ttl.as_secs()
    );
    let mut scheduler = Scheduler {
        env: env.clone(),
        dir: config.dir.clone(),
        loaded: BTreeMap::new(),
        listing: Vec::new(),
        last_errors: Vec::new(),
        resumes: HashMap::new(),
        catch_up: HashMap::new(),
        running: HashMap::new(),
        tasks: JoinSet::new(),
        requests: Requests {
            next_poll: tokio::time::Instant::now(),
            taken: HashSet::new(),
            unsupported: false,
        },
    };
    tokio::pin!(shutdown);
    let mut last_check = tokio::time::Instant::now() - config.reload_every;
    loop {
        if last_check.elapsed() >= config.reload_every {
            scheduler.reload_if_changed().await;
            last_check = tokio::time::Instant::now();
        }
        scheduler.take_requests().await;
        scheduler.fire_due().await;
        let wait = scheduler.wait(config.reload_every.saturating_sub(last_check.elapsed()));
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
            Some(done) = scheduler.tasks.join_next() => scheduler.finished(done),
        }
    }
    let running = scheduler.running.len();
    println!("stopping: {running} running connector(s) finish their current page");
    tracing::info!(running, "stop requested");
    let _ = stop_tx.send(true);
    while let Some(done) = scheduler.tasks.join_next().await {
        scheduler.finished(done);
    }
    println!("runner stopped");
    Ok(())
}

struct Scheduler {
    env: Arc<RunEnv>,
    dir: PathBuf,
    /// By connector name.
    loaded: BTreeMap<String, Scheduled>,
    /// The directory's files with a digest of their content, at the last read.
    listing: Vec<(PathBuf, [u8; 32])>,
    last_errors: Vec<String>,
    resumes: HashMap<String, Resume>,
    /// Missed slots still to run (`catch_up = "all"`), oldest first.
    catch_up: HashMap<String, VecDeque<Timestamp>>,
    /// Connector name → the slot it is running.
    running: HashMap<String, Timestamp>,
    tasks: JoinSet<(String, Timestamp, Result<Outcome, tonic::Status>)>,
    requests: Requests,
}

impl Scheduler {
    /// The content digest of `file` in the last listing (zeros for a file added since:
    /// the next listing sees it and reads the directory again).
    fn file_digest(&self, file: &Path) -> [u8; 32] {
        self.listing
            .iter()
            .find(|(path, _)| path == file)
            .map_or([0; 32], |(_, digest)| *digest)
    }

    /// Reads the directory again if a file was added, changed or removed.
    async fn reload_if_changed(&mut self) {
        let listing = listing(&self.dir);
        if listing == self.listing && !self.listing.is_empty() {
            return;
        }
        self.listing = listing;
        let report = check_dir(&self.dir);
        let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        if errors != self.last_errors {
            for error in &errors {
                tracing::error!("connector definition: {error}");
            }
            self.last_errors = errors;
        }
        metrics::gauge!("kpistream_runner_definition_errors").set(report.errors.len() as f64);
        let connections = Arc::new(report.connections);
        let connections_text = format!("{connections:?}");
        let broken: Vec<&Path> = report.errors.iter().map(|e| e.file.as_path()).collect();
        let mut next_loaded = BTreeMap::new();
        for (file, def) in report.connectors {
            let digest = digest(self.file_digest(&file), &connections_text);
            let name = def.name.clone();
            let entry = match self.loaded.remove(&name) {
                Some(old) if old.digest == digest => Scheduled {
                    job: Job {
                        def: old.job.def,
                        connections: connections.clone(),
                    },
                    ..old
                },
                old => {
                    let verb = if old.is_some() { "changed" } else { "loaded" };
                    let first_time = old.is_none();
                    let next = def
                        .enabled
                        .then(|| def.schedule.next_after(Timestamp::now(), def.timezone.tz()))
                        .flatten();
                    tracing::info!(
                        connector = %name,
                        file = %file.display(),
                        next = ?next.map(|n| n.to_string()),
                        enabled = def.enabled,
                        "connector {verb}"
                    );
                    let job = Job {
                        def: Arc::new(def),
                        connections: connections.clone(),
                    };
                    if first_time {
                        self.first_seen(&job).await;
                    }
                    Scheduled {
                        job,
                        file,
                        digest,
                        next,
                    }
                }
            };
            next_loaded.insert(name, entry);
        }
        // A file that breaks keeps its last good definition until it is fixed.
        for (name, old) in std::mem::take(&mut self.loaded) {
            if broken.contains(&old.file.as_path()) && !next_loaded.contains_key(&name) {
                tracing::warn!(connector = %name, "keeping the last good definition until its file is fixed");
                next_loaded.insert(name, old);
            } else {
                tracing::info!(connector = %name, "connector removed");
                self.resumes.remove(&name);
                self.catch_up.remove(&name);
            }
        }
        self.loaded = next_loaded;
        metrics::gauge!("kpistream_runner_connectors").set(self.loaded.len() as f64);
    }

    /// A connector seen for the first time: a slot some runner left unfinished is taken
    /// up again, and `run_on_start` runs it now.
    async fn first_seen(&mut self, job: &Job) {
        let name = &job.def.name;
        let mut enabled_on_server = true;
        match connector_state(&self.env.client, name).await {
            Ok(state) => {
                enabled_on_server = state.enabled;
                if let Some(slot) = state
                    .unfinished_slot
                    .and_then(|t| crate::signature::timestamp(&t))
                {
                    tracing::info!(connector = %name, %slot, "a run of this slot was left unfinished; it will be redone once its lease is free, unless the connector is disabled");
                    self.resume(name.clone(), slot, Timestamp::now());
                    return;
                }
            }
            Err(status) => {
                tracing::warn!(connector = %name, "the connector's state cannot be read: {}", status.message());
            }
        }
        if job.def.enabled && enabled_on_server && job.def.catch_up != CatchUp::Skip {
            self.catch_up(job).await;
        }
        // A file seen again (removed, then back) while its run goes on does not start a
        // second one.
        if job.def.enabled && job.def.run_on_start && !self.running.contains_key(name) {
            let now = Timestamp::now();
            let slot = Timestamp::from_second(now.as_second()).unwrap_or(now);
            self.spawn(job.clone(), slot, Trigger::Schedule);
        }
    }

    /// Queues the slots the schedule had between the connector's newest run and now
    /// (none for a connector that never ran): the newest for `catch_up = "latest"`,
    /// every one for `"all"`. Each is leased like any slot, so with several runners
    /// starting at once each missed slot still runs once.
    async fn catch_up(&mut self, job: &Job) {
        let def = &job.def;
        let name = &def.name;
        // The newest run that was not a backfill (a backfill runs beside the schedule).
        let last = match self.env.client.runs(name, 100).await {
            Ok(runs) => runs
                .iter()
                .find(|r| r.backfill.is_empty())
                .and_then(|r| r.slot)
                .and_then(|t| crate::signature::timestamp(&t)),
            Err(status) => {
                tracing::warn!(connector = %name, "the run log cannot be read, so missed slots are not caught up: {}", status.message());
                return;
            }
        };
        let Some(mut after) = last else { return };
        let now = Timestamp::now();
        let mut missed = VecDeque::new();
        let mut dropped = 0usize;
        while let Some(slot) = def.schedule.next_after(after, def.timezone.tz()) {
            if slot > now {
                break;
            }
            if missed.len() == MAX_CATCH_UP_SLOTS {
                missed.pop_front();
                dropped += 1;
            }
            missed.push_back(slot);
            after = slot;
        }
        if def.catch_up == CatchUp::Latest && missed.len() > 1 {
            dropped += missed.len() - 1;
            missed.drain(..missed.len() - 1);
        }
        if missed.is_empty() {
            return;
        }
        tracing::info!(
            connector = %name,
            catch_up = ?def.catch_up,
            slots = missed.len(),
            first = %missed[0],
            skipped = dropped,
            "running the slots missed while no runner was up"
        );
        self.catch_up.insert(name.clone(), missed);
    }

    /// Takes `slot` of connector `name` up again from `first_try` on, for twice the
    /// lease time (five minutes at least).
    fn resume(&mut self, name: String, slot: Timestamp, first_try: Timestamp) {
        let patience = (self.env.lease_ttl * 2).max(Duration::from_secs(300));
        let resume = Resume {
            slot,
            until: Timestamp::now() + patience,
            next_try: first_try,
        };
        self.resumes.insert(name, resume);
    }

    /// Starts the runs asked for on the server by hand (the web console's "Run now") of
    /// the connectors this runner has and is not running, each request once. The
    /// requested time is the run's slot, so of several runners polling, one leases it;
    /// the report clears the request. A request older than `RUN_REQUEST_TTL_SECS` is
    /// left to the next scheduled run. Bounded in time, so a server that does not
    /// answer never holds the schedule up.
    async fn take_requests(&mut self) {
        if self.requests.unsupported || tokio::time::Instant::now() < self.requests.next_poll {
            return;
        }
        // Asked again after the answer (or after a pause, when there was none): a slow
        // server is never asked back to back.
        self.requests.next_poll = tokio::time::Instant::now() + REQUEST_POLL_BACKOFF;
        let request = proto::ListConnectorsRequest {
            requested_only: true,
        };
        let answer = tokio::time::timeout(
            REQUEST_POLL_TIMEOUT,
            self.env.client.runner().list_connectors(request),
        )
        .await;
        let asked = match answer {
            Ok(Ok(answer)) => {
                self.requests.next_poll = tokio::time::Instant::now() + REQUEST_POLL;
                answer.into_inner().connectors
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                tracing::warn!(
                    "the server does not know runs asked for by hand (an older version): this runner does not poll for them"
                );
                self.requests.unsupported = true;
                return;
            }
            Ok(Err(status)) => {
                tracing::debug!(
                    "the runs asked for on the server cannot be read: {}",
                    status.message()
                );
                return;
            }
            Err(_) => {
                tracing::debug!(
                    "the server did not list the runs asked for within {REQUEST_POLL_TIMEOUT:?}"
                );
                return;
            }
        };
        let now = Timestamp::now();
        let ttl = jiff::SignedDuration::from_secs(crate::runner_state::RUN_REQUEST_TTL_SECS);
        let mut taken = HashSet::new();
        for state in asked {
            let Some(slot) = state
                .run_requested_at
                .as_ref()
                .and_then(crate::signature::timestamp)
            else {
                continue;
            };
            let key = (state.connector.clone(), slot);
            if self.requests.taken.contains(&key) {
                taken.insert(key);
                continue;
            }
            let held = state
                .unfinished_slot
                .as_ref()
                .and_then(crate::signature::timestamp)
                == Some(slot);
            if held || now.duration_since(slot) > ttl || self.running.contains_key(&state.connector)
            {
                continue;
            }
            let Some(scheduled) = self.loaded.get(&state.connector) else {
                continue;
            };
            tracing::info!(connector = %state.connector, %slot, "a run was asked for on the server: running it");
            let job = scheduled.job.clone();
            self.spawn(job, slot, Trigger::Manual);
            taken.insert(key);
        }
        // Only the requests still listed are remembered.
        self.requests.taken = taken;
    }

    /// Starts every run that is due.
    async fn fire_due(&mut self) {
        let now = Timestamp::now();
        let due_resumes: Vec<(String, Timestamp)> = self
            .resumes
            .iter()
            .filter(|(name, r)| !self.running.contains_key(*name) && r.next_try <= now)
            .map(|(name, r)| (name.clone(), r.slot))
            .collect();
        for (name, slot) in due_resumes {
            if let Some(r) = self.resumes.get_mut(&name) {
                r.next_try = now + Duration::from_secs(1);
            }
            if let Some(s) = self.loaded.get(&name) {
                let job = s.job.clone();
                self.spawn(job, slot, Trigger::Resume);
            }
        }
        let mut due = Vec::new();
        for (name, s) in &mut self.loaded {
            let Some(next) = s.next else { continue };
            if next > now {
                continue;
            }
            let def = &s.job.def;
            s.next = def.schedule.next_after(now, def.timezone.tz());
            // While missed slots are being caught up, a new one waits its turn (within
            // the same bound as the missed ones: a connector slower than its schedule
            // skips slots, as below).
            if let Some(queue) = self.catch_up.get_mut(name) {
                if queue.len() < MAX_CATCH_UP_SLOTS {
                    queue.push_back(next);
                } else {
                    tracing::warn!(connector = %name, skipped = %next, "the slots being caught up are at their bound: this slot is skipped");
                }
                continue;
            }
            if let Some(slot) = self.running.get(name) {
                tracing::warn!(connector = %name, skipped = %next, running = %slot, "the previous run is still going: this slot is skipped");
                metrics::counter!("kpistream_runner_slots_skipped_total", "connector" => name.clone()).increment(1);
                continue;
            }
            due.push((s.job.clone(), next));
        }
        for (name, queue) in &mut self.catch_up {
            if self.running.contains_key(name) {
                continue;
            }
            match self.loaded.get(name) {
                // A definition turned off in its file drops what it had to catch up.
                Some(s) if !s.job.def.enabled => queue.clear(),
                Some(s) => due.extend(queue.pop_front().map(|slot| (s.job.clone(), slot))),
                None => queue.clear(),
            }
        }
        self.catch_up.retain(|_, queue| !queue.is_empty());
        for (job, slot) in due {
            self.spawn(job, slot, Trigger::Schedule);
        }
    }

    fn spawn(&mut self, job: Job, slot: Timestamp, trigger: Trigger) {
        let name = job.def.name.clone();
        self.running.insert(name.clone(), slot);
        let env = self.env.clone();
        self.tasks.spawn(async move {
            let outcome = run_slot(&env, &job, slot, trigger).await;
            (name, slot, outcome)
        });
    }

    fn finished(
        &mut self,
        done: Result<(String, Timestamp, Result<Outcome, tonic::Status>), tokio::task::JoinError>,
    ) {
        let (name, slot, outcome) = match done {
            Ok(done) => done,
            Err(e) => {
                tracing::error!("a run task ended abnormally: {e}");
                return;
            }
        };
        self.running.remove(&name);
        let resume = self.resumes.get(&name).filter(|r| r.slot == slot);
        match outcome {
            Ok(Outcome::NotOurs { holder, completed }) => {
                let resuming = resume.is_some();
                if completed || resume.is_some_and(|r| Timestamp::now() > r.until) {
                    self.resumes.remove(&name);
                }
                if !completed && !resuming {
                    tracing::warn!(connector = %name, %slot, %holder, "this slot is not run: another run of the connector holds its lease (another runner, or a `connector run` or `backfill` by hand)");
                }
                tracing::debug!(connector = %name, %slot, %holder, completed, "slot not ours");
            }
            // A misconfiguration is logged where it happened. A slot to take up again is
            // dropped as after a run: once this machine is fixed, the next slot starts
            // from the stored cursor, so nothing is missed.
            Ok(Outcome::Ran(_) | Outcome::Misconfigured(_)) => {
                if resume.is_some() {
                    self.resumes.remove(&name);
                }
            }
            Ok(Outcome::Disabled) => {
                if resume.is_some() {
                    tracing::info!(connector = %name, %slot, "the connector is disabled on the server: its unfinished slot is not redone");
                    self.resumes.remove(&name);
                }
            }
            Err(status) => {
                tracing::error!(connector = %name, %slot, "the server could not be reached for this run: {}", status.message());
                // A run asked for by hand is asked for still: the next poll takes it up
                // again as such (a slot taken up again would skip a disabled connector).
                self.requests.taken.remove(&(name.clone(), slot));
                match resume {
                    Some(r) if Timestamp::now() > r.until => {
                        self.resumes.remove(&name);
                    }
                    Some(_) => {}
                    // The run may have published without being reported: it is redone
                    // (same batch ids) once the server answers again.
                    None => self.resume(name, slot, Timestamp::now() + Duration::from_secs(1)),
                }
            }
        }
    }

    /// How long to sleep: until the next fire time, a pending resume, or the next
    /// directory check, whichever comes first.
    fn wait(&self, until_reload: Duration) -> Duration {
        let now = Timestamp::now();
        let mut wait = until_reload;
        if !self.requests.unsupported {
            let now = tokio::time::Instant::now();
            wait = wait.min(self.requests.next_poll.saturating_duration_since(now));
        }
        if !self.resumes.is_empty() {
            wait = wait.min(Duration::from_secs(1));
        }
        if self
            .catch_up
            .keys()
            .any(|name| !self.running.contains_key(name))
        {
            wait = Duration::ZERO;
        }
        for s in self.loaded.values() {
            if let Some(next) = s.next {
                let until = Duration::try_from(next.duration_since(now)).unwrap_or_default();
                wait = wait.min(until);
            }
        }
        wait.max(Duration::from_millis(5))
    }
}

/// The `*.toml` files of `dir` with a digest of their content: connector files are
/// small, and content (unlike a modification time) sees every edit.
fn listing(dir: &Path) -> Vec<(PathBuf, [u8; 32])> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| {
            let content = std::fs::read(e.path()).unwrap_or_default();
            (e.path(), Sha256::digest(content).into())
        })
        .collect();
    files.sort();
    files
}

/// A digest of a definition file's content digest and the connections (as `Debug`
/// text), to tell a changed definition.
fn digest(file: [u8; 32], connections: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(file);
    hash.update(connections);
    hash.finalize().into()
}
