//! The checks serde cannot make: one-of-two fields, secrets written inline, known
//! connections and templates, the shape of field references. Each problem is recorded
//! with its field and line, and checking goes on.

use std::collections::BTreeMap;
use std::path::Path;

mod source;

use super::load::{Connection, DefinitionError};
use super::{Aggregate, Alerts, ConnectorDef, Filter, Source};

/// Keys that would hold a secret if written inline, and are refused anywhere in a file.
const SECRET_KEYS: &[&str] = &[
    "credential",
    "token",
    "password",
    "secret",
    "client_secret",
    "api_key",
    "private_key",
];

/// Tables whose keys are the user's own names (headers, parameters, variables, body).
const FREE_FORM_TABLES: &[&str] = &["headers", "query", "env", "body"];

/// Template names usable in strings, `{{env.NAME}}` aside.
const TEMPLATES: &[&str] = &["cursor", "period.start", "period.end", "now"];

/// The problems found in one file so far.
pub(super) struct Check<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<DefinitionError>,
}

impl<'a> Check<'a> {
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            errors: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(super) fn into_errors(self) -> Vec<DefinitionError> {
        self.errors
    }

    fn error(&mut self, field: &str, message: String) {
        self.errors.push(DefinitionError {
            file: self.file.to_owned(),
            field: Some(field.to_owned()),
            line: line_of(self.text, field),
            message,
        });
    }

    /// A TOML syntax or type error, with the key on its line as the field.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> DefinitionError {
        let line = e.span().map(|s| {
            self.text[..s.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        });
        let field = line.and_then(|n| key_on_line(self.text.lines().nth(n - 1)?));
        let mut message = e.message().trim().to_owned();
        if let Some(unknown) = message.strip_prefix("unknown field ") {
            message = format!("{unknown} (a typo, or a field this version does not know)");
            message.insert_str(0, "unknown field ");
        }
        DefinitionError {
            file: self.file.to_owned(),
            field,
            line,
            message,
        }
    }

    /// Refuses secrets written inline, before the typed parse reports them as unknown.
    pub(super) fn inline_secrets(&mut self) {
        let Ok(table) = self.text.parse::<toml::Table>() else {
            return; // the typed parse reports the syntax error
        };
        self.secrets_in(&table, "");
    }

    fn secrets_in(&mut self, table: &toml::Table, prefix: &str) {
        for (key, value) in table {
            let path = join(prefix, key);
            if SECRET_KEYS.contains(&key.as_str()) && value.is_str() {
                self.error(&path, inline_secret_message(key));
            } else if let toml::Value::Table(inner) = value {
                if !FREE_FORM_TABLES.contains(&key.as_str()) {
                    self.secrets_in(inner, &path);
                }
            } else if let toml::Value::Array(items) = value {
                for item in items.iter().filter_map(toml::Value::as_table) {
                    self.secrets_in(item, &path);
                }
            }
        }
    }

    pub(super) fn connector(
        &mut self,
        def: &ConnectorDef,
        connections: &BTreeMap<String, Connection>,
    ) {
        if def.name.is_empty()
            || !def
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.error(
                "name",
                format!(
                    "{:?} is not a connector name: use letters, digits, `-` and `_`",
                    def.name
                ),
            );
        }
        let credential_file = def
            .credential_file
            .as_ref()
            .map(|p| p.display().to_string());
        self.one_secret(
            "credential",
            def.credential_env.as_deref(),
            credential_file.as_deref(),
            true,
        );
        if def.max_consecutive_failures == 0 {
            self.error("max_consecutive_failures", "must be at least 1".into());
        }
        if def.retry.max_attempts == 0 {
            self.error(
                "retry.max_attempts",
                "must be at least 1 (1 means no retry)".into(),
            );
        }
        if def.retry.initial_backoff.0 > def.retry.max_backoff.0 {
            self.error(
                "retry.initial_backoff",
                "is longer than `retry.max_backoff`".into(),
            );
        }
        self.alerts(&def.alerts);
        let kind = def.source_kind();
        if let Some(filter) = &def.filter {
            self.filter(filter, kind);
        }
        if let Some(cursor) = &def.cursor {
            self.reference("cursor.field", &cursor.field, kind);
        }
        self.mapping(def, kind);
        let uses_cursor = match &def.source {
            Source::Rest(rest) => self.rest(rest, connections),
            Source::Sql(sql) => self.sql(sql, connections),
            Source::Command(command) => self.command(command),
        };
        if uses_cursor && def.cursor.is_none() {
            self.error(
                "cursor",
                "the source uses {{cursor}} but the file declares no [cursor] (give its `field`)"
                    .into(),
            );
        }
    }

    /// Exactly one (or, when optional, at most one) of `NAME_env` and `NAME_file`.
    fn one_secret(&mut self, prefix: &str, env: Option<&str>, file: Option<&str>, required: bool) {
        match (env, file) {
            (Some(_), Some(_)) => self.error(
                &format!("{prefix}_env"),
                format!("both `{prefix}_env` and `{prefix}_file` are set; give exactly one"),
            ),
            (None, None) if required => self.error(
                &format!("{prefix}_env"),
                format!("neither `{prefix}_env` nor `{prefix}_file` is set; give exactly one"),
            ),
            (Some(name), None) => self.env_name(&format!("{prefix}_env"), name),
            (None, Some("")) => self.error(&format!("{prefix}_file"), "is empty".into()),
            _ => {}
        }
    }

    fn env_name(&mut self, field: &str, name: &str) {
        if !is_env_name(name) {
            self.error(
                field,
                format!("{name:?} is not an environment variable name (letters, digits and `_`, not starting with a digit); the value itself never goes here"),
            );
        }
    }

    fn alerts(&mut self, alerts: &Alerts) {
        if let Some(email) = &alerts.email {
            if email.to.is_empty() {
                self.error("alerts.email.to", "lists no recipient".into());
            }
            for address in email.to.iter().chain([&email.from]) {
                if !address.contains('@') {
                    self.error(
                        "alerts.email.to",
                        format!("{address:?} is not an email address"),
                    );
                }
            }
            for (field, name) in [
                ("alerts.email.smtp_host_env", Some(&email.smtp_host_env)),
                ("alerts.email.smtp_port_env", Some(&email.smtp_port_env)),
                (
                    "alerts.email.smtp_username_env",
                    email.smtp_username_env.as_ref(),
                ),
                (
                    "alerts.email.smtp_password_env",
                    email.smtp_password_env.as_ref(),
                ),
            ] {
                if let Some(name) = name {
                    self.env_name(field, name);
                }
            }
        }
        if let Some(webhook) = &alerts.webhook {
            match (&webhook.url, &webhook.url_env) {
                (Some(url), None) => self.http_url("alerts.webhook.url", url),
                (None, Some(name)) => self.env_name("alerts.webhook.url_env", name),
                _ => self.error(
                    "alerts.webhook.url",
                    "give exactly one of `url` and `url_env`".into(),
                ),
            }
        }
    }

    fn filter(&mut self, filter: &Filter, kind: &str) {
        if filter.conditions.is_empty() {
            self.error("filter.conditions", "lists no condition".into());
        }
        for (i, c) in filter.conditions.iter().enumerate() {
            let field = format!("filter.conditions[{i}]");
            self.reference(&format!("{field}.field"), &c.field, kind);
            let ops = [
                c.equals.is_some(),
                c.not_equals.is_some(),
                c.contains.is_some(),
                c.gt.is_some(),
                c.lt.is_some(),
                c.exists.is_some(),
            ];
            if ops.iter().filter(|set| **set).count() != 1 {
                self.error(
                    &field,
                    "needs exactly one of `equals`, `not_equals`, `contains`, `gt`, `lt`, `exists`"
                        .into(),
                );
            }
            for value in [&c.equals, &c.not_equals, &c.gt, &c.lt]
                .into_iter()
                .flatten()
            {
                if matches!(value, toml::Value::Array(_) | toml::Value::Table(_)) {
                    self.error(
                        &field,
                        "compares with a string, a number or a boolean only".into(),
                    );
                }
            }
        }
    }

    fn mapping(&mut self, def: &ConnectorDef, kind: &str) {
        let m = &def.mapping;
        match (&m.period, &m.timestamp) {
            (Some(p), None) => self.reference("mapping.period", p, kind),
            (None, Some(t)) => self.reference("mapping.timestamp", t, kind),
            _ => self.error(
                "mapping.period",
                "give exactly one of `period` and `timestamp`".into(),
            ),
        }
        let reads_value = def
            .aggregate
            .as_ref()
            .is_none_or(|a| a.function.reads_value());
        match &m.value {
            Some(value) => self.reference("mapping.value", value, kind),
            None if reads_value => self.error(
                "mapping.value",
                "is missing: name the field holding the value (only `[aggregate]` functions `count` and `count_distinct` do without)".into(),
            ),
            None => {}
        }
        if let Some(id) = &m.external_id {
            self.reference("mapping.external_id", id, kind);
        }
        if let Some(aggregate) = &def.aggregate {
            self.aggregate(def, aggregate, kind);
        }
        if def.lookback.is_some() && def.cursor.is_none() {
            self.error(
                "lookback",
                "needs a [cursor]: without one every run pulls everything already".into(),
            );
        }
    }

    fn aggregate(&mut self, def: &ConnectorDef, aggregate: &Aggregate, kind: &str) {
        use super::AggregateFunction::CountDistinct;
        use super::GROUP_PLACEHOLDER;
        match (&aggregate.field, aggregate.function) {
            (Some(field), CountDistinct) => self.reference("aggregate.field", field, kind),
            (None, CountDistinct) => self.error(
                "aggregate.field",
                "is missing: `count_distinct` counts the distinct values of this field".into(),
            ),
            (Some(_), _) => self.error(
                "aggregate.field",
                "is read by `count_distinct` only; the other functions read `mapping.value`".into(),
            ),
            (None, _) => {}
        }
        match (&aggregate.group_by, &aggregate.group_credential_file) {
            (Some(field), Some(path)) => {
                self.reference("aggregate.group_by", field, kind);
                if !path.contains(GROUP_PLACEHOLDER) {
                    self.error(
                        "aggregate.group_credential_file",
                        format!(
                            "{path:?} does not hold {GROUP_PLACEHOLDER}: each group needs a credential file of its own"
                        ),
                    );
                }
            }
            (Some(_), None) => self.error(
                "aggregate.group_credential_file",
                "is missing: aggregate.group_by publishes each group to a stream of its own, whose credential file this names (with {{group}})".into(),
            ),
            (None, Some(_)) => self.error(
                "aggregate.group_by",
                "is missing: aggregate.group_credential_file is read only when records are grouped".into(),
            ),
            (None, None) => {}
        }
        if aggregate.scale > 28 {
            self.error(
                "aggregate.scale",
                format!(
                    "{} decimals is more than the 28 a value can have",
                    aggregate.scale
                ),
            );
        }
        if def.on_existing == super::OnExisting::Keep {
            self.error(
                "on_existing",
                "\"keep\" does not go with [aggregate]: a period would keep the aggregate of the first records that reached it".into(),
            );
        }
        let time_field = def
            .mapping
            .timestamp
            .as_ref()
            .or(def.mapping.period.as_ref());
        if let Some(cursor) = def.cursor.as_ref().filter(|c| Some(&c.field) != time_field) {
            self.error(
                "cursor.field",
                format!(
                    "{:?} is not the mapping's time field: with [aggregate], a run pulls whole periods from the cursor on, which needs the cursor to be the field that places records in periods (an update time would pull only the records changed since, and publish their part as the period's value)",
                    cursor.field
                ),
            );
        }
        if def.mapping.external_id.is_some() {
            self.error(
                "mapping.external_id",
                "does not go with [aggregate]: an aggregated value comes from many records".into(),
            );
        }
    }

    /// A record field: a JSONPath for REST, a plain name for SQL and commands.
    fn reference(&mut self, field: &str, value: &str, kind: &str) {
        let ok = match kind {
            "rest" => value.starts_with('$'),
            _ => !value.is_empty() && !value.starts_with('$'),
        };
        if !ok {
            let want = match kind {
                "rest" => "a JSONPath into the record, such as \"$.amount\"",
                "sql" => "a column name",
                _ => "a key of the JSON lines or a CSV header",
            };
            self.error(field, format!("{value:?} is not {want}"));
        }
    }

    /// Checks the `{{…}}` templates of one string; returns whether it uses `{{cursor}}`.
    fn templates(&mut self, field: &str, text: &str, env_allowed: bool) -> bool {
        let mut uses_cursor = false;
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                self.error(
                    field,
                    format!("{text:?} opens a template with {{{{ that is never closed"),
                );
                break;
            };
            let name = after[..end].trim();
            uses_cursor |= name == "cursor";
            let known = TEMPLATES.contains(&name)
                || name
                    .strip_prefix("env.")
                    .is_some_and(|n| env_allowed && is_env_name(n));
            if !known {
                let why = if name.starts_with("env.") && !env_allowed {
                    "{{env.NAME}} is not allowed in a SQL query: values are bound as parameters, never pasted in".to_owned()
                } else {
                    "the templates are {{cursor}}, {{period.start}}, {{period.end}}, {{now}} and {{env.NAME}}".to_owned()
                };
                self.error(field, format!("unknown template {{{{{name}}}}}: {why}"));
            }
            rest = &after[end + 2..];
        }
        uses_cursor
    }
}

fn inline_secret_message(key: &str) -> String {
    let base = if key == "credential" {
        "credential"
    } else {
        key
    };
    format!(
        "a secret is written inline; connector files are committed and read by everyone who can read the folder, so secrets come from the environment or a file: use `{base}_env` (a variable's name) or `{base}_file` (a file's path) instead"
    )
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The key defined on a line (`key = …`) or the table it opens (`[a.b]`).
fn key_on_line(line: &str) -> Option<String> {
    let line = line.trim();
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    }
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"').to_owned())
}

/// The line where a dotted field is defined: its own `key =` line under the right table,
/// or else the line of its closest parent (an inline table, a table header).
pub(super) fn line_of(text: &str, field: &str) -> Option<usize> {
    let field: String = field.split('[').next().unwrap_or(field).to_owned();
    let mut path = field.as_str();
    loop {
        if let Some(line) = exact_line(text, path) {
            return Some(line);
        }
        path = path.rsplit_once('.')?.0;
    }
}

fn exact_line(text: &str, path: &str) -> Option<usize> {
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            table = key_on_line(trimmed).unwrap_or_default();
            if table == path {
                return Some(i + 1);
            }
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(key) = key_on_line(trimmed) {
            if join(&table, &key) == path {
                return Some(i + 1);
            }
        }
    }
    None
}
