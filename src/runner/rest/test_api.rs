//! What the REST tests share: a local axum API on a free port, sources written as TOML,
//! a run read to the end, canned JSON answers, and counters of what the API received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{HeaderName, StatusCode as Status, header};
use axum::response::{IntoResponse, Response as Answer};
use axum::routing::get;
use reqwest::Url;

use super::{RestContext, RestInputs, RestPages, open};
use crate::connector::{Connection, Duration as ConfigDuration, RestSource, RetryPolicy};
use crate::runner::template::TemplateContext;
use crate::runner::{FetchError, Record, Source as _};

pub(super) fn source(text: &str) -> RestSource {
    toml::from_str(text).expect("the test source is valid")
}

/// A source requesting `{base}{path}`, with more TOML lines in `extra`.
pub(super) fn source_at(base: &str, path: &str, extra: &str) -> RestSource {
    source(&format!("url = \"{base}{path}\"\n{extra}"))
}

pub(super) fn ctx() -> TemplateContext {
    let now = jiff::Timestamp::now();
    TemplateContext {
        cursor: Some("2026-01-31".into()),
        period_start: now,
        period_end: now,
        now,
    }
}

pub(super) fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: ConfigDuration(Duration::from_millis(5)),
        max_backoff: ConfigDuration(Duration::from_secs(5)),
    }
}

/// Serves `router` on a free port of 127.0.0.1; returns `http://127.0.0.1:PORT`.
pub(super) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// Serves one `GET` route; returns the base URL.
pub(super) async fn serve_get<H, T>(path: &str, handler: H) -> String
where
    H: Handler<T, ()>,
    T: 'static,
{
    serve(Router::new().route(path, get(handler))).await
}

/// Serves one `GET` route answering `answer(n)` to its n-th request; returns the base
/// URL and the count of requests.
pub(super) async fn serve_counted<F>(path: &str, answer: F) -> (String, Counter)
where
    F: Fn(u32) -> Answer + Clone + Send + Sync + 'static,
{
    let calls = Counter::default();
    let counted = calls.clone();
    let base = serve_get(path, move || async move { answer(counted.hit()) }).await;
    (base, calls)
}

/// Opens `source` with a fresh context (no connection) and `max_attempts` attempts.
pub(super) fn open_source(source: &RestSource, max_attempts: u32) -> RestPages {
    let rest = RestContext::new();
    let inputs = RestInputs::read(&rest, source, None).expect("the source's secrets are set");
    open(&rest, source, inputs, &ctx(), &policy(max_attempts)).unwrap()
}

/// Every record of a run, pages concatenated.
pub(super) async fn run(
    rest: &RestContext,
    source: &RestSource,
    connection: Option<&Connection>,
) -> Result<Vec<Record>, FetchError> {
    let inputs = RestInputs::read(rest, source, connection).expect("the source's secrets are set");
    let mut pages = open(rest, source, inputs, &ctx(), &policy(4))?;
    let mut records = Vec::new();
    while let Some(page) = pages.next_page().await? {
        assert!(!page.is_empty(), "an empty page ends the run instead");
        records.extend(page);
    }
    Ok(records)
}

/// Every record of a run of `source` alone, with a fresh context.
pub(super) async fn run_alone(source: &RestSource) -> Result<Vec<Record>, FetchError> {
    run(&RestContext::new(), source, None).await
}

pub(super) fn numbers(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r["n"].as_u64().unwrap()).collect()
}

pub(super) fn params(request: &Request) -> HashMap<String, String> {
    let url = Url::parse(&format!("http://test{}", request.uri())).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn param(request: &Request, name: &str) -> Option<u64> {
    params(request).get(name).map(|v| v.parse().unwrap())
}

/// The request's body as text.
pub(super) async fn body_text(request: Request) -> String {
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// `http://localhost:PORT`: the API itself under another host name.
pub(super) fn as_localhost(request: &Request) -> String {
    let host = request.headers()[header::HOST].to_str().unwrap();
    let port = host.rsplit(':').next().unwrap();
    format!("http://localhost:{port}")
}

pub(super) fn json(status: u16, body: impl Into<String>) -> Answer {
    let status = Status::from_u16(status).unwrap();
    let body: String = body.into();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `answer` with one more header.
pub(super) fn with_header(mut answer: Answer, name: HeaderName, value: &str) -> Answer {
    answer.headers_mut().insert(name, value.parse().unwrap());
    answer
}

/// Records `{"n": i}` for i in `from..from + size`, of five in all, as a JSON array.
pub(super) fn slice(from: u64, size: u64) -> String {
    let items: Vec<String> = (from..5.min(from + size))
        .map(|i| format!("{{\"n\":{i}}}"))
        .collect();
    format!("[{}]", items.join(","))
}

/// Counts the requests a handler receives.
#[derive(Clone, Default)]
pub(super) struct Counter(Arc<AtomicU32>);

impl Counter {
    pub(super) fn hit(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub(super) fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Records what a handler received, in order.
#[derive(Clone, Default)]
pub(super) struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub(super) fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    pub(super) fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}
