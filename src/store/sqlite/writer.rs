//! The publish path's writer: one thread that owns one SQLite connection and commits
//! each group of batches in one transaction, with statements prepared once and reused.
//!
//! The rest of the store goes through sqlx, whose SQLite driver runs every statement as
//! a message to a worker thread and back. That is fine for an admin call; a group of 64
//! one-point batches would be several hundred such round trips, and a 1,000-point batch
//! thousands of bound values parsed back out of JSON inside SQLite. Here the group is
//! plain calls into SQLite on the thread that holds the connection: a batch costs a
//! replay lookup and one statement per point (three when the point replaces a value),
//! and the stream and key bookkeeping is written once per group.
//!
//! A connection that met an error is closed, and the next group opens a new one, as is
//! one opened before the last storage fault the store heard of (see [`WriteHealth`]): a
//! connection opened while the file was read-only stays read-only, and one that failed
//! on a full disk may be left in a transaction SQLite already rolled back.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome, ValidPoint};
use crate::period::Frequency;
use crate::store::{Result, StoreError, WriteHealth, to_micros};

/// How long the writer waits for another connection's write lock (an admin change).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type GroupResult = Vec<std::result::Result<PublishOutcome, CommitRefusal>>;

struct Job {
    batches: Arc<Vec<PreparedBatch>>,
    now: Timestamp,
    reply: oneshot::Sender<Result<GroupResult>>,
}

/// The handle the store keeps; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl GroupWriter {
    /// Starts the writer thread for the database file at `path`.
    pub(super) fn start(path: PathBuf, health: Arc<WriteHealth>) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("kpistream-sqlite-writer".into())
            .spawn(move || {
                let mut thread = WriterThread {
                    path,
                    health,
                    conn: None,
                };
                for job in rx {
                    let result = thread.commit(&job.batches, job.now);
                    // The batches go back to their owner only through the caller's Arc:
                    // let go of this one before answering, so the caller holds the last.
                    drop(job.batches);
                    let _ = job.reply.send(result);
                }
            })?;
        Ok(Self { jobs })
    }

    /// Commits `batches` in one transaction; see [`crate::store::PointStore`].
    pub(super) async fn commit(
        &self,
        batches: Arc<Vec<PreparedBatch>>,
        now: Timestamp,
    ) -> Result<GroupResult> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the database writer has stopped".into());
        self.jobs
            .send(Job {
                batches,
                now,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

struct WriterThread {
    path: PathBuf,
    health: Arc<WriteHealth>,
    conn: Option<(Connection, Instant)>,
}

impl WriterThread {
    fn commit(&mut self, batches: &[PreparedBatch], now: Timestamp) -> Result<GroupResult> {
        if let Some((_, opened)) = &self.conn {
            if self.health.predates_last_fault(opened.elapsed()) {
                self.conn = None;
            }
        }
        let conn = match &mut self.conn {
            Some((conn, _)) => conn,
            None => &mut self.conn.insert((open(&self.path)?, Instant::now())).0,
        };
        let result = commit_group(conn, batches, to_micros(now), now);
        if result.is_err() {
            // Rolled back when the transaction was dropped; whatever state the
            // connection is left in, the next group starts on a fresh one.
            self.conn = None;
        }
        result
    }
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The same durability as every other connection of the store: WAL (a property of
    // the file, set at open), and a commit is on disk before it is acknowledged.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Every row this connection writes belongs to a stream it has just read in the
    // same write transaction, so the foreign-key lookups would only repeat that check
    // per point; deleting a stream (and cascading) happens on the other connections.
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// What the group learned of a stream: read once, changed once at the end.
struct StreamState {
    /// The stream's `seq`, whether it is disabled, and its frequency; `None` when the
    /// stream does not exist.
    found: Option<(i64, bool, Frequency)>,
    new_points: i64,
    latest: Option<String>,
}

fn commit_group(
    conn: &mut Connection,
    batches: &[PreparedBatch],
    now_us: i64,
    now: Timestamp,
) -> Result<GroupResult> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut streams: HashMap<&str, StreamState> = HashMap::new();
    let mut keys_used: HashSet<(&str, &str)> = HashSet::new();
    let mut results = Vec::with_capacity(batches.len());
    {
        let mut find_batch =
            tx.prepare_cached("SELECT outcome FROM batches WHERE stream = ?1 AND batch_id = ?2")?;
        let mut find_stream =
            tx.prepare_cached("SELECT seq, disabled, frequency FROM streams WHERE id = ?1")?;
        let mut current = tx.prepare_cached(
            "SELECT value, external_id, batch_id, updated_at FROM points \
             WHERE stream = ?1 AND period = ?2",
        )?;
        let mut revise = tx.prepare_cached(
            "INSERT INTO revisions (stream, period, old_value, new_value, batch_id, key_id, revised_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut replace = tx.prepare_cached(
            "UPDATE points SET value = ?3, external_id = ?4, batch_id = ?5, key_id = ?6, \
             updated_at = ?7, revision_count = revision_count + 1 WHERE stream = ?1 AND period = ?2",
        )?;
        let mut remember = tx.prepare_cached(
            "INSERT INTO batches (stream, batch_id, key_id, accepted_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for batch in batches {
            let stream_id = batch.stream_id().as_str();
            let state = match streams.entry(stream_id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let row: Option<(i64, bool, String)> = find_stream
                        .query_row([stream_id], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                        })
                        .optional()?;
                    let found = match row {
                        Some((seq, disabled, frequency)) => Some((
                            seq,
                            disabled,
                            frequency.parse::<Frequency>().map_err(|_| {
                                StoreError::Corrupt(format!("frequency {frequency:?}"))
                            })?,
                        )),
                        None => None,
                    };
                    entry.insert(StreamState {
                        found,
                        new_points: 0,
                        latest: None,
                    })
                }
            };
            let Some((seq, disabled, frequency)) = state.found else {
                results.push(Err(CommitRefusal::StreamGone(batch.stream_id().clone())));
                continue;
            };
            // A batch id already committed gets its stored answer, whatever changed since.
            let stored: Option<String> = find_batch
                .query_row(params![seq, batch.batch_id()], |row| row.get(0))
                .optional()?;
            if let Some(stored) = stored {
                let outcome: PublishOutcome = serde_json::from_str(&stored)
                    .map_err(|e| StoreError::Corrupt(format!("stored batch outcome: {e}")))?;
                results.push(Ok(outcome.into_replay()));
                continue;
            }
            let refusal = if disabled {
                Some(CommitRefusal::Disabled(batch.stream_id().clone()))
            } else if frequency != batch.frequency() {
                Some(CommitRefusal::FrequencyChanged(batch.stream_id().clone()))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                results.push(Err(refusal));
                continue;
            }
            let key_id = batch.key_id().as_str();
            let mut revised = 0u32;
            let mut rest = batch.points();
            while !rest.is_empty() {
                let rows = INSERT_ROWS
                    .iter()
                    .copied()
                    .find(|&n| n <= rest.len())
                    .unwrap_or(1);
                let (chunk, tail) = rest.split_at(rows);
                rest = tail;
                let inserted = insert_points(&tx, seq, batch.batch_id(), key_id, now_us, chunk)?;
                state.new_points += inserted as i64;
                if inserted == chunk.len() {
                    continue;
                }
                // Some periods were already stored: tell them from the ones this batch
                // just inserted (its batch id at this commit's time), and revise those
                // whose value or external id changes.
                for point in chunk {
                    let (old_value, old_external, old_batch, old_at): (
                        String,
                        Option<String>,
                        String,
                        i64,
                    ) = current.query_row(params![seq, point.period], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?;
                    let just_inserted = old_at == now_us && old_batch == batch.batch_id();
                    if just_inserted
                        || (old_value == point.value && old_external == point.external_id)
                    {
                        continue;
                    }
                    revise.execute(params![
                        seq,
                        point.period,
                        old_value,
                        point.value,
                        batch.batch_id(),
                        key_id,
                        now_us
                    ])?;
                    replace.execute(params![
                        seq,
                        point.period,
                        point.value,
                        point.external_id,
                        batch.batch_id(),
                        key_id,
                        now_us
                    ])?;
                    revised += 1;
                }
            }
            if let Some(latest) = batch.points().iter().map(|p| &p.period).max() {
                if state.latest.as_ref().is_none_or(|l| l < latest) {
                    state.latest = Some(latest.clone());
                }
            }
            let outcome = PublishOutcome::committed(batch, revised, now);
            let json = serde_json::to_string(&outcome).expect("outcome serializes");
            remember.execute(params![seq, batch.batch_id(), key_id, now_us, json])?;
            keys_used.insert((stream_id, key_id));
            results.push(Ok(outcome));
        }
    }
    {
        let mut touch_stream = tx.prepare_cached(
            "UPDATE streams SET point_count = point_count + ?2, last_data_at = ?3, \
             latest_period = CASE WHEN latest_period IS NULL OR latest_period < ?4 THEN ?4 ELSE latest_period END \
             WHERE id = ?1",
        )?;
        for (stream_id, state) in &streams {
            if let Some(latest) = &state.latest {
                touch_stream.execute(params![stream_id, state.new_points, now_us, latest])?;
            }
        }
        let mut touch_key = tx.prepare_cached(
            "UPDATE stream_keys SET last_used_at = ?3 WHERE stream_id = ?1 AND key_id = ?2",
        )?;
        for (stream_id, key_id) in &keys_used {
            touch_key.execute(params![stream_id, key_id, now_us])?;
        }
    }
    tx.commit()?;
    Ok(results)
}

/// Rows per `INSERT` of points: a batch goes in as few statements as these sizes make.
const INSERT_ROWS: [usize; 3] = [64, 8, 1];

/// Inserts `chunk` (one of the [`INSERT_ROWS`] sizes) into `points`, skipping periods
/// already stored; returns how many rows were inserted.
fn insert_points(
    tx: &rusqlite::Transaction<'_>,
    stream: i64,
    batch_id: &str,
    key_id: &str,
    now_us: i64,
    chunk: &[ValidPoint],
) -> Result<usize> {
    static SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        INSERT_ROWS
            .iter()
            .map(|&rows| {
                let values: Vec<String> = (0..rows)
                    .map(|i| format!("(?1, ?{}, ?{}, ?{}, ?2, ?3, ?4)", 5 + 3 * i, 6 + 3 * i, 7 + 3 * i))
                    .collect();
                format!(
                    "INSERT INTO points (stream, period, value, external_id, batch_id, key_id, updated_at) \
                     VALUES {} ON CONFLICT (stream, period) DO NOTHING",
                    values.join(", ")
                )
            })
            .collect()
    });
    let sql = &SQL[INSERT_ROWS
        .iter()
        .position(|&n| n == chunk.len())
        .expect("a chunk size")];
    let mut insert = tx.prepare_cached(sql)?;
    insert.raw_bind_parameter(1, stream)?;
    insert.raw_bind_parameter(2, batch_id)?;
    insert.raw_bind_parameter(3, key_id)?;
    insert.raw_bind_parameter(4, now_us)?;
    for (i, point) in chunk.iter().enumerate() {
        insert.raw_bind_parameter(5 + 3 * i, &point.period)?;
        insert.raw_bind_parameter(6 + 3 * i, &point.value)?;
        insert.raw_bind_parameter(7 + 3 * i, &point.external_id)?;
    }
    Ok(insert.raw_execute()?)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::{Error, ErrorCode};
        match &e {
            Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    StoreError::Corrupt(e.to_string())
                }
                _ => StoreError::Unavailable(e.to_string()),
            },
            Error::FromSqlConversionFailure(..)
            | Error::InvalidColumnType(..)
            | Error::IntegralValueOutOfRange(..)
            | Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}
