//! Streams: created with their first key, listed per organisation, updated within
//! what their data allows, disabled, deleted with everything they hold.

use super::{
    assert_conflict, assert_not_found, assert_same, at, batch, commit, daily_stream, definition,
    new_key, new_org, new_stream, new_user, point,
};
use crate::access::{Access, GrantSpec, Grantee};
use crate::auth::Role;
use crate::ids::{KeyId, StreamId};
use crate::period::Frequency;
use crate::stream::{KeyOrigin, StreamDefinition, StreamUpdate};
use crate::value::ValueType;

use crate::store::{NewKey, Store};

pub async fn a_created_stream_reads_back_as_defined_with_its_first_key(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    store
        .create_category(&org.id, "Growth", at(0))
        .await
        .unwrap();
    let definition = StreamDefinition {
        name: "Monthly recurring revenue".into(),
        description: "Invoiced, in euros".into(),
        category: Some("Growth".into()),
        frequency: Frequency::Monthly,
        value_type: ValueType::from_parts("currency", Some("EUR")).unwrap(),
        time_zone: "Europe/Paris".into(),
    };
    let id = StreamId::generate();
    let key = NewKey {
        origin: KeyOrigin::Registered,
        ..new_key()
    };
    let (stream, first_key) = store
        .create_stream(&org.id, &org.admin, &id, &definition, &key, &[], at(5))
        .await
        .unwrap();

    assert_eq!((&stream.id, &stream.org_id), (&id, &org.id));
    assert_eq!(stream.definition, definition);
    assert!(!stream.disabled);
    assert_eq!((stream.created_at, stream.updated_at), (at(5), at(5)));
    assert_eq!(stream.latest_period, None);
    assert_eq!(stream.last_data_at, None);
    assert_eq!(stream.point_count, 0);
    assert_eq!(first_key.key_id, key.key_id);
    assert_eq!(first_key.public_key, key.public_key);
    assert_eq!(first_key.origin, KeyOrigin::Registered);
    assert_eq!(first_key.created_at, at(5));
    assert_eq!((first_key.last_used_at, first_key.revoked_at), (None, None));

    assert_same(&store.get_stream(&org.id, &id).await.unwrap(), &stream);
    assert_same(
        &store.list_keys(&org.id, &id).await.unwrap(),
        &vec![first_key],
    );
}

pub async fn streams_are_listed_per_organisation_by_name(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    let (signups, _) = daily_stream(store, &acme, "Signups").await;
    let (churn, _) = daily_stream(store, &acme, "Churn").await;
    let (visits, _) = daily_stream(store, &globex, "Visits").await;

    assert_same(
        &store.list_streams(&acme.id).await.unwrap(),
        &vec![churn, signups],
    );
    assert_same(
        &store.list_streams(&globex.id).await.unwrap(),
        &vec![visits],
    );
}

pub async fn an_unknown_stream_is_not_found(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let id = StreamId::generate();
    assert_not_found(store.get_stream(&org.id, &id).await);
    assert_not_found(
        store
            .update_stream(&org.id, &id, &StreamUpdate::default(), at(1))
            .await,
    );
    assert_not_found(store.set_stream_disabled(&org.id, &id, true, at(1)).await);
    assert_not_found(store.delete_stream(&org.id, &id).await);
    assert_not_found(store.list_keys(&org.id, &id).await);
    assert_not_found(store.add_key(&org.id, &id, &new_key(), at(1)).await);
    assert_not_found(
        store
            .revoke_key(&org.id, &id, &KeyId::generate(), at(1))
            .await,
    );
}

pub async fn create_stream_is_all_or_nothing(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let id = StreamId::generate();
    let key = new_key();
    let to_nobody = [GrantSpec {
        grantee: Grantee::User("nobody".into()),
        access: Access::Read,
    }];
    let daily = definition("Signups", Frequency::Daily);
    let created = store
        .create_stream(&org.id, &org.admin, &id, &daily, &key, &to_nobody, at(1))
        .await;
    assert_not_found(created);
    let uncategorised = StreamDefinition {
        category: Some("Missing".into()),
        ..daily.clone()
    };
    let created = store
        .create_stream(&org.id, &org.admin, &id, &uncategorised, &key, &[], at(1))
        .await;
    assert_not_found(created);

    assert_not_found(store.get_stream(&org.id, &id).await);
    assert!(store.list_streams(&org.id).await.unwrap().is_empty());
    assert!(
        store
            .publishing_key(&id, &key.key_id)
            .await
            .unwrap()
            .is_none()
    );
    let (stream, _) = store
        .create_stream(&org.id, &org.admin, &id, &daily, &key, &[], at(2))
        .await
        .expect("the id and key are still free");
    assert_eq!(stream.created_at, at(2));
}

pub async fn update_changes_the_name_description_and_category(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    for name in ["Growth", "Sales"] {
        store.create_category(&org.id, name, at(0)).await.unwrap();
    }
    let growth = StreamDefinition {
        category: Some("Growth".into()),
        ..definition("Signups", Frequency::Daily)
    };
    let (stream, _) = new_stream(store, &org, &growth).await;

    let update = StreamUpdate {
        name: Some("New signups".into()),
        description: Some("Accounts opened".into()),
        category: Some(Some("Sales".into())),
        ..StreamUpdate::default()
    };
    let updated = store
        .update_stream(&org.id, &stream.id, &update, at(10))
        .await
        .unwrap();
    let expected = StreamDefinition {
        name: "New signups".into(),
        description: "Accounts opened".into(),
        category: Some("Sales".into()),
        ..growth
    };
    assert_eq!(updated.definition, expected);
    assert_eq!((updated.created_at, updated.updated_at), (at(0), at(10)));
    assert_same(
        &store.get_stream(&org.id, &stream.id).await.unwrap(),
        &updated,
    );

    let uncategorise = StreamUpdate {
        category: Some(None),
        ..StreamUpdate::default()
    };
    let updated = store
        .update_stream(&org.id, &stream.id, &uncategorise, at(11))
        .await
        .unwrap();
    assert_eq!(updated.definition.category, None);
    assert_eq!(updated.definition.name, "New signups", "the rest is kept");
}

pub async fn frequency_type_and_time_zone_change_only_while_the_stream_holds_no_data(
    store: &dyn Store,
) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let reshape = StreamUpdate {
        frequency: Some(Frequency::Weekly),
        value_type: Some(ValueType::Percentage),
        time_zone: Some("Europe/Paris".into()),
        ..StreamUpdate::default()
    };
    let stream = store
        .update_stream(&org.id, &stream.id, &reshape, at(1))
        .await
        .expect("no data yet");
    assert_eq!(stream.definition.frequency, Frequency::Weekly);
    assert_eq!(stream.definition.value_type, ValueType::Percentage);
    assert_eq!(stream.definition.time_zone, "Europe/Paris");

    commit(
        store,
        batch(&stream, &key, "b1", &[point("2026-W48", "5")]),
        at(2),
    )
    .await;
    for refused in [
        StreamUpdate {
            frequency: Some(Frequency::Monthly),
            ..StreamUpdate::default()
        },
        StreamUpdate {
            value_type: Some(ValueType::Number),
            ..StreamUpdate::default()
        },
        StreamUpdate {
            time_zone: Some("UTC".into()),
            ..StreamUpdate::default()
        },
    ] {
        assert_conflict(
            store
                .update_stream(&org.id, &stream.id, &refused, at(3))
                .await,
        );
    }
    let same_shape = StreamUpdate {
        name: Some("Weekly signups".into()),
        frequency: Some(Frequency::Weekly),
        ..StreamUpdate::default()
    };
    let renamed = store
        .update_stream(&org.id, &stream.id, &same_shape, at(4))
        .await
        .expect("the name changes; the frequency stays what it is");
    let expected = StreamDefinition {
        name: "Weekly signups".into(),
        ..stream.definition
    };
    assert_eq!(renamed.definition, expected);
    assert_eq!(renamed.updated_at, at(4), "the refusals changed nothing");
}

pub async fn a_disabled_stream_is_enabled_again(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    let disabled = store
        .set_stream_disabled(&org.id, &stream.id, true, at(10))
        .await
        .unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.updated_at, at(10));
    assert!(
        store
            .get_stream(&org.id, &stream.id)
            .await
            .unwrap()
            .disabled
    );
    let enabled = store
        .set_stream_disabled(&org.id, &stream.id, false, at(20))
        .await
        .unwrap();
    assert!(!enabled.disabled);
    assert_eq!(enabled.updated_at, at(20));
    assert_eq!(enabled.definition, stream.definition);
}

pub async fn deleting_a_stream_removes_its_keys_points_revisions_and_grants(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    store
        .create_category(&org.id, "Growth", at(0))
        .await
        .unwrap();
    let growth = StreamDefinition {
        category: Some("Growth".into()),
        ..definition("Signups", Frequency::Daily)
    };
    let (gone, key) = new_stream(store, &org, &growth).await;
    let (kept, kept_key) = daily_stream(store, &org, "Visits").await;
    store
        .add_key(&org.id, &gone.id, &new_key(), at(1))
        .await
        .unwrap();
    let read = |grantee| GrantSpec {
        grantee,
        access: Access::Read,
    };
    for stream in [&gone, &kept] {
        let grants = [read(Grantee::User("zoe".into()))];
        store
            .set_grants(&org.id, &stream.id, &grants, at(1))
            .await
            .unwrap();
    }
    let first = [point("2026-11-01", "1"), point("2026-11-02", "2")];
    commit(store, batch(&gone, &key, "b1", &first), at(2)).await;
    let second = [point("2026-11-03", "3"), point("2026-11-01", "9")];
    commit(store, batch(&gone, &key, "b2", &second), at(3)).await;
    let kept_point = [point("2026-11-01", "7")];
    commit(store, batch(&kept, &kept_key, "b1", &kept_point), at(3)).await;

    let counts = store.delete_stream(&org.id, &gone.id).await.unwrap();
    assert_eq!((counts.points, counts.revisions, counts.keys), (3, 1, 2));

    assert_not_found(store.get_stream(&org.id, &gone.id).await);
    assert_not_found(store.list_grants(&org.id, &gone.id).await);
    assert_not_found(store.delete_stream(&org.id, &gone.id).await);
    let listed = store.list_streams(&org.id).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|s| &s.id).collect();
    assert_eq!(ids, [&kept.id]);
    assert!(
        store
            .list_points(&gone.id, None, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.latest_point(&gone.id).await.unwrap().is_none());
    assert!(
        store
            .list_revisions(&gone.id, "2026-11-01")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .publishing_key(&gone.id, &key)
            .await
            .unwrap()
            .is_none()
    );
    let reach = store.stream_accesses(&org.id, &zoe).await.unwrap();
    assert_eq!(
        reach.into_iter().collect::<Vec<_>>(),
        [(kept.id.clone(), Access::Read)]
    );
    let categories = store.list_categories(&org.id).await.unwrap();
    assert_eq!(categories[0].stream_count, 0);
    let kept_points = store.list_points(&kept.id, None, None, 100).await.unwrap();
    assert_eq!(kept_points.len(), 1, "the other stream keeps its data");

    // The remembered batch ids went too: a stream made again with the same id takes
    // batch "b1" as new.
    let key = new_key();
    let (again, _) = store
        .create_stream(&org.id, &org.admin, &gone.id, &growth, &key, &[], at(4))
        .await
        .unwrap();
    let outcome = commit(store, batch(&again, &key.key_id, "b1", &first), at(5)).await;
    assert!(!outcome.replayed());
    assert_eq!(outcome.revised(), 0, "no old point is left to revise");
}
