//! The connector runner (`kpistream runner`): fires the connectors of a directory on
//! their schedules, pulls records from their REST, SQL or command sources, maps and
//! filters them into datapoints, signs them with each stream's key and publishes them.
//! Its state (cursor, failures, enabled, leases, run log) lives on the server, reached
//! through the `Runner` gRPC service, so any runner can pick a job up.

pub mod aggregate;
pub mod alert;
pub mod command;
pub mod error;
pub mod filter;
pub mod fixture;
pub mod local;
pub mod mapping;
pub mod pipeline;
pub mod process;
mod publish;
pub mod record;
pub mod rest;
pub mod retry;
pub mod run;
pub mod secret;
pub mod source;
pub mod sql;
pub mod target;
pub mod template;

pub use source::{FetchError, Record, Source};
