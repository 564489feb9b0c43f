//! Bearer tokens and the principal a request acts as.
//!
//! Tokens are 256 random bits shown once; the server keeps only their SHA-256 (a fast
//! hash is enough for secrets of that much entropy, and lets a lookup use an index).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::ids::{OrgId, UserId};

/// The prefix that makes a kpistream token recognisable (for secret scanners too).
pub const TOKEN_PREFIX: &str = "kpit_";

/// What a user may do in their organisation (`docs/permissions.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages users, teams, categories and every stream of the organisation.
    Admin,
    /// Sees and manages only what is granted to them.
    Member,
    /// Runs connectors: keeps connector state through the `Runner` service and reads
    /// every stream of the organisation (its settings and values); changes nothing else.
    Runner,
}

impl Role {
    /// `admin` or `member`, as on the wire and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Runner => "runner",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "admin" => Self::Admin,
            "runner" => Self::Runner,
            _ => Self::Member,
        }
    }
}

/// Who a request acts as, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub name: String,
    pub org_id: OrgId,
    /// The organisation's name, as its people know it.
    pub org_name: String,
    pub role: Role,
    /// May create organisations (the first start's admin).
    pub server_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this call needs a token: send the header `authorization: Bearer <token>`")]
    MissingToken,
    #[error("the authorization header must be `Bearer <token>`")]
    MalformedHeader,
    #[error("the token is not valid: it is unknown, revoked or expired")]
    InvalidToken,
    #[error("only an organisation admin may {0}")]
    NotAdmin(&'static str),
    #[error("only an organisation admin or a runner may {0}")]
    NotRunner(&'static str),
    #[error(
        "a runner may not {0}: runner tokens keep connector state and read streams, nothing else"
    )]
    RunnerMayNot(&'static str),
}

/// A new random token.
pub fn generate_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The value stored for a token.
pub fn hash_token(token: &SecretString) -> [u8; 32] {
    Sha256::digest(token.expose_secret().as_bytes()).into()
}

/// Reads the token out of an `authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<SecretString, AuthError> {
    let header = header.ok_or(AuthError::MissingToken)?;
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::MalformedHeader);
    }
    Ok(SecretString::from(token.trim().to_owned()))
}

impl Principal {
    /// Refuses unless the principal is an org admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require_admin(&self, action: &'static str) -> Result<(), AuthError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Member | Role::Runner => Err(AuthError::NotAdmin(action)),
        }
    }

    /// Refuses unless the principal is an org admin or a runner.
    pub fn require_runner(&self, action: &'static str) -> Result<(), AuthError> {
        match self.role {
            Role::Admin | Role::Runner => Ok(()),
            Role::Member => Err(AuthError::NotRunner(action)),
        }
    }

    /// Refuses a runner: for what only people do (creating streams).
    pub fn refuse_runner(&self, action: &'static str) -> Result<(), AuthError> {
        match self.role {
            Role::Runner => Err(AuthError::RunnerMayNot(action)),
            Role::Admin | Role::Member => Ok(()),
        }
    }

    /// Reads every stream of the organisation without a grant: admins, and runners
    /// (which read each connector's stream).
    pub fn reads_every_stream(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Runner)
    }
}
