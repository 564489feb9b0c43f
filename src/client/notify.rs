//! Webhooks, their delivery log and alert subscriptions (org admins).

use secrecy::SecretString;
use tonic::Status;

use super::Client;
use crate::proto;

/// The streams a webhook or an alert subscription is about.
#[derive(Debug, Clone, Default)]
pub struct NotifyScope {
    /// One stream, by id.
    pub stream_id: Option<String>,
    /// The streams of one category, by name.
    pub category: Option<String>,
}

/// Whose deliveries to list.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryTarget<'a> {
    /// Every webhook's and every email's.
    All,
    /// One webhook's, by id.
    Webhook(&'a str),
    /// The alert emails'.
    Emails,
}

impl Client {
    /// Creates a webhook for `events` (empty: every event) of the streams in `scope`;
    /// returns it with its signing secret, which is shown only this once.
    pub async fn create_webhook(
        &self,
        url: &str,
        scope: &NotifyScope,
        events: &[String],
    ) -> Result<(proto::Webhook, SecretString), Status> {
        let request = proto::CreateWebhookRequest {
            url: url.to_owned(),
            stream_id: scope.stream_id.clone().unwrap_or_default(),
            category: scope.category.clone().unwrap_or_default(),
            events: events.to_vec(),
        };
        let created = self.admin().create_webhook(request).await?.into_inner();
        Ok((
            created.webhook.unwrap_or_default(),
            SecretString::from(created.secret),
        ))
    }

    /// The organisation's webhooks (never their secrets).
    pub async fn webhooks(&self) -> Result<Vec<proto::Webhook>, Status> {
        let request = proto::ListWebhooksRequest {};
        Ok(self
            .admin()
            .list_webhooks(request)
            .await?
            .into_inner()
            .webhooks)
    }

    /// Deletes a webhook with its delivery log and pending deliveries.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), Status> {
        let request = proto::WebhookRef { id: id.to_owned() };
        self.admin().delete_webhook(request).await?;
        Ok(())
    }

    /// Enables (clearing its failure count) or disables a webhook.
    pub async fn set_webhook_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<proto::Webhook, Status> {
        let request = proto::SetWebhookEnabledRequest {
            id: id.to_owned(),
            enabled,
        };
        Ok(self
            .admin()
            .set_webhook_enabled(request)
            .await?
            .into_inner())
    }

    /// The newest `limit` deliveries of `target` (0: all of them), newest first.
    pub async fn deliveries(
        &self,
        target: DeliveryTarget<'_>,
        limit: u32,
    ) -> Result<Vec<proto::Delivery>, Status> {
        let (webhook_id, emails) = match target {
            DeliveryTarget::All => (String::new(), false),
            DeliveryTarget::Webhook(id) => (id.to_owned(), false),
            DeliveryTarget::Emails => (String::new(), true),
        };
        super::api::follow(limit, move |limit, page_token| {
            let request = proto::ListDeliveriesRequest {
                webhook_id: webhook_id.clone(),
                emails,
                limit,
                page_token,
            };
            async move {
                let page = self.admin().list_deliveries(request).await?.into_inner();
                Ok((page.deliveries, page.next_page_token))
            }
        })
        .await
    }

    /// Emails `email` when a stream of `scope` turns stale and when it recovers.
    pub async fn subscribe_alerts(
        &self,
        email: &str,
        scope: &NotifyScope,
    ) -> Result<proto::AlertSubscription, Status> {
        let request = proto::CreateAlertSubscriptionRequest {
            email: email.to_owned(),
            stream_id: scope.stream_id.clone().unwrap_or_default(),
            category: scope.category.clone().unwrap_or_default(),
        };
        Ok(self
            .admin()
            .create_alert_subscription(request)
            .await?
            .into_inner())
    }

    /// The organisation's alert subscriptions.
    pub async fn alert_subscriptions(&self) -> Result<Vec<proto::AlertSubscription>, Status> {
        let request = proto::ListAlertSubscriptionsRequest {};
        Ok(self
            .admin()
            .list_alert_subscriptions(request)
            .await?
            .into_inner()
            .subscriptions)
    }

    /// Deletes an alert subscription.
    pub async fn unsubscribe_alerts(&self, id: &str) -> Result<(), Status> {
        let request = proto::AlertSubscriptionRef { id: id.to_owned() };
        self.admin().delete_alert_subscription(request).await?;
        Ok(())
    }
}
