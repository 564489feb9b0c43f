//! The schedule, time zone and duration values of a connector file, each checked as it
//! is read so a bad value is reported with its line.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A standard 5-field cron expression (`minute hour day-of-month month day-of-week`) or
/// one of `@hourly`, `@daily`, `@weekly`, `@monthly`.
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
        let fields: Vec<&str> = five.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{text:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week), it has {} fields",
                fields.len()
            ));
        }
        let days = weekday_names(fields[4]);
        let six = format!(
            "0 {} {} {} {} {days}",
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
