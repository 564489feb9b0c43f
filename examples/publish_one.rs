//! Publishes one value to a stream with the SDK, and says what became of it.
//!
//! ```sh
//! KPISTREAM_CREDENTIAL_FILE=wau.kpik cargo run --example publish_one -- 2026-W48 1520
//! ```
//!
//! The server is `KPISTREAM_SERVER` (default `http://127.0.0.1:50051`). No token is
//! needed: the credential's signature is the authorisation.

use kpistream::client::{Credential, PointOutcome, Publisher, point_for_period};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(period), Some(value)) = (args.next(), args.next()) else {
        return Err("usage: publish_one PERIOD VALUE (with KPISTREAM_CREDENTIAL_FILE set)".into());
    };
    let server =
        std::env::var("KPISTREAM_SERVER").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let path = std::env::var("KPISTREAM_CREDENTIAL_FILE")
        .map_err(|_| "set KPISTREAM_CREDENTIAL_FILE to the stream's credential file")?;
    let credential: Credential = std::fs::read_to_string(&path)?.trim().parse()?;

    let publisher = Publisher::builder(server, credential).build()?;
    let receipt = publisher
        .publish(point_for_period(&period, &value, ""))
        .await?;
    publisher.close().await;
    match receipt.await {
        PointOutcome::Accepted { batch_id } => {
            println!("stored {period} = {value} (batch {batch_id})")
        }
        PointOutcome::Rejected { reason, .. } => return Err(format!("rejected: {reason}").into()),
        PointOutcome::Failed { failure, .. } => {
            return Err(format!(
                "failed after {} attempt(s): {}",
                failure.attempts, failure.message
            )
            .into());
        }
    }
    Ok(())
}
