//! Committing batches: new points, replays, revisions, the stream's bookkeeping, the
//! refusals made at commit time, and forgetting old batch ids.

use super::{TestOrg, at, batch, commit, daily_stream, new_key, new_org, point, point_from};
use crate::batch::{CommitRefusal, PointRejection, PreparedBatch, PublishOutcome, ValidPoint};
use crate::ids::{KeyId, StreamId};
use crate::period::Frequency;
use crate::stream::Stream;

use crate::store::{PointRecord, RevisionRecord, Store};

/// A point as stored.
fn stored(
    period: &str,
    value: &str,
    external_id: Option<&str>,
    (batch_id, key_id): (&str, &KeyId),
    updated_at: i64,
    revision_count: u32,
) -> PointRecord {
    PointRecord {
        period: period.into(),
        value: value.into(),
        external_id: external_id.map(str::to_owned),
        updated_at: at(updated_at),
        batch_id: batch_id.into(),
        key_id: key_id.to_string(),
        revision_count,
    }
}

fn revision(
    period: &str,
    (old_value, new_value): (&str, &str),
    (batch_id, key_id): (&str, &KeyId),
    revised_at: i64,
) -> RevisionRecord {
    RevisionRecord {
        period: period.into(),
        old_value: old_value.into(),
        new_value: new_value.into(),
        batch_id: batch_id.into(),
        key_id: key_id.to_string(),
        revised_at: at(revised_at),
    }
}

fn rejecting(stream: &Stream, key: &KeyId, id: &str, points: &[ValidPoint]) -> PreparedBatch {
    let rejected = vec![PointRejection {
        index: 1,
        reason: "value \"NaN\" is not a decimal number".into(),
    }];
    PreparedBatch::new(
        stream.id.clone(),
        key.clone(),
        id.into(),
        stream.definition.frequency,
        points.to_vec(),
        rejected,
    )
}

async fn points(store: &dyn Store, stream: &StreamId) -> Vec<PointRecord> {
    store.list_points(stream, None, None, 1_000).await.unwrap()
}

async fn periods(store: &dyn Store, stream: &StreamId) -> Vec<String> {
    let points = points(store, stream).await;
    points.into_iter().map(|p| p.period).collect()
}

async fn stream_now(store: &dyn Store, org: &TestOrg, stream: &Stream) -> Stream {
    store.get_stream(&org.id, &stream.id).await.unwrap()
}

pub async fn new_points_are_accepted_and_stored_as_sent(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Revenue").await;
    let sent = [
        point_from("2026-11-02", "1234.50", "inv-2"),
        point("2026-11-01", "-0.125"),
    ];
    let b1 = rejecting(&stream, &key, "b1", &sent);
    let outcome = commit(store, b1.clone(), at(10)).await;

    assert_eq!(outcome, PublishOutcome::committed(&b1, 0, at(10)));
    assert_eq!((outcome.batch_id(), outcome.accepted()), ("b1", 2));
    assert_eq!(outcome.revised(), 0);
    assert_eq!(outcome.rejected(), b1.rejected());
    assert!(!outcome.replayed());
    assert_eq!(outcome.committed_at(), at(10));
    assert_eq!(
        points(store, &stream.id).await,
        [
            stored("2026-11-01", "-0.125", None, ("b1", &key), 10, 0),
            stored("2026-11-02", "1234.50", Some("inv-2"), ("b1", &key), 10, 0),
        ],
        "values keep their exact text, scale included"
    );
    assert!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_replayed_batch_id_returns_the_stored_outcome_and_stores_nothing(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Revenue").await;
    let b1 = rejecting(&stream, &key, "b1", &[point("2026-11-01", "1")]);
    let original = commit(store, b1, at(10)).await;

    let changed = [point("2026-11-01", "2"), point("2026-11-02", "3")];
    let replay = commit(store, batch(&stream, &key, "b1", &changed), at(20)).await;
    assert_eq!(replay, original.clone().into_replay());
    assert!(replay.replayed());
    assert_eq!(replay.committed_at(), at(10));
    assert_eq!(
        replay.rejected().len(),
        1,
        "the original rejections come back"
    );

    assert_eq!(
        points(store, &stream.id).await,
        [stored("2026-11-01", "1", None, ("b1", &key), 10, 0)]
    );
    assert!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap()
            .is_empty()
    );
    let after = stream_now(store, &org, &stream).await;
    assert_eq!(after.point_count, 1);
    assert_eq!(after.latest_period.as_deref(), Some("2026-11-01"));
    assert_eq!(after.last_data_at, Some(at(10)));
    let keys = store.list_keys(&org.id, &stream.id).await.unwrap();
    assert_eq!(keys[0].last_used_at, Some(at(10)));
}

pub async fn a_changed_value_makes_a_revision(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, first_key) = daily_stream(store, &org, "Revenue").await;
    let second = new_key();
    store
        .add_key(&org.id, &stream.id, &second, at(1))
        .await
        .unwrap();
    let second_key = second.key_id;
    commit(
        store,
        batch(&stream, &first_key, "b1", &[point("2026-11-01", "10")]),
        at(10),
    )
    .await;

    let b2 = batch(&stream, &second_key, "b2", &[point("2026-11-01", "12")]);
    let outcome = commit(store, b2.clone(), at(20)).await;
    assert_eq!(outcome, PublishOutcome::committed(&b2, 1, at(20)));
    assert_eq!((outcome.accepted(), outcome.revised()), (1, 1));
    assert_eq!(
        points(store, &stream.id).await,
        [stored("2026-11-01", "12", None, ("b2", &second_key), 20, 1)]
    );
    // "12.0" is not the same text as "12": values are kept exactly, so it revises too.
    let b3 = batch(&stream, &first_key, "b3", &[point("2026-11-01", "12.0")]);
    assert_eq!(commit(store, b3, at(30)).await.revised(), 1);

    assert_eq!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap(),
        [
            revision("2026-11-01", ("10", "12"), ("b2", &second_key), 20),
            revision("2026-11-01", ("12", "12.0"), ("b3", &first_key), 30),
        ]
    );
    assert_eq!(points(store, &stream.id).await[0].revision_count, 2);
    assert_eq!(stream_now(store, &org, &stream).await.point_count, 1);
}

pub async fn an_unchanged_value_makes_no_revision(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Revenue").await;
    let sent = [
        point_from("2026-11-01", "10", "row-1"),
        point("2026-11-02", "20"),
    ];
    commit(store, batch(&stream, &key, "b1", &sent), at(10)).await;

    let again = batch(&stream, &key, "b2", &sent);
    let outcome = commit(store, again.clone(), at(20)).await;
    assert_eq!(outcome, PublishOutcome::committed(&again, 0, at(20)));
    assert_eq!(outcome.accepted(), 2, "accepted, though it changed nothing");
    assert_eq!(
        points(store, &stream.id).await,
        [
            stored("2026-11-01", "10", Some("row-1"), ("b1", &key), 10, 0),
            stored("2026-11-02", "20", None, ("b1", &key), 10, 0),
        ],
        "the points still name the batch that set them"
    );
    assert!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap()
            .is_empty()
    );
    let changed = store
        .points_updated_after(&stream.id, (at(10), None), 10)
        .await
        .unwrap();
    assert!(changed.is_empty(), "nothing changed after the first batch");
    assert_eq!(stream_now(store, &org, &stream).await.point_count, 2);
}

pub async fn a_changed_external_id_makes_a_revision(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Revenue").await;
    let first = [point_from("2026-11-01", "10", "row-1")];
    commit(store, batch(&stream, &key, "b1", &first), at(10)).await;

    let moved = [point_from("2026-11-01", "10", "row-2")];
    let outcome = commit(store, batch(&stream, &key, "b2", &moved), at(20)).await;
    assert_eq!(outcome.revised(), 1);
    let dropped = [point("2026-11-01", "10")];
    let outcome = commit(store, batch(&stream, &key, "b3", &dropped), at(30)).await;
    assert_eq!(
        outcome.revised(),
        1,
        "an external id taken away is a change too"
    );

    assert_eq!(
        points(store, &stream.id).await,
        [stored("2026-11-01", "10", None, ("b3", &key), 30, 2)]
    );
    assert_eq!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap(),
        [
            revision("2026-11-01", ("10", "10"), ("b2", &key), 20),
            revision("2026-11-01", ("10", "10"), ("b3", &key), 30),
        ]
    );
}

pub async fn two_batches_in_one_call_touching_one_period_revise_in_order(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Revenue").await;
    let b1 = batch(&stream, &key, "b1", &[point("2026-11-01", "1")]);
    let b2 = batch(
        &stream,
        &key,
        "b2",
        &[point("2026-11-01", "2"), point("2026-11-02", "5")],
    );
    let results = store
        .commit_batches(std::sync::Arc::new(vec![b1.clone(), b2.clone()]), at(10))
        .await
        .unwrap();
    assert_eq!(
        results,
        [
            Ok(PublishOutcome::committed(&b1, 0, at(10))),
            Ok(PublishOutcome::committed(&b2, 1, at(10))),
        ]
    );
    assert_eq!(
        points(store, &stream.id).await,
        [
            stored("2026-11-01", "2", None, ("b2", &key), 10, 1),
            stored("2026-11-02", "5", None, ("b2", &key), 10, 0),
        ]
    );
    assert_eq!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap(),
        [revision("2026-11-01", ("1", "2"), ("b2", &key), 10)]
    );
    let after = stream_now(store, &org, &stream).await;
    assert_eq!(
        (after.point_count, after.latest_period.as_deref()),
        (2, Some("2026-11-02"))
    );
}

pub async fn the_same_batch_id_on_two_streams_is_two_batches(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (signups, signups_key) = daily_stream(store, &org, "Signups").await;
    let (visits, visits_key) = daily_stream(store, &org, "Visits").await;
    let to_signups = batch(&signups, &signups_key, "b1", &[point("2026-11-01", "1")]);
    let to_visits = batch(&visits, &visits_key, "b1", &[point("2026-11-01", "2")]);
    let results = store
        .commit_batches(
            std::sync::Arc::new(vec![to_signups.clone(), to_visits.clone()]),
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(
        results,
        [
            Ok(PublishOutcome::committed(&to_signups, 0, at(10))),
            Ok(PublishOutcome::committed(&to_visits, 0, at(10))),
        ]
    );
    assert_eq!(points(store, &signups.id).await[0].value, "1");
    assert_eq!(points(store, &visits.id).await[0].value, "2");
    assert!(commit(store, to_visits, at(20)).await.replayed());
}

pub async fn a_commit_keeps_the_streams_count_latest_period_and_last_data(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let bookkeeping = |s: Stream| (s.point_count, s.latest_period, s.last_data_at);

    let first = [point("2026-11-05", "5"), point("2026-11-03", "3")];
    commit(store, batch(&stream, &key, "b1", &first), at(10)).await;
    assert_eq!(
        bookkeeping(stream_now(store, &org, &stream).await),
        (2, Some("2026-11-05".into()), Some(at(10)))
    );
    let older = [point("2026-11-04", "4"), point("2026-11-05", "6")];
    commit(store, batch(&stream, &key, "b2", &older), at(20)).await;
    assert_eq!(
        bookkeeping(stream_now(store, &org, &stream).await),
        (3, Some("2026-11-05".into()), Some(at(20))),
        "an older period and a revision count no new latest period"
    );
    let newer = [point("2026-11-07", "7")];
    commit(store, batch(&stream, &key, "b3", &newer), at(30)).await;
    let listed = store.list_streams(&org.id).await.unwrap();
    assert_eq!(
        bookkeeping(listed.into_iter().next().unwrap()),
        (4, Some("2026-11-07".into()), Some(at(30)))
    );
}

pub async fn a_commit_records_when_its_key_was_last_used(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, first) = daily_stream(store, &org, "Signups").await;
    let second = new_key();
    store
        .add_key(&org.id, &stream.id, &second, at(1))
        .await
        .unwrap();
    let (org_id, id) = (&org.id, &stream.id);
    let last_used = || async move {
        let keys = store.list_keys(org_id, id).await.unwrap();
        keys.into_iter().map(|k| k.last_used_at).collect::<Vec<_>>()
    };
    assert_eq!(last_used().await, [None, None]);
    commit(
        store,
        batch(&stream, &first, "b1", &[point("2026-11-01", "1")]),
        at(10),
    )
    .await;
    assert_eq!(last_used().await, [Some(at(10)), None]);
    let by_second = batch(&stream, &second.key_id, "b2", &[point("2026-11-02", "2")]);
    commit(store, by_second, at(20)).await;
    assert_eq!(last_used().await, [Some(at(10)), Some(at(20))]);
}

pub async fn a_batch_whose_points_were_all_rejected_is_remembered_and_stores_nothing(
    store: &dyn Store,
) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let empty = rejecting(&stream, &key, "b1", &[]);
    let outcome = commit(store, empty.clone(), at(10)).await;
    assert_eq!(outcome, PublishOutcome::committed(&empty, 0, at(10)));
    assert_eq!(outcome.accepted(), 0);

    let after = stream_now(store, &org, &stream).await;
    assert_eq!(
        (after.point_count, after.latest_period, after.last_data_at),
        (0, None, None)
    );
    assert!(points(store, &stream.id).await.is_empty());
    let replay = commit(store, empty, at(20)).await;
    assert_eq!(replay, outcome.into_replay());
}

pub async fn a_disabled_stream_refuses_its_batch_next_to_accepted_ones(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (off, off_key) = daily_stream(store, &org, "Signups").await;
    let (on, on_key) = daily_stream(store, &org, "Visits").await;
    let before = batch(&off, &off_key, "b0", &[point("2026-10-31", "0")]);
    let committed = commit(store, before.clone(), at(1)).await;
    store
        .set_stream_disabled(&org.id, &off.id, true, at(2))
        .await
        .unwrap();
    let refused = batch(&off, &off_key, "b1", &[point("2026-11-01", "1")]);
    let accepted = batch(&on, &on_key, "b1", &[point("2026-11-01", "2")]);
    let results = store
        .commit_batches(
            std::sync::Arc::new(vec![refused.clone(), accepted.clone(), before]),
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(
        results,
        [
            Err(CommitRefusal::Disabled(off.id.clone())),
            Ok(PublishOutcome::committed(&accepted, 0, at(10))),
            Ok(committed.into_replay()),
        ],
        "a batch committed before the stream was disabled is still acknowledged"
    );
    assert_eq!(periods(store, &off.id).await, ["2026-10-31"]);
    assert_eq!(stream_now(store, &org, &off).await.point_count, 1);
    assert_eq!(points(store, &on.id).await.len(), 1);

    store
        .set_stream_disabled(&org.id, &off.id, false, at(20))
        .await
        .unwrap();
    let outcome = commit(store, refused, at(30)).await;
    assert!(!outcome.replayed(), "a refused batch is not remembered");
    assert_eq!(periods(store, &off.id).await, ["2026-10-31", "2026-11-01"]);
}

pub async fn a_deleted_stream_refuses_its_batch_as_gone(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (gone, gone_key) = daily_stream(store, &org, "Signups").await;
    let (on, on_key) = daily_stream(store, &org, "Visits").await;
    let b1 = [point("2026-11-01", "1")];
    commit(store, batch(&gone, &gone_key, "b1", &b1), at(5)).await;
    store.delete_stream(&org.id, &gone.id).await.unwrap();

    let never = Stream {
        id: StreamId::generate(),
        ..gone.clone()
    };
    let accepted = batch(&on, &on_key, "b1", &b1);
    let results = store
        .commit_batches(
            std::sync::Arc::new(vec![
                batch(&gone, &gone_key, "b1", &b1),
                accepted.clone(),
                batch(&never, &gone_key, "b2", &b1),
            ]),
            at(10),
        )
        .await
        .unwrap();
    assert_eq!(
        results,
        [
            Err(CommitRefusal::StreamGone(gone.id.clone())),
            Ok(PublishOutcome::committed(&accepted, 0, at(10))),
            Err(CommitRefusal::StreamGone(never.id.clone())),
        ],
        "even a batch id the deleted stream had committed"
    );
    assert!(points(store, &gone.id).await.is_empty());
}

pub async fn a_batch_validated_against_another_frequency_is_refused(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let weekly = PreparedBatch::new(
        stream.id.clone(),
        key.clone(),
        "b1".into(),
        Frequency::Weekly,
        vec![point("2026-W48", "1")],
        Vec::new(),
    );
    let daily = batch(&stream, &key, "b2", &[point("2026-11-01", "2")]);
    let results = store
        .commit_batches(std::sync::Arc::new(vec![weekly, daily.clone()]), at(10))
        .await
        .unwrap();
    assert_eq!(
        results,
        [
            Err(CommitRefusal::FrequencyChanged(stream.id.clone())),
            Ok(PublishOutcome::committed(&daily, 0, at(10))),
        ]
    );
    assert_eq!(
        points(store, &stream.id).await,
        [stored("2026-11-01", "2", None, ("b2", &key), 10, 0)]
    );
    let checked_again = batch(&stream, &key, "b1", &[point("2026-11-02", "1")]);
    assert!(
        !commit(store, checked_again, at(20)).await.replayed(),
        "the refused batch id was not remembered"
    );
}

pub async fn prune_forgets_only_batches_accepted_before_the_cutoff(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    let sent = |id: &str, period: &str| batch(&stream, &key, id, &[point(period, "1")]);
    for (id, period, second) in [
        ("b1", "2026-11-01", 10),
        ("b2", "2026-11-02", 20),
        ("b3", "2026-11-03", 30),
    ] {
        commit(store, sent(id, period), at(second)).await;
    }

    assert_eq!(store.prune_batches(at(20)).await.unwrap(), 1);
    assert_eq!(store.prune_batches(at(20)).await.unwrap(), 0);
    let results = store
        .commit_batches(
            std::sync::Arc::new(vec![
                sent("b1", "2026-11-01"),
                sent("b2", "2026-11-02"),
                sent("b3", "2026-11-03"),
            ]),
            at(40),
        )
        .await
        .unwrap();
    let replayed: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap().replayed())
        .collect();
    assert_eq!(
        replayed,
        [false, true, true],
        "b2 was accepted at the cutoff, not before"
    );
    assert_eq!(store.prune_batches(at(41)).await.unwrap(), 3);
}

pub async fn a_pruned_batch_id_is_committed_again_as_new(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Signups").await;
    commit(
        store,
        batch(&stream, &key, "b1", &[point("2026-11-01", "1")]),
        at(10),
    )
    .await;
    assert_eq!(store.prune_batches(at(11)).await.unwrap(), 1);

    let again = batch(&stream, &key, "b1", &[point("2026-11-01", "2")]);
    let outcome = commit(store, again.clone(), at(20)).await;
    assert_eq!(outcome, PublishOutcome::committed(&again, 1, at(20)));
    assert_eq!(
        store
            .list_revisions(&stream.id, "2026-11-01")
            .await
            .unwrap(),
        [revision("2026-11-01", ("1", "2"), ("b1", &key), 20)]
    );
    assert!(
        commit(store, again, at(30)).await.replayed(),
        "remembered again"
    );
}

/// A store shared by several servers announces its commits (this server's included)
/// on its change feed, with the stream and the commit's time; a store that is its
/// database's only writer has no feed.
pub async fn a_shared_store_announces_each_commit_on_its_change_feed(store: &dyn Store) {
    let Some(mut changes) = store.changes() else {
        return;
    };
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Revenue").await;
    let outcome = commit(
        store,
        batch(&stream, &key, "b1", &[point("2026-11-01", "1")]),
        at(10),
    )
    .await;
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match changes.recv().await {
                Ok(crate::store::Change::Committed { stream: id, at }) if id == stream.id => {
                    return at;
                }
                Ok(_) => continue,
                Err(e) => panic!("the change feed failed: {e}"),
            }
        }
    })
    .await
    .expect("the commit is announced within 10 s");
    assert_eq!(heard, outcome.committed_at());
}

pub async fn a_large_batch_keeps_every_character_and_its_revisions_far_apart(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let (stream, key) = daily_stream(store, &org, "Orders").await;
    let day = |n: i64| {
        jiff::civil::date(2020, 1, 1)
            .checked_add(jiff::Span::new().days(n))
            .unwrap()
            .to_string()
    };
    // Every other day over 400 days: enough points for a bulk path, with text that
    // needs escaping in any wire format, and no external id on some.
    let odd = [
        "tab\there",
        "line\nbreak",
        "carriage\rreturn",
        "back\\slash",
        "\\N",
        "«Zürich» 東京",
    ];
    let external = |n: i64| (n % 7 != 0).then(|| format!("{}-{n}", odd[n as usize % odd.len()]));
    let first: Vec<ValidPoint> = (0..200)
        .map(|n| ValidPoint {
            period: day(2 * n),
            value: format!("{n}.5"),
            external_id: external(n),
        })
        .collect();
    let outcome = commit(store, batch(&stream, &key, "b1", &first), at(10)).await;
    assert_eq!(outcome.revised(), 0);
    let expected: Vec<PointRecord> = first
        .iter()
        .map(|p| {
            let external_id = p.external_id.as_deref();
            stored(&p.period, &p.value, external_id, ("b1", &key), 10, 0)
        })
        .collect();
    assert_eq!(points(store, &stream.id).await, expected);

    // Below the latest period: the first and last stored days change, one in the
    // middle stays as it was, the odd days in between are new, and so is a day a
    // year before the first.
    let mut second = vec![
        point("2019-01-01", "3"),
        point("2020-01-01", "-1"),
        ValidPoint {
            period: day(398),
            value: "199.5".into(),
            external_id: None,
        },
        ValidPoint {
            period: day(200),
            value: "100.5".into(),
            external_id: external(100),
        },
    ];
    second.extend((0..100).map(|n| point(&day(2 * n + 1), "7")));
    let outcome = commit(store, batch(&stream, &key, "b2", &second), at(20)).await;
    assert_eq!(
        outcome.revised(),
        2,
        "a changed value and a dropped external id are revisions; an unchanged point is not"
    );
    let now = points(store, &stream.id).await;
    assert_eq!(now.len(), 301);
    assert_eq!(
        now[..2],
        [
            stored("2019-01-01", "3", None, ("b2", &key), 20, 0),
            stored("2020-01-01", "-1", None, ("b2", &key), 20, 1)
        ]
    );
    assert_eq!(
        now.last().unwrap(),
        &stored(&day(398), "199.5", None, ("b2", &key), 20, 1)
    );
    let middle = now.iter().find(|p| p.period == day(200)).unwrap();
    assert_eq!((middle.batch_id.as_str(), middle.revision_count), ("b1", 0));
    assert_eq!(stream_now(store, &org, &stream).await.point_count, 301);
}
