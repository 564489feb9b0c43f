//! Recorded sources for `kpistream connector test`: the pages of records a connector's
//! source answered (`connector record NAME` writes them to `NAME.fixture.json` beside
//! the connector, with the stream's frequency and time zone), and the points they map
//! to (`NAME.expected.csv`). `connector test` feeds the recorded pages through the
//! connector's filter, mapping and aggregation as a run would, offline, publishing
//! nothing, and compares the points with the expected file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Record;
use super::error::CompileError;
use super::pipeline::{Fate, LatestPerPeriod, Pipeline};
use super::target::Calendar;
use crate::connector::ConnectorDef;

/// The version of the fixture format this build writes and reads.
pub const FORMAT: u32 = 1;

/// A connector's recorded source.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fixture {
    /// The format's version ([`FORMAT`]).
    pub kpistream_fixture: u32,
    /// The connector it was recorded for.
    pub connector: String,
    /// When (RFC 3339).
    pub recorded_at: String,
    /// The stream's frequency (`daily`…) and IANA time zone, which place records in
    /// periods.
    pub frequency: String,
    /// See `frequency`.
    pub time_zone: String,
    /// The cursor the recorded pull started from (`{{cursor}}` then held the window's
    /// start); none for a first pull.
    pub cursor: Option<String>,
    /// The source's pages of records, in order.
    pub pages: Vec<Vec<Record>>,
}

/// A fixture or an expected file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("the fixture's frequency {0:?} is not one kpistream knows")]
    Frequency(String),
    #[error("the fixture's time zone {0:?} is not in the time zone database")]
    Zone(String),
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// As a run would fail: no record of the fixture could be mapped.
    #[error("no record could be mapped to a datapoint; the first: {0}")]
    NothingMapped(String),
    /// The expected file, and what is wrong with it (naming its line).
    #[error("{path}: {reason}")]
    Expected { path: String, reason: String },
}

fn expected_error(path: &Path, reason: impl std::fmt::Display) -> FixtureError {
    FixtureError::Expected {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// `DIR/NAME.fixture.json`.
pub fn fixture_path(dir: &Path, connector: &str) -> PathBuf {
    dir.join(format!("{connector}.fixture.json"))
}

/// `DIR/NAME.expected.csv`.
pub fn expected_path(dir: &Path, connector: &str) -> PathBuf {
    dir.join(format!("{connector}.expected.csv"))
}

/// The points a run of `def` over the fixture's pages would publish, by period (the
/// last point of a period, as the server would keep it), and how many records each
/// fate took.
pub fn replay(def: &ConnectorDef, fixture: &Fixture) -> Result<Replayed, FixtureError> {
    let frequency: crate::period::Frequency = fixture
        .frequency
        .parse()
        .map_err(|_| FixtureError::Frequency(fixture.frequency.clone()))?;
    let tz = jiff::tz::TimeZone::get(&fixture.time_zone)
        .map_err(|_| FixtureError::Zone(fixture.time_zone.clone()))?;
    let calendar = Calendar { frequency, tz };
    let mut pipeline = Pipeline::new(def, &calendar, None)?;
    let mut points = LatestPerPeriod::default();
    let mut replayed = Replayed::default();
    for record in fixture.pages.iter().flatten() {
        match pipeline.record(record) {
            Fate::Filtered | Fate::OutOfRange(_) => replayed.filtered_out += 1,
            Fate::Point(period, point) => points.put(period, point),
            Fate::Aggregated(..) => {}
            Fate::Rejected(reason) => replayed.rejected.push(reason),
        }
    }
    if let Some(reason) = pipeline.nothing_mapped() {
        return Err(FixtureError::NothingMapped(reason.to_owned()));
    }
    let published = pipeline
        .aggregates()
        .unwrap_or_else(|| points.into_points());
    let total = published
        .into_iter()
        .map(|(period, point)| ((String::new(), period), point.value));
    let groups = pipeline
        .group_aggregates()
        .into_iter()
        .flat_map(|(group, points)| {
            points
                .into_iter()
                .map(move |(period, point)| ((group.clone(), period), point.value))
        });
    replayed.points = total.chain(groups).collect();
    replayed.cursor = pipeline.max_cursor().map(str::to_owned);
    Ok(replayed)
}

/// A point's group (empty: the connector's own stream) and period.
pub type PointKey = (String, String);

/// What a replay gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// (group, period) → value.
    pub points: BTreeMap<PointKey, String>,
    /// Records the filter (or nothing else) left out.
    pub filtered_out: u64,
    /// Why records were refused.
    pub rejected: Vec<String>,
    /// The greatest cursor value of the records.
    pub cursor: Option<String>,
}

/// The expected file's text for `points`: a `period,value` header, then one line per
/// period in order; `group,period,value` when some points are a group's (the
/// connector's own stream's have an empty group).
pub fn expected_csv(points: &BTreeMap<PointKey, String>) -> String {
    let grouped = points.keys().any(|(group, _)| !group.is_empty());
    let mut writer = csv::Writer::from_writer(Vec::new());
    if grouped {
        writer.write_record(GROUPED_HEADER).expect("in memory");
    } else {
        writer.write_record(HEADER).expect("in memory");
    }
    for ((group, period), value) in points {
        if grouped {
            writer
                .write_record([group, period, value])
                .expect("in memory");
        } else {
            writer.write_record([period, value]).expect("in memory");
        }
    }
    String::from_utf8(writer.into_inner().expect("in memory")).expect("UTF-8 in, UTF-8 out")
}

const HEADER: [&str; 2] = ["period", "value"];
const GROUPED_HEADER: [&str; 3] = ["group", "period", "value"];

/// Reads an expected file: `period,value` (or `group,period,value`) lines after a
/// header; a mistake names its line.
pub fn read_expected(path: &Path) -> Result<BTreeMap<PointKey, String>, FixtureError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| expected_error(path, e))?;
    let headers = reader
        .headers()
        .map_err(|e| expected_error(path, e))?
        .clone();
    let header: Vec<&str> = headers.iter().collect();
    let grouped = match header.as_slice() {
        h if h == HEADER => false,
        h if h == GROUPED_HEADER => true,
        _ => {
            return Err(expected_error(
                path,
                "line 1 must be the header `period,value` (or `group,period,value`)",
            ));
        }
    };
    let mut points = BTreeMap::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| expected_error(path, format!("line {line}: {e}")))?;
        let (group, period, value) = match grouped {
            true => (row[0].to_owned(), row[1].to_owned(), row[2].to_owned()),
            false => (String::new(), row[0].to_owned(), row[1].to_owned()),
        };
        let key = (group, period);
        if points.contains_key(&key) {
            return Err(expected_error(
                path,
                format!("line {line}: period {} is listed twice", shown(&key)),
            ));
        }
        points.insert(key, value);
    }
    Ok(points)
}

/// A point's period, after its group when it has one.
fn shown((group, period): &PointKey) -> String {
    match group.as_str() {
        "" => period.clone(),
        group => format!("{period} of group {group}"),
    }
}

/// How `actual` differs from `expected`, one line per period; empty when they agree.
pub fn differences(
    expected: &BTreeMap<PointKey, String>,
    actual: &BTreeMap<PointKey, String>,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<&PointKey> =
        expected.keys().chain(actual.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let period = shown(key);
            match (expected.get(key), actual.get(key)) {
                (Some(e), Some(a)) if e == a => None,
                (Some(e), Some(a)) => Some(format!("{period}: expected {e}, got {a}")),
                (Some(e), None) => Some(format!("{period}: expected {e}, not published")),
                (None, Some(a)) => Some(format!("{period}: not expected, got {a}")),
                (None, None) => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<PointKey, String> {
        pairs
            .iter()
            .map(|(p, v)| ((String::new(), p.to_string()), v.to_string()))
            .collect()
    }

    #[test]
    fn differences_name_each_period_that_differs() {
        let expected = map(&[("2026-01", "10"), ("2026-02", "20"), ("2026-03", "30")]);
        let actual = map(&[("2026-01", "10"), ("2026-02", "21"), ("2026-04", "40")]);
        assert_eq!(
            differences(&expected, &actual),
            [
                "2026-02: expected 20, got 21",
                "2026-03: expected 30, not published",
                "2026-04: not expected, got 40",
            ]
        );
        assert!(differences(&expected, &expected).is_empty());
    }

    #[test]
    fn the_expected_file_reads_back_what_was_written_and_names_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.expected.csv");
        let points = map(&[("2026-01", "1480.50"), ("2026-02", "-3")]);
        std::fs::write(&path, expected_csv(&points)).unwrap();
        assert_eq!(read_expected(&path).unwrap(), points);
        std::fs::write(&path, "period,value\n2026-01,1\n2026-01,2\n").unwrap();
        let err = read_expected(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("line 3: period 2026-01 is listed twice"),
            "{err}"
        );
        std::fs::write(&path, "month,amount\n").unwrap();
        assert!(
            read_expected(&path)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        let mut grouped = points.clone();
        grouped.insert(("fr".into(), "2026-01".into()), "7".into());
        let text = expected_csv(&grouped);
        assert!(
            text.starts_with("group,period,value\n,2026-01,1480.50\n"),
            "{text}"
        );
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_expected(&path).unwrap(), grouped);
        let mut changed = grouped.clone();
        changed.insert(("fr".into(), "2026-01".into()), "8".into());
        assert_eq!(
            differences(&grouped, &changed),
            ["2026-01 of group fr: expected 7, got 8"]
        );
    }
}
