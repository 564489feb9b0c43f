//! What happens to each record a source gives: the cursor it reaches, the filter, the
//! mapping to a datapoint and its period, a backfill's range, and per-period
//! aggregation. Runs, `connector preview` and `connector test` share it, so all three
//! treat a record alike.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::Record;
use super::aggregate::{Aggregator, MAX_GROUPS, group_of};
use super::error::{AggregateError, CompileError};
use super::mapping::{MappedPoint, Mapper, cursor_cmp};
use super::record::FieldPath;
use super::run::Backfill;
use super::target::Calendar;
use crate::connector::{Aggregate, ConnectorDef};

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
    /// It went into the aggregate of its period (given), and of its group when the
    /// connector groups.
    Aggregated(String, Option<String>),
    /// It could not be mapped or aggregated: why, as a sentence.
    Rejected(String),
}

/// The records of one run, one after the other.
pub struct Pipeline<'a> {
    mapper: Mapper,
    calendar: &'a Calendar,
    aggregator: Option<Aggregator>,
    /// With `aggregate.group_by`: the field, and each group's aggregate.
    grouping: Option<Grouping>,
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
            grouping: def
                .aggregate
                .as_ref()
                .map(Grouping::new)
                .transpose()?
                .flatten(),
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
        // A record without a usable group is left out of the total too: the total is
        // the sum of the groups.
        let group = match self.grouping.as_ref().map(|g| group_of(&g.field, record)) {
            Some(Err(error)) => {
                return self.rejected("record not aggregated", error.to_string());
            }
            Some(Ok(group)) => Some(group),
            None => None,
        };
        // A record added to the total and not to its group (or the other way round)
        // would make the two disagree: its period is published by neither.
        let total = aggregator.add(&period, &point, record);
        let grouped = match (&mut self.grouping, &group) {
            (Some(grouping), Some(group)) => grouping.add(group, &period, &point, record),
            _ => Ok(()),
        };
        if total.is_err() || grouped.is_err() {
            aggregator.poison(&period);
            if let (Some(grouping), Some(group)) = (&mut self.grouping, &group) {
                grouping.poison(group, &period);
            }
        }
        match total.and(grouped) {
            Ok(()) => Fate::Aggregated(period, group),
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

    /// Each group's aggregates, by group, in period order; empty when the connector
    /// does not group. Takes them.
    pub fn group_aggregates(&mut self) -> Vec<(String, Vec<(String, MappedPoint)>)> {
        self.grouping
            .take()
            .map(|g| {
                g.groups
                    .into_iter()
                    .map(|(group, aggregator)| (group, aggregator.finish()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An error that ends the run (taken: a second call answers `None`).
    pub fn take_fatal(&mut self) -> Option<AggregateError> {
        self.fatal.take()
    }

    /// The periods left unpublished because a record of theirs could not be aggregated
    /// (`GROUP PERIOD` for a group's).
    pub fn poisoned_periods(&self) -> Vec<String> {
        let total = self
            .aggregator
            .iter()
            .flat_map(|a| a.poisoned().iter().cloned());
        let groups = self.grouping.iter().flat_map(|g| {
            g.groups.iter().flat_map(|(group, a)| {
                a.poisoned()
                    .iter()
                    .map(move |period| format!("{group} {period}"))
            })
        });
        total.chain(groups).collect()
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

/// The groups of a connector with `aggregate.group_by`.
struct Grouping {
    field: FieldPath,
    definition: Aggregate,
    groups: std::collections::BTreeMap<String, Aggregator>,
    /// Distinct values held by every group together (`count_distinct`), bounded like
    /// the total's.
    distinct_values: usize,
}

impl Grouping {
    /// `None` when the connector does not group.
    fn new(def: &Aggregate) -> Result<Option<Self>, CompileError> {
        let Some(field) = &def.group_by else {
            return Ok(None);
        };
        let field = FieldPath::parse(field).map_err(|error| CompileError::Field {
            place: "aggregate.group_by".into(),
            error,
        })?;
        Ok(Some(Self {
            field,
            definition: def.clone(),
            groups: Default::default(),
            distinct_values: 0,
        }))
    }

    fn poison(&mut self, group: &str, period: &str) {
        if let Some(aggregator) = self.groups.get_mut(group) {
            aggregator.poison(period);
        }
    }

    fn add(
        &mut self,
        group: &str,
        period: &str,
        point: &MappedPoint,
        record: &Record,
    ) -> Result<(), AggregateError> {
        if !self.groups.contains_key(group) {
            if self.groups.len() >= MAX_GROUPS {
                return Err(AggregateError::TooManyGroups(MAX_GROUPS));
            }
            let aggregator =
                Aggregator::new(&self.definition).expect("the definition compiled for the total");
            self.groups.insert(group.to_owned(), aggregator);
        }
        let aggregator = self.groups.get_mut(group).expect("inserted above");
        let before = aggregator.distinct_values();
        let added = aggregator.add(period, point, record);
        self.distinct_values += aggregator.distinct_values() - before;
        if self.distinct_values > super::aggregate::MAX_DISTINCT_VALUES {
            return Err(AggregateError::TooManyDistinct(
                super::aggregate::MAX_DISTINCT_VALUES,
            ));
        }
        added
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
