//! A self-hosted connector: a pull loop on its own schedule, inside your network.
//!
//! Every `--every` seconds it reads a source (here: the number of lines of a file, such
//! as a log with one line per sign-up), and publishes the count for today's period of a
//! daily stream. Re-publishing the same period replaces the value, and the server keeps
//! the earlier values as revisions, so the loop can simply run again.
//!
//! ```sh
//! KPISTREAM_CREDENTIAL_FILE=signups.kpik cargo run --example custom_connector -- signups.log 60
//! ```
//!
//! Stop it with Ctrl-C: it publishes what it holds before exiting.

use std::time::Duration;

use kpistream::client::{Credential, PointOutcome, Publisher, point_for_period};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let source = args
        .next()
        .ok_or("usage: custom_connector FILE [SECONDS] [RUNS]")?;
    let every: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);
    let runs: Option<u64> = args.next().map(|s| s.parse()).transpose()?;
    let server =
        std::env::var("KPISTREAM_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let credential_file = std::env::var("KPISTREAM_CREDENTIAL_FILE")
        .map_err(|_| "set KPISTREAM_CREDENTIAL_FILE to the stream's credential file")?;
    let credential: Credential = std::fs::read_to_string(&credential_file)?.trim().parse()?;
    let publisher = Publisher::builder(server, credential)
        .linger(Duration::from_millis(10))
        .build()?;

    let mut schedule = tokio::time::interval(Duration::from_secs(every));
    let mut done = 0;
    loop {
        tokio::select! {
            _ = schedule.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let count = std::fs::read_to_string(&source)
            .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or_else(|e| {
                eprintln!("cannot read {source}: {e}; publishing nothing this time");
                usize::MAX
            });
        if count != usize::MAX {
            let today = jiff::Zoned::now()
                .with_time_zone(jiff::tz::TimeZone::UTC)
                .date();
            let receipt = publisher
                .publish(point_for_period(
                    &today.to_string(),
                    &count.to_string(),
                    &source,
                ))
                .await?;
            publisher.flush().await;
            match receipt.await {
                PointOutcome::Accepted { .. } => println!("{today}: {count}"),
                PointOutcome::Rejected { reason, .. } => eprintln!("{today}: rejected: {reason}"),
                PointOutcome::Failed { failure, .. } => {
                    eprintln!("{today}: failed: {}", failure.message)
                }
            }
        }
        done += 1;
        if runs.is_some_and(|r| done >= r) {
            break;
        }
    }
    publisher.close().await;
    Ok(())
}
