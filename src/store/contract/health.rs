//! The store answers, takes writes, and creates the first organisation once.

use std::sync::Arc;

use super::{at, bootstrap_of, new_org};
use crate::auth::{Principal, Role};

use crate::store::{Readiness, Store};

pub async fn a_new_store_answers_a_ping_and_takes_probe_writes(store: &dyn Store) {
    store.ping().await.expect("ping");
    store.probe_write(at(0)).await.expect("a first probe write");
    store
        .probe_write(at(1))
        .await
        .expect("a probe write over the last one");
    store.ping().await.expect("ping after the probes");
}

pub async fn write_health_is_one_shared_record_that_starts_ready(store: &dyn Store) {
    let first = store.write_health();
    assert!(
        Arc::ptr_eq(&first, &store.write_health()),
        "callers report faults where the store reads them"
    );
    assert_eq!(first.readiness(), Readiness::Ready);
    assert!(!first.is_failing());
    first.succeeded();
    assert_eq!(store.write_health().readiness(), Readiness::Ready);
}

pub async fn a_new_store_needs_a_bootstrap_that_creates_the_first_organisation(store: &dyn Store) {
    assert!(store.needs_bootstrap().await.unwrap());
    let first = bootstrap_of("Acme");
    assert!(store.bootstrap(&first, at(0)).await.unwrap());
    assert!(!store.needs_bootstrap().await.unwrap());

    let principal = store
        .principal_for_token(&first.token_hash, at(1))
        .await
        .unwrap();
    assert_eq!(
        principal,
        Some(Principal {
            user_id: first.user_id.clone(),
            name: "ada".into(),
            org_id: first.org_id.clone(),
            org_name: first.org_name.clone(),
            role: Role::Admin,
            server_admin: true,
        })
    );
    let users = store.list_users(&first.org_id).await.unwrap();
    let users: Vec<_> = users
        .iter()
        .map(|u| (&u.id, u.name.as_str(), u.role, u.created_at))
        .collect();
    assert_eq!(users, [(&first.user_id, "ada", Role::Admin, at(0))]);
    let tokens = store.list_tokens(&first.org_id, None).await.unwrap();
    let tokens: Vec<_> = tokens
        .iter()
        .map(|t| (t.name.as_str(), t.user.as_str()))
        .collect();
    assert_eq!(
        tokens,
        [("first", "ada")],
        "the admin's token is named first"
    );
}

pub async fn a_second_bootstrap_changes_nothing(store: &dyn Store) {
    let first = bootstrap_of("Acme");
    assert!(store.bootstrap(&first, at(0)).await.unwrap());
    let second = bootstrap_of("Other");
    assert!(!store.bootstrap(&second, at(1)).await.unwrap());

    assert_eq!(
        store
            .principal_for_token(&second.token_hash, at(2))
            .await
            .unwrap(),
        None
    );
    assert!(store.list_users(&second.org_id).await.unwrap().is_empty());
    let principal = store
        .principal_for_token(&first.token_hash, at(2))
        .await
        .unwrap()
        .expect("the first admin's token still works");
    assert_eq!(principal.org_id, first.org_id);
}

pub async fn create_org_adds_an_organisation_whose_admin_is_not_the_server_admin(
    store: &dyn Store,
) {
    let org = new_org(store, "Globex").await;
    assert!(
        !store.needs_bootstrap().await.unwrap(),
        "any organisation counts"
    );
    let late = bootstrap_of("Acme");
    assert!(!store.bootstrap(&late, at(1)).await.unwrap());
    assert_eq!(
        store
            .principal_for_token(&late.token_hash, at(2))
            .await
            .unwrap(),
        None
    );

    let principal = store.principal_for_token(&org.token, at(2)).await.unwrap();
    assert_eq!(
        principal,
        Some(Principal {
            user_id: org.admin.clone(),
            name: "ada".into(),
            org_id: org.id.clone(),
            org_name: "Globex".into(),
            role: Role::Admin,
            server_admin: false,
        }),
        "only the first start's admin is the server admin"
    );
}
