//! The schedule, time zone and duration values of a connector file, each checked as it
//! is read so a bad value is reported with its line.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A standard 5-field cron expression (`minute hour day-of-month month day-of-week`) or
/// one of `@hourly`, `@daily`, `@weekly`, `@monthly`. A 6-field expression whose first
/// field is the second (`*/10 * * * * *`) is accepted too, for sources polled more often
/// than once a minute.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Schedule {
    text: String,
    cron: cron::Schedule,
}

impl Schedule {
    /// The expression as written in the file.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed schedule (seconds field fixed at 0), for computing fire times.
    pub fn cron(&self) -> &cron::Schedule {
        &self.cron
    }

    /// The first fire time strictly after `after`, with the expression read as wall-clock
    /// time in `tz`. A time skipped by a daylight-saving change fires at the same
    /// distance after the change (02:30 becomes 03:30); a time that occurs twice fires
    /// once, at its first occurrence.
    pub fn next_after(
        &self,
        after: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Option<jiff::Timestamp> {
        let civil = after.to_zoned(tz.clone()).datetime();
        // The cron crate counts in chrono's types: walk the wall clock as if it were UTC.
        let start = chrono::NaiveDate::from_ymd_opt(
            i32::from(civil.year()),
            u32::try_from(civil.month()).ok()?,
            u32::try_from(civil.day()).ok()?,
        )?
        .and_hms_opt(
            u32::try_from(civil.hour()).ok()?,
            u32::try_from(civil.minute()).ok()?,
            u32::try_from(civil.second()).ok()?,
        )?
        .and_utc()
            // A fold can put the next instant up to the fold's length behind the wall clock.
            - chrono::Duration::hours(2);
        self.cron.after(&start).take(20_000).find_map(|fire| {
            let wall = jiff::civil::DateTime::new(
                i16::try_from(chrono::Datelike::year(&fire)).ok()?,
                i8::try_from(chrono::Datelike::month(&fire)).ok()?,
                i8::try_from(chrono::Datelike::day(&fire)).ok()?,
                i8::try_from(chrono::Timelike::hour(&fire)).ok()?,
                i8::try_from(chrono::Timelike::minute(&fire)).ok()?,
                i8::try_from(chrono::Timelike::second(&fire)).ok()?,
                0,
            )
            .ok()?;
            let at = tz.to_ambiguous_zoned(wall).compatible().ok()?.timestamp();
            (at > after).then_some(at)
        })
    }

    /// The last fire time at or before `at` within the previous `horizon`, if any.
    pub fn last_at_or_before(
        &self,
        at: jiff::Timestamp,
        horizon: jiff::SignedDuration,
        tz: &jiff::tz::TimeZone,
    ) -> Option<jiff::Timestamp> {
        let mut cursor = at.checked_sub(horizon).ok()?;
        let mut last = None;
        while let Some(next) = self.next_after(cursor, tz) {
            if next > at {
                break;
            }
            last = Some(next);
            cursor = next;
        }
        last
    }

    /// A short description for people: "every day at 06:00", or the expression itself.
    pub fn describe(&self) -> String {
        match self.text.as_str() {
            "@hourly" => return "every hour".into(),
            "@daily" => return "every day at 00:00".into(),
            "@weekly" => return "every Sunday at 00:00".into(),
            "@monthly" => return "on the 1st of every month at 00:00".into(),
            _ => {}
        }
        let fields: Vec<&str> = self.text.split_whitespace().collect();
        if fields.len() == 6 {
            return format!("cron \"{}\"", self.text);
        }
        let (Ok(minute), Ok(hour)) = (fields[0].parse::<u8>(), fields[1].parse::<u8>()) else {
            return format!("cron \"{}\"", self.text);
        };
        let at = format!("{hour:02}:{minute:02}");
        match (fields[2], fields[3], fields[4]) {
            ("*", "*", "*") => format!("every day at {at}"),
            ("*", "*", "1-5") => format!("every weekday at {at}"),
            ("1", "*", "*") => format!("on the 1st of every month at {at}"),
            _ => format!("cron \"{}\" (first at {at})", self.text),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl TryFrom<String> for Schedule {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let five = match text.trim() {
            "@hourly" => "0 * * * *".to_owned(),
            "@daily" => "0 0 * * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            other if other.starts_with('@') => {
                return Err(format!(
                    "{other:?} is not a schedule: the shorthands are @hourly, @daily, @weekly and @monthly"
                ));
            }
            other => other.to_owned(),
        };
        let mut fields: Vec<&str> = five.split_whitespace().collect();
        let second = match fields.len() {
            5 => "0",
            6 => fields.remove(0),
            n => {
                return Err(format!(
                    "{text:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week), it has {n} fields"
                ));
            }
        };
        let days = weekday_names(fields[4]);
        let six = format!(
            "{second} {} {} {} {} {days}",
            fields[0], fields[1], fields[2], fields[3]
        );
        let cron = cron::Schedule::from_str(&six)
            .map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))?;
        Ok(Self {
            text: text.trim().to_owned(),
            cron,
        })
    }
}

/// Standard cron numbers days 0-7 from Sunday (0 and 7 both Sunday) and the `cron`
/// crate numbers them 1-7 from Sunday, so `1` would silently mean a different day:
/// numbers are turned into names, which both read the same way.
fn weekday_names(field: &str) -> String {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let name = |part: &str| match part.parse::<usize>() {
        Ok(n) if n < NAMES.len() => NAMES[n].to_owned(),
        _ => part.to_owned(),
    };
    let items: Vec<String> = field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let range = match range.split_once('-') {
                // A range ending on Sunday as 7 (`5-7`) is Friday to Saturday plus Sunday.
                Some((a, "7")) if step.is_none() && a != "0" && a != "7" => {
                    format!("{}-SAT,SUN", name(a))
                }
                Some((a, b)) => format!("{}-{}", name(a), name(b)),
                None => name(range),
            };
            match step {
                Some(s) => format!("{range}/{s}"),
                None => range,
            }
        })
        .collect();
    items.join(",")
}

/// An IANA time zone name such as `Europe/Paris` or `UTC`.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct TimeZoneName {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl TimeZoneName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The zone, from the bundled time zone database.
    pub fn tz(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }
}

impl Default for TimeZoneName {
    fn default() -> Self {
        Self {
            name: "UTC".into(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }
}

impl fmt::Debug for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZoneName({:?})", self.name)
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let tz = jiff::tz::TimeZone::get(&name).map_err(|_| {
            format!("{name:?} is not an IANA time zone name (write for example \"Europe/Paris\" or \"UTC\")")
        })?;
        Ok(Self { name, tz })
    }
}

/// A positive duration written as text: `"30s"`, `"5m"`, `"1h 30m"`, `"500ms"` (jiff's
/// friendly format; ISO 8601 `"PT30S"` is accepted too). Bare numbers are refused, so a
/// file never leaves the unit to guesswork.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }
}

impl TryFrom<String> for Duration {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let signed = jiff::SignedDuration::from_str(&text).map_err(|_| {
            format!("{text:?} is not a duration: write for example \"30s\", \"5m\" or \"1h 30m\"")
        })?;
        match std::time::Duration::try_from(signed) {
            Ok(d) if !d.is_zero() => Ok(Self(d)),
            _ => Err(format!("{text:?} is not a positive duration")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_and_shorthand_schedules_are_accepted_and_described() {
        let daily = Schedule::try_from("0 6 * * *".to_owned()).unwrap();
        assert_eq!(daily.describe(), "every day at 06:00");
        assert_eq!(
            Schedule::try_from("@hourly".to_owned()).unwrap().describe(),
            "every hour"
        );
        assert!(Schedule::try_from("30 7 * * 1-5".to_owned()).is_ok());
        assert!(Schedule::try_from("0 0 * * 0,7".to_owned()).is_ok());
        assert!(Schedule::try_from("0 0 * * 5-7".to_owned()).is_ok());
    }

    #[test]
    fn fire_times_follow_the_wall_clock_of_the_time_zone() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let daily = Schedule::try_from("0 6 * * *".to_owned()).unwrap();
        let at: jiff::Timestamp = "2026-11-23T05:30:00Z".parse().unwrap();
        // 06:00 in Paris is 05:00 UTC in winter: the next one is tomorrow's.
        assert_eq!(
            daily.next_after(at, &paris).unwrap().to_string(),
            "2026-11-24T05:00:00Z"
        );
        // 02:30 does not exist on 2026-03-29 in Paris; it fires at 03:30 local.
        let night = Schedule::try_from("30 2 * * *".to_owned()).unwrap();
        let before: jiff::Timestamp = "2026-03-28T12:00:00Z".parse().unwrap();
        assert_eq!(
            night.next_after(before, &paris).unwrap().to_string(),
            "2026-03-29T01:30:00Z"
        );
        // 02:30 happens twice on 2026-10-25: it fires once.
        let fold: jiff::Timestamp = "2026-10-24T12:00:00Z".parse().unwrap();
        let first = night.next_after(fold, &paris).unwrap();
        assert_eq!(first.to_string(), "2026-10-25T00:30:00Z");
        assert_eq!(
            night.next_after(first, &paris).unwrap().to_string(),
            "2026-10-26T01:30:00Z"
        );
        let every_second = Schedule::try_from("* * * * * *".to_owned()).unwrap();
        assert_eq!(
            every_second
                .next_after(at, &jiff::tz::TimeZone::UTC)
                .unwrap()
                .to_string(),
            "2026-11-23T05:30:01Z"
        );
        assert_eq!(
            daily
                .last_at_or_before(at, jiff::SignedDuration::from_hours(48), &paris)
                .unwrap()
                .to_string(),
            "2026-11-23T05:00:00Z"
        );
    }

    #[test]
    fn monday_is_day_one_as_in_standard_cron() {
        assert_eq!(weekday_names("1"), "MON");
        assert_eq!(weekday_names("0,7"), "SUN,SUN");
        assert_eq!(weekday_names("1-5"), "MON-FRI");
        assert_eq!(weekday_names("5-7"), "FRI-SAT,SUN");
        assert_eq!(weekday_names("*/2"), "*/2");
    }

    #[test]
    fn a_bad_schedule_says_what_is_wrong() {
        let e = Schedule::try_from("0 6 * *".to_owned()).unwrap_err();
        assert!(e.contains("5-field"), "{e}");
        assert!(Schedule::try_from("0 25 * * *".to_owned()).is_err());
        assert!(Schedule::try_from("@yearly".to_owned()).is_err());
    }

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        assert_eq!(
            Duration::try_from("30s".to_owned()).unwrap(),
            Duration::secs(30)
        );
        assert_eq!(
            Duration::try_from("1h 30m".to_owned()).unwrap(),
            Duration::secs(5400)
        );
        assert!(Duration::try_from("30".to_owned()).is_err());
        assert!(Duration::try_from("0s".to_owned()).is_err());
    }

    #[test]
    fn time_zones_come_from_the_iana_database() {
        assert!(TimeZoneName::try_from("Europe/Paris".to_owned()).is_ok());
        assert!(TimeZoneName::try_from("Europe/Pariss".to_owned()).is_err());
    }
}
