//! Who may see and change what: users, teams, grants of streams, tokens, and the
//! audit log of admin actions. The rules are in `docs/permissions.md`.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::auth::Role;
use crate::ids::{OrgId, UserId};
use crate::text::{self, MAX_NAME_CHARS, TooLong, excerpt};

/// What a grant allows on a stream. `Manage` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Query and watch its values.
    Read,
    /// Update, disable, delete, manage keys and grants.
    Manage,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Manage => "manage",
        }
    }
}

impl FromStr for Access {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Ok(Self::Read),
            "manage" => Ok(Self::Manage),
            _ => Err(AccessError::Invalid(format!(
                "unknown access {}: use read or manage",
                excerpt(s)
            ))),
        }
    }
}

/// Whom a grant is for, by name within the organisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    /// One user, by name.
    User(String),
    /// Every member of a team, by name.
    Team(String),
    /// Everybody in the organisation.
    Org,
}

impl Grantee {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Team(_) => "team",
            Self::Org => "org",
        }
    }
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(name) => write!(f, "user:{name}"),
            Self::Team(name) => write!(f, "team:{name}"),
            Self::Org => f.write_str("org"),
        }
    }
}

/// Longest grant text: `team:` and the longest name, then `:manage`.
pub const MAX_GRANT_CHARS: usize = MAX_NAME_CHARS + "team::manage".len();

/// A grant as written on the command line: `user:NAME`, `team:NAME` or `org`, with an
/// optional `:read` or `:manage` (default read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpec {
    pub grantee: Grantee,
    pub access: Access,
}

impl FromStr for GrantSpec {
    type Err = AccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The longest grant names a user or team of the longest name, with its access.
        text::check_len("grant", s, MAX_GRANT_CHARS)?;
        let bad = || {
            AccessError::Invalid(format!(
                "{} is not a grant: write user:NAME, team:NAME or org, optionally followed by :read or :manage",
                excerpt(s)
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (grantee, access) = match parts.as_slice() {
            ["org"] => (Grantee::Org, None),
            ["org", access] => (Grantee::Org, Some(*access)),
            ["user", name] if !name.is_empty() => (Grantee::User((*name).to_owned()), None),
            ["team", name] if !name.is_empty() => (Grantee::Team((*name).to_owned()), None),
            ["user", name, access] if !name.is_empty() => {
                (Grantee::User((*name).to_owned()), Some(*access))
            }
            ["team", name, access] if !name.is_empty() => {
                (Grantee::Team((*name).to_owned()), Some(*access))
            }
            _ => return Err(bad()),
        };
        let access = access.map(str::parse).transpose()?.unwrap_or(Access::Read);
        Ok(Self { grantee, access })
    }
}

impl fmt::Display for GrantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.grantee, self.access.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    TooLong(#[from] TooLong),
    #[error("you may read stream {0} but not manage it: ask one of its managers or an org admin")]
    ReadOnly(String),
    #[error("only the server admin may {0}")]
    NotServerAdmin(&'static str),
    #[error(
        "you may only {0} your own tokens (an org admin may do it for anyone in the organisation)"
    )]
    NotYourToken(&'static str),
}

/// A user of an organisation.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
}

/// A team and the names of its members.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: String,
    pub members: Vec<String>,
    pub created_at: Timestamp,
}

/// A grant on a stream.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grantee: Grantee,
    pub access: Access,
    pub created_at: Timestamp,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub user: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// One admin action.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Increases with every entry of the store; pages of the log go by it.
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub detail: String,
}

/// An admin action to record.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub org: &'a OrgId,
    pub actor_id: &'a UserId,
    pub actor_name: &'a str,
    pub action: &'static str,
    pub target_kind: &'static str,
    pub target_id: String,
    pub detail: String,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub target: Option<String>,
    pub actor: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: u32,
    /// Only entries older than the entry with this id (the page before it).
    pub before: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_specs_parse_with_read_as_the_default() {
        let g: GrantSpec = "team:finance".parse().unwrap();
        assert_eq!(g.grantee, Grantee::Team("finance".into()));
        assert_eq!(g.access, Access::Read);
        let g: GrantSpec = "user:ada:manage".parse().unwrap();
        assert_eq!(
            (g.grantee, g.access),
            (Grantee::User("ada".into()), Access::Manage)
        );
        assert_eq!("org".parse::<GrantSpec>().unwrap().grantee, Grantee::Org);
        for bad in ["", "team", "team:", "group:x", "user:a:write", "org:x:read"] {
            assert!(bad.parse::<GrantSpec>().is_err(), "{bad}");
        }
    }
}
