//! Output of client verbs, one contract for all (`docs/cli.md`, "Output"): an aligned
//! table for people; for scripts one JSON document, one JSON object per line, or CSV,
//! with snake_case keys and typed values (whole numbers as numbers, decimals and times
//! as strings, absent values as `null` or an empty CSV field); or, with `--quiet`, each
//! row's reference alone (its first column: an id, or the name other verbs take).
//!
//! Table cells hold text that publishers and other users chose (descriptions,
//! external ids, batch ids, names), so each cell goes through [`text::printable`]:
//! control characters and bidirectional-text controls are shown escaped (`\u{1b}`)
//! and never reach the terminal. JSON and CSV carry the exact text, for scripts.

use std::io::Write;

use serde_json::{Map, Value};

use crate::text;

/// How rows are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header, for people.
    #[default]
    Table,
    /// One JSON document: an array of objects (an object for a single record).
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// The output flags every verb that prints data takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format: table, json (one document), jsonl (an object per line) or csv.
    #[arg(
        short = 'o',
        long,
        value_enum,
        env = "KPISTREAM_OUTPUT",
        default_value_t
    )]
    pub output: Format,
    /// Print only each row's id (or the name other verbs take), one per line.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// A whole number: a JSON number.
    Int(i64),
    /// A decimal value, exact: a JSON string.
    Decimal(String),
    Bool(bool),
    /// Several names (a team's members): a JSON array.
    List(Vec<String>),
    /// Absent: `null`, an empty CSV field, `-` in a table.
    Null,
}

impl Cell {
    /// Text, or [`Cell::Null`] when empty.
    pub fn opt(text: impl Into<String>) -> Self {
        let text = text.into();
        if text.is_empty() {
            Self::Null
        } else {
            Self::Text(text)
        }
    }

    fn plain(&self) -> String {
        match self {
            Self::Text(t) | Self::Decimal(t) => t.clone(),
            Self::Int(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
            Self::List(items) => items.join(", "),
            Self::Null => String::new(),
        }
    }

    fn table(&self) -> String {
        match self {
            Self::Null => "-".to_owned(),
            other => text::printable(&other.plain()).into_owned(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Self::Text(t) | Self::Decimal(t) => Value::String(t.clone()),
            Self::Int(n) => Value::from(*n),
            Self::Bool(b) => Value::Bool(*b),
            Self::List(items) => Value::from(items.clone()),
            Self::Null => Value::Null,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<u64> for Cell {
    fn from(n: u64) -> Self {
        Self::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Cell {
    fn from(n: u32) -> Self {
        Self::Int(n.into())
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

/// Rows with named columns (snake_case: the JSON keys and CSV header; a table shows
/// them in capitals).
pub struct Rows {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Rows {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    fn objects(&self) -> impl Iterator<Item = Map<String, Value>> + '_ {
        self.rows.iter().map(|row| {
            self.headers
                .iter()
                .zip(row)
                .map(|(h, v)| ((*h).to_owned(), v.json()))
                .collect()
        })
    }

    pub fn print(&self, how: &OutputArgs) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if how.quiet {
            for row in &self.rows {
                writeln!(out, "{}", row.first().map(Cell::table).unwrap_or_default())?;
            }
            return Ok(());
        }
        match how.output {
            Format::Table => self.table(&mut out)?,
            Format::Json => {
                let objects: Vec<_> = self.objects().collect();
                serde_json::to_writer_pretty(&mut out, &objects)?;
                writeln!(out)?;
            }
            Format::Jsonl => {
                for object in self.objects() {
                    serde_json::to_writer(&mut out, &object)?;
                    writeln!(out)?;
                }
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(&mut out);
                w.write_record(&self.headers)?;
                for row in &self.rows {
                    w.write_record(row.iter().map(Cell::plain))?;
                }
                w.flush()?;
            }
        }
        Ok(())
    }

    fn table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(Cell::table).collect())
            .collect();
        let headers: Vec<String> = self.headers.iter().map(|h| header(h)).collect();
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        writeln!(out, "{}", line(&headers))?;
        for row in &rows {
            writeln!(out, "{}", line(row))?;
        }
        Ok(())
    }
}

/// A column's name as a table shows it: `last_used` → `LAST USED`.
fn header(name: &str) -> String {
    name.replace('_', " ").to_uppercase()
}

/// One record (a stream, a user) with lists that belong to it (its keys): a table
/// shows `field: value` lines then each list; JSON is one object with the lists as
/// arrays; CSV is the record's fields alone, as one row (the lists have verbs of
/// their own).
pub struct Record {
    pub fields: Vec<(&'static str, Cell)>,
    pub lists: Vec<(&'static str, Rows)>,
}

impl Record {
    fn object(&self) -> Map<String, Value> {
        let mut object: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.json()))
            .collect();
        for (name, rows) in &self.lists {
            object.insert(
                (*name).to_owned(),
                Value::Array(rows.objects().map(Value::Object).collect()),
            );
        }
        object
    }

    pub fn print(&self, how: &OutputArgs) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if how.quiet {
            let id = self.fields.first().map(|(_, v)| v.table());
            writeln!(out, "{}", id.unwrap_or_default())?;
            return Ok(());
        }
        match how.output {
            Format::Table => {
                let width = self.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
                for (k, v) in &self.fields {
                    let label = format!("{}:", k.replace('_', " "));
                    writeln!(out, "{label:<width$} {}", v.table())?;
                }
                for (_, rows) in &self.lists {
                    writeln!(out)?;
                    rows.table(&mut out)?;
                }
            }
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &self.object())?;
                writeln!(out)?;
            }
            Format::Jsonl => {
                serde_json::to_writer(&mut out, &self.object())?;
                writeln!(out)?;
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(&mut out);
                w.write_record(self.fields.iter().map(|(k, _)| k))?;
                w.write_record(self.fields.iter().map(|(_, v)| v.plain()))?;
                w.flush()?;
            }
        }
        Ok(())
    }
}

/// A protobuf timestamp as RFC 3339 in UTC, to the second; empty when absent.
pub fn time_text(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, 0).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A protobuf timestamp as a cell: RFC 3339 text, or absent.
pub fn time(ts: &Option<prost_types::Timestamp>) -> Cell {
    Cell::opt(time_text(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_typed_in_json_and_plain_in_csv_and_tables() {
        let cells = [
            Cell::Int(3),
            Cell::Decimal("1480.50".into()),
            Cell::Null,
            Cell::List(vec!["ada".into(), "grace".into()]),
            Cell::Text("a\u{1b}[31m".into()),
        ];
        let json: Vec<Value> = cells.iter().map(Cell::json).collect();
        assert_eq!(
            json,
            [
                Value::from(3),
                Value::from("1480.50"),
                Value::Null,
                Value::from(vec!["ada", "grace"]),
                Value::from("a\u{1b}[31m"),
            ]
        );
        let plain: Vec<String> = cells.iter().map(Cell::plain).collect();
        assert_eq!(plain, ["3", "1480.50", "", "ada, grace", "a\u{1b}[31m"]);
        assert_eq!(cells[2].table(), "-");
        assert_eq!(cells[4].table(), "a\\u{1b}[31m");
        assert_eq!(header("last_used"), "LAST USED");
    }
}
