//! How a REST source authenticates: a bearer token, an API key in a header or the
//! query, HTTP basic, or OAuth2 client credentials, with its secrets read once per run.
//! OAuth2 access tokens are cached across runs of one runner process, per token
//! endpoint, client and scopes, and fetched again when due or refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::RestContext;
use super::response::{content_type, read_body, request_error, status_error};
use crate::connector::{ApiKeyPlacement, Connection, RestAuth, RestSource};
use crate::runner::local::ConfigError;
use crate::runner::{FetchError, secret};

/// Largest OAuth2 token response accepted.
const TOKEN_RESPONSE_BYTES: u64 = 64 * 1024;

/// OAuth2 access tokens by token endpoint, client and scopes. Each slot has its own
/// async lock, held while a token is fetched, so concurrent runs of one client fetch
/// it once.
#[derive(Default)]
pub(super) struct TokenCache {
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

    /// How many OAuth2 clients have a slot (for `Debug`).
    pub(super) fn clients(&self) -> usize {
        self.slots.lock().map_or(0, |slots| slots.len())
    }
}

/// A token and when to stop using it (`None`: until the API answers 401).
struct CachedToken {
    token: SecretString,
    renew_at: Option<Instant>,
}

/// How requests are authenticated, secrets read.
pub(super) enum Auth {
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
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Bearer(_) => "bearer",
            Self::HeaderKey { .. } => "api_key in a header",
            Self::QueryKey { .. } => "api_key in the query",
            Self::Basic { .. } => "basic",
            Self::OAuth2(_) => "oauth2_client_credentials",
        }
    }

    pub(super) fn secrets(&self) -> Vec<SecretString> {
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
pub(super) fn resolve_auth(
    rest: &RestContext,
    source: &RestSource,
    connection: Option<&Connection>,
) -> Result<Option<Auth>, ConfigError> {
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
        secret::load(&field, env.as_deref(), file.as_deref())?
            .ok_or(ConfigError::NoSecret { field })
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
                        ConfigError::Definition(format!("{field}.name is not a valid header name"))
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
                    ConfigError::Definition(format!("{field}.token_url is not a valid URL ({e})"))
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
pub(super) fn secret_header(
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
pub(super) struct OAuth2 {
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
    pub(super) async fn token(
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::extract::Request;
    use axum::http::header;
    use axum::routing::{get, post};

    use super::*;
    use crate::connector::RestSource;
    use crate::runner::Source as _;
    use crate::runner::rest::test_api::{
        Counter, Log, body_text, ctx, json, numbers, policy, run, run_alone, serve, source,
    };
    use crate::runner::rest::{RestContext, RestInputs, open};

    const CANARY: &str = "CANARY-rest-secret-123";

    /// A token endpoint numbering its tokens, and an API accepting only the last one
    /// until it is revoked.
    #[derive(Default)]
    struct OAuthServer {
        fetches: Counter,
        api_calls: Counter,
        valid: Mutex<Option<String>>,
        token_requests: Log,
    }

    /// The server, and a source reading its `/data` with the client secret `secret`
    /// (kept in a file of the returned directory).
    async fn oauth_server(
        expires_in: u64,
        secret: &str,
    ) -> (Arc<OAuthServer>, RestSource, tempfile::TempDir) {
        let state = Arc::new(OAuthServer::default());
        let (tokens, api) = (state.clone(), state.clone());
        let token = move |request: Request| async move {
            let authorization = request.headers()[header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned();
            let body = body_text(request).await;
            tokens
                .token_requests
                .push(format!("{authorization} {body}"));
            let token = format!("tok-{}", tokens.fetches.hit());
            *tokens.valid.lock().unwrap() = Some(token.clone());
            json(
                200,
                format!(
                    r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#
                ),
            )
        };
        let data = move |request: Request| async move {
            api.api_calls.hit();
            let valid = api.valid.lock().unwrap().clone();
            let sent = request.headers()[header::AUTHORIZATION].to_str().unwrap();
            if valid.is_some_and(|token| sent == format!("Bearer {token}")) {
                json(200, r#"[{"n":1}]"#)
            } else {
                json(401, r#"{"error":"invalid_token"}"#)
            }
        };
        let base = serve(
            Router::new()
                .route("/token", post(token))
                .route("/data", get(data)),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, secret).unwrap();
        let source = source(&format!(
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
        ));
        (state, source, dir)
    }

    #[tokio::test]
    async fn an_oauth2_token_is_cached_across_runs_and_fetched_again_after_a_401() {
        let (server, source, _dir) = oauth_server(3600, "s3cret/x y\n").await;
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
        let (server, source, _dir) = oauth_server(0, "s3cret").await;
        let rest = RestContext::new();
        for _ in 0..2 {
            run(&rest, &source, None).await.unwrap();
        }
        assert_eq!(server.fetches.get(), 2);
        assert_eq!(server.api_calls.get(), 2, "no request was refused");
    }

    #[tokio::test]
    async fn an_oauth2_token_the_api_keeps_refusing_fails_after_one_new_token() {
        let (server, mut source, _dir) = oauth_server(3600, "s3cret").await;
        source.url = source.url.replace("/data", "/nowhere");
        let error = run_alone(&source).await.unwrap_err();
        assert!(!error.is_transient());
        assert_eq!(
            error.to_string(),
            "GET /nowhere page 1 answered 404 Not Found"
        );
        assert_eq!(server.fetches.get(), 1);
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
                let inputs = RestInputs::read(&rest, &source, None).unwrap();
                let mut pages = open(&rest, &source, inputs, &ctx(), &policy(2)).unwrap();
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
