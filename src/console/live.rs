//! Live pages: `GET /console/streams/{id}/events` is a stream of server-sent events
//! that says `change` whenever points of the stream are committed on this server, and
//! `GET /console/connectors/{name}/events` says it when the connector's state on the
//! server changes (read every [`POLL`]: a run is reported by a runner, maybe through
//! another server). The page's script then fetches the page again and swaps its live
//! region.
//!
//! Bounded like `Query.Watch`: at most [`MAX_LIVE`] open at once (past it the page
//! falls back to reloading), a queue of [`QUEUE_POINTS`] points each, the session and
//! the read access checked again at least every [`RECHECK`], and each one ended after
//! [`LIFETIME`] (the browser opens it again by itself) or when the server shuts down.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use tokio::sync::OwnedSemaphorePermit;

use super::pages::{error_page, refused};
use super::{Console, SignedIn, connectors};
use crate::access::Access;
use crate::ids::StreamId;
use crate::ingest::watchers::{Next, Subscription};

/// Live pages open at once, at most, per server.
pub const MAX_LIVE: usize = 1_000;
/// Points a live page may have queued; past it the page is told to reload, and the
/// events end (its next connection starts afresh).
const QUEUE_POINTS: usize = 10_000;
/// How often the session and the access are checked again while nothing arrives.
const RECHECK: Duration = Duration::from_secs(30);
/// How long one connection lasts at most.
const LIFETIME: Duration = Duration::from_secs(3_600);
/// How often a live connector page reads the connector's state.
pub const POLL: Duration = Duration::from_secs(2);

fn busy() -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Busy",
        "Too many live pages are open on this server; this one reloads instead.",
    )
}

fn change() -> Event {
    Event::default().event("change").data("")
}

pub async fn events(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let Ok(permit) = console.live.clone().try_acquire_owned() else {
        return busy();
    };
    // Subscribe first, so nothing committed after the check is missed.
    let Ok(stream_id) = StreamId::parse(&id) else {
        return refused(&console.state, &tonic::Status::not_found("no such stream"));
    };
    let subscription = console
        .state
        .ingestor
        .subscribe(stream_id.clone(), QUEUE_POINTS);
    if let Err(e) = console
        .state
        .stream_for(&signed_in.who, &id, Access::Read)
        .await
    {
        return refused(&console.state, &tonic::Status::from(e));
    }
    let live = Live {
        console,
        signed_in,
        stream_id,
        subscription,
        _permit: permit,
        started: Instant::now(),
        checked: Instant::now(),
        over: false,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok::<_, Infallible>(event), live))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

struct Live {
    console: Console,
    signed_in: SignedIn,
    stream_id: StreamId,
    subscription: Subscription,
    _permit: OwnedSemaphorePermit,
    started: Instant,
    checked: Instant,
    over: bool,
}

impl Live {
    /// The next event to send; `None` when the events are over.
    async fn next(&mut self) -> Option<Event> {
        if self.over {
            return None;
        }
        loop {
            let left = LIFETIME.saturating_sub(self.started.elapsed());
            let wait = RECHECK.saturating_sub(self.checked.elapsed()).min(left);
            let next = tokio::select! {
                next = self.subscription.next() => Some(next),
                () = tokio::time::sleep(wait) => None,
                () = self.console.state.stopping.cancelled() => return None,
            };
            if self.started.elapsed() >= LIFETIME || !self.still_allowed().await {
                return None;
            }
            match next {
                Some(Next::Batch(_)) => return Some(change()),
                Some(Next::Overflowed) => {
                    self.over = true;
                    return Some(change());
                }
                None => {}
            }
        }
    }

    /// Whether the session is still open, its token valid and the stream still readable
    /// by it, checked at most once a second.
    async fn still_allowed(&mut self) -> bool {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return true;
        }
        self.checked = Instant::now();
        match signed_in_still(&self.console, &mut self.signed_in).await {
            Some(true) => self
                .console
                .state
                .access(&self.signed_in.who, &self.stream_id)
                .await
                .is_ok_and(|access| access.is_some()),
            Some(false) => false,
            None => true,
        }
    }
}

/// Whether the session is still open and its token valid (refreshing who it is);
/// `None` when the database cannot tell now.
async fn signed_in_still(console: &Console, signed_in: &mut SignedIn) -> Option<bool> {
    let now = Timestamp::now();
    let Some(session) = console.sessions.get(&signed_in.id, now) else {
        return Some(false);
    };
    match console
        .state
        .store
        .principal_for_token(&session.token_hash, now)
        .await
    {
        Ok(Some(who)) => {
            signed_in.who = who;
            Some(true)
        }
        Ok(None) => Some(false),
        Err(_) => None,
    }
}

pub async fn connector_events(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(name): Path<String>,
) -> Response {
    let Ok(permit) = console.live.clone().try_acquire_owned() else {
        return busy();
    };
    let seen = match connectors::state_of(&console, &signed_in.who, &name).await {
        Ok(state) => state,
        Err(status) => return refused(&console.state, &status),
    };
    let started = Instant::now();
    let name = std::sync::Arc::new(name);
    let events = futures::stream::unfold(
        (console, signed_in, seen, permit, false),
        move |(console, mut signed_in, mut seen, permit, over)| {
            let name = name.clone();
            async move {
                if over {
                    return None;
                }
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        () = console.state.stopping.cancelled() => return None,
                    }
                    if started.elapsed() >= LIFETIME
                        || signed_in_still(&console, &mut signed_in).await == Some(false)
                    {
                        return None;
                    }
                    match connectors::state_of(&console, &signed_in.who, &name).await {
                        Ok(state) if state != seen => {
                            seen = state;
                            let next = (console, signed_in, seen, permit, false);
                            return Some((Ok::<_, Infallible>(change()), next));
                        }
                        Ok(_) => {}
                        // No longer allowed, or the connector was forgotten: the page says so.
                        Err(status) if status.code() != tonic::Code::Unavailable => {
                            return Some((Ok(change()), (console, signed_in, seen, permit, true)));
                        }
                        Err(_) => {}
                    }
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
