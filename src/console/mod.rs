//! The web console on the HTTP port (`/console`): every stream's health at a glance and
//! each stream's chart and points, for the people the streams are granted to. Pages are
//! HTML rendered on the server (maud), charts are SVG drawn on the server, and the one
//! stylesheet and the one small script are embedded in the binary: nothing is fetched
//! from elsewhere. Every page works without the script; with it, times show in the
//! viewer's zone, a stream page follows new points live (server-sent events) and a
//! credential has a copy button.
//!
//! A page shows exactly what the user's token may see through the gRPC API: the same
//! store, the same access rules (`grpc::AppState::stream_for`). Security: a session
//! cookie (HttpOnly, SameSite=Strict) instead of the token, a CSRF token in every form,
//! a strict Content-Security-Policy, and a stream of another organisation answers as
//! one that does not exist. `docs/console.md`.

/// Calls the gRPC handler `$call` of the console's `$service` (`admin`, `query`,
/// `runner`) for the signed-in user with `$message`: its answer, or (returned from the
/// calling handler) the page of the API's refusal.
macro_rules! api {
    ($console:expr, $service:ident, $signed_in:expr, $call:ident, $message:expr) => {
        match $console
            .$service
            .$call($crate::grpc::Authenticated::request(
                &$signed_in.who,
                $message,
            ))
            .await
        {
            Ok(answer) => answer.into_inner(),
            Err(status) => return $crate::console::pages::refused(&$console.state, &status),
        }
    };
}

mod admin;
mod chart;
mod connectors;
mod live;
mod org;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::auth::Principal;
use crate::grpc::AppState;
use crate::grpc::admin::AdminService;
use crate::grpc::query::QueryService;
use crate::grpc::runner::RunnerService;
use session::{Session, Sessions};

/// The session cookie.
pub const SESSION_COOKIE: &str = "kpistream_session";
/// The cookie that ties the sign-in form to the browser that loaded it.
pub const SIGN_IN_COOKIE: &str = "kpistream_sign_in";
/// Largest form the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The Content-Security-Policy of every console answer: the console's own stylesheet
/// and script (no inline script, no eval), images drawn inline, requests and forms to
/// itself only, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    pub state: AppState,
    pub sessions: Arc<Sessions>,
    /// The gRPC API's handlers, which the console's forms call for the signed-in user.
    pub admin: Arc<AdminService>,
    pub query: Arc<QueryService>,
    pub runner: Arc<RunnerService>,
    /// Live pages (server-sent events) open at once, at most (half the HTTP port's
    /// `limits.max_http_connections`).
    pub live: Arc<tokio::sync::Semaphore>,
}

/// The console's routes, to merge into the HTTP port's router; at most `live_pages`
/// live pages (server-sent events) open at once.
pub fn router(state: AppState, live_pages: usize) -> Router {
    let console = Console {
        admin: Arc::new(AdminService::new(state.clone())),
        query: Arc::new(QueryService::new(state.clone())),
        runner: Arc::new(RunnerService::new(state.clone())),
        state,
        sessions: Arc::default(),
        live: Arc::new(tokio::sync::Semaphore::new(live_pages)),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(pages::overview))
        .route(
            "/console/streams",
            get(|| async { Redirect::to("/console") }).post(admin::create_stream),
        )
        .route("/console/streams/new", get(admin::new_stream_page))
        .route("/console/streams/{id}", get(pages::stream))
        .route("/console/streams/{id}/events", get(live::events))
        .route(
            "/console/streams/{id}/periods/{period}",
            get(pages::revisions),
        )
        .route("/console/streams/{id}/credential", get(admin::credential))
        .route("/console/streams/{id}/keys", post(admin::rotate_key))
        .route("/console/streams/{id}/keys/revoke", post(admin::revoke_key))
        .route("/console/streams/{id}/disable", post(admin::disable))
        .route("/console/streams/{id}/enable", post(admin::enable))
        .route(
            "/console/streams/{id}/delete",
            get(admin::delete_page).post(admin::delete),
        )
        .route("/console/streams/{id}/grants", post(admin::add_grant))
        .route(
            "/console/streams/{id}/grants/remove",
            post(admin::remove_grant),
        )
        .route("/console/connectors", get(connectors::list))
        .route("/console/connectors/{name}", get(connectors::connector))
        .route(
            "/console/connectors/{name}/events",
            get(live::connector_events),
        )
        .route("/console/connectors/{name}/run", post(connectors::run_now))
        .route(
            "/console/connectors/{name}/enable",
            post(connectors::enable),
        )
        .route(
            "/console/connectors/{name}/disable",
            post(connectors::disable),
        )
        .route("/console/people", get(org::people).post(org::create_user))
        .route("/console/people/role", post(org::set_role))
        .route("/console/people/delete", post(org::delete_user))
        .route("/console/teams", post(org::create_team))
        .route("/console/teams/delete", post(org::delete_team))
        .route("/console/teams/members", post(org::team_member))
        .route("/console/tokens", post(org::create_token))
        .route("/console/tokens/revoke", post(org::revoke_token))
        .route("/console/tokens/{id}/secret", get(org::token_secret))
        .route(
            "/console/categories",
            get(org::categories).post(org::create_category),
        )
        .route("/console/categories/rename", post(org::rename_category))
        .route("/console/categories/delete", post(org::delete_category))
        .route("/console/audit", get(org::audit))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/console.css", get(stylesheet))
        .route("/console/console.js", get(script))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(console)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.js"),
    )
}

/// A page of the console that does not exist gets a page saying so; any other path an
/// empty 404, as before the console: a gRPC client pointed at this port by mistake reads
/// it as plain HTTP and says so.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/console") {
        pages::error_page(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Headers on every console answer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for `path`, lasting `max_age`
/// seconds (0 deletes it).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    ))
    .expect("cookie values are URL-safe base64")
}

/// The signed-in user of a request: the session's principal, checked against the
/// store on every request. A page without one redirects to the sign-in page.
pub struct SignedIn {
    pub who: Principal,
    pub session: Session,
    /// The session's id, from its cookie.
    pub id: String,
}

impl SignedIn {
    /// The hidden field that every form of the session carries.
    pub fn csrf_field(&self) -> maud::Markup {
        maud::html! { input type="hidden" name="csrf" value=(self.session.csrf); }
    }
}

impl FromRequestParts<Console> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let now = jiff::Timestamp::now();
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        let Some(session) = console.sessions.get(id, now) else {
            return Err(to_sign_in());
        };
        let principal = console
            .state
            .store
            .principal_for_token(&session.token_hash, now)
            .await
            .map_err(|e| pages::store_error(&console.state, &e))?;
        match principal {
            Some(who) => Ok(Self {
                who,
                session,
                id: id.to_owned(),
            }),
            None => {
                // The token was revoked or expired: so is the session.
                console.sessions.close(id);
                Err(to_sign_in())
            }
        }
    }
}

impl axum::extract::OptionalFromRequestParts<Console> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Option<Self>, Response> {
        match <SignedIn as FromRequestParts<Console>>::from_request_parts(parts, console).await {
            Ok(signed_in) => Ok(Some(signed_in)),
            Err(response) if response.status() == StatusCode::SEE_OTHER => Ok(None),
            Err(response) => Err(response),
        }
    }
}

/// A form posted by a signed-in user, its CSRF token checked: a form without the
/// session's token is refused before anything else is read from it.
pub struct Posted<T> {
    pub signed_in: SignedIn,
    pub form: T,
}

/// A form of no fields but its CSRF token.
#[derive(serde::Deserialize)]
pub struct NoFields {}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<Console> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed_in =
            <SignedIn as FromRequestParts<Console>>::from_request_parts(&mut parts, console)
                .await?;
        let request = Request::from_parts(parts, body);
        let axum::Form(fields): axum::Form<Vec<(String, String)>> =
            axum::Form::from_request(request, console)
                .await
                .map_err(IntoResponse::into_response)?;
        let csrf = fields
            .iter()
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        if !session::same_secret(&signed_in.session.csrf, csrf) {
            return Err(pages::forbidden());
        }
        let form = T::deserialize(serde::de::value::MapDeserializer::new(
            fields
                .iter()
                .filter(|(name, _)| name != "csrf")
                .map(|(name, value)| (name.as_str(), value.as_str())),
        ))
        .map_err(|e: serde::de::value::Error| {
            pages::error_page(StatusCode::BAD_REQUEST, "Not possible", &e.to_string())
        })?;
        Ok(Self { signed_in, form })
    }
}
