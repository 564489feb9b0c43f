//! The `rest` source: an HTTP JSON API, its authentication and its pagination.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Duration;

/// `type = "rest"`: requests a JSON API, page after page, and maps the records the
/// `records` JSONPath selects. Responses may be gzip-compressed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestSource {
    /// Name of a `type = "rest"` connection in `connections.toml` giving the base URL and
    /// the authentication; `url` is then a path joined to its base URL.
    pub connection: Option<String>,
    /// `"GET"` (default) or `"POST"`.
    #[serde(default)]
    pub method: Method,
    /// The URL (`https://…`), or a path such as `"/v1/invoices"` with `connection`.
    /// Templates allowed.
    pub url: String,
    /// Request headers; values may use templates. Secrets go through `{{env.NAME}}` or
    /// `auth`, never inline.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to the URL; values may use templates.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON body (written as a TOML table), sent with `POST`; strings may use templates.
    pub body: Option<toml::Table>,
    /// How requests are authenticated (default: not at all, or the connection's).
    pub auth: Option<RestAuth>,
    /// How the next page is found (default: a single request).
    pub pagination: Option<Pagination>,
    /// Most pages one run fetches (default 100); reaching it ends the run with an error,
    /// so a pagination loop never runs forever.
    #[serde(default = "default_page_limit")]
    pub page_limit: u32,
    /// Timeout of one request, connection included (default `"30s"`).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Largest response body accepted, after decompression (default 10485760, 10 MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// JSONPath selecting the records in a response, e.g. `"$.data[*]"` (default `"$[*]"`:
    /// the response is an array of records).
    #[serde(default = "default_records")]
    pub records: String,
}

fn default_page_limit() -> u32 {
    100
}

fn default_timeout() -> Duration {
    Duration::secs(30)
}

fn default_max_response_bytes() -> u64 {
    10 * 1024 * 1024
}

fn default_records() -> String {
    "$[*]".into()
}

/// The HTTP method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`.
    #[default]
    Get,
    /// `POST`, with `body` as JSON.
    Post,
}

/// Authentication, by `type`. Every secret comes from an environment variable
/// (`…_env`) or a file (`…_file`): exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RestAuth {
    /// `Authorization: Bearer TOKEN`.
    Bearer {
        /// Environment variable holding the token.
        token_env: Option<String>,
        /// File holding the token.
        token_file: Option<PathBuf>,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// `"header"` or `"query"`.
        #[serde(rename = "in")]
        placement: ApiKeyPlacement,
        /// The header's or query parameter's name, e.g. `"X-API-Key"`.
        name: String,
        /// Environment variable holding the key.
        value_env: Option<String>,
        /// File holding the key.
        value_file: Option<PathBuf>,
    },
    /// HTTP basic authentication.
    Basic {
        /// The user name (not a secret).
        username: String,
        /// Environment variable holding the password.
        password_env: Option<String>,
        /// File holding the password.
        password_file: Option<PathBuf>,
    },
    /// OAuth2 client credentials: the token is fetched from `token_url`, cached until it
    /// expires, and fetched again on a 401.
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        /// The authorization server's token endpoint.
        token_url: String,
        /// The client id (not a secret).
        client_id: String,
        /// Environment variable holding the client secret.
        client_secret_env: Option<String>,
        /// File holding the client secret.
        client_secret_file: Option<PathBuf>,
        /// Scopes requested (default: none).
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyPlacement {
    /// In a request header.
    Header,
    /// In a query parameter.
    Query,
}

/// How the next page is found, by `type`. Pagination stops at an empty page, a missing
/// next link or token, or `page_limit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// The `rel="next"` URL of the response's `Link` header.
    LinkHeader {},
    /// A next-page URL found in the response body.
    NextUrl {
        /// JSONPath of the URL, e.g. `"$.links.next"`.
        path: String,
    },
    /// A page number in a query parameter.
    Page {
        /// The parameter's name, e.g. `"page"`.
        param: String,
        /// The first page's number (default 1).
        #[serde(default = "one")]
        start: u64,
    },
    /// An offset in a query parameter, advanced by the number of records received.
    Offset {
        /// The parameter's name, e.g. `"offset"`.
        param: String,
    },
    /// An opaque token from the response, sent back in a query parameter.
    Cursor {
        /// JSONPath of the token in the response, e.g. `"$.next_cursor"`.
        path: String,
        /// The query parameter it is sent in, e.g. `"cursor"`.
        param: String,
    },
}

fn one() -> u64 {
    1
}
