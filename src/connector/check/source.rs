//! The checks of sources and connections: URLs, authentication, connection references,
//! and the templates each source kind allows.

use std::collections::BTreeMap;

use super::super::load::Connection;
use super::super::{CommandSource, RestAuth, RestSource, SqlSource};
use super::Check;

impl Check<'_> {
    /// Checks a REST source; returns whether it uses `{{cursor}}`.
    pub(super) fn rest(
        &mut self,
        rest: &RestSource,
        connections: &BTreeMap<String, Connection>,
    ) -> bool {
        match &rest.connection {
            Some(name) => self.connection_ref(name, "rest", connections),
            None => self.http_url("source.url", &rest.url),
        }
        if let Some(auth) = &rest.auth {
            self.auth("source.auth", auth);
        }
        if !rest.records.starts_with('$') {
            self.error(
                "source.records",
                format!("{:?} is not a JSONPath such as \"$.data[*]\"", rest.records),
            );
        }
        if rest.page_limit == 0 {
            self.error("source.page_limit", "must be at least 1".into());
        }
        let mut cursor = self.templates("source.url", &rest.url, true);
        for (key, value) in &rest.headers {
            cursor |= self.templates(&format!("source.headers.{key}"), value, true);
        }
        for (key, value) in &rest.query {
            cursor |= self.templates(&format!("source.query.{key}"), value, true);
        }
        if let Some(body) = &rest.body {
            cursor |= self.body_templates("source.body", &toml::Value::Table(body.clone()));
        }
        cursor
    }

    fn body_templates(&mut self, field: &str, value: &toml::Value) -> bool {
        match value {
            toml::Value::String(s) => self.templates(field, s, true),
            toml::Value::Array(items) => items
                .iter()
                .fold(false, |acc, v| self.body_templates(field, v) | acc),
            toml::Value::Table(t) => t.iter().fold(false, |acc, (k, v)| {
                self.body_templates(&format!("{field}.{k}"), v) | acc
            }),
            _ => false,
        }
    }

    fn auth(&mut self, field: &str, auth: &RestAuth) {
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match auth {
            RestAuth::Bearer {
                token_env,
                token_file,
            } => self.one_secret(
                &format!("{field}.token"),
                token_env.as_deref(),
                path(token_file).as_deref(),
                true,
            ),
            RestAuth::ApiKey {
                name,
                value_env,
                value_file,
                ..
            } => {
                if name.is_empty() {
                    self.error(
                        &format!("{field}.name"),
                        "is empty: give the header's or parameter's name".into(),
                    );
                }
                self.one_secret(
                    &format!("{field}.value"),
                    value_env.as_deref(),
                    path(value_file).as_deref(),
                    true,
                )
            }
            RestAuth::Basic {
                password_env,
                password_file,
                ..
            } => self.one_secret(
                &format!("{field}.password"),
                password_env.as_deref(),
                path(password_file).as_deref(),
                true,
            ),
            RestAuth::OAuth2ClientCredentials {
                token_url,
                client_secret_env,
                client_secret_file,
                ..
            } => {
                self.http_url(&format!("{field}.token_url"), token_url);
                self.one_secret(
                    &format!("{field}.client_secret"),
                    client_secret_env.as_deref(),
                    path(client_secret_file).as_deref(),
                    true,
                )
            }
        }
    }

    /// Checks a SQL source; returns whether it uses `{{cursor}}`.
    pub(super) fn sql(
        &mut self,
        sql: &SqlSource,
        connections: &BTreeMap<String, Connection>,
    ) -> bool {
        let password_file = sql.password_file.as_ref().map(|p| p.display().to_string());
        match (&sql.connection, &sql.url) {
            (Some(name), None) => {
                self.connection_ref(name, "sql", connections);
                if sql.password_env.is_some() || sql.password_file.is_some() {
                    self.error(
                        "source.password_env",
                        "comes from the connection; leave it out here".into(),
                    );
                }
            }
            (None, Some(url)) => {
                self.database_url("source.url", url);
                self.one_secret(
                    "source.password",
                    sql.password_env.as_deref(),
                    password_file.as_deref(),
                    false,
                );
            }
            _ => self.error(
                "source.url",
                "give exactly one of `url` and `connection`".into(),
            ),
        }
        if sql.query.trim().is_empty() {
            self.error("source.query", "is empty".into());
        }
        self.templates("source.query", &sql.query, false)
    }

    /// Checks a command source; returns whether it uses `{{cursor}}`.
    pub(super) fn command(&mut self, command: &CommandSource) -> bool {
        if command.argv.first().is_none_or(|p| p.is_empty()) {
            self.error(
                "source.argv",
                "names no program: give [\"program\", \"arg\", …]".into(),
            );
        }
        let mut cursor = false;
        for arg in &command.argv {
            cursor |= self.templates("source.argv", arg, true);
        }
        for (key, value) in &command.env {
            cursor |= self.templates(&format!("source.env.{key}"), value, true);
        }
        cursor
    }

    fn connection_ref(
        &mut self,
        name: &str,
        kind: &str,
        connections: &BTreeMap<String, Connection>,
    ) {
        match connections.get(name) {
            None => {
                let known: Vec<&str> = connections.keys().map(String::as_str).collect();
                self.error(
                    "source.connection",
                    format!(
                        "no connection is named {name:?} in connections.toml (known: {})",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            Some(c) if c.kind() != kind => self.error(
                "source.connection",
                format!(
                    "the connection {name:?} is a {} connection, not {kind}",
                    c.kind()
                ),
            ),
            Some(_) => {}
        }
    }

    /// Checks one entry of `connections.toml`.
    pub(in crate::connector) fn connection(&mut self, name: &str, connection: &Connection) {
        match connection {
            Connection::Rest { base_url, auth } => {
                self.http_url(&format!("{name}.base_url"), base_url);
                if let Some(auth) = auth {
                    self.auth(&format!("{name}.auth"), auth);
                }
            }
            Connection::Sql {
                url,
                password_env,
                password_file,
            } => {
                self.database_url(&format!("{name}.url"), url);
                let file = password_file.as_ref().map(|p| p.display().to_string());
                self.one_secret(
                    &format!("{name}.password"),
                    password_env.as_deref(),
                    file.as_deref(),
                    false,
                );
            }
        }
    }

    pub(super) fn http_url(&mut self, field: &str, url: &str) {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            self.error(field, format!("{url:?} is not an http:// or https:// URL"));
        }
    }

    fn database_url(&mut self, field: &str, url: &str) {
        let schemes = [
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
            "sqlite:",
        ];
        if !schemes.iter().any(|s| url.starts_with(s)) {
            self.error(
                field,
                format!("{url:?} is not a postgres://, mysql://, mariadb:// or sqlite:// URL"),
            );
            return;
        }
        let authority = url
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                self.error(
                    field,
                    "holds a password inline; take it out of the URL and use `password_env` or `password_file`".into(),
                );
            }
        }
    }
}
