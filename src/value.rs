//! Value types and exact decimal values.
//!
//! Values travel as decimal text and are stored as text: they are never floats.
//! Accepted grammar: an optional `-`, digits, optionally `.` and digits
//! (`1234.50`, `-0.125`). Exponents, `NaN`, infinities, `+`, spaces and thousands
//! separators are refused, and a value is never rounded: one that does not fit 28
//! significant digits, or has more decimals than its type allows, is refused.

use std::fmt;
use std::str::FromStr;

use iso_currency::Currency;
use rust_decimal::Decimal;

use crate::text::{Excerpt, excerpt};

/// Decimals a currency value may carry beyond its currency's minor unit (USD: 2 + 4 = 6),
/// for unit prices and converted amounts.
pub const CURRENCY_EXTRA_DECIMALS: u32 = 4;
/// Decimals a number or percentage may carry.
pub const MAX_DECIMALS: u32 = 12;

/// What a stream's values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Number,
    /// An amount of money in one ISO 4217 currency.
    Currency(Currency),
    /// A percentage: `12.5` means 12.5 %.
    Percentage,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("unknown value type {0}: use number, currency or percentage")]
    UnknownType(Excerpt),
    #[error("{0} is not an ISO 4217 currency code (for example EUR, USD, JPY)")]
    UnknownCurrency(Excerpt),
    #[error("a currency stream needs a currency code (for example --currency EUR)")]
    MissingCurrency,
    #[error("only currency streams have a currency code")]
    UnexpectedCurrency,
    #[error("the value is empty")]
    Empty,
    #[error("{0} is not a number: NaN and infinities are not values")]
    NotFinite(Excerpt),
    #[error("{0} is not an exact decimal: write digits with an optional - and . (like -1234.50)")]
    Malformed(Excerpt),
    #[error("{0} has more than 28 significant digits")]
    TooLarge(Excerpt),
    #[error("{text} has {scale} decimals; {what} allows at most {max}")]
    TooManyDecimals {
        text: Excerpt,
        scale: u32,
        max: u32,
        what: String,
    },
}

impl ValueType {
    /// Builds a value type from its name and, for currency, its code.
    pub fn from_parts(kind: &str, currency: Option<&str>) -> Result<Self, ValueError> {
        let currency = currency.filter(|c| !c.is_empty());
        match (kind.to_ascii_lowercase().as_str(), currency) {
            ("number", None) => Ok(Self::Number),
            ("percentage", None) => Ok(Self::Percentage),
            ("currency", Some(code)) => Currency::from_code(&code.to_ascii_uppercase())
                .map(Self::Currency)
                .ok_or_else(|| ValueError::UnknownCurrency(excerpt(code))),
            ("currency", None) => Err(ValueError::MissingCurrency),
            ("number" | "percentage", Some(_)) => Err(ValueError::UnexpectedCurrency),
            _ => Err(ValueError::UnknownType(excerpt(kind))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Currency(_) => "currency",
            Self::Percentage => "percentage",
        }
    }

    pub fn currency_code(&self) -> Option<&'static str> {
        match self {
            Self::Currency(c) => Some(c.code()),
            _ => None,
        }
    }

    fn max_decimals(&self) -> u32 {
        match self {
            Self::Currency(c) => minor_unit(*c) + CURRENCY_EXTRA_DECIMALS,
            Self::Number | Self::Percentage => MAX_DECIMALS,
        }
    }

    /// The type as a `TooManyDecimals` message names it. Built only for that message:
    /// `parse_value` runs for every point published.
    fn decimals_rule_name(&self) -> String {
        match self {
            Self::Currency(c) => format!("{} (minor unit {})", c.code(), minor_unit(*c)),
            Self::Number => "a number".into(),
            Self::Percentage => "a percentage".into(),
        }
    }

    /// Parses decimal text into an exact value of this type.
    pub fn parse_value(&self, text: &str) -> Result<Value, ValueError> {
        let value = parse_decimal(text)?;
        let max = self.max_decimals();
        if value.scale() > max {
            return Err(ValueError::TooManyDecimals {
                text: excerpt(text),
                scale: value.scale(),
                max,
                what: self.decimals_rule_name(),
            });
        }
        Ok(Value(value))
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Currency(c) => write!(f, "currency ({})", c.code()),
            other => f.write_str(other.kind()),
        }
    }
}

/// An exact decimal value; its text keeps the scale it was given (`1234.50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value(Decimal);

impl Value {
    pub fn decimal(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn minor_unit(currency: Currency) -> u32 {
    u32::from(currency.exponent().unwrap_or(0))
}

fn parse_decimal(text: &str) -> Result<Decimal, ValueError> {
    if text.is_empty() {
        return Err(ValueError::Empty);
    }
    let unsigned = text.trim_start_matches(['-', '+']);
    if ["nan", "inf", "infinity"]
        .iter()
        .any(|word| unsigned.eq_ignore_ascii_case(word))
    {
        return Err(ValueError::NotFinite(excerpt(text)));
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return Err(ValueError::Malformed(excerpt(text)));
    }
    let significant = int.trim_start_matches('0').len() + frac.map_or(0, str::len);
    if significant > 28 {
        return Err(ValueError::TooLarge(excerpt(text)));
    }
    let mut value =
        Decimal::from_str_exact(text).map_err(|_| ValueError::TooLarge(excerpt(text)))?;
    if value.is_zero() {
        value.set_sign_positive(true);
    }
    Ok(value)
}

impl FromStr for Value {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ValueType::Number.parse_value(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimals_keep_their_text() {
        for text in ["1234.50", "-0.125", "0", "42", "0.000001"] {
            assert_eq!(
                ValueType::Number.parse_value(text).unwrap().to_string(),
                text
            );
        }
        assert_eq!(
            ValueType::Number.parse_value("-0").unwrap().to_string(),
            "0"
        );
    }

    #[test]
    fn nan_infinity_and_exponents_are_refused() {
        for text in ["NaN", "nan", "inf", "-Infinity"] {
            assert!(matches!(
                ValueType::Number.parse_value(text),
                Err(ValueError::NotFinite(_))
            ));
        }
        for text in [
            "1e999", "1E3", "+1", " 1", "1,000", "0x10", ".5", "5.", "1.2.3",
        ] {
            assert!(
                matches!(
                    ValueType::Number.parse_value(text),
                    Err(ValueError::Malformed(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn values_are_never_rounded() {
        let long = "1234567890123456789012345678.9";
        assert!(matches!(
            ValueType::Number.parse_value(long),
            Err(ValueError::TooLarge(_))
        ));
    }

    #[test]
    fn currency_values_allow_the_minor_unit_plus_four_decimals() {
        let usd = ValueType::from_parts("currency", Some("usd")).unwrap();
        assert!(usd.parse_value("19.999999").is_ok());
        assert!(usd.parse_value("19.9999999").is_err());
        let jpy = ValueType::from_parts("currency", Some("JPY")).unwrap();
        let err = jpy.parse_value("1.00001").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"1.00001\" has 5 decimals; JPY (minor unit 0) allows at most 4"
        );
    }

    #[test]
    fn currency_needs_a_known_code() {
        assert_eq!(
            ValueType::from_parts("currency", None),
            Err(ValueError::MissingCurrency)
        );
        assert!(ValueType::from_parts("currency", Some("XYZ")).is_err());
        assert!(ValueType::from_parts("number", Some("EUR")).is_err());
    }
}

/// Property tests: the parser never panics, canonical decimal text round-trips exactly,
/// and a refusal stays short whatever text it was given.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_is_parsed_or_refused_with_a_short_reason(text in any::<String>()) {
            if let Err(e) = ValueType::Number.parse_value(&text) {
                prop_assert!(e.to_string().len() <= 300, "{e}");
            }
        }

        #[test]
        fn a_long_text_is_refused_with_a_short_reason(text in "-*(0{100,3000}1|[0-9]{100,3000}|-{100,3000}nan|[0-9]{30,40}\\.[0-9]{3000})") {
            // Leading zeros do not count: some of these are values.
            if let Err(e) = ValueType::Number.parse_value(&text) {
                prop_assert!(e.to_string().len() <= 300, "{e}");
            }
        }

        #[test]
        fn canonical_decimal_text_reads_back_the_same(
            text in "-?(0|[1-9][0-9]{0,15})(\\.[0-9]{1,12})?"
        ) {
            // "-0" and "-0.00" are stored as "0" and "0.00": not canonical.
            let negative_zero = text.starts_with('-') && text.bytes().all(|b| b"-0.".contains(&b));
            prop_assume!(!negative_zero);
            let value = ValueType::Number.parse_value(&text).unwrap();
            prop_assert_eq!(value.to_string(), text);
        }

        #[test]
        fn a_decimal_reads_back_from_its_text(mantissa in any::<i64>(), scale in 0u32..=12) {
            let decimal = Decimal::new(mantissa, scale);
            let value = ValueType::Number.parse_value(&decimal.to_string()).unwrap();
            prop_assert_eq!(value.decimal(), decimal);
        }
    }
}
