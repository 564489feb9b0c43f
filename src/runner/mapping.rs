//! How one record becomes one datapoint: a connector's `[mapping]`, `[filter]` and
//! `[cursor]` compiled once per run. Values stay exact text from the record to the
//! server (JSON numbers are read as written, never through a float); a record that
//! cannot be mapped gets a reason naming its field.

use std::cmp::Ordering;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value as Json;

use super::Record;
use super::error::{CompileError, MapError};
use super::filter::{self, CompiledFilter};
use super::record::{FieldPath, plain_decimal};
use crate::connector::ConnectorDef;

/// When a datapoint is: a period in the stream's notation, an instant, or a local
/// date and time the runner places in the stream's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// The period as the record wrote it (`"2026-11"`, `"2026-W48"`); the server
    /// checks it against the stream's frequency.
    Period(String),
    /// An RFC 3339 timestamp with its offset.
    At(jiff::Timestamp),
    /// A date (`2026-03-01`, read as midnight) or a date and time without an offset.
    Local(jiff::civil::DateTime),
}

/// One record, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedPoint {
    /// When the point is.
    pub when: When,
    /// The value as exact decimal text (`"1234.50"`); the server checks it against
    /// the stream's value type. Empty when the connector counts records.
    pub value: String,
    /// The source record's id, or empty when the mapping names none or the record has
    /// none.
    pub external_id: String,
}

#[derive(Debug, Clone)]
enum WhenField {
    Period(FieldPath),
    Timestamp(FieldPath),
}

/// A connector's mapping, filter and cursor field, compiled.
#[derive(Debug, Clone)]
pub struct Mapper {
    when: WhenField,
    /// `None` when the connector counts records and reads no value.
    value: Option<FieldPath>,
    external_id: Option<FieldPath>,
    filter: Option<CompiledFilter>,
    cursor: Option<FieldPath>,
}

impl Mapper {
    /// Compiles the connector's field references; the reason names the connector
    /// field that cannot be used.
    pub fn new(def: &ConnectorDef) -> Result<Self, CompileError> {
        let m = &def.mapping;
        let field = |place: &str, text: &str| {
            FieldPath::parse(text).map_err(|error| CompileError::Field {
                place: place.to_owned(),
                error,
            })
        };
        let when = match (&m.period, &m.timestamp) {
            (Some(p), None) => WhenField::Period(field("mapping.period", p)?),
            (None, Some(t)) => WhenField::Timestamp(field("mapping.timestamp", t)?),
            _ => return Err(CompileError::When),
        };
        let cursor = def
            .cursor
            .as_ref()
            .map(|c| field("cursor.field", &c.field))
            .transpose()?;
        Ok(Self {
            when,
            value: match def.aggregate.as_ref() {
                Some(a) if !a.function.reads_value() => None,
                _ => {
                    let text = m.value.as_deref().ok_or(CompileError::NoValue)?;
                    Some(field("mapping.value", text)?)
                }
            },
            external_id: m
                .external_id
                .as_deref()
                .map(|id| field("mapping.external_id", id))
                .transpose()?,
            filter: def.filter.as_ref().map(filter::compile).transpose()?,
            cursor,
        })
    }

    /// Whether the record passes the connector's filter (every record does without
    /// one).
    pub fn keep(&self, record: &Record) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(record))
    }

    /// The datapoint `record` maps to, or why it maps to none ("field $.amount is
    /// missing").
    pub fn map(&self, record: &Record) -> Result<MappedPoint, MapError> {
        let when = match &self.when {
            WhenField::Period(path) => When::Period(period(path, required(path, record)?)?),
            WhenField::Timestamp(path) => timestamp(path, required(path, record)?)?,
        };
        let value = match &self.value {
            Some(path) => value(path, required(path, record)?)?,
            None => String::new(),
        };
        let external_id = match &self.external_id {
            Some(path) => external_id(path, path.get(record))?,
            None => String::new(),
        };
        Ok(MappedPoint {
            when,
            value,
            external_id,
        })
    }

    /// The record's cursor value as text; `None` without a `[cursor]` or when the
    /// record's field is missing or null.
    pub fn cursor(&self, record: &Record) -> Option<String> {
        match self.cursor.as_ref()?.get(record)? {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Orders two cursor values: both exact decimals → numerically; both RFC 3339
/// timestamps → by instant; otherwise as text.
pub fn cursor_cmp(a: &str, b: &str) -> Ordering {
    let decimal = |s: &str| Decimal::from_str(&plain_decimal(s)?).ok();
    if let (Some(a), Some(b)) = (decimal(a), decimal(b)) {
        return a.cmp(&b);
    }
    let instant = |s: &str| jiff::Timestamp::from_str(s).ok();
    if let (Some(a), Some(b)) = (instant(a), instant(b)) {
        return a.cmp(&b);
    }
    a.cmp(b)
}

/// The field's value, or "field … is missing" (null counts as missing).
fn required<'a>(path: &FieldPath, record: &'a Record) -> Result<&'a Json, MapError> {
    let field = || path.to_string();
    match path.get(record) {
        None => Err(MapError::Missing { field: field() }),
        Some(Json::Null) => Err(MapError::Null { field: field() }),
        Some(value) => Ok(value),
    }
}

/// The field holds something else than `what`.
fn wrong(path: &FieldPath, value: &Json, what: &'static str, hint: &'static str) -> MapError {
    MapError::Wrong {
        field: path.to_string(),
        found: describe(value),
        what,
        hint,
    }
}

fn empty(path: &FieldPath, what: &'static str) -> MapError {
    MapError::Empty {
        field: path.to_string(),
        what,
    }
}

fn period(path: &FieldPath, value: &Json) -> Result<String, MapError> {
    match value {
        Json::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Json::String(_) => Err(empty(path, "a period")),
        Json::Number(n) => Ok(n.to_string()),
        other => Err(wrong(path, other, "a period", "")),
    }
}

fn timestamp(path: &FieldPath, value: &Json) -> Result<When, MapError> {
    let not_a_timestamp = || {
        wrong(
            path,
            value,
            "a timestamp",
            ": write RFC 3339 text such as \"2026-03-01T09:30:00Z\", or a local \"2026-03-01\" or \"2026-03-01 09:30:00\"",
        )
    };
    let Json::String(text) = value else {
        return Err(not_a_timestamp());
    };
    let text = text.trim();
    if let Ok(at) = jiff::Timestamp::from_str(text) {
        return Ok(When::At(at));
    }
    // Civil parsing would accept an offset and drop it; only text without one is local.
    if !has_offset(text) {
        if let Ok(local) = jiff::civil::DateTime::from_str(text) {
            return Ok(When::Local(local));
        }
    }
    Err(not_a_timestamp())
}

/// Whether the time part of `text` ends with `Z` or a `+`/`-` offset.
fn has_offset(text: &str) -> bool {
    let time = text.get(10..).unwrap_or("");
    time.contains(['Z', 'z', '+', '-', '['])
}

fn value(path: &FieldPath, value: &Json) -> Result<String, MapError> {
    let text = match value {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.trim().to_owned(),
        other => return Err(wrong(path, other, "a number", "")),
    };
    if text.is_empty() {
        return Err(empty(path, "a number"));
    }
    plain_decimal(&text).ok_or_else(|| {
        wrong(
            path,
            value,
            "a number",
            " (write digits with an optional - and .)",
        )
    })
}

fn external_id(path: &FieldPath, value: Option<&Json>) -> Result<String, MapError> {
    match value {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(Json::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(wrong(path, other, "an id", " (a string or a number)")),
    }
}

/// A record value as a reason shows it: short, and quoted when it is text.
fn describe(value: &Json) -> String {
    match value {
        Json::String(s) if s.chars().count() > 40 => {
            format!("{:?}…", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("{s:?}"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use serde_json::json;

    fn def(kind: &str, extra: &str) -> ConnectorDef {
        let source = match kind {
            "rest" => "type = \"rest\"\nurl = \"https://example.com\"\nrecords = \"$[*]\"",
            _ => "type = \"command\"\nargv = [\"export\"]",
        };
        let text = format!(
            "name = \"t\"\ncredential_env = \"C\"\nschedule = \"@daily\"\n{extra}\n[source]\n{source}\n"
        );
        toml::from_str(&text).unwrap()
    }

    fn mapper(extra: &str) -> Mapper {
        Mapper::new(&def("command", extra)).unwrap()
    }

    fn parse(json: &str) -> Record {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let m = mapper("[mapping]\nperiod = \"month\"\nvalue = \"amount\"");
        for text in ["12345678901234567890.123456789", "0.1", "1234.50", "-7"] {
            let record = parse(&format!("{{\"month\": \"2026-03\", \"amount\": {text}}}"));
            assert_eq!(m.map(&record).unwrap().value, text);
        }
        let record = parse(r#"{"month": "2026-03", "amount": 1.5e-5}"#);
        assert_eq!(m.map(&record).unwrap().value, "0.000015");
        let record = json!({"month": " 2026-03 ", "amount": " 42.10 "});
        let point = m.map(&record).unwrap();
        assert_eq!(point.when, When::Period("2026-03".into()));
        assert_eq!(point.value, "42.10");
        assert_eq!(point.external_id, "");
    }

    #[test]
    fn a_period_may_be_a_number_and_ids_are_strings_or_numbers() {
        let m = mapper("[mapping]\nperiod = \"year\"\nvalue = \"v\"\nexternal_id = \"id\"");
        let point = m.map(&parse(
            r#"{"year": 2026, "v": 1, "id": 900719925474099312}"#,
        ));
        let point = point.unwrap();
        assert_eq!(point.when, When::Period("2026".into()));
        assert_eq!(point.external_id, "900719925474099312");
        let point = m
            .map(&json!({"year": "2026", "v": 1, "id": "inv-7"}))
            .unwrap();
        assert_eq!(point.external_id, "inv-7");
        assert_eq!(
            m.map(&json!({"year": "2026", "v": 1})).unwrap().external_id,
            ""
        );
        assert_eq!(
            m.map(&json!({"year": "2026", "v": 1, "id": true}))
                .unwrap_err()
                .to_string(),
            "field id is true, not an id (a string or a number)"
        );
    }

    #[test]
    fn timestamps_with_an_offset_are_instants_and_without_one_are_local() {
        let m = Mapper::new(&def(
            "rest",
            "[mapping]\ntimestamp = \"$.at\"\nvalue = \"$.v\"",
        ))
        .unwrap();
        let when = |at: Json| {
            m.map(&json!({"at": at, "v": 1}))
                .map(|p| p.when)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            when(json!("2026-03-01T09:30:00+02:00")).unwrap(),
            When::At("2026-03-01T07:30:00Z".parse().unwrap())
        );
        assert_eq!(
            when(json!("2026-03-01T07:30:00Z")).unwrap(),
            When::At("2026-03-01T07:30:00Z".parse().unwrap())
        );
        assert_eq!(
            when(json!("2026-03-01")).unwrap(),
            When::Local(date(2026, 3, 1).at(0, 0, 0, 0))
        );
        assert_eq!(
            when(json!("2026-03-01T09:30:00")).unwrap(),
            When::Local(date(2026, 3, 1).at(9, 30, 0, 0))
        );
        assert_eq!(
            when(json!("2026-03-01 09:30:00")).unwrap(),
            When::Local(date(2026, 3, 1).at(9, 30, 0, 0))
        );
        let err = when(json!(1772350200)).unwrap_err();
        assert!(
            err.starts_with("field $.at is 1772350200, not a timestamp"),
            "{err}"
        );
        let err = when(json!("yesterday")).unwrap_err();
        assert!(
            err.starts_with("field $.at is \"yesterday\", not a timestamp"),
            "{err}"
        );
    }

    #[test]
    fn a_record_that_cannot_be_mapped_gets_a_reason_naming_its_field() {
        let m = Mapper::new(&def(
            "rest",
            "[mapping]\nperiod = \"$.month\"\nvalue = \"$.amount\"",
        ))
        .unwrap();
        let reason = |record: Json| m.map(&record).unwrap_err().to_string();
        assert_eq!(
            reason(json!({"month": "2026-03"})),
            "field $.amount is missing"
        );
        assert_eq!(
            reason(json!({"month": "2026-03", "amount": null})),
            "field $.amount is null"
        );
        assert_eq!(reason(json!({"amount": 1})), "field $.month is missing");
        assert_eq!(
            reason(json!({"month": "2026-03", "amount": true})),
            "field $.amount is true, not a number"
        );
        assert_eq!(
            reason(json!({"month": "2026-03", "amount": {"eur": 1}})),
            "field $.amount is an object, not a number"
        );
        assert_eq!(
            reason(json!({"month": "2026-03", "amount": "1,234.50"})),
            "field $.amount is \"1,234.50\", not a number (write digits with an optional - and .)"
        );
        assert_eq!(
            reason(json!({"month": "2026-03", "amount": "  "})),
            "field $.amount is empty, not a number"
        );
        assert_eq!(
            reason(json!({"month": ["2026-03"], "amount": 1})),
            "field $.month is a list, not a period"
        );
    }

    #[test]
    fn keep_applies_the_filter_and_cursor_reads_the_cursor_field() {
        let m = mapper(
            "[filter]\nconditions = [{ field = \"status\", equals = \"paid\" }]\n\
             [cursor]\nfield = \"id\"\n\
             [mapping]\nperiod = \"month\"\nvalue = \"amount\"",
        );
        assert!(m.keep(&json!({"status": "paid"})));
        assert!(!m.keep(&json!({"status": "open"})));
        assert_eq!(m.cursor(&json!({"id": 41})).as_deref(), Some("41"));
        assert_eq!(m.cursor(&json!({"id": "a7"})).as_deref(), Some("a7"));
        assert_eq!(m.cursor(&json!({"id": null})), None);
        assert_eq!(m.cursor(&json!({})), None);

        let plain = mapper("[mapping]\nperiod = \"month\"\nvalue = \"amount\"");
        assert!(plain.keep(&json!({})));
        assert_eq!(plain.cursor(&json!({"id": 1})), None);
    }

    #[test]
    fn a_definition_that_cannot_be_compiled_names_its_field() {
        let err = Mapper::new(&def(
            "rest",
            "[mapping]\nperiod = \"$.month\"\nvalue = \"$.amount[\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("mapping.value: \"$.amount[\""), "{err}");
    }

    #[test]
    fn cursors_compare_as_numbers_then_instants_then_text() {
        assert_eq!(cursor_cmp("9", "10"), Ordering::Less);
        assert_eq!(cursor_cmp("10.50", "10.5"), Ordering::Equal);
        assert_eq!(cursor_cmp("-2", "1"), Ordering::Less);
        assert_eq!(
            cursor_cmp("2026-03-01T10:00:00+02:00", "2026-03-01T09:00:00Z"),
            Ordering::Less
        );
        assert_eq!(
            cursor_cmp("2026-03-01T11:00:00+02:00", "2026-03-01T09:00:00Z"),
            Ordering::Equal
        );
        assert_eq!(cursor_cmp("b-9", "b-10"), Ordering::Greater);
        assert_eq!(cursor_cmp("2026-03-01", "2026-02-28"), Ordering::Greater);
        assert_eq!(cursor_cmp("9", "a"), Ordering::Less);
    }
}
