//! The notification half of `kpistream.v1.StreamAdmin`: webhooks, their delivery log,
//! and alert email subscriptions. Org admins only. Rules: `docs/notifications.md`.

use secrecy::ExposeSecret;
use tonic::Request;

use super::admin::AdminService;
use super::{ApiError, paging};
use crate::ids::{OrgId, StreamId, SubscriptionId, WebhookId};
use crate::notify::sign::generate_secret;
use crate::notify::{AlertSubscription, Delivery, EventKind, NewWebhook, Scope, Target, Webhook};
use crate::proto;
use crate::store::StoreError;
use crate::store::notify::MAX_DELIVERIES_LISTED;
use crate::text::{check_len, excerpt};
use crate::wire;

/// Longest webhook URL.
const MAX_URL_CHARS: usize = 2_048;
/// Longest email address (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// Deliveries one page of the log holds by default.
const DEFAULT_DELIVERIES: u32 = 100;
/// Webhooks one organisation may have: every event fans out to each.
const MAX_WEBHOOKS: usize = 100;
/// Alert subscriptions one organisation may have.
const MAX_SUBSCRIPTIONS: usize = 1_000;

fn webhook(w: &Webhook) -> proto::Webhook {
    let (stream_id, category) = w.scope.columns();
    proto::Webhook {
        id: w.id.to_string(),
        url: w.url.clone(),
        stream_id: stream_id.unwrap_or_default().to_owned(),
        category: category.unwrap_or_default().to_owned(),
        events: w.events.iter().map(|e| e.as_str().to_owned()).collect(),
        created_at: Some(wire::timestamp(w.created_at)),
        failures: w.failures,
        disabled_at: wire::opt_timestamp(w.disabled_at),
        disabled_reason: w.disabled_reason.clone().unwrap_or_default(),
    }
}

fn subscription(s: &AlertSubscription) -> proto::AlertSubscription {
    let (stream_id, category) = s.scope.columns();
    proto::AlertSubscription {
        id: s.id.to_string(),
        email: s.email.clone(),
        stream_id: stream_id.unwrap_or_default().to_owned(),
        category: category.unwrap_or_default().to_owned(),
        created_at: Some(wire::timestamp(s.created_at)),
    }
}

fn delivery(d: Delivery) -> proto::Delivery {
    let state = d.state().as_str().to_owned();
    let (webhook_id, email) = match d.target {
        Target::Webhook(id) => (id.to_string(), String::new()),
        Target::Email(email) => (String::new(), email),
    };
    proto::Delivery {
        id: d.id,
        event_id: d.event_id,
        event: d.event.as_str().to_owned(),
        webhook_id,
        email,
        stream_id: d.stream.map(|s| s.to_string()).unwrap_or_default(),
        created_at: Some(wire::timestamp(d.created_at)),
        attempts: d.attempts,
        state,
        next_attempt_at: wire::opt_timestamp(d.next_attempt_at),
        last_attempt_at: wire::opt_timestamp(d.last_attempt_at),
        last_status: d.last_status.map(u32::from).unwrap_or_default(),
        last_error: d.last_error.unwrap_or_default(),
        delivered_at: wire::opt_timestamp(d.delivered_at),
        gave_up_at: wire::opt_timestamp(d.gave_up_at),
        payload: d.payload,
    }
}

/// Checks a webhook URL: http or https, with a host, no longer than the limit.
fn check_url(url: &str) -> Result<String, ApiError> {
    check_len("url", url, MAX_URL_CHARS)?;
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| ApiError::Invalid(format!("the webhook URL does not parse: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::Invalid(
            "a webhook URL must be http:// or https:// with a host".into(),
        ));
    }
    // Kept as parsed: what is sent to is what the host shown in messages is taken from.
    Ok(parsed.into())
}

fn check_events(names: &[String]) -> Result<Vec<EventKind>, ApiError> {
    if names.is_empty() {
        return Ok(EventKind::ALL.to_vec());
    }
    let mut events = names
        .iter()
        .map(|name| name.parse::<EventKind>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    events.sort();
    events.dedup();
    Ok(events)
}

impl AdminService {
    /// The scope a request names, checked against the organisation's streams and
    /// categories (a category is kept under its own spelling).
    async fn scope(&self, org: &OrgId, stream_id: &str, category: &str) -> Result<Scope, ApiError> {
        match (stream_id.trim(), category.trim()) {
            ("", "") => Ok(Scope::Org),
            (id, "") => {
                let id = StreamId::parse(id)?;
                self.state.store.get_stream(org, &id).await?;
                Ok(Scope::Stream(id))
            }
            ("", name) => {
                check_len("category", name, crate::text::MAX_NAME_CHARS)?;
                let categories = self.state.store.list_categories(org).await?;
                categories
                    .into_iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name))
                    .map(|c| Scope::Category(c.name))
                    .ok_or_else(|| {
                        ApiError::Store(StoreError::NotFound(format!("category {}", excerpt(name))))
                    })
            }
            _ => Err(ApiError::Invalid(
                "give a stream or a category, not both (neither: every stream)".into(),
            )),
        }
    }

    pub(super) async fn do_create_webhook(
        &self,
        request: Request<proto::CreateWebhookRequest>,
    ) -> Result<proto::CreateWebhookResponse, ApiError> {
        let who = self.state.admin(&request, "manage webhooks").await?;
        let r = request.into_inner();
        let url = check_url(&r.url)?;
        let events = check_events(&r.events)?;
        let scope = self.scope(&who.org_id, &r.stream_id, &r.category).await?;
        if self.state.store.list_webhooks(&who.org_id).await?.len() >= MAX_WEBHOOKS {
            return Err(StoreError::Conflict(format!(
                "the organisation has {MAX_WEBHOOKS} webhooks, the most it may have: delete one first"
            ))
            .into());
        }
        let secret = generate_secret();
        let hook = NewWebhook {
            id: WebhookId::generate(),
            url,
            secret,
            scope,
            events,
        };
        let created = self
            .state
            .store
            .create_webhook(&who.org_id, &hook, jiff::Timestamp::now())
            .await?;
        let detail = format!(
            "{} for {}: {}",
            crate::notify::outbound::host_of(&created.url),
            created.scope,
            crate::notify::events_column(&created.events)
        );
        self.state
            .audit(
                &who,
                "webhook.created",
                "webhook",
                created.id.as_str(),
                detail,
            )
            .await;
        Ok(proto::CreateWebhookResponse {
            webhook: Some(webhook(&created)),
            secret: hook.secret.expose_secret().to_owned(),
        })
    }

    pub(super) async fn do_list_webhooks(
        &self,
        request: Request<proto::ListWebhooksRequest>,
    ) -> Result<proto::ListWebhooksResponse, ApiError> {
        let who = self.state.admin(&request, "read webhooks").await?;
        let hooks = self.state.store.list_webhooks(&who.org_id).await?;
        Ok(proto::ListWebhooksResponse {
            webhooks: hooks.iter().map(webhook).collect(),
        })
    }

    pub(super) async fn do_delete_webhook(
        &self,
        request: Request<proto::WebhookRef>,
    ) -> Result<proto::DeleteWebhookResponse, ApiError> {
        let who = self.state.admin(&request, "manage webhooks").await?;
        let id = WebhookId::parse(&request.into_inner().id)?;
        self.state.store.delete_webhook(&who.org_id, &id).await?;
        self.state
            .audit(&who, "webhook.deleted", "webhook", id.as_str(), "")
            .await;
        Ok(proto::DeleteWebhookResponse {})
    }

    pub(super) async fn do_set_webhook_enabled(
        &self,
        request: Request<proto::SetWebhookEnabledRequest>,
    ) -> Result<proto::Webhook, ApiError> {
        let who = self.state.admin(&request, "manage webhooks").await?;
        let r = request.into_inner();
        let id = WebhookId::parse(&r.id)?;
        let hook = self
            .state
            .store
            .set_webhook_enabled(&who.org_id, &id, r.enabled, jiff::Timestamp::now())
            .await?;
        let action = if r.enabled {
            "webhook.enabled"
        } else {
            "webhook.disabled"
        };
        self.state
            .audit(&who, action, "webhook", id.as_str(), "")
            .await;
        Ok(webhook(&hook))
    }

    pub(super) async fn do_list_deliveries(
        &self,
        request: Request<proto::ListDeliveriesRequest>,
    ) -> Result<proto::ListDeliveriesResponse, ApiError> {
        let who = self.state.admin(&request, "read the delivery log").await?;
        let r = request.into_inner();
        let hook = match r.webhook_id.trim() {
            "" => None,
            id => Some(WebhookId::parse(id)?),
        };
        let target = match (&hook, r.emails) {
            (Some(_), true) => {
                return Err(ApiError::Invalid(
                    "give a webhook or emails, not both (neither: every delivery)".into(),
                ));
            }
            (Some(id), false) => Some(Some(id)),
            (None, true) => Some(None),
            (None, false) => None,
        };
        let before = paging::after_id(&r.page_token)?;
        let limit = paging::size(r.limit, DEFAULT_DELIVERIES, MAX_DELIVERIES_LISTED);
        // One more than the page holds: whether another page follows.
        let mut deliveries = self
            .state
            .store
            .list_deliveries(&who.org_id, target, limit + 1, before)
            .await?;
        if deliveries.is_empty()
            && let Some(id) = &hook
        {
            let hooks = self.state.store.list_webhooks(&who.org_id).await?;
            if !hooks.iter().any(|h| h.id == *id) {
                return Err(StoreError::NotFound(format!("webhook {id}")).into());
            }
        }
        let next_page_token = if deliveries.len() > limit as usize {
            deliveries.truncate(limit as usize);
            deliveries
                .last()
                .map(|d| paging::token(&d.id.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(proto::ListDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery).collect(),
            next_page_token,
        })
    }

    pub(super) async fn do_create_alert_subscription(
        &self,
        request: Request<proto::CreateAlertSubscriptionRequest>,
    ) -> Result<proto::AlertSubscription, ApiError> {
        let who = self
            .state
            .admin(&request, "manage alert subscriptions")
            .await?;
        if !self.state.alert_email {
            return Err(StoreError::Conflict(
                "this server sends no email: set [alerts.smtp] in its configuration first".into(),
            )
            .into());
        }
        let r = request.into_inner();
        check_len("email", &r.email, MAX_EMAIL_CHARS)?;
        let email = r.email.trim();
        email.parse::<lettre::Address>().map_err(|_| {
            ApiError::Invalid(format!("{} is not an email address", excerpt(email)))
        })?;
        let scope = self.scope(&who.org_id, &r.stream_id, &r.category).await?;
        if self
            .state
            .store
            .list_subscriptions(&who.org_id)
            .await?
            .len()
            >= MAX_SUBSCRIPTIONS
        {
            return Err(StoreError::Conflict(format!(
                "the organisation has {MAX_SUBSCRIPTIONS} alert subscriptions, the most it may have: delete one first"
            ))
            .into());
        }
        let created = self
            .state
            .store
            .create_subscription(
                &who.org_id,
                &SubscriptionId::generate(),
                email,
                &scope,
                jiff::Timestamp::now(),
            )
            .await?;
        self.state
            .audit(
                &who,
                "alert.subscribed",
                "alert_subscription",
                created.id.as_str(),
                format!("{email} for {scope}"),
            )
            .await;
        Ok(subscription(&created))
    }

    pub(super) async fn do_list_alert_subscriptions(
        &self,
        request: Request<proto::ListAlertSubscriptionsRequest>,
    ) -> Result<proto::ListAlertSubscriptionsResponse, ApiError> {
        let who = self
            .state
            .admin(&request, "read alert subscriptions")
            .await?;
        let subscriptions = self.state.store.list_subscriptions(&who.org_id).await?;
        Ok(proto::ListAlertSubscriptionsResponse {
            subscriptions: subscriptions.iter().map(subscription).collect(),
        })
    }

    pub(super) async fn do_delete_alert_subscription(
        &self,
        request: Request<proto::AlertSubscriptionRef>,
    ) -> Result<proto::DeleteAlertSubscriptionResponse, ApiError> {
        let who = self
            .state
            .admin(&request, "manage alert subscriptions")
            .await?;
        let id = SubscriptionId::parse(&request.into_inner().id)?;
        self.state
            .store
            .delete_subscription(&who.org_id, &id)
            .await?;
        self.state
            .audit(
                &who,
                "alert.unsubscribed",
                "alert_subscription",
                id.as_str(),
                "",
            )
            .await;
        Ok(proto::DeleteAlertSubscriptionResponse {})
    }
}
