//! The freshness check: compares every stream's status with the one it was last seen
//! in, and turns each change into events: `stream.stale` and `stream.recovered` for
//! the webhooks that want them and the addresses subscribed to the stream, any other
//! change as `stream.status` for webhooks.

use std::collections::HashMap;

use jiff::Timestamp;

use super::event::{self, EventDoc, Seen};
use super::{AlertSubscription, EventKind, NewDelivery, Target, Webhook};
use crate::ids::{OrgId, StreamId};
use crate::store::notify::SeenStatus;
use crate::store::{Result, Store};
use crate::stream::Stream;

/// An organisation's webhooks and subscriptions, read once per check when one of its
/// streams changed.
struct Targets {
    webhooks: Vec<Webhook>,
    subscriptions: Vec<AlertSubscription>,
}

/// The deliveries of `doc` to everyone in `targets` who wants it.
pub fn deliveries(
    doc: &EventDoc,
    kind: EventKind,
    stream: &Stream,
    webhooks: &[Webhook],
    subscriptions: &[AlertSubscription],
) -> Vec<NewDelivery> {
    let payload = serde_json::to_string(doc).expect("an event serializes");
    let delivery = |target| NewDelivery {
        event_id: doc.id.clone(),
        event: kind,
        target,
        stream: Some(stream.id.clone()),
        payload: payload.clone(),
    };
    let hooks = webhooks
        .iter()
        .filter(|hook| hook.wants(kind, stream))
        .map(|hook| delivery(Target::Webhook(hook.id.clone())));
    let emailed = matches!(kind, EventKind::Stale | EventKind::Recovered);
    let mut addresses: Vec<&str> = subscriptions
        .iter()
        .filter(|s| emailed && s.scope.covers(stream))
        .map(|s| s.email.as_str())
        .collect();
    // An address subscribed twice (to the stream and to its category) gets one email.
    addresses.sort_unstable_by_key(|a| a.to_ascii_lowercase());
    addresses.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    hooks
        .chain(
            addresses
                .into_iter()
                .map(|a| delivery(Target::Email(a.to_owned()))),
        )
        .collect()
}

/// Checks every stream once; returns how many changed status.
pub async fn check(store: &dyn Store, now: Timestamp) -> Result<usize> {
    let seen: HashMap<(OrgId, StreamId), SeenStatus> = store
        .seen_statuses()
        .await?
        .into_iter()
        .map(|s| ((s.org.clone(), s.stream.clone()), s))
        .collect();
    let (streams, _) = store.all_streams(u32::MAX).await?;
    let mut targets: HashMap<OrgId, Targets> = HashMap::new();
    let mut changed = 0;
    for stream in &streams {
        let status = stream.status(now);
        let stored = seen.get(&(stream.org_id.clone(), stream.id.clone()));
        let before = stored.and_then(|s| Seen::parse(&s.status));
        let (next, kind) = event::status_event(before, status);
        if before == Some(next) {
            continue;
        }
        // A recovery needs data after the stale status was recorded: a server whose
        // clock is behind another's must not undo its alert.
        let recovered_without_data = kind == Some(EventKind::Recovered)
            && stored.is_some_and(|s| stream.last_data_at.is_none_or(|at| at <= s.changed_at));
        if recovered_without_data {
            continue;
        }
        let deliveries = match kind {
            None => Vec::new(),
            Some(kind) => {
                if !targets.contains_key(&stream.org_id) {
                    let org = &stream.org_id;
                    let found = Targets {
                        webhooks: store.list_webhooks(org).await?,
                        subscriptions: store.list_subscriptions(org).await?,
                    };
                    targets.insert(org.clone(), found);
                }
                let found = &targets[&stream.org_id];
                let from = before.map(|s| s.status);
                let doc = event::status_doc(kind, stream, from, status, now);
                deliveries(&doc, kind, stream, &found.webhooks, &found.subscriptions)
            }
        };
        let recorded = store
            .record_status(
                &stream.org_id,
                &stream.id,
                stored.map(|s| s.status.as_str()),
                next.as_str(),
                &deliveries,
                now,
            )
            .await?;
        if recorded {
            changed += 1;
            if !deliveries.is_empty() {
                tracing::info!(
                    stream = %stream.id,
                    from = before.map_or("unseen", Seen::as_str),
                    to = next.as_str(),
                    deliveries = deliveries.len(),
                    "stream status changed: notifications queued"
                );
            }
        }
    }
    Ok(changed)
}
