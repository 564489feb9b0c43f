//! The console's connectors: each connector's state on the server (enabled, cursor,
//! consecutive failures, last run and its outcome), its run log, and for those the
//! `Runner` service answers (org admins and runners) enable, disable and "Run now".
//! "Run now" asks the runners for a run by hand (`Runner.RequestRun`); the next runner
//! that polls and has the connector runs it, and the page follows it live until the
//! run is in the log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::pages::{layout, live_layout, local_time, page, refused, wire_time};
use super::{Console, NoFields, Posted, SignedIn};
use crate::grpc::Authenticated;
use crate::proto;
use crate::proto::runner_server::Runner;
use crate::runner_state::RUN_REQUEST_TTL_SECS;

/// Runs the connector page shows.
const RUNS_SHOWN: u32 = 50;

/// What a path segment keeps as it is; a connector name may hold any other character
/// (`/`, `?`, `#`, spaces), escaped.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The console address of a connector's page.
fn page_of(name: &str) -> String {
    format!(
        "/console/connectors/{}",
        percent_encoding::utf8_percent_encode(name, SEGMENT)
    )
}

/// A run's length in words: `850 ms`, `12.3 s`, `4 min`.
fn duration(run: &proto::Run) -> String {
    let (Some(start), Some(end)) = (
        run.started_at
            .as_ref()
            .and_then(crate::signature::timestamp),
        run.ended_at.as_ref().and_then(crate::signature::timestamp),
    ) else {
        return "—".to_owned();
    };
    let ms = end.duration_since(start).as_millis().max(0);
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        ms => format!("{} min", ms / 60_000),
    }
}

/// What started a run, in a word.
fn trigger(run: &proto::Run) -> String {
    if !run.backfill.is_empty() {
        format!("backfill {}", run.backfill)
    } else if run.manual {
        "by hand".to_owned()
    } else {
        "schedule".to_owned()
    }
}

/// Where a run asked for by hand stands.
enum Request {
    None,
    Waiting(jiff::Timestamp),
    /// Older than runners take up (`RUN_REQUEST_TTL_SECS`).
    Expired(jiff::Timestamp),
}

fn request_of(state: &proto::ConnectorState) -> Request {
    let Some(at) = state
        .run_requested_at
        .as_ref()
        .and_then(crate::signature::timestamp)
    else {
        return Request::None;
    };
    let age = jiff::Timestamp::now().duration_since(at);
    if age > jiff::SignedDuration::from_secs(RUN_REQUEST_TTL_SECS) {
        Request::Expired(at)
    } else {
        Request::Waiting(at)
    }
}

fn state_badge(state: &proto::ConnectorState) -> Markup {
    let (class, text) = if !state.enabled {
        ("disabled", "disabled")
    } else if !state.last_error.is_empty() {
        ("stale", "failing")
    } else if state.last_run_ended.is_none() {
        ("pending", "not run yet")
    } else {
        ("active", "ok")
    };
    html! { span class={ "badge " (class) } { (text) } }
}

pub async fn list(State(console): State<Console>, signed_in: SignedIn) -> Response {
    let request = proto::ListConnectorsRequest {
        requested_only: false,
    };
    let connectors = api!(console, runner, signed_in, list_connectors, request).connectors;
    let markup = layout(
        "Connectors",
        Some(&signed_in),
        html! {
            h1 { "Connectors" }
            p.summary {
                (connectors.len()) " connector(s) known to the server. A connector appears once a runner has run it; its definition lives in the runner's directory."
            }
            table.connectors {
                thead { tr {
                    th { "Connector" } th { "State" } th { "Cursor" } th.num { "Failures in a row" }
                    th { "Last run" } th { "Last error" }
                } }
                tbody {
                    @for c in &connectors {
                        tr {
                            td { a href=(page_of(&c.connector)) { (c.connector) }
                                @if matches!(request_of(c), Request::Waiting(_)) { span.category { "run asked" } } }
                            td { (state_badge(c)) }
                            td { code { (c.cursor.as_deref().unwrap_or("—")) } }
                            td.num { (c.consecutive_failures) }
                            td { (wire_time(c.last_run_ended.as_ref())) }
                            td.error { (c.last_error) }
                        }
                    }
                }
            }
            @if connectors.is_empty() { p.empty { "No connector has run yet: start " code { "kpistream runner" } " with a connector directory." } }
        },
    );
    page(StatusCode::OK, markup)
}

pub async fn connector(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(name): Path<String>,
) -> Response {
    let who = &signed_in.who;
    let state = match state_of(&console, who, &name).await {
        Ok(state) => state,
        Err(status) => return refused(&console.state, &status),
    };
    // The API answers a default state for any name; the console has pages only for the
    // connectors the server keeps something of (in the user's organisation).
    match console
        .state
        .store
        .list_connectors(&who.org_id, false)
        .await
    {
        Ok(known) if known.iter().any(|(n, _)| n.as_str() == name) => {}
        Ok(_) => {
            return refused(
                &console.state,
                &tonic::Status::not_found("no such connector"),
            );
        }
        Err(e) => return super::pages::store_error(&console.state, &e),
    }
    let runs = proto::ListRunsRequest {
        connector: name.clone(),
        limit: RUNS_SHOWN,
        page_token: String::new(),
    };
    let runs = api!(console, runner, signed_in, list_runs, runs).runs;
    let base = page_of(&name);
    let csrf = signed_in.csrf_field();
    let markup = live_layout(
        &name,
        &signed_in,
        &format!("{base}/events"),
        html! {
            p.back { a href="/console/connectors" { "← Connectors" } }
            div data-live-region {
                h1 { (name) " " (state_badge(&state)) " " span.live-indicator { "live" } }
                dl.facts {
                    dt { "Enabled" } dd { @if state.enabled { "yes" } @else { "no: scheduled runs are skipped" } }
                    dt { "Cursor" } dd { code { (state.cursor.as_deref().unwrap_or("none yet")) } }
                    dt { "Failures in a row" } dd { (state.consecutive_failures) }
                    dt { "Last run" } dd { (wire_time(state.last_run_started.as_ref())) " → " (wire_time(state.last_run_ended.as_ref())) }
                    @if !state.last_error.is_empty() { dt { "Last error" } dd.error { (state.last_error) } }
                    @if state.unfinished_slot.is_some() { dt { "Unfinished slot" } dd { (wire_time(state.unfinished_slot.as_ref())) " (a runner stopped mid-run; it is taken up again)" } }
                    dt { "Run asked for" } dd #run-requested {
                        @match request_of(&state) {
                            Request::None => "no",
                            Request::Waiting(at) => { (local_time(at)) ", waiting for a runner" }
                            Request::Expired(at) => { (local_time(at)) ", not taken up within " (RUN_REQUEST_TTL_SECS / 60) " minutes: a runner may be down, or not have this connector; ask again" }
                        }
                    }
                }
                h2 { "Runs" }
                table.runs {
                    caption { "The latest " (RUNS_SHOWN) " runs, newest first." }
                    thead { tr {
                        th { "Started" } th { "Trigger" } th { "Runner" } th.num { "Pulled" } th.num { "Published" }
                        th.num { "Rejected" } th.num { "Duration" } th { "Error" }
                    } }
                    tbody {
                        @for run in &runs {
                            tr class=[(!run.error.is_empty()).then_some("failed")] {
                                td { (wire_time(run.started_at.as_ref())) }
                                td { (trigger(run)) @if run.interrupted { " (stopped early)" } }
                                td { (run.runner_id) }
                                td.num { (run.records_pulled) }
                                td.num { (run.points_published) }
                                td.num { (run.points_rejected) }
                                td.num { (duration(run)) }
                                td.error { (run.error) }
                            }
                        }
                    }
                }
                @if runs.is_empty() { p.empty { "No run logged." } }
            }
            section.manage aria-labelledby="actions" {
                h2 #actions { "Actions" }
                form.inline method="post" action={ (base) "/run" } {
                    (csrf)
                    button type="submit" { "Run now" }
                    span.hint { " A runner that has this connector runs it within seconds, even while it is disabled; a success enables it again." }
                }
                br;
                @if state.enabled {
                    form.inline method="post" action={ (base) "/disable" } {
                        (csrf)
                        button.secondary type="submit" { "Disable" }
                        span.hint { " Scheduled runs are skipped until it is enabled again." }
                    }
                } @else {
                    form.inline method="post" action={ (base) "/enable" } {
                        (csrf)
                        button type="submit" { "Enable" }
                        span.hint { " Also resets its count of failures." }
                    }
                }
            }
        },
    );
    page(StatusCode::OK, markup)
}

fn connector_page(name: &str) -> Response {
    Redirect::to(&page_of(name)).into_response()
}

pub async fn run_now(
    State(console): State<Console>,
    Path(name): Path<String>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    let request = proto::ConnectorRef {
        connector: name.clone(),
    };
    api!(console, runner, signed_in, request_run, request);
    connector_page(&name)
}

async fn set_enabled(
    console: &Console,
    signed_in: &SignedIn,
    name: &str,
    enabled: bool,
) -> Response {
    let request = proto::SetEnabledRequest {
        connector: name.to_owned(),
        enabled,
    };
    api!(console, runner, signed_in, set_enabled, request);
    connector_page(name)
}

pub async fn enable(
    State(console): State<Console>,
    Path(name): Path<String>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    set_enabled(&console, &signed_in, &name, true).await
}

pub async fn disable(
    State(console): State<Console>,
    Path(name): Path<String>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    set_enabled(&console, &signed_in, &name, false).await
}

/// The connector's state on the server, as the `Runner` service answers `who`.
pub async fn state_of(
    console: &Console,
    who: &crate::auth::Principal,
    name: &str,
) -> Result<proto::ConnectorState, tonic::Status> {
    let request = proto::ConnectorRef {
        connector: name.to_owned(),
    };
    Ok(console
        .runner
        .get_state(Authenticated::request(who, request))
        .await?
        .into_inner())
}
