//! The `rest` source: requests an HTTP JSON API page after page for one run, with its
//! authentication (bearer, API key, basic, OAuth2 client credentials) and pagination,
//! and gives the runner the records the `records` JSONPath selects.
//!
//! Secrets never reach a log line or an error message: a request is described by its
//! method, the path of its URL *template* (never the rendered URL, whose query may hold
//! an API key or an `{{env.NAME}}` value) and its page number; reqwest errors lose their
//! URL; excerpts of response bodies have the auth secrets and `{{env.NAME}}` values
//! masked. Credentials stay on the source's origin: a redirect or a next-page URL to
//! another scheme, host or port is refused rather than followed with them.
//!
//! `auth` holds the credentials and the OAuth2 token cache, `paging` the
//! pagination styles, `response` what is read out of a response (errors, bodies,
//! excerpts); this file builds the requests and walks the pages.

mod auth;
mod paging;
mod response;
#[cfg(test)]
mod test_api;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LINK};
use reqwest::{Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use serde_json_path::JsonPath;

use self::auth::{Auth, TokenCache, resolve_auth, secret_header};
use self::paging::{Paging, next_link, with_param};
use self::response::{content_type, excerpt, read_body, request_error, status_error};
use super::local::ConfigError;
use super::retry::retrying;
use super::template::{TemplateContext, env_vars, render};
use super::{FetchError, Record, Source};
use crate::connector::{Connection, Method, RestSource, RetryPolicy};

/// Most redirects followed within one origin.
const MAX_REDIRECTS: usize = 10;

/// Shared across runs of one runner process: the HTTP client (gzip, rustls, redirects
/// followed within one origin only) and the OAuth2 token cache. Cloning is cheap and
/// shares both.
#[derive(Clone)]
pub struct RestContext {
    client: reqwest::Client,
    tokens: Arc<TokenCache>,
}

impl RestContext {
    /// A client with gzip decompression and rustls, and an empty token cache.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .gzip(true)
            .redirect(same_origin_redirects())
            .user_agent(concat!("kpistream/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client is built from fixed settings that are always valid");
        Self {
            client,
            tokens: Arc::default(),
        }
    }
}

impl Default for RestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestContext")
            .field("oauth2_clients", &self.tokens.clients())
            .finish_non_exhaustive()
    }
}

/// Follows redirects within the origin of the previous URL only: the request's
/// credentials (an API key header, say) must not travel to another host.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("the API redirected more than 10 times");
        }
        let same_origin = attempt
            .previous()
            .last()
            .is_some_and(|previous| previous.origin() == attempt.url().origin());
        if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// What a REST source reads from the runner's machine, read before its run takes a
/// lease: its connection's base URL and its authentication, secrets read.
pub struct RestInputs {
    base_url: Option<String>,
    auth: Option<Auth>,
}

impl RestInputs {
    /// `connection` is the `connections.toml` entry `source.connection` names, if any
    /// (`None` also when the file no longer has it): its `base_url` is joined with
    /// `source.url` (unless that is an absolute URL already), and its `auth` is used
    /// unless the source has its own.
    pub fn read(
        rest: &RestContext,
        source: &RestSource,
        connection: Option<&Connection>,
    ) -> Result<Self, ConfigError> {
        let base_url = match (&source.connection, connection) {
            (None, _) => None,
            (Some(_), Some(Connection::Rest { base_url, .. })) => Some(base_url.clone()),
            (Some(name), other) => {
                return Err(ConfigError::unusable_connection(name, other, "rest"));
            }
        };
        Ok(Self {
            base_url,
            auth: resolve_auth(rest, source, connection)?,
        })
    }
}

/// Opens a REST source for one run with what [`RestInputs::read`] read. `body`, when
/// given, is sent as JSON whatever the method. Templates are rendered here, once per
/// run; nothing is requested until the first [`Source::next_page`]. Next-page URLs are
/// followed as the API gives them (the source's `query` is not added again; an API key
/// in the query is).
pub fn open(
    rest: &RestContext,
    source: &RestSource,
    inputs: RestInputs,
    ctx: &TemplateContext,
    retry: &RetryPolicy,
) -> Result<RestPages, FetchError> {
    let method = match source.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let label = format!("{method} {}", template_path(&source.url));
    let RestInputs { base_url, auth } = inputs;
    let base_url = base_url.as_deref();
    let mut url = first_url(&label, base_url, source, ctx)?;
    let paging = Paging::new(source.pagination.as_ref())?;
    paging.start(&mut url);
    let mut masks = auth.as_ref().map_or_else(Vec::new, Auth::secrets);
    masks.extend(env_values(source));
    Ok(RestPages {
        client: rest.client.clone(),
        method,
        label,
        origin: url.clone(),
        headers: headers(source, ctx)?,
        body: source
            .body
            .as_ref()
            .map(|b| json_body(b, ctx))
            .transpose()?,
        auth,
        masks,
        paging,
        records: json_path("source.records", &source.records)?,
        timeout: source.timeout.0,
        max_response_bytes: source.max_response_bytes,
        page_limit: source.page_limit,
        retry: retry.clone(),
        next: Some(url),
        pages: 0,
    })
}

/// The REST source of one run, yielding the records of one response per page. Its
/// `Debug` shows the request's description, never a header, query value or secret.
pub struct RestPages {
    client: reqwest::Client,
    method: reqwest::Method,
    /// `GET /v1/invoices`: the method and the URL template's path, safe to print.
    label: String,
    /// The first URL, whose origin every next-page URL must share.
    origin: Url,
    headers: HeaderMap,
    body: Option<Value>,
    auth: Option<Auth>,
    /// Secret values masked in excerpts of response bodies.
    masks: Vec<SecretString>,
    paging: Paging,
    records: JsonPath,
    timeout: Duration,
    max_response_bytes: u64,
    page_limit: u32,
    retry: RetryPolicy,
    /// The next page's URL (without an API key in the query, added when sending).
    next: Option<Url>,
    /// Pages fetched so far.
    pages: u32,
}

impl fmt::Debug for RestPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestPages")
            .field("request", &self.label)
            .field("auth", &self.auth.as_ref().map(Auth::kind))
            .field("pages_fetched", &self.pages)
            .field("page_limit", &self.page_limit)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Source for RestPages {
    async fn next_page(&mut self) -> Result<Option<Vec<Record>>, FetchError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        if self.pages >= self.page_limit {
            return Err(FetchError::permanent(format!(
                "{} still had pages after page_limit ({}) pages; raise page_limit or narrow \
                 the request",
                self.label, self.page_limit
            )));
        }
        self.pages += 1;
        let what = format!("{} page {}", self.label, self.pages);
        let this = &*self;
        let page = retrying(&this.retry, &what, || this.fetch(&url, &what)).await?;
        let records: Vec<Record> = self
            .records
            .query(&page.body)
            .all()
            .into_iter()
            .cloned()
            .collect();
        tracing::debug!(operation = %what, records = records.len(), "page fetched");
        if records.is_empty() {
            return Ok(None);
        }
        self.next = match self.paging.next(&url, &page, records.len(), &what)? {
            Some(next) if next.origin() != self.origin.origin() => {
                return Err(FetchError::permanent(format!(
                    "the next-page URL of {what} points to another host; kpistream does not \
                     send the source's credentials there"
                )));
            }
            next => next,
        };
        Ok(Some(records))
    }
}

/// One fetched page: the URL that answered (after redirects), its `rel="next"` link and
/// its JSON body.
struct Page {
    url: Url,
    next_link: Option<String>,
    body: Value,
}

impl RestPages {
    /// One attempt at a page; on a 401 with OAuth2, one more with a fresh token.
    async fn fetch(&self, url: &Url, what: &str) -> Result<Page, FetchError> {
        let oauth = match &self.auth {
            Some(Auth::OAuth2(oauth)) => Some(oauth),
            _ => None,
        };
        let mut token = match oauth {
            Some(oauth) => Some(oauth.token(&self.client, self.timeout, None).await?),
            None => None,
        };
        let mut response = self.send(url, token.as_ref(), what).await?;
        if let (StatusCode::UNAUTHORIZED, Some(oauth), Some(stale)) =
            (response.status(), oauth, &token)
        {
            tracing::info!(operation = %what, "the API refused the OAuth2 token; fetching a new one");
            let fresh = oauth.token(&self.client, self.timeout, Some(stale)).await?;
            response = self.send(url, Some(&fresh), what).await?;
            token = Some(fresh);
        }
        let mut masks: Vec<&str> = self.masks.iter().map(|m| m.expose_secret()).collect();
        masks.extend(token.as_ref().map(|t| t.expose_secret()));
        if !response.status().is_success() {
            return Err(status_error(what, response, &masks).await);
        }
        let page_url = response.url().clone();
        let next_link = response
            .headers()
            .get_all(LINK)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(next_link)
            .map(str::to_owned);
        let content_type = content_type(&response);
        let bytes = read_body(response, self.max_response_bytes, what, self.timeout).await?;
        let body = serde_json::from_slice(&bytes).map_err(|e| {
            FetchError::permanent(format!(
                "the response to {what} is not JSON ({content_type}, {e}): {}",
                excerpt(&bytes, &masks)
            ))
        })?;
        Ok(Page {
            url: page_url,
            next_link,
            body,
        })
    }

    /// Sends one request with the source's headers, body and credentials.
    async fn send(
        &self,
        url: &Url,
        token: Option<&SecretString>,
        what: &str,
    ) -> Result<Response, FetchError> {
        let url = match &self.auth {
            Some(Auth::QueryKey { name, value }) => with_param(url, name, value.expose_secret()),
            _ => url.clone(),
        };
        let mut request = self
            .client
            .request(self.method.clone(), url)
            .headers(self.headers.clone())
            .timeout(self.timeout);
        request = match (&self.auth, token) {
            (Some(Auth::Bearer(secret)), _) | (Some(Auth::OAuth2(_)), Some(secret)) => request
                .header(
                    AUTHORIZATION,
                    secret_header("Bearer ", secret, "the token")?,
                ),
            (Some(Auth::HeaderKey { name, value }), _) => {
                request.header(name.clone(), secret_header("", value, "the API key")?)
            }
            (Some(Auth::Basic { username, password }), _) => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            _ => request,
        };
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .map_err(|e| request_error(what, self.timeout, e))
    }
}

/// The first page's URL: `source.url` rendered, joined to the connection's base URL
/// when relative, with the rendered `source.query` appended.
fn first_url(
    label: &str,
    base_url: Option<&str>,
    source: &RestSource,
    ctx: &TemplateContext,
) -> Result<Url, FetchError> {
    let rendered = render(&source.url, ctx)?;
    let absolute = rendered.starts_with("https://") || rendered.starts_with("http://");
    let full = match base_url {
        Some(base) if !absolute => format!(
            "{}/{}",
            base.trim_end_matches('/'),
            rendered.trim_start_matches('/')
        ),
        _ => rendered,
    };
    let mut url = Url::parse(&full).map_err(|e| {
        FetchError::permanent(format!(
            "the URL of {label} is not valid once its templates are filled in ({e})"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::permanent(format!(
            "the URL of {label} is not an http:// or https:// URL"
        )));
    }
    if !source.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &source.query {
            pairs.append_pair(name, &render(value, ctx)?);
        }
    }
    Ok(url)
}

/// The path of a URL template, without scheme, host or query: safe to print, as it holds
/// no rendered value and no query (where a key could have been written).
fn template_path(url: &str) -> &str {
    let path = match url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    };
    match path.split(['?', '#']).next() {
        Some("") | None => "/",
        Some(path) => path,
    }
}

/// `source.headers` rendered, every value marked sensitive (it may hold an
/// `{{env.NAME}}` secret), and `Accept: application/json` unless given.
fn headers(source: &RestSource, ctx: &TemplateContext) -> Result<HeaderMap, FetchError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &source.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            FetchError::permanent(format!("source.headers.{name} is not a valid header name"))
        })?;
        let mut value = HeaderValue::from_str(&render(value, ctx)?).map_err(|_| {
            FetchError::permanent(format!(
                "source.headers.{name} is not a valid header value once its templates are \
                 filled in (it holds a line break or a non-ASCII character)"
            ))
        })?;
        value.set_sensitive(true);
        headers.append(header, value);
    }
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));
    Ok(headers)
}

/// A TOML body as JSON, strings rendered through templates.
fn json_body(table: &toml::Table, ctx: &TemplateContext) -> Result<Value, FetchError> {
    table
        .iter()
        .map(|(key, value)| Ok((key.clone(), json_value(value, ctx)?)))
        .collect::<Result<serde_json::Map<_, _>, FetchError>>()
        .map(Value::Object)
}

fn json_value(value: &toml::Value, ctx: &TemplateContext) -> Result<Value, FetchError> {
    Ok(match value {
        toml::Value::String(text) => Value::String(render(text, ctx)?),
        toml::Value::Integer(n) => Value::from(*n),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(Value::Number)
            .ok_or_else(|| {
                FetchError::permanent("source.body holds a number JSON cannot write (nan or inf)")
            })?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(at) => Value::String(at.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| json_value(item, ctx))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => json_body(table, ctx)?,
    })
}

/// The texts of the source that may hold templates: its URL, query, headers and the
/// strings of its body.
pub fn template_texts(source: &RestSource) -> Vec<&str> {
    fn strings<'a>(value: &'a toml::Value, out: &mut Vec<&'a str>) {
        match value {
            toml::Value::String(text) => out.push(text),
            toml::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            toml::Value::Table(table) => table.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut texts = vec![source.url.as_str()];
    texts.extend(source.query.values().map(String::as_str));
    texts.extend(source.headers.values().map(String::as_str));
    for value in source.body.iter().flat_map(|body| body.values()) {
        strings(value, &mut texts);
    }
    texts
}

/// The values of the `{{env.NAME}}` templates of the source, to mask in excerpts
/// (values under 4 characters are too common to mask).
fn env_values(source: &RestSource) -> Vec<SecretString> {
    template_texts(source)
        .into_iter()
        .flat_map(env_vars)
        .filter_map(|var| std::env::var(var).ok())
        .filter(|value| value.len() >= 4)
        .map(SecretString::from)
        .collect()
}

fn json_path(field: &str, path: &str) -> Result<JsonPath, FetchError> {
    JsonPath::parse(path)
        .map_err(|e| FetchError::permanent(format!("{field} is not a valid JSONPath: {e}")))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::Request;
    use axum::http::{StatusCode as Status, header};
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::test_api::{
        Log, as_localhost, body_text, json, open_source, params, run, run_alone, serve,
        serve_counted, serve_get, slice, source, source_at, with_header,
    };
    use super::*;
    use crate::connector::RestAuth;

    #[tokio::test]
    async fn a_post_through_a_connection_sends_its_rendered_query_headers_and_body_once() {
        let log = Log::default();
        let seen = log.clone();
        let report = move |request: Request| async move {
            let headers = request.headers().clone();
            let header = |name: &str| headers[name].to_str().unwrap().to_owned();
            seen.push(format!("since={}", params(&request)["since"]));
            seen.push(format!("tenant={}", header("x-tenant")));
            seen.push(header("authorization"));
            seen.push(header("content-type"));
            seen.push(body_text(request).await);
            json(
                200,
                r#"{"rows":[{"v":12345678901234567890.123456789000},{"v":2}]}"#,
            )
        };
        let base = serve(Router::new().route("/api/v1/report", post(report))).await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok-connection\n").unwrap();
        let connection = Connection::Rest {
            base_url: format!("{base}/api/"),
            auth: Some(RestAuth::Bearer {
                token_env: None,
                token_file: Some(token),
            }),
        };
        unsafe { std::env::set_var("KPISTREAM_REST_TEST_TENANT", "acme") };
        let source = source(
            r#"
            connection = "billing"
            method = "POST"
            url = "/v1/report"
            records = "$.rows[*]"
            query = { since = "{{cursor}}" }
            headers = { X-Tenant = "{{env.KPISTREAM_REST_TEST_TENANT}}" }
            [body]
            filter = { since = "{{cursor}}", limit = 10, ratio = 0.5, tags = ["paid"] }
            "#,
        );
        let records = run(&RestContext::new(), &source, Some(&connection))
            .await
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0]["v"].to_string(),
            "12345678901234567890.123456789000",
            "numbers keep their exact text"
        );
        assert_eq!(
            log.entries(),
            [
                "since=2026-01-31",
                "tenant=acme",
                "Bearer tok-connection",
                "application/json",
                r#"{"filter":{"limit":10,"ratio":0.5,"since":"2026-01-31","tags":["paid"]}}"#,
            ]
        );
    }

    #[tokio::test]
    async fn reaching_page_limit_ends_the_run_with_an_error_that_says_so() {
        let (base, calls) = serve_counted("/items", |_| json(200, slice(0, 1))).await;
        let source = source_at(
            &base,
            "/items",
            "page_limit = 3\npagination = { type = \"page\", param = \"page\" }",
        );
        let mut pages = open_source(&source, 1);
        for _ in 0..3 {
            assert_eq!(pages.next_page().await.unwrap().unwrap().len(), 1);
        }
        let error = pages.next_page().await.unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "GET /items still had pages after page_limit (3) pages; raise page_limit or \
             narrow the request"
        );
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed() {
        let base = serve_get("/moved", |request: Request| async move {
            let location = format!("{}/moved", as_localhost(&request));
            (Status::FOUND, [(header::LOCATION, location)]).into_response()
        })
        .await;
        let error = run_alone(&source_at(&base, "/moved", ""))
            .await
            .unwrap_err();
        assert!(!error.is_transient());
        assert!(
            error.to_string().starts_with(
                "GET /moved page 1 answered 302 Found, a redirect kpistream does not follow"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_next_page_link_to_another_host_is_not_followed() {
        let base = serve_get("/items", |request: Request| async move {
            let link = format!("<{}/items?p=2>; rel=\"next\"", as_localhost(&request));
            with_header(json(200, slice(0, 2)), header::LINK, &link)
        })
        .await;
        let source = source_at(&base, "/items", "pagination = { type = \"link_header\" }");
        let error = run_alone(&source).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the next-page URL of GET /items page 1 points to another host; kpistream does \
             not send the source's credentials there"
        );
    }
}
