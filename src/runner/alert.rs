//! Alerts: when a connector is disabled after too many failed runs, and when it
//! recovers, every target of its `alerts` is told: an email over SMTP and/or a JSON POST
//! to a webhook.
//!
//! A target that cannot be reached does not stop the others; [`Alerter::notify`] returns
//! one sentence per failed target for the runner to log. Those sentences never hold a
//! secret: no SMTP password, and no webhook URL (a URL from `url_env` is a secret, and
//! one written in `url` may carry a token too), only its host.

use std::sync::Arc;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use secrecy::{ExposeSecret, SecretString};

use crate::connector::{Alerts, EmailAlert, WebhookAlert};
use crate::notify::outbound::{SmtpServer, describe_http_error, host_of, http_client};

/// SMTP port when the variable `smtp_port_env` names is not set (submission).
const DEFAULT_SMTP_PORT: u16 = 587;

/// What happened to the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// It failed `max_consecutive_failures` runs in a row and was disabled.
    Disabled,
    /// It ran successfully again after having been disabled.
    Recovered,
}

impl AlertKind {
    /// The webhook's `event`: `connector.disabled` or `connector.recovered`.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Disabled => "connector.disabled",
            Self::Recovered => "connector.recovered",
        }
    }
}

/// One alert, as every target receives it.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// Disabled or recovered.
    pub kind: AlertKind,
    /// The connector's name.
    pub connector: String,
    /// The stream it publishes to.
    pub stream: String,
    /// Failed runs in a row (for a recovery: before it recovered).
    pub consecutive_failures: u32,
    /// The last run's error (for a recovery: the last error before it).
    pub last_error: String,
    /// When it happened.
    pub at: jiff::Timestamp,
}

impl AlertEvent {
    /// The email's subject: `kpistream: connector billing-mrr disabled after 10 failed
    /// runs` or `kpistream: connector billing-mrr recovered`.
    pub fn subject(&self) -> String {
        match self.kind {
            AlertKind::Disabled => format!(
                "kpistream: connector {} disabled after {} failed run{}",
                self.connector,
                self.consecutive_failures,
                if self.consecutive_failures == 1 {
                    ""
                } else {
                    "s"
                }
            ),
            AlertKind::Recovered => format!("kpistream: connector {} recovered", self.connector),
        }
    }

    /// The email's plain-text body.
    pub fn body(&self) -> String {
        let what = match self.kind {
            AlertKind::Disabled => {
                "was disabled after too many failed runs in a row: the runner no longer fires it"
            }
            AlertKind::Recovered => "recovered: its last run succeeded",
        };
        format!(
            "The kpistream connector {connector} {what}.\n\n\
             Connector:            {connector}\n\
             Stream:               {stream}\n\
             Consecutive failures: {failures}\n\
             Last error:           {error}\n\
             Time:                 {at}\n",
            connector = self.connector,
            stream = self.stream,
            failures = self.consecutive_failures,
            error = if self.last_error.is_empty() {
                "none"
            } else {
                &self.last_error
            },
            at = self.at,
        )
    }

    /// The webhook's JSON document.
    pub fn webhook_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": self.kind.event_name(),
            "connector": self.connector,
            "stream": self.stream,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "at": self.at.to_string(),
        })
    }
}

/// Reads an environment variable (a function so tests need not change the process's
/// environment).
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// An alert that was not sent: which, and why (never a secret; a webhook URL that may
/// be one shows as `[URL]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("the email alert to {to} was not sent: {reason}")]
    Email { to: String, reason: String },
    #[error("{target} was not sent: {reason}")]
    Webhook { target: String, reason: String },
}

/// An environment variable an email alert names that is not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the environment variable {name} that alerts.email.{field} names is not set")]
pub struct MissingVar {
    name: String,
    field: &'static str,
}

/// An email alert's message that cannot be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("alerts.email.from {0:?} is not an email address")]
    From(String),
    #[error("alerts.email.to holds {0:?}, which is not an email address")]
    To(String),
    #[error("the message cannot be built: {0}")]
    Build(String),
}

/// Sends alerts. One per runner: its HTTP client is reused.
#[derive(Clone)]
pub struct Alerter {
    http: reqwest::Client,
    env: EnvLookup,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").finish_non_exhaustive()
    }
}

impl Default for Alerter {
    fn default() -> Self {
        Self::new()
    }
}

impl Alerter {
    /// An alerter reading SMTP settings and webhook URLs from the process's environment.
    pub fn new() -> Self {
        Self::with_env(Arc::new(|name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        }))
    }

    fn with_env(env: EnvLookup) -> Self {
        Self {
            http: http_client(),
            env,
        }
    }

    /// Sends to every target of `alerts`; returns one sentence per target that failed
    /// (never a secret).
    pub async fn notify(&self, alerts: &Alerts, event: &AlertEvent) -> Vec<AlertError> {
        let email = async {
            match &alerts.email {
                Some(email) => self.email(email, event).await.err(),
                None => None,
            }
        };
        let webhook = async {
            match &alerts.webhook {
                Some(hook) => self.webhook(hook, event).await.err(),
                None => None,
            }
        };
        let (email, webhook) = tokio::join!(email, webhook);
        email.into_iter().chain(webhook).collect()
    }

    fn var(&self, name: &str, field: &'static str) -> Result<String, MissingVar> {
        (self.env)(name).ok_or_else(|| MissingVar {
            name: name.to_owned(),
            field,
        })
    }

    async fn email(&self, email: &EmailAlert, event: &AlertEvent) -> Result<(), AlertError> {
        let to = email.to.join(", ");
        let failed = |reason: String| AlertError::Email {
            to: to.clone(),
            reason,
        };
        let message = email_message(email, event).map_err(|e| failed(e.to_string()))?;
        let host = self
            .var(&email.smtp_host_env, "smtp_host_env")
            .map_err(|e| failed(e.to_string()))?;
        let port = match (self.env)(&email.smtp_port_env) {
            None => DEFAULT_SMTP_PORT,
            Some(text) => text.trim().parse().map_err(|_| {
                failed(format!(
                    "the environment variable {} holds {text:?}, which is not a port number",
                    email.smtp_port_env
                ))
            })?,
        };
        let mut login = None;
        if let Some(user_env) = &email.smtp_username_env {
            let user = self
                .var(user_env, "smtp_username_env")
                .map_err(|e| failed(e.to_string()))?;
            let Some(password_env) = &email.smtp_password_env else {
                return Err(failed(
                    "alerts.email.smtp_username_env is set but smtp_password_env is not".into(),
                ));
            };
            let password = SecretString::from(
                self.var(password_env, "smtp_password_env")
                    .map_err(|e| failed(e.to_string()))?,
            );
            login = Some((user, password));
        }
        let server = SmtpServer {
            host,
            port,
            starttls: email.starttls,
            login,
        };
        server.send(message).await.map_err(failed)
    }

    async fn webhook(&self, hook: &WebhookAlert, event: &AlertEvent) -> Result<(), AlertError> {
        let (url, named) = match (&hook.url, &hook.url_env) {
            (Some(url), _) => (SecretString::from(url.clone()), None),
            (None, Some(var)) => match (self.env)(var) {
                Some(url) => (SecretString::from(url), Some(var.as_str())),
                None => {
                    return Err(AlertError::Webhook {
                        target: "the webhook alert".into(),
                        reason: format!(
                            "the environment variable {var} that alerts.webhook.url_env names is not set"
                        ),
                    });
                }
            },
            (None, None) => {
                return Err(AlertError::Webhook {
                    target: "the webhook alert".into(),
                    reason: "alerts.webhook has neither url nor url_env".into(),
                });
            }
        };
        let url = url.expose_secret();
        let target = match named {
            Some(var) => format!("the webhook alert to the URL in {var}"),
            None => format!("the webhook alert to {}", host_of(url)),
        };
        let failed = |reason: String| AlertError::Webhook {
            target: target.clone(),
            reason: reason.replace(url, "[URL]"),
        };
        let response = self
            .http
            .post(url)
            .json(&event.webhook_json())
            .send()
            .await
            .map_err(|e| failed(describe_http_error(e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(failed(format!("the server answered {status}")))
        }
    }
}

fn email_message(email: &EmailAlert, event: &AlertEvent) -> Result<Message, MessageError> {
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|_| MessageError::From(email.from.clone()))?;
    let mut builder = Message::builder().from(from).subject(event.subject());
    for to in &email.to {
        let mailbox: Mailbox = to.parse().map_err(|_| MessageError::To(to.clone()))?;
        builder = builder.to(mailbox);
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(event.body())
        .map_err(|e| MessageError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::process::Stdio;
    use std::time::Duration;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::sync::mpsc;

    use super::*;

    fn event(kind: AlertKind) -> AlertEvent {
        AlertEvent {
            kind,
            connector: "billing-mrr".into(),
            stream: "acme/mrr".into(),
            consecutive_failures: 10,
            last_error: "PostgreSQL at db:5432/billing refused the query: permission denied".into(),
            at: "2026-11-23T06:00:03Z".parse().unwrap(),
        }
    }

    fn alerter(vars: &[(&str, String)]) -> Alerter {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        Alerter::with_env(Arc::new(move |name| vars.get(name).cloned()))
    }

    fn webhook(url: Option<String>, url_env: Option<&str>) -> Alerts {
        Alerts {
            email: None,
            webhook: Some(WebhookAlert {
                url,
                url_env: url_env.map(str::to_owned),
            }),
        }
    }

    /// A webhook receiver on 127.0.0.1:0 answering `status`; bodies come out of the
    /// channel.
    async fn receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/hook",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let tx = tx.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/json");
                    tx.send(serde_json::from_str(&body).unwrap()).unwrap();
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), rx)
    }

    #[test]
    fn the_subject_says_what_happened_to_which_connector() {
        assert_eq!(
            event(AlertKind::Disabled).subject(),
            "kpistream: connector billing-mrr disabled after 10 failed runs"
        );
        assert_eq!(
            event(AlertKind::Recovered).subject(),
            "kpistream: connector billing-mrr recovered"
        );
        let body = event(AlertKind::Disabled).body();
        for part in [
            "billing-mrr",
            "acme/mrr",
            "10",
            "permission denied",
            "2026-11-23T06:00:03Z",
        ] {
            assert!(body.contains(part), "{part} missing from {body}");
        }
    }

    #[tokio::test]
    async fn a_webhook_receives_the_event_as_json() {
        let (url, mut bodies) = receiver(StatusCode::NO_CONTENT).await;
        let failures = alerter(&[])
            .notify(&webhook(Some(url), None), &event(AlertKind::Disabled))
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(
            bodies.recv().await.unwrap(),
            serde_json::json!({
                "event": "connector.disabled",
                "connector": "billing-mrr",
                "stream": "acme/mrr",
                "consecutive_failures": 10,
                "last_error": "PostgreSQL at db:5432/billing refused the query: permission denied",
                "at": "2026-11-23T06:00:03Z",
            })
        );
        let recovered = event(AlertKind::Recovered).webhook_json();
        assert_eq!(recovered["event"], "connector.recovered");
    }

    #[tokio::test]
    async fn a_webhook_answering_an_error_is_a_failure_that_never_shows_a_secret_url() {
        let (url, mut bodies) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
        let secret_url = format!("{url}?token=CANARY-webhook-token");
        let failures = alerter(&[("KPI_HOOK", secret_url)])
            .notify(
                &webhook(None, Some("KPI_HOOK")),
                &event(AlertKind::Disabled),
            )
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(
            failures,
            [
                "the webhook alert to the URL in KPI_HOOK was not sent: the server answered 500 Internal Server Error"
            ]
        );
        assert!(bodies.recv().await.is_some());

        // Nothing listens on port 1.
        let failures = alerter(&[])
            .notify(
                &webhook(
                    Some("http://127.0.0.1:1/hook?token=CANARY-webhook-token".into()),
                    None,
                ),
                &event(AlertKind::Disabled),
            )
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0]
                .starts_with("the webhook alert to 127.0.0.1:1 was not sent: cannot connect"),
            "{failures:?}"
        );
        assert!(!failures[0].contains("CANARY"), "{failures:?}");

        let failures = alerter(&[])
            .notify(
                &webhook(None, Some("KPI_HOOK_UNSET")),
                &event(AlertKind::Disabled),
            )
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(
            failures,
            [
                "the webhook alert was not sent: the environment variable KPI_HOOK_UNSET that alerts.webhook.url_env names is not set"
            ]
        );
    }

    /// tests/interop/smtp_sink.py listening on a free port, writing to a temporary file.
    struct SmtpSink {
        port: u16,
        out: std::path::PathBuf,
        _dir: tempfile::TempDir,
        _child: tokio::process::Child,
    }

    impl SmtpSink {
        /// `None` (having said why) when there is no Python to run it, outside CI.
        async fn start(user: &str, password: &str) -> Option<SmtpSink> {
            let Some(python) = std::env::var_os("KPISTREAM_PYTHON") else {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("KPISTREAM_PYTHON must be set under CI=true: scripts/test.sh sets it");
                }
                eprintln!(
                    "skipped: KPISTREAM_PYTHON is not set (run scripts/python-venv.sh and set it to .venv/bin/python)"
                );
                return None;
            };
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("messages.jsonl");
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/smtp_sink.py");
            let mut child = tokio::process::Command::new(python)
                .arg(script)
                .arg("--out")
                .arg(&out)
                .args(["--port", "0", "--user", user, "--password", password])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("smtp_sink.py starts");
            let stdout = child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("smtp_sink.py prints its port within 30 s")
                .unwrap()
                .expect("smtp_sink.py printed its port");
            Some(SmtpSink {
                port: first.trim().parse().unwrap(),
                out,
                _dir: dir,
                _child: child,
            })
        }

        fn messages(&self) -> Vec<serde_json::Value> {
            std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    fn email(starttls: bool) -> Alerts {
        Alerts {
            email: Some(EmailAlert {
                to: vec!["ops@example.com".into(), "finance@example.com".into()],
                from: "kpistream <kpistream@example.com>".into(),
                smtp_host_env: "KPI_SMTP_HOST".into(),
                smtp_port_env: "KPI_SMTP_PORT".into(),
                starttls,
                smtp_username_env: Some("KPI_SMTP_USER".into()),
                smtp_password_env: Some("KPI_SMTP_PASSWORD".into()),
            }),
            webhook: None,
        }
    }

    const SMTP_PASSWORD: &str = "CANARY-smtp-password";

    #[tokio::test]
    async fn an_email_alert_reaches_the_smtp_server_with_subject_and_body() {
        let Some(sink) = SmtpSink::start("alerts", SMTP_PASSWORD).await else {
            return;
        };
        let vars = [
            ("KPI_SMTP_HOST", "127.0.0.1".to_owned()),
            ("KPI_SMTP_PORT", sink.port.to_string()),
            ("KPI_SMTP_USER", "alerts".to_owned()),
            ("KPI_SMTP_PASSWORD", SMTP_PASSWORD.to_owned()),
        ];
        let failures = alerter(&vars)
            .notify(&email(false), &event(AlertKind::Disabled))
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert!(failures.is_empty(), "{failures:?}");
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message["mail_from"], "kpistream@example.com");
        assert_eq!(
            message["rcpt_tos"],
            serde_json::json!(["ops@example.com", "finance@example.com"])
        );
        assert_eq!(message["auth_user"], "alerts");
        // The body is quoted-printable: undo its soft line breaks.
        let data = message["data"].as_str().unwrap().replace("=\r\n", "");
        assert!(
            data.contains(
                "Subject: kpistream: connector billing-mrr disabled after 10 failed runs"
            ),
            "{data}"
        );
        assert!(data.contains("permission denied"), "{data}");
        assert!(data.contains("acme/mrr"), "{data}");

        // STARTTLS required, and this server does not offer it: not sent, and said so.
        let failures = alerter(&vars)
            .notify(&email(true), &event(AlertKind::Recovered))
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with(
                "the email alert to ops@example.com, finance@example.com was not sent"
            ),
            "{failures:?}"
        );
        assert!(!failures[0].contains(SMTP_PASSWORD), "{failures:?}");

        // A wrong password is refused by the server, and not repeated in the failure.
        let mut wrong = vars.clone();
        wrong[3].1 = "CANARY-wrong-password".into();
        let failures = alerter(&wrong)
            .notify(&email(false), &event(AlertKind::Recovered))
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(!failures[0].contains("CANARY"), "{failures:?}");
        assert_eq!(sink.messages().len(), 1);
    }

    #[tokio::test]
    async fn an_email_alert_without_its_smtp_host_names_the_missing_variable() {
        let failures = alerter(&[])
            .notify(&email(true), &event(AlertKind::Disabled))
            .await
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>();
        assert_eq!(
            failures,
            [
                "the email alert to ops@example.com, finance@example.com was not sent: the environment variable KPI_SMTP_HOST that alerts.email.smtp_host_env names is not set"
            ]
        );
    }
}
