//! Streams: the definition an admin makes, its status, its keys and categories.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::ids::{KeyId, OrgId, StreamId};
use crate::period::{Frequency, Period};
use crate::text::{self, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, TooLong, excerpt};
use crate::value::ValueType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// No data yet.
    Pending,
    /// Receiving data on time.
    Active,
    /// The latest period is older than the frequency plus grace allows.
    Stale,
    /// Disabled by an admin: publishes are refused.
    Disabled,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Stale => "stale",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StreamStatus {
    type Err = StreamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::Active, Self::Stale, Self::Disabled]
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                StreamError::Invalid(format!(
                    "unknown status {}: use pending, active, stale or disabled",
                    excerpt(s)
                ))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    TooLong(#[from] TooLong),
}

/// A stream as stored, with what the server knows about its data.
#[derive(Debug, Clone)]
pub struct Stream {
    pub id: StreamId,
    pub org_id: OrgId,
    pub definition: StreamDefinition,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The latest period holding a value.
    pub latest_period: Option<String>,
    pub last_data_at: Option<Timestamp>,
    pub point_count: u64,
}

impl Stream {
    /// The status at `now`: staleness is judged on the calendar of the stream's time zone.
    pub fn status(&self, now: Timestamp) -> StreamStatus {
        if self.disabled {
            return StreamStatus::Disabled;
        }
        let Some(latest) = self.latest_period.as_deref() else {
            return StreamStatus::Pending;
        };
        let Ok(latest) = Period::parse(self.definition.frequency, latest) else {
            return StreamStatus::Active;
        };
        let today = now.to_zoned(self.definition.tz()).date();
        if latest.is_stale_on(today) {
            StreamStatus::Stale
        } else {
            StreamStatus::Active
        }
    }
}

/// What an admin defines: checked on construction.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDefinition {
    pub name: String,
    pub description: String,
    /// The category's name, if the stream has one.
    pub category: Option<String>,
    pub frequency: Frequency,
    pub value_type: ValueType,
    /// An IANA time zone name.
    pub time_zone: String,
}

impl StreamDefinition {
    /// The stream's time zone; the name was checked when the definition was made.
    pub fn tz(&self) -> TimeZone {
        TimeZone::get(&self.time_zone).unwrap_or(TimeZone::UTC)
    }

    /// Checks the fields a user typed.
    pub fn check(&self) -> Result<(), StreamError> {
        check_name("stream name", &self.name)?;
        text::check_len("description", &self.description, MAX_DESCRIPTION_CHARS)?;
        if let Some(category) = &self.category {
            text::check_name_len("category name", category)?;
        }
        check_time_zone(&self.time_zone)?;
        Ok(())
    }
}

/// Checks a name: not blank, not too long, no control characters.
pub fn check_name(what: &'static str, name: &str) -> Result<(), StreamError> {
    text::check_len(what, name, MAX_NAME_CHARS)?;
    if name.trim().is_empty() {
        return Err(StreamError::Invalid(format!("the {what} is empty")));
    }
    if name.chars().any(char::is_control) {
        return Err(StreamError::Invalid(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(())
}

pub fn check_time_zone(name: &str) -> Result<(), StreamError> {
    TimeZone::get(name).map(|_| ()).map_err(|_| {
        StreamError::Invalid(format!(
            "{} is not an IANA time zone (for example UTC, Europe/Paris, America/New_York)",
            excerpt(name)
        ))
    })
}

/// Changes to a stream; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StreamUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` removes the category.
    pub category: Option<Option<String>>,
    pub frequency: Option<Frequency>,
    pub value_type: Option<ValueType>,
    pub time_zone: Option<String>,
}

impl StreamUpdate {
    /// Applies the update to a definition.
    pub fn apply(&self, def: &StreamDefinition) -> StreamDefinition {
        let mut def = def.clone();
        if let Some(name) = &self.name {
            def.name = name.clone();
        }
        if let Some(description) = &self.description {
            def.description = description.clone();
        }
        if let Some(category) = &self.category {
            def.category = category.clone();
        }
        if let Some(frequency) = self.frequency {
            def.frequency = frequency;
        }
        if let Some(value_type) = self.value_type {
            def.value_type = value_type;
        }
        if let Some(time_zone) = &self.time_zone {
            def.time_zone = time_zone.clone();
        }
        def
    }
}

#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    pub category: Option<String>,
    pub status: Option<StreamStatus>,
    pub name_contains: Option<String>,
}

impl StreamFilter {
    /// Refuses filter texts longer than any name they could match.
    pub fn check(&self) -> Result<(), TooLong> {
        if let Some(category) = &self.category {
            text::check_name_len("category name", category)?;
        }
        if let Some(part) = &self.name_contains {
            text::check_name_len("name_contains filter", part)?;
        }
        Ok(())
    }
}

impl StreamFilter {
    pub fn matches(&self, stream: &Stream, now: Timestamp) -> bool {
        let category_ok = self.category.as_ref().is_none_or(|c| {
            stream
                .definition
                .category
                .as_ref()
                .is_some_and(|sc| sc.eq_ignore_ascii_case(c))
        });
        let status_ok = self.status.is_none_or(|s| stream.status(now) == s);
        let name_ok = self.name_contains.as_ref().is_none_or(|n| {
            stream
                .definition
                .name
                .to_lowercase()
                .contains(&n.to_lowercase())
        });
        category_ok && status_ok && name_ok
    }
}

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Generated by the server; its private key was handed out once.
    Generated,
    /// A public key an admin registered; the server never saw the private key.
    Registered,
}

impl KeyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Registered => "registered",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "registered" {
            Self::Registered
        } else {
            Self::Generated
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamKey {
    pub key_id: KeyId,
    pub public_key: [u8; 32],
    pub origin: KeyOrigin,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct Category {
    pub name: String,
    pub stream_count: u64,
    pub created_at: Timestamp,
}

/// What the publish path needs to know about a key and its stream.
#[derive(Debug, Clone)]
pub struct PublishingKey {
    pub public_key: [u8; 32],
    pub revoked_at: Option<Timestamp>,
    pub frequency: Frequency,
    pub value_type: ValueType,
    pub time_zone: String,
    pub disabled: bool,
}

/// What a delete removed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeletedCounts {
    pub points: u64,
    pub revisions: u64,
    pub keys: u64,
}
