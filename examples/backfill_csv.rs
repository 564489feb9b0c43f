//! Loads a large CSV of `period,value[,external_id]` into a stream with the SDK's
//! Publisher: memory stays bounded by the publisher's buffer however large the file,
//! and a batch retried after a dropped connection is stored once.
//!
//! ```sh
//! KPISTREAM_CREDENTIAL_FILE=revenue.kpik cargo run --release --example backfill_csv -- history.csv
//! ```
//!
//! Prints the rows loaded per second, and every refused row with its line and reason.

use std::time::Instant;

use kpistream::client::{Credential, PointOutcome, Publisher, Receipt, point_at, point_for_period};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: backfill_csv FILE.csv (with KPISTREAM_CREDENTIAL_FILE set)")?;
    let server =
        std::env::var("KPISTREAM_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let credential_file = std::env::var("KPISTREAM_CREDENTIAL_FILE")
        .map_err(|_| "set KPISTREAM_CREDENTIAL_FILE to the stream's credential file")?;
    let credential: Credential = std::fs::read_to_string(&credential_file)?.trim().parse()?;

    let publisher = Publisher::builder(server, credential)
        .batch_size(5_000)
        .in_flight(4)
        .buffer(50_000)
        .build()?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(&path)?;
    let started = Instant::now();
    let mut rows = 0u64;
    // Each point's receipt goes, with its line number, to a task that reports refused
    // rows as their batches are answered; the channel is bounded, so memory is too.
    let (receipts, mut answered) = tokio::sync::mpsc::channel::<(u64, Receipt)>(100_000);
    let file = path.clone();
    let reporter = tokio::spawn(async move {
        while let Some((line, receipt)) = answered.recv().await {
            match receipt.await {
                PointOutcome::Accepted { .. } => {}
                PointOutcome::Rejected { reason, .. } => eprintln!("{file} line {line}: {reason}"),
                PointOutcome::Failed { failure, .. } => {
                    eprintln!("{file} line {line}: batch failed: {}", failure.message)
                }
            }
        }
    });
    for record in reader.records() {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        if record.get(0) == Some("period") {
            continue;
        }
        let (Some(when), Some(value)) = (record.get(0), record.get(1)) else {
            return Err(format!("{path} line {line}: expected period,value[,external_id]").into());
        };
        let external_id = record.get(2).unwrap_or_default();
        let point = match when.parse::<jiff::Timestamp>() {
            Ok(at) => point_at(at, value, external_id),
            Err(_) => point_for_period(when, value, external_id),
        };
        let receipt = publisher.publish(point).await?;
        receipts.send((line, receipt)).await?;
        rows += 1;
    }
    drop(receipts);
    let report = publisher.close().await;
    reporter.await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{rows} rows in {elapsed:.2} s: {:.0} rows/s; {} stored, {} refused, {} in failed batches",
        rows as f64 / elapsed,
        report.accepted,
        report.rejected.len(),
        report.failed.iter().map(|f| f.points).sum::<usize>()
    );
    if !report.is_clean() {
        std::process::exit(1);
    }
    Ok(())
}
