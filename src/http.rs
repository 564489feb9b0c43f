//! The small HTTP port: `/healthz` for load balancers and `/metrics` for Prometheus.

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use crate::period::Period;
use crate::store::{Readiness, Store, WriteHealth};
use crate::stream::{Stream, StreamStatus};
use crate::transport::conn::ConnInfo;

#[derive(Clone)]
struct Health {
    store: Arc<dyn Store>,
    writes: Arc<WriteHealth>,
    /// Streams given series of their own on `/metrics` at most.
    stream_series: u32,
}

/// The HTTP port's routes: health, metrics, and `console` (the web console's).
pub fn router(
    store: Arc<dyn Store>,
    writes: Arc<WriteHealth>,
    stream_series: u32,
    console: Router,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Health {
            store,
            writes,
            stream_series,
        })
        .merge(console)
        .layer(axum::middleware::from_fn(count_call))
}

/// Counts each request as a call of its connection (for the handshake and idle
/// timeouts, see `transport::conn`).
async fn count_call(
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    request: Request,
    next: Next,
) -> Response {
    let _call = conn.state.begin_call();
    next.run(request).await
}

/// 200 when the database answers and takes writes; 503 with the reason otherwise.
/// While writes fail, a check (once the fault is a few seconds old) probes with a write
/// of its own, so the answer turns back to 200 as soon as the disk does, even with no
/// publisher sending.
async fn healthz(State(health): State<Health>) -> (StatusCode, String) {
    if let Err(e) = health.store.ping().await {
        return unavailable(format!("database unavailable: {e}"));
    }
    let reason = match health.writes.readiness() {
        Readiness::Ready => return ok(),
        Readiness::Failing {
            reason,
            probe: false,
        } => reason,
        Readiness::Failing { probe: true, .. } => {
            let probe = health.store.probe_write(jiff::Timestamp::now()).await;
            health.writes.observe(&probe);
            match probe {
                Ok(()) => return ok(),
                Err(e) => e.to_string(),
            }
        }
    };
    unavailable(format!("not ready: writes to the database fail: {reason}"))
}

fn ok() -> (StatusCode, String) {
    (StatusCode::OK, "ok\n".into())
}

fn unavailable(reason: String) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n"))
}

/// The process's metrics, then each stream's status, age of data and latest period (at
/// most `limits.metrics_stream_series` streams), read from the database at scrape time.
async fn metrics(State(health): State<Health>) -> String {
    let mut text = crate::telemetry::metrics().render();
    if health.stream_series == 0 {
        return text;
    }
    match health.store.all_streams(health.stream_series).await {
        Ok((streams, total)) => {
            stream_series(&mut text, &streams, total, jiff::Timestamp::now());
        }
        Err(e) => {
            tracing::warn!(error = %e, "the per-stream metrics cannot be read");
            text.push_str("# the per-stream series are missing: the database did not answer\n");
        }
    }
    text
}

/// Appends the per-stream series in Prometheus' text format.
fn stream_series(out: &mut String, streams: &[Stream], total: u64, now: jiff::Timestamp) {
    use std::fmt::Write as _;
    let labels = |s: &Stream| {
        format!(
            "org=\"{}\",stream=\"{}\",name=\"{}\"",
            label(s.org_id.as_str()),
            label(s.id.as_str()),
            label(&s.definition.name)
        )
    };
    out.push_str(
        "# HELP kpistream_stream_status 1 for the status the stream has (pending, active, stale, disabled), 0 for the others.\n\
         # TYPE kpistream_stream_status gauge\n",
    );
    for s in streams {
        let has = s.status(now);
        for status in [
            StreamStatus::Pending,
            StreamStatus::Active,
            StreamStatus::Stale,
            StreamStatus::Disabled,
        ] {
            let value = u8::from(status == has);
            let _ = writeln!(
                out,
                "kpistream_stream_status{{{},status=\"{status}\"}} {value}",
                labels(s)
            );
        }
    }
    out.push_str(
        "# HELP kpistream_stream_seconds_since_data Seconds since the stream last accepted a point (no sample before its first).\n\
         # TYPE kpistream_stream_seconds_since_data gauge\n",
    );
    for s in streams {
        if let Some(at) = s.last_data_at {
            let age = now.duration_since(at).as_secs_f64().max(0.0);
            let _ = writeln!(
                out,
                "kpistream_stream_seconds_since_data{{{}}} {age:.3}",
                labels(s)
            );
        }
    }
    out.push_str(
        "# HELP kpistream_stream_latest_period_end_seconds End of the latest period holding a value (its first instant after, in the stream's time zone), as a Unix time.\n\
         # TYPE kpistream_stream_latest_period_end_seconds gauge\n",
    );
    for s in streams {
        let end = s
            .latest_period
            .as_deref()
            .and_then(|p| Period::parse(s.definition.frequency, p).ok())
            .and_then(|p| p.end().to_zoned(s.definition.tz()).ok());
        if let Some(end) = end {
            let _ = writeln!(
                out,
                "kpistream_stream_latest_period_end_seconds{{{}}} {}",
                labels(s),
                end.timestamp().as_second()
            );
        }
    }
    let omitted = total.saturating_sub(streams.len() as u64);
    let _ = write!(
        out,
        "# HELP kpistream_stream_series_omitted Streams left out of the per-stream series (limits.metrics_stream_series).\n\
         # TYPE kpistream_stream_series_omitted gauge\n\
         kpistream_stream_series_omitted {omitted}\n"
    );
}

/// A label value as Prometheus' text format writes it: `\\`, `\"` and `\n` escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
