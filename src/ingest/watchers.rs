//! Who watches which stream, and what each watcher has yet to send.
//!
//! The writer hands every committed batch to the watchers of its stream only, each into
//! a queue of its own bounded in points. A watcher whose client stopped reading fills
//! its queue and is then cut off: its queue is dropped at once and it ends with a status
//! that says where to resume. So a stalled watcher holds at most its own bound, and
//! never a batch of a stream (or organisation) it does not watch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Committed;
use crate::ids::StreamId;

/// Every watcher of every stream.
#[derive(Debug, Default)]
pub struct Watchers {
    streams: Mutex<HashMap<StreamId, Vec<Arc<Watcher>>>>,
}

#[derive(Debug)]
struct Watcher {
    queue: Mutex<Queue>,
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<Arc<Committed>>,
    points: usize,
    /// Set when the queue overflowed: the watcher has lost batches and must end.
    overflowed: bool,
}

/// What a watcher gets next.
#[derive(Debug)]
pub enum Next {
    Batch(Arc<Committed>),
    /// The watcher fell more than its bound behind and lost batches.
    Overflowed,
}

/// A watch of one stream; dropping it stops the deliveries.
#[derive(Debug)]
pub struct Subscription {
    watchers: Arc<Watchers>,
    stream: StreamId,
    watcher: Arc<Watcher>,
}

impl Watchers {
    /// Starts queueing the stream's committed batches, up to `capacity` points.
    pub fn subscribe(self: &Arc<Self>, stream: StreamId, capacity: usize) -> Subscription {
        let watcher = Arc::new(Watcher {
            queue: Mutex::default(),
            ready: Notify::new(),
            capacity,
        });
        self.lock()
            .entry(stream.clone())
            .or_default()
            .push(watcher.clone());
        Subscription {
            watchers: self.clone(),
            stream,
            watcher,
        }
    }

    /// Whether anybody watches anything (the writer skips the work otherwise).
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Queues a committed batch for the watchers of its stream.
    pub fn deliver(&self, batch: &Arc<Committed>) {
        let streams = self.lock();
        for watcher in streams.get(&batch.stream_id).into_iter().flatten() {
            watcher.push(batch);
        }
    }

    /// Whether anybody watches `stream`.
    pub fn watches(&self, stream: &StreamId) -> bool {
        self.lock().contains_key(stream)
    }

    /// Ends every watch as overflowed (each is told where to resume): batches may have
    /// been committed that no watcher was given.
    pub fn overflow_all(&self) {
        for watcher in self.lock().values().flatten() {
            watcher.overflow();
        }
    }

    /// Ends every watch of `stream` as overflowed.
    pub fn overflow(&self, stream: &StreamId) {
        for watcher in self.lock().get(stream).into_iter().flatten() {
            watcher.overflow();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Vec<Arc<Watcher>>>> {
        self.streams.lock().expect("watchers lock")
    }
}

impl Watcher {
    fn push(&self, batch: &Arc<Committed>) {
        let mut queue = self.queue.lock().expect("watch queue lock");
        if queue.overflowed {
            return;
        }
        let points = batch.points.len();
        // A watcher that has caught up takes any batch, even one over its bound.
        if !queue.batches.is_empty() && queue.points + points > self.capacity {
            drop(queue);
            self.overflow();
            return;
        } else {
            queue.batches.push_back(batch.clone());
            queue.points += points;
        }
        drop(queue);
        self.ready.notify_one();
    }
}

impl Watcher {
    fn overflow(&self) {
        let mut queue = self.queue.lock().expect("watch queue lock");
        if !queue.overflowed {
            queue.batches.clear();
            queue.points = 0;
            queue.overflowed = true;
            metrics::counter!("kpistream_watches_overflowed_total").increment(1);
        }
        drop(queue);
        self.ready.notify_one();
    }
}

impl Subscription {
    /// The next batch, waiting for one.
    pub async fn next(&self) -> Next {
        loop {
            let ready = self.watcher.ready.notified();
            {
                let mut queue = self.watcher.queue.lock().expect("watch queue lock");
                if queue.overflowed {
                    return Next::Overflowed;
                }
                if let Some(batch) = queue.batches.pop_front() {
                    queue.points -= batch.points.len();
                    return Next::Batch(batch);
                }
            }
            ready.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut streams = self.watchers.lock();
        if let Some(list) = streams.get_mut(&self.stream) {
            list.retain(|w| !Arc::ptr_eq(w, &self.watcher));
            if list.is_empty() {
                streams.remove(&self.stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ValidPoint;
    use crate::ids::KeyId;

    fn batch(stream: &StreamId, points: usize) -> Arc<Committed> {
        Arc::new(Committed {
            stream_id: stream.clone(),
            key_id: KeyId::parse("key_abcdefghij").unwrap(),
            batch_id: "b".into(),
            points: (0..points)
                .map(|i| ValidPoint {
                    period: format!("2026-01-{:02}", i % 28 + 1),
                    value: "1".into(),
                    external_id: None,
                })
                .collect(),
            at: jiff::Timestamp::UNIX_EPOCH,
        })
    }

    fn stream(n: u8) -> StreamId {
        StreamId::parse(&format!("str_{n}bcdefghijklmnop")).unwrap()
    }

    #[tokio::test]
    async fn a_watcher_gets_the_batches_of_its_stream_only() {
        let watchers = Arc::new(Watchers::default());
        let (mine, other) = (stream(0), stream(1));
        let sub = watchers.subscribe(mine.clone(), 100);
        watchers.deliver(&batch(&other, 5));
        watchers.deliver(&batch(&mine, 3));
        let Next::Batch(got) = sub.next().await else {
            panic!("a batch")
        };
        assert_eq!(got.stream_id, mine);
        assert_eq!(sub.watcher.queue.lock().unwrap().points, 0);
    }

    #[tokio::test]
    async fn a_watcher_past_its_bound_drops_its_queue_and_is_told() {
        let watchers = Arc::new(Watchers::default());
        let s = stream(0);
        let sub = watchers.subscribe(s.clone(), 10);
        watchers.deliver(&batch(&s, 25)); // over the bound, but the queue was empty
        watchers.deliver(&batch(&s, 1)); // 26 > 10: overflow
        assert!(matches!(sub.next().await, Next::Overflowed));
        assert!(sub.watcher.queue.lock().unwrap().batches.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_subscription_is_forgotten() {
        let watchers = Arc::new(Watchers::default());
        drop(watchers.subscribe(stream(0), 10));
        assert!(!watchers.any());
    }
}
