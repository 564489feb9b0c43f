//! How `kpistream` ends, so that scripts can tell a retryable failure from a mistake
//! (the table is in `docs/cli.md`, "Exit codes").

use std::process::ExitCode;

use crate::client::ClientError;

/// A failed call to the server, with its gRPC code kept for the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct StatusError {
    pub code: tonic::Code,
    /// The server's sentence, made printable.
    pub message: String,
}

/// A mistake on the command line that clap cannot see (two flags that go together,
/// a value of the wrong shape): exit code 2, as clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Points the server refused (each reason was printed): exit code 6.
#[derive(Debug, thiserror::Error)]
#[error("{0} point(s) were rejected (reasons above)")]
pub struct Rejected(pub u64);

/// The exit codes, as documented.
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const DENIED: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const UNAVAILABLE: u8 = 5;
pub const REJECTED: u8 = 6;

/// What ending with `err` means: `None` when the output's reader went away (a closed
/// pipe, as with `| head`), which is a quiet success.
pub fn code(err: &anyhow::Error) -> Option<u8> {
    for cause in err.chain() {
        if closed_pipe(cause) {
            return None;
        }
        if let Some(status) = cause.downcast_ref::<StatusError>() {
            return Some(match status.code {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => DENIED,
                tonic::Code::NotFound => NOT_FOUND,
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted => UNAVAILABLE,
                _ => FAILURE,
            });
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return Some(match client {
                ClientError::Connect { .. } | ClientError::NoAnswer { .. } => UNAVAILABLE,
                ClientError::Endpoint(_) => USAGE,
                _ => FAILURE,
            });
        }
        if cause.is::<UsageError>() {
            return Some(USAGE);
        }
        if cause.is::<Rejected>() {
            return Some(REJECTED);
        }
    }
    Some(FAILURE)
}

/// Whether `cause` is a write to a pipe whose reader has gone (as the writers that
/// wrap I/O errors of their own report it).
fn closed_pipe(cause: &(dyn std::error::Error + 'static)) -> bool {
    let kind = if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        Some(io.kind())
    } else if let Some(json) = cause.downcast_ref::<serde_json::Error>() {
        json.io_error_kind()
    } else if let Some(csv) = cause.downcast_ref::<csv::Error>() {
        match csv.kind() {
            csv::ErrorKind::Io(io) => Some(io.kind()),
            _ => None,
        }
    } else {
        None
    };
    kind == Some(std::io::ErrorKind::BrokenPipe)
}

/// Prints `err` (each line made printable: it may hold text from a server or a file)
/// and gives the exit code; a closed pipe ends quietly with 0.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let Some(code) = code(err) else {
        return ExitCode::SUCCESS;
    };
    let message = format!("{err:#}");
    let lines: Vec<_> = message.lines().map(crate::text::printable).collect();
    eprintln!("error: {}", lines.join("\n"));
    ExitCode::from(code)
}

/// `writeln!` to standard output that returns the error (a closed pipe among them)
/// instead of panicking as `println!` does.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}
pub(crate) use outln;
