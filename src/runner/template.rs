//! `{{…}}` templates in connector sources: `{{cursor}}`, `{{period.start}}`,
//! `{{period.end}}`, `{{now}}` and `{{env.NAME}}`. In REST and command sources they are
//! replaced by text; in a SQL query they become bound parameters, never pasted in.

use jiff::Timestamp;

use super::FetchError;

/// The values templates take in one run.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    /// The stored cursor, or the connector's `cursor.initial` on the first run; `None`
    /// renders as an empty string (and binds as SQL `NULL`).
    pub cursor: Option<String>,
    /// Start of the stream period the scheduled time falls in (RFC 3339).
    pub period_start: Timestamp,
    /// End (exclusive) of that period.
    pub period_end: Timestamp,
    /// The run's scheduled time.
    pub now: Timestamp,
}

/// A template that cannot be filled. Never holds a value, only names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{env.NAME}}` names a variable the runner's environment does not have.
    #[error("the environment variable {0} used by {{{{env.{0}}}}} is not set")]
    MissingEnv(String),
    /// An unknown or unclosed template (the definition check catches these first).
    #[error("{0}")]
    Invalid(String),
}

impl From<TemplateError> for FetchError {
    fn from(e: TemplateError) -> Self {
        FetchError::permanent(e.to_string())
    }
}

/// One piece of a template string.
enum Piece<'a> {
    Text(&'a str),
    Cursor,
    PeriodStart,
    PeriodEnd,
    Now,
    Env(&'a str),
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            TemplateError::Invalid("a template opens with {{ and is never closed".into())
        })?;
        out.push(match after[..end].trim() {
            "cursor" => Piece::Cursor,
            "period.start" => Piece::PeriodStart,
            "period.end" => Piece::PeriodEnd,
            "now" => Piece::Now,
            name => match name.strip_prefix("env.") {
                Some(var) => Piece::Env(var),
                None => {
                    return Err(TemplateError::Invalid(format!(
                        "unknown template {{{{{name}}}}}"
                    )));
                }
            },
        });
        rest = &after[end + 2..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The variables of the `{{env.NAME}}` templates of `text`, in order. A text that is
/// not a valid template names none (the directory check refuses it before any run).
pub fn env_vars(text: &str) -> impl Iterator<Item = &str> {
    pieces(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Env(var) => Some(var),
            _ => None,
        })
}

impl TemplateContext {
    fn value(&self, piece: &Piece<'_>) -> Result<Option<String>, TemplateError> {
        Ok(match piece {
            Piece::Text(t) => Some((*t).to_owned()),
            Piece::Cursor => self.cursor.clone(),
            Piece::PeriodStart => Some(self.period_start.to_string()),
            Piece::PeriodEnd => Some(self.period_end.to_string()),
            Piece::Now => Some(self.now.to_string()),
            Piece::Env(var) => {
                Some(std::env::var(var).map_err(|_| TemplateError::MissingEnv((*var).to_owned()))?)
            }
        })
    }
}

/// Fills every template of `text`. The result may hold a secret (`{{env.NAME}}`), so it
/// is never logged: describe requests by their template text instead.
pub fn render(text: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text)? {
        out.push_str(&ctx.value(&piece)?.unwrap_or_default());
    }
    Ok(out)
}

/// How a database driver writes a bound parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `$1`, `$2`, … (PostgreSQL).
    Numbered,
    /// `?` (MySQL, MariaDB, SQLite).
    Question,
}

/// A query whose templates became placeholders, with the values to bind in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundQuery {
    /// The query text with placeholders.
    pub sql: String,
    /// One text value (or `NULL`) per placeholder. Cast in SQL where a column is not
    /// text, e.g. `{{cursor}}::timestamptz` on PostgreSQL.
    pub params: Vec<Option<String>>,
}

/// Turns the templates of a SQL query into bound parameters. `{{env.NAME}}` is refused:
/// a value from the environment is never part of a query.
pub fn bind_sql(
    query: &str,
    ctx: &TemplateContext,
    style: Placeholder,
) -> Result<BoundQuery, TemplateError> {
    let mut sql = String::with_capacity(query.len());
    let mut params = Vec::new();
    for piece in pieces(query)? {
        match piece {
            Piece::Text(t) => sql.push_str(t),
            Piece::Env(_) => {
                return Err(TemplateError::Invalid(
                    "{{env.NAME}} is not allowed in a SQL query: values are bound as parameters"
                        .into(),
                ));
            }
            other => {
                params.push(ctx.value(&other)?);
                match style {
                    Placeholder::Numbered => sql.push_str(&format!("${}", params.len())),
                    Placeholder::Question => sql.push('?'),
                }
            }
        }
    }
    Ok(BoundQuery { sql, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(cursor: Option<&str>) -> TemplateContext {
        TemplateContext {
            cursor: cursor.map(str::to_owned),
            period_start: "2026-11-23T00:00:00Z".parse().unwrap(),
            period_end: "2026-11-24T00:00:00Z".parse().unwrap(),
            now: "2026-11-23T06:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn templates_are_filled_and_a_missing_cursor_is_empty() {
        let c = ctx(Some("42"));
        assert_eq!(
            render(
                "/v1?since={{cursor}}&from={{ period.start }}&to={{period.end}}",
                &c
            )
            .unwrap(),
            "/v1?since=42&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z"
        );
        assert_eq!(render("a{{cursor}}b", &ctx(None)).unwrap(), "ab");
        assert_eq!(render("{{now}}", &c).unwrap(), "2026-11-23T06:00:00Z");
    }

    #[test]
    fn an_unset_environment_variable_is_named_not_guessed() {
        let e = render("Bearer {{env.KPISTREAM_TEMPLATE_TEST_UNSET}}", &ctx(None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the environment variable KPISTREAM_TEMPLATE_TEST_UNSET used by {{env.KPISTREAM_TEMPLATE_TEST_UNSET}} is not set"
        );
        // PATH exists in every test environment.
        assert!(!render("{{env.PATH}}", &ctx(None)).unwrap().is_empty());
    }

    #[test]
    fn the_variables_a_text_uses_are_listed_in_order() {
        let vars: Vec<&str> = env_vars("{{env.A}}/{{cursor}}?k={{ env.B_2 }}").collect();
        assert_eq!(vars, ["A", "B_2"]);
        assert_eq!(env_vars("no templates").count(), 0);
        assert_eq!(
            env_vars("{{env.A").count(),
            0,
            "unclosed: the check refuses it"
        );
    }

    #[test]
    fn sql_templates_become_parameters_in_each_dialect() {
        let q = "SELECT d, n FROM t WHERE d > {{cursor}} AND d < {{period.end}} AND x = '{{'";
        assert!(
            bind_sql(q, &ctx(None), Placeholder::Question).is_err(),
            "unclosed"
        );
        let q = "SELECT d, n FROM t WHERE d > {{cursor}} AND d < {{period.end}}";
        let pg = bind_sql(q, &ctx(Some("x' OR '1'='1")), Placeholder::Numbered).unwrap();
        assert_eq!(pg.sql, "SELECT d, n FROM t WHERE d > $1 AND d < $2");
        assert_eq!(
            pg.params,
            vec![
                Some("x' OR '1'='1".to_owned()),
                Some("2026-11-24T00:00:00Z".to_owned())
            ]
        );
        let my = bind_sql(q, &ctx(None), Placeholder::Question).unwrap();
        assert_eq!(my.sql, "SELECT d, n FROM t WHERE d > ? AND d < ?");
        assert_eq!(my.params[0], None);
        assert!(bind_sql("SELECT '{{env.PATH}}'", &ctx(None), Placeholder::Question).is_err());
    }
}
