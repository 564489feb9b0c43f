//! Field references into a record, as a connector's mapping, filter and cursor write
//! them: a JSONPath (RFC 9535) for REST records, a plain key for SQL rows and command
//! output.

use super::error::FieldError;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use serde_json_path::JsonPath;

use super::Record;

/// A compiled reference to one field of a record.
#[derive(Debug, Clone)]
pub struct FieldPath {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Evaluated against the record; the first node it selects is the field.
    JsonPath(JsonPath),
    /// A key of the record's top-level object (a column, a JSON key, a CSV header).
    Key,
}

impl FieldPath {
    /// Compiles `text`: a JSONPath when it starts with `$`, a top-level key otherwise.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let kind = if text.starts_with('$') {
            let path = JsonPath::parse(text).map_err(|e| FieldError::JsonPath {
                text: text.to_owned(),
                reason: e.to_string(),
            })?;
            Kind::JsonPath(path)
        } else if text.is_empty() {
            return Err(FieldError::Empty);
        } else {
            Kind::Key
        };
        Ok(Self {
            text: text.to_owned(),
            kind,
        })
    }

    /// The field's value in `record`, or `None` when the record does not have it.
    /// A JSON `null` is returned as such: whether null counts as missing is the
    /// caller's choice.
    pub fn get<'a>(&self, record: &'a Record) -> Option<&'a serde_json::Value> {
        match &self.kind {
            Kind::JsonPath(path) => path.query(record).first(),
            Kind::Key => record.as_object()?.get(&self.text),
        }
    }

    /// The reference as written in the connector file.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The text of a decimal written as `-12.50`, `1.5e3` or `1E-5`, with any exponent
/// worked out exactly, digit by digit (`1500`, `0.00001`): JSON numbers stay exact and
/// never pass through a float. `None` when `text` is not such a number.
pub fn plain_decimal(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || mantissa.ends_with('.') {
        return None;
    }
    let Some(exponent) = exponent else {
        return Some(text.to_owned());
    };
    let digits_of_exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if digits_of_exponent.is_empty() || !all_digits(digits_of_exponent) {
        return None;
    }
    // Far beyond any value kpistream stores; refusing keeps the text small.
    let exponent: i64 = exponent.parse().ok().filter(|e: &i64| e.abs() <= 100)?;
    let digits = format!("{int}{frac}");
    let point = int.len() as i64 + exponent;
    let mut plain = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (i, f) = digits.split_at(point as usize);
        format!("{i}.{f}")
    };
    let leading = plain.len() - plain.trim_start_matches('0').len();
    let keep_one = plain[leading..].is_empty() || plain[leading..].starts_with('.');
    plain.drain(..leading - usize::from(keep_one && leading > 0));
    if negative {
        plain.insert(0, '-');
    }
    Some(plain)
}

/// A JSON number, or a string holding one, as an exact decimal (for comparisons).
/// `None` for anything else, and for numbers beyond what a decimal holds.
pub fn decimal_of(value: &serde_json::Value) -> Option<Decimal> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    Decimal::from_str(&plain_decimal(&text)?).ok()
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_jsonpath_selects_the_first_node_it_finds() {
        let record = json!({"data": {"amount": 12, "lines": [{"sku": "a"}, {"sku": "b"}]}});
        let amount = FieldPath::parse("$.data.amount").unwrap();
        assert_eq!(amount.get(&record), Some(&json!(12)));
        let sku = FieldPath::parse("$.data.lines[*].sku").unwrap();
        assert_eq!(sku.get(&record), Some(&json!("a")));
        let bracket = FieldPath::parse("$['data']['lines'][1]['sku']").unwrap();
        assert_eq!(bracket.get(&record), Some(&json!("b")));
    }

    #[test]
    fn a_plain_name_is_a_top_level_key_even_with_dots_in_it() {
        let record = json!({"amount": "3.50", "order.id": 7, "nested": {"amount": 1}});
        let amount = FieldPath::parse("amount").unwrap();
        assert_eq!(amount.get(&record), Some(&json!("3.50")));
        let dotted = FieldPath::parse("order.id").unwrap();
        assert_eq!(dotted.get(&record), Some(&json!(7)));
        assert_eq!(
            FieldPath::parse("nested.amount").unwrap().get(&record),
            None
        );
    }

    #[test]
    fn a_missing_field_is_none_and_null_is_kept() {
        let record = json!({"a": null});
        assert_eq!(FieldPath::parse("$.b").unwrap().get(&record), None);
        assert_eq!(FieldPath::parse("b").unwrap().get(&record), None);
        assert_eq!(
            FieldPath::parse("$.a").unwrap().get(&record),
            Some(&json!(null))
        );
        assert_eq!(
            FieldPath::parse("a").unwrap().get(&record),
            Some(&json!(null))
        );
        let not_an_object = json!([1, 2]);
        assert_eq!(FieldPath::parse("a").unwrap().get(&not_an_object), None);
    }

    #[test]
    fn exponents_are_worked_out_exactly_and_plain_decimals_keep_their_text() {
        let cases = [
            ("1234.50", "1234.50"),
            ("-0.125", "-0.125"),
            ("1.5e3", "1500"),
            ("1E-5", "0.00001"),
            ("-2.5e-1", "-0.25"),
            ("12.345e1", "123.45"),
            ("0.5e+2", "50"),
            ("0e0", "0"),
        ];
        for (text, plain) in cases {
            assert_eq!(plain_decimal(text).as_deref(), Some(plain), "{text}");
        }
        for text in [
            "", "-", "1.", ".5", "+1", "1e", "1e400", "abc", "1,5", "NaN", " 1",
        ] {
            assert_eq!(plain_decimal(text), None, "{text:?}");
        }
    }

    #[test]
    fn numbers_and_numeric_strings_become_decimals() {
        assert_eq!(decimal_of(&json!(5)), Some(Decimal::from(5)));
        assert_eq!(decimal_of(&json!(" 5.0 ")), Some(Decimal::from(5)));
        assert_eq!(decimal_of(&json!("paid")), None);
        assert_eq!(decimal_of(&json!(true)), None);
    }

    #[test]
    fn an_invalid_jsonpath_is_refused_with_a_reason_and_display_shows_the_text() {
        let err = FieldPath::parse("$.a[").unwrap_err().to_string();
        assert!(err.starts_with("\"$.a[\" is not a valid JSONPath"), "{err}");
        assert!(FieldPath::parse("").is_err());
        assert_eq!(FieldPath::parse("$.x").unwrap().to_string(), "$.x");
        assert_eq!(FieldPath::parse("x").unwrap().to_string(), "x");
    }
}
