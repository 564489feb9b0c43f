//! What the server and the runner share to reach the outside: one HTTP client setup,
//! SMTP sending, and the sentences for failures, which never hold a secret (no SMTP
//! password, no webhook URL: a URL may carry a token, so only its host is shown).

use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// Longest wait for a webhook's answer or an SMTP exchange.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client for webhooks: answers within [`TIMEOUT`], and no redirects (a
/// redirect is an answer that is not 2xx: the event was not taken).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kpistream/", env!("CARGO_PKG_VERSION")))
        .build()
        // Fails only if the TLS backend cannot start, which nothing else survives.
        .expect("the HTTP client for webhooks cannot be built")
}

/// An SMTP server to send through, and the login it wants.
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// Upgrade the connection with STARTTLS (required when set).
    pub starttls: bool,
    pub login: Option<(String, SecretString)>,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls)
            .field("user", &self.login.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpServer {
    /// Sends `message`; the error is a sentence without the password.
    pub async fn send(&self, message: Message) -> Result<(), String> {
        let (host, port) = (self.host.as_str(), self.port);
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(TIMEOUT));
        if self.starttls {
            let tls = TlsParameters::new(host.to_owned())
                .map_err(|e| format!("TLS cannot be set up for {host}: {e}"))?;
            transport = transport.tls(Tls::Required(tls));
        }
        if let Some((user, password)) = &self.login {
            transport = transport.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let sent = transport.build().send(message).await;
        sent.map(|_| ()).map_err(|e| {
            let mut reason = format!("sending through the SMTP server {host}:{port} failed: {e}");
            if let Some((_, password)) = &self.login {
                let password = password.expose_secret();
                if !password.is_empty() {
                    reason = reason.replace(password, "[REDACTED]");
                }
            }
            reason
        })
    }
}

/// The host (and port) of a URL, for messages: never its path, query or user, which
/// may hold a token. A URL that does not parse shows as `[URL]`.
pub fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => "[URL]".to_owned(),
        },
        Err(_) => "[URL]".to_owned(),
    }
}

/// A reqwest error without its URL: what kind of failure, and the innermost cause.
pub fn describe_http_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let what = if error.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut cause: &dyn std::error::Error = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if std::ptr::addr_eq(cause, &error as &dyn std::error::Error) {
        what
    } else {
        format!("{what}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_shows_only_its_host_and_port() {
        assert_eq!(
            host_of("https://hooks.example.com/T0/SECRET?x=1"),
            "hooks.example.com"
        );
        assert_eq!(
            host_of("http://user:pw@127.0.0.1:8080/in"),
            "127.0.0.1:8080"
        );
        // A backslash is a path separator in an http URL: the path stays hidden.
        assert_eq!(
            host_of("https://hooks.example.com\\T0\\SECRET"),
            "hooks.example.com"
        );
        assert_eq!(host_of("not a url SECRET"), "[URL]");
    }
}
