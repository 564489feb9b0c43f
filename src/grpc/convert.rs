//! The server's conversions of stored records into responses (the mappings both
//! ends of the wire share are in `crate::wire`).

use jiff::Timestamp;

use super::error::ApiError;
use crate::batch::PublishOutcome;
use crate::proto;
use crate::store::{PointRecord, RevisionRecord};
use crate::stream::{Category, Stream, StreamKey};
use crate::wire::{UnknownNumber, opt_timestamp, timestamp};

pub fn stream(s: &Stream, now: Timestamp) -> proto::Stream {
    let def = &s.definition;
    proto::Stream {
        id: s.id.to_string(),
        name: def.name.clone(),
        description: def.description.clone(),
        category: def.category.clone().unwrap_or_default(),
        frequency: proto::Frequency::from(def.frequency) as i32,
        value_type: proto::ValueType::from(&def.value_type) as i32,
        currency: def
            .value_type
            .currency_code()
            .unwrap_or_default()
            .to_owned(),
        time_zone: def.time_zone.clone(),
        status: proto::StreamStatus::from(s.status(now)) as i32,
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

impl From<UnknownNumber> for ApiError {
    fn from(e: UnknownNumber) -> Self {
        ApiError::Invalid(e.to_string())
    }
}
