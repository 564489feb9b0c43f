//! Output of client verbs: an aligned table for people, JSON or CSV for scripts.
//!
//! Table cells hold text that publishers and other users chose (descriptions,
//! external ids, batch ids, names), so each cell goes through [`text::printable`]:
//! control characters and bidirectional-text controls are shown escaped (`\u{1b}`)
//! and never reach the terminal. JSON and CSV carry the exact text, for scripts.

use std::io::Write;

use crate::text;

/// How rows are printed.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// Rows with named columns.
pub struct Rows {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn print(&self, format: Format) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match format {
            Format::Table => self.table(&mut out)?,
            Format::Json => {
                let objects: Vec<serde_json::Map<String, serde_json::Value>> = self
                    .rows
                    .iter()
                    .map(|row| {
                        self.headers
                            .iter()
                            .zip(row)
                            .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                            .collect()
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut out, &objects)?;
                writeln!(out)?;
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(&self.headers)?;
                for row in &self.rows {
                    w.write_record(row)?;
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
            .map(|row| {
                row.iter()
                    .map(|c| text::printable(c).into_owned())
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        writeln!(
            out,
            "{}",
            line(
                self.headers
                    .iter()
                    .map(|h| h.to_uppercase())
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
                    .collect()
            )
        )?;
        for row in &rows {
            writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

/// A protobuf timestamp as RFC 3339 in UTC, to the second; empty when absent.
pub fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .and_then(|t| jiff::Timestamp::new(t.seconds, 0).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}
