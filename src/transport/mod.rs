//! The network edge of `kpistream serve`, below gRPC and HTTP: how many connections
//! are open, how long a silent or idle one stays, how many bytes of requests are held
//! while they arrive, and how connections end on shutdown. Everything here runs before
//! a request is authenticated, so it must stay cheap whatever a client sends.

pub mod budget;
pub mod conn;

use std::time::Duration;

pub use budget::{BudgetLayer, ReceiveBudget};
pub use conn::{Acceptor, ConnLimits, Port, Shutdown};

use crate::config::Limits;

/// File descriptors kept for everything but client connections: the database and its
/// WAL, log files, the resolver, connections to the runner's sources in tests.
const RESERVED_FILES: u64 = 64;

/// The connection limits of the gRPC and HTTP ports, the gRPC one lowered when the
/// process may not open that many files (a server at its open-files limit can accept
/// nothing, not even `/healthz`).
pub fn conn_limits(limits: &Limits) -> (ConnLimits, ConnLimits) {
    let grpc_wanted = limits.max_connections;
    let mut grpc_max = grpc_wanted;
    if let Some(files) = conn::raise_open_files_limit() {
        let room = files.saturating_sub(RESERVED_FILES + limits.max_http_connections as u64);
        let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
        if room < grpc_max {
            tracing::warn!(
                wanted = grpc_wanted,
                allowed = room,
                open_files_limit = files,
                "limits.max_connections is more than the open-files limit allows: lowered (raise `ulimit -n` to allow more)"
            );
            grpc_max = room;
        }
    }
    let handshake_timeout = Duration::from_secs(limits.handshake_timeout_secs);
    let idle_timeout = Duration::from_secs(limits.idle_timeout_secs);
    let grpc = ConnLimits {
        max_connections: grpc_max,
        handshake_timeout,
        idle_timeout,
        receive_bytes: limits.connection_receive_bytes + budget::HEADER,
    };
    let http = ConnLimits {
        max_connections: limits.max_http_connections,
        handshake_timeout,
        idle_timeout,
        receive_bytes: 0,
    };
    (grpc, http)
}

/// The server-wide receive budget the limits describe.
pub fn receive_budget(limits: &Limits) -> ReceiveBudget {
    ReceiveBudget::new(
        // Room for the 5-byte gRPC header of a message of the largest size.
        limits.receive_budget_bytes + budget::HEADER,
        limits.max_message_bytes,
        Duration::from_secs(limits.message_timeout_secs),
    )
}
