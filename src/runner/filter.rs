//! A connector's `[filter]`, compiled once per run and applied to every record before
//! it is mapped. Values from the TOML file are compared with JSON values the way a
//! user reads them: `"paid"` equals the JSON string `"paid"`, `5` equals `5` and `5.0`
//! (numbers are exact decimals, never floats), and a number condition compares
//! numerically with a string holding a number (CSV fields are always strings).

use std::cmp::Ordering;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value as Json;

use super::Record;
use super::error::{CompileError, ConditionError};
use super::record::{FieldPath, decimal_of};
use crate::connector::{self, Condition, Match};

/// A filter ready to test records.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    match_: Match,
    conditions: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    field: FieldPath,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Expected),
    NotEquals(Expected),
    Contains(String),
    Greater(Expected),
    Less(Expected),
    Exists(bool),
}

/// A TOML value a field is compared with.
#[derive(Debug, Clone)]
enum Expected {
    Text(String),
    Number(Decimal),
    Bool(bool),
}

/// Compiles a connector's filter; the reason names the condition that cannot be used.
pub fn compile(filter: &connector::Filter) -> Result<CompiledFilter, CompileError> {
    let conditions = filter
        .conditions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            compile_condition(c).map_err(|error| CompileError::Condition {
                place: format!("filter.conditions[{i}]"),
                error,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(CompiledFilter {
        match_: filter.match_,
        conditions,
    })
}

fn compile_condition(c: &Condition) -> Result<Compiled, ConditionError> {
    let field = FieldPath::parse(&c.field)?;
    let test = match (
        &c.equals,
        &c.not_equals,
        &c.contains,
        &c.gt,
        &c.lt,
        c.exists,
    ) {
        (Some(v), None, None, None, None, None) => Test::Equals(expected(v)?),
        (None, Some(v), None, None, None, None) => Test::NotEquals(expected(v)?),
        (None, None, Some(s), None, None, None) => Test::Contains(s.clone()),
        (None, None, None, Some(v), None, None) => Test::Greater(bound(v, "gt")?),
        (None, None, None, None, Some(v), None) => Test::Less(bound(v, "lt")?),
        (None, None, None, None, None, Some(b)) => Test::Exists(b),
        _ => return Err(ConditionError::Operators),
    };
    Ok(Compiled { field, test })
}

fn expected(value: &toml::Value) -> Result<Expected, ConditionError> {
    match value {
        toml::Value::String(s) => Ok(Expected::Text(s.clone())),
        toml::Value::Integer(i) => Ok(Expected::Number(Decimal::from(*i))),
        // The shortest text that reads back as the same float is what the user wrote
        // (`0.1`), so the decimal is the one they meant.
        toml::Value::Float(f) => Decimal::from_str(&f.to_string())
            .map(Expected::Number)
            .map_err(|_| ConditionError::NotANumber(f.to_string())),
        toml::Value::Boolean(b) => Ok(Expected::Bool(*b)),
        toml::Value::Datetime(d) => Ok(Expected::Text(d.to_string())),
        toml::Value::Array(_) | toml::Value::Table(_) => Err(ConditionError::NotComparable),
    }
}

fn bound(value: &toml::Value, op: &'static str) -> Result<Expected, ConditionError> {
    match expected(value)? {
        Expected::Bool(_) => Err(ConditionError::BooleanBound(op)),
        other => Ok(other),
    }
}

impl CompiledFilter {
    /// Whether `record` passes: every condition holds (`match = "all"`) or at least
    /// one does (`match = "any"`).
    pub fn matches(&self, record: &Record) -> bool {
        let mut results = self.conditions.iter().map(|c| c.holds(record));
        match self.match_ {
            Match::All => results.all(|r| r),
            Match::Any => results.any(|r| r),
        }
    }
}

impl Compiled {
    fn holds(&self, record: &Record) -> bool {
        let value = self.field.get(record).filter(|v| !v.is_null());
        match (&self.test, value) {
            (Test::Exists(wanted), v) => v.is_some() == *wanted,
            (Test::NotEquals(e), v) => !v.is_some_and(|v| equals(v, e)),
            (_, None) => false,
            (Test::Equals(e), Some(v)) => equals(v, e),
            (Test::Contains(needle), Some(v)) => as_text(v).contains(needle.as_str()),
            (Test::Greater(e), Some(v)) => compare(v, e) == Some(Ordering::Greater),
            (Test::Less(e), Some(v)) => compare(v, e) == Some(Ordering::Less),
        }
    }
}

fn equals(value: &Json, expected: &Expected) -> bool {
    match (expected, value) {
        (Expected::Text(s), Json::String(v)) => v == s,
        (Expected::Text(s), Json::Number(_)) => {
            decimal_of(value).is_some_and(|v| decimal_of(&Json::String(s.clone())) == Some(v))
        }
        (Expected::Text(s), Json::Bool(b)) => s == if *b { "true" } else { "false" },
        (Expected::Number(n), _) => decimal_of(value) == Some(*n),
        (Expected::Bool(b), Json::Bool(v)) => v == b,
        (Expected::Bool(b), Json::String(v)) => v.trim().eq_ignore_ascii_case(&b.to_string()),
        _ => false,
    }
}

/// How `value` orders against the bound, or `None` when they do not compare (a word
/// against a number, an object against anything).
fn compare(value: &Json, bound: &Expected) -> Option<Ordering> {
    match (bound, value) {
        (Expected::Number(n), _) => Some(decimal_of(value)?.cmp(n)),
        (Expected::Text(s), Json::String(v)) => Some(v.as_str().cmp(s)),
        (Expected::Text(s), Json::Number(_)) => {
            Some(decimal_of(value)?.cmp(&decimal_of(&Json::String(s.clone()))?))
        }
        _ => None,
    }
}

/// A field as text for `contains`: strings as they are, numbers as written, objects
/// and arrays as JSON.
fn as_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(toml_text: &str) -> CompiledFilter {
        let def: connector::Filter = toml::from_str(toml_text).unwrap();
        compile(&def).unwrap()
    }

    fn one(condition: &str) -> CompiledFilter {
        filter(&format!("conditions = [{condition}]"))
    }

    #[test]
    fn equals_compares_strings_numbers_and_booleans_as_a_user_reads_them() {
        let paid = one(r#"{ field = "status", equals = "paid" }"#);
        assert!(paid.matches(&json!({"status": "paid"})));
        assert!(!paid.matches(&json!({"status": "Paid"})));
        assert!(!paid.matches(&json!({})));

        let five = one(r#"{ field = "$.n", equals = 5 }"#);
        for n in [json!(5), json!(5.0), json!("5"), json!("5.00")] {
            assert!(five.matches(&json!({ "n": n })), "{n}");
        }
        assert!(!five.matches(&json!({"n": 6})));
        assert!(!five.matches(&json!({"n": "five"})));
        assert!(!five.matches(&json!({"n": null})));

        let tenth = one(r#"{ field = "n", equals = 0.1 }"#);
        assert!(tenth.matches(&json!({"n": 0.1})));
        assert!(tenth.matches(&serde_json::from_str("{\"n\": 0.10}").unwrap()));

        let text_five = one(r#"{ field = "n", equals = "5" }"#);
        assert!(text_five.matches(&json!({"n": 5})));

        let yes = one(r#"{ field = "active", equals = true }"#);
        assert!(yes.matches(&json!({"active": true})));
        assert!(
            yes.matches(&json!({"active": "true"})),
            "CSV fields are strings"
        );
        assert!(!yes.matches(&json!({"active": false})));
        assert!(!yes.matches(&json!({"active": 1})));
    }

    #[test]
    fn not_equals_holds_for_a_missing_or_null_field() {
        let not_void = one(r#"{ field = "status", not_equals = "void" }"#);
        assert!(not_void.matches(&json!({"status": "paid"})));
        assert!(!not_void.matches(&json!({"status": "void"})));
        assert!(not_void.matches(&json!({})));
        assert!(not_void.matches(&json!({"status": null})));
    }

    #[test]
    fn contains_reads_the_field_as_text() {
        let eu = one(r#"{ field = "$.region", contains = "eu-" }"#);
        assert!(eu.matches(&json!({"region": "eu-west-1"})));
        assert!(!eu.matches(&json!({"region": "us-east-1"})));
        assert!(!eu.matches(&json!({})));
        let digits = one(r#"{ field = "id", contains = "2024" }"#);
        assert!(digits.matches(&json!({"id": 20240101})));
    }

    #[test]
    fn gt_and_lt_compare_numbers_exactly_and_strings_as_text() {
        let positive = one(r#"{ field = "amount", gt = 0 }"#);
        assert!(positive.matches(&json!({"amount": 0.01})));
        assert!(positive.matches(&json!({"amount": "12.5"})));
        assert!(!positive.matches(&json!({"amount": 0})));
        assert!(!positive.matches(&json!({"amount": "-1"})));
        assert!(!positive.matches(&json!({"amount": "n/a"})));
        assert!(!positive.matches(&json!({})));

        let small = one(r#"{ field = "amount", lt = 0.3 }"#);
        assert!(
            small.matches(&serde_json::from_str("{\"amount\": 0.29999999999999999999}").unwrap())
        );
        assert!(!small.matches(&json!({"amount": "0.30"})));

        let recent = one(r#"{ field = "day", gt = "2026-01-31" }"#);
        assert!(recent.matches(&json!({"day": "2026-02-01"})));
        assert!(!recent.matches(&json!({"day": "2026-01-31"})));
        let before = one(r#"{ field = "day", lt = "2026-01-31" }"#);
        assert!(before.matches(&json!({"day": "2025-12-31"})));
    }

    #[test]
    fn exists_means_present_and_not_null() {
        let present = one(r#"{ field = "$.a.b", exists = true }"#);
        assert!(present.matches(&json!({"a": {"b": 0}})));
        assert!(!present.matches(&json!({"a": {"b": null}})));
        assert!(!present.matches(&json!({"a": {}})));
        let absent = one(r#"{ field = "$.a.b", exists = false }"#);
        assert!(absent.matches(&json!({"a": {"b": null}})));
        assert!(absent.matches(&json!({})));
        assert!(!absent.matches(&json!({"a": {"b": "x"}})));
    }

    #[test]
    fn match_all_needs_every_condition_and_match_any_one() {
        let conditions = r#"conditions = [
            { field = "status", equals = "paid" },
            { field = "amount", gt = 100 },
        ]"#;
        let all = filter(conditions);
        let any = filter(&format!("match = \"any\"\n{conditions}"));
        let both = json!({"status": "paid", "amount": 150});
        let one_of = json!({"status": "paid", "amount": 50});
        let none = json!({"status": "open", "amount": 50});
        assert!(all.matches(&both) && any.matches(&both));
        assert!(!all.matches(&one_of) && any.matches(&one_of));
        assert!(!all.matches(&none) && !any.matches(&none));
    }

    #[test]
    fn a_condition_that_cannot_be_used_is_refused_with_its_place() {
        let def: connector::Filter = toml::from_str(
            r#"conditions = [{ field = "a", exists = true }, { field = "b", gt = true }]"#,
        )
        .unwrap();
        assert_eq!(
            compile(&def).unwrap_err().to_string(),
            "filter.conditions[1]: `gt` compares with a number or a string only"
        );
        let def: connector::Filter =
            toml::from_str(r#"conditions = [{ field = "a", equals = 1, lt = 2 }]"#).unwrap();
        assert_eq!(
            compile(&def).unwrap_err(),
            CompileError::Condition {
                place: "filter.conditions[0]".into(),
                error: ConditionError::Operators
            }
        );
    }
}
