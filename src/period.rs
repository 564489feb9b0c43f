//! Frequencies and periods: parsing period text, placing instants in periods in a
//! stream's time zone, and the staleness rule.
//!
//! A [`Period`] is always valid for its [`Frequency`]: it can only be built by parsing
//! or by placing a date, and both check the calendar (ISO week 53 exists only in long
//! years, months have their own lengths, years have four digits).

use std::fmt;

use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::text::{Excerpt, excerpt};

/// How often a stream gets a value: one value per period of this length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Quarterly,
}

impl Frequency {
    pub const ALL: [Frequency; 4] = [Self::Daily, Self::Weekly, Self::Monthly, Self::Quarterly];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Quarterly => "quarterly",
        }
    }

    /// An example of this frequency's period text, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Self::Daily => "2026-11-23",
            Self::Weekly => "2026-W48",
            Self::Monthly => "2026-11",
            Self::Quarterly => "2026-Q4",
        }
    }

    /// Days of tolerance after a period's value is due before the stream reads as stale.
    pub fn stale_grace_days(self) -> i64 {
        match self {
            Self::Daily => 1,
            Self::Weekly => 3,
            Self::Monthly => 7,
            Self::Quarterly => 14,
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Frequency {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| PeriodError::UnknownFrequency(excerpt(s)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("unknown frequency {0}: use daily, weekly, monthly or quarterly")]
    UnknownFrequency(Excerpt),
    #[error(
        "{0} is not a period: write 2026-11-23 (daily), 2026-W48 (weekly), 2026-11 (monthly) or 2026-Q4 (quarterly)"
    )]
    Malformed(Excerpt),
    #[error("{text} is not a date in the calendar ({why})")]
    NotInCalendar { text: Excerpt, why: String },
    #[error("period {text}: {year} has {weeks} ISO weeks (W01 to W{weeks})")]
    NoSuchWeek { text: Excerpt, year: i16, weeks: i8 },
    #[error("period {text} is {found}, but the stream is {expected} (write it like {example})")]
    WrongFrequency {
        text: Excerpt,
        found: Frequency,
        expected: Frequency,
        example: &'static str,
    },
    #[error("year {0} is outside the supported range 1000 to 9998")]
    YearOutOfRange(i64),
}

/// One period of a frequency, identified by its first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    frequency: Frequency,
    start: Date,
}

const MIN_YEAR: i16 = 1000;
const MAX_YEAR: i16 = 9998;

impl Period {
    /// Parses period text and checks it belongs to `expected`.
    pub fn parse(expected: Frequency, text: &str) -> Result<Self, PeriodError> {
        let period = Self::parse_any(text)?;
        if period.frequency != expected {
            return Err(PeriodError::WrongFrequency {
                text: excerpt(text),
                found: period.frequency,
                expected,
                example: expected.example(),
            });
        }
        Ok(period)
    }

    /// Parses period text of any frequency; the format tells which.
    pub fn parse_any(text: &str) -> Result<Self, PeriodError> {
        let malformed = || PeriodError::Malformed(excerpt(text));
        let (year, rest) = text.split_once('-').ok_or_else(malformed)?;
        let year = digits(year, 4).ok_or_else(malformed)?;
        check_year(year)?;
        let year = year as i16;
        // Every date is checked before it is built, so that the reason is a sentence of
        // ours; a date that still fails says so without the library's wording.
        let not_in_calendar = |_: jiff::Error| PeriodError::NotInCalendar {
            text: excerpt(text),
            why: "no such day".into(),
        };
        let month_of = |month: i8| {
            if (1..=12).contains(&month) {
                Ok(month)
            } else {
                Err(PeriodError::NotInCalendar {
                    text: excerpt(text),
                    why: "months are 01 to 12".into(),
                })
            }
        };
        if let Some(week) = rest.strip_prefix('W') {
            let week = digits(week, 2).ok_or_else(malformed)? as i8;
            let weeks = iso_weeks_in(year);
            if !(1..=weeks).contains(&week) {
                return Err(PeriodError::NoSuchWeek {
                    text: excerpt(text),
                    year,
                    weeks,
                });
            }
            let start = ISOWeekDate::new(year, week, Weekday::Monday)
                .map_err(not_in_calendar)?
                .date();
            return Ok(Self::new(Frequency::Weekly, start));
        }
        if let Some(quarter) = rest.strip_prefix('Q') {
            let quarter = digits(quarter, 1).ok_or_else(malformed)?;
            if !(1..=4).contains(&quarter) {
                return Err(PeriodError::NotInCalendar {
                    text: excerpt(text),
                    why: "quarters are Q1 to Q4".into(),
                });
            }
            let start = Date::new(year, (quarter as i8 - 1) * 3 + 1, 1).map_err(not_in_calendar)?;
            return Ok(Self::new(Frequency::Quarterly, start));
        }
        match rest.split_once('-') {
            None => {
                let month = month_of(digits(rest, 2).ok_or_else(malformed)? as i8)?;
                let start = Date::new(year, month, 1).map_err(not_in_calendar)?;
                Ok(Self::new(Frequency::Monthly, start))
            }
            Some((month, day)) => {
                let month = month_of(digits(month, 2).ok_or_else(malformed)? as i8)?;
                let day = digits(day, 2).ok_or_else(malformed)? as i8;
                let days = Date::new(year, month, 1)
                    .map_err(not_in_calendar)?
                    .days_in_month();
                if !(1..=days).contains(&day) {
                    return Err(PeriodError::NotInCalendar {
                        text: excerpt(text),
                        why: format!("{year}-{month:02} has {days} days"),
                    });
                }
                let start = Date::new(year, month, day).map_err(not_in_calendar)?;
                Ok(Self::new(Frequency::Daily, start))
            }
        }
    }

    /// The period of `frequency` that contains `date`.
    pub fn containing(frequency: Frequency, date: Date) -> Result<Self, PeriodError> {
        let start = match frequency {
            Frequency::Daily => date,
            Frequency::Weekly => date
                .checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
                .map_err(|_| PeriodError::YearOutOfRange(i64::from(date.year())))?,
            Frequency::Monthly => date.first_of_month(),
            Frequency::Quarterly => {
                Date::new(date.year(), (date.month() - 1) / 3 * 3 + 1, 1).expect("quarter start")
            }
        };
        let period = Self::new(frequency, start);
        check_year(i64::from(period.label_year()))?;
        Ok(period)
    }

    /// The period of `frequency` containing the instant `at`, seen in `tz`.
    pub fn at(frequency: Frequency, at: Timestamp, tz: &TimeZone) -> Result<Self, PeriodError> {
        Self::containing(frequency, at.to_zoned(tz.clone()).date())
    }

    fn new(frequency: Frequency, start: Date) -> Self {
        Self { frequency, start }
    }

    pub fn frequency(&self) -> Frequency {
        self.frequency
    }

    /// The first day of the period.
    pub fn start(&self) -> Date {
        self.start
    }

    /// The first day after the period.
    pub fn end(&self) -> Date {
        let step = match self.frequency {
            Frequency::Daily => 1.day(),
            Frequency::Weekly => 1.week(),
            Frequency::Monthly => 1.month(),
            Frequency::Quarterly => 3.months(),
        };
        self.start
            .checked_add(step)
            .expect("periods end before year 9999")
    }

    /// The period right after this one.
    pub fn next(&self) -> Self {
        Self::new(self.frequency, self.end())
    }

    /// The period `n` periods before this one (itself for 0); `None` before the first
    /// supported year.
    pub fn back(&self, n: u32) -> Option<Self> {
        let n = i64::from(n);
        let span = match self.frequency {
            Frequency::Daily => n.days(),
            Frequency::Weekly => n.weeks(),
            Frequency::Monthly => n.months(),
            Frequency::Quarterly => (3 * n).months(),
        };
        let period = Self::new(self.frequency, self.start.checked_sub(span).ok()?);
        check_year(i64::from(period.label_year())).ok()?;
        Some(period)
    }

    /// The year printed in the label: the ISO week-numbering year for weeks.
    fn label_year(&self) -> i16 {
        match self.frequency {
            Frequency::Weekly => self.start.iso_week_date().year(),
            _ => self.start.year(),
        }
    }

    /// True when, on `today`, the value of the period after this one is overdue by
    /// more than the frequency's grace: the stream has stopped getting data.
    pub fn is_stale_on(&self, today: Date) -> bool {
        let due = self.next().end();
        let limit = due
            .checked_add(self.frequency.stale_grace_days().days())
            .unwrap_or(due);
        today >= limit
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.start;
        match self.frequency {
            Frequency::Daily => write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
            Frequency::Weekly => {
                let w = d.iso_week_date();
                write!(f, "{:04}-W{:02}", w.year(), w.week())
            }
            Frequency::Monthly => write!(f, "{:04}-{:02}", d.year(), d.month()),
            Frequency::Quarterly => write!(f, "{:04}-Q{}", d.year(), (d.month() - 1) / 3 + 1),
        }
    }
}

/// Parses exactly `len` ASCII digits.
fn digits(s: &str, len: usize) -> Option<i64> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// 53 for the ISO week-numbering years that have a week 53 (a year that starts on a
/// Thursday, or a leap year that starts on a Wednesday), 52 for the others.
fn iso_weeks_in(year: i16) -> i8 {
    if ISOWeekDate::new(year, 53, Weekday::Monday).is_ok() {
        53
    } else {
        52
    }
}

fn check_year(year: i64) -> Result<(), PeriodError> {
    if (i64::from(MIN_YEAR)..=i64::from(MAX_YEAR)).contains(&year) {
        Ok(())
    } else {
        Err(PeriodError::YearOutOfRange(year))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_date_outside_the_calendar_is_refused_in_a_sentence() {
        let reason = |text: &str| Period::parse_any(text).unwrap_err().to_string();
        assert_eq!(
            reason("2026-13"),
            "\"2026-13\" is not a date in the calendar (months are 01 to 12)"
        );
        assert_eq!(
            reason("2026-00-10"),
            "\"2026-00-10\" is not a date in the calendar (months are 01 to 12)"
        );
        assert_eq!(
            reason("2026-02-29"),
            "\"2026-02-29\" is not a date in the calendar (2026-02 has 28 days)"
        );
        assert_eq!(
            reason("2028-02-30"),
            "\"2028-02-30\" is not a date in the calendar (2028-02 has 29 days)"
        );
        assert!(Period::parse_any("2028-02-29").is_ok());
    }

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_period_text_round_trips() {
        for text in [
            "2026-11-23",
            "2026-W48",
            "2026-11",
            "2026-Q4",
            "2020-W53",
            "2024-02-29",
        ] {
            assert_eq!(Period::parse_any(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn week_53_exists_only_in_long_iso_years() {
        assert!(Period::parse_any("2020-W53").is_ok());
        assert!(Period::parse_any("2026-W53").is_ok());
        let err = Period::parse_any("2025-W53").unwrap_err();
        assert_eq!(
            err.to_string(),
            "period \"2025-W53\": 2025 has 52 ISO weeks (W01 to W52)"
        );
        let err = Period::parse_any("2020-W00").unwrap_err();
        assert_eq!(
            err.to_string(),
            "period \"2020-W00\": 2020 has 53 ISO weeks (W01 to W53)"
        );
    }

    #[test]
    fn a_period_of_another_frequency_is_refused_with_an_example() {
        let err = Period::parse(Frequency::Daily, "2026-W48").unwrap_err();
        assert_eq!(
            err.to_string(),
            "period \"2026-W48\" is weekly, but the stream is daily (write it like 2026-11-23)"
        );
    }

    #[test]
    fn malformed_and_impossible_periods_are_refused() {
        for text in [
            "2026-13",
            "2026-02-30",
            "2026-Q5",
            "26-11",
            "2026-W7",
            "2026-11-23T00",
            "",
        ] {
            assert!(Period::parse_any(text).is_err(), "{text}");
        }
    }

    #[test]
    fn instants_are_placed_in_the_stream_time_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 23:30 UTC on 23 November is already 24 November in Paris.
        let p = Period::at(Frequency::Daily, ts("2026-11-23T23:30:00Z"), &paris).unwrap();
        assert_eq!(p.to_string(), "2026-11-24");
        let p = Period::at(Frequency::Daily, ts("2026-11-23T23:30:00Z"), &TimeZone::UTC).unwrap();
        assert_eq!(p.to_string(), "2026-11-23");
    }

    #[test]
    fn the_first_days_of_a_year_can_belong_to_week_53_of_the_previous_year() {
        let p = Period::at(
            Frequency::Weekly,
            ts("2021-01-03T12:00:00Z"),
            &TimeZone::UTC,
        )
        .unwrap();
        assert_eq!(p.to_string(), "2020-W53");
        assert_eq!(p.start().to_string(), "2020-12-28");
        let p = Period::at(
            Frequency::Weekly,
            ts("2021-01-04T00:00:00Z"),
            &TimeZone::UTC,
        )
        .unwrap();
        assert_eq!(p.to_string(), "2021-W01");
    }

    #[test]
    fn quarters_and_months_contain_their_days() {
        let d = Date::new(2026, 11, 23).unwrap();
        assert_eq!(
            Period::containing(Frequency::Quarterly, d)
                .unwrap()
                .to_string(),
            "2026-Q4"
        );
        assert_eq!(
            Period::containing(Frequency::Monthly, d)
                .unwrap()
                .to_string(),
            "2026-11"
        );
        assert_eq!(
            Period::containing(Frequency::Weekly, d)
                .unwrap()
                .to_string(),
            "2026-W48"
        );
    }

    #[test]
    fn back_counts_whole_periods_of_the_frequency() {
        let back = |text: &str, n| {
            Period::parse_any(text)
                .unwrap()
                .back(n)
                .unwrap()
                .to_string()
        };
        assert_eq!(back("2026-03-01", 1), "2026-02-28");
        assert_eq!(back("2026-W01", 2), "2025-W51");
        assert_eq!(back("2026-01", 12), "2025-01");
        assert_eq!(back("2026-Q1", 1), "2025-Q4");
        assert_eq!(back("2026-Q1", 0), "2026-Q1");
        assert!(Period::parse_any("1000-01").unwrap().back(1).is_none());
    }

    #[test]
    fn a_daily_stream_is_stale_once_two_days_are_missing() {
        let p = Period::parse_any("2026-11-20").unwrap();
        assert!(!p.is_stale_on(Date::new(2026, 11, 22).unwrap()));
        assert!(p.is_stale_on(Date::new(2026, 11, 23).unwrap()));
    }
}

/// Property tests: the parser never panics, valid periods round-trip through their
/// text, and a refusal stays short whatever text it was given.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn frequency() -> impl Strategy<Value = Frequency> {
        proptest::sample::select(Frequency::ALL.to_vec())
    }

    /// A day whose periods of every frequency lie in the supported years.
    fn date() -> impl Strategy<Value = Date> {
        (1001i16..=9997, 1i8..=12, 1i8..=28).prop_map(|(y, m, d)| Date::new(y, m, d).unwrap())
    }

    /// Text shaped like a period, valid or not: the parser's interesting cases.
    fn period_like() -> impl Strategy<Value = String> {
        "[0-9]{4}-(W[0-9]{2}|Q[0-9]|[0-9]{2}(-[0-9]{2})?)"
    }

    proptest! {
        #[test]
        fn any_text_is_parsed_or_refused_with_a_short_reason(text in any::<String>(), f in frequency()) {
            if let Err(e) = Period::parse(f, &text) {
                prop_assert!(e.to_string().len() <= 300, "{e}");
            }
        }

        #[test]
        fn a_long_text_is_refused_with_a_short_reason(text in "[0-9W\\-Q\u{1b}\u{202e}]{100,2000}") {
            let e = Period::parse_any(&text).unwrap_err();
            prop_assert!(e.to_string().len() <= 300, "{e}");
        }

        #[test]
        fn a_period_reads_back_from_its_text(f in frequency(), d in date()) {
            let period = Period::containing(f, d).unwrap();
            prop_assert_eq!(Period::parse(f, &period.to_string()), Ok(period));
            prop_assert!(period.start() <= d && d < period.end());
        }

        #[test]
        fn canonical_period_text_is_written_back_the_same(text in period_like()) {
            if let Ok(period) = Period::parse_any(&text) {
                prop_assert_eq!(period.to_string(), text);
            }
        }
    }
}
