//! Point events: for each webhook that wants `point.accepted` or `point.revised`, the
//! points of its streams that changed since its cursor become events, and the cursor
//! moves past them in the transaction that queues them. The points table is the log:
//! nothing is lost if the server stops between two scans.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use super::event;
use super::freshness::deliveries;
use super::{EventKind, Webhook};
use crate::ids::{OrgId, StreamId};
use crate::store::{PointRecord, Result, Store};
use crate::stream::Stream;

/// Points in one event at most; more changed points make more events.
pub const MAX_POINTS_PER_EVENT: u32 = 1_000;

/// Changes younger than this are left for the next scan: a commit stamped a little
/// earlier may not be visible yet (servers sharing a database commit concurrently).
const SETTLE: SignedDuration = SignedDuration::from_secs(1);

/// Scans once; returns how many events were queued.
pub async fn scan(store: &dyn Store, now: Timestamp) -> Result<usize> {
    let hooks: Vec<(OrgId, Webhook)> = store
        .enabled_webhooks()
        .await?
        .into_iter()
        .filter(|(_, hook)| hook.events.iter().any(|e| e.is_point()))
        .collect();
    if hooks.is_empty() {
        return Ok(0);
    }
    let settled = now.checked_sub(SETTLE).unwrap_or(now);
    let mut streams: HashMap<OrgId, Vec<Stream>> = HashMap::new();
    let mut queued = 0;
    for (org, hook) in &hooks {
        if !streams.contains_key(org) {
            streams.insert(org.clone(), store.list_streams(org).await?);
        }
        let cursors: HashMap<StreamId, (Timestamp, String)> = store
            .webhook_cursors(org, &hook.id)
            .await?
            .into_iter()
            .map(|(stream, at, period)| (stream, (at, period)))
            .collect();
        for stream in &streams[org] {
            if !hook.scope.covers(stream) {
                continue;
            }
            let cursor = cursors.get(&stream.id);
            let since = cursor.map_or(hook.created_at, |(at, _)| *at);
            if stream.last_data_at.is_none_or(|at| at < since) {
                continue;
            }
            queued += send_changes(store, org, hook, stream, cursor, settled, now).await?;
        }
    }
    Ok(queued)
}

/// Queues the events of `stream`'s points changed after `cursor` (after the webhook's
/// creation without one) and settled by `settled`.
async fn send_changes(
    store: &dyn Store,
    org: &OrgId,
    hook: &Webhook,
    stream: &Stream,
    cursor: Option<&(Timestamp, String)>,
    settled: Timestamp,
    now: Timestamp,
) -> Result<usize> {
    let after = match cursor {
        Some((at, period)) => (*at, Some(period.as_str())),
        None => (hook.created_at, None),
    };
    let changed = store
        .points_updated_after(&stream.id, after, MAX_POINTS_PER_EVENT)
        .await?;
    let changed: Vec<&PointRecord> = changed
        .iter()
        .take_while(|p| p.updated_at <= settled)
        .collect();
    let Some(last) = changed.last() else {
        return Ok(0);
    };
    let mut queued = Vec::new();
    for kind in [EventKind::PointAccepted, EventKind::PointRevised] {
        let points: Vec<&PointRecord> = changed
            .iter()
            .copied()
            .filter(|p| (p.revision_count > 0) == (kind == EventKind::PointRevised))
            .collect();
        if points.is_empty() || !hook.wants(kind, stream) {
            continue;
        }
        let doc = event::points_doc(kind, stream, &points, now);
        queued.extend(deliveries(
            &doc,
            kind,
            stream,
            std::slice::from_ref(hook),
            &[],
        ));
    }
    let from = cursor.map(|(at, period)| (*at, period.as_str()));
    let moved = store
        .advance_webhook_cursor(
            org,
            &hook.id,
            &stream.id,
            from,
            (last.updated_at, &last.period),
            &queued,
            now,
        )
        .await?;
    Ok(if moved { queued.len() } else { 0 })
}
