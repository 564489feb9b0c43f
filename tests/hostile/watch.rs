//! A stalled watcher cannot hold other subscribers' or organisations' batches.
