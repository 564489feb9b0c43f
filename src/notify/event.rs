//! The events as their receivers see them: the JSON document a webhook gets (the same
//! for every target of an event, and for every retry), and the email a status alert
//! becomes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::EventKind;
use crate::period::Period;
use crate::store::PointRecord;
use crate::stream::{Stream, StreamStatus};

/// The document POSTed to a webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDoc {
    /// The event's id (`evt_…`): the same in every retry, so a receiver can tell a
    /// repeat (delivery is at least once).
    pub id: String,
    #[serde(rename = "type")]
    pub event: String,
    pub created_at: Timestamp,
    pub org_id: String,
    pub stream: StreamDoc,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamDoc {
    pub id: String,
    pub name: String,
    pub category: Option<String>,
    pub frequency: String,
    pub time_zone: String,
}

/// `data` of the status events (`stream.stale`, `stream.recovered`, `stream.status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusData {
    /// The status before (`null`: the first time the server looked at the stream).
    pub from: Option<String>,
    pub to: String,
    /// The latest period holding a value.
    pub latest_period: Option<String>,
    /// The latest period that has ended, whose value is due.
    pub expected_period: Option<String>,
    pub last_data_at: Option<Timestamp>,
}

/// One point of `data.points` in the point events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointDoc {
    pub period: String,
    /// The exact value, as text.
    pub value: String,
    pub revision_count: u32,
    pub batch_id: String,
    pub key_id: String,
    pub updated_at: Timestamp,
}

/// A new event's id.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

fn stream_doc(stream: &Stream) -> StreamDoc {
    StreamDoc {
        id: stream.id.to_string(),
        name: stream.definition.name.clone(),
        category: stream.definition.category.clone(),
        frequency: stream.definition.frequency.as_str().to_owned(),
        time_zone: stream.definition.time_zone.clone(),
    }
}

/// The latest period of `stream` that has ended at `now`, in the stream's zone.
pub fn expected_period(stream: &Stream, now: Timestamp) -> Option<String> {
    let today = now.to_zoned(stream.definition.tz()).date();
    let current = Period::containing(stream.definition.frequency, today).ok()?;
    let before = current.start().yesterday().ok()?;
    Period::containing(stream.definition.frequency, before)
        .ok()
        .map(|p| p.to_string())
}

/// What the freshness check remembers of a stream: its status and, for a disabled
/// stream, whether it was stale when it was disabled (so that data after it is enabled
/// again is a recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub status: StreamStatus,
    /// Stale, or disabled while stale: its subscribers were told it is stale.
    pub stale: bool,
}

impl Seen {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match (self.status, self.stale) {
            (StreamStatus::Disabled, true) => "disabled stale",
            (status, _) => status.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        if text == "disabled stale" {
            return Some(Self {
                status: StreamStatus::Disabled,
                stale: true,
            });
        }
        let status: StreamStatus = text.parse().ok()?;
        Some(Self {
            status,
            stale: status == StreamStatus::Stale,
        })
    }
}

/// What a stream last seen as `from` (`None`: never) is seen as now that its status is
/// `to`, and the event that change is (`None`: a change nobody is told about, such as
/// the first look at a stream that is not stale).
pub fn status_event(from: Option<Seen>, to: StreamStatus) -> (Seen, Option<EventKind>) {
    let was_stale = from.is_some_and(|f| f.stale);
    let next = Seen {
        status: to,
        stale: to == StreamStatus::Stale || (to == StreamStatus::Disabled && was_stale),
    };
    let event = match from {
        Some(from) if from == next => None,
        None if to == StreamStatus::Stale => Some(EventKind::Stale),
        None => None,
        Some(_) if to == StreamStatus::Stale && !was_stale => Some(EventKind::Stale),
        Some(_) if to == StreamStatus::Active && was_stale => Some(EventKind::Recovered),
        Some(_) => Some(EventKind::Status),
    };
    (next, event)
}

/// The document of a status event.
pub fn status_doc(
    kind: EventKind,
    stream: &Stream,
    from: Option<StreamStatus>,
    to: StreamStatus,
    now: Timestamp,
) -> EventDoc {
    let data = StatusData {
        from: from.map(|s| s.as_str().to_owned()),
        to: to.as_str().to_owned(),
        latest_period: stream.latest_period.clone(),
        expected_period: expected_period(stream, now),
        last_data_at: stream.last_data_at,
    };
    EventDoc {
        id: new_event_id(),
        event: kind.as_str().to_owned(),
        created_at: now,
        org_id: stream.org_id.to_string(),
        stream: stream_doc(stream),
        data: serde_json::to_value(data).expect("status data serializes"),
    }
}

/// The document of a point event.
pub fn points_doc(
    kind: EventKind,
    stream: &Stream,
    points: &[&PointRecord],
    now: Timestamp,
) -> EventDoc {
    let points: Vec<PointDoc> = points
        .iter()
        .map(|p| PointDoc {
            period: p.period.clone(),
            value: p.value.clone(),
            revision_count: p.revision_count,
            batch_id: p.batch_id.clone(),
            key_id: p.key_id.clone(),
            updated_at: p.updated_at,
        })
        .collect();
    EventDoc {
        id: new_event_id(),
        event: kind.as_str().to_owned(),
        created_at: now,
        org_id: stream.org_id.to_string(),
        stream: stream_doc(stream),
        data: serde_json::json!({ "points": points }),
    }
}

/// An alert email's subject and plain-text body, from a status event's document.
pub fn email_text(doc: &EventDoc) -> Result<(String, String), serde_json::Error> {
    let data: StatusData = serde_json::from_value(doc.data.clone())?;
    let name = &doc.stream.name;
    let latest = data.latest_period.as_deref().unwrap_or("none");
    let expected = data.expected_period.as_deref().unwrap_or("none");
    let subject = if doc.event == EventKind::Recovered.as_str() {
        format!("kpistream: stream {name} recovered (latest period {latest})")
    } else {
        format!("kpistream: stream {name} is stale (latest period {latest}, expected {expected})")
    };
    let what = if doc.event == EventKind::Recovered.as_str() {
        "has data again: it is no longer stale"
    } else {
        "is stale: the value of a period that has ended is overdue"
    };
    let body = format!(
        "The kpistream stream {name} {what}.\n\n\
         Stream:          {name} ({id})\n\
         Category:        {category}\n\
         Frequency:       {frequency} ({zone})\n\
         Latest period:   {latest}\n\
         Expected period: {expected}\n\
         Last data:       {last}\n\
         Status:          {from} -> {to}\n\
         Time:            {at}\n",
        id = doc.stream.id,
        category = doc.stream.category.as_deref().unwrap_or("none"),
        frequency = doc.stream.frequency,
        zone = doc.stream.time_zone,
        last = data
            .last_data_at
            .map_or_else(|| "never".to_owned(), |t| t.to_string()),
        from = data.from.as_deref().unwrap_or("unknown"),
        to = data.to,
        at = doc.created_at,
    );
    Ok((subject, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_turning_stale_and_recovering_from_it_are_alerts() {
        use StreamStatus::*;
        let seen = |text: &str| Seen::parse(text).unwrap();
        let event = |from: Option<&str>, to| status_event(from.map(seen), to).1;
        assert_eq!(event(None, Stale), Some(EventKind::Stale));
        assert_eq!(event(None, Active), None);
        assert_eq!(event(Some("active"), Stale), Some(EventKind::Stale));
        assert_eq!(event(Some("stale"), Active), Some(EventKind::Recovered));
        assert_eq!(event(Some("stale"), Stale), None);
        assert_eq!(event(Some("pending"), Active), Some(EventKind::Status));
        assert_eq!(event(Some("disabled"), Stale), Some(EventKind::Stale));
        // Disabled while stale, then enabled: data is a recovery, no data no new alert.
        let (disabled, what) = status_event(Some(seen("stale")), Disabled);
        assert_eq!(
            (disabled.as_str(), what),
            ("disabled stale", Some(EventKind::Status))
        );
        assert_eq!(
            event(Some("disabled stale"), Active),
            Some(EventKind::Recovered)
        );
        assert_eq!(
            event(Some("disabled stale"), Stale),
            Some(EventKind::Status)
        );
        assert_eq!(event(Some("disabled stale"), Disabled), None);
        for text in ["pending", "active", "stale", "disabled", "disabled stale"] {
            assert_eq!(seen(text).as_str(), text);
        }
    }
}
