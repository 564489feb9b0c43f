//! Checks each point of a verified batch against its stream: the period (given as
//! text or placed from a timestamp in the stream's time zone) and the value.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use crate::batch::{PointRejection, ValidPoint};
use crate::period::{Frequency, Period};
use crate::signature::{RawPoint, When};
use crate::value::ValueType;

/// Longest external id, in bytes.
pub const MAX_EXTERNAL_ID_BYTES: usize = 256;

/// Why a point was refused, for metrics (the rejection's text says it to a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Period,
    Value,
    DuplicatePeriod,
    ExternalId,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Period => "period",
            Self::Value => "value",
            Self::DuplicatePeriod => "duplicate_period",
            Self::ExternalId => "external_id",
        }
    }
}

/// The points split into those to store and those refused (with their kinds).
#[derive(Debug, Default)]
pub struct Validated {
    pub points: Vec<ValidPoint>,
    pub rejected: Vec<PointRejection>,
    pub kinds: Vec<RejectKind>,
}

/// Validates every point; one bad point never hides the others' reasons.
pub fn validate_points(
    points: &[RawPoint],
    frequency: Frequency,
    value_type: &ValueType,
    tz: &TimeZone,
) -> Validated {
    let mut out = Validated::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, point) in points.iter().enumerate() {
        match validate_point(point, frequency, value_type, tz) {
            Ok(valid) => {
                if let Some(first) = seen.get(&valid.period) {
                    out.reject(
                        index,
                        RejectKind::DuplicatePeriod,
                        format!(
                            "period {} already has a value in this batch (point {first}); send one value per period",
                            valid.period
                        ),
                    );
                    continue;
                }
                seen.insert(valid.period.clone(), index);
                out.points.push(valid);
            }
            Err((kind, reason)) => out.reject(index, kind, reason),
        }
    }
    out
}

impl Validated {
    fn reject(&mut self, index: usize, kind: RejectKind, reason: String) {
        self.rejected.push(PointRejection {
            index: index as u32,
            reason,
        });
        self.kinds.push(kind);
    }
}

fn validate_point(
    point: &RawPoint,
    frequency: Frequency,
    value_type: &ValueType,
    tz: &TimeZone,
) -> Result<ValidPoint, (RejectKind, String)> {
    let period = match &point.when {
        When::Period(text) => Period::parse(frequency, text),
        When::At(at) => Period::at(frequency, *at, tz),
        When::Missing => {
            return Err((
                RejectKind::Period,
                "the point has neither a period nor a timestamp".into(),
            ));
        }
        When::InvalidTimestamp(why) => {
            return Err((
                RejectKind::Period,
                format!("the point's timestamp is not valid: {why}"),
            ));
        }
    }
    .map_err(|e| (RejectKind::Period, e.to_string()))?;
    let value = value_type
        .parse_value(&point.value)
        .map_err(|e| (RejectKind::Value, e.to_string()))?;
    if point.external_id.len() > MAX_EXTERNAL_ID_BYTES {
        return Err((
            RejectKind::ExternalId,
            format!("the external id is longer than {MAX_EXTERNAL_ID_BYTES} bytes"),
        ));
    }
    Ok(ValidPoint {
        period: period.to_string(),
        value: value.to_string(),
        external_id: Some(point.external_id.clone()).filter(|e| !e.is_empty()),
    })
}
