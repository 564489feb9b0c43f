//! Categories: an organisation's names for grouping streams, unique whatever their case.

use super::{
    assert_already_exists, assert_conflict, assert_not_found, at, daily_stream, definition,
    new_org, new_stream,
};
use crate::period::Frequency;
use crate::stream::{Category, StreamDefinition, StreamUpdate};

use crate::store::Store;

fn in_category(name: &str, category: &str) -> StreamDefinition {
    StreamDefinition {
        category: Some(category.into()),
        ..definition(name, Frequency::Daily)
    }
}

fn listed(categories: &[Category]) -> Vec<(&str, u64, jiff::Timestamp)> {
    categories
        .iter()
        .map(|c| (c.name.as_str(), c.stream_count, c.created_at))
        .collect()
}

pub async fn categories_are_listed_by_name_with_their_stream_counts(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let sales = store
        .create_category(&org.id, "Sales", at(1))
        .await
        .unwrap();
    assert_eq!(listed(&[sales]), [("Sales", 0, at(1))]);
    store
        .create_category(&org.id, "Growth", at(2))
        .await
        .unwrap();
    for (stream, category) in [
        ("Signups", "Growth"),
        ("Visits", "Growth"),
        ("Deals", "Sales"),
    ] {
        new_stream(store, &org, &in_category(stream, category)).await;
    }
    daily_stream(store, &org, "Uncategorised").await;

    let categories = store.list_categories(&org.id).await.unwrap();
    assert_eq!(
        listed(&categories),
        [("Growth", 2, at(2)), ("Sales", 1, at(1))]
    );
}

pub async fn a_category_name_is_taken_once_per_organisation_whatever_its_case(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    store
        .create_category(&org.id, "Growth", at(1))
        .await
        .unwrap();
    assert_already_exists(store.create_category(&org.id, "Growth", at(2)).await);
    assert_already_exists(store.create_category(&org.id, "GROWTH", at(2)).await);
    store
        .create_category(&org.id, "Sales", at(3))
        .await
        .unwrap();
    assert_already_exists(store.rename_category(&org.id, "Sales", "growth").await);
    let categories = store.list_categories(&org.id).await.unwrap();
    assert_eq!(
        listed(&categories),
        [("Growth", 0, at(1)), ("Sales", 0, at(3))]
    );

    // A name that differs only in case names the same category.
    let lower = in_category("Signups", "growth");
    let (stream, _) = new_stream(store, &org, &lower).await;
    assert_eq!(stream.definition.category.as_deref(), Some("Growth"));
    let renamed = store
        .rename_category(&org.id, "SALES", "Deals")
        .await
        .unwrap();
    assert_eq!(renamed.name, "Deals");
    assert_conflict(store.delete_category(&org.id, "GROWTH").await);

    let other = new_org(store, "Globex").await;
    store
        .create_category(&other.id, "Growth", at(4))
        .await
        .expect("another organisation has its own names");
}

pub async fn a_renamed_category_is_followed_by_its_streams(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    store
        .create_category(&org.id, "Growth", at(1))
        .await
        .unwrap();
    let (stream, _) = new_stream(store, &org, &in_category("Signups", "Growth")).await;

    let renamed = store
        .rename_category(&org.id, "Growth", "Product growth")
        .await
        .unwrap();
    assert_eq!(listed(&[renamed]), [("Product growth", 1, at(1))]);
    let stream = store.get_stream(&org.id, &stream.id).await.unwrap();
    assert_eq!(
        stream.definition.category.as_deref(),
        Some("Product growth")
    );
    let categories = store.list_categories(&org.id).await.unwrap();
    assert_eq!(listed(&categories), [("Product growth", 1, at(1))]);
    assert_not_found(store.rename_category(&org.id, "Growth", "Again").await);
}

pub async fn a_category_in_use_cannot_be_deleted(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    store
        .create_category(&org.id, "Growth", at(1))
        .await
        .unwrap();
    let (stream, _) = new_stream(store, &org, &in_category("Signups", "Growth")).await;

    assert_conflict(store.delete_category(&org.id, "Growth").await);
    assert_eq!(store.list_categories(&org.id).await.unwrap().len(), 1);
    let uncategorise = StreamUpdate {
        category: Some(None),
        ..StreamUpdate::default()
    };
    store
        .update_stream(&org.id, &stream.id, &uncategorise, at(2))
        .await
        .unwrap();
    store
        .delete_category(&org.id, "Growth")
        .await
        .expect("no stream uses it any more");
    assert!(store.list_categories(&org.id).await.unwrap().is_empty());
    assert_not_found(store.delete_category(&org.id, "Growth").await);
}

pub async fn an_unknown_category_is_not_found(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    assert_not_found(store.rename_category(&org.id, "Missing", "Found").await);
    assert_not_found(store.delete_category(&org.id, "Missing").await);
    let categorise = StreamUpdate {
        name: Some("Renamed".into()),
        category: Some(Some("Missing".into())),
        ..StreamUpdate::default()
    };
    assert_not_found(
        store
            .update_stream(&org.id, &stream.id, &categorise, at(1))
            .await,
    );
    let unchanged = store.get_stream(&org.id, &stream.id).await.unwrap();
    assert_eq!(unchanged.definition, stream.definition);
    assert!(store.list_categories(&org.id).await.unwrap().is_empty());
}
