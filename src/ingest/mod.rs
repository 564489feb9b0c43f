//! The publish path: look up the key, verify the signature over the received bytes
//! and validate the points off the async reactor, then hand the batch to its stream's
//! writer, which group-commits whatever batches are waiting in one transaction. The
//! caller gets its outcome only after that transaction committed.

pub mod validate;
pub mod watchers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::{mpsc, oneshot};

use self::watchers::{Subscription, Watchers};
use crate::batch::{CommitRefusal, PointRejection, PreparedBatch, PublishOutcome};
use crate::ids::{InvalidId, KeyId, StreamId};
use crate::signature::{self, SignatureError};
use crate::store::{Change, Store, StoreError, WriteHealth};
use crate::stream::PublishingKey;

/// Signed batches up to this size (a few dozen points) are verified and validated on
/// the task that received them; larger ones on a blocking thread.
const INLINE_CHECK_BYTES: usize = 4096;

/// Longest batch id, in bytes.
pub const MAX_BATCH_ID_BYTES: usize = 128;

/// Limits and windows of the publish path.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// How far `signed_at` may be from the server's clock, either way.
    pub max_skew: Duration,
    /// Most points in one batch.
    pub max_points_per_batch: usize,
    /// How long an accepted batch id is remembered for replays.
    pub dedup_window: Duration,
    /// How long a looked-up key is cached (revocations on this server take effect at once).
    pub key_cache_ttl: Duration,
    /// Most batches one writer transaction carries.
    pub max_group: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_skew: Duration::from_secs(300),
            max_points_per_batch: 10_000,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            key_cache_ttl: Duration::from_secs(2),
            max_group: 64,
        }
    }
}

/// The envelope as received.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub stream_id: String,
    pub key_id: String,
    pub batch: Vec<u8>,
    pub signature: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the request has no signed batch")]
    MissingBatch,
    #[error("the envelope's {0}")]
    InvalidId(#[from] InvalidId),
    #[error("stream {stream_id} has no key {key_id}")]
    UnknownKey { stream_id: String, key_id: String },
    #[error("key {key_id} of stream {stream_id} was revoked at {revoked_at}")]
    RevokedKey {
        stream_id: StreamId,
        key_id: KeyId,
        revoked_at: Timestamp,
    },
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error(
        "the batch was signed at {signed_at}, {off_by} s from the server's clock; at most {max} s is allowed (check the publisher's clock)"
    )]
    Skew {
        signed_at: Timestamp,
        off_by: i64,
        max: u64,
    },
    #[error("the batch has no batch_id: give each batch a unique id, such as a UUIDv7")]
    MissingBatchId,
    #[error("the batch_id is {0} bytes; at most {MAX_BATCH_ID_BYTES} are allowed")]
    BatchIdTooLong(usize),
    #[error("the batch has no points")]
    NoPoints,
    #[error("the batch has {count} points; at most {max} are allowed per batch: split it")]
    TooManyPoints { count: usize, max: usize },
    #[error("stream {0} is disabled: an admin must enable it before it takes data")]
    Disabled(StreamId),
    #[error("all_or_nothing was asked and {} point(s) are invalid, so nothing was stored: {}", .0.len(), describe(.0))]
    AllOrNothing(Vec<PointRejection>),
    #[error("{0}")]
    Refused(#[from] CommitRefusal),
    #[error("{0}")]
    Store(#[from] Arc<StoreError>),
    #[error("the server is shutting down; publish again")]
    ShuttingDown,
}

fn describe(rejected: &[PointRejection]) -> String {
    let shown: Vec<String> = rejected
        .iter()
        .take(10)
        .map(|r| format!("point {}: {}", r.index, r.reason))
        .collect();
    let more = rejected.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!("{}{tail}", shown.join("; "))
}

impl IngestError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingBatch | Self::InvalidId(_) => "malformed",
            Self::UnknownKey { .. } => "unknown_key",
            Self::RevokedKey { .. } => "revoked_key",
            Self::Signature(SignatureError::BadSignature { .. }) => "signature",
            Self::Signature(_) => "malformed",
            Self::Skew { .. } => "skew",
            Self::MissingBatchId | Self::BatchIdTooLong(_) | Self::NoPoints => "malformed",
            Self::TooManyPoints { .. } => "too_many_points",
            Self::Disabled(_) | Self::Refused(CommitRefusal::Disabled(_)) => "disabled",
            Self::Refused(_) => "conflict",
            Self::AllOrNothing(_) => "all_or_nothing",
            Self::Store(_) | Self::ShuttingDown => "unavailable",
        }
    }
}

type CommitResult = Result<Result<PublishOutcome, CommitRefusal>, Arc<StoreError>>;

struct WriteJob {
    batch: PreparedBatch,
    reply: oneshot::Sender<CommitResult>,
}

/// A key as the publish path uses it: its public key parsed and its time zone resolved
/// once per lookup, not once per batch.
struct KnownKey {
    key: PublishingKey,
    /// An error is reported where `prepare` checks the key, after the revocation check.
    public_key: Result<VerifyingKey, SignatureError>,
    tz: TimeZone,
}

type KeyCache = Mutex<HashMap<(StreamId, KeyId), (Arc<KnownKey>, Instant)>>;

/// The publish path. Cheap to clone; all clones share the writers.
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<dyn Store>,
    /// One queue per writer; a stream's batches always go to the same one.
    writers: Arc<[mpsc::Sender<WriteJob>]>,
    config: Arc<IngestConfig>,
    keys: Arc<KeyCache>,
    watchers: Arc<Watchers>,
}

/// A batch that was just committed: what `Query.Watch` sends on.
#[derive(Debug)]
pub struct Committed {
    pub stream_id: StreamId,
    pub key_id: KeyId,
    pub batch_id: String,
    pub points: Vec<crate::batch::ValidPoint>,
    pub at: Timestamp,
}

impl Ingestor {
    /// Starts the writer tasks. They end when the last clone of the ingestor is dropped,
    /// after committing what it holds. Each commit's outcome is reported to `health`.
    pub fn start(store: Arc<dyn Store>, config: IngestConfig, health: Arc<WriteHealth>) -> Self {
        let watchers = Arc::new(Watchers::default());
        let shared = store.changes();
        let writers: Arc<[_]> = (0..store.writers().max(1))
            .map(|_| {
                let (queue, rx) = mpsc::channel(config.max_group * 4);
                let writer = Writer {
                    // A database shared with other servers tells every server's watchers
                    // of every commit, in commit order; the writers then leave them to it.
                    local_watch: shared.is_none(),
                    store: store.clone(),
                    max_group: config.max_group,
                    watchers: watchers.clone(),
                    health: health.clone(),
                    last_commit: Timestamp::UNIX_EPOCH,
                };
                tokio::spawn(writer.run(rx));
                queue
            })
            .collect();
        let keys: Arc<KeyCache> = Arc::default();
        if let Some(changes) = shared {
            // Two listeners, so that a key revoked elsewhere is forgotten at once even
            // while commits are being read back for watchers.
            tokio::spawn(forget_changed_keys(changes, Arc::downgrade(&keys)));
            if let Some(changes) = store.changes() {
                tokio::spawn(follow_commits(
                    changes,
                    Arc::downgrade(&keys),
                    watchers.clone(),
                    store.clone(),
                ));
            }
        }
        Self {
            store,
            writers,
            config: Arc::new(config),
            keys,
            watchers,
        }
    }

    /// The stream's batches as they are committed (replays excluded), queued up to
    /// `capacity` points; a watcher further behind is told it overflowed.
    pub fn subscribe(&self, stream: StreamId, capacity: usize) -> Subscription {
        self.watchers.subscribe(stream, capacity)
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Forgets cached keys of a stream, after an admin changed it.
    pub fn forget_stream(&self, stream: &StreamId) {
        self.keys
            .lock()
            .expect("key cache lock")
            .retain(|(s, _), _| s != stream);
    }

    /// Verifies, validates and durably stores one batch.
    #[tracing::instrument(name = "publish", skip_all, fields(stream_id = %envelope.stream_id, key_id = %envelope.key_id))]
    pub async fn publish(
        &self,
        envelope: Arc<Envelope>,
        all_or_nothing: bool,
    ) -> Result<PublishOutcome, IngestError> {
        let started = Instant::now();
        let result = self.publish_inner(envelope, all_or_nothing).await;
        record_metrics(&result, started);
        result
    }

    async fn publish_inner(
        &self,
        envelope: Arc<Envelope>,
        all_or_nothing: bool,
    ) -> Result<PublishOutcome, IngestError> {
        let stream_id = StreamId::parse(&envelope.stream_id)?;
        let key_id = KeyId::parse(&envelope.key_id)?;
        let key = self.key(&stream_id, &key_id).await?;
        if let Some(revoked_at) = key.key.revoked_at {
            return Err(IngestError::RevokedKey {
                stream_id,
                key_id,
                revoked_at: revoked_at.round(jiff::Unit::Second).unwrap_or(revoked_at),
            });
        }
        // A small batch is checked where it arrived: one signature and a few points take
        // tens of microseconds, less than handing them to a blocking thread and back.
        let small = envelope.batch.len() <= INLINE_CHECK_BYTES;
        let config = self.config.clone();
        let check = move || {
            prepare(
                &stream_id,
                &key_id,
                &key,
                &envelope,
                &config,
                all_or_nothing,
            )
        };
        let prepared = if small {
            check()?
        } else {
            tokio::task::spawn_blocking(check)
                .await
                .map_err(|_| IngestError::ShuttingDown)??
        };
        tracing::debug!(batch_id = %prepared.batch_id(), points = prepared.points().len(), "verified");
        let (reply, answer) = oneshot::channel();
        self.writer_of(prepared.stream_id())
            .send(WriteJob {
                batch: prepared,
                reply,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        let outcome = answer.await.map_err(|_| IngestError::ShuttingDown)???;
        Ok(outcome)
    }

    /// The queue of the writer that commits `stream`'s batches: always the same one, so
    /// that a stream's groups commit in the order they were formed.
    fn writer_of(&self, stream: &StreamId) -> &mpsc::Sender<WriteJob> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(stream, &mut hasher);
        let n = self.writers.len() as u64;
        &self.writers[(std::hash::Hasher::finish(&hasher) % n) as usize]
    }

    async fn key(&self, stream: &StreamId, key: &KeyId) -> Result<Arc<KnownKey>, IngestError> {
        let cache_key = (stream.clone(), key.clone());
        if let Some((cached, at)) = self.keys.lock().expect("key cache lock").get(&cache_key) {
            if at.elapsed() < self.config.key_cache_ttl {
                return Ok(cached.clone());
            }
        }
        let found = self
            .store
            .publishing_key(stream, key)
            .await
            .map_err(Arc::new)?
            .ok_or_else(|| IngestError::UnknownKey {
                stream_id: stream.to_string(),
                key_id: key.to_string(),
            })?;
        let found = Arc::new(KnownKey {
            public_key: signature::parse_public_key(&found.public_key),
            tz: TimeZone::get(&found.time_zone).unwrap_or(TimeZone::UTC),
            key: found,
        });
        self.keys
            .lock()
            .expect("key cache lock")
            .insert(cache_key, (found.clone(), Instant::now()));
        Ok(found)
    }

    /// Forgets batch ids older than the dedup window.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        let window = jiff::SignedDuration::try_from(self.config.dedup_window).unwrap_or_default();
        let before = Timestamp::now()
            .checked_sub(window)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        self.store.prune_batches(before).await
    }
}

/// Empties this server's key cache for a stream as soon as another server sharing the
/// database announces a change to it (or all of it, when announcements were missed).
/// Ends with the ingestor.
async fn forget_changed_keys(
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    keys: std::sync::Weak<KeyCache>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => Change::Missed,
            Err(RecvError::Closed) => return,
        };
        let Some(keys) = keys.upgrade() else { return };
        let mut keys = keys.lock().expect("key cache lock");
        match change {
            Change::Stream(stream) => keys.retain(|(s, _), _| *s != stream),
            Change::Missed => keys.clear(),
            Change::Committed { .. } => {}
        }
    }
}

/// Sends every commit announced through the database (this server's too) to this
/// server's watchers of its stream, read back from the store, in commit order. When
/// announcements were missed, every watch ends as overflowed (each is told where to
/// resume). Ends with the ingestor (`alive` is its key cache, held only by it).
async fn follow_commits(
    mut changes: tokio::sync::broadcast::Receiver<Change>,
    alive: std::sync::Weak<KeyCache>,
    watchers: Arc<Watchers>,
    store: Arc<dyn Store>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => Change::Missed,
            Err(RecvError::Closed) => return,
        };
        if alive.strong_count() == 0 {
            return;
        }
        match change {
            Change::Stream(_) => {}
            Change::Missed => watchers.overflow_all(),
            Change::Committed { stream, at } => {
                if !watchers.watches(&stream) {
                    continue;
                }
                match committed_at(store.as_ref(), &stream, at).await {
                    Ok(batches) => {
                        for batch in batches {
                            watchers.deliver(&Arc::new(batch));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, stream_id = %stream, "cannot read back a commit for its watchers; they must resume");
                        watchers.overflow(&stream);
                    }
                }
            }
        }
    }
}

/// The batches committed to `stream` at `at` (by any server), as its watchers get them.
/// A point changed again since then is left out: the later commit brings it.
async fn committed_at(
    store: &dyn Store,
    stream: &StreamId,
    at: Timestamp,
) -> Result<Vec<Committed>, StoreError> {
    let before = at
        .checked_sub(jiff::SignedDuration::from_micros(1))
        .unwrap_or(at);
    let mut batches: Vec<Committed> = Vec::new();
    let mut after = (before, None::<String>);
    loop {
        let page = store
            .points_updated_after(stream, (after.0, after.1.as_deref()), 1_000)
            .await?;
        let full = page.len() == 1_000;
        for point in page.iter().filter(|p| p.updated_at == at) {
            let same = batches
                .last()
                .is_some_and(|b| b.batch_id == point.batch_id && b.key_id.as_str() == point.key_id);
            if !same {
                batches.push(Committed {
                    stream_id: stream.clone(),
                    key_id: KeyId::parse(&point.key_id)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    batch_id: point.batch_id.clone(),
                    points: Vec::new(),
                    at,
                });
            }
            batches
                .last_mut()
                .expect("a batch for the point")
                .points
                .push(crate::batch::ValidPoint {
                    period: point.period.clone(),
                    value: point.value.clone(),
                    external_id: point.external_id.clone(),
                });
        }
        match page.last() {
            Some(last) if full && last.updated_at == at => {
                after = (last.updated_at, Some(last.period.clone()));
            }
            _ => return Ok(batches),
        }
    }
}

/// The CPU part of a publish, run on a blocking thread: verify, decode, check, validate.
fn prepare(
    stream_id: &StreamId,
    key_id: &KeyId,
    known: &KnownKey,
    envelope: &Envelope,
    config: &IngestConfig,
    all_or_nothing: bool,
) -> Result<PreparedBatch, IngestError> {
    let public_key = known.public_key.as_ref().map_err(Clone::clone)?;
    let key = &known.key;
    let verified = signature::verify(
        stream_id,
        key_id,
        public_key,
        &envelope.batch,
        &envelope.signature,
    )?;
    let off = Timestamp::now().duration_since(verified.signed_at());
    let off_by = off.as_secs();
    // Compare the exact duration: whole seconds would let up to 0.999 s past the limit in.
    if off.unsigned_abs() > config.max_skew {
        return Err(IngestError::Skew {
            signed_at: verified.signed_at(),
            off_by,
            max: config.max_skew.as_secs(),
        });
    }
    if verified.batch_id().is_empty() {
        return Err(IngestError::MissingBatchId);
    }
    if verified.batch_id().len() > MAX_BATCH_ID_BYTES {
        return Err(IngestError::BatchIdTooLong(verified.batch_id().len()));
    }
    if key.disabled {
        return Err(IngestError::Disabled(stream_id.clone()));
    }
    if verified.points().is_empty() {
        return Err(IngestError::NoPoints);
    }
    if verified.points().len() > config.max_points_per_batch {
        return Err(IngestError::TooManyPoints {
            count: verified.points().len(),
            max: config.max_points_per_batch,
        });
    }
    let validated =
        validate::validate_points(verified.points(), key.frequency, &key.value_type, &known.tz);
    for kind in &validated.kinds {
        metrics::counter!("kpistream_points_rejected_total", "reason" => kind.as_str())
            .increment(1);
    }
    if all_or_nothing && !validated.rejected.is_empty() {
        return Err(IngestError::AllOrNothing(validated.rejected));
    }
    Ok(PreparedBatch::new(
        stream_id.clone(),
        key_id.clone(),
        verified.batch_id().to_owned(),
        key.frequency,
        validated.points,
        validated.rejected,
    ))
}

fn record_metrics(result: &Result<PublishOutcome, IngestError>, started: Instant) {
    metrics::histogram!("kpistream_publish_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcome) if outcome.replayed() => {
            metrics::counter!("kpistream_publishes_total", "outcome" => "replayed").increment(1);
        }
        Ok(outcome) => {
            metrics::counter!("kpistream_publishes_total", "outcome" => "accepted").increment(1);
            metrics::counter!("kpistream_points_accepted_total")
                .increment(u64::from(outcome.accepted()));
        }
        Err(err) => {
            metrics::counter!("kpistream_publishes_total", "outcome" => "refused").increment(1);
            metrics::counter!("kpistream_batches_refused_total", "reason" => err.reason())
                .increment(1);
        }
    }
}

/// A writer: takes the first waiting batch, then every batch already queued (up to
/// `max_group`), and commits them in one transaction. A store that takes several
/// transactions at once (PostgreSQL) gets several writers, each owning a share of the
/// streams; SQLite has one.
struct Writer {
    /// Whether committed batches go to this server's watchers from here.
    local_watch: bool,
    store: Arc<dyn Store>,
    max_group: usize,
    watchers: Arc<Watchers>,
    health: Arc<WriteHealth>,
    last_commit: Timestamp,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<WriteJob>) {
        let mut jobs = Vec::with_capacity(self.max_group);
        while rx.recv_many(&mut jobs, self.max_group).await > 0 {
            let (batches, replies): (Vec<PreparedBatch>, Vec<_>) =
                jobs.drain(..).map(|j| (j.batch, j.reply)).unzip();
            metrics::histogram!("kpistream_commit_group_batches").record(batches.len() as f64);
            let now = self.commit_time();
            let batches = Arc::new(batches);
            let committed = self.store.commit_batches(batches.clone(), now).await;
            self.health.observe(&committed);
            metrics::counter!("kpistream_commit_transactions_total").increment(1);
            let batches = Arc::try_unwrap(batches).unwrap_or_else(|shared| (*shared).clone());
            match committed {
                Ok(results) => self.answer(batches, replies, results, now),
                Err(err) => {
                    tracing::error!(error = %err, batches = batches.len(), "group commit failed");
                    let err = Arc::new(err);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
        tracing::debug!("writer stopped");
    }

    /// The time stamped on a group's points: to the microsecond (as stored) and later
    /// than the previous group's, so that "updated after T" (how a watch resumes) never
    /// splits or merges two commits.
    fn commit_time(&mut self) -> Timestamp {
        let now = Timestamp::now();
        let now = Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now);
        let next = self
            .last_commit
            .checked_add(jiff::SignedDuration::from_micros(1))
            .unwrap_or(now);
        self.last_commit = now.max(next);
        self.last_commit
    }

    fn answer(
        &self,
        batches: Vec<PreparedBatch>,
        replies: Vec<oneshot::Sender<CommitResult>>,
        results: Vec<Result<PublishOutcome, CommitRefusal>>,
        now: Timestamp,
    ) {
        let watched = self.local_watch && self.watchers.any();
        for ((reply, result), batch) in replies.into_iter().zip(results).zip(batches) {
            let fresh = matches!(&result, Ok(outcome) if !outcome.replayed());
            let _ = reply.send(Ok(result));
            if fresh && watched && !batch.points().is_empty() {
                let (stream_id, key_id, batch_id, points) = batch.into_parts();
                self.watchers.deliver(&Arc::new(Committed {
                    stream_id,
                    key_id,
                    batch_id,
                    points,
                    at: now,
                }));
            }
        }
    }
}
