//! The `kpistream` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = kpistream::cli::Cli::parse();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The chain may hold text from a server or a file: each line is made
            // printable, and the lines themselves are kept.
            let message = format!("{err:#}");
            let lines: Vec<_> = message.lines().map(kpistream::text::printable).collect();
            eprintln!("error: {}", lines.join("\n"));
            std::process::ExitCode::FAILURE
        }
    }
}
