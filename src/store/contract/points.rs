//! Reading points back: by period range, the latest one, in the order they changed,
//! and a period's revisions.

use super::{at, batch, commit, daily_stream, new_org, point};
use crate::ids::{KeyId, StreamId};
use crate::stream::Stream;

use crate::store::{PointRecord, Store};

/// Commits one batch of `(period, value)` at second `second`.
async fn publish(
    store: &dyn Store,
    (stream, key): (&Stream, &KeyId),
    batch_id: &str,
    points: &[(&str, &str)],
    second: i64,
) {
    let points: Vec<_> = points.iter().map(|(p, v)| point(p, v)).collect();
    commit(store, batch(stream, key, batch_id, &points), at(second)).await;
}

fn periods(points: &[PointRecord]) -> Vec<&str> {
    points.iter().map(|p| p.period.as_str()).collect()
}

/// (period, value, second of the last change) of each point.
fn changes(points: &[PointRecord]) -> Vec<(&str, &str, jiff::Timestamp)> {
    points
        .iter()
        .map(|p| (p.period.as_str(), p.value.as_str(), p.updated_at))
        .collect()
}

async fn listed(
    store: &dyn Store,
    stream: &StreamId,
    from: Option<&str>,
    to: Option<&str>,
    limit: u32,
) -> Vec<String> {
    let points = store.list_points(stream, from, to, limit).await.unwrap();
    periods(&points).into_iter().map(str::to_owned).collect()
}

pub async fn list_points_answers_a_period_range_oldest_first(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let (other, other_key) = daily_stream(store, &org, "Visits").await;
    let first = [
        ("2026-11-03", "3"),
        ("2026-11-01", "1"),
        ("2026-11-05", "5"),
    ];
    publish(store, (&stream, &key), "b1", &first, 10).await;
    publish(
        store,
        (&stream, &key),
        "b2",
        &[("2026-11-04", "4"), ("2026-11-02", "2")],
        20,
    )
    .await;
    publish(
        store,
        (&other, &other_key),
        "b1",
        &[("2026-11-06", "6")],
        20,
    )
    .await;

    let id = &stream.id;
    let all = [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
        "2026-11-05",
    ];
    assert_eq!(listed(store, id, None, None, 100).await, all);
    assert_eq!(
        listed(store, id, Some("2026-11-02"), Some("2026-11-04"), 100).await,
        ["2026-11-02", "2026-11-03", "2026-11-04"],
        "both bounds are included"
    );
    assert_eq!(
        listed(store, id, Some("2026-11-04"), None, 100).await,
        ["2026-11-04", "2026-11-05"]
    );
    assert_eq!(
        listed(store, id, None, Some("2026-11-01"), 100).await,
        ["2026-11-01"]
    );
    assert_eq!(
        listed(store, id, Some("2026-11-03"), Some("2026-11-03"), 100).await,
        ["2026-11-03"]
    );
    assert!(
        listed(store, id, Some("2026-11-06"), None, 100)
            .await
            .is_empty()
    );
    let points = store.list_points(id, None, None, 100).await.unwrap();
    let values: Vec<_> = points.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(values, ["1", "2", "3", "4", "5"]);
}

pub async fn list_points_stops_at_the_limit(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let sent = [
        ("2026-11-05", "5"),
        ("2026-11-04", "4"),
        ("2026-11-03", "3"),
        ("2026-11-02", "2"),
        ("2026-11-01", "1"),
    ];
    publish(store, (&stream, &key), "b1", &sent, 10).await;

    let id = &stream.id;
    assert_eq!(
        listed(store, id, None, None, 2).await,
        ["2026-11-01", "2026-11-02"]
    );
    assert_eq!(
        listed(store, id, Some("2026-11-03"), None, 2).await,
        ["2026-11-03", "2026-11-04"],
        "a page goes on from its first period"
    );
    assert_eq!(
        listed(store, id, None, Some("2026-11-04"), 3).await.len(),
        3
    );
    assert_eq!(listed(store, id, None, None, 10).await.len(), 5);
}

pub async fn a_stream_without_points_lists_none_and_has_no_latest_point(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, _) = daily_stream(store, &org, "Signups").await;
    for id in [stream.id, StreamId::generate()] {
        assert!(
            store
                .list_points(&id, None, None, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.latest_point(&id).await.unwrap(), None);
        let changed = store
            .points_updated_after(&id, (at(0), None), 100)
            .await
            .unwrap();
        assert!(changed.is_empty());
        assert!(
            store
                .list_revisions(&id, "2026-11-01")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

pub async fn latest_point_is_the_latest_period_not_the_latest_write(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    publish(store, (&stream, &key), "b1", &[("2026-11-05", "5")], 10).await;
    publish(store, (&stream, &key), "b2", &[("2026-11-02", "2")], 20).await;
    publish(store, (&stream, &key), "b3", &[("2026-11-02", "3")], 30).await;

    assert_eq!(
        store.latest_point(&stream.id).await.unwrap(),
        Some(PointRecord {
            period: "2026-11-05".into(),
            value: "5".into(),
            external_id: None,
            updated_at: at(10),
            batch_id: "b1".into(),
            key_id: key.to_string(),
            revision_count: 0,
        })
    );
}

pub async fn points_updated_after_follows_the_order_of_changes(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let signed = (&stream, &key);
    publish(store, signed, "b1", &[("2026-11-03", "3")], 10).await;
    publish(store, signed, "b2", &[("2026-11-01", "1")], 20).await;
    publish(store, signed, "b3", &[("2026-11-02", "2")], 30).await;
    publish(store, signed, "b4", &[("2026-11-03", "33")], 40).await;

    let id = &stream.id;
    let after = |instant: i64, limit: u32| async move {
        let points = store
            .points_updated_after(id, (at(instant), None), limit)
            .await
            .unwrap();
        changes(&points)
            .into_iter()
            .map(|(p, v, t)| (p.to_owned(), v.to_owned(), t))
            .collect::<Vec<_>>()
    };
    let change = |p: &str, v: &str, second| (p.to_owned(), v.to_owned(), at(second));
    assert_eq!(
        after(0, 100).await,
        [
            change("2026-11-01", "1", 20),
            change("2026-11-02", "2", 30),
            change("2026-11-03", "33", 40),
        ],
        "a revised point counts when it was last changed"
    );
    assert_eq!(
        after(20, 100).await,
        [
            change("2026-11-02", "2", 30),
            change("2026-11-03", "33", 40)
        ],
        "strictly after the instant"
    );
    assert_eq!(after(0, 1).await, [change("2026-11-01", "1", 20)]);
    assert!(after(40, 100).await.is_empty());
}

pub async fn points_changed_at_one_instant_resume_after_a_period(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let signed = (&stream, &key);
    let first = [
        ("2026-11-03", "3"),
        ("2026-11-01", "1"),
        ("2026-11-02", "2"),
    ];
    publish(store, signed, "b1", &first, 10).await;
    publish(store, signed, "b2", &[("2026-11-01", "11")], 20).await;

    let id = &stream.id;
    let after = |instant: i64, period: Option<&'static str>, limit: u32| async move {
        let points = store
            .points_updated_after(id, (at(instant), period), limit)
            .await
            .unwrap();
        periods(&points)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        after(10, Some("2026-11-01"), 100).await,
        ["2026-11-02", "2026-11-03", "2026-11-01"],
        "at the instant, after the period; then what changed later"
    );
    assert_eq!(after(10, Some("2026-11-02"), 1).await, ["2026-11-03"]);
    assert_eq!(after(10, Some("2026-11-03"), 100).await, ["2026-11-01"]);
    assert_eq!(
        after(10, None, 100).await,
        ["2026-11-01"],
        "without a period, nothing at the instant itself"
    );
    assert_eq!(
        after(9, Some("2026-11-09"), 100).await,
        ["2026-11-02", "2026-11-03", "2026-11-01"],
        "the period only breaks ties at the instant"
    );
}

pub async fn revisions_are_listed_oldest_first_per_period(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let (other, other_key) = daily_stream(store, &org, "Visits").await;
    let signed = (&stream, &key);
    publish(
        store,
        signed,
        "b1",
        &[("2026-11-01", "1"), ("2026-11-02", "5")],
        10,
    )
    .await;
    publish(
        store,
        signed,
        "b2",
        &[("2026-11-01", "2"), ("2026-11-02", "6")],
        20,
    )
    .await;
    publish(store, signed, "b3", &[("2026-11-01", "3")], 30).await;
    publish(
        store,
        (&other, &other_key),
        "b1",
        &[("2026-11-01", "7")],
        10,
    )
    .await;
    publish(
        store,
        (&other, &other_key),
        "b2",
        &[("2026-11-01", "8")],
        20,
    )
    .await;

    let id = &stream.id;
    let history = |period: &'static str| async move {
        let revisions = store.list_revisions(id, period).await.unwrap();
        revisions
            .into_iter()
            .map(|r| (r.old_value, r.new_value, r.batch_id, r.revised_at))
            .collect::<Vec<_>>()
    };
    let step = |old: &str, new: &str, batch: &str, second| {
        (old.to_owned(), new.to_owned(), batch.to_owned(), at(second))
    };
    assert_eq!(
        history("2026-11-01").await,
        [step("1", "2", "b2", 20), step("2", "3", "b3", 30)]
    );
    assert_eq!(history("2026-11-02").await, [step("5", "6", "b2", 20)]);
    assert!(history("2026-11-03").await.is_empty());
}
