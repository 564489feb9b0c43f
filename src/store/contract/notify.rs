//! Notifications: webhooks, alert subscriptions, the outbox of deliveries, the status
//! each stream was last seen in, and webhook cursors.

use secrecy::SecretString;

use super::{at, daily_stream, new_org};
use crate::ids::{StreamId, SubscriptionId, WebhookId};
use crate::notify::{Attempt, DeliveryState, EventKind, NewDelivery, NewWebhook, Scope, Target};
use crate::store::notify::{Claim, SeenStatus};
use crate::store::{Store, StoreError};

fn claim(lease_until: jiff::Timestamp) -> Claim {
    Claim {
        lease_until,
        limit: 10,
        per_target: 10,
        emails: true,
    }
}

fn new_webhook(scope: Scope, events: &[EventKind]) -> NewWebhook {
    NewWebhook {
        id: WebhookId::generate(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: SecretString::from("whsec_test".to_owned()),
        scope,
        events: events.to_vec(),
    }
}

fn delivery(event_id: &str, target: Target, stream: &StreamId) -> NewDelivery {
    NewDelivery {
        event_id: event_id.into(),
        event: EventKind::Stale,
        target,
        stream: Some(stream.clone()),
        payload: format!("{{\"id\":\"{event_id}\"}}"),
    }
}

fn failed(retry_at: Option<jiff::Timestamp>) -> Attempt {
    Attempt {
        status: Some(503),
        error: Some("answered 503".into()),
        retry_at,
    }
}

fn delivered() -> Attempt {
    Attempt {
        status: Some(204),
        error: None,
        retry_at: None,
    }
}

pub async fn webhooks_are_kept_per_organisation_disabled_enabled_and_deleted(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let other = new_org(store, "Other").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let all = new_webhook(Scope::Org, &EventKind::ALL);
    let one = new_webhook(Scope::Stream(stream.id.clone()), &[EventKind::Stale]);
    let created = store.create_webhook(&org.id, &all, at(1)).await.unwrap();
    assert_eq!(
        (created.url.as_str(), &created.scope, created.events.len()),
        ("http://127.0.0.1:9/hook", &Scope::Org, 5)
    );
    assert_eq!((created.failures, created.disabled_at), (0, None));
    store.create_webhook(&org.id, &one, at(2)).await.unwrap();
    let listed = store.list_webhooks(&org.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
        [all.id.clone(), one.id.clone()]
    );
    assert!(store.list_webhooks(&other.id).await.unwrap().is_empty());
    let err = store.delete_webhook(&other.id, &all.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let off = store
        .set_webhook_enabled(&org.id, &all.id, false, at(3))
        .await
        .unwrap();
    assert_eq!(off.disabled_at, Some(at(3)));
    let enabled: Vec<WebhookId> = store
        .enabled_webhooks()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, h)| h.id)
        .collect();
    assert_eq!(enabled, std::slice::from_ref(&one.id));
    let on = store
        .set_webhook_enabled(&org.id, &all.id, true, at(4))
        .await
        .unwrap();
    assert_eq!((on.disabled_at, on.disabled_reason), (None, None));

    // A stream's webhook goes with the stream.
    store.delete_stream(&org.id, &stream.id).await.unwrap();
    let left: Vec<WebhookId> = store
        .list_webhooks(&org.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(left, std::slice::from_ref(&all.id));
    store.delete_webhook(&org.id, &all.id).await.unwrap();
    assert!(store.list_webhooks(&org.id).await.unwrap().is_empty());
}

pub async fn subscriptions_are_kept_per_organisation_and_follow_a_renamed_category(
    store: &dyn Store,
) {
    let org = new_org(store, "Acme").await;
    let other = new_org(store, "Other").await;
    store
        .create_category(&org.id, "Finance", at(0))
        .await
        .unwrap();
    let id = SubscriptionId::generate();
    let scope = Scope::Category("Finance".into());
    let created = store
        .create_subscription(&org.id, &id, "ops@example.com", &scope, at(1))
        .await
        .unwrap();
    assert_eq!(
        (created.email.as_str(), &created.scope),
        ("ops@example.com", &scope)
    );
    let hook = new_webhook(scope.clone(), &[EventKind::Stale]);
    store.create_webhook(&org.id, &hook, at(1)).await.unwrap();
    store
        .rename_category(&org.id, "Finance", "Money")
        .await
        .unwrap();
    let renamed = Scope::Category("Money".into());
    assert_eq!(
        store.list_subscriptions(&org.id).await.unwrap()[0].scope,
        renamed
    );
    assert_eq!(
        store.list_webhooks(&org.id).await.unwrap()[0].scope,
        renamed
    );
    assert!(
        store
            .list_subscriptions(&other.id)
            .await
            .unwrap()
            .is_empty()
    );
    let err = store.delete_subscription(&other.id, &id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store.delete_subscription(&org.id, &id).await.unwrap();
    assert!(store.list_subscriptions(&org.id).await.unwrap().is_empty());
}

pub async fn a_status_change_is_recorded_once_with_its_deliveries(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let email = Target::Email("ops@example.com".into());
    let stale = [delivery("evt_1", email.clone(), &stream.id)];
    assert!(
        store
            .record_status(&org.id, &stream.id, None, "stale", &stale, at(1))
            .await
            .unwrap()
    );
    // A second server that read "never seen" too records nothing and sends nothing.
    assert!(
        !store
            .record_status(&org.id, &stream.id, None, "stale", &stale, at(1))
            .await
            .unwrap()
    );
    let recovered = [delivery("evt_2", email, &stream.id)];
    assert!(
        !store
            .record_status(
                &org.id,
                &stream.id,
                Some("active"),
                "active",
                &recovered,
                at(2)
            )
            .await
            .unwrap(),
        "the stream was not seen active"
    );
    assert!(
        store
            .record_status(
                &org.id,
                &stream.id,
                Some("stale"),
                "active",
                &recovered,
                at(2)
            )
            .await
            .unwrap()
    );
    let seen = store.seen_statuses().await.unwrap();
    let expected = SeenStatus {
        org: org.id.clone(),
        stream: stream.id.clone(),
        status: "active".to_owned(),
        changed_at: at(2),
    };
    assert_eq!(seen, [expected]);
    let log = store
        .list_deliveries(&org.id, None, 10, None)
        .await
        .unwrap();
    let events: Vec<&str> = log.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(events, ["evt_2", "evt_1"], "newest first, each once");
    assert!(log.iter().all(|d| d.state() == DeliveryState::Pending));
}

pub async fn a_claimed_delivery_waits_for_its_lease_and_a_disabled_webhooks_wait(
    store: &dyn Store,
) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let hook = new_webhook(Scope::Org, &EventKind::ALL);
    store.create_webhook(&org.id, &hook, at(0)).await.unwrap();
    let queued = [
        delivery("evt_1", Target::Webhook(hook.id.clone()), &stream.id),
        delivery("evt_1", Target::Email("ops@example.com".into()), &stream.id),
    ];
    store
        .record_status(&org.id, &stream.id, None, "stale", &queued, at(10))
        .await
        .unwrap();
    let claimed = |now, until, emails| async move {
        let claim = Claim {
            emails,
            ..claim(at(until))
        };
        store.claim_deliveries(at(now), &claim).await.unwrap()
    };
    assert!(claimed(9, 100, true).await.is_empty(), "not due yet");
    store
        .set_webhook_enabled(&org.id, &hook.id, false, at(10))
        .await
        .unwrap();
    assert!(
        claimed(10, 100, false).await.is_empty(),
        "the webhook is disabled, and a sender without SMTP takes no email"
    );
    let got = claimed(10, 100, true).await;
    assert_eq!(got.len(), 1, "only the email: the webhook is disabled");
    assert!(got[0].webhook.is_none());
    assert_eq!(got[0].lease, at(100));
    store
        .set_webhook_enabled(&org.id, &hook.id, true, at(11))
        .await
        .unwrap();
    let got = claimed(11, 100, true).await;
    assert_eq!(got.len(), 1, "the webhook's, now; the email is leased");
    let (url, _) = got[0].webhook.as_ref().expect("a webhook's URL and secret");
    assert_eq!(url, "http://127.0.0.1:9/hook");
    assert_eq!(got[0].org, org.id);
    assert!(claimed(99, 200, true).await.is_empty());
    let again = claimed(100, 200, true).await;
    assert_eq!(again.len(), 2, "both leases ran out");
    // The first claim's sender comes back late: its result is not recorded.
    let id = again[0].delivery.id;
    store
        .finish_delivery(&org.id, id, at(100), &delivered(), 5, at(150))
        .await
        .unwrap();
    let log = store
        .list_deliveries(&org.id, None, 10, None)
        .await
        .unwrap();
    let row = log.iter().find(|d| d.id == id).unwrap();
    assert_eq!((row.attempts, row.state()), (0, DeliveryState::Pending));
    store
        .finish_delivery(&org.id, id, at(200), &delivered(), 5, at(150))
        .await
        .unwrap();
    let log = store
        .list_deliveries(&org.id, None, 10, None)
        .await
        .unwrap();
    let row = log.iter().find(|d| d.id == id).unwrap();
    assert_eq!((row.attempts, row.state()), (1, DeliveryState::Delivered));
}

pub async fn a_target_takes_a_bounded_share_of_a_claim_and_its_failure_holds_back_the_rest(
    store: &dyn Store,
) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let hook = new_webhook(Scope::Org, &EventKind::ALL);
    store.create_webhook(&org.id, &hook, at(0)).await.unwrap();
    let target = Target::Webhook(hook.id.clone());
    let mut queued: Vec<NewDelivery> = (1..=4)
        .map(|n| delivery(&format!("evt_{n}"), target.clone(), &stream.id))
        .collect();
    queued.push(delivery(
        "evt_5",
        Target::Email("a@example.com".into()),
        &stream.id,
    ));
    store
        .record_status(&org.id, &stream.id, None, "stale", &queued, at(1))
        .await
        .unwrap();
    let two_each = Claim {
        per_target: 2,
        ..claim(at(50))
    };
    let got = store.claim_deliveries(at(1), &two_each).await.unwrap();
    let events: Vec<&str> = got.iter().map(|d| d.delivery.event_id.as_str()).collect();
    assert_eq!(
        events,
        ["evt_1", "evt_2", "evt_5"],
        "two of the webhook's, oldest first"
    );
    // The webhook is down: its other due deliveries wait for the retry with it.
    store
        .finish_delivery(
            &org.id,
            got[0].delivery.id,
            at(50),
            &failed(Some(at(30))),
            5,
            at(2),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_deliveries(at(29), &two_each)
            .await
            .unwrap()
            .is_empty()
    );
    let log = store
        .list_deliveries(&org.id, Some(Some(&hook.id)), 10, None)
        .await
        .unwrap();
    let waiting: Vec<(&str, Option<jiff::Timestamp>, u32)> = log
        .iter()
        .map(|d| (d.event_id.as_str(), d.next_attempt_at, d.attempts))
        .collect();
    assert_eq!(
        waiting,
        [
            ("evt_4", Some(at(30)), 0),
            ("evt_3", Some(at(30)), 0),
            ("evt_2", Some(at(50)), 0),
            ("evt_1", Some(at(30)), 1),
        ],
        "the claimed one keeps its lease"
    );
}

pub async fn failed_deliveries_retry_then_give_up_and_disable_their_webhook(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let hook = new_webhook(Scope::Org, &EventKind::ALL);
    store.create_webhook(&org.id, &hook, at(0)).await.unwrap();
    let target = Target::Webhook(hook.id.clone());
    for (n, status) in [(1, "stale"), (2, "active")] {
        let seen = (n == 2).then_some("stale");
        let queued = [delivery(&format!("evt_{n}"), target.clone(), &stream.id)];
        store
            .record_status(&org.id, &stream.id, seen, status, &queued, at(n))
            .await
            .unwrap();
    }
    let due = store.claim_deliveries(at(5), &claim(at(6))).await.unwrap();
    let (first, second) = (due[0].delivery.id, due[1].delivery.id);
    store
        .finish_delivery(&org.id, first, at(6), &failed(Some(at(20))), 2, at(5))
        .await
        .unwrap();
    let log = store
        .list_deliveries(&org.id, Some(Some(&hook.id)), 10, None)
        .await
        .unwrap();
    let retried = log.iter().find(|d| d.id == first).unwrap();
    assert_eq!(
        (
            retried.attempts,
            retried.next_attempt_at,
            retried.last_status
        ),
        (1, Some(at(20)), Some(503))
    );
    assert_eq!(retried.state(), DeliveryState::Pending);
    let due = store
        .claim_deliveries(at(20), &claim(at(21)))
        .await
        .unwrap();
    assert_eq!(due.len(), 2, "the second was held back to the retry too");
    for id in [first, second] {
        store
            .finish_delivery(&org.id, id, at(21), &failed(None), 2, at(21))
            .await
            .unwrap();
    }
    let hooks = store.list_webhooks(&org.id).await.unwrap();
    assert_eq!(hooks[0].failures, 2);
    assert_eq!(hooks[0].disabled_at, Some(at(21)), "two given up in a row");
    assert_eq!(
        hooks[0].disabled_reason.as_deref(),
        Some("2 deliveries in a row were given up")
    );
    let log = store
        .list_deliveries(&org.id, Some(Some(&hook.id)), 10, None)
        .await
        .unwrap();
    assert!(
        log.iter()
            .all(|d| d.state() == DeliveryState::GaveUp && d.next_attempt_at.is_none())
    );
    // Enabling clears the count; one more given up counts one.
    let queued = [delivery("evt_3", target, &stream.id)];
    store
        .record_status(
            &org.id,
            &stream.id,
            Some("active"),
            "stale",
            &queued,
            at(30),
        )
        .await
        .unwrap();
    store
        .set_webhook_enabled(&org.id, &hook.id, true, at(30))
        .await
        .unwrap();
    let due = store
        .claim_deliveries(at(30), &claim(at(40)))
        .await
        .unwrap();
    store
        .finish_delivery(
            &org.id,
            due[0].delivery.id,
            at(40),
            &failed(None),
            2,
            at(31),
        )
        .await
        .unwrap();
    assert_eq!(store.list_webhooks(&org.id).await.unwrap()[0].failures, 1);
}

pub async fn deliveries_are_listed_per_target_in_pages_and_pruned_once_finished(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let other = new_org(store, "Other").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let hook = new_webhook(Scope::Org, &EventKind::ALL);
    store.create_webhook(&org.id, &hook, at(0)).await.unwrap();
    let queued = [
        delivery("evt_1", Target::Webhook(hook.id.clone()), &stream.id),
        delivery("evt_1", Target::Email("a@example.com".into()), &stream.id),
        delivery("evt_1", Target::Email("b@example.com".into()), &stream.id),
    ];
    store
        .record_status(&org.id, &stream.id, None, "stale", &queued, at(1))
        .await
        .unwrap();
    let emails = store
        .list_deliveries(&org.id, Some(None), 10, None)
        .await
        .unwrap();
    assert_eq!(emails.len(), 2);
    assert!(matches!(emails[0].target, Target::Email(ref e) if e == "b@example.com"));
    let page = store.list_deliveries(&org.id, None, 2, None).await.unwrap();
    assert_eq!(page.len(), 2);
    let rest = store
        .list_deliveries(&org.id, None, 2, Some(page[1].id))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert!(matches!(rest[0].target, Target::Webhook(_)));
    assert!(
        store
            .list_deliveries(&other.id, None, 10, None)
            .await
            .unwrap()
            .is_empty()
    );

    let due = store.claim_deliveries(at(1), &claim(at(2))).await.unwrap();
    let email = due.iter().find(|d| d.webhook.is_none()).unwrap();
    store
        .finish_delivery(&org.id, email.delivery.id, at(2), &delivered(), 5, at(2))
        .await
        .unwrap();
    assert_eq!(
        store.prune_deliveries(at(1)).await.unwrap(),
        0,
        "none created before"
    );
    assert_eq!(
        store.prune_deliveries(at(2)).await.unwrap(),
        1,
        "only the finished one: the others are still pending"
    );
    // Deleting the webhook deletes its deliveries.
    store.delete_webhook(&org.id, &hook.id).await.unwrap();
    let left = store
        .list_deliveries(&org.id, None, 10, None)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert!(matches!(left[0].target, Target::Email(_)));
}

pub async fn a_webhook_cursor_moves_only_from_where_it_was(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let hook = new_webhook(Scope::Org, &[EventKind::PointAccepted]);
    store.create_webhook(&org.id, &hook, at(0)).await.unwrap();
    let queued = [NewDelivery {
        event: EventKind::PointAccepted,
        ..delivery("evt_1", Target::Webhook(hook.id.clone()), &stream.id)
    }];
    let moved = |from, to, deliveries: &'static [NewDelivery]| {
        let (org, hook, stream) = (org.id.clone(), hook.id.clone(), stream.id.clone());
        async move {
            store
                .advance_webhook_cursor(&org, &hook, &stream, from, to, deliveries, at(9))
                .await
                .unwrap()
        }
    };
    let queued: &'static [NewDelivery] = Box::leak(Box::new(queued));
    assert!(moved(None, (at(5), "2026-11-20"), queued).await);
    assert!(
        !moved(None, (at(5), "2026-11-20"), queued).await,
        "another server moved it"
    );
    assert!(!moved(Some((at(4), "2026-11-20")), (at(6), "2026-11-21"), queued).await);
    assert!(moved(Some((at(5), "2026-11-20")), (at(6), "2026-11-21"), &[]).await);
    let cursors = store.webhook_cursors(&org.id, &hook.id).await.unwrap();
    assert_eq!(
        cursors,
        [(stream.id.clone(), at(6), "2026-11-21".to_owned())]
    );
    let log = store
        .list_deliveries(&org.id, None, 10, None)
        .await
        .unwrap();
    assert_eq!(
        log.len(),
        1,
        "only the move that happened queued its delivery"
    );
}
