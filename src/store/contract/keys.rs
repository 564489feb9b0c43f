//! Stream keys: added, revoked, listed, and looked up by the publish path.

use super::{
    assert_already_exists, assert_not_found, assert_same, at, daily_stream, definition, new_key,
    new_org, new_stream,
};
use crate::ids::{KeyId, StreamId};
use crate::period::Frequency;
use crate::stream::{KeyOrigin, StreamDefinition};
use crate::value::ValueType;

use crate::store::{NewKey, Store};

pub async fn a_stream_takes_more_keys_listed_in_creation_order(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let first = store.list_keys(&org.id, &stream.id).await.unwrap();
    assert_eq!(first.len(), 1);

    let rotated = new_key();
    let second = store
        .add_key(&org.id, &stream.id, &rotated, at(10))
        .await
        .unwrap();
    assert_eq!(second.key_id, rotated.key_id);
    assert_eq!(second.public_key, rotated.public_key);
    assert_eq!(second.origin, KeyOrigin::Generated);
    assert_eq!(second.created_at, at(10));
    assert_eq!((second.last_used_at, second.revoked_at), (None, None));
    let registered = NewKey {
        origin: KeyOrigin::Registered,
        ..new_key()
    };
    let third = store
        .add_key(&org.id, &stream.id, &registered, at(20))
        .await
        .unwrap();
    assert_eq!(third.origin, KeyOrigin::Registered);

    let listed = store.list_keys(&org.id, &stream.id).await.unwrap();
    assert_same(&listed, &vec![first[0].clone(), second, third]);
}

pub async fn a_public_key_is_added_once_per_stream(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let (other, _) = daily_stream(store, &org, "Visits").await;
    let key = new_key();
    store
        .add_key(&org.id, &stream.id, &key, at(1))
        .await
        .unwrap();
    let same_public_key = NewKey {
        key_id: KeyId::generate(),
        ..key.clone()
    };
    assert_already_exists(
        store
            .add_key(&org.id, &stream.id, &same_public_key, at(2))
            .await,
    );
    let first = store.list_keys(&org.id, &stream.id).await.unwrap()[0].clone();
    let first_again = NewKey {
        key_id: KeyId::generate(),
        public_key: first.public_key,
        origin: KeyOrigin::Registered,
    };
    assert_already_exists(
        store
            .add_key(&org.id, &stream.id, &first_again, at(2))
            .await,
    );
    assert_eq!(store.list_keys(&org.id, &stream.id).await.unwrap().len(), 2);

    store
        .add_key(&org.id, &other.id, &same_public_key, at(3))
        .await
        .expect("another stream may take the same public key");
}

pub async fn a_revoked_key_keeps_its_first_revocation_time(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, first) = daily_stream(store, &org, "Signups").await;
    let second = new_key();
    store
        .add_key(&org.id, &stream.id, &second, at(1))
        .await
        .unwrap();

    let revoked = store
        .revoke_key(&org.id, &stream.id, &first, at(10))
        .await
        .unwrap();
    assert_eq!(revoked.key_id, first);
    assert_eq!(revoked.revoked_at, Some(at(10)));
    let again = store
        .revoke_key(&org.id, &stream.id, &first, at(20))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at(10)),
        "revoked once, at the first time"
    );

    let listed = store.list_keys(&org.id, &stream.id).await.unwrap();
    let revocations: Vec<_> = listed.iter().map(|k| (&k.key_id, k.revoked_at)).collect();
    assert_eq!(
        revocations,
        [(&first, Some(at(10))), (&second.key_id, None)]
    );
    assert_not_found(
        store
            .revoke_key(&org.id, &stream.id, &KeyId::generate(), at(30))
            .await,
    );
}

pub async fn publishing_key_answers_the_key_with_its_streams_settings(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let weekly = StreamDefinition {
        value_type: ValueType::Percentage,
        time_zone: "Europe/Paris".into(),
        ..definition("Conversion", Frequency::Weekly)
    };
    let (stream, key) = new_stream(store, &org, &weekly).await;
    let public_key = store.list_keys(&org.id, &stream.id).await.unwrap()[0].public_key;

    let found = store
        .publishing_key(&stream.id, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.public_key, public_key);
    assert_eq!(found.revoked_at, None);
    assert_eq!(found.frequency, Frequency::Weekly);
    assert_eq!(found.value_type, ValueType::Percentage);
    assert_eq!(found.time_zone, "Europe/Paris");
    assert!(!found.disabled);

    store
        .revoke_key(&org.id, &stream.id, &key, at(10))
        .await
        .unwrap();
    store
        .set_stream_disabled(&org.id, &stream.id, true, at(11))
        .await
        .unwrap();
    let found = store
        .publishing_key(&stream.id, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.revoked_at,
        Some(at(10)),
        "a revoked key is found, with when it was revoked"
    );
    assert!(found.disabled);
}

pub async fn publishing_key_is_none_for_an_unknown_key_or_stream(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let (_, other_key) = daily_stream(store, &org, "Visits").await;
    let lookup = |stream, key| async move { store.publishing_key(&stream, &key).await.unwrap() };
    assert!(lookup(stream.id.clone(), KeyId::generate()).await.is_none());
    assert!(lookup(StreamId::generate(), key.clone()).await.is_none());
    assert!(
        lookup(stream.id.clone(), other_key).await.is_none(),
        "another stream's key"
    );
    assert!(lookup(stream.id, key).await.is_some());
}
