//! What a run reads from the runner's own machine: the stream credential, the secrets of
//! its source or of the connection it names (environment variables and files), that
//! connection, and the variables of its `{{env.NAME}}` templates. They are read before
//! the run takes its lease, and the run uses what was read, so a mistake on this machine
//! (a variable not set, a file missing) stops the run before the server hears of it: no
//! run is reported, no failure counted, no cursor moved. Such a mistake is the
//! operator's to fix here and says nothing about the source, so it must not count
//! towards disabling the connector. What the source answers (an HTTP error, a refused
//! login, a failing query or command) stays a failure of the run.

use std::path::PathBuf;

use super::rest::{self, RestContext, RestInputs};
use super::run::Job;
use super::secret;
use super::sql::Database;
use super::template::{TemplateError, env_vars};
use crate::connector::{
    CONNECTIONS_FILE, CommandSource, Connection, ConnectorDef, RestSource, Source, SqlSource,
};
use crate::signature::{Credential, CredentialError};

/// A mistake in what the runner's machine provides for a connector. Messages name the
/// field, the variable or the file, never a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A secret's environment variable is not set (or is empty).
    #[error("the environment variable {var} that {field} names is not set")]
    VariableNotSet {
        /// The field reading it (`credential`, `source.auth.token`).
        field: String,
        /// The variable's name.
        var: String,
    },
    /// A secret's file cannot be read.
    #[error("the file {} that {field} names cannot be read: {kind}", path.display())]
    FileUnreadable {
        /// The field reading it.
        field: String,
        /// The file.
        path: PathBuf,
        /// Why (not found, permission denied, …).
        kind: std::io::ErrorKind,
    },
    /// A secret's file is empty.
    #[error("the file {} that {field} names is empty", path.display())]
    FileEmpty {
        /// The field reading it.
        field: String,
        /// The file.
        path: PathBuf,
    },
    /// A secret the source needs names neither a variable nor a file.
    #[error("{field} is read from neither an environment variable nor a file")]
    NoSecret {
        /// The field.
        field: String,
    },
    /// The credential's text is not a kpistream credential.
    #[error("the connector's credential is not valid: {0}")]
    Credential(#[from] CredentialError),
    /// An `{{env.NAME}}` template names a variable that is not set.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A definition the run cannot use: a connection `connections.toml` no longer has
    /// or one of another kind, a database URL, header name or token URL that does not
    /// parse. The directory check refuses most of these; a connector keeps running its
    /// last good definition, though, while `connections.toml` changes under it.
    #[error("{0}")]
    Definition(String),
}

impl ConfigError {
    /// The source names the connection `name`, which `connections.toml` does not hold
    /// (`found` is `None`) or holds as another kind than `wanted` (`"rest"`, `"sql"`).
    pub fn unusable_connection(name: &str, found: Option<&Connection>, wanted: &str) -> Self {
        Self::Definition(match found {
            Some(other) => format!(
                "the connection {name} in {CONNECTIONS_FILE} is a {} connection; this source needs a {wanted} one",
                other.kind()
            ),
            None => format!("the connection {name} is not in {CONNECTIONS_FILE}"),
        })
    }
}

/// What one run read from this machine, before it took its lease.
pub struct LocalInputs<'a> {
    /// The stream credential.
    pub credential: Credential,
    /// The source, with what it needs.
    pub source: SourceInputs<'a>,
}

/// A connector's source with what it reads from this machine, by kind.
pub enum SourceInputs<'a> {
    /// The connection's base URL and the authentication, secrets read.
    Rest(&'a RestSource, RestInputs),
    /// The database, its password read.
    Sql(&'a SqlSource, Database),
    /// A command reads nothing ahead (its `{{env.NAME}}` variables are checked).
    Command(&'a CommandSource),
}

impl<'a> LocalInputs<'a> {
    /// Reads the credential and the source's secrets, and checks that every variable
    /// of the source's templates is set.
    pub fn read(rest_context: &RestContext, job: &'a Job) -> Result<Self, ConfigError> {
        let def = &job.def;
        let credential = load_credential(def)?;
        let connection = |name: &Option<String>| name.as_ref().and_then(|n| job.connections.get(n));
        let source = match &def.source {
            Source::Rest(source) => {
                every_variable_set(rest::template_texts(source))?;
                let inputs =
                    RestInputs::read(rest_context, source, connection(&source.connection))?;
                SourceInputs::Rest(source, inputs)
            }
            Source::Sql(source) => SourceInputs::Sql(
                source,
                Database::resolve(source, connection(&source.connection))?,
            ),
            Source::Command(source) => {
                let texts = source.argv.iter().chain(source.env.values());
                every_variable_set(texts.map(String::as_str))?;
                SourceInputs::Command(source)
            }
        };
        Ok(Self { credential, source })
    }
}

/// The stream credential the definition names, from its variable or file.
pub fn load_credential(def: &ConnectorDef) -> Result<Credential, ConfigError> {
    let secret = secret::load(
        "credential",
        def.credential_env.as_deref(),
        def.credential_file.as_deref(),
    )?
    .ok_or_else(|| ConfigError::NoSecret {
        field: "credential".into(),
    })?;
    Ok(secrecy::ExposeSecret::expose_secret(&secret).parse::<Credential>()?)
}

/// Fails on the first `{{env.NAME}}` of `texts` whose variable is not set. Rendering
/// reads the same variables later in the run; a process's environment does not change
/// under it, so what is checked here is what the run gets.
fn every_variable_set<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    for text in texts {
        if let Some(var) = env_vars(text).find(|var| std::env::var(var).is_err()) {
            return Err(TemplateError::MissingEnv(var.to_owned()).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::ids::{KeyId, StreamId};

    const UNSET: &str = "KPISTREAM_LOCAL_TEST_UNSET";

    fn job(credential: &str, source: &str) -> Job {
        let text = format!(
            "name = \"t\"\n{credential}\nschedule = \"@daily\"\n\
             [mapping]\nperiod = \"day\"\nvalue = \"value\"\n[source]\n{source}\n"
        );
        Job {
            def: Arc::new(toml::from_str(&text).unwrap()),
            connections: Arc::new(BTreeMap::new()),
        }
    }

    fn read(job: &Job) -> Result<(), ConfigError> {
        LocalInputs::read(&RestContext::new(), job).map(|_| ())
    }

    #[test]
    fn what_this_machine_lacks_is_a_configuration_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.kpik");
        let credential = Credential::generate(StreamId::generate(), KeyId::generate());
        std::fs::write(&good, credential.expose_secret()).unwrap();
        let bad = dir.path().join("bad.kpik");
        std::fs::write(&bad, "not a credential").unwrap();
        let file =
            |path: &std::path::Path| format!("credential_file = {:?}", path.display().to_string());
        let command = "type = \"command\"\nargv = [\"echo\"]";

        let e = read(&job(&format!("credential_env = \"{UNSET}\""), command)).unwrap_err();
        assert!(
            matches!(&e, ConfigError::VariableNotSet { var, .. } if var == UNSET),
            "{e}"
        );
        let e = read(&job(&file(&dir.path().join("nope")), command)).unwrap_err();
        assert!(matches!(e, ConfigError::FileUnreadable { .. }), "{e}");
        let e = read(&job(&file(&bad), command)).unwrap_err();
        assert!(matches!(e, ConfigError::Credential(_)), "{e}");
        assert!(!e.to_string().contains("not a credential"), "{e}");

        let good = file(&good);
        let rest = format!(
            "type = \"rest\"\nurl = \"https://example.com\"\n\
             auth = {{ type = \"bearer\", token_env = \"{UNSET}\" }}"
        );
        let e = read(&job(&good, &rest)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the environment variable {UNSET} that source.auth.token names is not set")
        );
        let templated = format!("type = \"command\"\nargv = [\"echo\", \"{{{{env.{UNSET}}}}}\"]");
        let e = read(&job(&good, &templated)).unwrap_err();
        assert!(matches!(e, ConfigError::Template(_)), "{e}");
        let sql = "type = \"sql\"\nconnection = \"warehouse\"\nquery = \"SELECT 1\"";
        let e = read(&job(&good, sql)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the connection warehouse is not in connections.toml"
        );
        read(&job(&good, command)).expect("nothing is missing");
    }
}
