//! What the server keeps to notify: webhooks, alert subscriptions, the outbox of
//! deliveries (which is also their log), the status each stream was last seen in, and
//! how far each webhook has sent each stream's points. Both backends run the same SQL
//! (`$n` parameters, integers and text only), so the implementation is written once, in
//! [`notify_store!`], and expanded for each.
//!
//! Every decision that writes deliveries is a compare-and-set on the state it read (the
//! stream's last seen status, the webhook's cursor), made in the transaction that writes
//! them: servers sharing a database never send one event twice.

use async_trait::async_trait;
use jiff::Timestamp;

use super::Result;
use crate::ids::{OrgId, StreamId, SubscriptionId, WebhookId};
use crate::notify::{
    AlertSubscription, Attempt, Delivery, DueDelivery, NewDelivery, NewWebhook, Scope, Webhook,
};

/// Rows the outbox's log lists at most in one page (the store answers one more, to
/// tell whether another page follows).
pub const MAX_DELIVERIES_LISTED: u32 = 1_000;

/// What a sender claims at once.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub lease_until: Timestamp,
    pub limit: u32,
    /// Deliveries of one target at most, so that a slow target cannot take every slot.
    pub per_target: u32,
    /// Whether this sender can send emails (has an SMTP server).
    pub emails: bool,
}

/// A stream's status as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenStatus {
    pub org: OrgId,
    pub stream: StreamId,
    pub status: String,
    pub changed_at: Timestamp,
}

#[async_trait]
pub trait NotifyStore: Send + Sync + 'static {
    async fn create_webhook(
        &self,
        org: &OrgId,
        hook: &NewWebhook,
        now: Timestamp,
    ) -> Result<Webhook>;
    async fn list_webhooks(&self, org: &OrgId) -> Result<Vec<Webhook>>;
    /// Every webhook of every organisation that is not disabled.
    async fn enabled_webhooks(&self) -> Result<Vec<(OrgId, Webhook)>>;
    /// Deletes the webhook with its deliveries and cursors.
    async fn delete_webhook(&self, org: &OrgId, id: &WebhookId) -> Result<()>;
    /// Enables (clearing the failure count) or disables the webhook; its pending
    /// deliveries wait while it is disabled.
    async fn set_webhook_enabled(
        &self,
        org: &OrgId,
        id: &WebhookId,
        enabled: bool,
        now: Timestamp,
    ) -> Result<Webhook>;

    async fn create_subscription(
        &self,
        org: &OrgId,
        id: &SubscriptionId,
        email: &str,
        scope: &Scope,
        now: Timestamp,
    ) -> Result<AlertSubscription>;
    async fn list_subscriptions(&self, org: &OrgId) -> Result<Vec<AlertSubscription>>;
    async fn delete_subscription(&self, org: &OrgId, id: &SubscriptionId) -> Result<()>;

    /// The status each stream was last seen in, by organisation and stream, and when
    /// it was recorded.
    async fn seen_statuses(&self) -> Result<Vec<SeenStatus>>;
    /// If the stream was last seen in `seen` (`None`: never), records `status` and writes
    /// `deliveries`, in one transaction; false (writing nothing) if another server
    /// recorded a change first.
    async fn record_status(
        &self,
        org: &OrgId,
        stream: &StreamId,
        seen: Option<&str>,
        status: &str,
        deliveries: &[NewDelivery],
        now: Timestamp,
    ) -> Result<bool>;

    /// How far `webhook` has sent each stream's points.
    async fn webhook_cursors(
        &self,
        org: &OrgId,
        webhook: &WebhookId,
    ) -> Result<Vec<(StreamId, Timestamp, String)>>;
    /// If the webhook's cursor on `stream` is still `from` (`None`: none yet), moves it
    /// to `to` and writes `deliveries`, in one transaction; false if it had moved.
    #[allow(clippy::too_many_arguments)]
    async fn advance_webhook_cursor(
        &self,
        org: &OrgId,
        webhook: &WebhookId,
        stream: &StreamId,
        from: Option<(Timestamp, &str)>,
        to: (Timestamp, &str),
        deliveries: &[NewDelivery],
        now: Timestamp,
    ) -> Result<bool>;

    /// Claims up to `claim.limit` deliveries due at `now` (whose webhook is not
    /// disabled), at most `claim.per_target` of one webhook or address, the oldest due
    /// first, and emails only when `claim.emails`: none is claimed again before
    /// `claim.lease_until`, by this server or another.
    async fn claim_deliveries(&self, now: Timestamp, claim: &Claim) -> Result<Vec<DueDelivery>>;
    /// Records an attempt of a delivery claimed until `lease` (an attempt whose claim
    /// was lost, and taken by another sender, records nothing). A webhook's failed
    /// attempt holds back its other due deliveries until the retry. A delivery given up
    /// counts against its webhook, which is disabled when `disable_after` (non-zero)
    /// deliveries in a row were given up; one delivered clears the count.
    #[allow(clippy::too_many_arguments)]
    async fn finish_delivery(
        &self,
        org: &OrgId,
        id: i64,
        lease: Timestamp,
        attempt: &Attempt,
        disable_after: u32,
        now: Timestamp,
    ) -> Result<()>;
    /// The newest `limit` deliveries older than `before` (all when `None`), newest
    /// first: of one webhook, of emails (`Some(None)`), or of every target (`None`).
    async fn list_deliveries(
        &self,
        org: &OrgId,
        webhook: Option<Option<&WebhookId>>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Delivery>>;
    /// Deletes finished deliveries created before `before`.
    async fn prune_deliveries(&self, before: Timestamp) -> Result<u64>;
}

/// Statements that follow a category's rename (`$1` the new name, `$2` the
/// organisation, `$3` the old name): webhooks and subscriptions keep their category.
pub(crate) const RENAME_CATEGORY_SCOPES: [&str; 2] = [
    "UPDATE webhooks SET category = $1 WHERE org_id = $2 AND lower(category) = lower($3)",
    "UPDATE alert_subscriptions SET category = $1 WHERE org_id = $2 AND lower(category) = lower($3)",
];

/// The columns of `webhooks` read into a [`Webhook`].
pub(crate) const WEBHOOK_COLUMNS: &str = "id, url, stream_id, category, events, created_at, \
     failures, disabled_at, disabled_reason";
/// The columns of `deliveries` read into a [`Delivery`].
pub(crate) const DELIVERY_COLUMNS: &str = "id, org_id, event_id, event, webhook_id, email, \
     stream_id, payload, created_at, attempts, next_attempt_at, last_attempt_at, last_status, \
     last_error, delivered_at, gave_up_at";

/// Implements [`NotifyStore`] for a store with a read pool `$pool` and an async
/// `write()` that begins a write transaction.
macro_rules! notify_store {
    ($store:ty, $row:ty) => {
        mod notify_rows {
            use sqlx::Row;

            use crate::ids::{OrgId, StreamId, SubscriptionId, WebhookId};
            use crate::notify::{
                AlertSubscription, Delivery, Scope, Target, Webhook, parse_events_column,
            };
            use crate::store::shared::opt_micros;
            use crate::store::{Result, StoreError, corrupt, from_micros};

            fn scope(row: &$row) -> Result<Scope> {
                let (stream, category) = (row.try_get("stream_id")?, row.try_get("category")?);
                Scope::from_columns(stream, category)
                    .ok_or_else(|| StoreError::Corrupt("a notification scope".into()))
            }

            fn count(row: &$row, column: &str) -> Result<u32> {
                u32::try_from(row.try_get::<i64, _>(column)?).map_err(corrupt)
            }

            pub(super) fn webhook(row: &$row) -> Result<Webhook> {
                Ok(Webhook {
                    id: WebhookId::parse(row.try_get("id")?).map_err(corrupt)?,
                    url: row.try_get("url")?,
                    scope: scope(row)?,
                    events: parse_events_column(row.try_get("events")?).map_err(corrupt)?,
                    created_at: from_micros(row.try_get("created_at")?)?,
                    failures: count(row, "failures")?,
                    disabled_at: opt_micros(row.try_get("disabled_at")?)?,
                    disabled_reason: row.try_get("disabled_reason")?,
                })
            }

            pub(super) fn subscription(row: &$row) -> Result<AlertSubscription> {
                Ok(AlertSubscription {
                    id: SubscriptionId::parse(row.try_get("id")?).map_err(corrupt)?,
                    email: row.try_get("email")?,
                    scope: scope(row)?,
                    created_at: from_micros(row.try_get("created_at")?)?,
                })
            }

            pub(super) fn delivery(row: &$row) -> Result<(OrgId, Delivery)> {
                let webhook: Option<String> = row.try_get("webhook_id")?;
                let email: Option<String> = row.try_get("email")?;
                let target = match (webhook, email) {
                    (Some(id), _) => Target::Webhook(WebhookId::parse(&id).map_err(corrupt)?),
                    (None, Some(email)) => Target::Email(email),
                    (None, None) => return Err(StoreError::Corrupt("a delivery's target".into())),
                };
                let stream: Option<String> = row.try_get("stream_id")?;
                let status: Option<i64> = row.try_get("last_status")?;
                let delivery = Delivery {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    event: row.try_get::<String, _>("event")?.parse().map_err(corrupt)?,
                    target,
                    stream: stream.map(|s| StreamId::parse(&s)).transpose().map_err(corrupt)?,
                    payload: row.try_get("payload")?,
                    created_at: from_micros(row.try_get("created_at")?)?,
                    attempts: count(row, "attempts")?,
                    next_attempt_at: opt_micros(row.try_get("next_attempt_at")?)?,
                    last_attempt_at: opt_micros(row.try_get("last_attempt_at")?)?,
                    last_status: status.and_then(|s| u16::try_from(s).ok()),
                    last_error: row.try_get("last_error")?,
                    delivered_at: opt_micros(row.try_get("delivered_at")?)?,
                    gave_up_at: opt_micros(row.try_get("gave_up_at")?)?,
                };
                Ok((OrgId::parse(row.try_get("org_id")?).map_err(corrupt)?, delivery))
            }
        }

        #[async_trait::async_trait]
        impl crate::store::notify::NotifyStore for $store {
            async fn create_webhook(
                &self,
                org: &crate::ids::OrgId,
                hook: &crate::notify::NewWebhook,
                now: jiff::Timestamp,
            ) -> crate::store::Result<crate::notify::Webhook> {
                use secrecy::ExposeSecret;
                let (stream, category) = hook.scope.columns();
                let sql = format!(
                    "INSERT INTO webhooks (org_id, id, url, secret, stream_id, category, events, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {}",
                    crate::store::notify::WEBHOOK_COLUMNS
                );
                let mut tx = self.write().await?;
                let row = sqlx::query(&sql)
                    .bind(org.as_str())
                    .bind(hook.id.as_str())
                    .bind(&hook.url)
                    .bind(hook.secret.expose_secret())
                    .bind(stream)
                    .bind(category)
                    .bind(crate::notify::events_column(&hook.events))
                    .bind(crate::store::to_micros(now))
                    .fetch_one(&mut *tx)
                    .await?;
                let webhook = notify_rows::webhook(&row)?;
                tx.commit().await?;
                Ok(webhook)
            }

            async fn list_webhooks(
                &self,
                org: &crate::ids::OrgId,
            ) -> crate::store::Result<Vec<crate::notify::Webhook>> {
                let sql = format!(
                    "SELECT {} FROM webhooks WHERE org_id = $1 ORDER BY created_at, id",
                    crate::store::notify::WEBHOOK_COLUMNS
                );
                let rows = sqlx::query(&sql).bind(org.as_str()).fetch_all(&self.pool).await?;
                rows.iter().map(notify_rows::webhook).collect()
            }

            async fn enabled_webhooks(
                &self,
            ) -> crate::store::Result<Vec<(crate::ids::OrgId, crate::notify::Webhook)>> {
                let sql = format!(
                    "SELECT org_id, {} FROM webhooks WHERE disabled_at IS NULL ORDER BY org_id, id",
                    crate::store::notify::WEBHOOK_COLUMNS
                );
                let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        use sqlx::Row;
                        let org = crate::ids::OrgId::parse(row.try_get("org_id")?)
                            .map_err(crate::store::corrupt)?;
                        Ok((org, notify_rows::webhook(row)?))
                    })
                    .collect()
            }

            async fn delete_webhook(
                &self,
                org: &crate::ids::OrgId,
                id: &crate::ids::WebhookId,
            ) -> crate::store::Result<()> {
                let mut tx = self.write().await?;
                let deleted = sqlx::query("DELETE FROM webhooks WHERE org_id = $1 AND id = $2")
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    return Err(crate::store::StoreError::NotFound(format!("webhook {id}")));
                }
                // Its deliveries and cursors go with it (foreign keys).
                tx.commit().await?;
                Ok(())
            }

            async fn set_webhook_enabled(
                &self,
                org: &crate::ids::OrgId,
                id: &crate::ids::WebhookId,
                enabled: bool,
                now: jiff::Timestamp,
            ) -> crate::store::Result<crate::notify::Webhook> {
                let sql = if enabled {
                    format!(
                        "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL, failures = 0 \
                         WHERE org_id = $1 AND id = $2 RETURNING {}",
                        crate::store::notify::WEBHOOK_COLUMNS
                    )
                } else {
                    format!(
                        "UPDATE webhooks SET disabled_at = COALESCE(disabled_at, $3), \
                         disabled_reason = COALESCE(disabled_reason, 'disabled by an admin') \
                         WHERE org_id = $1 AND id = $2 RETURNING {}",
                        crate::store::notify::WEBHOOK_COLUMNS
                    )
                };
                let mut tx = self.write().await?;
                let mut query = sqlx::query(&sql).bind(org.as_str()).bind(id.as_str());
                if !enabled {
                    query = query.bind(crate::store::to_micros(now));
                }
                let row = query
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| crate::store::StoreError::NotFound(format!("webhook {id}")))?;
                let webhook = notify_rows::webhook(&row)?;
                tx.commit().await?;
                Ok(webhook)
            }

            async fn create_subscription(
                &self,
                org: &crate::ids::OrgId,
                id: &crate::ids::SubscriptionId,
                email: &str,
                scope: &crate::notify::Scope,
                now: jiff::Timestamp,
            ) -> crate::store::Result<crate::notify::AlertSubscription> {
                let (stream, category) = scope.columns();
                let mut tx = self.write().await?;
                let row = sqlx::query(
                    "INSERT INTO alert_subscriptions (org_id, id, email, stream_id, category, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, email, stream_id, category, created_at",
                )
                .bind(org.as_str())
                .bind(id.as_str())
                .bind(email)
                .bind(stream)
                .bind(category)
                .bind(crate::store::to_micros(now))
                .fetch_one(&mut *tx)
                .await?;
                let subscription = notify_rows::subscription(&row)?;
                tx.commit().await?;
                Ok(subscription)
            }

            async fn list_subscriptions(
                &self,
                org: &crate::ids::OrgId,
            ) -> crate::store::Result<Vec<crate::notify::AlertSubscription>> {
                let rows = sqlx::query(
                    "SELECT id, email, stream_id, category, created_at FROM alert_subscriptions \
                     WHERE org_id = $1 ORDER BY created_at, id",
                )
                .bind(org.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(notify_rows::subscription).collect()
            }

            async fn delete_subscription(
                &self,
                org: &crate::ids::OrgId,
                id: &crate::ids::SubscriptionId,
            ) -> crate::store::Result<()> {
                let mut tx = self.write().await?;
                let deleted =
                    sqlx::query("DELETE FROM alert_subscriptions WHERE org_id = $1 AND id = $2")
                        .bind(org.as_str())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if deleted == 0 {
                    return Err(crate::store::StoreError::NotFound(format!(
                        "alert subscription {id}"
                    )));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn seen_statuses(
                &self,
            ) -> crate::store::Result<Vec<crate::store::notify::SeenStatus>> {
                use sqlx::Row;
                let rows =
                    sqlx::query("SELECT org_id, stream_id, status, changed_at FROM stream_alerts")
                        .fetch_all(&self.pool)
                        .await?;
                rows.iter()
                    .map(|row| {
                        Ok(crate::store::notify::SeenStatus {
                            org: crate::ids::OrgId::parse(row.try_get("org_id")?)
                                .map_err(crate::store::corrupt)?,
                            stream: crate::ids::StreamId::parse(row.try_get("stream_id")?)
                                .map_err(crate::store::corrupt)?,
                            status: row.try_get("status")?,
                            changed_at: crate::store::from_micros(row.try_get("changed_at")?)?,
                        })
                    })
                    .collect()
            }

            async fn record_status(
                &self,
                org: &crate::ids::OrgId,
                stream: &crate::ids::StreamId,
                seen: Option<&str>,
                status: &str,
                deliveries: &[crate::notify::NewDelivery],
                now: jiff::Timestamp,
            ) -> crate::store::Result<bool> {
                let mut tx = self.write().await?;
                let query = match seen {
                    None => sqlx::query(
                        "INSERT INTO stream_alerts (org_id, stream_id, status, changed_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, stream_id) DO NOTHING",
                    ),
                    Some(_) => sqlx::query(
                        "UPDATE stream_alerts SET status = $3, changed_at = $4 \
                         WHERE org_id = $1 AND stream_id = $2 AND status = $5",
                    ),
                };
                let mut query = query
                    .bind(org.as_str())
                    .bind(stream.as_str())
                    .bind(status)
                    .bind(crate::store::to_micros(now));
                if let Some(seen) = seen {
                    query = query.bind(seen);
                }
                crate::store::notify::deliver_if_changed!(tx, query, org, deliveries, now)
            }

            async fn webhook_cursors(
                &self,
                org: &crate::ids::OrgId,
                webhook: &crate::ids::WebhookId,
            ) -> crate::store::Result<Vec<(crate::ids::StreamId, jiff::Timestamp, String)>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT stream_id, updated_at, period FROM webhook_cursors \
                     WHERE org_id = $1 AND webhook_id = $2",
                )
                .bind(org.as_str())
                .bind(webhook.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            crate::ids::StreamId::parse(row.try_get("stream_id")?)
                                .map_err(crate::store::corrupt)?,
                            crate::store::from_micros(row.try_get("updated_at")?)?,
                            row.try_get("period")?,
                        ))
                    })
                    .collect()
            }

            async fn advance_webhook_cursor(
                &self,
                org: &crate::ids::OrgId,
                webhook: &crate::ids::WebhookId,
                stream: &crate::ids::StreamId,
                from: Option<(jiff::Timestamp, &str)>,
                to: (jiff::Timestamp, &str),
                deliveries: &[crate::notify::NewDelivery],
                now: jiff::Timestamp,
            ) -> crate::store::Result<bool> {
                let mut tx = self.write().await?;
                let query = match from {
                    None => sqlx::query(
                        "INSERT INTO webhook_cursors (org_id, webhook_id, stream_id, updated_at, period) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, webhook_id, stream_id) DO NOTHING",
                    ),
                    Some(_) => sqlx::query(
                        "UPDATE webhook_cursors SET updated_at = $4, period = $5 \
                         WHERE org_id = $1 AND webhook_id = $2 AND stream_id = $3 \
                           AND updated_at = $6 AND period = $7",
                    ),
                };
                let mut query = query
                    .bind(org.as_str())
                    .bind(webhook.as_str())
                    .bind(stream.as_str())
                    .bind(crate::store::to_micros(to.0))
                    .bind(to.1);
                if let Some((at, period)) = from {
                    query = query.bind(crate::store::to_micros(at)).bind(period);
                }
                crate::store::notify::deliver_if_changed!(tx, query, org, deliveries, now)
            }

            async fn claim_deliveries(
                &self,
                now: jiff::Timestamp,
                claim: &crate::store::notify::Claim,
            ) -> crate::store::Result<Vec<crate::notify::DueDelivery>> {
                use sqlx::Row;
                let sql = format!(
                    "UPDATE deliveries SET next_attempt_at = $2 WHERE id IN ( \
                       SELECT id FROM ( \
                         SELECT d.id, d.next_attempt_at, ROW_NUMBER() OVER ( \
                           PARTITION BY d.org_id, d.webhook_id, d.email \
                           ORDER BY d.next_attempt_at, d.id) AS n \
                         FROM deliveries d WHERE d.next_attempt_at <= $1 \
                           AND (d.webhook_id IS NOT NULL OR $5 = 1) \
                           AND (d.webhook_id IS NULL OR EXISTS (SELECT 1 FROM webhooks w \
                                WHERE w.org_id = d.org_id AND w.id = d.webhook_id \
                                  AND w.disabled_at IS NULL))) due \
                       WHERE due.n <= $4 ORDER BY due.next_attempt_at, due.id LIMIT $3) \
                     AND next_attempt_at <= $1 RETURNING {}",
                    crate::store::notify::DELIVERY_COLUMNS
                );
                // Most rounds find nothing due: a read tells, without taking the write
                // lock the publish path needs.
                let due_any: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM deliveries WHERE next_attempt_at <= $1 LIMIT 1",
                )
                .bind(crate::store::to_micros(now))
                .fetch_optional(&self.pool)
                .await?;
                if due_any.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.write().await?;
                let rows = sqlx::query(&sql)
                    .bind(crate::store::to_micros(now))
                    .bind(crate::store::to_micros(claim.lease_until))
                    .bind(i64::from(claim.limit))
                    .bind(i64::from(claim.per_target))
                    .bind(i64::from(claim.emails))
                    .fetch_all(&mut *tx)
                    .await?;
                let mut due = Vec::with_capacity(rows.len());
                for row in &rows {
                    let (org, delivery) = notify_rows::delivery(row)?;
                    let webhook = match &delivery.target {
                        crate::notify::Target::Webhook(id) => {
                            let row = sqlx::query(
                                "SELECT url, secret FROM webhooks WHERE org_id = $1 AND id = $2",
                            )
                            .bind(org.as_str())
                            .bind(id.as_str())
                            .fetch_one(&mut *tx)
                            .await?;
                            let secret: String = row.try_get("secret")?;
                            Some((row.try_get("url")?, secrecy::SecretString::from(secret)))
                        }
                        crate::notify::Target::Email(_) => None,
                    };
                    due.push(crate::notify::DueDelivery {
                        org,
                        delivery,
                        webhook,
                        lease: claim.lease_until,
                    });
                }
                tx.commit().await?;
                Ok(due)
            }

            async fn finish_delivery(
                &self,
                org: &crate::ids::OrgId,
                id: i64,
                lease: jiff::Timestamp,
                attempt: &crate::notify::Attempt,
                disable_after: u32,
                now: jiff::Timestamp,
            ) -> crate::store::Result<()> {
                use sqlx::Row;
                let now_us = crate::store::to_micros(now);
                let delivered = attempt.error.is_none();
                let gave_up = !delivered && attempt.retry_at.is_none();
                let mut tx = self.write().await?;
                let row = sqlx::query(
                    "UPDATE deliveries SET attempts = attempts + 1, last_attempt_at = $3, \
                       last_status = $4, last_error = $5, next_attempt_at = $6, \
                       delivered_at = $7, gave_up_at = $8 \
                     WHERE org_id = $1 AND id = $2 AND next_attempt_at = $9 RETURNING webhook_id",
                )
                .bind(org.as_str())
                .bind(id)
                .bind(now_us)
                .bind(attempt.status.map(i64::from))
                .bind(attempt.error.as_deref())
                .bind(attempt.retry_at.filter(|_| !delivered).map(crate::store::to_micros))
                .bind(delivered.then_some(now_us))
                .bind(gave_up.then_some(now_us))
                .bind(crate::store::to_micros(lease))
                .fetch_optional(&mut *tx)
                .await?;
                // A delivery deleted meanwhile (its webhook was), or whose claim ran out
                // and was taken by another sender, has nothing to record.
                let webhook: Option<String> = match row {
                    Some(row) => row.try_get("webhook_id")?,
                    None => None,
                };
                if let Some(webhook) = webhook {
                    if let Some(retry_at) = attempt.retry_at.filter(|_| !delivered) {
                        // The webhook's other due deliveries wait with this one: a
                        // target that is down costs one attempt per retry, not one each.
                        sqlx::query(
                            "UPDATE deliveries SET next_attempt_at = $3 \
                             WHERE org_id = $1 AND webhook_id = $2 AND next_attempt_at <= $4",
                        )
                        .bind(org.as_str())
                        .bind(&webhook)
                        .bind(crate::store::to_micros(retry_at))
                        .bind(now_us)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if delivered {
                        sqlx::query("UPDATE webhooks SET failures = 0 WHERE org_id = $1 AND id = $2")
                            .bind(org.as_str())
                            .bind(&webhook)
                            .execute(&mut *tx)
                            .await?;
                    } else if gave_up {
                        sqlx::query(
                            "UPDATE webhooks SET failures = failures + 1 WHERE org_id = $1 AND id = $2",
                        )
                        .bind(org.as_str())
                        .bind(&webhook)
                        .execute(&mut *tx)
                        .await?;
                        if disable_after > 0 {
                            sqlx::query(
                                "UPDATE webhooks SET disabled_at = $3, disabled_reason = $4 \
                                 WHERE org_id = $1 AND id = $2 AND failures >= $5 AND disabled_at IS NULL",
                            )
                            .bind(org.as_str())
                            .bind(&webhook)
                            .bind(now_us)
                            .bind(match disable_after {
                                1 => "a delivery was given up".to_owned(),
                                n => format!("{n} deliveries in a row were given up"),
                            })
                            .bind(i64::from(disable_after))
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_deliveries(
                &self,
                org: &crate::ids::OrgId,
                webhook: Option<Option<&crate::ids::WebhookId>>,
                limit: u32,
                before: Option<i64>,
            ) -> crate::store::Result<Vec<crate::notify::Delivery>> {
                let target = match webhook {
                    None => "",
                    Some(None) => " AND webhook_id IS NULL",
                    Some(Some(_)) => " AND webhook_id = $4",
                };
                let sql = format!(
                    "SELECT {} FROM deliveries WHERE org_id = $1 AND id < $2{target} \
                     ORDER BY id DESC LIMIT $3",
                    crate::store::notify::DELIVERY_COLUMNS
                );
                let mut query = sqlx::query(&sql)
                    .bind(org.as_str())
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(
                        limit.min(crate::store::notify::MAX_DELIVERIES_LISTED + 1),
                    ));
                if let Some(Some(id)) = webhook {
                    query = query.bind(id.as_str());
                }
                let rows = query.fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| notify_rows::delivery(row).map(|(_, d)| d))
                    .collect()
            }

            async fn prune_deliveries(&self, before: jiff::Timestamp) -> crate::store::Result<u64> {
                let mut tx = self.write().await?;
                let pruned = sqlx::query(
                    "DELETE FROM deliveries WHERE created_at < $1 AND next_attempt_at IS NULL",
                )
                .bind(crate::store::to_micros(before))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(pruned)
            }
        }
    };
}

/// Writes `deliveries` of organisation `org` into the outbox within a transaction,
/// each due at once.
macro_rules! insert_deliveries {
    ($tx:expr, $org:expr, $deliveries:expr, $now:expr) => {
        for delivery in $deliveries {
            let (webhook, email) = match &delivery.target {
                crate::notify::Target::Webhook(id) => (Some(id.as_str()), None),
                crate::notify::Target::Email(email) => (None, Some(email.as_str())),
            };
            sqlx::query(
                "INSERT INTO deliveries (org_id, event_id, event, webhook_id, email, stream_id, \
                   payload, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind($org.as_str())
            .bind(&delivery.event_id)
            .bind(delivery.event.as_str())
            .bind(webhook)
            .bind(email)
            .bind(delivery.stream.as_ref().map(|s| s.as_str()))
            .bind(&delivery.payload)
            .bind(crate::store::to_micros($now))
            .execute($tx)
            .await?;
        }
    };
}

/// Runs the compare-and-set `query` in `tx`; when it changed a row, writes
/// `deliveries` and commits, answering whether it did.
macro_rules! deliver_if_changed {
    ($tx:ident, $query:expr, $org:expr, $deliveries:expr, $now:expr) => {{
        if $query.execute(&mut *$tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        crate::store::notify::insert_deliveries!(&mut *$tx, $org, $deliveries, $now);
        $tx.commit().await?;
        Ok(true)
    }};
}

pub(crate) use {deliver_if_changed, insert_deliveries, notify_store};
