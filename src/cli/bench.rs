//! `kpistream bench`: measures publish throughput against a running server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::ToSpan;
use jiff::civil::Date;

use super::{ServerArgs, status};
use crate::client::{self, Credential};

/// Publish synthetic points to a daily stream and report points per second.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example (a daily stream made for the purpose):\n  kpistream stream create --name bench --frequency daily --type number --credential-out bench.kpik\n  kpistream bench --credential bench.kpik --batches 200 --batch-size 1000 --publishers 1"
)]
pub struct BenchArgs {
    /// Credential of a daily number stream used only for benchmarks.
    #[arg(long)]
    credential: PathBuf,
    /// Batches each publisher sends.
    #[arg(long, default_value_t = 100)]
    batches: u32,
    /// Points per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: u32,
    /// Publishers sending at once, each on its own connection.
    #[arg(long, default_value_t = 1)]
    publishers: u32,
    /// First day of the synthetic periods; each point gets its own day.
    #[arg(long, default_value = "1900-01-01")]
    start: Date,
    #[command(flatten)]
    server: ServerArgs,
}

impl BenchArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.credential)
            .with_context(|| format!("cannot read {}", self.credential.display()))?;
        let credential: Credential = text.trim().parse()?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for publisher in 0..self.publishers {
            let client = self.server.connect_anonymous().await?;
            let credential = credential.clone();
            let first = u64::from(publisher) * u64::from(self.batches) * u64::from(self.batch_size);
            let (batches, size, start) = (self.batches, self.batch_size, self.start);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(batches as usize);
                for b in 0..batches {
                    let offset = first + u64::from(b) * u64::from(size);
                    let points = (0..u64::from(size))
                        .map(|i| {
                            let day = start
                                .checked_add(((offset + i) as i64).days())
                                .expect("day in range");
                            client::point_for_period(
                                &day.to_string(),
                                &format!("{}.25", offset + i),
                                "",
                            )
                        })
                        .collect();
                    let sent = Instant::now();
                    let response = client
                        .publish(&credential, points, false)
                        .await
                        .map_err(status)?;
                    latencies.push(sent.elapsed());
                    if !response.rejected.is_empty() {
                        anyhow::bail!(
                            "the server rejected points: {}",
                            response.rejected[0].reason
                        );
                    }
                }
                Ok(latencies)
            }));
        }
        let mut latencies: Vec<Duration> = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let points =
            u64::from(self.publishers) * u64::from(self.batches) * u64::from(self.batch_size);
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
        println!(
            "{points} points in {} batches of {} from {} publisher(s) in {:.2} s: {:.0} points/s; batch latency p50 {:.1} ms, p99 {:.1} ms",
            latencies.len(),
            self.batch_size,
            self.publishers,
            elapsed.as_secs_f64(),
            points as f64 / elapsed.as_secs_f64(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
        Ok(())
    }
}
