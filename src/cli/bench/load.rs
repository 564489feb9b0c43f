//! The load: publishers sending a workload's batches to kpistream (unary `Publish` or
//! `PublishStream`) or to InfluxDB (line protocol over HTTP), closed-loop (each
//! publisher waits for an answer before its next batch) or open-loop at `--rate`
//! (each batch leaves when it is due, whatever is still unanswered; its latency
//! counts from when it was due, so a server that falls behind shows it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::workload::{GenBatch, History, Workload};
use crate::client::{self, Client, ConnectOptions, Credential};
use crate::proto;

/// Where the points go.
#[derive(Clone)]
pub enum Target {
    /// A kpistream server; one credential per stream of the workload.
    Kpistream {
        address: String,
        options: ConnectOptions,
        credentials: Arc<Vec<Credential>>,
        streaming: bool,
    },
    /// InfluxDB 1.x's `/write` endpoint (with `db` and `precision=s`).
    Influx { url: reqwest::Url },
}

/// The first second InfluxDB points are written at: period `n` of a stream is second
/// `n` after it (2000-01-01T00:00:00Z), which keeps a run within a few shards.
const INFLUX_EPOCH: u64 = 946_684_800;

/// What the publishers counted.
#[derive(Debug, Default)]
pub struct Tally {
    /// One per answered batch.
    pub latencies: Vec<Duration>,
    pub batches: u64,
    pub points: u64,
    /// Points sent as updates of an acknowledged period.
    pub updates: u64,
    /// Points the server said it stored.
    pub accepted: u64,
    /// Of those, points the server said replaced another value.
    pub revised: u64,
    pub rejected: u64,
    /// Why the first rejected point was refused.
    pub first_rejection: Option<String>,
}

/// A batch's answer.
struct Answer {
    accepted: u64,
    revised: u64,
    rejected: Vec<String>,
}

/// One publisher's way to the target: its own connection.
#[derive(Clone)]
enum Sink {
    Unary(Client, Arc<Vec<Credential>>),
    Stream(mpsc::Sender<StreamCall>, Arc<Vec<Credential>>),
    Influx(reqwest::Client, reqwest::Url),
}

type StreamCall = (
    proto::PublishRequest,
    oneshot::Sender<Result<proto::PublishResponse, tonic::Status>>,
);

/// Runs `workload` against `target`; returns the tally and the time from the first
/// batch sent to the last answer.
pub async fn run(
    workload: &Workload,
    target: &Target,
    progress: &ProgressBar,
) -> anyhow::Result<(Tally, Duration)> {
    let mut sinks = Vec::with_capacity(workload.publishers);
    for _ in 0..workload.publishers {
        sinks.push(connect(target).await?);
    }
    let shared = Arc::new(Shared {
        workload: workload.clone(),
        tally: Mutex::new(Tally::default()),
        failure: Mutex::new(None),
        progress: progress.clone(),
    });
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for (index, sink) in sinks.into_iter().enumerate() {
        publishers.spawn(publish(shared.clone(), index, sink, started));
    }
    while publishers.join_next().await.transpose()?.is_some() {}
    let elapsed = started.elapsed();
    if let Some(failure) = shared.failure.lock().expect("failure lock").take() {
        anyhow::bail!(failure);
    }
    let tally = std::mem::take(&mut *shared.tally.lock().expect("tally lock"));
    Ok((tally, elapsed))
}

/// What every publisher shares.
struct Shared {
    workload: Workload,
    tally: Mutex<Tally>,
    /// The first failure, which stops every publisher.
    failure: Mutex<Option<String>>,
    progress: ProgressBar,
}

impl Shared {
    fn failed(&self) -> bool {
        self.failure.lock().expect("failure lock").is_some()
    }

    fn fail(&self, error: anyhow::Error) {
        let mut failure = self.failure.lock().expect("failure lock");
        if failure.is_none() {
            *failure = Some(format!("{error:#}"));
        }
    }

    fn record(&self, batch: &GenBatch, answer: Answer, latency: Duration) {
        let mut tally = self.tally.lock().expect("tally lock");
        tally.latencies.push(latency);
        tally.batches += 1;
        tally.points += batch.points.len() as u64;
        tally.updates += batch.updates as u64;
        tally.accepted += answer.accepted;
        tally.revised += answer.revised;
        tally.rejected += answer.rejected.len() as u64;
        if tally.first_rejection.is_none() {
            tally.first_rejection = answer.rejected.into_iter().next();
        }
        self.progress.inc(batch.points.len() as u64);
    }
}

/// One publisher: its batches in order, each when due (open loop) or after the
/// previous answer (closed loop).
async fn publish(shared: Arc<Shared>, index: usize, sink: Sink, started: Instant) {
    let history = Arc::new(Mutex::new(History::default()));
    let open_loop = shared.workload.rate.is_some();
    let mut calls = JoinSet::new();
    for batch_index in shared.workload.batches_of(index) {
        if shared.failed() {
            break;
        }
        let due = shared.workload.due(batch_index).map(|d| started + d);
        if let Some(at) = due {
            tokio::time::sleep_until(at).await;
        }
        let batch = shared
            .workload
            .batch(batch_index, &mut history.lock().expect("history lock"));
        let call = send(
            shared.clone(),
            sink.clone(),
            history.clone(),
            batch,
            due.unwrap_or_else(Instant::now),
        );
        if open_loop {
            calls.spawn(call);
        } else {
            call.await;
        }
    }
    while calls.join_next().await.is_some() {}
}

async fn send(
    shared: Arc<Shared>,
    sink: Sink,
    history: Arc<Mutex<History>>,
    batch: GenBatch,
    began: Instant,
) {
    match sink.call(&shared.workload, &batch).await {
        Ok(answer) => {
            shared.record(&batch, answer, began.elapsed());
            history.lock().expect("history lock").acknowledged(&batch);
        }
        Err(e) => shared.fail(e),
    }
}

async fn connect(target: &Target) -> anyhow::Result<Sink> {
    match target {
        Target::Kpistream {
            address,
            options,
            credentials,
            streaming,
        } => {
            let mut options = options.clone();
            // Publishing needs no token.
            options.token = None;
            let client = Client::connect_with(address, options).await?;
            if *streaming {
                Ok(Sink::Stream(
                    open_stream(&client).await?,
                    credentials.clone(),
                ))
            } else {
                Ok(Sink::Unary(client, credentials.clone()))
            }
        }
        Target::Influx { url } => {
            // One connection per publisher, like the gRPC side.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .context("cannot make an HTTP client")?;
            Ok(Sink::Influx(http, url.clone()))
        }
    }
}

/// Opens a `PublishStream` call; the returned sender takes requests with the place
/// to send each one's answer (answers come in the order of the requests).
async fn open_stream(client: &Client) -> anyhow::Result<mpsc::Sender<StreamCall>> {
    let (requests, outgoing) = mpsc::channel(64);
    let responses = client
        .ingest()
        .publish_stream(ReceiverStream::new(outgoing))
        .await
        .map_err(super::super::status)?
        .into_inner();
    let (calls, incoming) = mpsc::channel(64);
    tokio::spawn(dispatch(incoming, requests, responses));
    Ok(calls)
}

/// Forwards requests onto the stream and hands each answer to the oldest caller
/// waiting; ends when the callers are gone and every answer is in.
async fn dispatch(
    mut calls: mpsc::Receiver<StreamCall>,
    requests: mpsc::Sender<proto::PublishRequest>,
    mut responses: tonic::Streaming<proto::PublishResponse>,
) {
    let mut waiting: VecDeque<oneshot::Sender<_>> = VecDeque::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        tokio::select! {
            call = calls.recv(), if open => match call {
                Some((request, reply)) => {
                    waiting.push_back(reply);
                    if requests.send(request).await.is_err() {
                        break;
                    }
                }
                None => open = false,
            },
            answer = responses.message() => {
                let answer = match answer {
                    Ok(Some(response)) => Ok(response),
                    Ok(None) => Err(tonic::Status::unavailable("the server ended the publish stream")),
                    Err(status) => Err(status),
                };
                let ended = answer.is_err();
                if let Some(reply) = waiting.pop_front() {
                    let _ = reply.send(answer.clone());
                }
                if ended {
                    for reply in waiting.drain(..) {
                        let _ = reply.send(answer.clone());
                    }
                    break;
                }
            }
        }
    }
}

impl Sink {
    async fn call(&self, workload: &Workload, batch: &GenBatch) -> anyhow::Result<Answer> {
        match self {
            Self::Unary(client, credentials) => {
                let request = signed_request(workload, batch, &credentials[batch.stream]);
                let response = client
                    .ingest()
                    .publish(request)
                    .await
                    .map_err(super::super::status)?;
                Ok(answer(response.into_inner()))
            }
            Self::Stream(calls, credentials) => {
                let request = signed_request(workload, batch, &credentials[batch.stream]);
                let (reply, answered) = oneshot::channel();
                calls
                    .send((request, reply))
                    .await
                    .map_err(|_| anyhow::anyhow!("the publish stream is closed"))?;
                let response = answered
                    .await
                    .map_err(|_| anyhow::anyhow!("the publish stream is closed"))?
                    .map_err(super::super::status)?;
                if let Some(error) = &response.error {
                    anyhow::bail!(
                        "the server refused a batch: {} (code {})",
                        crate::text::printable(&error.message),
                        error.code
                    );
                }
                Ok(answer(response))
            }
            Self::Influx(http, url) => influx_write(http, url, batch).await,
        }
    }
}

fn signed_request(
    workload: &Workload,
    batch: &GenBatch,
    credential: &Credential,
) -> proto::PublishRequest {
    proto::PublishRequest {
        batch: Some(credential.seal(&proto_batch(workload, batch))),
        all_or_nothing: false,
    }
}

/// The batch as a publisher builds it: daily periods as text, a fresh batch id, signed now.
pub fn proto_batch(workload: &Workload, batch: &GenBatch) -> proto::Batch {
    let points = batch
        .points
        .iter()
        .map(|p| client::point_for_period(&workload.day(p.period), &p.value, ""))
        .collect();
    client::new_batch(points)
}

fn answer(response: proto::PublishResponse) -> Answer {
    Answer {
        accepted: u64::from(response.accepted),
        revised: u64::from(response.revised),
        rejected: response
            .rejected
            .into_iter()
            .map(|r| format!("point {}: {}", r.index, crate::text::printable(&r.reason)))
            .collect(),
    }
}

/// The batch as InfluxDB line protocol: measurement `kpi`, the stream as a tag, the
/// value as a field, the period as a timestamp in seconds.
pub fn line_protocol(batch: &GenBatch) -> String {
    let mut body = String::with_capacity(batch.points.len() * 48);
    for point in &batch.points {
        use std::fmt::Write;
        let _ = writeln!(
            body,
            "kpi,stream=s{} value={} {}",
            batch.stream,
            point.value,
            INFLUX_EPOCH + point.period
        );
    }
    body
}

async fn influx_write(
    http: &reqwest::Client,
    url: &reqwest::Url,
    batch: &GenBatch,
) -> anyhow::Result<Answer> {
    let response = http
        .post(url.clone())
        .body(line_protocol(batch))
        .send()
        .await
        .with_context(|| format!("cannot write to InfluxDB at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!(
            "InfluxDB answered {status} to a write: {}",
            crate::text::printable(body.trim())
        );
    }
    Ok(Answer {
        accepted: batch.points.len() as u64,
        revised: 0,
        rejected: Vec::new(),
    })
}
