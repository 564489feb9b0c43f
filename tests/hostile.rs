//! kpistream against hostile clients, full disks and careless operators. Each module
//! reproduces one way to push the real `kpistream serve` (or `kpistream runner`) over,
//! wedge it or lock its operator out, and checks what the server does instead: bounded
//! memory, recovery without a restart, a clean shutdown, an error that says why.

mod common;

#[path = "hostile/admins.rs"]
mod admins;
#[path = "hostile/bootstrap.rs"]
mod bootstrap;
#[path = "hostile/connectors.rs"]
mod connectors;
#[path = "hostile/input.rs"]
mod input;
#[path = "hostile/output.rs"]
mod output;
#[path = "hostile/raw.rs"]
mod raw;
#[path = "hostile/shutdown.rs"]
mod shutdown;
#[path = "hostile/storage.rs"]
mod storage;
#[path = "hostile/texts.rs"]
mod texts;
#[path = "hostile/transport.rs"]
mod transport;
#[path = "hostile/watch.rs"]
mod watch;
