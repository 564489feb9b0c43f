//! Reading a connector directory: every `*.toml` but `connections.toml` is one
//! connector. Every problem found becomes a [`DefinitionError`] naming the file, the
//! field and (where it can be found) the line; checking goes on so one pass shows them all.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::Check;
use super::{ConnectorDef, RestAuth};

/// The file of shared connections, in the connector directory.
pub const CONNECTIONS_FILE: &str = "connections.toml";

/// One problem in one definition file, displayed as a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// The file it is in.
    pub file: PathBuf,
    /// The field, as a dotted path (`source.auth.token_env`), when there is one.
    pub field: Option<String>,
    /// The 1-based line, when it could be found.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DefinitionError {}

/// A named connection of `connections.toml`, shared by several connectors: changing the
/// account a source is read with is one edit there.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Connection {
    /// An HTTP API: base URL and authentication.
    Rest {
        /// Base URL the connectors' `url` paths are joined to, e.g. `"https://api.example.com"`.
        base_url: String,
        /// Authentication of every request (same forms as a source's `auth`).
        auth: Option<RestAuth>,
    },
    /// A database: URL and password source.
    Sql {
        /// Connection URL without a password (`postgres://`, `mysql://`, `sqlite://`).
        url: String,
        /// Environment variable holding the password (at most one of the two).
        password_env: Option<String>,
        /// File holding the password.
        password_file: Option<PathBuf>,
    },
}

impl Connection {
    /// `"rest"` or `"sql"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rest { .. } => "rest",
            Self::Sql { .. } => "sql",
        }
    }
}

/// What checking a directory found: the valid connectors and every problem.
#[derive(Debug, Default)]
pub struct DirReport {
    /// Connectors that passed every check, with their files, sorted by file name.
    pub connectors: Vec<(PathBuf, ConnectorDef)>,
    /// Every problem, in file order.
    pub errors: Vec<DefinitionError>,
    /// The connections of `connections.toml` the connectors were checked against:
    /// none when the file is missing or has a problem.
    pub connections: BTreeMap<String, Connection>,
}

/// Reads and checks every connector of `dir`; all of them, or every problem found.
pub fn load_dir(dir: &Path) -> Result<Vec<ConnectorDef>, Vec<DefinitionError>> {
    let report = check_dir(dir);
    if report.errors.is_empty() {
        Ok(report.connectors.into_iter().map(|(_, c)| c).collect())
    } else {
        Err(report.errors)
    }
}

/// Reads and checks every connector of `dir`, keeping the valid ones and the problems.
pub fn check_dir(dir: &Path) -> DirReport {
    let mut report = DirReport::default();
    let files = match toml_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.errors.push(DefinitionError {
                file: dir.to_owned(),
                field: None,
                line: None,
                message: format!("the connector directory cannot be read: {e}"),
            });
            return report;
        }
    };
    let connections_path = dir.join(CONNECTIONS_FILE);
    if connections_path.exists() {
        match load_connections(&connections_path) {
            Ok(connections) => report.connections = connections,
            Err(errors) => report.errors.extend(errors),
        }
    }
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        match load_file(&file, &report.connections) {
            Ok(def) => {
                if let Some(first) = seen.get(&def.name) {
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    report.errors.push(DefinitionError {
                        line: super::check::line_of(&text, "name"),
                        file: file.clone(),
                        field: Some("name".into()),
                        message: format!(
                            "the name {:?} is already used by {}; connector names must be unique",
                            def.name,
                            first.display()
                        ),
                    });
                    continue;
                }
                seen.insert(def.name.clone(), file.clone());
                report.connectors.push((file, def));
            }
            Err(errors) => report.errors.extend(errors),
        }
    }
    report
}

/// The `*.toml` files of `dir` but `connections.toml`, sorted.
fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let is_connections = path.file_name().is_some_and(|n| n == CONNECTIONS_FILE);
        if is_toml && !is_connections && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and checks one connector file against the shared connections.
pub fn load_file(
    file: &Path,
    connections: &BTreeMap<String, Connection>,
) -> Result<ConnectorDef, Vec<DefinitionError>> {
    let text = read(file)?;
    let mut check = Check::new(file, &text);
    check.inline_secrets();
    if !check.is_empty() {
        return Err(check.into_errors());
    }
    let def: ConnectorDef = toml::from_str(&text).map_err(|e| vec![check.toml_error(&e)])?;
    check.connector(&def, connections);
    if check.is_empty() {
        Ok(def)
    } else {
        Err(check.into_errors())
    }
}

/// Reads and checks `connections.toml`.
pub fn load_connections(file: &Path) -> Result<BTreeMap<String, Connection>, Vec<DefinitionError>> {
    let text = read(file)?;
    let mut check = Check::new(file, &text);
    check.inline_secrets();
    if !check.is_empty() {
        return Err(check.into_errors());
    }
    let connections: BTreeMap<String, Connection> =
        toml::from_str(&text).map_err(|e| vec![check.toml_error(&e)])?;
    for (name, connection) in &connections {
        check.connection(name, connection);
    }
    if check.is_empty() {
        Ok(connections)
    } else {
        Err(check.into_errors())
    }
}

fn read(file: &Path) -> Result<String, Vec<DefinitionError>> {
    std::fs::read_to_string(file).map_err(|e| {
        vec![DefinitionError {
            file: file.to_owned(),
            field: None,
            line: None,
            message: format!("the file cannot be read: {e}"),
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQL: &str = r#"
name = "signups"
credential_file = "signups.kpik"
schedule = "@daily"

[mapping]
period = "day"
value = "n"

[source]
type = "sql"
url = "sqlite://data/app.db"
query = "SELECT day, n FROM signups WHERE day > {{cursor}}"

[cursor]
field = "day"
"#;

    fn load(text: &str) -> Result<ConnectorDef, Vec<DefinitionError>> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        load_file(&file, &BTreeMap::new())
    }

    #[test]
    fn defaults_apply_to_a_minimal_sql_connector() {
        let def = load(SQL).unwrap();
        assert!(def.enabled);
        assert_eq!(def.max_consecutive_failures, 10);
        assert_eq!(def.timezone.as_str(), "UTC");
        assert_eq!(def.retry.max_attempts, 5);
        assert_eq!(def.source_kind(), "sql");
    }

    #[test]
    fn an_env_template_in_a_sql_query_is_refused_because_values_are_bound() {
        let errors = load(&SQL.replace("{{cursor}}", "'{{env.DAY}}'")).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("bound as parameters")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_password_inside_a_database_url_is_refused() {
        let errors =
            load(&SQL.replace("sqlite://data/app.db", "postgres://u:pw@db/app")).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("source.url"));
        assert!(!errors[0].to_string().contains("pw@"), "{}", errors[0]);
    }

    #[test]
    fn a_jsonpath_mapping_on_a_sql_source_is_refused() {
        let errors = load(&SQL.replace("value = \"n\"", "value = \"$.n\"")).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("mapping.value"));
        assert_eq!(errors[0].line, Some(8));
    }

    #[test]
    fn a_filter_condition_needs_exactly_one_operator() {
        let text = format!(
            "{SQL}\n[filter]\nmatch = \"any\"\nconditions = [{{ field = \"n\", gt = 1, lt = 5 }}]\n"
        );
        let errors = load(&text).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("filter.conditions[0]"));
    }

    #[test]
    fn a_missing_credential_source_is_named() {
        let errors = load(&SQL.replace("credential_file = \"signups.kpik\"\n", "")).unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .contains("neither `credential_env` nor `credential_file`")
        );
    }

    /// The fields and messages of a definition's problems.
    fn problems(text: &str) -> Vec<(String, String)> {
        load(text)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field.unwrap_or_default(), e.message))
            .collect()
    }

    #[test]
    fn an_aggregate_is_checked_against_the_mapping_and_on_existing() {
        let counting = format!("{SQL}\n[aggregate]\nfunction = \"count\"\n");
        let counting = counting.replace("value = \"n\"\n", "");
        let def = load(&counting).unwrap();
        assert_eq!(def.aggregate.unwrap().scale, 4, "the default scale");

        let summing = SQL.replace("value = \"n\"\n", "");
        let summing = format!("{summing}\n[aggregate]\nfunction = \"sum\"\n");
        let found = problems(&summing);
        assert_eq!(found[0].0, "mapping.value", "{found:?}");
        assert!(found[0].1.contains("count_distinct"), "{found:?}");

        let distinct = format!("{SQL}\n[aggregate]\nfunction = \"count_distinct\"\n");
        assert_eq!(problems(&distinct)[0].0, "aggregate.field");
        let kept =
            format!("on_existing = \"keep\"\n{SQL}\n[aggregate]\nfunction = \"avg\"\nscale = 40\n");
        let fields: Vec<String> = problems(&kept).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["aggregate.scale", "on_existing"]);
        let by_update_time = format!("{SQL}\n[aggregate]\nfunction = \"sum\"\n").replace(
            "[cursor]\nfield = \"day\"",
            "[cursor]\nfield = \"updated_at\"",
        );
        assert_eq!(problems(&by_update_time)[0].0, "cursor.field");
        let unknown = format!("{SQL}\n[aggregate]\nfunction = \"median\"\n");
        assert!(
            problems(&unknown)[0].1.contains("median"),
            "{:?}",
            problems(&unknown)
        );
    }

    #[test]
    fn a_lookback_is_a_positive_span_or_a_number_of_periods_and_needs_a_cursor() {
        for ok in ["\"7d\"", "\"48h\"", "\"2w\"", "3"] {
            let def = load(&format!("lookback = {ok}\n{SQL}")).unwrap();
            assert!(def.lookback.is_some(), "{ok}");
        }
        for bad in ["\"-3d\"", "\"soon\"", "0", "true"] {
            let found = problems(&format!("lookback = {bad}\n{SQL}"));
            assert!(found[0].1.contains("not a"), "{bad}: {found:?}");
        }
        let (before_cursor, _) = SQL.split_once("[cursor]").unwrap();
        let uncursored = before_cursor.replace("WHERE day > {{cursor}}", "");
        let found = problems(&format!("lookback = \"7d\"\n{uncursored}"));
        assert_eq!(found[0].0, "lookback", "{found:?}");
    }
}
