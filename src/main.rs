//! The `kpistream` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kpistream::tls::use_ring_provider();
    let cli = kpistream::cli::Cli::parse();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => kpistream::cli::exit::report(&err),
    }
}
