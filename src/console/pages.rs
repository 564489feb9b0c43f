//! The console's pages: sign-in and sign-out, the streams overview, a stream's page and
//! the revision history of one of its periods.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures::StreamExt;
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::chart;
use super::session::{SESSION_HOURS, random_token, same_secret};
use super::{
    Console, NoFields, Posted, SESSION_COOKIE, SIGN_IN_COOKIE, SignedIn, cookie, set_cookie,
};
use crate::access::Access;
use crate::auth;
use crate::grpc::{ApiError, AppState};
use crate::period::Period;
use crate::store::{PointRecord, StoreError};
use crate::stream::{Stream, StreamFilter, StreamStatus};
use crate::value::ValueType;

/// Recent periods on the overview's sparklines...
const SPARK_PERIODS: u32 = 12;
/// ...and on a stream page's chart and table.
const PAGE_PERIODS: u32 = 60;
/// The overview's reads of recent points in flight at once.
const OVERVIEW_READS: usize = 8;

/// A page in the console's frame: its title, who is signed in (with the sign-out form)
/// and the content.
pub fn layout(title: &str, signed_in: Option<&SignedIn>, content: Markup) -> Markup {
    frame(title, signed_in, None, content)
}

/// A page that follows changes live: the script listens to `events` (server-sent
/// events) and replaces the page's `[data-live-region]` when something changed; without
/// the script, the page reloads itself every minute.
pub fn live_layout(title: &str, signed_in: &SignedIn, events: &str, content: Markup) -> Markup {
    frame(title, Some(signed_in), Some(events), content)
}

fn frame(
    title: &str,
    signed_in: Option<&SignedIn>,
    events: Option<&str>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · kpistream" }
                link rel="stylesheet" href="/console/console.css";
                script src="/console/console.js" defer {}
                @if events.is_some() {
                    noscript { meta http-equiv="refresh" content="60"; }
                }
            }
            body data-live=[events] {
                header.top {
                    a.brand href="/console" { "kpistream" }
                    @if let Some(s) = signed_in {
                        nav {
                            a href="/console" { "Streams" }
                            @if s.who.reads_every_stream() {
                                a href="/console/connectors" { "Connectors" }
                            }
                            @if s.who.role != crate::auth::Role::Runner {
                                a href="/console/people" { "People" }
                            }
                            @if s.who.is_admin() {
                                a href="/console/categories" { "Categories" }
                                a href="/console/audit" { "Audit log" }
                            }
                        }
                        form.sign-out method="post" action="/console/sign-out" {
                            span.who { (s.who.name) " · " (s.who.org_name) }
                            (s.csrf_field())
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

pub fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        layout(
            title,
            None,
            html! { h1 { (title) } p { (text) } p { a href="/console" { "Back to the streams" } } },
        ),
    )
}

/// A store failure as a page: 503 when the database is unavailable (and `/healthz` told),
/// 500 otherwise; never the store's own message.
pub fn store_error(state: &AppState, e: &StoreError) -> Response {
    if matches!(e, StoreError::Unavailable(_)) {
        state.health.failed(e);
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "The database cannot answer now. Try again in a moment.",
        );
    }
    tracing::error!(error = %e, "a console page failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not show this page; its log says why.",
    )
}

fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such stream, or it is not shared with you.",
    )
}

/// What the gRPC API answered a console form with, as a page: the API's own sentence
/// for what the user can act on; a stream the user may not see is one that does not
/// exist; a store failure as [`store_error`] says.
pub fn refused(state: &AppState, status: &tonic::Status) -> Response {
    use tonic::Code;
    match status.code() {
        // The API answers a stream of another organisation exactly as one that does not
        // exist, so its sentence tells nothing more; it names what is missing (a
        // stream, a team, a user).
        Code::NotFound => error_page(StatusCode::NOT_FOUND, "Not found", status.message()),
        Code::Unauthenticated => Redirect::to("/console/sign-in").into_response(),
        Code::PermissionDenied => {
            error_page(StatusCode::FORBIDDEN, "Not allowed", status.message())
        }
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange => error_page(StatusCode::BAD_REQUEST, "Not possible", status.message()),
        Code::Aborted | Code::ResourceExhausted => {
            error_page(StatusCode::CONFLICT, "Not now", status.message())
        }
        Code::Unavailable | Code::DeadlineExceeded => {
            state
                .health
                .failed(&StoreError::Unavailable(status.message().to_owned()));
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The database cannot answer now. Try again in a moment.",
            )
        }
        _ => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The server could not do this; its log says why.",
        ),
    }
}

fn api_error(state: &AppState, e: ApiError) -> Response {
    match e {
        ApiError::Store(StoreError::NotFound(_)) | ApiError::Id(_) => not_found(),
        ApiError::Store(e) => store_error(state, &e),
        other => error_page(StatusCode::BAD_REQUEST, "Not possible", &other.to_string()),
    }
}

// ----------------------------------------------------------------------------------
// Sign-in and sign-out

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
    csrf: String,
}

/// The sign-in form, bound to this browser by a cookie holding the form's CSRF token.
fn sign_in_form(problem: Option<&str>, status: StatusCode) -> Response {
    let csrf = random_token();
    let markup = layout(
        "Sign in",
        None,
        html! {
            section.sign-in {
                h1 { "Sign in" }
                p { "Paste a kpistream token (" code { "kpit_…" } "). It is exchanged for a session of "
                    (SESSION_HOURS) " hours and never shown again." }
                @if let Some(problem) = problem {
                    p.problem role="alert" { (problem) }
                }
                form method="post" action="/console/sign-in" {
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    let mut response = page(status, markup);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &csrf, "/console/sign-in", 600),
    );
    response
}

pub async fn sign_in_page(signed_in: Option<SignedIn>) -> Response {
    match signed_in {
        Some(_) => Redirect::to("/console").into_response(),
        None => sign_in_form(None, StatusCode::OK),
    }
}

pub async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(expected, &form.csrf) {
        return forbidden();
    }
    let token = secrecy::SecretString::from(form.token.trim().to_owned());
    let hash = auth::hash_token(&token);
    let now = Timestamp::now();
    let principal = match console.state.store.principal_for_token(&hash, now).await {
        Ok(principal) => principal,
        Err(e) => return store_error(&console.state, &e),
    };
    if principal.is_none() {
        return sign_in_form(
            Some("That token is not valid: it may be mistyped, revoked or expired."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (id, _) = console.sessions.open(hash, now);
    let mut response = Redirect::to("/console").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, "/", SESSION_HOURS * 3600),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, "", "/console/sign-in", 0),
    );
    response
}

pub fn forbidden() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form was not sent from a console page of this browser (its CSRF token does not match). Reload the page and try again.",
    )
}

pub async fn sign_out(
    State(console): State<Console>,
    Posted { signed_in, .. }: Posted<NoFields>,
) -> Response {
    console.sessions.close(&signed_in.id);
    let mut response = Redirect::to("/console/sign-in").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0));
    response
}

// ----------------------------------------------------------------------------------
// Streams overview

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    #[serde(default)]
    category: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
}

/// The overview's order: the streams that need attention first.
fn status_rank(status: StreamStatus) -> u8 {
    match status {
        StreamStatus::Stale => 0,
        StreamStatus::Pending => 1,
        StreamStatus::Active => 2,
        StreamStatus::Disabled => 3,
    }
}

fn badge(status: StreamStatus) -> Markup {
    html! { span class={ "badge " (status.as_str()) } { (status.as_str()) } }
}

/// A value with its unit: `1234.50 EUR`, `12.5 %`.
fn with_unit(value: &str, value_type: &ValueType) -> String {
    format!("{value}{}", unit(value_type))
}

fn unit(value_type: &ValueType) -> String {
    match value_type {
        ValueType::Number => String::new(),
        ValueType::Currency(c) => format!(" {}", c.code()),
        ValueType::Percentage => " %".to_owned(),
    }
}

/// An instant as the console shows it: to the minute, in UTC.
fn utc(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// An instant of the API's answers, as [`local_time`] shows it; `—` for none.
pub fn wire_time(at: Option<&prost_types::Timestamp>) -> Markup {
    match at.and_then(crate::signature::timestamp) {
        Some(at) => local_time(at),
        None => html! { "—" },
    }
}

/// An instant in UTC, which the script shows in the viewer's time zone.
pub fn local_time(at: Timestamp) -> Markup {
    html! { time datetime=(at.to_string()) data-local { (utc(at)) } }
}

/// How long ago, in words: `4 min`, `3 h`, `2 d`.
fn age(at: Timestamp, now: Timestamp) -> String {
    let secs = now.duration_since(at).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

/// The stream's points of its `n` latest periods, oldest first.
async fn recent_points(
    state: &AppState,
    stream: &Stream,
    n: u32,
) -> Result<Vec<PointRecord>, StoreError> {
    let Some(latest) = stream
        .latest_period
        .as_deref()
        .and_then(|p| Period::parse(stream.definition.frequency, p).ok())
    else {
        return Ok(Vec::new());
    };
    let from = latest.back(n.saturating_sub(1)).unwrap_or(latest);
    state
        .store
        .list_points(&stream.id, Some(&from.to_string()), None, n)
        .await
}

fn as_float(value: &str) -> f64 {
    value.parse().unwrap_or(0.0)
}

pub async fn overview(
    State(console): State<Console>,
    signed_in: SignedIn,
    Query(query): Query<OverviewQuery>,
) -> Response {
    let state = &console.state;
    let who = &signed_in.who;
    let now = Timestamp::now();
    let filter = StreamFilter {
        category: Some(query.category.trim().to_owned()).filter(|c| !c.is_empty()),
        status: query.status.parse().ok(),
        name_contains: Some(query.q.trim().to_owned()).filter(|q| !q.is_empty()),
    };
    if let Err(e) = filter.check() {
        return error_page(StatusCode::BAD_REQUEST, "Not possible", &e.to_string());
    }
    let mut streams = match state.store.list_streams(&who.org_id).await {
        Ok(streams) => streams,
        Err(e) => return store_error(state, &e),
    };
    if !who.reads_every_stream() {
        match state.store.stream_accesses(&who.org_id, &who.user_id).await {
            Ok(visible) => streams.retain(|s| visible.contains_key(&s.id)),
            Err(e) => return store_error(state, &e),
        }
    }
    let categories: std::collections::BTreeSet<String> = streams
        .iter()
        .filter_map(|s| s.definition.category.clone())
        .collect();
    streams.retain(|s| filter.matches(s, now));
    streams.sort_by(|a, b| {
        (status_rank(a.status(now)), &a.definition.name, &a.id).cmp(&(
            status_rank(b.status(now)),
            &b.definition.name,
            &b.id,
        ))
    });
    // One small read per stream, several at once: the database's read connections
    // answer them side by side.
    let reads: Vec<_> = streams
        .iter()
        .map(|stream| recent_points(state, stream, SPARK_PERIODS))
        .collect();
    let recent: Vec<Result<Vec<PointRecord>, StoreError>> = futures::stream::iter(reads)
        .buffered(OVERVIEW_READS)
        .collect()
        .await;
    let mut rows = Vec::with_capacity(streams.len());
    for (stream, points) in streams.iter().zip(recent) {
        match points {
            Ok(points) => rows.push((stream, points)),
            Err(e) => return store_error(state, &e),
        }
    }
    let stale = streams
        .iter()
        .filter(|s| s.status(now) == StreamStatus::Stale)
        .count();
    let markup = layout(
        "Streams",
        Some(&signed_in),
        html! {
            div.title {
                h1 { "Streams" }
                @if who.role != crate::auth::Role::Runner { a.button href="/console/streams/new" { "New stream" } }
            }
            p.summary {
                (streams.len()) " stream(s)"
                @if stale > 0 { ", " strong.stale-count { (stale) " stale" } }
                ". Times are in your time zone; each stream's periods follow its own."
            }
            form.filters method="get" action="/console" {
                label { "Name " input type="search" name="q" value=(query.q); }
                label { "Category "
                    select name="category" {
                        option value="" { "any" }
                        @for c in &categories {
                            option value=(c) selected[*c == query.category] { (c) }
                        }
                    }
                }
                label { "Status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in ["stale", "active", "pending", "disabled"] {
                            option value=(s) selected[s == query.status] { (s) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            table.streams {
                thead { tr {
                    th { "Stream" } th { "Status" } th { "Latest period" } th.num { "Value" }
                    th { "Last data" } th { "Recent" }
                } }
                tbody {
                    @for (stream, points) in &rows {
                        @let status = stream.status(now);
                        tr class=(status.as_str()) {
                            td {
                                a href={ "/console/streams/" (stream.id) } { (stream.definition.name) }
                                @if let Some(c) = &stream.definition.category { span.category { (c) } }
                                span.frequency { (stream.definition.frequency.as_str()) }
                            }
                            td { (badge(status)) }
                            td { (stream.latest_period.as_deref().unwrap_or("—")) }
                            td.num {
                                @if let Some(p) = points.last() { (with_unit(&p.value, &stream.definition.value_type)) } @else { "—" }
                            }
                            td {
                                @if let Some(at) = stream.last_data_at {
                                    time datetime=(at.to_string()) title=(utc(at)) { (age(at, now)) " ago" }
                                } @else { "never" }
                            }
                            td { (chart::sparkline(&points.iter().map(|p| as_float(&p.value)).collect::<Vec<_>>())) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p.empty { "No stream matches." } }
        },
    );
    page(StatusCode::OK, markup)
}

// ----------------------------------------------------------------------------------
// A stream's page

#[derive(Deserialize, Default)]
pub struct StreamQuery {
    /// `bars`, or a line.
    #[serde(default)]
    chart: String,
}

pub async fn stream(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
) -> Response {
    let state = &console.state;
    let who = &signed_in.who;
    let stream = match state.stream_for(who, &id, Access::Read).await {
        Ok(stream) => stream,
        Err(e) => return api_error(state, e),
    };
    let manages = match state.access(who, &stream.id).await {
        Ok(access) => access == Some(Access::Manage),
        Err(e) => return api_error(state, e),
    };
    let points = match recent_points(state, &stream, PAGE_PERIODS).await {
        Ok(points) => points,
        Err(e) => return store_error(state, &e),
    };
    let controls = if manages {
        let org = &who.org_id;
        let keys = state.store.list_keys(org, &stream.id).await;
        let grants = state.store.list_grants(org, &stream.id).await;
        // Members who manage a stream name teams by hand: the list of the
        // organisation's teams is for its admins.
        let teams = if who.is_admin() {
            state.store.list_teams(org).await
        } else {
            Ok(Vec::new())
        };
        match (keys, grants, teams) {
            (Ok(keys), Ok(grants), Ok(teams)) => {
                let teams: Vec<String> = teams.into_iter().map(|t| t.name).collect();
                Some(super::admin::stream_controls(
                    &signed_in,
                    &stream,
                    stream.disabled,
                    &keys,
                    &grants,
                    &teams,
                ))
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return store_error(state, &e),
        }
    } else {
        None
    };
    let now = Timestamp::now();
    let status = stream.status(now);
    let def = &stream.definition;
    let unit = unit(&def.value_type);
    let series: Vec<(String, String, f64)> = points
        .iter()
        .map(|p| (p.period.clone(), p.value.clone(), as_float(&p.value)))
        .collect();
    let base = format!("/console/streams/{}", stream.id);
    let markup = live_layout(
        &def.name,
        &signed_in,
        &format!("{base}/events"),
        html! {
            p.back { a href="/console" { "← Streams" } }
            div data-live-region {
                h1 { (def.name) " " (badge(status)) " " span.live-indicator title="New points show as they arrive" { "live" } }
                @if !def.description.is_empty() { p.description { (def.description) } }
                dl.facts {
                    dt { "Id" } dd { code { (stream.id) } }
                    dt { "Frequency" } dd { (def.frequency.as_str()) }
                    dt { "Time zone" } dd { (def.time_zone) " (its periods' calendar)" }
                    dt { "Value type" } dd { (def.value_type.to_string()) }
                    dt { "Category" } dd { (def.category.as_deref().unwrap_or("none")) }
                    dt { "Latest period" } dd { (stream.latest_period.as_deref().unwrap_or("none")) }
                    dt { "Last data" } dd {
                        @if let Some(at) = stream.last_data_at { (local_time(at)) " (" (age(at, now)) " ago)" } @else { "never" }
                    }
                    dt { "Points" } dd #point-count { (stream.point_count) }
                }
                @let kind = chart::Kind::parse(&query.chart);
                div.title {
                    h2 { "Values" }
                    nav.chart-kind aria-label="Chart" {
                        a href=(base) aria-current=[(kind == chart::Kind::Line).then_some("page")] { "Line" }
                        a href={ (base) "?chart=bars" } aria-current=[(kind == chart::Kind::Bars).then_some("page")] { "Bars" }
                    }
                }
                (chart::chart(&series, &unit, kind))
                table.points {
                    caption { "The latest " (PAGE_PERIODS) " periods, newest first. A period's revisions are its history of corrections." }
                    thead { tr { th { "Period" } th.num { "Value" } th.num { "Revisions" } th { "Updated" } } }
                    tbody {
                        @for p in points.iter().rev() {
                            tr data-period=(p.period) {
                                td { a href={ (base) "/periods/" (p.period) } { (p.period) } }
                                td.num.value { (with_unit(&p.value, &def.value_type)) }
                                td.num.revisions { (p.revision_count) }
                                td { (local_time(p.updated_at)) }
                            }
                        }
                    }
                }
                @if points.is_empty() { p.empty { "No points yet." } }
            }
            @if let Some(controls) = controls { (controls) }
        },
    );
    page(StatusCode::OK, markup)
}

// ----------------------------------------------------------------------------------
// The revision history of a period

pub async fn revisions(
    State(console): State<Console>,
    signed_in: SignedIn,
    Path((id, period)): Path<(String, String)>,
) -> Response {
    use crate::proto::query_server::Query;
    let state = &console.state;
    let stream = match state.stream_for(&signed_in.who, &id, Access::Read).await {
        Ok(stream) => stream,
        Err(e) => return api_error(state, e),
    };
    let point = crate::proto::ListPointsRequest {
        stream_id: id.clone(),
        from: period.clone(),
        to: period.clone(),
        ..Default::default()
    };
    let point = api!(console, query, signed_in, list_points, point)
        .points
        .into_iter()
        .next();
    let request = crate::proto::ListRevisionsRequest {
        stream_id: id.clone(),
        period: period.clone(),
        ..Default::default()
    };
    let revisions = api!(console, query, signed_in, list_revisions, request).revisions;
    let def = &stream.definition;
    let markup = layout(
        &format!("{} · {period}", def.name),
        Some(&signed_in),
        html! {
            p.back { a href={ "/console/streams/" (stream.id) } { "← " (def.name) } }
            h1 { (def.name) " · " (period) }
            @match &point {
                Some(p) => p.summary {
                    "Now " strong { (with_unit(&p.value, &def.value_type)) } ", since " (wire_time(p.updated_at.as_ref())) ", from key " code { (p.key_id) } "."
                },
                None => p.summary { "This period holds no value." },
            }
            h2 { "Revisions" }
            @if revisions.is_empty() {
                p.empty { "Never corrected: the value is the first one published." }
            } @else {
                table.revisions {
                    thead { tr { th { "When" } th.num { "Old" } th { } th.num { "New" } th { "Key" } th { "Batch" } } }
                    tbody {
                        @for r in revisions.iter().rev() {
                            tr {
                                td { (wire_time(r.revised_at.as_ref())) }
                                td.num { (with_unit(&r.old_value, &def.value_type)) }
                                td aria-hidden="true" { "→" }
                                td.num { (with_unit(&r.new_value, &def.value_type)) }
                                td { code { (r.key_id) } }
                                td { code { (r.batch_id) } }
                            }
                        }
                    }
                }
            }
        },
    );
    page(StatusCode::OK, markup)
}
