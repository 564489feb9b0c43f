//! The `command` source: a program run without a shell, read from its standard output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Duration;

/// `type = "command"`: runs `argv` (no shell) and reads one record per JSON line or CSV
/// row from its standard output; a non-zero exit fails the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    /// The program and its arguments, e.g. `["python3", "scripts/export.py", "--since",
    /// "{{cursor}}"]`. Templates are allowed in each argument.
    pub argv: Vec<String>,
    /// Directory the program runs in (default: the runner's).
    pub working_dir: Option<PathBuf>,
    /// Extra environment variables for the program; values may use templates
    /// (`{{env.NAME}}` passes a secret through without writing it here).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Longest run before the program is killed (default `"60s"`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// `"jsonl"` (default: one JSON object per line) or `"csv"` (a header row first).
    #[serde(default)]
    pub format: OutputFormat,
}

fn default_timeout() -> Duration {
    Duration::secs(60)
}

/// What a command writes on its standard output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// CSV with a header row.
    Csv,
}
