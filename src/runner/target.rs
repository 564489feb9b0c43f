//! The stream a connector publishes to, and the source it pulls from: the stream's
//! frequency and time zone as the server describes them for the credential
//! [`super::local`] read, the templates' values for a run, and the source opened for it.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::error::{MapError, TargetError};
use super::local::SourceInputs;
use super::mapping::{MappedPoint, When};
use super::rest::RestContext;
use super::run::{Job, RunEnv};
use super::template::TemplateContext;
use super::{FetchError, Source, command, rest, sql};
use crate::client::Client;
use crate::connector::{ConnectorDef, Lookback};
use crate::period::{Frequency, Period};
use crate::signature::Credential;

/// The stream a connector publishes to, as the server describes it.
pub struct Target {
    /// The connector's credential for it.
    pub credential: Credential,
    /// Its id.
    pub stream_id: String,
    /// Where its records fall in time.
    pub calendar: Calendar,
}

/// A stream's frequency and time zone: what places a record in a period.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The stream's frequency.
    pub frequency: Frequency,
    /// Its time zone, where local times and timestamps are placed.
    pub tz: TimeZone,
}

impl Target {
    /// Asks the server for the stream of the connector's `credential`.
    pub async fn resolve(client: &Client, credential: Credential) -> Result<Self, TargetError> {
        let stream_id = credential.stream_id().to_string();
        let stream = client
            .stream(&stream_id)
            .await
            .map_err(|s| TargetError::Unreadable {
                stream: stream_id.clone(),
                message: s.message().to_owned(),
                transient: matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Aborted
                ),
            })?
            .stream
            .ok_or(TargetError::NoStream)?;
        let frequency = crate::wire::frequency(stream.frequency)
            .ok()
            .flatten()
            .ok_or(TargetError::UnknownFrequency)?;
        let tz = TimeZone::get(&stream.time_zone)
            .map_err(|_| TargetError::UnknownZone(stream.time_zone.clone()))?;
        Ok(Self {
            credential,
            stream_id,
            calendar: Calendar { frequency, tz },
        })
    }
}

impl Calendar {
    /// Whether records fall in the same periods on both calendars.
    pub fn same_as(&self, other: &Calendar) -> bool {
        self.frequency == other.frequency && self.tz.iana_name() == other.tz.iana_name()
    }

    /// The templates' values for a run of `slot` starting from `cursor`: the period is
    /// the stream period the slot falls in.
    pub fn template_context(
        &self,
        slot: Timestamp,
        cursor: Option<String>,
    ) -> Result<TemplateContext, TargetError> {
        let period = Period::at(self.frequency, slot, &self.tz).map_err(calendar)?;
        Ok(TemplateContext {
            cursor,
            period_start: midnight(period.start(), &self.tz)?,
            period_end: midnight(period.end(), &self.tz)?,
            now: slot,
        })
    }

    /// Where a run's pull starts: the stored `cursor`, moved back by the connector's
    /// `lookback` and, when it aggregates, to the first instant of its period, so that a
    /// run re-reads whole periods. Written as the cursor was (an RFC 3339 instant in
    /// UTC, a date, or a local date and time with the same separator), so the source
    /// compares it as it compared the cursor. `None` (no cursor yet) pulls everything.
    pub fn window_start(
        &self,
        def: &ConnectorDef,
        cursor: Option<String>,
    ) -> Result<Option<String>, TargetError> {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        if def.lookback.is_none() && def.aggregate.is_none() {
            return Ok(Some(cursor));
        }
        let (at, style) = CursorTime::parse(&cursor, &self.tz)
            .ok_or_else(|| TargetError::CursorNotATime(cursor.clone()))?;
        let mut start = match &def.lookback {
            None => at,
            Some(Lookback::Span(span)) => {
                at.checked_sub(*span).map_err(|e| TargetError::Lookback {
                    cursor: cursor.clone(),
                    reason: e.to_string(),
                })?
            }
            Some(Lookback::Periods(n)) => {
                let mut period =
                    Period::at(self.frequency, at.timestamp(), &self.tz).map_err(calendar)?;
                for _ in 0..*n {
                    let before = period.start().yesterday().map_err(calendar)?;
                    period = Period::containing(self.frequency, before).map_err(calendar)?;
                }
                zoned_midnight(period.start(), &self.tz)?
            }
        };
        if def.aggregate.is_some() {
            let period =
                Period::at(self.frequency, start.timestamp(), &self.tz).map_err(calendar)?;
            start = zoned_midnight(period.start(), &self.tz)?;
        }
        Ok(Some(style.write(&start)))
    }

    /// Where a backfill from `from` pulls: the period's first instant, written as the
    /// connector's cursor is (the stored one, else `cursor.initial`; an RFC 3339 instant
    /// when there is neither). `None` for a connector without a cursor: it pulls
    /// everything, and the run keeps the range's periods.
    pub fn backfill_start(
        &self,
        def: &ConnectorDef,
        cursor: Option<String>,
        from: &Period,
    ) -> Result<Option<String>, TargetError> {
        let Some(declared) = &def.cursor else {
            return Ok(None);
        };
        let style = match cursor.or_else(|| declared.initial.clone()) {
            Some(c) => match CursorTime::parse(&c, &self.tz) {
                Some((_, style)) => style,
                None => return Err(TargetError::CursorNotATime(c)),
            },
            None => CursorTime::Instant {
                offset: None,
                separator: 'T',
            },
        };
        Ok(Some(style.write(&zoned_midnight(from.start(), &self.tz)?)))
    }

    /// The stream period a mapped point falls in, as text.
    pub fn period_of(&self, point: &MappedPoint) -> Result<String, MapError> {
        let at = match &point.when {
            When::Period(text) => {
                return Period::parse(self.frequency, text)
                    .map(|p| p.to_string())
                    .map_err(|e| MapError::Period(e.to_string()));
            }
            When::At(at) => *at,
            When::Local(local) => self
                .tz
                .to_ambiguous_zoned(*local)
                .compatible()
                .map_err(|e| MapError::Period(e.to_string()))?
                .timestamp(),
        };
        Period::at(self.frequency, at, &self.tz)
            .map(|p| p.to_string())
            .map_err(|e| MapError::Period(e.to_string()))
    }
}

/// Opens the connector's source for one run, with what [`LocalInputs::read`] read.
///
/// [`LocalInputs::read`]: super::local::LocalInputs::read
pub(super) async fn open_source(
    env: &RunEnv,
    job: &Job,
    inputs: SourceInputs<'_>,
    ctx: &TemplateContext,
) -> Result<Box<dyn Source>, FetchError> {
    open_source_with(&env.rest, job, inputs, ctx).await
}

/// Opens the connector's source for one run (also used by `connector preview`).
pub async fn open_source_with(
    rest_context: &RestContext,
    job: &Job,
    inputs: SourceInputs<'_>,
    ctx: &TemplateContext,
) -> Result<Box<dyn Source>, FetchError> {
    let def = &job.def;
    Ok(match inputs {
        SourceInputs::Rest(source, inputs) => {
            Box::new(rest::open(rest_context, source, inputs, ctx, &def.retry)?)
        }
        SourceInputs::Sql(source, database) => {
            Box::new(sql::open(&database, source, ctx, &def.retry).await?)
        }
        SourceInputs::Command(source) => {
            let hidden: Vec<&str> = def.credential_env.as_deref().into_iter().collect();
            Box::new(command::open(source, ctx, &hidden).await?)
        }
    })
}

/// The stream a definition publishes to, for alerts and listings: its id when the
/// credential can be read, else where the credential comes from.
pub fn stream_label(def: &ConnectorDef) -> String {
    match super::local::load_credential(def) {
        Ok(c) => c.stream_id().to_string(),
        Err(_) => match (&def.credential_env, &def.credential_file) {
            (Some(var), _) => format!("(credential in ${var})"),
            (_, Some(file)) => format!("(credential in {})", file.display()),
            _ => "?".into(),
        },
    }
}

/// A period or an instant out of the calendar's range.
fn calendar(e: impl std::fmt::Display) -> TargetError {
    TargetError::Calendar(e.to_string())
}

fn midnight(date: jiff::civil::Date, tz: &TimeZone) -> Result<Timestamp, TargetError> {
    zoned_midnight(date, tz).map(|z| z.timestamp())
}

fn zoned_midnight(date: jiff::civil::Date, tz: &TimeZone) -> Result<Zoned, TargetError> {
    date.to_zoned(tz.clone()).map_err(calendar)
}

/// How a time cursor is written, so that a window start is written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorTime {
    /// An instant: written at the cursor's offset (`None`: `Z`, UTC) with the cursor's
    /// date-time separator, so text comparisons in the source still order it right.
    Instant {
        offset: Option<jiff::tz::Offset>,
        separator: char,
    },
    /// A date without a time.
    Date,
    /// A local date and time without an offset, in the stream's time zone.
    Local { separator: char },
}

impl CursorTime {
    /// The time a cursor holds, seen in `tz`, with how it is written; `None` when it is
    /// not a time.
    fn parse(text: &str, tz: &TimeZone) -> Option<(Zoned, Self)> {
        let separator = match text.as_bytes().get(10) {
            Some(b' ') => ' ',
            _ => 'T',
        };
        if let Ok(at) = text.parse::<Timestamp>() {
            let offset = match text.ends_with(['Z', 'z']) {
                true => None,
                false => Some(trailing_offset(text)?),
            };
            return Some((at.to_zoned(tz.clone()), Self::Instant { offset, separator }));
        }
        if text.len() == 10 {
            let date = text.parse::<jiff::civil::Date>().ok()?;
            return Some((date.to_zoned(tz.clone()).ok()?, Self::Date));
        }
        let local = text.parse::<jiff::civil::DateTime>().ok()?;
        let zoned = tz.to_ambiguous_zoned(local).compatible().ok()?;
        Some((zoned, Self::Local { separator }))
    }

    /// `at` written this way, to the second (a fraction is dropped, which only moves a
    /// window's start earlier).
    fn write(self, at: &Zoned) -> String {
        match self {
            Self::Instant {
                offset: None,
                separator,
            } => {
                let utc = at.timestamp().to_zoned(TimeZone::UTC);
                format!("{}Z", utc.strftime(&format!("%Y-%m-%d{separator}%H:%M:%S")))
            }
            Self::Instant {
                offset: Some(offset),
                separator,
            } => at
                .timestamp()
                .to_zoned(TimeZone::fixed(offset))
                .strftime(&format!("%Y-%m-%d{separator}%H:%M:%S%:z"))
                .to_string(),
            Self::Date => at.strftime("%Y-%m-%d").to_string(),
            Self::Local { separator } => at
                .strftime(&format!("%Y-%m-%d{separator}%H:%M:%S"))
                .to_string(),
        }
    }
}

/// The `±HH:MM` (or `±HHMM`) offset that ends an RFC 3339 instant.
fn trailing_offset(text: &str) -> Option<jiff::tz::Offset> {
    let sign_at = text.rfind(['+', '-']).filter(|&i| i > 10)?;
    let digits: String = text[sign_at + 1..]
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let (hours, minutes) = digits.split_at_checked(2)?;
    let seconds = hours.parse::<i32>().ok()? * 3_600 + minutes.parse::<i32>().unwrap_or(0) * 60;
    let seconds = if text[sign_at..].starts_with('-') {
        -seconds
    } else {
        seconds
    };
    jiff::tz::Offset::from_seconds(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(frequency: Frequency, tz: &str) -> Calendar {
        Calendar {
            frequency,
            tz: TimeZone::get(tz).unwrap(),
        }
    }

    fn def(extra: &str) -> ConnectorDef {
        toml::from_str(&format!(
            "name = \"c\"\ncredential_env = \"C\"\nschedule = \"@daily\"\n{extra}\n\
             [cursor]\nfield = \"t\"\n[mapping]\ntimestamp = \"t\"\n\
             [source]\ntype = \"sql\"\nurl = \"sqlite://x.db\"\nquery = \"SELECT 1\"\n"
        ))
        .unwrap()
    }

    fn window(t: &Calendar, extra: &str, cursor: &str) -> Result<Option<String>, TargetError> {
        t.window_start(&def(extra), Some(cursor.to_owned()))
    }

    #[test]
    fn a_window_is_written_as_the_cursor_was() {
        let daily = target(Frequency::Daily, "UTC");
        let cases = [
            (
                "lookback = \"7d\"",
                "2026-03-10T12:30:05.25Z",
                "2026-03-03T12:30:05Z",
            ),
            (
                "lookback = \"7d\"",
                "2026-03-10 12:30:05",
                "2026-03-03 12:30:05",
            ),
            ("lookback = \"7d\"", "2026-03-10", "2026-03-03"),
            (
                "lookback = \"48h\"",
                "2026-03-10T01:00:00+02:00",
                "2026-03-08T01:00:00+02:00",
            ),
            (
                "lookback = \"7d\"",
                "2026-03-10T01:00:00-05:00",
                "2026-03-03T01:00:00-05:00",
            ),
            ("", "2026-03-10T12:30:05Z", "2026-03-10T12:30:05Z"),
        ];
        for (extra, cursor, expected) in cases {
            assert_eq!(
                window(&daily, extra, cursor).unwrap().as_deref(),
                Some(expected),
                "{extra} {cursor}"
            );
        }
    }

    #[test]
    fn aggregation_starts_the_window_at_its_periods_first_instant_in_the_streams_zone() {
        let monthly = target(Frequency::Monthly, "Europe/Paris");
        let aggregate = "[aggregate]\nfunction = \"count\"";
        // 2026-03-01 00:00 in Paris is 2026-02-28 23:00 UTC.
        assert_eq!(
            window(&monthly, aggregate, "2026-03-20T10:00:00Z")
                .unwrap()
                .as_deref(),
            Some("2026-02-28T23:00:00Z")
        );
        assert_eq!(
            window(
                &monthly,
                &format!("lookback = 2\n{aggregate}"),
                "2026-03-20 10:00:00"
            )
            .unwrap()
            .as_deref(),
            Some("2026-01-01 00:00:00"),
            "two months before March"
        );
        let weekly = target(Frequency::Weekly, "UTC");
        assert_eq!(
            window(&weekly, "lookback = 1", "2026-03-12")
                .unwrap()
                .as_deref(),
            Some("2026-03-02"),
            "the Monday of the week before"
        );
    }

    #[test]
    fn a_cursor_that_is_not_a_time_is_refused_with_a_reason() {
        let daily = target(Frequency::Daily, "UTC");
        let err = window(&daily, "lookback = \"7d\"", "12345").unwrap_err();
        assert_eq!(err, TargetError::CursorNotATime("12345".into()));
        assert!(
            err.to_string().contains("pull whole periods again"),
            "{err}"
        );
        assert_eq!(
            window(&daily, "", "12345").unwrap().as_deref(),
            Some("12345")
        );
        assert_eq!(
            daily.window_start(&def("lookback = 3"), None).unwrap(),
            None
        );
    }
}
