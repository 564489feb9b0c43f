//! What happens to each record a source gives: the cursor it reaches, the filter, the
//! mapping to a datapoint and its period, a backfill's range, and per-period
//! aggregation. Runs, `connector preview` and `connector test` share it, so all three
//! treat a record alike.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::Record;
use super::aggregate::Aggregator;
use super::error::{AggregateError, CompileError};
use super::mapping::{MappedPoint, Mapper, cursor_cmp};
use super::run::Backfill;
use super::target::Calendar;
use crate::connector::ConnectorDef;

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The connector's filter left it out.
    Filtered,
    /// Its period (given) is outside the backfill's range.
    OutOfRange(String),
    /// It is the point of its period (given), unless a later record of the period
    /// replaces it.
    Point(String, MappedPoint),
    /// It went into the aggregate of its period (given).
    Aggregated(String),
    /// It could not be mapped or aggregated: why, as a sentence.
    Rejected(String),
}

/// The records of one run, one after the other.
pub struct Pipeline<'a> {
    mapper: Mapper,
    calendar: &'a Calendar,
    aggregator: Option<Aggregator>,
    backfill: Option<&'a Backfill>,
    max_cursor: Option<String>,
    ordered: bool,
    mapped_any: bool,
    in_range: bool,
    out_of_range: bool,
    first_reason: Option<String>,
    fatal: Option<AggregateError>,
}

impl<'a> Pipeline<'a> {
    /// The pipeline of `def` for a stream of `calendar`; the reason names a field of the
    /// definition that cannot be used.
    pub fn new(
        def: &ConnectorDef,
        calendar: &'a Calendar,
        backfill: Option<&'a Backfill>,
    ) -> Result<Self, CompileError> {
        Ok(Self {
            mapper: Mapper::new(def)?,
            calendar,
            aggregator: def.aggregate.as_ref().map(Aggregator::new).transpose()?,
            backfill,
            max_cursor: None,
            ordered: true,
            mapped_any: false,
            in_range: false,
            out_of_range: false,
            first_reason: None,
            fatal: None,
        })
    }

    /// Takes one record.
    pub fn record(&mut self, record: &Record) -> Fate {
        if let Some(c) = self.mapper.cursor(record) {
            match self.max_cursor.as_deref().map(|max| cursor_cmp(&c, max)) {
                Some(Ordering::Less) => self.ordered = false,
                Some(Ordering::Equal) => {}
                _ => self.max_cursor = Some(c),
            }
        }
        if !self.mapper.keep(record) {
            return Fate::Filtered;
        }
        let mapped = self
            .mapper
            .map(record)
            .and_then(|p| self.calendar.period_of(&p).map(|period| (period, p)));
        let (period, point) = match mapped {
            Ok(mapped) => mapped,
            Err(reason) => return self.rejected("record not mapped", reason.to_string()),
        };
        self.mapped_any = true;
        if self.backfill.is_some_and(|range| !range.covers(&period)) {
            self.out_of_range = true;
            return Fate::OutOfRange(period);
        }
        self.in_range = true;
        let Some(aggregator) = self.aggregator.as_mut() else {
            return Fate::Point(period, point);
        };
        match aggregator.add(&period, &point, record) {
            Ok(()) => Fate::Aggregated(period),
            Err(error) if error.ends_the_run() => {
                let sentence = error.to_string();
                self.fatal.get_or_insert(error);
                Fate::Rejected(sentence)
            }
            Err(reason) => self.rejected("record not aggregated", reason.to_string()),
        }
    }

    fn rejected(&mut self, what: &str, reason: String) -> Fate {
        let sentence = format!("{what}: {reason}");
        self.first_reason.get_or_insert(reason);
        Fate::Rejected(sentence)
    }

    /// The aggregates of every record taken, in period order; `None` when the
    /// connector does not aggregate. Takes them: a second call answers `None`.
    pub fn aggregates(&mut self) -> Option<Vec<(String, MappedPoint)>> {
        self.aggregator.take().map(Aggregator::finish)
    }

    /// An error that ends the run (taken: a second call answers `None`).
    pub fn take_fatal(&mut self) -> Option<AggregateError> {
        self.fatal.take()
    }

    /// The periods left unpublished because a record of theirs could not be aggregated.
    pub fn poisoned_periods(&self) -> Vec<String> {
        self.aggregator
            .as_ref()
            .map(|a| a.poisoned().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether every record a backfill mapped fell outside its range (and some did).
    pub fn all_out_of_range(&self) -> bool {
        self.out_of_range && !self.in_range
    }

    /// Whether the connector aggregates.
    pub fn aggregating(&self) -> bool {
        self.aggregator.is_some()
    }

    /// How many periods have an aggregate so far.
    pub fn aggregated_periods(&self) -> usize {
        self.aggregator.as_ref().map_or(0, Aggregator::periods)
    }

    /// The greatest cursor value of the records taken.
    pub fn max_cursor(&self) -> Option<&str> {
        self.max_cursor.as_deref()
    }

    /// Whether the records came in cursor order.
    pub fn ordered(&self) -> bool {
        self.ordered
    }

    /// Why records were refused, when none could be mapped: the first reason.
    pub fn nothing_mapped(&self) -> Option<&str> {
        match self.mapped_any {
            true => None,
            false => self.first_reason.as_deref(),
        }
    }
}

/// Points by period in the order their periods first came, a later point of a period
/// replacing the earlier one.
#[derive(Debug, Default)]
pub struct LatestPerPeriod {
    points: Vec<(String, MappedPoint)>,
    index: HashMap<String, usize>,
}

impl LatestPerPeriod {
    /// Adds `point`, replacing the one `period` had.
    pub fn put(&mut self, period: String, point: MappedPoint) {
        match self.index.get(&period) {
            Some(&i) => self.points[i] = (period, point),
            None => {
                self.index.insert(period.clone(), self.points.len());
                self.points.push((period, point));
            }
        }
    }

    /// The points, in the order their periods first came.
    pub fn into_points(self) -> Vec<(String, MappedPoint)> {
        self.points
    }
}
