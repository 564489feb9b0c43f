//! `Query.Watch`: a stream's points as they are committed. The caller's token and read
//! access are checked again (at most once a second) before points are sent, so a
//! revoked token or a removed grant stops the flow; the server's shutdown ends it.
//!
//! Each watch has a queue of its own, bounded in points (`limits.watch_buffer_points`):
//! a caller that stops reading is ended with `ABORTED` once its queue is full, and its
//! queue is dropped. The status names the `since` to watch again with; a watch with
//! `since` first sends what changed after it, from the store, then follows live.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::Stream;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use super::{ApiError, AppState, convert, parse_stream_id};
use crate::access::Access;
use crate::auth::{self, AuthError};
use crate::ids::StreamId;
use crate::ingest::Committed;
use crate::ingest::watchers::{Next, Subscription};
use crate::proto;
use crate::store::PointRecord;
use crate::wire;

/// The answer of `Watch`.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::DataPoint, Status>> + Send>>;

/// How often a watcher's token and access are checked again.
const RECHECK: Duration = Duration::from_secs(1);
/// Points read from the store at a time while a resumed watch catches up.
const CATCH_UP_PAGE: u32 = 1_000;

struct Watcher {
    state: AppState,
    token_hash: [u8; 32],
    stream_id: StreamId,
    subscription: Subscription,
    stopping: CancellationToken,
    pending: VecDeque<proto::DataPoint>,
    /// While catching up from the store: the last change read from it.
    catching_up: Option<(Timestamp, Option<String>)>,
    /// The latest change sent, for the sentence that tells an overflowed watcher where
    /// to resume.
    sent_up_to: Option<Timestamp>,
    /// The latest change the catch-up read from the store: live batches at or before it
    /// were sent by the catch-up. (Not `sent_up_to`: the batches of one commit share its
    /// time, and each of them must be sent.)
    caught_up_to: Option<Timestamp>,
    checked: Instant,
    done: bool,
}

/// Checks the request and starts the watch.
pub async fn start(
    state: AppState,
    request: Request<proto::WatchRequest>,
) -> Result<WatchStream, ApiError> {
    let stream_id = parse_stream_id(&request.get_ref().stream_id)?;
    let since = convert::optional_time("since", request.get_ref().since)?;
    // Subscribe first, so nothing committed after the store is read is missed.
    let subscription = state
        .ingestor
        .subscribe(stream_id.clone(), state.watch_buffer_points);
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let token_hash = auth::hash_token(&auth::bearer(header)?);
    let who = state.principal(&request).await?;
    let stream = state
        .stream_for(&who, stream_id.as_str(), Access::Read)
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
        subscription,
        pending,
        catching_up: since.map(|at| (at, None)),
        sent_up_to: since,
        caught_up_to: since,
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
        match self.fill().await {
            Ok(true) => self.pending.pop_front().map(Ok),
            Ok(false) => None,
            Err(status) => {
                self.done = true;
                Some(Err(status))
            }
        }
    }

    /// Waits until there is a point to send: `false` when the watch is over.
    async fn fill(&mut self) -> Result<bool, Status> {
        while self.pending.is_empty() {
            if let Some(after) = self.catching_up.take() {
                self.catch_up(after).await?;
                continue;
            }
            let next = tokio::select! {
                next = self.subscription.next() => next,
                () = self.stopping.cancelled() => return Ok(false),
            };
            match next {
                Next::Batch(batch) => self.take(&batch).await?,
                Next::Overflowed => return Err(self.overflowed()),
            }
        }
        Ok(true)
    }

    /// Reads the next page of changes after `after` from the store.
    async fn catch_up(&mut self, after: (Timestamp, Option<String>)) -> Result<(), Status> {
        let page = self
            .state
            .store
            .points_updated_after(
                &self.stream_id,
                (after.0, after.1.as_deref()),
                CATCH_UP_PAGE,
            )
            .await
            .map_err(ApiError::from)?;
        if page.len() == CATCH_UP_PAGE as usize {
            let last: &PointRecord = &page[page.len() - 1];
            self.catching_up = Some((last.updated_at, Some(last.period.clone())));
        }
        if let Some(last) = page.last() {
            self.sent_up_to = Some(last.updated_at);
            self.caught_up_to = Some(last.updated_at);
        }
        self.pending.extend(page.into_iter().map(convert::point));
        Ok(())
    }

    async fn take(&mut self, batch: &Committed) -> Result<(), Status> {
        if self.caught_up_to.is_some_and(|read| batch.at <= read) {
            return Ok(());
        }
        self.recheck().await?;
        self.sent_up_to = Some(batch.at);
        self.pending
            .extend(batch.points.iter().map(|p| proto::DataPoint {
                period: p.period.clone(),
                value: p.value.clone(),
                external_id: p.external_id.clone().unwrap_or_default(),
                updated_at: Some(wire::timestamp(batch.at)),
                batch_id: batch.batch_id.clone(),
                key_id: batch.key_id.to_string(),
                revision_count: 0,
            }));
        Ok(())
    }

    fn overflowed(&self) -> Status {
        let resume = match self.sent_up_to {
            Some(at) => format!("watch again with since = {at} to resume without a gap"),
            None => {
                "watch again (with from_latest, or read what you missed with ListPoints)".to_owned()
            }
        };
        Status::aborted(format!(
            "this watch fell more than {} points behind the stream and was ended: {resume}",
            self.state.watch_buffer_points
        ))
    }

    /// The token must still be valid and still allow reading the stream.
    async fn recheck(&mut self) -> Result<(), ApiError> {
        if self.checked.elapsed() < RECHECK {
            return Ok(());
        }
        let who = self
            .state
            .store
            .principal_for_token(&self.token_hash, Timestamp::now())
            .await?
            .ok_or(AuthError::InvalidToken)?;
        self.state
            .stream_for(&who, self.stream_id.as_str(), Access::Read)
            .await?;
        self.checked = Instant::now();
        Ok(())
    }
}
