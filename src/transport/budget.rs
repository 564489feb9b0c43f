//! The receive budget: how many bytes of request messages the server holds while they
//! arrive, across all connections and per connection.
//!
//! tonic reserves a message's whole announced length as soon as it reads the 5-byte gRPC
//! header, and keeps what arrived until the message is complete. Without a budget, a
//! client that announces many 4 MiB messages and stalls near their end makes the server
//! hold gigabytes. So every request body passes through [`BudgetedBody`], which reads the
//! same framing: before handing on a chunk that leaves a message unfinished, it takes
//! permits for the message's announced length, first from the connection's share, then
//! from the server-wide budget. Until it has them it does not read further, so the
//! bytes stay in HTTP/2 flow control (the client stops at its window) instead of in
//! memory. A message must also arrive in full within the message timeout of its first
//! byte, or the call ends and its permits go back.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;

use super::conn::{CallGuard, ConnInfo};

/// The gRPC message header: a compression flag and a 4-byte big-endian length.
pub(crate) const HEADER: usize = 5;

/// The server-wide part of the budget and the rules every body follows.
#[derive(Debug)]
pub struct ReceiveBudget {
    global: Arc<Semaphore>,
    max_message: usize,
    message_timeout: Duration,
}

impl ReceiveBudget {
    pub fn new(total_bytes: usize, max_message: usize, message_timeout: Duration) -> Self {
        Self {
            global: Arc::new(Semaphore::new(total_bytes)),
            max_message,
            message_timeout,
        }
    }
}

/// Wraps every gRPC call: its request body draws on the receive budget, and the call
/// counts as in progress on its connection (for the idle timeout) until its response
/// has been sent.
#[derive(Debug, Clone)]
pub struct BudgetLayer {
    budget: Arc<ReceiveBudget>,
}

impl BudgetLayer {
    pub fn new(budget: Arc<ReceiveBudget>) -> Self {
        Self { budget }
    }
}

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// The service [`BudgetLayer`] makes.
#[derive(Debug, Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: Arc<ReceiveBudget>,
}

impl<S> tower::Service<http::Request<Body>> for Budgeted<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let conn = request
            .extensions()
            .get::<ConnInfo>()
            .map(|info| info.state.clone());
        let call = conn.as_ref().map(|state| state.begin_call());
        let share = conn.map(|state| state.receive.clone());
        let budget = self.budget.clone();
        let request = request.map(|body| Body::new(BudgetedBody::new(body, budget, share)));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(CallBody { body, _call: call })))
        })
    }
}

/// A response body that keeps its call counted as in progress until it is dropped.
struct CallBody {
    body: Body,
    _call: Option<CallGuard>,
}

impl http_body::Body for CallBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a request body is in gRPC's length-prefixed framing.
#[derive(Debug, Default)]
struct Framing {
    header: [u8; HEADER],
    header_read: usize,
    /// Announced length of the message being read, and how much of it is still to come.
    length: usize,
    body_left: usize,
    /// How many messages have begun, to tell when a new one starts.
    begun: u64,
}

impl Framing {
    /// Reads over a chunk. Answers the bytes the message still unfinished after it will
    /// occupy in memory (its header and announced length), or `None` between messages.
    fn feed(&mut self, mut data: &[u8]) -> Option<usize> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(data.len());
                self.body_left -= take;
                data = &data[take..];
                continue;
            }
            if self.header_read == 0 {
                self.begun += 1;
            }
            let take = (HEADER - self.header_read).min(data.len());
            self.header[self.header_read..self.header_read + take].copy_from_slice(&data[..take]);
            self.header_read += take;
            data = &data[take..];
            if self.header_read == HEADER {
                self.header_read = 0;
                let length = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.length = length as usize;
                self.body_left = self.length;
            }
        }
        if self.body_left > 0 {
            Some(HEADER + self.length)
        } else if self.header_read > 0 {
            Some(self.header_read)
        } else {
            None
        }
    }
}

/// Permits for the bytes of the message in progress, from both budgets.
struct Permits {
    global: OwnedSemaphorePermit,
    share: Option<OwnedSemaphorePermit>,
}

impl Permits {
    fn bytes(&self) -> usize {
        self.global.num_permits()
    }

    fn merge(&mut self, other: Permits) {
        self.global.merge(other.global);
        match (&mut self.share, other.share) {
            (Some(mine), Some(more)) => mine.merge(more),
            (mine, more) => *mine = mine.take().or(more),
        }
    }

    /// Gives back all but `keep` bytes.
    fn shrink(&mut self, keep: usize) {
        let excess = self.bytes().saturating_sub(keep);
        drop(self.global.split(excess));
        if let Some(share) = &mut self.share {
            drop(share.split(excess));
        }
    }
}

/// A chunk read from the connection, waiting for the permits its message needs.
struct Waiting {
    frame: Frame<Bytes>,
    permits: BoxFuture<'static, Result<Permits, Status>>,
}

/// A request body that draws on the receive budget (see the module docs).
pub struct BudgetedBody {
    inner: Body,
    budget: Arc<ReceiveBudget>,
    share: Option<Arc<Semaphore>>,
    framing: Framing,
    held: Option<Permits>,
    waiting: Option<Waiting>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl BudgetedBody {
    fn new(inner: Body, budget: Arc<ReceiveBudget>, share: Option<Arc<Semaphore>>) -> Self {
        Self {
            inner,
            budget,
            share,
            framing: Framing::default(),
            held: None,
            waiting: None,
            deadline: None,
        }
    }

    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, Permits::bytes)
    }

    fn hold(&mut self, permits: Permits) {
        metrics::gauge!("kpistream_receive_budget_used_bytes").increment(permits.bytes() as f64);
        match &mut self.held {
            Some(held) => held.merge(permits),
            None => self.held = Some(permits),
        }
    }

    /// Keeps permits for `keep` bytes and gives back the rest.
    fn keep(&mut self, keep: usize) {
        let before = self.held_bytes();
        if keep == 0 {
            self.held = None;
        } else if let Some(held) = &mut self.held {
            held.shrink(keep);
        }
        let given_back = before - self.held_bytes();
        metrics::gauge!("kpistream_receive_budget_used_bytes").decrement(given_back as f64);
    }

    /// Takes `bytes` more permits at once if they are free, else queues for them.
    fn reserve(&mut self, bytes: usize, frame: Frame<Bytes>) -> Option<Frame<Bytes>> {
        let count = u32::try_from(bytes).unwrap_or(u32::MAX);
        let share = match &self.share {
            Some(share) => share.clone().try_acquire_many_owned(count).ok().map(Some),
            None => Some(None),
        };
        if let Some(share) = share {
            if let Ok(global) = self.budget.global.clone().try_acquire_many_owned(count) {
                self.hold(Permits { global, share });
                return Some(frame);
            }
        }
        let (global, share) = (self.budget.global.clone(), self.share.clone());
        self.waiting = Some(Waiting {
            frame,
            permits: Box::pin(acquire(global, share, count)),
        });
        None
    }

    fn too_slow(&mut self) -> Status {
        self.keep(0);
        self.waiting = None;
        metrics::counter!("kpistream_requests_cut_total", "reason" => "message_timeout")
            .increment(1);
        Status::deadline_exceeded(format!(
            "a request message must arrive in full within {} s of its first byte (limits.message_timeout_secs), and this one did not: send smaller batches or over a faster link",
            self.budget.message_timeout.as_secs()
        ))
    }

    /// Accounts for a data chunk just read; `None` when it must wait for permits.
    fn admit(&mut self, frame: Frame<Bytes>) -> Option<Frame<Bytes>> {
        let Some(data) = frame.data_ref() else {
            return Some(frame);
        };
        let begun = self.framing.begun;
        let Some(need) = self.framing.feed(data) else {
            self.keep(0);
            self.deadline = None;
            return Some(frame);
        };
        if self.framing.begun != begun || self.deadline.is_none() {
            let timeout = self.budget.message_timeout;
            self.deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        }
        // tonic refuses a message over the size limit as soon as it reads the header.
        if self.framing.length > self.budget.max_message {
            return Some(frame);
        }
        let held = self.held_bytes();
        if need <= held {
            self.keep(need);
            return Some(frame);
        }
        self.reserve(need - held, frame)
    }
}

async fn acquire(
    global: Arc<Semaphore>,
    share: Option<Arc<Semaphore>>,
    count: u32,
) -> Result<Permits, Status> {
    let closed = |_| Status::unavailable("the server is shutting down");
    // The connection's share first: a connection waiting for its own share must not
    // sit on server-wide permits that other connections could use.
    let share = match share {
        Some(share) => Some(share.acquire_many_owned(count).await.map_err(closed)?),
        None => None,
    };
    let global = global.acquire_many_owned(count).await.map_err(closed)?;
    Ok(Permits { global, share })
}

impl http_body::Body for BudgetedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(deadline) = &mut this.deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.too_slow())));
                }
            }
            if let Some(waiting) = &mut this.waiting {
                let permits = ready!(waiting.permits.as_mut().poll(cx))?;
                let frame = this.waiting.take().map(|w| w.frame);
                this.hold(permits);
                return Poll::Ready(frame.map(Ok));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(frame) = this.admit(frame) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    // Queued for permits: poll the wait (and the deadline) at once.
                }
                end_or_error => {
                    this.keep(0);
                    return Poll::Ready(end_or_error);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for BudgetedBody {
    fn drop(&mut self) {
        self.keep(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u32) -> Vec<u8> {
        let mut h = vec![0];
        h.extend_from_slice(&length.to_be_bytes());
        h
    }

    #[test]
    fn a_message_split_over_chunks_holds_its_announced_length_until_it_ends() {
        let mut framing = Framing::default();
        assert_eq!(framing.feed(&header(100)[..3]), Some(3));
        assert_eq!(framing.feed(&header(100)[3..]), Some(105));
        assert_eq!(framing.feed(&[0; 60]), Some(105));
        assert_eq!(framing.feed(&[0; 40]), None);
        assert_eq!(framing.begun, 1);
    }

    #[test]
    fn a_chunk_that_ends_one_message_and_begins_another_holds_the_second() {
        let mut framing = Framing::default();
        let mut chunk = header(2);
        chunk.extend_from_slice(&[1, 2]);
        chunk.extend_from_slice(&header(1000));
        chunk.extend_from_slice(&[0; 10]);
        assert_eq!(framing.feed(&chunk), Some(1005));
        assert_eq!(framing.begun, 2);
    }

    #[test]
    fn empty_messages_leave_the_body_between_messages() {
        let mut framing = Framing::default();
        let mut chunk = header(0);
        chunk.extend_from_slice(&header(0));
        assert_eq!(framing.feed(&chunk), None);
        assert_eq!(framing.begun, 2);
    }
}
