//! `kpistream bench`: publish throughput and latency of a workload, against a server of
//! its own (`--embedded`), a running server, or InfluxDB 1.x for comparison, with the
//! ceilings of verification and of the store alone (`--ceilings`).

mod ceilings;
mod embedded;
mod load;
mod report;
mod workload;

use crate::cli::exit::outln;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::civil::Date;

use self::embedded::{EmbeddedServer, ProcessStats};
use self::load::Target;
use self::report::{Latency, Report, ServerFigures};
use self::workload::Workload;
use super::{ServerArgs, status};
use crate::client::{Client, ConnectOptions, Credential, NewStream, ValueKind};
use crate::period::Frequency;

/// Batches sent when neither --points nor --batches is given.
const DEFAULT_BATCHES: u64 = 100;
/// Streams created at once through the admin API.
const CREATING_AT_ONCE: usize = 8;
/// The counter of write transactions, and the histogram whose count is the number of
/// group commits on servers that do not have the counter.
const COMMIT_METRICS: [&str; 2] = [
    "kpistream_commit_transactions_total",
    "kpistream_commit_group_batches_count",
];

/// Publish synthetic points to daily number streams and report throughput and latency.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Where the points go, one of:
  --embedded          a server of its own: this binary's `serve` on a temporary database,
                      with the streams and credentials it needs; all removed at the end
  --credential FILE   one stream of the server at --server, by its credential
  (neither)           the server at --server: the streams are created with the admin
                      token (--token, --token-file) and deleted at the end
  --influxdb URL      InfluxDB 1.x: the same points as line protocol, for comparison

Examples:
  kpistream bench --embedded --points 200000 --batch-size 1000 --publishers 8
  kpistream bench --embedded --points 20000 --batch-size 1 --publishers 64 --rate 5000
  kpistream bench --embedded --streams 1000 --batch-size 1 --points 100000 --publishers 64
  kpistream bench --embedded --points 200000 --publishers 8 --update-share 0.1 --ceilings --json
  kpistream bench --credential bench.kpik --batches 100 --batch-size 1000
  kpistream bench --influxdb 'http://127.0.0.1:8086/write?db=bench&precision=s' --points 200000 --publishers 8")]
pub struct BenchArgs {
    /// Start a server of its own on a temporary database, create the streams it needs and remove everything at the end.
    #[arg(long, conflicts_with_all = ["credential", "influxdb"])]
    embedded: bool,
    /// Credential of a daily number stream on --server, used only for benchmarks (one stream).
    #[arg(long, value_name = "FILE", conflicts_with = "influxdb")]
    credential: Option<PathBuf>,
    /// Send the points to InfluxDB 1.x instead: its write URL with db and precision=s.
    #[arg(long, value_name = "URL")]
    influxdb: Option<reqwest::Url>,
    /// Streams written to, one credential each: batch N goes to stream N mod STREAMS.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    streams: u32,
    /// Points per batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Publishers sending at once, each on its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    publishers: u32,
    /// Points sent in all, by all publishers together [default: 100 batches].
    #[arg(long, conflicts_with = "batches", value_parser = clap::value_parser!(u64).range(1..))]
    points: Option<u64>,
    /// Batches sent in all, by all publishers together [default: 100].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batches: Option<u64>,
    /// Fraction of the points (0 to 1) that rewrite periods already stored with a new value, so that they become revisions.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE", value_parser = share)]
    update_share: f64,
    /// Unary `Publish` calls, or one `PublishStream` call per publisher.
    #[arg(long, value_enum, default_value_t = Mode::Unary)]
    mode: Mode,
    /// Send at this many points per second in all (open loop), to measure latency at a given load; latency then counts from when a batch was due.
    #[arg(long, value_name = "POINTS_PER_S", value_parser = rate)]
    rate: Option<f64>,
    /// First day of the synthetic periods; each new point of a stream gets its own day.
    #[arg(long, default_value = "1900-01-01")]
    start: Date,
    /// Print one JSON document on standard output (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Also measure, on the same batches, verification alone on all cores and the store alone (no gRPC, no crypto).
    #[arg(long)]
    ceilings: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// One `Publish` call per batch.
    Unary,
    /// One `PublishStream` call per publisher, one request per batch.
    Stream,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!(
            "{text:?} is not a share: give a fraction from 0 to 1, such as 0.1"
        )),
    }
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give points per second, such as 5000"
        )),
    }
}

/// Where the points went, and what to undo afterwards.
enum Setup {
    Embedded(EmbeddedServer),
    /// Streams created on a running server, deleted at the end.
    Created(Client, Vec<String>),
    Given,
    Influx,
}

impl BenchArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let workload = self.workload()?;
        let (target, setup) = self.prepare(&workload).await?;
        // Interrupted, it still stops its server or deletes its streams.
        let loaded = tokio::select! {
            loaded = self.load(&workload, &target, &setup) => loaded,
            () = super::shutdown_signal() => Err(anyhow::anyhow!("interrupted: the benchmark stopped before the end")),
        };
        let cleaned = cleanup(setup).await;
        let mut report = loaded?;
        cleaned?;
        if self.ceilings {
            report.ceilings = Some(ceilings::measure(&workload).await?);
        }
        if self.json {
            outln!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.text());
        }
        if let Some(first) = &report.first_rejection {
            anyhow::bail!(
                "the server rejected {} point(s) the benchmark expected it to take; the first: {first}",
                report.rejected
            );
        }
        Ok(())
    }

    fn workload(&self) -> anyhow::Result<Workload> {
        if self.credential.is_some() && self.streams > 1 {
            anyhow::bail!(
                "--credential names one stream, so --streams must be 1: use --embedded, or leave out --credential to have the streams created with the admin token"
            );
        }
        if self.influxdb.is_some() && self.mode == Mode::Stream {
            anyhow::bail!(
                "--mode stream is kpistream's PublishStream call, which InfluxDB has no counterpart of: use --mode unary"
            );
        }
        let batch_size = self.batch_size as usize;
        let points = match (self.points, self.batches) {
            (Some(points), _) => points,
            (None, batches) => batches
                .unwrap_or(DEFAULT_BATCHES)
                .checked_mul(batch_size as u64)
                .context("--batches times --batch-size is more points than can be counted")?,
        };
        let workload = Workload {
            streams: self.streams as usize,
            batch_size,
            points,
            publishers: self.publishers as usize,
            update_share: self.update_share,
            rate: self.rate,
            start: self.start,
        };
        workload.check_calendar()?;
        Ok(workload)
    }

    /// Starts the server or creates the streams, as the options say.
    async fn prepare(&self, workload: &Workload) -> anyhow::Result<(Target, Setup)> {
        if let Some(url) = &self.influxdb {
            check_influx_url(url)?;
            return Ok((Target::Influx { url: url.clone() }, Setup::Influx));
        }
        let streaming = self.mode == Mode::Stream;
        if self.embedded {
            let server = EmbeddedServer::start().await?;
            let options = ConnectOptions::with_token(server.token.clone());
            let admin = Client::connect_with(&server.grpc, options.clone()).await?;
            let credentials = create_streams(&admin, workload.streams, "bench").await;
            let credentials = match credentials {
                Ok(c) => c.into_iter().map(|(_, c)| c).collect(),
                Err(e) => {
                    let _ = server.stop().await;
                    return Err(e);
                }
            };
            let target = Target::Kpistream {
                address: server.grpc.clone(),
                options: ConnectOptions::default(),
                credentials: Arc::new(credentials),
                streaming,
            };
            return Ok((target, Setup::Embedded(server)));
        }
        let options = self.server.tls_options()?;
        if let Some(path) = &self.credential {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let credential: Credential = text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a credential", path.display()))?;
            let target = Target::Kpistream {
                address: self.server.address()?,
                options,
                credentials: Arc::new(vec![credential]),
                streaming,
            };
            return Ok((target, Setup::Given));
        }
        let admin = self.server.connect().await?;
        let run = uuid::Uuid::now_v7().simple().to_string();
        let created =
            create_streams(&admin, workload.streams, &format!("bench {}", &run[..12])).await?;
        let (ids, credentials) = created.into_iter().unzip();
        let target = Target::Kpistream {
            address: self.server.address()?,
            options,
            credentials: Arc::new(credentials),
            streaming,
        };
        Ok((target, Setup::Created(admin, ids)))
    }

    /// Runs the load and counts what the server (embedded) spent on it.
    async fn load(
        &self,
        workload: &Workload,
        target: &Target,
        setup: &Setup,
    ) -> anyhow::Result<Report> {
        let server = match setup {
            Setup::Embedded(server) => Some(server),
            _ => None,
        };
        let before = match server {
            Some(s) => Some((s.stats()?, commit_count(s).await?)),
            None => None,
        };
        let progress = self.progress(workload.points);
        let (tally, elapsed) = load::run(workload, target, &progress).await?;
        progress.finish_and_clear();
        let mut report = self.empty_report(workload);
        report.count(tally, elapsed);
        if let (Some(server), Some((idle, commits))) = (server, before) {
            report.server = Some(server_figures(server, idle, commits).await?);
        }
        Ok(report)
    }

    fn progress(&self, points: u64) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(points);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} points, {eta} left",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    }

    fn empty_report(&self, workload: &Workload) -> Report {
        let (target, mode) = match (&self.influxdb, self.mode) {
            (Some(_), _) => ("influxdb", "http"),
            (None, Mode::Unary) => ("kpistream", "unary"),
            (None, Mode::Stream) => ("kpistream", "stream"),
        };
        Report {
            target,
            embedded: self.embedded,
            mode,
            streams: workload.streams,
            publishers: workload.publishers,
            batch_size: workload.batch_size,
            update_share: workload.update_share,
            rate: workload.rate,
            points: 0,
            batches: 0,
            update_points: 0,
            accepted: 0,
            revised: None,
            rejected: 0,
            first_rejection: None,
            elapsed_s: 0.0,
            points_per_s: 0.0,
            batches_per_s: 0.0,
            latency_ms: Latency::of(&mut []),
            server: None,
            ceilings: None,
        }
    }
}

/// `count` daily number streams named `prefix N`, created a few at a time; their ids
/// and credentials, in order.
async fn create_streams(
    admin: &Client,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<(String, Credential)>> {
    let results: Vec<anyhow::Result<(String, Credential)>> = futures::stream::iter(0..count)
        .map(|i| {
            let new = NewStream {
                name: format!("{prefix} {i}"),
                description: "made by kpistream bench".into(),
                category: None,
                frequency: Frequency::Daily,
                value: ValueKind::Number,
                time_zone: "UTC".into(),
                grants: Vec::new(),
            };
            async move {
                let created = admin.create_stream(new).await.map_err(status)?;
                Ok::<_, anyhow::Error>((created.stream.id, created.credential))
            }
        })
        .buffered(CREATING_AT_ONCE)
        .collect()
        .await;
    let (created, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let created: Vec<_> = created.into_iter().map(Result::unwrap).collect();
    let Some(Err(error)) = failed.into_iter().next() else {
        return Ok(created);
    };
    // Those made before the failure are not left behind.
    let ids = created.into_iter().map(|(id, _)| id).collect();
    let error = error.context("cannot create the benchmark's streams");
    match cleanup(Setup::Created(admin.clone(), ids)).await {
        Ok(()) => Err(error),
        Err(e) => Err(anyhow::anyhow!(
            "{error:#}; and the streams created before could not all be deleted: {e:#}"
        )),
    }
}

/// Stops the embedded server, or deletes the streams the run created.
async fn cleanup(setup: Setup) -> anyhow::Result<()> {
    match setup {
        Setup::Embedded(server) => server.stop().await,
        Setup::Created(admin, ids) => {
            futures::stream::iter(ids)
                .map(|id| {
                    let admin = &admin;
                    async move {
                        admin
                            .delete_stream(&id)
                            .await
                            .map_err(status)
                            .with_context(|| format!("cannot delete the benchmark's stream {id}"))
                    }
                })
                .buffer_unordered(CREATING_AT_ONCE)
                .try_collect::<Vec<_>>()
                .await?;
            Ok(())
        }
        Setup::Given | Setup::Influx => Ok(()),
    }
}

/// InfluxDB's `/write` needs the database, and the points carry seconds.
fn check_influx_url(url: &reqwest::Url) -> anyhow::Result<()> {
    let query = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if query("db").is_none_or(|db| db.is_empty()) {
        anyhow::bail!("the InfluxDB URL {url} names no database: add ?db=NAME");
    }
    if query("precision").as_deref() != Some("s") {
        anyhow::bail!(
            "the InfluxDB URL {url} must have precision=s: the points' timestamps are in seconds"
        );
    }
    Ok(())
}

/// Group commits so far, from the first of [`COMMIT_METRICS`] the server exposes.
async fn commit_count(server: &EmbeddedServer) -> anyhow::Result<Option<(&'static str, f64)>> {
    for metric in COMMIT_METRICS {
        if let Some(value) = server.metric(metric).await? {
            return Ok(Some((metric, value)));
        }
    }
    Ok(None)
}

async fn server_figures(
    server: &EmbeddedServer,
    idle: ProcessStats,
    commits_before: Option<(&'static str, f64)>,
) -> anyhow::Result<ServerFigures> {
    let after = server.stats()?;
    let commits_after = commit_count(server).await?;
    // A metric that appears only once something was committed counts from zero.
    let commits = commits_after.map(|(metric, after)| {
        let before = commits_before
            .filter(|(m, _)| *m == metric)
            .map_or(0.0, |(_, v)| v);
        (metric, (after - before).max(0.0) as u64)
    });
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(ServerFigures {
        cpu_s: after.cpu_seconds - idle.cpu_seconds,
        rss_idle_mib: mib(idle.rss_kib),
        rss_peak_mib: mib(after.peak_rss_kib),
        commit_transactions: commits.map(|(_, n)| n),
        commit_transactions_metric: commits.map(|(m, _)| m),
    })
}
