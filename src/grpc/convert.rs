//! Conversions between domain types and generated protobuf types.

use jiff::Timestamp;

use super::error::ApiError;
use crate::batch::PublishOutcome;
use crate::period::Frequency;
use crate::proto;
use crate::store::{PointRecord, RevisionRecord};
use crate::stream::{Category, Stream, StreamKey, StreamStatus};
use crate::value::ValueType;

pub fn timestamp(ts: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.as_second(),
        nanos: ts.subsec_nanosecond(),
    }
}

pub fn opt_timestamp(ts: Option<Timestamp>) -> Option<prost_types::Timestamp> {
    ts.map(timestamp)
}

pub fn frequency_to_proto(f: Frequency) -> proto::Frequency {
    match f {
        Frequency::Daily => proto::Frequency::Daily,
        Frequency::Weekly => proto::Frequency::Weekly,
        Frequency::Monthly => proto::Frequency::Monthly,
        Frequency::Quarterly => proto::Frequency::Quarterly,
    }
}

/// `None` for UNSPECIFIED.
pub fn frequency_from_proto(value: i32) -> Result<Option<Frequency>, ApiError> {
    match proto::Frequency::try_from(value) {
        Ok(proto::Frequency::Unspecified) => Ok(None),
        Ok(proto::Frequency::Daily) => Ok(Some(Frequency::Daily)),
        Ok(proto::Frequency::Weekly) => Ok(Some(Frequency::Weekly)),
        Ok(proto::Frequency::Monthly) => Ok(Some(Frequency::Monthly)),
        Ok(proto::Frequency::Quarterly) => Ok(Some(Frequency::Quarterly)),
        Err(_) => Err(ApiError::Invalid(format!(
            "unknown frequency number {value}"
        ))),
    }
}

pub fn value_kind_to_proto(v: &ValueType) -> proto::ValueType {
    match v {
        ValueType::Number => proto::ValueType::Number,
        ValueType::Currency(_) => proto::ValueType::Currency,
        ValueType::Percentage => proto::ValueType::Percentage,
    }
}

/// The value type's name, `None` for UNSPECIFIED.
pub fn value_kind_from_proto(value: i32) -> Result<Option<&'static str>, ApiError> {
    match proto::ValueType::try_from(value) {
        Ok(proto::ValueType::Unspecified) => Ok(None),
        Ok(proto::ValueType::Number) => Ok(Some("number")),
        Ok(proto::ValueType::Currency) => Ok(Some("currency")),
        Ok(proto::ValueType::Percentage) => Ok(Some("percentage")),
        Err(_) => Err(ApiError::Invalid(format!(
            "unknown value type number {value}"
        ))),
    }
}

pub fn status_to_proto(s: StreamStatus) -> proto::StreamStatus {
    match s {
        StreamStatus::Pending => proto::StreamStatus::Pending,
        StreamStatus::Active => proto::StreamStatus::Active,
        StreamStatus::Stale => proto::StreamStatus::Stale,
        StreamStatus::Disabled => proto::StreamStatus::Disabled,
    }
}

pub fn status_from_proto(value: i32) -> Result<Option<StreamStatus>, ApiError> {
    match proto::StreamStatus::try_from(value) {
        Ok(proto::StreamStatus::Unspecified) => Ok(None),
        Ok(proto::StreamStatus::Pending) => Ok(Some(StreamStatus::Pending)),
        Ok(proto::StreamStatus::Active) => Ok(Some(StreamStatus::Active)),
        Ok(proto::StreamStatus::Stale) => Ok(Some(StreamStatus::Stale)),
        Ok(proto::StreamStatus::Disabled) => Ok(Some(StreamStatus::Disabled)),
        Err(_) => Err(ApiError::Invalid(format!("unknown status number {value}"))),
    }
}

pub fn stream(s: &Stream, now: Timestamp) -> proto::Stream {
    let def = &s.definition;
    proto::Stream {
        id: s.id.to_string(),
        name: def.name.clone(),
        description: def.description.clone(),
        category: def.category.clone().unwrap_or_default(),
        frequency: frequency_to_proto(def.frequency) as i32,
        value_type: value_kind_to_proto(&def.value_type) as i32,
        currency: def
            .value_type
            .currency_code()
            .unwrap_or_default()
            .to_owned(),
        time_zone: def.time_zone.clone(),
        status: status_to_proto(s.status(now)) as i32,
        created_at: Some(timestamp(s.created_at)),
        updated_at: Some(timestamp(s.updated_at)),
        latest_period: s.latest_period.clone().unwrap_or_default(),
        last_data_at: opt_timestamp(s.last_data_at),
        point_count: s.point_count,
    }
}

pub fn key(k: &StreamKey) -> proto::StreamKey {
    proto::StreamKey {
        key_id: k.key_id.to_string(),
        public_key: k.public_key.to_vec(),
        created_at: Some(timestamp(k.created_at)),
        last_used_at: opt_timestamp(k.last_used_at),
        revoked_at: opt_timestamp(k.revoked_at),
        origin: k.origin.as_str().to_owned(),
    }
}

pub fn category(c: &Category) -> proto::Category {
    proto::Category {
        name: c.name.clone(),
        stream_count: c.stream_count,
        created_at: Some(timestamp(c.created_at)),
    }
}

pub fn point(p: PointRecord) -> proto::DataPoint {
    proto::DataPoint {
        period: p.period,
        value: p.value,
        external_id: p.external_id.unwrap_or_default(),
        updated_at: Some(timestamp(p.updated_at)),
        batch_id: p.batch_id,
        key_id: p.key_id,
        revision_count: p.revision_count,
    }
}

pub fn revision(r: RevisionRecord) -> proto::Revision {
    proto::Revision {
        period: r.period,
        old_value: r.old_value,
        new_value: r.new_value,
        batch_id: r.batch_id,
        key_id: r.key_id,
        revised_at: Some(timestamp(r.revised_at)),
    }
}

pub fn outcome(o: PublishOutcome) -> proto::PublishResponse {
    let (accepted, revised, replayed, committed_at) =
        (o.accepted(), o.revised(), o.replayed(), o.committed_at());
    let (batch_id, rejected) = o.into_rejected();
    proto::PublishResponse {
        batch_id,
        accepted,
        rejected: rejected
            .into_iter()
            .map(|r| proto::PointRejection {
                index: r.index,
                reason: r.reason,
            })
            .collect(),
        revised,
        replayed,
        committed_at: Some(timestamp(committed_at)),
        error: None,
    }
}

/// A timestamp a client may leave out, checked by the one rule for client timestamps
/// (`signature::timestamp_from_proto`); an invalid one is refused naming `field`.
pub fn optional_time(
    field: &str,
    ts: Option<prost_types::Timestamp>,
) -> Result<Option<Timestamp>, ApiError> {
    ts.map(|t| {
        crate::signature::timestamp_from_proto(&t)
            .map_err(|why| ApiError::Invalid(format!("{field} is not a valid timestamp: {why}")))
    })
    .transpose()
}
