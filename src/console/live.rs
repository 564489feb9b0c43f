//! Live pages: `GET /console/streams/{id}/events` is a stream of server-sent events
//! that says `change` whenever points of the stream are committed on this server, and
//! `GET /console/connectors/{name}/events` says it when the connector's state on the
//! server changes (read every [`POLL`]: a run is reported by a runner, maybe through
//! another server). The page's script then fetches the page again and swaps its live
//! region.
//!
//! Bounded like `Query.Watch`: at most half of `limits.max_http_connections` open at
//! once (past it the page falls back to reloading now and then), a queue of
//! [`QUEUE_POINTS`] points each, the session and the read access checked again at
//! least every [`RECHECK`], and each one ended after [`LIFETIME`] (below the HTTP
//! port's idle timeout, which an open event stream does not hold off; the browser opens
//! it again by itself, and the page fetches itself then, for what changed meanwhile) or
//! when the server shuts down.

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

/// Points a live page may have queued; past it the page is told to reload, and the
/// events end (its next connection starts afresh).
const QUEUE_POINTS: usize = 10_000;
/// How often the session and the access are checked again while nothing arrives.
const RECHECK: Duration = Duration::from_secs(30);
/// How long one connection lasts at most.
const LIFETIME: Duration = Duration::from_secs(240);
/// How often a live connector page reads the connector's state.
const POLL: Duration = Duration::from_secs(3);

/// Live pages one session may have open at once (a browser keeps about six connections
/// per server anyway).
const PER_SESSION: usize = 8;

/// A live page's place: one of the server's, and one of its session's.
struct Slot {
    _server: OwnedSemaphorePermit,
    sessions: std::sync::Arc<super::session::Sessions>,
    session_id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.sessions.leave_live(&self.session_id);
    }
}

/// The page that says there is no place for a live page, and why.
fn busy(why: &str) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Busy",
        &format!("{why}; this one reloads now and then instead."),
    )
}

/// A place for a live page of `signed_in`, or why there is none.
fn take_slot(console: &Console, signed_in: &SignedIn) -> Result<Slot, String> {
    let Ok(server) = console.live.clone().try_acquire_owned() else {
        return Err("Too many live pages are open on this server".to_owned());
    };
    if !console.sessions.enter_live(&signed_in.id, PER_SESSION) {
        return Err(format!(
            "This session has {PER_SESSION} live pages open already"
        ));
    }
    Ok(Slot {
        _server: server,
        sessions: console.sessions.clone(),
        session_id: signed_in.id.clone(),
    })
}

/// `events` as a server-sent event stream, with comments to keep it open.
fn event_stream(events: impl futures::Stream<Item = Event> + Send + 'static) -> Response {
    use futures::StreamExt;
    Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The event that tells the page to fetch itself again. It carries data: a browser
/// does not dispatch an event without any.
fn change() -> Event {
    Event::default().event("change").data("changed")
}

pub async fn events(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let slot = match take_slot(&console, &signed_in) {
        Ok(slot) => slot,
        Err(why) => return busy(&why),
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
        _slot: slot,
        started: Instant::now(),
        checked: Instant::now(),
        over: false,
    };
    event_stream(futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((event, live))
    }))
}

struct Live {
    console: Console,
    signed_in: SignedIn,
    stream_id: StreamId,
    subscription: Subscription,
    _slot: Slot,
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
    let slot = match take_slot(&console, &signed_in) {
        Ok(slot) => slot,
        Err(why) => return busy(&why),
    };
    let seen = match connectors::state_of(&console, &signed_in.who, &name).await {
        Ok(state) => state,
        Err(status) => return refused(&console.state, &status),
    };
    let live = ConnectorLive {
        console,
        signed_in,
        name,
        seen,
        _slot: slot,
        started: Instant::now(),
        checked: Instant::now(),
        over: false,
    };
    event_stream(futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((event, live))
    }))
}

struct ConnectorLive {
    console: Console,
    signed_in: SignedIn,
    name: String,
    /// The state the page shows.
    seen: crate::proto::ConnectorState,
    _slot: Slot,
    started: Instant,
    checked: Instant,
    over: bool,
}

impl ConnectorLive {
    /// The next event to send; `None` when the events are over.
    async fn next(&mut self) -> Option<Event> {
        if self.over {
            return None;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.console.state.stopping.cancelled() => return None,
            }
            if self.started.elapsed() >= LIFETIME {
                return None;
            }
            if self.checked.elapsed() >= RECHECK {
                self.checked = Instant::now();
                if signed_in_still(&self.console, &mut self.signed_in).await == Some(false) {
                    return None;
                }
            }
            match connectors::state_of(&self.console, &self.signed_in.who, &self.name).await {
                Ok(state) if state != self.seen => {
                    self.seen = state;
                    return Some(change());
                }
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::Unavailable => {}
                // No longer allowed: the page, fetched again, says so; the events end.
                Err(_) => {
                    self.over = true;
                    return Some(change());
                }
            }
        }
    }
}
