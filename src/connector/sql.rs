//! The `sql` source: one read-only query against PostgreSQL, MySQL/MariaDB or SQLite.

use std::path::PathBuf;

use serde::Deserialize;

use super::Duration;

/// `type = "sql"`: the query runs in a read-only transaction (SQLite is opened
/// read-only) with a statement timeout; columns are mapped by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSource {
    /// Name of a `type = "sql"` connection in `connections.toml` giving the URL and the
    /// password; then `url` and the password fields are left out.
    pub connection: Option<String>,
    /// Connection URL without a password: `postgres://USER@HOST/DB`,
    /// `mysql://USER@HOST/DB` (MariaDB too) or `sqlite://PATH`.
    pub url: Option<String>,
    /// Environment variable holding the database password (at most one of
    /// `password_env` and `password_file`; none for SQLite or trust authentication).
    pub password_env: Option<String>,
    /// File holding the database password.
    pub password_file: Option<PathBuf>,
    /// The query. `{{cursor}}`, `{{period.start}}`, `{{period.end}}` and `{{now}}` are
    /// bound as parameters (the runner puts the driver's placeholder there), never
    /// pasted into the text; `{{env.NAME}}` is refused here for the same reason.
    pub query: String,
    /// Longest time the query may run before it is cancelled (default `"30s"`).
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: Duration,
}

fn default_statement_timeout() -> Duration {
    Duration::secs(30)
}
