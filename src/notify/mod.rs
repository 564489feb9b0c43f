//! Notifications the server sends: freshness alerts (a stream turned stale, or
//! recovered) by email to the addresses subscribed to it, and signed events POSTed to
//! webhooks (status changes, accepted and revised points).
//!
//! Every notification goes through an outbox (`deliveries`): the transaction that
//! decides an event writes one delivery per target, and the dispatcher sends them,
//! retrying with backoff until the target takes it or the delivery is given up. Rules
//! and the webhook signature: `docs/notifications.md`.

pub mod dispatch;
pub mod event;
pub mod freshness;
pub mod outbound;
pub mod points;
pub mod settings;
pub mod sign;

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::ids::{StreamId, SubscriptionId, WebhookId};
use crate::stream::Stream;
use crate::text::excerpt;

/// What a webhook can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A stream turned stale (also emailed to its subscribers).
    Stale,
    /// A stale stream got data again (also emailed).
    Recovered,
    /// Any other change of a stream's status (pending to active, disabled, enabled).
    Status,
    /// Points stored for periods that had no value.
    PointAccepted,
    /// Points that replaced a period's value.
    PointRevised,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        Self::Stale,
        Self::Recovered,
        Self::Status,
        Self::PointAccepted,
        Self::PointRevised,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stream.stale",
            Self::Recovered => "stream.recovered",
            Self::Status => "stream.status",
            Self::PointAccepted => "point.accepted",
            Self::PointRevised => "point.revised",
        }
    }

    /// Whether the event is about points (found by scanning the points that changed).
    pub fn is_point(self) -> bool {
        matches!(self, Self::PointAccepted | Self::PointRevised)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event name that is not one of [`EventKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event {0}: use stream.stale, stream.recovered, stream.status, point.accepted or point.revised"
)]
pub struct UnknownEvent(String);

impl FromStr for EventKind {
    type Err = UnknownEvent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s.trim())
            .ok_or_else(|| UnknownEvent(excerpt(s).to_string()))
    }
}

/// The streams a webhook or an alert subscription is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every stream of the organisation.
    Org,
    Stream(StreamId),
    /// The streams of a category, by its name.
    Category(String),
}

impl Scope {
    pub fn covers(&self, stream: &Stream) -> bool {
        match self {
            Self::Org => true,
            Self::Stream(id) => *id == stream.id,
            Self::Category(name) => stream
                .definition
                .category
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(name)),
        }
    }

    /// The stream and category columns as stored.
    pub fn columns(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Self::Org => (None, None),
            Self::Stream(id) => (Some(id.as_str()), None),
            Self::Category(name) => (None, Some(name)),
        }
    }

    pub fn from_columns(stream: Option<String>, category: Option<String>) -> Option<Self> {
        match (stream, category) {
            (None, None) => Some(Self::Org),
            (Some(id), None) => StreamId::parse(&id).ok().map(Self::Stream),
            (None, Some(name)) => Some(Self::Category(name)),
            (Some(_), Some(_)) => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Org => f.write_str("every stream"),
            Self::Stream(id) => write!(f, "stream {id}"),
            Self::Category(name) => write!(f, "category {name:?}"),
        }
    }
}

/// A webhook as stored (its secret never leaves the store but to sign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub scope: Scope,
    pub events: Vec<EventKind>,
    pub created_at: Timestamp,
    /// Deliveries given up in a row.
    pub failures: u32,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
}

impl Webhook {
    pub fn wants(&self, event: EventKind, stream: &Stream) -> bool {
        self.disabled_at.is_none() && self.events.contains(&event) && self.scope.covers(stream)
    }
}

/// Events as stored: comma-separated names.
pub fn events_column(events: &[EventKind]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn parse_events_column(text: &str) -> Result<Vec<EventKind>, UnknownEvent> {
    text.split(',')
        .filter(|name| !name.is_empty())
        .map(str::parse)
        .collect()
}

/// A webhook to create.
pub struct NewWebhook {
    pub id: WebhookId,
    pub url: String,
    pub secret: secrecy::SecretString,
    pub scope: Scope,
    pub events: Vec<EventKind>,
}

/// An address subscribed to a scope's freshness alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSubscription {
    pub id: SubscriptionId,
    pub email: String,
    pub scope: Scope,
    pub created_at: Timestamp,
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Webhook(WebhookId),
    Email(String),
}

/// A delivery to write into the outbox.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub event_id: String,
    pub event: EventKind,
    pub target: Target,
    pub stream: Option<StreamId>,
    /// The event's JSON document, as sent.
    pub payload: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not tried yet, or failed and to be tried again.
    Pending,
    Delivered,
    /// Failed every attempt; not tried again.
    GaveUp,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::GaveUp => "gave up",
        }
    }
}

/// A delivery as logged.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub event: EventKind,
    pub target: Target,
    pub stream: Option<StreamId>,
    pub payload: String,
    pub created_at: Timestamp,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last answer (webhooks).
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub gave_up_at: Option<Timestamp>,
}

impl Delivery {
    pub fn state(&self) -> DeliveryState {
        if self.delivered_at.is_some() {
            DeliveryState::Delivered
        } else if self.gave_up_at.is_some() {
            DeliveryState::GaveUp
        } else {
            DeliveryState::Pending
        }
    }
}

/// A delivery the dispatcher claimed, with what it needs to send it.
pub struct DueDelivery {
    pub org: crate::ids::OrgId,
    pub delivery: Delivery,
    /// A webhook's URL and signing secret (`None` for an email).
    pub webhook: Option<(String, secrecy::SecretString)>,
    /// Until when it is claimed: the attempt's result must be recorded with it.
    pub lease: Timestamp,
}

/// How an attempt ended, and what follows.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The HTTP status of the answer, if there was one.
    pub status: Option<u16>,
    /// `None`: delivered.
    pub error: Option<String>,
    /// When to try again after a failure (`None`: give up).
    pub retry_at: Option<Timestamp>,
}
