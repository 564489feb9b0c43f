//! The PostgreSQL side of datapoints: committing a group of verified batches in one
//! transaction with a handful of statements over arrays (`unnest`), whatever the number
//! of points, and reading points and revisions back.
//!
//! Several servers may commit to one database at once. A group first locks the rows of
//! the streams it writes (`FOR NO KEY UPDATE`, in id order, so two groups never wait on each
//! other in a circle): from then on, the group sees every batch another server committed
//! to those streams, so a batch id raced to two servers is stored once and the second
//! answers the first's outcome as a replay; a stream disabled or deleted meanwhile waits
//! for the group or is seen as such by it.

use crate::store::rows::postgres::point_from_row;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::{Postgres, Row, Transaction};

use super::PostgresStore;
use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome, ValidPoint};
use crate::ids::StreamId;
use crate::period::{Frequency, Period};
use crate::store::shared::parse_frequency;
use crate::store::{
    PointRecord, PointStore, Result, RevisionRecord, StoreError, from_micros, to_micros,
};

const POINT_COLUMNS: &str =
    "period, value, external_id, updated_at, batch_id, key_id, revision_count FROM points";

type GroupResult = Vec<std::result::Result<PublishOutcome, CommitRefusal>>;

/// A stream of the group, as its locked row says.
struct LockedStream {
    seq: i64,
    org_id: String,
    disabled: bool,
    frequency: Frequency,
    /// Periods this group inserted (not revised) into it.
    new_points: i64,
    latest: Option<String>,
}

/// The points of one run of batches that share no (stream, period): they can be written
/// together. Each point keeps the batch it came from.
#[derive(Default)]
struct Rows<'a> {
    stream: Vec<i64>,
    period: Vec<&'a str>,
    value: Vec<&'a str>,
    external_id: Vec<Option<&'a str>>,
    batch_id: Vec<&'a str>,
    key_id: Vec<&'a str>,
    /// Index into the group's batches.
    batch: Vec<usize>,
    keys: HashSet<(i64, &'a str)>,
}

impl<'a> Rows<'a> {
    fn holds_any(&self, seq: i64, points: &[ValidPoint]) -> bool {
        points
            .iter()
            .any(|p| self.keys.contains(&(seq, p.period.as_str())))
    }

    fn push(&mut self, seq: i64, index: usize, batch: &'a PreparedBatch) {
        for point in batch.points() {
            self.stream.push(seq);
            self.period.push(&point.period);
            self.value.push(&point.value);
            self.external_id.push(point.external_id.as_deref());
            self.batch_id.push(batch.batch_id());
            self.key_id.push(batch.key_id().as_str());
            self.batch.push(index);
            self.keys.insert((seq, point.period.as_str()));
        }
    }

    /// Copies the `i`th point of `run`.
    fn take(&mut self, run: &Rows<'a>, i: usize) {
        self.stream.push(run.stream[i]);
        self.period.push(run.period[i]);
        self.value.push(run.value[i]);
        self.external_id.push(run.external_id[i]);
        self.batch_id.push(run.batch_id[i]);
        self.key_id.push(run.key_id[i]);
        self.batch.push(run.batch[i]);
    }

    fn is_empty(&self) -> bool {
        self.stream.is_empty()
    }
}

async fn commit_group(
    store: &PostgresStore,
    tx: &mut Transaction<'_, Postgres>,
    batches: &[PreparedBatch],
    now: Timestamp,
) -> Result<GroupResult> {
    let mut ids: Vec<&str> = batches.iter().map(|b| b.stream_id().as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(
        "SELECT id, seq, org_id, disabled, frequency, last_data_at, latest_period, point_count FROM streams \
         WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    // Each stream's commits are stamped in the order they commit (the row lock orders
    // them), even when the servers' clocks disagree: a watch on any server reads a
    // stream's changes in that order.
    let last: Option<i64> = rows
        .iter()
        .filter_map(|row| row.get::<Option<i64>, _>("last_data_at"))
        .max();
    let now = match last {
        Some(last) if last >= to_micros(now) => from_micros(last + 1)?,
        _ => now,
    };
    let now_us = to_micros(now);
    let mut streams: HashMap<String, LockedStream> = HashMap::with_capacity(rows.len());
    // Each stream's latest stored period, as the runs below leave it.
    // A stream with points but no latest period (never written so by kpistream) gets
    // every period looked up.
    let mut stored_latest: HashMap<i64, Option<String>> = rows
        .iter()
        .map(|row| {
            let latest: Option<String> = row.get("latest_period");
            let count: i64 = row.get("point_count");
            let latest = match latest {
                None if count > 0 => Some(char::MAX.to_string()),
                latest => latest,
            };
            (row.get("seq"), latest)
        })
        .collect();
    for row in &rows {
        streams.insert(
            row.get("id"),
            LockedStream {
                seq: row.get("seq"),
                org_id: row.get("org_id"),
                disabled: row.get("disabled"),
                frequency: parse_frequency(row.get("frequency"))?,
                new_points: 0,
                latest: None,
            },
        );
    }

    // Batch ids already committed, by this server or another.
    let (seqs, batch_ids): (Vec<i64>, Vec<&str>) = batches
        .iter()
        .filter_map(|b| {
            let stream = streams.get(b.stream_id().as_str())?;
            Some((stream.seq, b.batch_id()))
        })
        .unzip();
    let stored: HashMap<(i64, String), String> = sqlx::query(
        "SELECT b.stream, b.batch_id, b.outcome FROM batches b \
         JOIN unnest($1::bigint[], $2::text[]) AS u(stream, batch_id) \
           ON b.stream = u.stream AND b.batch_id = u.batch_id",
    )
    .bind(&seqs)
    .bind(&batch_ids)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| ((row.get("stream"), row.get("batch_id")), row.get("outcome")))
    .collect();

    // Decide each batch's fate in order; the accepted ones go into runs of batches that
    // share no period, written together.
    let mut results: Vec<Option<std::result::Result<PublishOutcome, CommitRefusal>>> =
        Vec::with_capacity(batches.len());
    let mut accepted_here: HashMap<(i64, &str), usize> = HashMap::new();
    let mut runs: Vec<Rows> = vec![Rows::default()];
    for (index, batch) in batches.iter().enumerate() {
        let Some(stream) = streams.get(batch.stream_id().as_str()) else {
            results.push(Some(Err(CommitRefusal::StreamGone(
                batch.stream_id().clone(),
            ))));
            continue;
        };
        if let Some(outcome) = stored.get(&(stream.seq, batch.batch_id().to_owned())) {
            let outcome: PublishOutcome = serde_json::from_str(outcome)
                .map_err(|e| StoreError::Corrupt(format!("stored batch outcome: {e}")))?;
            results.push(Some(Ok(outcome.into_replay())));
            continue;
        }
        if accepted_here.contains_key(&(stream.seq, batch.batch_id())) {
            // Answered below with the first one's outcome, as a replay.
            results.push(None);
            continue;
        }
        if stream.disabled {
            results.push(Some(Err(CommitRefusal::Disabled(
                batch.stream_id().clone(),
            ))));
            continue;
        }
        if stream.frequency != batch.frequency() {
            results.push(Some(Err(CommitRefusal::FrequencyChanged(
                batch.stream_id().clone(),
            ))));
            continue;
        }
        accepted_here.insert((stream.seq, batch.batch_id()), index);
        let run = runs.last_mut().expect("one run at least");
        if run.holds_any(stream.seq, batch.points()) {
            runs.push(Rows::default());
        }
        runs.last_mut()
            .expect("one run at least")
            .push(stream.seq, index, batch);
        results.push(None);
    }

    let mut revised = vec![0u32; batches.len()];
    let mut inserted = vec![0i64; batches.len()];
    let by_seq: HashMap<i64, (Frequency, String)> = streams
        .values()
        .map(|s| (s.seq, (s.frequency, s.org_id.clone())))
        .collect();
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let written = Written {
            revised: &mut revised,
            inserted: &mut inserted,
        };
        write_run(tx, run, &stored_latest, &by_seq, now_us, written).await?;
        for (stream, period) in run.stream.iter().zip(&run.period) {
            let latest = stored_latest.entry(*stream).or_default();
            if latest.as_deref().is_none_or(|l| l < *period) {
                *latest = Some((*period).to_owned());
            }
        }
    }

    // The outcomes, the remembered batch ids, and the streams' and keys' bookkeeping.
    let mut remember = Remember::default();
    let mut keys_used: HashSet<(&str, &str)> = HashSet::new();
    for (index, batch) in batches.iter().enumerate() {
        let Some(&first) = accepted_here.get(&(
            streams
                .get(batch.stream_id().as_str())
                .map_or(-1, |s| s.seq),
            batch.batch_id(),
        )) else {
            continue;
        };
        if first != index {
            continue;
        }
        let stream = streams
            .get_mut(batch.stream_id().as_str())
            .expect("an accepted batch's stream is locked");
        stream.new_points += inserted[index];
        if let Some(latest) = batch.points().iter().map(|p| &p.period).max() {
            if stream.latest.as_ref().is_none_or(|l| l < latest) {
                stream.latest = Some(latest.clone());
            }
        }
        let outcome = PublishOutcome::committed(batch, revised[index], now);
        remember.push(stream.seq, batch, &outcome);
        keys_used.insert((batch.stream_id().as_str(), batch.key_id().as_str()));
        results[index] = Some(Ok(outcome));
    }
    for (index, batch) in batches.iter().enumerate() {
        if results[index].is_some() {
            continue;
        }
        let seq = streams[batch.stream_id().as_str()].seq;
        let first = accepted_here[&(seq, batch.batch_id())];
        let outcome = match &results[first] {
            Some(Ok(outcome)) => outcome.clone().into_replay(),
            _ => unreachable!("the first batch of an id in a group is accepted"),
        };
        results[index] = Some(Ok(outcome));
    }
    remember.insert(tx, &by_seq, now_us).await?;
    touch(tx, &streams, &keys_used, now_us).await?;
    let committed: Vec<&str> = streams
        .iter()
        .filter(|(_, s)| s.latest.is_some())
        .map(|(id, _)| id.as_str())
        .collect();
    if !committed.is_empty() {
        store.announce_commit(tx, &committed, now).await?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every batch answered"))
        .collect())
}

/// Per batch of the group: how many of its points revised a stored period, and how
/// many were new.
struct Written<'a> {
    revised: &'a mut [u32],
    inserted: &'a mut [i64],
}

/// Writes one run of points: inserts the new periods, and revises the stored ones whose
/// value or external id changes. The group holds its streams' rows locked, and every
/// writer takes those locks first, so nobody else adds a period meanwhile: a period
/// after its stream's latest is new without a lookup, the others are looked up once,
/// and the new ones go in with a plain `INSERT` (no `ON CONFLICT`, which costs about
/// as much again per row).
async fn write_run(
    tx: &mut Transaction<'_, Postgres>,
    run: &Rows<'_>,
    latest: &HashMap<i64, Option<String>>,
    by_seq: &HashMap<i64, (Frequency, String)>,
    now_us: i64,
    Written { revised, inserted }: Written<'_>,
) -> Result<()> {
    let maybe_stored: Vec<usize> = (0..run.stream.len())
        .filter(|&i| {
            latest
                .get(&run.stream[i])
                .and_then(Option::as_deref)
                .is_some_and(|latest| run.period[i] <= latest)
        })
        .collect();
    let current: HashMap<(i64, &str), (String, Option<String>)> = if maybe_stored.is_empty() {
        HashMap::new()
    } else {
        let mut wanted: HashMap<i64, Vec<&str>> = HashMap::new();
        for &i in &maybe_stored {
            wanted.entry(run.stream[i]).or_default().push(run.period[i]);
        }
        let (mut streams, mut from, mut to) = (Vec::new(), Vec::new(), Vec::new());
        for (stream, periods) in &mut wanted {
            let frequency = by_seq.get(stream).map(|(frequency, _)| *frequency);
            for (lo, hi) in period_ranges(periods, frequency) {
                streams.push(*stream);
                from.push(lo);
                to.push(hi);
            }
        }
        // One index range scan per range, in the stream's partition (a join of the
        // periods themselves with `points` is planned as a hash join over the whole
        // table once a group looks up a few thousand periods).
        let rows = sqlx::query(
            "SELECT p.stream, p.period, p.value, p.external_id \
             FROM unnest($1::bigint[], $2::text[], $3::text[]) AS r(stream, lo, hi) \
             CROSS JOIN LATERAL (SELECT stream, period, value, external_id FROM points p \
                  WHERE p.stream = r.stream AND p.period >= r.lo AND p.period <= r.hi OFFSET 0) p",
        )
        .bind(&streams)
        .bind(&from)
        .bind(&to)
        .fetch_all(&mut **tx)
        .await?;
        // Keyed by the run's own text, so lookups borrow instead of allocating.
        let index: HashMap<(i64, &str), usize> = maybe_stored
            .iter()
            .map(|&i| ((run.stream[i], run.period[i]), i))
            .collect();
        let mut current = HashMap::with_capacity(rows.len());
        for row in rows {
            let (stream, period): (i64, String) = (row.get("stream"), row.get("period"));
            if let Some(&i) = index.get(&(stream, period.as_str())) {
                current.insert(
                    (stream, run.period[i]),
                    (row.get("value"), row.get("external_id")),
                );
            }
        }
        current
    };
    let mut new = Rows::default();
    let mut changed = Changed::default();
    for i in 0..run.stream.len() {
        match current.get(&(run.stream[i], run.period[i])) {
            None => {
                inserted[run.batch[i]] += 1;
                new.take(run, i);
            }
            Some((old_value, old_external)) => {
                if old_value == run.value[i] && old_external.as_deref() == run.external_id[i] {
                    continue;
                }
                revised[run.batch[i]] += 1;
                changed.push(run, i, old_value);
            }
        }
    }
    if new.stream.len() >= COPY_FROM_ROWS {
        copy_points(tx, &new, by_seq, now_us).await?;
    } else if !new.is_empty() {
        sqlx::query(
            "INSERT INTO points (stream, org_id, period, value, external_id, batch_id, key_id, updated_at) \
             SELECT u.stream, u.org_id, u.period, u.value, u.external_id, u.batch_id, u.key_id, $7 \
             FROM unnest($1::bigint[], $8::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                  AS u(stream, org_id, period, value, external_id, batch_id, key_id)",
        )
        .bind(&new.stream)
        .bind(&new.period)
        .bind(&new.value)
        .bind(&new.external_id)
        .bind(&new.batch_id)
        .bind(&new.key_id)
        .bind(now_us)
        .bind(orgs_of(&new.stream, by_seq))
        .execute(&mut **tx)
        .await?;
    }
    changed.write(tx, by_seq, now_us).await
}

/// From how many new points on a run goes in by `COPY` rather than `INSERT`: `COPY`
/// takes one more round trip, and about half the database's time per row.
const COPY_FROM_ROWS: usize = 64;

/// Inserts new points with `COPY … FROM STDIN` (text format).
/// The organisation of each stream of `seqs`, from the group's locked streams.
fn orgs_of<'m>(seqs: &[i64], by_seq: &'m HashMap<i64, (Frequency, String)>) -> Vec<&'m str> {
    seqs.iter().map(|seq| by_seq[seq].1.as_str()).collect()
}

async fn copy_points(
    tx: &mut Transaction<'_, Postgres>,
    new: &Rows<'_>,
    by_seq: &HashMap<i64, (Frequency, String)>,
    now_us: i64,
) -> Result<()> {
    let mut data = Vec::with_capacity(new.stream.len() * 112);
    let updated_at = now_us.to_string();
    for i in 0..new.stream.len() {
        let stream = new.stream[i].to_string();
        let fields = [
            Some(stream.as_str()),
            Some(by_seq[&new.stream[i]].1.as_str()),
            Some(new.period[i]),
            Some(new.value[i]),
            new.external_id[i],
            Some(new.batch_id[i]),
            Some(new.key_id[i]),
            Some(updated_at.as_str()),
        ];
        for (n, field) in fields.into_iter().enumerate() {
            if n > 0 {
                data.push(b'\t');
            }
            copy_text_field(&mut data, field);
        }
        data.push(b'\n');
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY points (stream, org_id, period, value, external_id, batch_id, key_id, updated_at) FROM STDIN",
        )
        .await?;
    if let Err(err) = copy.send(data).await {
        // Leaves the connection usable for the rollback that follows.
        let _ = copy.abort("kpistream could not send the rows").await;
        return Err(err.into());
    }
    copy.finish().await?;
    Ok(())
}

/// One field of `COPY`'s text format: `\N` for none, the text with backslash, tab,
/// newline and carriage return escaped otherwise.
fn copy_text_field(data: &mut Vec<u8>, field: Option<&str>) {
    let Some(text) = field else {
        data.extend_from_slice(b"\\N");
        return;
    };
    for &byte in text.as_bytes() {
        match byte {
            b'\\' => data.extend_from_slice(b"\\\\"),
            b'\t' => data.extend_from_slice(b"\\t"),
            b'\n' => data.extend_from_slice(b"\\n"),
            b'\r' => data.extend_from_slice(b"\\r"),
            _ => data.push(byte),
        }
    }
}

/// Most periods a range of [`period_ranges`] may span beyond the ones looked up.
const MAX_RANGE_GAP: i64 = 64;

/// The ranges that cover `periods` (of one stream) for reading the stored ones back:
/// sorted, and split where two neighbours are more than [`MAX_RANGE_GAP`] periods apart,
/// so a lookup reads at most that many stored periods per range beyond those it wants.
fn period_ranges<'a>(
    periods: &mut [&'a str],
    frequency: Option<Frequency>,
) -> Vec<(&'a str, &'a str)> {
    periods.sort_unstable();
    let Some((&first, rest)) = periods.split_first() else {
        return Vec::new();
    };
    let start = |text: &str| {
        frequency
            .and_then(|f| Period::parse(f, text).ok())
            .map(|p| p.start())
    };
    let days_per_period = frequency.map_or(1, |f| match f {
        Frequency::Daily => 1,
        Frequency::Weekly => 7,
        Frequency::Monthly => 28,
        Frequency::Quarterly => 90,
    });
    let mut ranges = vec![(first, first)];
    let mut last_start = start(first);
    for &period in rest {
        let this_start = start(period);
        let apart = match (last_start, this_start) {
            (Some(a), Some(b)) => a.until((jiff::Unit::Day, b)).map_or(i64::MAX, |span| {
                i64::from(span.get_days()) / days_per_period
            }),
            _ => 0,
        };
        if apart > MAX_RANGE_GAP {
            ranges.push((period, period));
        } else {
            ranges.last_mut().expect("one range at least").1 = period;
        }
        last_start = this_start;
    }
    ranges
}

/// Stored periods whose value or external id changes, with their old values.
#[derive(Default)]
struct Changed<'a> {
    stream: Vec<i64>,
    period: Vec<&'a str>,
    old_value: Vec<String>,
    value: Vec<&'a str>,
    external_id: Vec<Option<&'a str>>,
    batch_id: Vec<&'a str>,
    key_id: Vec<&'a str>,
}

impl<'a> Changed<'a> {
    fn push(&mut self, run: &Rows<'a>, i: usize, old_value: &str) {
        self.stream.push(run.stream[i]);
        self.period.push(run.period[i]);
        self.old_value.push(old_value.to_owned());
        self.value.push(run.value[i]);
        self.external_id.push(run.external_id[i]);
        self.batch_id.push(run.batch_id[i]);
        self.key_id.push(run.key_id[i]);
    }

    async fn write(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        by_seq: &HashMap<i64, (Frequency, String)>,
        now_us: i64,
    ) -> Result<()> {
        if self.stream.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO revisions (stream, org_id, period, old_value, new_value, batch_id, key_id, revised_at) \
             SELECT u.stream, u.org_id, u.period, u.old_value, u.new_value, u.batch_id, u.key_id, $7 \
             FROM unnest($1::bigint[], $8::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                  WITH ORDINALITY AS u(stream, org_id, period, old_value, new_value, batch_id, key_id, n) \
             ORDER BY u.n",
        )
        .bind(&self.stream)
        .bind(&self.period)
        .bind(&self.old_value)
        .bind(&self.value)
        .bind(&self.batch_id)
        .bind(&self.key_id)
        .bind(now_us)
        .bind(orgs_of(&self.stream, by_seq))
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE points p SET value = u.value, external_id = u.external_id, \
                    batch_id = u.batch_id, key_id = u.key_id, updated_at = $7, \
                    revision_count = p.revision_count + 1 \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                  AS u(stream, period, value, external_id, batch_id, key_id) \
             WHERE p.stream = u.stream AND p.period = u.period",
        )
        .bind(&self.stream)
        .bind(&self.period)
        .bind(&self.value)
        .bind(&self.external_id)
        .bind(&self.batch_id)
        .bind(&self.key_id)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The batch ids a group accepted, with the answer a replay gets.
#[derive(Default)]
struct Remember {
    stream: Vec<i64>,
    batch_id: Vec<String>,
    key_id: Vec<String>,
    outcome: Vec<String>,
}

impl Remember {
    fn push(&mut self, seq: i64, batch: &PreparedBatch, outcome: &PublishOutcome) {
        self.stream.push(seq);
        self.batch_id.push(batch.batch_id().to_owned());
        self.key_id.push(batch.key_id().to_string());
        self.outcome
            .push(serde_json::to_string(outcome).expect("outcome serializes"));
    }

    async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        by_seq: &HashMap<i64, (Frequency, String)>,
        now_us: i64,
    ) -> Result<()> {
        if self.stream.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO batches (stream, org_id, batch_id, key_id, accepted_at, outcome) \
             SELECT u.stream, u.org_id, u.batch_id, u.key_id, $5, u.outcome \
             FROM unnest($1::bigint[], $6::text[], $2::text[], $3::text[], $4::text[]) \
                  AS u(stream, org_id, batch_id, key_id, outcome)",
        )
        .bind(&self.stream)
        .bind(&self.batch_id)
        .bind(&self.key_id)
        .bind(&self.outcome)
        .bind(now_us)
        .bind(orgs_of(&self.stream, by_seq))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The streams' point counts, latest periods and last data times, and the keys' last
/// use: one statement each for the whole group.
async fn touch(
    tx: &mut Transaction<'_, Postgres>,
    streams: &HashMap<String, LockedStream>,
    keys_used: &HashSet<(&str, &str)>,
    now_us: i64,
) -> Result<()> {
    let (mut ids, mut counts, mut latest) = (Vec::new(), Vec::new(), Vec::new());
    for (id, stream) in streams {
        if let Some(period) = &stream.latest {
            ids.push(id.as_str());
            counts.push(stream.new_points);
            latest.push(period.as_str());
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE streams s SET point_count = s.point_count + u.added, last_data_at = $4, \
                    latest_period = CASE WHEN s.latest_period IS NULL OR s.latest_period < u.latest \
                                         THEN u.latest ELSE s.latest_period END \
             FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(id, added, latest) \
             WHERE s.id = u.id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&latest)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
    }
    if !keys_used.is_empty() {
        let (streams, keys): (Vec<&str>, Vec<&str>) = keys_used.iter().copied().unzip();
        sqlx::query(
            "UPDATE stream_keys k SET last_used_at = $3 \
             FROM unnest($1::text[], $2::text[]) AS u(stream_id, key_id) \
             WHERE k.stream_id = u.stream_id AND k.key_id = u.key_id",
        )
        .bind(&streams)
        .bind(&keys)
        .bind(now_us)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl PointStore for PostgresStore {
    async fn commit_batches(
        &self,
        batches: Arc<Vec<PreparedBatch>>,
        now: Timestamp,
    ) -> Result<GroupResult> {
        let mut tx = self.write().await?;
        let results = commit_group(self, &mut tx, &batches, now).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn prune_batches(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM batches WHERE accepted_at < $1")
            .bind(to_micros(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn list_points(
        &self,
        stream: &StreamId,
        from: Option<&str>,
        to: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        let sql = format!(
            "SELECT {POINT_COLUMNS} WHERE stream = (SELECT seq FROM streams WHERE id = $1) \
             AND ($2::text IS NULL OR period >= $2) AND ($3::text IS NULL OR period <= $3) \
             ORDER BY period LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .bind(from)
            .bind(to)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(point_from_row).collect()
    }

    async fn latest_point(&self, stream: &StreamId) -> Result<Option<PointRecord>> {
        let sql = format!(
            "SELECT {POINT_COLUMNS} WHERE stream = (SELECT seq FROM streams WHERE id = $1) \
             ORDER BY period DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(point_from_row).transpose()
    }

    async fn points_updated_after(
        &self,
        stream: &StreamId,
        after: (Timestamp, Option<&str>),
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        let sql = format!(
            "SELECT {POINT_COLUMNS} WHERE stream = (SELECT seq FROM streams WHERE id = $1) \
             AND (updated_at > $2 OR (updated_at = $2 AND $3::text IS NOT NULL AND period > $3)) \
             ORDER BY updated_at, period LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .bind(to_micros(after.0))
            .bind(after.1)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(point_from_row).collect()
    }

    async fn list_revisions(&self, stream: &StreamId, period: &str) -> Result<Vec<RevisionRecord>> {
        let rows = sqlx::query(
            "SELECT period, old_value, new_value, batch_id, key_id, revised_at FROM revisions \
             WHERE stream = (SELECT seq FROM streams WHERE id = $1) AND period = $2 ORDER BY id",
        )
        .bind(stream.as_str())
        .bind(period)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RevisionRecord {
                    period: row.get("period"),
                    old_value: row.get("old_value"),
                    new_value: row.get("new_value"),
                    batch_id: row.get("batch_id"),
                    key_id: row.get("key_id"),
                    revised_at: from_micros(row.get("revised_at"))?,
                })
            })
            .collect()
    }
}
