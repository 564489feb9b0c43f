//! Logs (tracing, filtered by `RUST_LOG`) and the Prometheus metrics recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Sends logs to stderr; `RUST_LOG` chooses what (default `info`).
pub fn init_logs() {
    init_logs_at("info");
}

/// Sends logs to stderr; `RUST_LOG` chooses what (default `level`). A command that
/// prints its own summary (`connector run`) shows only warnings and errors by default:
/// the reasons behind its counts.
pub fn init_logs_at(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The process-wide metrics recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("kpistream_publish_duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("kpistream_commit_group_batches".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                )
            })
            .expect("bucket lists are not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once")
    })
}
