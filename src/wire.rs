//! Where kpistream's domain types meet their protobuf form: the one mapping of
//! timestamps, frequencies, statuses and value types that the server, the SDK, the
//! runner and the command line share.
//!
//! Conversions of whole stored records into responses are the server's alone and live
//! in `grpc::convert`; this module holds what both ends of the wire need.

use jiff::Timestamp;

use crate::period::Frequency;
use crate::proto;
use crate::stream::StreamStatus;
use crate::value::ValueType;

/// An enum number this build does not know, such as a value a newer peer added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} number {number}")]
pub struct UnknownNumber {
    /// Which enum: `frequency`, `status` or `value type`.
    pub what: &'static str,
    /// The number received.
    pub number: i32,
}

/// A time on the wire.
pub fn timestamp(ts: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

/// A time that may be absent.
pub fn opt_timestamp(ts: Option<Timestamp>) -> Option<prost_types::Timestamp> {
    ts.map(timestamp)
}

impl From<Frequency> for proto::Frequency {
    fn from(f: Frequency) -> Self {
        match f {
            Frequency::Daily => Self::Daily,
            Frequency::Weekly => Self::Weekly,
            Frequency::Monthly => Self::Monthly,
            Frequency::Quarterly => Self::Quarterly,
        }
    }
}

/// A frequency from its number; `None` for UNSPECIFIED.
pub fn frequency(number: i32) -> Result<Option<Frequency>, UnknownNumber> {
    match proto::Frequency::try_from(number) {
        Ok(proto::Frequency::Unspecified) => Ok(None),
        Ok(proto::Frequency::Daily) => Ok(Some(Frequency::Daily)),
        Ok(proto::Frequency::Weekly) => Ok(Some(Frequency::Weekly)),
        Ok(proto::Frequency::Monthly) => Ok(Some(Frequency::Monthly)),
        Ok(proto::Frequency::Quarterly) => Ok(Some(Frequency::Quarterly)),
        Err(_) => Err(UnknownNumber {
            what: "frequency",
            number,
        }),
    }
}

impl From<StreamStatus> for proto::StreamStatus {
    fn from(s: StreamStatus) -> Self {
        match s {
            StreamStatus::Pending => Self::Pending,
            StreamStatus::Active => Self::Active,
            StreamStatus::Stale => Self::Stale,
            StreamStatus::Disabled => Self::Disabled,
        }
    }
}

/// A status from its number; `None` for UNSPECIFIED.
pub fn status(number: i32) -> Result<Option<StreamStatus>, UnknownNumber> {
    match proto::StreamStatus::try_from(number) {
        Ok(proto::StreamStatus::Unspecified) => Ok(None),
        Ok(proto::StreamStatus::Pending) => Ok(Some(StreamStatus::Pending)),
        Ok(proto::StreamStatus::Active) => Ok(Some(StreamStatus::Active)),
        Ok(proto::StreamStatus::Stale) => Ok(Some(StreamStatus::Stale)),
        Ok(proto::StreamStatus::Disabled) => Ok(Some(StreamStatus::Disabled)),
        Err(_) => Err(UnknownNumber {
            what: "status",
            number,
        }),
    }
}

impl From<&ValueType> for proto::ValueType {
    fn from(v: &ValueType) -> Self {
        match v {
            ValueType::Number => Self::Number,
            ValueType::Currency(_) => Self::Currency,
            ValueType::Percentage => Self::Percentage,
        }
    }
}

/// A value type's name (`number`, `currency`, `percentage`) from its number; `None`
/// for UNSPECIFIED. The currency code travels in its own field.
pub fn value_kind(number: i32) -> Result<Option<&'static str>, UnknownNumber> {
    match proto::ValueType::try_from(number) {
        Ok(proto::ValueType::Unspecified) => Ok(None),
        Ok(proto::ValueType::Number) => Ok(Some("number")),
        Ok(proto::ValueType::Currency) => Ok(Some("currency")),
        Ok(proto::ValueType::Percentage) => Ok(Some("percentage")),
        Err(_) => Err(UnknownNumber {
            what: "value type",
            number,
        }),
    }
}

/// How a frequency number reads to a person: its name, `?` when unknown.
pub fn frequency_name(number: i32) -> &'static str {
    match frequency(number) {
        Ok(Some(f)) => f.as_str(),
        _ => "?",
    }
}

/// How a status number reads to a person: its name, `?` when unknown.
pub fn status_name(number: i32) -> &'static str {
    match status(number) {
        Ok(Some(s)) => s.as_str(),
        _ => "?",
    }
}

/// How a stream's value type reads to a person: `number`, `currency EUR`,
/// `percentage`, `?` when unknown.
pub fn type_name(stream: &proto::Stream) -> String {
    match value_kind(stream.value_type) {
        Ok(Some("currency")) => format!("currency {}", stream.currency),
        Ok(Some(name)) => name.to_owned(),
        _ => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frequency_and_status_goes_there_and_back() {
        for f in Frequency::ALL {
            assert_eq!(frequency(proto::Frequency::from(f) as i32), Ok(Some(f)));
        }
        for s in [
            StreamStatus::Pending,
            StreamStatus::Active,
            StreamStatus::Stale,
            StreamStatus::Disabled,
        ] {
            assert_eq!(status(proto::StreamStatus::from(s) as i32), Ok(Some(s)));
        }
        for v in [
            ValueType::Number,
            ValueType::from_parts("currency", Some("EUR")).unwrap(),
            ValueType::Percentage,
        ] {
            assert_eq!(
                value_kind(proto::ValueType::from(&v) as i32),
                Ok(Some(v.kind()))
            );
        }
    }

    #[test]
    fn unknown_numbers_are_named_and_read_as_a_question_mark() {
        let err = frequency(99).unwrap_err();
        assert_eq!(err.to_string(), "unknown frequency number 99");
        assert_eq!(status(-1).unwrap_err().what, "status");
        assert_eq!(frequency_name(99), "?");
        assert_eq!(status_name(0), "?");
        assert_eq!(frequency(0), Ok(None));
    }
}
