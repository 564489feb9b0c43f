//! What can go wrong in a run, typed. Each error's `Display` is the sentence the run
//! log, the alerts and `connector run` show; callers match on the kind where it matters
//! (a refused record is counted and the run goes on; a stream the server does not
//! describe ends the run).

use crate::runner::FetchError;
use crate::runner_state::RunnerError;

/// A field reference of a connector file that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{text:?} is not a valid JSONPath: {reason}")]
    JsonPath { text: String, reason: String },
    #[error("a field name is empty")]
    Empty,
}

/// A part of a connector's definition that cannot be compiled for a run (`connector
/// check` reports these before any run; a file edited since is caught here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A field reference, named by its place in the file (`mapping.value`).
    #[error("{place}: {error}")]
    Field { place: String, error: FieldError },
    #[error("mapping: give exactly one of `period` and `timestamp`")]
    When,
    #[error("mapping.value is missing")]
    NoValue,
    #[error("aggregate.field is missing: count_distinct counts its values")]
    NoDistinctField,
    /// A filter condition, named by its place (`filter.conditions[2]`).
    #[error("{place}: {error}")]
    Condition {
        place: String,
        error: ConditionError,
    },
}

/// A filter condition that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("needs exactly one of `equals`, `not_equals`, `contains`, `gt`, `lt`, `exists`")]
    Operators,
    #[error("{0} is not a number a filter can compare with")]
    NotANumber(String),
    #[error("compares with a string, a number or a boolean only")]
    NotComparable,
    #[error("`{0}` compares with a number or a string only")]
    BooleanBound(&'static str),
}

/// Why a record maps to no datapoint: each names the record's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("field {field} is missing")]
    Missing { field: String },
    #[error("field {field} is null")]
    Null { field: String },
    #[error("field {field} is empty, not {what}")]
    Empty { field: String, what: &'static str },
    /// The field holds something else: what it holds (`"soon"`, `a list`), what was
    /// wanted, and how to write it.
    #[error("field {field} is {found}, not {what}{hint}")]
    Wrong {
        field: String,
        found: String,
        what: &'static str,
        hint: &'static str,
    },
    /// The value is not in a period of the stream (a period of another frequency, a
    /// date out of range).
    #[error("{0}")]
    Period(String),
}

/// Why a record cannot be added to its period's aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("{0:?} is not a decimal kpistream can add up")]
    NotDecimal(String),
    #[error("field {0} is missing")]
    DistinctMissing(String),
    #[error("the {function} of period {period} is too large")]
    TooLarge {
        function: &'static str,
        period: String,
    },
    #[error(
        "the run counted more than {0} distinct values; pull a shorter window per run (a cursor) or count in the source's query"
    )]
    TooManyDistinct(usize),
    #[error("the group field {0} is missing")]
    NoGroup(String),
    #[error(
        "the group {0} cannot name a credential file: a group is 1 to 64 characters among A-Z a-z 0-9 _ - . and does not start with a dot"
    )]
    BadGroup(String),
    #[error(
        "the run found more than {0} groups; group by a field with fewer values, or filter the records"
    )]
    TooManyGroups(usize),
}

impl AggregateError {
    /// Whether the run cannot go on: its aggregates would all be incomplete.
    pub fn ends_the_run(&self) -> bool {
        matches!(self, Self::TooManyDistinct(_) | Self::TooManyGroups(_))
    }
}

/// The stream a connector publishes to, as the server describes it, or the window of
/// a run over it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the stream {stream} cannot be read: {message}")]
    Unreadable {
        stream: String,
        message: String,
        /// The server could not answer now (unavailable, overloaded, too slow): trying
        /// again later may work.
        transient: bool,
    },
    #[error("the server answered without the stream")]
    NoStream,
    #[error("the server answered with an unknown frequency")]
    UnknownFrequency,
    #[error("the stream's time zone {0:?} is not in the time zone database")]
    UnknownZone(String),
    #[error(
        "the cursor {0:?} is not a time: `lookback` and [aggregate] pull whole periods again, which needs a cursor field holding a timestamp or a date"
    )]
    CursorNotATime(String),
    #[error("the lookback cannot be taken from {cursor:?}: {reason}")]
    Lookback { cursor: String, reason: String },
    /// A period or an instant out of the calendar's range.
    #[error("{0}")]
    Calendar(String),
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The source, or publishing to the server (retried first when transient).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the stream's stored periods cannot be read: {0}")]
    StoredPeriods(String),
    #[error("no record could be mapped to a datapoint; the first: {0}")]
    NothingMapped(String),
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    #[error(
        "no record of the source falls in the backfill's range {0}: a source that reads only the current period (its query uses {{{{period.start}}}}, {{{{period.end}}}} or {{{{now}}}}) cannot be backfilled this way"
    )]
    NothingInRange(String),
    #[error("the new cursor cannot be stored: {0}")]
    Cursor(#[from] RunnerError),
}

/// A column value a SQL source cannot turn into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The database driver could not read it.
    #[error("{0}")]
    Driver(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0} has no JSON form")]
    NotFinite(String),
    #[error("it holds bytes that are not UTF-8 text")]
    NotUtf8,
    #[error("it is not valid JSON: {0}")]
    NotJson(String),
    #[error("it holds a {0} value, which kpistream does not map to JSON; cast it in the query")]
    Unmapped(String),
}
