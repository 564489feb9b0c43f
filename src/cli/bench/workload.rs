//! What `kpistream bench` sends: the batches of a workload, the same whichever system
//! receives them. Batch `b` goes to stream `b mod streams` and is sent by publisher
//! `b mod publishers`; its new points take fresh periods of that stream, and its
//! updates rewrite periods the same publisher already had acknowledged, with a value
//! never stored there before, so each one becomes a revision.

use std::collections::HashMap;
use std::time::Duration;

use jiff::ToSpan;
use jiff::civil::Date;

/// The last day a daily period may be (the server takes years up to 9998).
const LAST_DAY: Date = jiff::civil::date(9998, 12, 31);

/// The shape of a run: how many points, in which batches, from whom, how fast.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Streams written to, batch after batch in turn.
    pub streams: usize,
    /// Points per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Points sent in all.
    pub points: u64,
    /// Concurrent publishers, each on its own connection.
    pub publishers: usize,
    /// Fraction of points that rewrite an acknowledged period with a new value.
    pub update_share: f64,
    /// Open-loop pacing in points per second; `None` sends as fast as answers come.
    pub rate: Option<f64>,
    /// The day of period 0.
    pub start: Date,
}

/// One generated point: the index of its period in its stream, and its value text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenPoint {
    pub period: u64,
    pub value: String,
}

/// One generated batch.
#[derive(Debug, Clone)]
pub struct GenBatch {
    /// The stream it goes to (0-based).
    pub stream: usize,
    pub points: Vec<GenPoint>,
    /// How many of `points` rewrite an acknowledged period.
    pub updates: usize,
    /// How many of the points are new; they come first.
    pub new: usize,
}

/// What one publisher has had acknowledged: per stream, the new periods of its latest
/// acknowledged batch that had any, which its updates rewrite in turn.
#[derive(Debug, Default)]
pub struct History {
    periods: HashMap<usize, (Vec<u64>, usize)>,
    updates: u64,
    /// Updates due that found nothing acknowledged to rewrite yet: the next batches
    /// make up for them, so that the share holds over the run.
    owed: usize,
}

impl History {
    /// Records an acknowledged batch: its new periods become the ones to rewrite.
    pub fn acknowledged(&mut self, batch: &GenBatch) {
        if batch.new == 0 {
            return;
        }
        let periods = batch.points[..batch.new].iter().map(|p| p.period).collect();
        self.periods.insert(batch.stream, (periods, 0));
    }

    /// Up to `wanted` distinct acknowledged periods of `stream`, taken in turn.
    fn take(&mut self, stream: usize, wanted: usize) -> Vec<u64> {
        let Some((periods, next)) = self.periods.get_mut(&stream) else {
            return Vec::new();
        };
        let count = wanted.min(periods.len());
        let taken = (0..count)
            .map(|i| periods[(*next + i) % periods.len()])
            .collect();
        *next = (*next + count) % periods.len();
        taken
    }

    /// A value this publisher never sent before: `N.5` where a new point is `P.25`.
    fn next_update_value(&mut self) -> String {
        self.updates += 1;
        format!("{}.5", self.updates)
    }
}

impl Workload {
    /// Batches in the run.
    pub fn batches(&self) -> u64 {
        self.points.div_ceil(self.batch_size as u64)
    }

    /// The batches publisher `publisher` sends, in order.
    pub fn batches_of(&self, publisher: usize) -> impl Iterator<Item = u64> + use<> {
        (publisher as u64..self.batches()).step_by(self.publishers)
    }

    /// When batch `index` is due after the start, under `--rate`.
    pub fn due(&self, index: u64) -> Option<Duration> {
        let rate = self.rate?;
        Some(Duration::from_secs_f64(
            (index * self.batch_size as u64) as f64 / rate,
        ))
    }

    /// The points in batch `index`.
    fn size_of(&self, index: u64) -> usize {
        let before = index * self.batch_size as u64;
        (self.points - before).min(self.batch_size as u64) as usize
    }

    /// How many points of batch `index` should be updates: the share of the points
    /// sent so far, rounded down, less those already due before it.
    fn updates_due(&self, index: u64) -> usize {
        let before = index * self.batch_size as u64;
        let after = before + self.size_of(index) as u64;
        let due = |points: u64| (points as f64 * self.update_share).floor() as u64;
        (due(after) - due(before)) as usize
    }

    /// The last period index any stream gets: new points of the `k`th batch of a stream
    /// take periods `k * batch_size ..`.
    pub fn last_period(&self) -> u64 {
        let last = self.batches().saturating_sub(1);
        (last / self.streams as u64) * self.batch_size as u64 + self.batch_size as u64 - 1
    }

    /// Checks every period fits the calendar the server takes.
    pub fn check_calendar(&self) -> anyhow::Result<()> {
        let room = self.start.until(LAST_DAY).map(|span| span.get_days());
        let room = u64::try_from(room.unwrap_or(0)).unwrap_or(0);
        if self.last_period() > room {
            anyhow::bail!(
                "{} points in batches of {} over {} stream(s) need {} days per stream from {}, past {LAST_DAY}, the last day the server takes: send fewer points, use more streams or an earlier --start",
                self.points,
                self.batch_size,
                self.streams,
                self.last_period() + 1,
                self.start
            );
        }
        Ok(())
    }

    /// Batch `index`, rewriting periods from `history` for its updates (fewer when the
    /// publisher has not had enough of that stream acknowledged yet).
    pub fn batch(&self, index: u64, history: &mut History) -> GenBatch {
        let stream = (index % self.streams as u64) as usize;
        let size = self.size_of(index);
        let wanted = (self.updates_due(index) + history.owed).min(size);
        let rewritten = history.take(stream, wanted);
        history.owed = wanted - rewritten.len();
        let new = size - rewritten.len();
        let first = (index / self.streams as u64) * self.batch_size as u64;
        let mut points: Vec<GenPoint> = (first..first + new as u64)
            .map(|period| GenPoint {
                period,
                value: format!("{period}.25"),
            })
            .collect();
        for period in &rewritten {
            points.push(GenPoint {
                period: *period,
                value: history.next_update_value(),
            });
        }
        GenBatch {
            stream,
            points,
            updates: rewritten.len(),
            new,
        }
    }

    /// Every batch of the run, as closed-loop publishers would send them (each batch
    /// acknowledged before the publisher's next), grouped by publisher.
    pub fn all_batches(&self) -> Vec<GenBatch> {
        let mut out = Vec::with_capacity(self.batches() as usize);
        for publisher in 0..self.publishers {
            let mut history = History::default();
            for index in self.batches_of(publisher) {
                let batch = self.batch(index, &mut history);
                history.acknowledged(&batch);
                out.push(batch);
            }
        }
        out
    }

    /// The daily period text of period index `period`.
    pub fn day(&self, period: u64) -> String {
        self.start
            .checked_add((period as i64).days())
            .unwrap_or(LAST_DAY)
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(points: u64, batch_size: usize, streams: usize, share: f64) -> Workload {
        Workload {
            streams,
            batch_size,
            points,
            publishers: 2,
            update_share: share,
            rate: None,
            start: jiff::civil::date(1900, 1, 1),
        }
    }

    #[test]
    fn every_point_is_sent_once_and_updates_match_the_share() {
        let w = workload(1_005, 10, 3, 0.1);
        let batches = w.all_batches();
        assert_eq!(batches.len(), 101);
        let points: usize = batches.iter().map(|b| b.points.len()).sum();
        assert_eq!(points, 1_005);
        let updates: usize = batches.iter().map(|b| b.updates).sum();
        // A publisher's first batches to a stream have nothing to rewrite yet: later
        // ones make up for them.
        assert_eq!(updates, 100);
    }

    #[test]
    fn no_batch_names_a_period_twice_and_updates_rewrite_acknowledged_periods() {
        let w = workload(600, 20, 2, 0.3);
        let mut stored: HashMap<(usize, u64), String> = HashMap::new();
        for batch in w.all_batches() {
            let mut seen = std::collections::HashSet::new();
            for (i, point) in batch.points.iter().enumerate() {
                assert!(seen.insert(point.period), "period twice in a batch");
                let old = stored.insert((batch.stream, point.period), point.value.clone());
                if i < batch.new {
                    assert_eq!(old, None, "a new point takes a fresh period");
                } else {
                    assert!(
                        old.is_some_and(|v| v != point.value),
                        "an update changes a value"
                    );
                }
            }
        }
    }

    #[test]
    fn single_point_batches_take_updates_in_turn() {
        let w = workload(100, 1, 1, 0.1);
        let updates: usize = w.all_batches().iter().map(|b| b.updates).sum();
        assert_eq!(updates, 10);
    }

    #[test]
    fn a_run_past_the_calendar_is_refused_with_a_reason() {
        let w = workload(4_000_000, 1000, 1, 0.0);
        let err = w.check_calendar().unwrap_err().to_string();
        assert!(err.contains("more streams"), "{err}");
        assert!(workload(4_000_000, 1000, 2, 0.0).check_calendar().is_ok());
    }
}
