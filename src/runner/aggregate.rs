//! A connector's `[aggregate]`: each period's records of a run make one value, in
//! exact decimal arithmetic. Every run recomputes a period from all the records it
//! pulled for it, never from a value published before, so running again publishes the
//! same number (which the server stores once).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value as Json;

use super::Record;
use super::error::{AggregateError, CompileError};
use super::mapping::{MappedPoint, When};
use super::record::FieldPath;
use crate::connector::{Aggregate, AggregateFunction};

/// Most distinct values one run of a `count_distinct` connector holds, over all its
/// periods: the sets live in the runner's memory until the run publishes.
pub const MAX_DISTINCT_VALUES: usize = 1_000_000;

/// One period's records so far.
#[derive(Debug)]
enum Acc {
    Count(u64),
    Sum(Decimal),
    Min(Decimal),
    Max(Decimal),
    Avg { sum: Decimal, count: u64 },
    First(String),
    Last(String),
    Distinct(HashSet<String>),
}

/// The aggregates of one run, by period.
#[derive(Debug)]
pub struct Aggregator {
    function: AggregateFunction,
    distinct: Option<FieldPath>,
    scale: u32,
    periods: BTreeMap<String, Acc>,
    distinct_values: usize,
    /// [`MAX_DISTINCT_VALUES`], lower in tests.
    distinct_limit: usize,
    /// Periods with a record that could not be added: their value would be wrong, so
    /// they are not published.
    poisoned: BTreeSet<String>,
}

impl Aggregator {
    /// Compiles the connector's `[aggregate]`; the reason names the field that cannot be
    /// used.
    pub fn new(def: &Aggregate) -> Result<Self, CompileError> {
        let distinct = match (def.function, &def.field) {
            (AggregateFunction::CountDistinct, Some(field)) => Some(
                FieldPath::parse(field).map_err(|error| CompileError::Field {
                    place: "aggregate.field".into(),
                    error,
                })?,
            ),
            (AggregateFunction::CountDistinct, None) => {
                return Err(CompileError::NoDistinctField);
            }
            _ => None,
        };
        Ok(Self {
            function: def.function,
            distinct,
            scale: def.scale,
            periods: BTreeMap::new(),
            distinct_values: 0,
            distinct_limit: MAX_DISTINCT_VALUES,
            poisoned: BTreeSet::new(),
        })
    }

    /// Adds one mapped record of `period`. A record that cannot be added (a value that is
    /// not a decimal, a sum too large) keeps its period out of [`Aggregator::finish`]:
    /// a value computed without it would be wrong.
    pub fn add(
        &mut self,
        period: &str,
        point: &MappedPoint,
        record: &Record,
    ) -> Result<(), AggregateError> {
        let added = self.accumulate(period, point, record);
        if added.is_err() {
            self.poisoned.insert(period.to_owned());
        }
        added
    }

    /// Adds one mapped record of `period`; the reason says why it cannot be added (a
    /// sum too large, a distinct field missing).
    fn accumulate(
        &mut self,
        period: &str,
        point: &MappedPoint,
        record: &Record,
    ) -> Result<(), AggregateError> {
        use AggregateFunction as F;
        let number = || {
            Decimal::from_str(&point.value)
                .map_err(|_| AggregateError::NotDecimal(point.value.clone()))
        };
        let distinct = match &self.distinct {
            Some(path) => Some(match path.get(record) {
                None | Some(Json::Null) => {
                    return Err(AggregateError::DistinctMissing(path.to_string()));
                }
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }),
            None => None,
        };
        let overflow = || AggregateError::TooLarge {
            function: self.function.name(),
            period: period.to_owned(),
        };
        match self.periods.get_mut(period) {
            None => {
                let acc = match self.function {
                    F::Count => Acc::Count(1),
                    F::Sum => Acc::Sum(number()?),
                    F::Min => Acc::Min(number()?),
                    F::Max => Acc::Max(number()?),
                    F::Avg => Acc::Avg {
                        sum: number()?,
                        count: 1,
                    },
                    F::First => Acc::First(point.value.clone()),
                    F::Last => Acc::Last(point.value.clone()),
                    F::CountDistinct => {
                        self.count_distinct_value()?;
                        Acc::Distinct(distinct.into_iter().collect())
                    }
                };
                self.periods.insert(period.to_owned(), acc);
            }
            Some(acc) => match acc {
                Acc::Count(n) => *n += 1,
                Acc::Sum(sum) => *sum = sum.checked_add(number()?).ok_or_else(overflow)?,
                Acc::Min(min) => *min = (*min).min(number()?),
                Acc::Max(max) => *max = (*max).max(number()?),
                Acc::Avg { sum, count } => {
                    *sum = sum.checked_add(number()?).ok_or_else(overflow)?;
                    *count += 1;
                }
                Acc::First(_) => {}
                Acc::Last(last) => last.clone_from(&point.value),
                Acc::Distinct(seen) => {
                    if let Some(value) = distinct.filter(|v| !seen.contains(v)) {
                        if self.distinct_values >= self.distinct_limit {
                            return Err(AggregateError::TooManyDistinct(self.distinct_limit));
                        }
                        self.distinct_values += 1;
                        seen.insert(value);
                    }
                }
            },
        }
        Ok(())
    }

    /// Counts one more distinct value kept, refusing it past [`MAX_DISTINCT_VALUES`].
    fn count_distinct_value(&mut self) -> Result<(), AggregateError> {
        if self.distinct_values >= self.distinct_limit {
            return Err(AggregateError::TooManyDistinct(self.distinct_limit));
        }
        self.distinct_values += 1;
        Ok(())
    }

    /// Each period's value, in period order, but for the periods a record could not be
    /// added to ([`Aggregator::poisoned`]).
    pub fn finish(self) -> Vec<(String, MappedPoint)> {
        let scale = self.scale;
        let poisoned = self.poisoned;
        self.periods
            .into_iter()
            .filter(|(period, _)| !poisoned.contains(period))
            .map(|(period, acc)| {
                let value = match acc {
                    Acc::Count(n) => n.to_string(),
                    Acc::Sum(d) | Acc::Min(d) | Acc::Max(d) => d.to_string(),
                    Acc::Avg { sum, count } => (sum / Decimal::from(count))
                        .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
                        .to_string(),
                    Acc::First(v) | Acc::Last(v) => v,
                    Acc::Distinct(seen) => seen.len().to_string(),
                };
                let point = MappedPoint {
                    when: When::Period(period.clone()),
                    value,
                    external_id: String::new(),
                };
                (period, point)
            })
            .collect()
    }

    /// Keeps `period` out of [`Aggregator::finish`]: a record of it could not be added
    /// elsewhere (to its group, or to the total), so this value would differ from the
    /// others'.
    pub fn poison(&mut self, period: &str) {
        self.poisoned.insert(period.to_owned());
    }

    /// The periods left unpublished because a record of theirs could not be added.
    pub fn poisoned(&self) -> &BTreeSet<String> {
        &self.poisoned
    }

    /// How many periods have records so far.
    pub fn periods(&self) -> usize {
        self.periods.len()
    }

    /// How many distinct values it holds (`count_distinct`).
    pub fn distinct_values(&self) -> usize {
        self.distinct_values
    }
}

/// Most groups one run of a grouped connector holds: each is an aggregate in memory
/// and a stream to publish to.
pub const MAX_GROUPS: usize = 1_000;

/// A record's group: the value of the `group_by` field, as text that can stand in a
/// file name.
pub fn group_of(path: &FieldPath, record: &Record) -> Result<String, AggregateError> {
    let text = match path.get(record) {
        None | Some(Json::Null) => return Err(AggregateError::NoGroup(path.to_string())),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let ok = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(text)
    } else {
        Err(AggregateError::BadGroup(
            crate::text::excerpt(&text).to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregator(function: &str, field: Option<&str>) -> Aggregator {
        let mut text = format!("function = {function:?}\n");
        if let Some(field) = field {
            text.push_str(&format!("field = {field:?}\n"));
        }
        Aggregator::new(&toml::from_str(&text).unwrap()).unwrap()
    }

    fn point(value: &str) -> MappedPoint {
        MappedPoint {
            when: When::Period(String::new()),
            value: value.into(),
            external_id: String::new(),
        }
    }

    fn run(function: &str, records: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut agg = aggregator(function, None);
        let record: Record = serde_json::json!({});
        for (period, value) in records {
            agg.add(period, &point(value), &record).unwrap();
        }
        agg.finish()
            .into_iter()
            .map(|(period, p)| (period, p.value))
            .collect()
    }

    #[test]
    fn each_function_gives_the_exact_value_per_period() {
        let records = [
            ("2026-11", "10.10"),
            ("2026-10", "5"),
            ("2026-11", "0.2"),
            ("2026-11", "-3"),
        ];
        let expect = |oct: &str, nov: &str| {
            vec![
                ("2026-10".to_owned(), oct.to_owned()),
                ("2026-11".to_owned(), nov.to_owned()),
            ]
        };
        assert_eq!(run("count", &records), expect("1", "3"));
        assert_eq!(run("sum", &records), expect("5", "7.30"));
        assert_eq!(run("min", &records), expect("5", "-3"));
        assert_eq!(run("max", &records), expect("5", "10.10"));
        assert_eq!(run("avg", &records), expect("5", "2.4333"));
        assert_eq!(run("first", &records), expect("5", "10.10"));
        assert_eq!(run("last", &records), expect("5", "-3"));
    }

    #[test]
    fn averages_round_half_away_from_zero_at_the_scale() {
        let mut agg =
            Aggregator::new(&toml::from_str("function = \"avg\"\nscale = 1").unwrap()).unwrap();
        let record: Record = serde_json::json!({});
        for v in ["0.1", "0.2"] {
            agg.add("p", &point(v), &record).unwrap();
        }
        let mut negative =
            Aggregator::new(&toml::from_str("function = \"avg\"\nscale = 1").unwrap()).unwrap();
        for v in ["-0.1", "-0.2"] {
            negative.add("p", &point(v), &record).unwrap();
        }
        assert_eq!(agg.finish()[0].1.value, "0.2");
        assert_eq!(negative.finish()[0].1.value, "-0.2");
    }

    #[test]
    fn count_distinct_counts_values_of_its_field() {
        let mut agg = aggregator("count_distinct", Some("$.customer"));
        for (period, customer) in [("d1", "a"), ("d1", "b"), ("d1", "a"), ("d2", "a")] {
            let record = serde_json::json!({ "customer": customer });
            agg.add(period, &point(""), &record).unwrap();
        }
        let numbers = serde_json::json!({ "customer": 7 });
        agg.add("d2", &point(""), &numbers).unwrap();
        let missing = agg
            .add("d3", &point(""), &serde_json::json!({}))
            .unwrap_err();
        assert_eq!(
            missing,
            AggregateError::DistinctMissing("$.customer".into())
        );
        let values: Vec<(String, String)> = agg
            .finish()
            .into_iter()
            .map(|(period, p)| (period, p.value))
            .collect();
        let d = |p: &str, v: &str| (p.to_owned(), v.to_owned());
        assert_eq!(values, [d("d1", "2"), d("d2", "2")], "d3 lacks a value");
    }

    #[test]
    fn a_period_with_a_record_that_cannot_be_added_is_not_published() {
        let mut agg = aggregator("sum", None);
        let record: Record = serde_json::json!({});
        agg.add("2026-01", &point("10"), &record).unwrap();
        agg.add("2026-02", &point("10"), &record).unwrap();
        assert!(agg.add("2026-02", &point("ten"), &record).is_err());
        agg.add("2026-02", &point("5"), &record).unwrap();
        assert_eq!(agg.poisoned().iter().collect::<Vec<_>>(), ["2026-02"]);
        let periods: Vec<String> = agg.finish().into_iter().map(|(p, _)| p).collect();
        assert_eq!(periods, ["2026-01"], "February's sum would miss a record");
    }

    #[test]
    fn distinct_values_past_the_limit_end_the_run_and_are_not_kept() {
        let mut agg = aggregator("count_distinct", Some("$.c"));
        agg.distinct_limit = 2;
        let add = |agg: &mut Aggregator, c: &str| {
            agg.add("d", &point(""), &serde_json::json!({ "c": c }))
        };
        add(&mut agg, "a").unwrap();
        add(&mut agg, "b").unwrap();
        add(&mut agg, "a").unwrap();
        let err = add(&mut agg, "c").unwrap_err();
        assert!(err.ends_the_run(), "{err}");
        assert_eq!(
            agg.distinct_values, 2,
            "the value past the limit is not kept"
        );
    }

    #[test]
    fn a_sum_past_the_largest_decimal_is_refused_by_name() {
        let mut agg = aggregator("sum", None);
        let record: Record = serde_json::json!({});
        let big = Decimal::MAX.to_string();
        agg.add("p", &point(&big), &record).unwrap();
        let err = agg.add("p", &point(&big), &record).unwrap_err();
        assert_eq!(err.to_string(), "the sum of period p is too large");
    }
}
