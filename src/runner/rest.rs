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

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LINK, RETRY_AFTER,
};
use reqwest::{Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use serde_json_path::JsonPath;

use super::retry::retrying;
use super::template::{TemplateContext, render};
use super::{FetchError, Record, Source, secret};
use crate::connector::{
    ApiKeyPlacement, Connection, Method, Pagination, RestAuth, RestSource, RetryPolicy,
};

/// Longest excerpt of a response body quoted in an error, in characters.
const EXCERPT_CHARS: usize = 200;
/// Bytes of an error response read to quote from it.
const ERROR_BODY_BYTES: u64 = 4096;
/// Largest OAuth2 token response accepted.
const TOKEN_RESPONSE_BYTES: u64 = 64 * 1024;
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
        let clients = self.tokens.slots.lock().map_or(0, |slots| slots.len());
        f.debug_struct("RestContext")
            .field("oauth2_clients", &clients)
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

/// OAuth2 access tokens by token endpoint, client and scopes. Each slot has its own
/// async lock, held while a token is fetched, so concurrent runs of one client fetch
/// it once.
#[derive(Default)]
struct TokenCache {
    slots: Mutex<HashMap<(String, String, String), Arc<TokenSlot>>>,
}

type TokenSlot = tokio::sync::Mutex<Option<CachedToken>>;

impl TokenCache {
    fn slot(&self, token_url: &str, client_id: &str, scopes: &str) -> Arc<TokenSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let key = (
            token_url.to_owned(),
            client_id.to_owned(),
            scopes.to_owned(),
        );
        slots.entry(key).or_default().clone()
    }
}

/// A token and when to stop using it (`None`: until the API answers 401).
struct CachedToken {
    token: SecretString,
    renew_at: Option<Instant>,
}

/// Opens a REST source for one run. `connection` is the resolved `Connection::Rest` when
/// `source.connection` names one: its `base_url` is joined with `source.url` (unless
/// that is an absolute URL already), and its `auth` is used unless the source has its
/// own. `body`, when given, is sent as JSON whatever the method. Templates are rendered
/// and secrets read here, once per run; nothing is requested until the first
/// [`Source::next_page`]. Next-page URLs are followed as the API gives them (the
/// source's `query` is not added again; an API key in the query is).
pub fn open(
    rest: &RestContext,
    source: &RestSource,
    connection: Option<&Connection>,
    ctx: &TemplateContext,
    retry: &RetryPolicy,
) -> Result<RestPages, FetchError> {
    let method = match source.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let label = format!("{method} {}", template_path(&source.url));
    let base_url = match connection {
        None => None,
        Some(Connection::Rest { base_url, .. }) => Some(base_url.as_str()),
        Some(other) => {
            return Err(FetchError::permanent(format!(
                "source.connection names a {} connection, not a rest one",
                other.kind()
            )));
        }
    };
    let mut url = first_url(&label, base_url, source, ctx)?;
    let paging = Paging::new(source.pagination.as_ref())?;
    paging.start(&mut url);
    let auth = resolve_auth(rest, source, connection)?;
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

/// The values of the `{{env.NAME}}` templates of the source's URL, query, headers and
/// body, to mask in excerpts (values under 4 characters are too common to mask).
fn env_values(source: &RestSource) -> Vec<SecretString> {
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
    let mut values = Vec::new();
    for mut text in texts {
        while let Some(start) = text.find("{{") {
            let Some(end) = text[start..].find("}}") else {
                break;
            };
            let name = text[start + 2..start + end].trim();
            let value = name
                .strip_prefix("env.")
                .and_then(|n| std::env::var(n).ok())
                .filter(|value| value.len() >= 4);
            values.extend(value.map(SecretString::from));
            text = &text[start + end + 2..];
        }
    }
    values
}

fn json_path(field: &str, path: &str) -> Result<JsonPath, FetchError> {
    JsonPath::parse(path)
        .map_err(|e| FetchError::permanent(format!("{field} is not a valid JSONPath: {e}")))
}

/// How requests are authenticated, secrets read.
enum Auth {
    Bearer(SecretString),
    HeaderKey {
        name: HeaderName,
        value: SecretString,
    },
    QueryKey {
        name: String,
        value: SecretString,
    },
    Basic {
        username: String,
        password: SecretString,
    },
    OAuth2(OAuth2),
}

impl Auth {
    fn kind(&self) -> &'static str {
        match self {
            Self::Bearer(_) => "bearer",
            Self::HeaderKey { .. } => "api_key in a header",
            Self::QueryKey { .. } => "api_key in the query",
            Self::Basic { .. } => "basic",
            Self::OAuth2(_) => "oauth2_client_credentials",
        }
    }

    fn secrets(&self) -> Vec<SecretString> {
        match self {
            Self::Bearer(secret)
            | Self::HeaderKey { value: secret, .. }
            | Self::QueryKey { value: secret, .. } => vec![secret.clone()],
            // A server echoing the request could show the `Authorization` header too.
            Self::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose_secret());
                vec![
                    password.clone(),
                    SecretString::from(BASE64_STANDARD.encode(pair)),
                ]
            }
            Self::OAuth2(oauth) => vec![oauth.client_secret.clone()],
        }
    }
}

/// The source's `auth`, or else its connection's, with its secrets read.
fn resolve_auth(
    rest: &RestContext,
    source: &RestSource,
    connection: Option<&Connection>,
) -> Result<Option<Auth>, FetchError> {
    let (auth, field) = match (&source.auth, connection) {
        (Some(auth), _) => (auth, "source.auth".to_owned()),
        (
            None,
            Some(Connection::Rest {
                auth: Some(auth), ..
            }),
        ) => {
            let name = source.connection.as_deref().unwrap_or("connection");
            (auth, format!("{name}.auth"))
        }
        _ => return Ok(None),
    };
    let secret = |name: &str, env: &Option<String>, file: &Option<std::path::PathBuf>| {
        let field = format!("{field}.{name}");
        secret::load(&field, env.as_deref(), file.as_deref())?.ok_or_else(|| {
            FetchError::permanent(format!(
                "{field} is read from neither an environment variable nor a file"
            ))
        })
    };
    Ok(Some(match auth {
        RestAuth::Bearer {
            token_env,
            token_file,
        } => Auth::Bearer(secret("token", token_env, token_file)?),
        RestAuth::ApiKey {
            placement,
            name,
            value_env,
            value_file,
        } => {
            let value = secret("value", value_env, value_file)?;
            match placement {
                ApiKeyPlacement::Query => Auth::QueryKey {
                    name: name.clone(),
                    value,
                },
                ApiKeyPlacement::Header => Auth::HeaderKey {
                    name: HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        FetchError::permanent(format!("{field}.name is not a valid header name"))
                    })?,
                    value,
                },
            }
        }
        RestAuth::Basic {
            username,
            password_env,
            password_file,
        } => Auth::Basic {
            username: username.clone(),
            password: secret("password", password_env, password_file)?,
        },
        RestAuth::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret_env,
            client_secret_file,
            scopes,
        } => {
            let scope = scopes.join(" ");
            Auth::OAuth2(OAuth2 {
                token_url: Url::parse(token_url).map_err(|e| {
                    FetchError::permanent(format!("{field}.token_url is not a valid URL ({e})"))
                })?,
                client_id: client_id.clone(),
                client_secret: secret("client_secret", client_secret_env, client_secret_file)?,
                slot: rest.tokens.slot(token_url, client_id, &scope),
                scope,
            })
        }
    }))
}

/// `prefix` + the secret as a header value marked sensitive (never printed by `Debug`).
fn secret_header(
    prefix: &str,
    secret: &SecretString,
    what: &str,
) -> Result<HeaderValue, FetchError> {
    let mut value =
        HeaderValue::from_str(&format!("{prefix}{}", secret.expose_secret())).map_err(|_| {
            FetchError::permanent(format!(
                "{what} is not a valid header value (it holds a line break or a non-ASCII \
                 character)"
            ))
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An OAuth2 client-credentials client (RFC 6749 §4.4). The client authenticates with
/// HTTP basic auth (`client_secret_basic`, the RFC's default that every server must
/// accept), its id and secret form-encoded first as §2.3.1 says.
struct OAuth2 {
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    /// The scopes, space-separated (empty: none requested).
    scope: String,
    slot: Arc<TokenSlot>,
}

impl OAuth2 {
    /// The cached token, or a new one when there is none, it is due for renewal, or it
    /// is `stale` (the API just refused it).
    async fn token(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, FetchError> {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref() {
            let refused = stale.is_some_and(|s| s.expose_secret() == cached.token.expose_secret());
            let due = cached.renew_at.is_some_and(|at| Instant::now() >= at);
            if !refused && !due {
                return Ok(cached.token.clone());
            }
        }
        *slot = None;
        let fresh = self.fetch(client, timeout).await?;
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// Asks the token endpoint for a token. It is renewed `expires_in` after the
    /// request minus a tenth of that, at most 30 s, so it is never used at the edge.
    async fn fetch(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<CachedToken, FetchError> {
        let what = format!("the OAuth2 token request to {}", self.token_url.path());
        let mut form = vec![("grant_type", "client_credentials")];
        if !self.scope.is_empty() {
            form.push(("scope", &self.scope));
        }
        let password = SecretString::from(form_encode(self.client_secret.expose_secret()));
        let asked = Instant::now();
        let response = client
            .post(self.token_url.clone())
            .basic_auth(form_encode(&self.client_id), Some(password.expose_secret()))
            .header(ACCEPT, "application/json")
            .form(&form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| request_error(&what, timeout, e))?;
        if !response.status().is_success() {
            // An endpoint echoing the request shows the secret form-encoded, or inside
            // the `Authorization: Basic` value.
            let basic = SecretString::from(BASE64_STANDARD.encode(format!(
                "{}:{}",
                form_encode(&self.client_id),
                password.expose_secret()
            )));
            let masks = [
                self.client_secret.expose_secret(),
                password.expose_secret(),
                basic.expose_secret(),
            ];
            return Err(status_error(&what, response, &masks).await);
        }
        let content_type = content_type(&response);
        // The body holds the token: errors below describe it, never quote it.
        let bytes = read_body(response, TOKEN_RESPONSE_BYTES, &what, timeout).await?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
            FetchError::permanent(format!("the answer to {what} is not JSON ({content_type})"))
        })?;
        let Some(Value::String(token)) = body.get("access_token") else {
            return Err(FetchError::permanent(format!(
                "the answer to {what} has no access_token"
            )));
        };
        let expires_in = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let renew_at = expires_in.and_then(|secs| {
            let lifetime = Duration::from_secs(secs);
            asked.checked_add(lifetime - (lifetime / 10).min(Duration::from_secs(30)))
        });
        Ok(CachedToken {
            token: SecretString::from(token.clone()),
            renew_at,
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Pagination with its position.
enum Paging {
    Single,
    LinkHeader,
    NextUrl {
        path: JsonPath,
        text: String,
    },
    Page {
        param: String,
        number: u64,
    },
    Offset {
        param: String,
        offset: u64,
    },
    Cursor {
        path: JsonPath,
        text: String,
        param: String,
    },
}

impl Paging {
    fn new(pagination: Option<&Pagination>) -> Result<Self, FetchError> {
        let field = "source.pagination.path";
        Ok(match pagination {
            None => Self::Single,
            Some(Pagination::LinkHeader {}) => Self::LinkHeader,
            Some(Pagination::NextUrl { path }) => Self::NextUrl {
                path: json_path(field, path)?,
                text: path.clone(),
            },
            Some(Pagination::Page { param, start }) => Self::Page {
                param: param.clone(),
                number: *start,
            },
            Some(Pagination::Offset { param }) => Self::Offset {
                param: param.clone(),
                offset: 0,
            },
            Some(Pagination::Cursor { path, param }) => Self::Cursor {
                path: json_path(field, path)?,
                text: path.clone(),
                param: param.clone(),
            },
        })
    }

    /// Puts the first page's number or offset in the first URL.
    fn start(&self, url: &mut Url) {
        match self {
            Self::Page { param, number } => *url = with_param(url, param, &number.to_string()),
            Self::Offset { param, offset } => *url = with_param(url, param, &offset.to_string()),
            _ => {}
        }
    }

    /// The URL of the page after `page` (fetched from `url`, `count` records), if any.
    fn next(
        &mut self,
        url: &Url,
        page: &Page,
        count: usize,
        what: &str,
    ) -> Result<Option<Url>, FetchError> {
        let join = |link: &str| {
            page.url.join(link).map(Some).map_err(|e| {
                FetchError::permanent(format!(
                    "the next-page URL of {what} is not a valid URL ({e})"
                ))
            })
        };
        match self {
            Self::Single => Ok(None),
            Self::LinkHeader => page.next_link.as_deref().map_or(Ok(None), join),
            Self::NextUrl { path, text } => {
                match token_text(path.query(&page.body).first(), text, what)? {
                    Some(link) => join(&link),
                    None => Ok(None),
                }
            }
            Self::Page { param, number } => {
                *number += 1;
                Ok(Some(with_param(url, param, &number.to_string())))
            }
            Self::Offset { param, offset } => {
                *offset += count as u64;
                Ok(Some(with_param(url, param, &offset.to_string())))
            }
            Self::Cursor { path, text, param } => {
                let token = token_text(path.query(&page.body).first(), text, what)?;
                Ok(token.map(|token| with_param(url, param, &token)))
            }
        }
    }
}

/// A next URL or cursor token found in a body: a string or number (its exact text), or
/// `None` when it is missing, null, `false` or empty (the last page).
fn token_text(value: Option<&Value>, path: &str, what: &str) -> Result<Option<String>, FetchError> {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(FetchError::permanent(format!(
            "the value at {path} in the response to {what} is neither a string nor a number"
        ))),
    }
}

/// `url` with query parameter `name` set to `value` (replacing any it had).
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut url = url.clone();
    if url.query_pairs().any(|(key, _)| key == name) {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(key, _)| key != name)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.query_pairs_mut().append_pair(name, value);
    url
}

/// The target of the `rel="next"` link of one `Link` header value (RFC 8288).
fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = rest[start..].find('>')? + start;
        let target = &rest[start + 1..end];
        rest = &rest[end + 1..];
        // The link's parameters run to the next comma outside a quoted string.
        let mut quoted = false;
        let stop = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == ',' && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        if rest[..stop].split(';').any(is_rel_next) {
            return Some(target);
        }
        rest = &rest[stop..];
    }
}

fn is_rel_next(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_matches('"')
            .split_ascii_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

/// The error a non-2xx response means: 5xx and 429 are transient (429 and 503 with
/// their `Retry-After`), others permanent; each with the status and an excerpt.
async fn status_error(what: &str, response: Response, masks: &[&str]) -> FetchError {
    let status = response.status();
    let wait = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            retry_after(response.headers())
        }
        _ => None,
    };
    if status.is_redirection() {
        return FetchError::permanent(format!(
            "{what} answered {status}, a redirect kpistream does not follow: the source's \
             credentials stay on its own scheme, host and port"
        ));
    }
    let body = read_prefix(response, ERROR_BODY_BYTES).await;
    let excerpt = excerpt(&body, masks);
    let message = if excerpt.is_empty() {
        format!("{what} answered {status}")
    } else {
        format!("{what} answered {status}: {excerpt}")
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        FetchError::Transient {
            message,
            retry_after: wait,
        }
    } else {
        FetchError::permanent(message)
    }
}

/// A `Retry-After` in seconds or as an HTTP date (IMF-fixdate, RFC 9110).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()?;
    Some(Duration::try_from(at.duration_since(jiff::Timestamp::now())).unwrap_or(Duration::ZERO))
}

/// The error of a request that got no (complete) response. Its URL is dropped: it may
/// hold an API key or an `{{env.NAME}}` value.
fn request_error(what: &str, timeout: Duration, error: reqwest::Error) -> FetchError {
    let error = error.without_url();
    if error.is_timeout() {
        return FetchError::transient(format!("{what} timed out after {timeout:?}"));
    }
    let mut message = format!("{what} failed: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_builder() || error.is_redirect() || error.is_decode() {
        FetchError::permanent(message)
    } else {
        FetchError::transient(message)
    }
}

fn content_type(response: &Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "no content type".to_owned(),
            |t| format!("content type {t}"),
        )
}

/// The whole body, counted after decompression as it streams in; more than `limit`
/// bytes is a permanent error, reading stopped there.
async fn read_body(
    mut response: Response,
    limit: u64,
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || {
        FetchError::permanent(format!(
            "the response to {what} is larger than max_response_bytes ({limit} bytes, counted \
             after decompression); raise it or ask for smaller pages"
        ))
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(what, timeout, e))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Up to about `limit` bytes of an error response, read errors ignored.
async fn read_prefix(mut response: Response, limit: u64) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() as u64 >= limit {
            break;
        }
    }
    body
}

/// A body as a short one-line text for an error: whitespace collapsed, `masks` replaced
/// by `[REDACTED]`, at most 200 characters.
fn excerpt(body: &[u8], masks: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for mask in masks.iter().filter(|m| !m.is_empty()) {
        text = text.replace(mask, "[REDACTED]");
    }
    if text.chars().count() > EXCERPT_CHARS {
        text = text.chars().take(EXCERPT_CHARS - 1).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::extract::Request;
    use axum::http::{StatusCode as Status, header};
    use axum::response::{IntoResponse, Response as Answer};
    use axum::routing::{get, post};

    use super::*;
    use crate::connector::Duration as ConfigDuration;

    const CANARY: &str = "CANARY-rest-secret-123";

    fn source(text: &str) -> RestSource {
        toml::from_str(text).expect("the test source is valid")
    }

    fn ctx() -> TemplateContext {
        let now = jiff::Timestamp::now();
        TemplateContext {
            cursor: Some("2026-01-31".into()),
            period_start: now,
            period_end: now,
            now,
        }
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: ConfigDuration(Duration::from_millis(5)),
            max_backoff: ConfigDuration(Duration::from_secs(5)),
        }
    }

    /// Serves `router` on a free port of 127.0.0.1; returns `http://127.0.0.1:PORT`.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{address}")
    }

    /// Every record of a run, pages concatenated.
    async fn run(
        rest: &RestContext,
        source: &RestSource,
        connection: Option<&Connection>,
    ) -> Result<Vec<Record>, FetchError> {
        let mut pages = open(rest, source, connection, &ctx(), &policy(4))?;
        let mut records = Vec::new();
        while let Some(page) = pages.next_page().await? {
            assert!(!page.is_empty(), "an empty page ends the run instead");
            records.extend(page);
        }
        Ok(records)
    }

    fn numbers(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r["n"].as_u64().unwrap()).collect()
    }

    fn params(request: &Request) -> HashMap<String, String> {
        let url = Url::parse(&format!("http://test{}", request.uri())).unwrap();
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn param(request: &Request, name: &str) -> Option<u64> {
        params(request).get(name).map(|v| v.parse().unwrap())
    }

    fn json(status: u16, body: impl Into<String>) -> Answer {
        let status = Status::from_u16(status).unwrap();
        let body: String = body.into();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// Records `{"n": i}` for i in `from..from + size`, of five in all, as a JSON array.
    fn slice(from: u64, size: u64) -> String {
        let items: Vec<String> = (from..5.min(from + size))
            .map(|i| format!("{{\"n\":{i}}}"))
            .collect();
        format!("[{}]", items.join(","))
    }

    /// Counts the requests a handler receives.
    #[derive(Clone, Default)]
    struct Counter(Arc<AtomicU32>);

    impl Counter {
        fn hit(&self) -> u32 {
            self.0.fetch_add(1, Ordering::SeqCst) + 1
        }
        fn get(&self) -> u32 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Records what a handler received, in order.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Log {
        fn push(&self, entry: impl Into<String>) {
            self.0.lock().unwrap().push(entry.into());
        }
        fn entries(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn link_header_pages_are_followed_until_there_is_no_next_link() {
        let log = Log::default();
        let seen = log.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move |request: Request| async move {
                let page = param(&request, "p").unwrap_or(1);
                seen.push(page.to_string());
                let mut answer = json(200, slice((page - 1) * 2, 2));
                if page < 3 {
                    let link = format!(
                        "</items?p=3>; rel=\"last\"; title=\"a, b\", </items?p={}>; rel=\"next\"",
                        page + 1
                    );
                    answer
                        .headers_mut()
                        .insert(header::LINK, link.parse().unwrap());
                }
                answer
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/items\"\npagination = {{ type = \"link_header\" }}"
        ));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(numbers(&records), [0, 1, 2, 3, 4]);
        assert_eq!(log.entries(), ["1", "2", "3"]);
    }

    #[tokio::test]
    async fn next_url_pages_follow_relative_urls_from_the_body() {
        let base = serve(Router::new().route(
            "/api/items",
            get(|request: Request| async move {
                let page = param(&request, "p").unwrap_or(1);
                let next = if page < 3 {
                    format!("\"items?p={}\"", page + 1)
                } else {
                    "null".into()
                };
                let data = slice((page - 1) * 2, 2);
                json(
                    200,
                    format!("{{\"data\":{data},\"links\":{{\"next\":{next}}}}}"),
                )
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/api/items\"\nrecords = \"$.data[*]\"\n\
             pagination = {{ type = \"next_url\", path = \"$.links.next\" }}"
        ));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(numbers(&records), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn page_numbers_advance_until_an_empty_page() {
        let log = Log::default();
        let seen = log.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move |request: Request| async move {
                let page = param(&request, "page").unwrap();
                seen.push(page.to_string());
                json(200, slice(page * 2, 2))
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/items\"\npagination = {{ type = \"page\", param = \"page\", start = 0 }}"
        ));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(numbers(&records), [0, 1, 2, 3, 4]);
        assert_eq!(log.entries(), ["0", "1", "2", "3"]);
    }

    #[tokio::test]
    async fn offsets_advance_by_the_records_received_until_an_empty_page() {
        let log = Log::default();
        let seen = log.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move |request: Request| async move {
                let offset = param(&request, "offset").unwrap();
                let limit = param(&request, "limit").unwrap();
                seen.push(offset.to_string());
                json(200, slice(offset, limit))
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/items\"\nquery = {{ limit = \"2\" }}\n\
             pagination = {{ type = \"offset\", param = \"offset\" }}"
        ));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(numbers(&records), [0, 1, 2, 3, 4]);
        assert_eq!(log.entries(), ["0", "2", "4", "5"]);
    }

    #[tokio::test]
    async fn cursor_tokens_are_sent_back_exactly_until_the_response_has_none() {
        let log = Log::default();
        let seen = log.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move |request: Request| async move {
                let cursor = params(&request).get("after").cloned();
                seen.push(cursor.clone().unwrap_or_default());
                let (data, next) = match cursor.as_deref() {
                    None => (slice(0, 2), "\"b\""),
                    Some("b") => (slice(2, 2), "12345678901234567890123"),
                    Some("12345678901234567890123") => (slice(4, 2), "null"),
                    Some(other) => panic!("unexpected cursor {other}"),
                };
                json(200, format!("{{\"items\":{data},\"next\":{next}}}"))
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/items\"\nrecords = \"$.items[*]\"\n\
             pagination = {{ type = \"cursor\", path = \"$.next\", param = \"after\" }}"
        ));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(numbers(&records), [0, 1, 2, 3, 4]);
        assert_eq!(log.entries(), ["", "b", "12345678901234567890123"]);
    }

    #[tokio::test]
    async fn a_post_through_a_connection_sends_its_rendered_query_headers_and_body_once() {
        let log = Log::default();
        let seen = log.clone();
        let base = serve(Router::new().route(
            "/api/v1/report",
            post(move |request: Request| async move {
                let headers = request.headers().clone();
                let header = |name: &str| headers[name].to_str().unwrap().to_owned();
                seen.push(format!("since={}", params(&request)["since"]));
                seen.push(format!("tenant={}", header("x-tenant")));
                seen.push(header("authorization"));
                seen.push(header("content-type"));
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap();
                seen.push(String::from_utf8(body.to_vec()).unwrap());
                json(
                    200,
                    r#"{"rows":[{"v":12345678901234567890.123456789000},{"v":2}]}"#,
                )
            }),
        ))
        .await;
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

    /// A token endpoint numbering its tokens, and an API accepting only the last one
    /// until it is revoked.
    #[derive(Default)]
    struct OAuthServer {
        fetches: Counter,
        api_calls: Counter,
        valid: Mutex<Option<String>>,
        token_requests: Log,
    }

    async fn oauth_server(expires_in: u64) -> (Arc<OAuthServer>, String) {
        let state = Arc::new(OAuthServer::default());
        let (tokens, api) = (state.clone(), state.clone());
        let base = serve(
            Router::new()
                .route(
                    "/token",
                    post(move |request: Request| async move {
                        let authorization = request.headers()[header::AUTHORIZATION]
                            .to_str()
                            .unwrap()
                            .to_owned();
                        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                            .await
                            .unwrap();
                        let body = String::from_utf8(body.to_vec()).unwrap();
                        tokens.token_requests.push(format!("{authorization} {body}"));
                        let token = format!("tok-{}", tokens.fetches.hit());
                        *tokens.valid.lock().unwrap() = Some(token.clone());
                        json(
                            200,
                            format!(
                                r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#
                            ),
                        )
                    }),
                )
                .route(
                    "/data",
                    get(move |request: Request| async move {
                        api.api_calls.hit();
                        let valid = api.valid.lock().unwrap().clone();
                        let sent = request.headers()[header::AUTHORIZATION].to_str().unwrap();
                        if valid.is_some_and(|token| sent == format!("Bearer {token}")) {
                            json(200, r#"[{"n":1}]"#)
                        } else {
                            json(401, r#"{"error":"invalid_token"}"#)
                        }
                    }),
                ),
        )
        .await;
        (state, base)
    }

    fn oauth_source(base: &str, secret_file: &std::path::Path) -> RestSource {
        source(&format!(
            r#"
            url = "{base}/data"
            [auth]
            type = "oauth2_client_credentials"
            token_url = "{base}/token"
            client_id = "client-1"
            client_secret_file = "{}"
            scopes = ["read", "write"]
            "#,
            secret_file.display()
        ))
    }

    #[tokio::test]
    async fn an_oauth2_token_is_cached_across_runs_and_fetched_again_after_a_401() {
        let (server, base) = oauth_server(3600).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret/x y\n").unwrap();
        let source = oauth_source(&base, &secret);
        let rest = RestContext::new();

        for _ in 0..2 {
            assert_eq!(numbers(&run(&rest, &source, None).await.unwrap()), [1]);
        }
        assert_eq!(server.fetches.get(), 1, "the token is cached across runs");
        assert_eq!(server.api_calls.get(), 2);

        // The server considers the token expired before the cache does.
        *server.valid.lock().unwrap() = None;
        assert_eq!(numbers(&run(&rest, &source, None).await.unwrap()), [1]);
        assert_eq!(
            server.fetches.get(),
            2,
            "a 401 drops the token and fetches one"
        );
        assert_eq!(
            server.api_calls.get(),
            4,
            "the refused request is sent again once"
        );

        let client = BASE64_STANDARD.encode("client-1:s3cret%2Fx+y");
        let expected = format!("Basic {client} grant_type=client_credentials&scope=read+write");
        assert_eq!(
            server.token_requests.entries(),
            [expected.clone(), expected]
        );
    }

    #[tokio::test]
    async fn an_oauth2_token_past_its_expiry_is_fetched_again() {
        let (server, base) = oauth_server(0).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret").unwrap();
        let source = oauth_source(&base, &secret);
        let rest = RestContext::new();
        for _ in 0..2 {
            run(&rest, &source, None).await.unwrap();
        }
        assert_eq!(server.fetches.get(), 2);
        assert_eq!(server.api_calls.get(), 2, "no request was refused");
    }

    #[tokio::test]
    async fn an_oauth2_token_the_api_keeps_refusing_fails_after_one_new_token() {
        let (server, base) = oauth_server(3600).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret").unwrap();
        let mut source = oauth_source(&base, &secret);
        source.url = format!("{base}/nowhere");
        let error = run(&RestContext::new(), &source, None).await.unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "GET /nowhere page 1 answered 404 Not Found"
        );
        assert_eq!(server.fetches.get(), 1);
    }

    #[tokio::test]
    async fn a_503_twice_then_a_200_succeeds_on_the_third_attempt() {
        let calls = Counter::default();
        let counted = calls.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move || async move {
                if counted.hit() <= 2 {
                    json(503, "busy")
                } else {
                    json(200, slice(0, 5))
                }
            }),
        ))
        .await;
        let source = source(&format!("url = \"{base}/items\""));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn a_400_fails_at_once_with_the_status_and_an_excerpt_of_the_body() {
        let calls = Counter::default();
        let counted = calls.clone();
        let base = serve(Router::new().route(
            "/v1/items",
            get(move || async move {
                counted.hit();
                let long = "x".repeat(500);
                json(
                    400,
                    format!("{{\"error\": \"bad filter\",\n \"detail\": \"{long}\"}}"),
                )
            }),
        ))
        .await;
        let source = source(&format!("url = \"{base}/v1/items?kind=a\""));
        let error = run(&RestContext::new(), &source, None).await.unwrap_err();
        assert_eq!(calls.get(), 1, "a 400 is not retried");
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(
            message.starts_with(
                "GET /v1/items page 1 answered 400 Bad Request: {\"error\": \"bad filter\", \"detail\""
            ),
            "{message}"
        );
        let excerpt = message.split_once(": ").unwrap().1;
        assert_eq!(excerpt.chars().count(), 200);
        assert!(excerpt.ends_with('…'));
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_waited_for() {
        let calls = Counter::default();
        let counted = calls.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move || async move {
                if counted.hit() == 1 {
                    let mut answer = json(429, "slow down");
                    answer
                        .headers_mut()
                        .insert(header::RETRY_AFTER, "1".parse().unwrap());
                    answer
                } else {
                    json(200, slice(0, 1))
                }
            }),
        ))
        .await;
        let source = source(&format!("url = \"{base}/items\""));
        let started = Instant::now();
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(calls.get(), 2);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_an_http_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        headers.insert(RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn the_next_link_is_found_among_several_and_only_there() {
        let header =
            r#"<https://a.test/x?page=1>; rel="prev first", <https://a.test/x?page=3>; rel="next""#;
        assert_eq!(next_link(header), Some("https://a.test/x?page=3"));
        assert_eq!(next_link("</x?p=2>; REL=next"), Some("/x?p=2"));
        assert_eq!(next_link(r#"</x?p=9>; rel="last""#), None);
        assert_eq!(next_link(r#"</x>; title="a, rel=next"; rel=last"#), None);
    }

    /// A gzip member of `prefix`, its last byte repeated `258 * repeats` more times
    /// through deflate back-references, then `suffix`: a few hundred bytes that expand
    /// to as many as wanted. (Fixed Huffman codes, RFC 1951 §3.2.6.)
    fn gzip(prefix: &[u8], repeats: usize, suffix: &[u8]) -> Vec<u8> {
        let mut plain = prefix.to_vec();
        plain.extend(std::iter::repeat_n(*prefix.last().unwrap(), 258 * repeats));
        plain.extend_from_slice(suffix);
        let mut bits = Bits::default();
        bits.put(1, 1); // the final block
        bits.put(1, 2); // with fixed Huffman codes
        let literal = |bits: &mut Bits, byte: u8| bits.code(0x30 + u32::from(byte), 8);
        prefix.iter().for_each(|&b| literal(&mut bits, b));
        for _ in 0..repeats {
            bits.code(0xC5, 8); // length 258
            bits.code(0, 5); // distance 1
        }
        suffix.iter().for_each(|&b| literal(&mut bits, b));
        bits.code(0, 7); // end of block
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        out.extend(bits.finish());
        out.extend(crc32(&plain).to_le_bytes());
        out.extend((plain.len() as u32).to_le_bytes());
        out
    }

    #[derive(Default)]
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        len: u32,
    }

    impl Bits {
        /// Bits of a number, least significant first.
        fn put(&mut self, value: u32, count: u32) {
            self.acc |= value << self.len;
            self.len += count;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }

        /// A Huffman code, most significant bit first.
        fn code(&mut self, code: u32, count: u32) {
            self.put(code.reverse_bits() >> (32 - count), count);
        }

        fn finish(mut self) -> Vec<u8> {
            if self.len > 0 {
                self.out.push(self.acc as u8);
            }
            self.out
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn gzipped(body: Vec<u8>) -> Answer {
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            body,
        )
            .into_response()
    }

    #[tokio::test]
    async fn a_gzip_response_is_decompressed() {
        let body = gzip(br#"[{"v":"a"#, 4, br#""}]"#);
        let base =
            serve(Router::new().route("/items", get(move || async move { gzipped(body) }))).await;
        let source = source(&format!("url = \"{base}/items\""));
        let records = run(&RestContext::new(), &source, None).await.unwrap();
        assert_eq!(records[0]["v"].as_str().unwrap(), "a".repeat(1 + 4 * 258));
    }

    #[tokio::test]
    async fn a_response_over_max_response_bytes_once_decompressed_is_refused() {
        let body = gzip(br#"[{"v":"a"#, 100, br#""}]"#);
        assert!(body.len() < 1000, "{} bytes on the wire", body.len());
        let base =
            serve(Router::new().route("/items", get(move || async move { gzipped(body) }))).await;
        let source = source(&format!(
            "url = \"{base}/items\"\nmax_response_bytes = 2000"
        ));
        let error = run(&RestContext::new(), &source, None).await.unwrap_err();
        assert!(!error.is_transient());
        assert!(
            error
                .to_string()
                .contains("GET /items page 1 is larger than max_response_bytes (2000 bytes"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn reaching_page_limit_ends_the_run_with_an_error_that_says_so() {
        let calls = Counter::default();
        let counted = calls.clone();
        let base = serve(Router::new().route(
            "/items",
            get(move || async move {
                counted.hit();
                json(200, slice(0, 1))
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/items\"\npage_limit = 3\n\
             pagination = {{ type = \"page\", param = \"page\" }}"
        ));
        let mut pages = open(&RestContext::new(), &source, None, &ctx(), &policy(1)).unwrap();
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
    async fn a_body_that_is_not_json_is_refused_naming_its_content() {
        let base = serve(Router::new().route(
            "/items",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body>Sign in</body></html>",
                )
            }),
        ))
        .await;
        let source = source(&format!("url = \"{base}/items\""));
        let error = run(&RestContext::new(), &source, None).await.unwrap_err();
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(
            message.starts_with(
                "the response to GET /items page 1 is not JSON (content type text/html"
            ),
            "{message}"
        );
        assert!(
            message.ends_with(": <html><body>Sign in</body></html>"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_request_that_times_out_is_a_transient_error() {
        let base = serve(Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                json(200, "[]")
            }),
        ))
        .await;
        let source = source(&format!("url = \"{base}/slow\"\ntimeout = \"200ms\""));
        let mut pages = open(&RestContext::new(), &source, None, &ctx(), &policy(2)).unwrap();
        let started = Instant::now();
        let error = pages.next_page().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(error.is_transient());
        assert_eq!(
            error.to_string(),
            "GET /slow page 1 timed out after 200ms (gave up after 2 attempts)"
        );
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed() {
        let base = serve(Router::new().route(
            "/moved",
            get(|request: Request| async move {
                let host = request.headers()[header::HOST].to_str().unwrap().to_owned();
                let port = host.rsplit(':').next().unwrap().to_owned();
                let location = format!("http://localhost:{port}/moved");
                (Status::FOUND, [(header::LOCATION, location)]).into_response()
            }),
        ))
        .await;
        let source = source(&format!("url = \"{base}/moved\""));
        let error = run(&RestContext::new(), &source, None).await.unwrap_err();
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
        let base = serve(Router::new().route(
            "/items",
            get(|request: Request| async move {
                let host = request.headers()[header::HOST].to_str().unwrap().to_owned();
                let port = host.rsplit(':').next().unwrap().to_owned();
                let mut answer = json(200, slice(0, 2));
                let link = format!("<http://localhost:{port}/items?p=2>; rel=\"next\"");
                answer
                    .headers_mut()
                    .insert(header::LINK, link.parse().unwrap());
                answer
            }),
        ))
        .await;
        let source = source(&format!(
            "url = \"{base}/items\"\npagination = {{ type = \"link_header\" }}"
        ));
        let error = run(&RestContext::new(), &source, None).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the next-page URL of GET /items page 1 points to another host; kpistream does \
             not send the source's credentials there"
        );
    }

    #[tokio::test]
    async fn secrets_appear_in_no_error_message_and_no_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{CANARY}\n")).unwrap();
        let file = file.display();
        unsafe { std::env::set_var("KPISTREAM_REST_TEST_CANARY", CANARY) };
        // The API echoes everything it was sent, as some error pages do.
        let echo = |status: u16| {
            move |request: Request| async move {
                let headers: Vec<String> = request
                    .headers()
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value.to_str().unwrap()))
                    .collect();
                json(status, format!("{} {}", request.uri(), headers.join(" ")))
            }
        };
        let base = serve(
            Router::new()
                .route("/bad", get(echo(400)))
                .route("/busy", get(echo(503))),
        )
        .await;
        let auths = [
            format!("{{ type = \"bearer\", token_file = \"{file}\" }}"),
            "{ type = \"api_key\", in = \"query\", name = \"key\", value_env = \"KPISTREAM_REST_TEST_CANARY\" }".to_owned(),
            format!("{{ type = \"api_key\", in = \"header\", name = \"X-Key\", value_file = \"{file}\" }}"),
            format!("{{ type = \"basic\", username = \"kpi\", password_file = \"{file}\" }}"),
        ];
        let encoded = BASE64_STANDARD.encode(format!("kpi:{CANARY}"));
        let rest = RestContext::new();
        for auth in &auths {
            for path in ["bad", "busy"] {
                let source = source(&format!(
                    "url = \"{base}/{path}?q={{{{env.KPISTREAM_REST_TEST_CANARY}}}}\"\n\
                     headers = {{ X-Extra = \"{{{{env.KPISTREAM_REST_TEST_CANARY}}}}\" }}\n\
                     auth = {auth}"
                ));
                let mut pages = open(&rest, &source, None, &ctx(), &policy(2)).unwrap();
                let error = pages.next_page().await.unwrap_err();
                for shown in [
                    error.to_string(),
                    format!("{error:?}"),
                    format!("{pages:?}"),
                    format!("{rest:?}"),
                ] {
                    assert!(!shown.contains(CANARY), "{auth}: {shown}");
                    assert!(!shown.contains(&encoded), "{auth}: {shown}");
                }
                assert!(error.to_string().contains("[REDACTED]"), "{error}");
            }
        }

        // A connection refused names neither the URL nor its query.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let source = source(&format!(
            "url = \"http://{closed}/x?q={{{{env.KPISTREAM_REST_TEST_CANARY}}}}\"\nauth = {}",
            auths[1]
        ));
        let error = run(&rest, &source, None).await.unwrap_err();
        assert!(error.is_transient());
        assert!(
            error.to_string().starts_with("GET /x page 1 failed: "),
            "{error}"
        );
        assert!(!format!("{error} {error:?}").contains(CANARY), "{error}");
    }
}
