//! `Query.Watch`: a stream's points as they are committed. The caller's token and read
//! access are checked again (at most once a second) before points are sent, so a
//! revoked token or a removed grant stops the flow; the server's shutdown ends it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tonic::{Request, Status};

use super::{ApiError, AppState, convert};
use crate::access::Access;
use crate::auth::{self, AuthError};
use crate::ids::StreamId;
use crate::ingest::Committed;
use crate::proto;

/// The answer of `Watch`.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::DataPoint, Status>> + Send>>;

/// How often a watcher's token and access are checked again.
const RECHECK: Duration = Duration::from_secs(1);

struct Watcher {
    state: AppState,
    token_hash: [u8; 32],
    stream_id: StreamId,
    committed: broadcast::Receiver<Arc<Committed>>,
    stopping: watch::Receiver<bool>,
    pending: VecDeque<proto::DataPoint>,
    checked: Instant,
    done: bool,
}

/// Checks the request and starts the watch.
pub async fn start(
    state: AppState,
    request: Request<proto::WatchRequest>,
) -> Result<WatchStream, ApiError> {
    // Subscribe first, so nothing committed after the latest point is read is missed.
    let committed = state.ingestor.subscribe();
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let token_hash = auth::hash_token(&auth::bearer(header)?);
    let who = state.principal(&request).await?;
    let stream = state
        .stream_for(&who, &request.get_ref().stream_id, Access::Read)
        .await?;
    let mut pending = VecDeque::new();
    if request.get_ref().from_latest {
        if let Some(latest) = state.store.latest_point(&stream.id).await? {
            pending.push_back(convert::point(latest));
        }
    }
    let watcher = Watcher {
        stopping: state.stopping.clone(),
        state,
        token_hash,
        stream_id: stream.id,
        committed,
        pending,
        checked: Instant::now(),
        done: false,
    };
    let points = futures::stream::unfold(watcher, |mut w| async move {
        w.next().await.map(|item| (item, w))
    });
    Ok(Box::pin(points))
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<proto::DataPoint, Status>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(point) = self.pending.pop_front() {
                return Some(Ok(point));
            }
            let received = tokio::select! {
                received = self.committed.recv() => received,
                _ = self.stopping.wait_for(|stop| *stop) => return None,
            };
            match received {
                Ok(batch) if batch.stream_id == self.stream_id => {
                    if let Err(err) = self.recheck().await {
                        self.done = true;
                        return Some(Err(err.into()));
                    }
                    self.pending
                        .extend(batch.points.iter().map(|p| proto::DataPoint {
                            period: p.period.clone(),
                            value: p.value.clone(),
                            external_id: p.external_id.clone().unwrap_or_default(),
                            updated_at: Some(convert::timestamp(batch.at)),
                            batch_id: batch.batch_id.clone(),
                            key_id: batch.key_id.to_string(),
                            revision_count: 0,
                        }));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    self.done = true;
                    return Some(Err(Status::aborted(format!(
                        "this watch fell {missed} batches behind the server and was ended: watch again, and read what you missed with ListPoints"
                    ))));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The token must still be valid and still allow reading the stream.
    async fn recheck(&mut self) -> Result<(), ApiError> {
        if self.checked.elapsed() < RECHECK {
            return Ok(());
        }
        let who = self
            .state
            .store
            .principal_for_token(&self.token_hash, jiff::Timestamp::now())
            .await?
            .ok_or(AuthError::InvalidToken)?;
        self.state
            .stream_for(&who, self.stream_id.as_str(), Access::Read)
            .await?;
        self.checked = Instant::now();
        Ok(())
    }
}
