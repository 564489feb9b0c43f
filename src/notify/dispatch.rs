//! The server's notifier: one task that checks freshness on its interval, scans for
//! point events and sends the deliveries that are due, every second. A failure of the
//! database is logged and reported to `/healthz`, and the next round tries again.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::{SignedDuration, Timestamp};
use lettre::Message;
use lettre::message::header::ContentType;

use super::event::{EventDoc, email_text};
use super::outbound::{SmtpServer, describe_http_error, host_of, http_client};
use super::settings::AlertSettings;
use super::sign::{SIGNATURE_HEADER, signature};
use super::{Attempt, DueDelivery, Target};
use crate::store::notify::Claim;
use crate::store::{Store, WriteHealth};

/// How often due deliveries are looked for and point events scanned.
const TICK: Duration = Duration::from_secs(1);
/// Deliveries claimed and sent at once: a round claims no more than it sends together,
/// so each claim's lease covers one attempt.
const CONCURRENT: u32 = 8;
/// Deliveries of one target in one round at most: a slow target takes two of the
/// round's slots, never all of them.
const PER_TARGET: u32 = 2;
/// A claimed delivery is not claimed again before this: longer than an attempt takes
/// (a webhook answers within 10 s; an SMTP exchange has 10 s per step).
const LEASE: SignedDuration = SignedDuration::from_secs(300);

/// Sends deliveries: webhooks over HTTP, emails through the configured SMTP server.
pub struct Sender {
    http: reqwest::Client,
    smtp: Option<(SmtpServer, lettre::message::Mailbox)>,
}

impl Sender {
    pub fn new(settings: &AlertSettings) -> anyhow::Result<Self> {
        let smtp = match &settings.smtp {
            Some(smtp) => Some((smtp.server()?, smtp.mailbox()?)),
            None => None,
        };
        Ok(Self {
            http: http_client(),
            smtp,
        })
    }

    /// Whether it sends emails (an SMTP server is configured).
    pub fn sends_email(&self) -> bool {
        self.smtp.is_some()
    }

    /// One attempt: `Ok(status)` when the target took it, else the HTTP status (if any)
    /// and a sentence without secrets.
    async fn attempt(&self, due: &DueDelivery) -> Result<Option<u16>, (Option<u16>, String)> {
        match (&due.delivery.target, &due.webhook) {
            (Target::Webhook(_), Some((url, secret))) => {
                let body = due.delivery.payload.as_bytes().to_vec();
                let header = signature(secret, Timestamp::now().as_second(), &body);
                let sent = self
                    .http
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, header)
                    .header("kpistream-event", due.delivery.event.as_str())
                    .header("kpistream-event-id", &due.delivery.event_id)
                    .body(body)
                    .send()
                    .await;
                let response = sent.map_err(|e| {
                    (
                        None,
                        format!("{}: {}", host_of(url), describe_http_error(e))
                            .replace(url, "[URL]"),
                    )
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(Some(status.as_u16()))
                } else {
                    Err((
                        Some(status.as_u16()),
                        format!("{} answered {status}", host_of(url)),
                    ))
                }
            }
            (Target::Email(to), _) => {
                let Some((server, from)) = &self.smtp else {
                    return Err((
                        None,
                        "the server has no SMTP server for alert emails (alerts.smtp)".into(),
                    ));
                };
                let message = email(&due.delivery.payload, from.clone(), to)?;
                server
                    .send(message)
                    .await
                    .map(|()| None)
                    .map_err(|e| (None, e))
            }
            (Target::Webhook(id), None) => Err((None, format!("webhook {id} is gone"))),
        }
    }
}

fn email(
    payload: &str,
    from: lettre::message::Mailbox,
    to: &str,
) -> Result<Message, (Option<u16>, String)> {
    let doc: EventDoc = serde_json::from_str(payload)
        .map_err(|e| (None, format!("the event cannot be read: {e}")))?;
    let (subject, body) =
        email_text(&doc).map_err(|e| (None, format!("the event cannot be read: {e}")))?;
    let to = to
        .parse()
        .map_err(|_| (None, format!("{to:?} is not an email address")))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| (None, format!("the message cannot be built: {e}")))
}

/// Sends what is due now; returns how many deliveries were attempted.
pub async fn send_due(
    store: &dyn Store,
    sender: &Sender,
    settings: &AlertSettings,
) -> crate::store::Result<usize> {
    let now = Timestamp::now();
    let claim = Claim {
        lease_until: now.checked_add(LEASE).unwrap_or(now),
        limit: CONCURRENT,
        per_target: PER_TARGET,
        emails: sender.sends_email(),
    };
    let due = store.claim_deliveries(now, &claim).await?;
    let count = due.len();
    let results: Vec<crate::store::Result<()>> = futures::stream::iter(due)
        .map(|due| async move {
            let result = sender.attempt(&due).await;
            let now = Timestamp::now();
            let attempts = due.delivery.attempts + 1;
            let attempt = match result {
                Ok(status) => Attempt {
                    status,
                    error: None,
                    retry_at: None,
                },
                Err((status, error)) => {
                    let retry_at = settings.retry_at(attempts, now);
                    tracing::warn!(
                        delivery = due.delivery.id,
                        event = due.delivery.event.as_str(),
                        attempts,
                        retry_at = ?retry_at.map(|t| t.to_string()),
                        %error,
                        "a notification was not delivered"
                    );
                    Attempt {
                        status,
                        error: Some(error),
                        retry_at,
                    }
                }
            };
            store
                .finish_delivery(
                    &due.org,
                    due.delivery.id,
                    due.lease,
                    &attempt,
                    settings.disable_after,
                    now,
                )
                .await
        })
        .buffer_unordered(CONCURRENT as usize)
        .collect()
        .await;
    results.into_iter().collect::<crate::store::Result<()>>()?;
    Ok(count)
}

/// Runs until the task is aborted. A round that panics (a bug) is logged and the next
/// one runs: notifications never stop silently.
pub async fn run(
    store: Arc<dyn Store>,
    settings: AlertSettings,
    sender: Sender,
    health: Arc<WriteHealth>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_check = tokio::time::Instant::now();
    let mut next_prune = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let round = round(
            store.as_ref(),
            &settings,
            &sender,
            &health,
            &mut next_check,
            &mut next_prune,
        );
        if let Err(panic) = std::panic::AssertUnwindSafe(round).catch_unwind().await {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            tracing::error!(
                panic = what,
                "a round of notifications failed; the next one runs in a second"
            );
        }
    }
}

/// One round: the freshness check and the pruning when due, the point scan, and the
/// deliveries that are due (claim after claim while each comes back full).
async fn round(
    store: &dyn Store,
    settings: &AlertSettings,
    sender: &Sender,
    health: &WriteHealth,
    next_check: &mut tokio::time::Instant,
    next_prune: &mut tokio::time::Instant,
) {
    let now = tokio::time::Instant::now();
    let mut results: Vec<(&str, crate::store::Result<usize>)> = Vec::new();
    if now >= *next_check {
        *next_check = now + settings.check_interval();
        let checked = super::freshness::check(store, Timestamp::now()).await;
        results.push(("check stream freshness", checked));
    }
    if now >= *next_prune {
        *next_prune = now + Duration::from_secs(3600);
        let before = Timestamp::now()
            .checked_sub(settings.delivery_log())
            .unwrap_or(Timestamp::MIN);
        let pruned = store.prune_deliveries(before).await.map(|n| n as usize);
        results.push(("prune the delivery log", pruned));
    }
    let scanned = super::points::scan(store, Timestamp::now()).await;
    results.push(("scan for point events", scanned));
    // Claim after claim while each comes back full, within the tick.
    let started = tokio::time::Instant::now();
    loop {
        match send_due(store, sender, settings).await {
            Ok(n) if n == CONCURRENT as usize && started.elapsed() < TICK * 10 => continue,
            Ok(n) => results.push(("send notifications", Ok(n))),
            Err(e) => results.push(("send notifications", Err(e))),
        }
        break;
    }
    for (what, result) in results {
        if let Err(e) = result {
            health.failed(&e);
            tracing::warn!(error = %e, "could not {what}; trying again in a moment");
        }
    }
}
