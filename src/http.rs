//! The small HTTP port: `/healthz` for load balancers and `/metrics` for Prometheus.

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;

use crate::store::{Readiness, Store, WriteHealth};
use crate::transport::conn::ConnInfo;

#[derive(Clone)]
struct Health {
    store: Arc<dyn Store>,
    writes: Arc<WriteHealth>,
}

pub fn router(store: Arc<dyn Store>, writes: Arc<WriteHealth>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(count_call))
        .with_state(Health { store, writes })
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

async fn metrics() -> String {
    crate::telemetry::metrics().render()
}
