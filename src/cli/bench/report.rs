//! What `kpistream bench` reports: one JSON document (`--json`) or a few lines of text.

use std::time::Duration;

use serde::Serialize;

use super::ceilings::Ceilings;
use super::load::Tally;

/// The run's figures.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `kpistream` or `influxdb`.
    pub target: &'static str,
    /// Whether the benchmark started the server itself.
    pub embedded: bool,
    /// `unary` (`Publish`), `stream` (`PublishStream`) or `http` (InfluxDB).
    pub mode: &'static str,
    pub streams: usize,
    pub publishers: usize,
    pub batch_size: usize,
    pub update_share: f64,
    /// Open-loop pacing asked for, points per second.
    pub rate: Option<f64>,
    /// Points sent and answered.
    pub points: u64,
    pub batches: u64,
    /// Of the points, those that rewrote an acknowledged period.
    pub update_points: u64,
    /// Points the server said it stored.
    pub accepted: u64,
    /// Points the server said replaced another value (kpistream only).
    pub revised: Option<u64>,
    pub rejected: u64,
    pub elapsed_s: f64,
    pub points_per_s: f64,
    pub batches_per_s: f64,
    pub latency_ms: Latency,
    /// The embedded server's resources, when the benchmark started it.
    pub server: Option<ServerFigures>,
    pub ceilings: Option<Ceilings>,
}

/// Publish latency, from sending a batch (or, under `--rate`, from when it was due)
/// to its answer.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The embedded server as the kernel and its `/metrics` saw it.
#[derive(Debug, Serialize)]
pub struct ServerFigures {
    /// User plus system CPU time during the load, in seconds.
    pub cpu_s: f64,
    /// Resident memory after start-up and stream creation, before the load, MiB.
    pub rss_idle_mib: f64,
    /// Peak resident memory (VmHWM) at the end of the load, MiB.
    pub rss_peak_mib: f64,
    /// Write transactions committed during the load, when `/metrics` counts them.
    pub commit_transactions: Option<u64>,
    /// The metric they were read from.
    pub commit_transactions_metric: Option<&'static str>,
}

impl Latency {
    pub fn of(latencies: &mut [Duration]) -> Self {
        latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |p: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest latency at least `p` of the batches did not exceed.
            let rank = (p * latencies.len() as f64).ceil() as usize;
            ms(latencies[rank.clamp(1, latencies.len()) - 1])
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: latencies.last().copied().map_or(0.0, ms),
        }
    }
}

impl Report {
    /// Fills the counts and rates from what the publishers counted.
    pub fn count(&mut self, mut tally: Tally, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        self.latency_ms = Latency::of(&mut tally.latencies);
        self.points = tally.points;
        self.batches = tally.batches;
        self.update_points = tally.updates;
        self.accepted = tally.accepted;
        if self.target == "kpistream" {
            self.revised = Some(tally.revised);
        }
        self.rejected = tally.rejected;
        self.elapsed_s = seconds;
        self.points_per_s = tally.points as f64 / seconds;
        self.batches_per_s = tally.batches as f64 / seconds;
    }

    /// The report as lines of text.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} ({}{}): {} points in {} batches of up to {} from {} publisher(s) over {} stream(s), {} updates ({:.0} % asked){}\n",
            self.target,
            if self.embedded { "embedded, " } else { "" },
            self.mode,
            self.points,
            self.batches,
            self.batch_size,
            self.publishers,
            self.streams,
            self.update_points,
            self.update_share * 100.0,
            self.rate
                .map(|r| format!(", paced at {r:.0} points/s"))
                .unwrap_or_default(),
        );
        out += &format!(
            "  throughput  {:.0} points/s, {:.1} batches/s over {:.2} s\n",
            self.points_per_s, self.batches_per_s, self.elapsed_s
        );
        let l = &self.latency_ms;
        out += &format!(
            "  latency     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            l.p50, l.p90, l.p99, l.max
        );
        let revised = self
            .revised
            .map(|r| format!(" ({r} revised)"))
            .unwrap_or_default();
        out += &format!(
            "  answers     {} accepted{revised}, {} rejected\n",
            self.accepted, self.rejected
        );
        if let Some(s) = &self.server {
            let commits = match (s.commit_transactions, s.commit_transactions_metric) {
                (Some(n), Some(metric)) => format!(", {n} commit transactions ({metric})"),
                _ => String::new(),
            };
            out += &format!(
                "  server      {:.2} CPU s ({:.2} cores), RSS {:.1} MiB idle, {:.1} MiB peak{commits}\n",
                s.cpu_s,
                s.cpu_s / self.elapsed_s,
                s.rss_idle_mib,
                s.rss_peak_mib
            );
        }
        if let Some(c) = &self.ceilings {
            out += &format!(
                "  ceilings    verification {:.0} points/s on {} thread(s); store {:.0} points/s in groups of {} batches\n",
                c.verify_points_per_s,
                c.verify_threads,
                c.store_points_per_s,
                c.store_group_batches
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        latencies.reverse();
        let l = Latency::of(&mut latencies);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
    }
}
