//! kpistream: KPI data streams. Signed datapoints arrive over gRPC, are verified,
//! stored exactly per period with a revision history, and are read back by the
//! people the stream is shared with.

pub mod access;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod client;
pub mod config;
pub mod connector;
pub mod console;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod notify;
pub mod period;
pub mod runner;
pub mod runner_state;
pub mod secret_file;
pub mod server;
pub mod signature;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod transport;
pub mod value;
pub mod wire;

/// Types generated from `proto/kpistream/v1`. They stay at the gRPC edge and in the SDK.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("kpistream.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kpistream_descriptor.bin"));
}
