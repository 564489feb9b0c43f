//! [`Publisher`]: batches points, signs each batch with the stream's credential,
//! publishes with bounded memory and a bounded number of batches in flight, and retries
//! without ever double-counting.
//!
//! How it holds together:
//! * every point handed in takes one permit of a semaphore sized by
//!   [`PublisherBuilder::buffer`]; the permit is given back only when the point's outcome
//!   is known, so points buffered plus points in flight never exceed the bound;
//! * one batcher task groups points by size and linger time, seals each batch once
//!   (fresh `batch_id`, `signed_at`, signature) and hands it to a send task;
//! * a send task re-sends the **same bytes** on `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
//!   `ABORTED` or a dropped connection, so the server stores a retried batch once (it
//!   answers a replay with the original result). Other codes are final.

#![warn(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{ClientError, ConnectOptions, Credential, new_batch};
use crate::proto;
use crate::proto::ingest_client::IngestClient;

/// How a [`Publisher`] sends batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// One `PublishStream` call carries many batches (answers come back in order);
    /// best for sustained load. A broken stream is reopened and its unanswered
    /// batches are re-sent.
    #[default]
    Stream,
    /// One `Publish` call per batch.
    Unary,
}

/// When and how long a batch is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Wait before the first retry; doubles each time (with jitter).
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// No attempt starts this long after the first one. Keep it below the server's
    /// allowed clock skew (5 minutes by default): a retry re-sends the same signed bytes,
    /// and the server refuses a `signed_at` older than the skew.
    pub max_elapsed: Duration,
    /// Deadline of one attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// What became of one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointOutcome {
    /// Stored (or already stored by an earlier attempt of the same batch).
    Accepted {
        /// The batch that carried the point.
        batch_id: String,
    },
    /// The server refused this point and stored the others of its batch.
    Rejected {
        /// The batch that carried the point.
        batch_id: String,
        /// The server's reason, a sentence.
        reason: String,
    },
    /// The whole batch failed and nothing of it was stored.
    Failed {
        /// The batch that carried the point.
        batch_id: String,
        /// Why the batch failed.
        failure: BatchFailure,
    },
}

/// Why a batch failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    /// The gRPC status code of the last attempt.
    pub code: Code,
    /// The server's (or the transport's) message.
    pub message: String,
    /// How many times the batch was sent.
    pub attempts: u32,
}

/// A point the server refused, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedPoint {
    /// The batch that carried the point.
    pub batch_id: String,
    /// The point as it was handed in.
    pub point: proto::Point,
    /// The server's reason, a sentence.
    pub reason: String,
}

/// A batch that failed as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedBatch {
    /// The batch's id.
    pub batch_id: String,
    /// How many points it carried (none of them was stored).
    pub points: usize,
    /// Why it failed.
    pub failure: BatchFailure,
}

/// Everything resolved since the previous report: returned by [`Publisher::flush`] and
/// [`Publisher::close`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Points stored.
    pub accepted: u64,
    /// Batches the server had already stored (a retry after a lost answer); their
    /// points count in `accepted`.
    pub replayed_batches: u64,
    /// Points the server refused, each with its reason.
    pub rejected: Vec<RejectedPoint>,
    /// Batches that failed as a whole.
    pub failed: Vec<FailedBatch>,
}

impl Report {
    /// True when every point was stored.
    pub fn is_clean(&self) -> bool {
        self.rejected.is_empty() && self.failed.is_empty()
    }

    fn merge(&mut self, other: Report) {
        self.accepted += other.accepted;
        self.replayed_batches += other.replayed_batches;
        self.rejected.extend(other.rejected);
        self.failed.extend(other.failed);
    }
}

/// Why a point was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// [`Publisher::try_publish`] found no room (the buffer's size is given).
    #[error("the publisher's buffer is full ({0} points): wait for batches to be acknowledged")]
    Full(usize),
    /// The publisher was closed.
    #[error("the publisher is closed")]
    Closed,
}

/// The outcome of one point, once its batch is answered. Dropping it is fine: the
/// outcome is also counted in the next [`Report`].
pub struct Receipt(oneshot::Receiver<PointOutcome>);

impl Future for Receipt {
    type Output = PointOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PointOutcome> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.unwrap_or_else(|_| PointOutcome::Failed {
                batch_id: String::new(),
                failure: BatchFailure {
                    code: Code::Cancelled,
                    message: "the publisher stopped before the point was sent".into(),
                    attempts: 0,
                },
            })
        })
    }
}

/// Configures a [`Publisher`]; see [`Publisher::builder`].
#[derive(Debug)]
pub struct PublisherBuilder {
    endpoint: String,
    credential: Credential,
    options: ConnectOptions,
    batch_size: usize,
    linger: Duration,
    buffer: usize,
    in_flight: usize,
    transport: Transport,
    retry: RetryPolicy,
    all_or_nothing: bool,
}

impl PublisherBuilder {
    /// Connection settings (TLS, timeouts); no token is needed to publish.
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.options = options;
        self
    }

    /// Points per batch (default 1,000; at most 10,000, the server's default limit).
    pub fn batch_size(mut self, points: usize) -> Self {
        self.batch_size = points.clamp(1, 10_000);
        self
    }

    /// How long a partly filled batch waits for more points (default 200 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Most points held at once, buffered or in flight (default 10,000). When full,
    /// [`Publisher::publish`] waits and [`Publisher::try_publish`] refuses.
    pub fn buffer(mut self, points: usize) -> Self {
        self.buffer = points.max(1);
        self
    }

    /// Most batches sent and not yet answered (default 4).
    pub fn in_flight(mut self, batches: usize) -> Self {
        self.in_flight = batches.max(1);
        self
    }

    /// How batches travel (default [`Transport::Stream`]).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// When and for how long a batch is retried (see [`RetryPolicy`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Ask the server to refuse a whole batch when one of its points is invalid.
    pub fn all_or_nothing(mut self, yes: bool) -> Self {
        self.all_or_nothing = yes;
        self
    }

    /// Starts the publisher. The connection is made on first use (and made again after
    /// it drops), so a server that is down only delays batches. Call it inside a Tokio
    /// runtime.
    pub fn build(self) -> Result<Publisher, ClientError> {
        let channel = self.options.endpoint(&self.endpoint)?.connect_lazy();
        let ingest = IngestClient::new(channel);
        let sender = match self.transport {
            Transport::Unary => Sender::Unary(ingest),
            Transport::Stream => Sender::Stream(StreamMux::start(ingest, self.in_flight)),
        };
        let permits = Arc::new(Semaphore::new(self.buffer));
        let (tx, rx) = mpsc::unbounded_channel();
        let batcher = Batcher {
            endpoint: self.endpoint,
            options: self.options,
            credential: self.credential,
            sender: Arc::new(sender),
            batch_size: self.batch_size,
            linger: self.linger,
            in_flight: Arc::new(Semaphore::new(self.in_flight)),
            retry: self.retry,
            all_or_nothing: self.all_or_nothing,
        };
        let worker = tokio::spawn(batcher.run(rx));
        Ok(Publisher {
            tx,
            permits,
            buffer: self.buffer,
            worker: Some(worker),
        })
    }
}

/// Publishes points to one stream: batching, signing, back-pressure and idempotent
/// retries, for programs that embed kpistream.
///
/// ```no_run
/// use kpistream::client::{Credential, Publisher, point_for_period};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let credential: Credential = std::env::var("KPISTREAM_CREDENTIAL")?.parse()?;
/// let publisher = Publisher::builder("http://127.0.0.1:50051", credential).build()?;
/// publisher.publish(point_for_period("2026-W48", "1520", "")).await?;
/// let report = publisher.close().await;
/// assert!(report.is_clean(), "{report:?}");
/// # Ok(())
/// # }
/// ```
pub struct Publisher {
    tx: mpsc::UnboundedSender<Command>,
    permits: Arc<Semaphore>,
    buffer: usize,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("buffer", &self.buffer)
            .field("held", &self.held())
            .finish()
    }
}

impl Publisher {
    /// A builder for a publisher to `endpoint` (`http://…` or `https://…`) signing with
    /// `credential`.
    pub fn builder(endpoint: impl Into<String>, credential: Credential) -> PublisherBuilder {
        PublisherBuilder {
            endpoint: endpoint.into(),
            credential,
            options: ConnectOptions::default(),
            batch_size: 1000,
            linger: Duration::from_millis(200),
            buffer: 10_000,
            in_flight: 4,
            transport: Transport::default(),
            retry: RetryPolicy::default(),
            all_or_nothing: false,
        }
    }

    /// Hands in a point, waiting while the buffer is full.
    pub async fn publish(&self, point: proto::Point) -> Result<Receipt, PublishError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PublishError::Closed)?;
        self.send(point, permit)
    }

    /// Hands in a point, or refuses at once when the buffer is full.
    pub fn try_publish(&self, point: proto::Point) -> Result<Receipt, PublishError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::NoPermits => PublishError::Full(self.buffer),
                tokio::sync::TryAcquireError::Closed => PublishError::Closed,
            })?;
        self.send(point, permit)
    }

    fn send(
        &self,
        point: proto::Point,
        permit: OwnedSemaphorePermit,
    ) -> Result<Receipt, PublishError> {
        let (reply, receipt) = oneshot::channel();
        self.tx
            .send(Command::Point(Pending {
                point,
                reply,
                _permit: permit,
            }))
            .map_err(|_| PublishError::Closed)?;
        Ok(Receipt(receipt))
    }

    /// Points handed in whose outcome is not known yet (never more than the buffer).
    pub fn held(&self) -> usize {
        self.buffer - self.permits.available_permits()
    }

    /// Sends what is buffered and returns once every point handed in before the call
    /// is acknowledged or reported failed, with everything resolved since the last report.
    pub async fn flush(&self) -> Report {
        let (reply, report) = oneshot::channel();
        if self.tx.send(Command::Flush(reply)).is_err() {
            return Report::default();
        }
        report.await.unwrap_or_default()
    }

    /// Flushes and stops; the report covers everything since the last one.
    pub async fn close(mut self) -> Report {
        let report = self.flush().await;
        self.permits.close();
        let (tx, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(worker) = self.worker.take() {
            let _ = worker.await;
        }
        report
    }
}

enum Command {
    Point(Pending),
    Flush(oneshot::Sender<Report>),
}

struct Pending {
    point: proto::Point,
    reply: oneshot::Sender<PointOutcome>,
    /// Held until the outcome is known: this is what bounds memory.
    _permit: OwnedSemaphorePermit,
}

struct Batcher {
    endpoint: String,
    options: ConnectOptions,
    credential: Credential,
    sender: Arc<Sender>,
    batch_size: usize,
    linger: Duration,
    in_flight: Arc<Semaphore>,
    retry: RetryPolicy,
    all_or_nothing: bool,
}

impl Batcher {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut current: Vec<Pending> = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut sending: JoinSet<Report> = JoinSet::new();
        let mut report = Report::default();
        loop {
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Point(pending)) => {
                        if current.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.linger);
                        }
                        current.push(pending);
                        if current.len() >= self.batch_size {
                            deadline = None;
                            self.dispatch(&mut current, &mut sending).await;
                        }
                    }
                    Some(Command::Flush(reply)) => {
                        deadline = None;
                        self.dispatch(&mut current, &mut sending).await;
                        while let Some(done) = sending.join_next().await {
                            report.merge(done.unwrap_or_default());
                        }
                        let _ = reply.send(std::mem::take(&mut report));
                    }
                    None => break,
                },
                () = linger => {
                    deadline = None;
                    self.dispatch(&mut current, &mut sending).await;
                }
                Some(done) = sending.join_next() => report.merge(done.unwrap_or_default()),
            }
        }
        self.dispatch(&mut current, &mut sending).await;
        while sending.join_next().await.is_some() {}
    }

    /// Seals the current points into a batch and starts sending it, once a batch slot
    /// is free.
    async fn dispatch(&self, current: &mut Vec<Pending>, sending: &mut JoinSet<Report>) {
        if current.is_empty() {
            return;
        }
        let slot = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the batch slots are never closed");
        let items = std::mem::take(current);
        let batch = new_batch(items.iter().map(|p| p.point.clone()).collect());
        let request = proto::PublishRequest {
            batch: Some(self.credential.seal(&batch)),
            all_or_nothing: self.all_or_nothing,
        };
        let sender = self.sender.clone();
        let retry = self.retry;
        let (endpoint, options) = (self.endpoint.clone(), self.options.clone());
        sending.spawn(async move {
            let (result, attempts) = send_with_retry(&sender, request, retry).await;
            drop(slot);
            // A transport failure gets the sentence the client would say at connect time
            // ("is it serving TLS?"), not the transport's raw wording.
            let result = result.map_err(|status| {
                match ClientError::from_transport_status(&endpoint, &options, &status) {
                    Some(explained) => Status::new(status.code(), explained.to_string()),
                    None => status,
                }
            });
            resolve(batch.batch_id, items, result, attempts)
        });
    }
}

/// Sends one sealed batch until it is answered, re-sending the same bytes on
/// transient failures.
async fn send_with_retry(
    sender: &Sender,
    request: proto::PublishRequest,
    retry: RetryPolicy,
) -> (Result<proto::PublishResponse, Status>, u32) {
    let started = Instant::now();
    let mut backoff = retry.initial_backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = tokio::time::timeout(retry.attempt_timeout, sender.send(request.clone()))
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("the attempt timed out")));
        let status = match result {
            Ok(response) => return (Ok(response), attempts),
            Err(status) => status,
        };
        let wait = jittered(backoff);
        if !is_transient(&status) || started.elapsed() + wait > retry.max_elapsed {
            return (Err(status), attempts);
        }
        tracing::debug!(code = ?status.code(), attempts, "batch not answered; sending it again");
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(retry.max_backoff);
    }
}

/// Between half and all of `backoff`, so many publishers do not retry in step.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// True for failures after which the same batch may be sent again: the server was
/// unreachable or did not answer in time, asked for a retry, or the connection dropped
/// (a status the client made from a transport error, not one the server sent).
fn is_transient(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => true,
        Code::Unknown | Code::Internal | Code::Cancelled => {
            std::error::Error::source(status).is_some()
        }
        _ => false,
    }
}

/// Tells each point what became of it and sums it up.
fn resolve(
    batch_id: String,
    items: Vec<Pending>,
    result: Result<proto::PublishResponse, Status>,
    attempts: u32,
) -> Report {
    let mut report = Report::default();
    match result {
        Ok(response) => {
            if response.replayed {
                report.replayed_batches += 1;
            }
            let mut reasons: Vec<Option<String>> = vec![None; items.len()];
            for rejection in response.rejected {
                if let Some(slot) = reasons.get_mut(rejection.index as usize) {
                    *slot = Some(rejection.reason);
                }
            }
            for (item, reason) in items.into_iter().zip(reasons) {
                let outcome = match reason {
                    None => {
                        report.accepted += 1;
                        PointOutcome::Accepted {
                            batch_id: batch_id.clone(),
                        }
                    }
                    Some(reason) => {
                        report.rejected.push(RejectedPoint {
                            batch_id: batch_id.clone(),
                            point: item.point.clone(),
                            reason: reason.clone(),
                        });
                        PointOutcome::Rejected {
                            batch_id: batch_id.clone(),
                            reason,
                        }
                    }
                };
                let _ = item.reply.send(outcome);
            }
        }
        Err(status) => {
            let failure = BatchFailure {
                code: status.code(),
                message: status.message().to_owned(),
                attempts,
            };
            tracing::warn!(%batch_id, code = ?failure.code, message = %failure.message, "batch failed");
            report.failed.push(FailedBatch {
                batch_id: batch_id.clone(),
                points: items.len(),
                failure: failure.clone(),
            });
            for item in items {
                let _ = item.reply.send(PointOutcome::Failed {
                    batch_id: batch_id.clone(),
                    failure: failure.clone(),
                });
            }
        }
    }
    report
}

enum Sender {
    Unary(IngestClient<Channel>),
    Stream(StreamMux),
}

impl Sender {
    async fn send(&self, request: proto::PublishRequest) -> Result<proto::PublishResponse, Status> {
        match self {
            Self::Unary(client) => Ok(client.clone().publish(request).await?.into_inner()),
            Self::Stream(mux) => mux.send(request).await,
        }
    }
}

type Reply = oneshot::Sender<Result<proto::PublishResponse, Status>>;

/// Carries batches over one `PublishStream` call at a time, matching answers to
/// requests by order. When the stream breaks, every unanswered batch gets
/// `UNAVAILABLE` (and is re-sent by its retry loop over a new stream).
struct StreamMux {
    tx: mpsc::Sender<(proto::PublishRequest, Reply)>,
}

impl StreamMux {
    fn start(client: IngestClient<Channel>, in_flight: usize) -> Self {
        let (tx, rx) = mpsc::channel(in_flight);
        tokio::spawn(Self::run(client, rx, in_flight));
        Self { tx }
    }

    async fn send(&self, request: proto::PublishRequest) -> Result<proto::PublishResponse, Status> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| Status::cancelled("the publisher stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the publish stream stopped")))
    }

    async fn run(
        client: IngestClient<Channel>,
        mut rx: mpsc::Receiver<(proto::PublishRequest, Reply)>,
        in_flight: usize,
    ) {
        while let Some(first) = rx.recv().await {
            Self::one_stream(&client, first, &mut rx, in_flight).await;
        }
    }

    /// Runs one stream until it breaks or the publisher stops.
    async fn one_stream(
        client: &IngestClient<Channel>,
        (request, reply): (proto::PublishRequest, Reply),
        rx: &mut mpsc::Receiver<(proto::PublishRequest, Reply)>,
        in_flight: usize,
    ) {
        let (requests, outgoing) = mpsc::channel(in_flight + 1);
        let _ = requests.try_send(request);
        let mut pending = std::collections::VecDeque::from([reply]);
        let mut answers = match client
            .clone()
            .publish_stream(ReceiverStream::new(outgoing))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return fail_all(pending, &status),
        };
        let mut requests = Some(requests);
        loop {
            tokio::select! {
                next = rx.recv(), if requests.is_some() => match next {
                    Some((request, reply)) => {
                        pending.push_back(reply);
                        let open = requests.as_ref().expect("guarded by the select");
                        if open.send(request).await.is_err() {
                            return fail_all(pending, &Status::unavailable("the publish stream closed"));
                        }
                    }
                    // The publisher stopped: close our side and drain the answers.
                    None => requests = None,
                },
                answer = answers.message() => match answer {
                    Ok(Some(response)) => {
                        if let Some(reply) = pending.pop_front() {
                            let _ = reply.send(in_band(response));
                        }
                    }
                    Ok(None) => return fail_all(pending, &Status::unavailable("the server ended the publish stream")),
                    Err(status) => return fail_all(pending, &status),
                },
            }
        }
    }
}

/// An answer of `PublishStream`: a batch error travels in-band.
fn in_band(response: proto::PublishResponse) -> Result<proto::PublishResponse, Status> {
    match &response.error {
        None => Ok(response),
        Some(error) => Err(Status::new(Code::from(error.code), error.message.clone())),
    }
}

/// Fails every unanswered batch of a broken stream with a status their retry loops
/// treat as transient when it is.
fn fail_all(pending: std::collections::VecDeque<Reply>, status: &Status) {
    let transient = is_transient(status) || status.code() == Code::Unavailable;
    for reply in pending {
        let status = if transient {
            Status::unavailable(format!("the publish stream broke: {}", status.message()))
        } else {
            Status::new(status.code(), status.message())
        };
        let _ = reply.send(Err(status));
    }
}
