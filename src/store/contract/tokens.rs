//! Tokens: stored as hashes, listed, revoked, expired, and the principal they name.

use super::{assert_not_found, assert_same, at, new_org, new_token, new_user};
use crate::auth::{Principal, Role};

use crate::store::{NewToken, Store};

pub async fn a_created_token_names_its_principal(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let bob = new_user(store, &org, "bob", Role::Member).await;
    let token = NewToken {
        user: "bob".into(),
        name: "laptop".into(),
        hash: rand::random(),
        expires_at: Some(at(1_000)),
    };
    let info = store.create_token(&org.id, &token, at(5)).await.unwrap();
    assert!(!info.id.is_empty());
    assert_eq!((info.name.as_str(), info.user.as_str()), ("laptop", "bob"));
    assert_eq!(info.created_at, at(5));
    assert_eq!(info.expires_at, Some(at(1_000)));
    assert_eq!((info.last_used_at, info.revoked_at), (None, None));
    assert_same(&store.token(&org.id, &info.id).await.unwrap(), &info);

    assert_eq!(
        store.principal_for_token(&token.hash, at(6)).await.unwrap(),
        Some(Principal {
            user_id: bob,
            name: "bob".into(),
            org_id: org.id.clone(),
            org_name: "Acme".into(),
            role: Role::Member,
            server_admin: false,
        })
    );
}

pub async fn an_unknown_token_names_nobody(store: &dyn Store) {
    new_org(store, "Acme").await;
    let unknown: [u8; 32] = rand::random();
    assert_eq!(
        store.principal_for_token(&unknown, at(1)).await.unwrap(),
        None
    );
}

pub async fn tokens_are_listed_per_user_or_for_the_whole_organisation(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    new_user(store, &org, "bob", Role::Member).await;
    for (user, name, second) in [("bob", "t1", 1), ("zoe", "z1", 2), ("bob", "t2", 3)] {
        let token = NewToken {
            user: user.into(),
            name: name.into(),
            hash: rand::random(),
            expires_at: None,
        };
        store
            .create_token(&org.id, &token, at(second))
            .await
            .unwrap();
    }
    let org_id = &org.id;
    let names = |user: Option<&'static str>| async move {
        let listed = store.list_tokens(org_id, user).await.unwrap();
        listed
            .into_iter()
            .map(|t| (t.user, t.name))
            .collect::<Vec<_>>()
    };
    let pair = |user: &str, name: &str| (user.to_owned(), name.to_owned());
    assert_eq!(
        names(None).await,
        [
            pair("ada", "first"),
            pair("bob", "t1"),
            pair("bob", "t2"),
            pair("zoe", "z1")
        ],
        "by user, then oldest first"
    );
    assert_eq!(
        names(Some("bob")).await,
        [pair("bob", "t1"), pair("bob", "t2")]
    );
    assert!(names(Some("nobody")).await.is_empty());
}

pub async fn a_token_is_refused_from_its_expiry_on(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "bob", Role::Member).await;
    let (id, token) = new_token(store, &org, "bob", Some(at(100))).await;
    let valid_at = |second| async move {
        store
            .principal_for_token(&token, at(second))
            .await
            .unwrap()
            .is_some()
    };
    assert!(valid_at(99).await);
    assert!(!valid_at(100).await, "expired at its expiry");
    assert!(!valid_at(101).await);
    let info = store.token(&org.id, &id).await.unwrap();
    assert_eq!((info.expires_at, info.revoked_at), (Some(at(100)), None));
}

pub async fn a_revoked_token_is_refused_and_keeps_its_first_revocation_time(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "bob", Role::Member).await;
    let (id, token) = new_token(store, &org, "bob", None).await;
    let (_, other) = new_token(store, &org, "bob", None).await;

    let revoked = store.revoke_token(&org.id, &id, at(10)).await.unwrap();
    assert_eq!(
        (revoked.id.as_str(), revoked.revoked_at),
        (id.as_str(), Some(at(10)))
    );
    assert_eq!(
        store.principal_for_token(&token, at(11)).await.unwrap(),
        None
    );
    let again = store.revoke_token(&org.id, &id, at(20)).await.unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at(10)),
        "revoked once, at the first time"
    );
    assert_same(&store.token(&org.id, &id).await.unwrap(), &again);
    assert!(
        store
            .principal_for_token(&other, at(21))
            .await
            .unwrap()
            .is_some(),
        "the user's other token still works"
    );
}

pub async fn token_calls_need_a_known_token_and_user(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    assert_not_found(store.token(&org.id, "tok_missing").await);
    assert_not_found(store.revoke_token(&org.id, "tok_missing", at(1)).await);
    let orphan = NewToken {
        user: "nobody".into(),
        name: "cli".into(),
        hash: rand::random(),
        expires_at: None,
    };
    assert_not_found(store.create_token(&org.id, &orphan, at(1)).await);
    assert_eq!(
        store
            .principal_for_token(&orphan.hash, at(2))
            .await
            .unwrap(),
        None
    );
}

pub async fn a_tokens_last_use_is_recorded_to_the_minute(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "bob", Role::Member).await;
    let (id, token) = new_token(store, &org, "bob", None).await;
    let (org_id, id) = (&org.id, id.as_str());
    let use_at = |second| async move {
        store.principal_for_token(&token, at(second)).await.unwrap();
        store.token(org_id, id).await.unwrap().last_used_at
    };
    assert_eq!(use_at(10).await, Some(at(10)));
    assert_eq!(
        use_at(50).await,
        Some(at(10)),
        "within the minute, not written again"
    );
    assert_eq!(use_at(200).await, Some(at(200)));
}
