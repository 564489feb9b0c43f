//! The publish path seen from a publisher, against the real server binary: signed
//! batches are stored exactly, every kind of bad envelope is refused with the right
//! code, bad points are named by index, and periods are placed in the stream's calendar.

mod common;

use common::{
    TestServer, all_points, batch, day, point, publish_envelope, sealed, show, stream_request,
    values,
};
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use kpistream::client::{Credential, new_batch, point_at, point_for_period};
use kpistream::proto;
use kpistream::proto::Frequency::{Daily, Weekly};
use kpistream::signature::pae;
use tonic::Code;

/// The order of the Ed25519 group, little-endian.
const GROUP_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// `S + L` in the signature's second half: the same signature in a non-canonical form.
fn malleate(signature: &[u8]) -> Vec<u8> {
    let mut out = signature.to_vec();
    let mut carry = 0u16;
    for (i, l) in GROUP_ORDER_LE.iter().enumerate() {
        let sum = u16::from(out[32 + i]) + u16::from(*l) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 32 bytes for a canonical S");
    out
}

/// The same key and key id, claiming another stream: it signs
/// `PAE("kpistream.v1.Batch/<stream_id>", ..)`, which the SDK never would.
fn same_key_for_stream(credential: &Credential, stream_id: &str) -> Credential {
    let text = credential.expose_secret();
    let seed = text.rsplit('.').next().unwrap();
    format!("kpik1.{stream_id}.{}.{seed}", credential.key_id())
        .parse()
        .unwrap()
}

fn rejections(response: &proto::PublishResponse) -> Vec<(u32, String)> {
    response
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.clone()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_batch_is_stored_exactly_and_can_be_queried() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Revenue").await;
    let client = server.client().await;

    let envelope = sealed(
        &credential,
        vec![
            point_for_period("2026-11-22", "1234.50", "inv-1"),
            point_for_period("2026-11-23", "-0.125", ""),
        ],
    );
    let response = publish_envelope(&server.anonymous_client().await, envelope, false)
        .await
        .expect("a well-signed batch is accepted");

    assert_eq!(response.accepted, 2);
    assert!(response.rejected.is_empty());
    assert!(!response.replayed);
    assert!(response.committed_at.is_some());
    let points = all_points(&client, &stream).await;
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0].period.as_str(), points[0].value.as_str()),
        ("2026-11-22", "1234.50")
    );
    assert_eq!(points[0].external_id, "inv-1");
    assert_eq!(points[0].batch_id, response.batch_id);
    assert_eq!(points[0].key_id, credential.key_id().as_str());
    assert_eq!(points[0].revision_count, 0);
    assert_eq!(
        (points[1].period.as_str(), points[1].value.as_str()),
        ("2026-11-23", "-0.125")
    );
    let latest = client
        .query()
        .latest(proto::LatestRequest {
            stream_id: stream.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (latest.period.as_str(), latest.value.as_str()),
        ("2026-11-23", "-0.125")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_one_flipped_byte_is_refused_as_unauthenticated() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Flipped").await;
    let client = server.client().await;
    let mut envelope = sealed(&credential, vec![point("2026-11-20", "10")]);
    let last = envelope.batch.len() - 1;
    envelope.batch[last] ^= 0x01;

    let err = publish_envelope(&client, envelope, false)
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("does not verify"), "{err:?}");
    assert!(values(&client, &stream).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_signed_for_another_stream_is_refused_as_unauthenticated() {
    let server = TestServer::start();
    let (target, credential) = server.daily_stream("Target").await;
    let (other, _) = server.daily_stream("Other").await;
    let client = server.client().await;

    // Signed with the target's own key, but over PAE("kpistream.v1.Batch/<other>", ..).
    let bytes = prost::Message::encode_to_vec(&new_batch(vec![point("2026-11-20", "10")]));
    let signature = same_key_for_stream(&credential, &other).sign(&bytes);
    assert_ne!(
        pae(&target, &bytes),
        pae(&other, &bytes),
        "the stream id is part of what is signed"
    );
    let envelope = proto::SignedBatch {
        stream_id: target.clone(),
        key_id: credential.key_id().to_string(),
        batch: bytes,
        signature: signature.to_vec(),
    };

    let err = publish_envelope(&client, envelope, false)
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(values(&client, &target).await.is_empty());
    assert!(values(&client, &other).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envelope_naming_another_stream_than_its_key_is_refused() {
    let server = TestServer::start();
    let (target, credential) = server.daily_stream("Target").await;
    let (other, _) = server.daily_stream("Other").await;
    let client = server.client().await;

    // The signature is right for `other`, but the key belongs to `target`.
    let envelope =
        same_key_for_stream(&credential, &other).seal(&new_batch(vec![point("2026-11-20", "10")]));

    let err = publish_envelope(&client, envelope, false)
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(values(&client, &target).await.is_empty());
    assert!(values(&client, &other).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_signed_by_a_revoked_key_is_refused_while_other_keys_still_work() {
    let server = TestServer::start();
    let (stream, first) = server.daily_stream("Revoked").await;
    let client = server.client().await;
    let (_, second) = client.rotate_key(&stream).await.unwrap();
    client
        .publish(&first, vec![point("2026-11-19", "1")], false)
        .await
        .expect("the first key works before it is revoked");

    client
        .revoke_key(&stream, first.key_id().as_str())
        .await
        .unwrap();
    let err = client
        .publish(&first, vec![point("2026-11-20", "2")], false)
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("revoked"), "{err:?}");
    client
        .publish(&second, vec![point("2026-11-21", "3")], false)
        .await
        .expect("the other key still works");
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-19", "1"), ("2026-11-21", "3")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_at_more_than_five_minutes_off_is_refused_and_just_under_is_accepted() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Skew").await;
    let client = server.client().await;
    let signed = |offset_secs: i64, period: &str| {
        let at = Timestamp::now() + SignedDuration::from_secs(offset_secs);
        let id = format!("skew{offset_secs}");
        credential.seal(&batch(&id, at, vec![point(period, "1")]))
    };

    for offset in [-301, 301] {
        let err = publish_envelope(&client, signed(offset, "2026-11-01"), false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{offset} s: {err:?}");
        assert!(err.message().contains("clock"), "{err:?}");
    }
    for (offset, period) in [(-299, "2026-11-02"), (299, "2026-11-03")] {
        let response = publish_envelope(&client, signed(offset, period), false)
            .await
            .unwrap_or_else(|e| panic!("{offset} s off is within the skew: {e:?}"));
        assert_eq!(response.accepted, 1);
    }
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-02", "1"), ("2026-11-03", "1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_allowed_skew_is_configurable() {
    let server = TestServer::start_with(&["--max-skew-secs", "10"]);
    let (stream, credential) = server.daily_stream("Tight clock").await;
    let client = server.client().await;
    let signed = |offset_secs: i64, period: &str| {
        let at = Timestamp::now() + SignedDuration::from_secs(offset_secs);
        credential.seal(&batch(
            &format!("tight{offset_secs}"),
            at,
            vec![point(period, "1")],
        ))
    };

    let err = publish_envelope(&client, signed(-11, "2026-11-01"), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("at most 10 s"), "{err:?}");
    publish_envelope(&client, signed(-9, "2026-11-02"), false)
        .await
        .expect("9 s off is within a 10 s skew");
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-02", "1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_canonical_signature_is_refused_although_the_canonical_one_verifies() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Malleable").await;
    let client = server.client().await;
    let envelope = sealed(&credential, vec![point("2026-11-20", "10")]);
    let mut malleable = envelope.clone();
    malleable.signature = malleate(&envelope.signature);
    assert_ne!(malleable.signature, envelope.signature);

    let err = publish_envelope(&client, malleable, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(values(&client, &stream).await.is_empty());

    publish_envelope(&client, envelope, false)
        .await
        .expect("the canonical signature of the same batch is accepted");
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-20", "10")])
    );
}

#[test]
fn adding_the_group_order_to_s_gives_the_independent_malleable_vector() {
    // From ../shared/signing-vectors.json (made with libsodium): "one point" and
    // "non-canonical S (S + L)".
    let canonical = hex::decode(
        "32b12867e7e0eadf6b34cedd6859b6c95879b07ad1a8b4e0440f535e4b82b30d\
         80b80c8e3129fd97c3b9f6f78064326270adbca26ee45ce49be58039f166680e",
    )
    .unwrap();
    let malleable = hex::decode(
        "32b12867e7e0eadf6b34cedd6859b6c95879b07ad1a8b4e0440f535e4b82b30d\
         6d8c02eb4b8c0ff09956ee9a5f5e117770adbca26ee45ce49be58039f166681e",
    )
    .unwrap();
    assert_eq!(malleate(&canonical), malleable);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_envelopes_are_refused_as_invalid_argument() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Malformed").await;
    let client = server.client().await;
    let good = sealed(&credential, vec![point("2026-11-20", "10")]);

    let no_batch = client
        .ingest()
        .publish(proto::PublishRequest {
            batch: None,
            all_or_nothing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(no_batch.code(), Code::InvalidArgument, "{no_batch:?}");

    let mut short_signature = good.clone();
    short_signature.signature.truncate(10);
    let err = publish_envelope(&client, short_signature, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("64 bytes"), "{err:?}");

    let mut bad_id = good.clone();
    bad_id.stream_id = "not a stream id!".into();
    let err = publish_envelope(&client, bad_id, false).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Correctly signed bytes that are not a Batch message.
    let garbage = vec![0xff, 0xff, 0xff];
    let undecodable = proto::SignedBatch {
        signature: credential.sign(&garbage).to_vec(),
        batch: garbage,
        ..good.clone()
    };
    let err = publish_envelope(&client, undecodable, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    assert!(values(&client, &stream).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_without_a_batch_id_is_refused_as_invalid_argument() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("No id").await;
    let client = server.client().await;
    let envelope = credential.seal(&batch("", Timestamp::now(), vec![point("2026-11-20", "1")]));

    let err = publish_envelope(&client, envelope, false)
        .await
        .unwrap_err();

    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("batch_id"), "{err:?}");
    assert!(values(&client, &stream).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_batch_returns_the_original_result_and_stores_nothing_new() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Replay").await;
    let client = server.client().await;
    let id = uuid::Uuid::now_v7().to_string();
    let first_envelope = credential.seal(&batch(
        &id,
        Timestamp::now(),
        vec![point("2026-11-20", "10"), point("2026-11-21", "NaN")],
    ));
    let first = publish_envelope(&client, first_envelope.clone(), false)
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.accepted, 1);

    // The same bytes again, as a retry after a lost answer would send them.
    let retry = publish_envelope(&client, first_envelope, false)
        .await
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(
        proto::PublishResponse {
            replayed: false,
            ..retry.clone()
        },
        first,
        "a replay answers the first result"
    );

    // A different batch under the same id is the same batch as far as the server goes.
    let reused = credential.seal(&batch(
        &id,
        Timestamp::now(),
        vec![point("2026-11-20", "99"), point("2026-11-22", "5")],
    ));
    let again = publish_envelope(&client, reused, false).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.accepted, first.accepted);
    assert_eq!(again.committed_at, first.committed_at);
    assert_eq!(rejections(&again), rejections(&first));

    let points = all_points(&client, &stream).await;
    assert_eq!(points.len(), 1);
    assert_eq!(
        (points[0].period.as_str(), points[0].value.as_str()),
        ("2026-11-20", "10")
    );
    assert_eq!(points[0].revision_count, 0);
    let revisions = client
        .query()
        .list_revisions(proto::ListRevisionsRequest {
            stream_id: stream.clone(),
            period: "2026-11-20".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revisions;
    assert!(revisions.is_empty(), "{revisions:?}");
    assert_eq!(show(&client, &stream).await.stream.unwrap().point_count, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_points_get_a_reason_each_and_the_valid_ones_are_stored() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Mixed").await;
    let client = server.client().await;

    let response = client
        .publish(
            &credential,
            vec![
                point("2026-11-18", "1"),
                point("2026-W47", "2"),
                point("2026-11-19", "NaN"),
                point("2026-11-20", "1e999"),
                point("2026-11-21", "4.25"),
                point("2026-02-30", "5"),
                point("2026-11-18", "6"),
            ],
            false,
        )
        .await
        .expect("a batch with some bad points is still accepted");

    assert_eq!(response.accepted, 2);
    let rejected = rejections(&response);
    let indices: Vec<u32> = rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, [1, 2, 3, 5, 6], "{rejected:?}");
    let reason = |i: usize| rejected[i].1.as_str();
    assert!(
        reason(0).contains("weekly") && reason(0).contains("daily"),
        "{rejected:?}"
    );
    assert!(reason(1).contains("NaN"), "{rejected:?}");
    assert!(
        reason(2).contains("1e999") && reason(2).contains("exact decimal"),
        "{rejected:?}"
    );
    assert!(reason(3).contains("calendar"), "{rejected:?}");
    assert!(reason(4).contains("already has a value"), "{rejected:?}");
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-18", "1"), ("2026-11-21", "4.25")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_10_001_points_is_refused_and_10_000_are_accepted() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Big").await;
    let client = server.client().await;
    let points = |n: i64| (0..n).map(|i| point(&day(i), "1")).collect::<Vec<_>>();

    let err = client
        .publish(&credential, points(10_001), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("10001") && err.message().contains("10000"),
        "the message says how many and the limit: {err:?}"
    );
    assert!(values(&client, &stream).await.is_empty());

    let response = client
        .publish(&credential, points(10_000), false)
        .await
        .expect("exactly the limit is accepted");
    assert_eq!(response.accepted, 10_000);
    assert_eq!(all_points(&client, &stream).await.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_points_per_batch_limit_is_configurable() {
    let server = TestServer::start_with(&["--max-points-per-batch", "3"]);
    let (_, credential) = server.daily_stream("Small batches").await;
    let client = server.client().await;
    let points = |n: i64| (0..n).map(|i| point(&day(i), "1")).collect::<Vec<_>>();

    let err = client
        .publish(&credential, points(4), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("at most 3"), "{err:?}");
    client
        .publish(&credential, points(3), false)
        .await
        .expect("three points fit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_value_for_a_period_replaces_it_and_keeps_a_revision() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Revised").await;
    let client = server.client().await;
    let first = client
        .publish(&credential, vec![point("2026-11-20", "10")], false)
        .await
        .unwrap();
    assert_eq!(first.revised, 0);

    let second = client
        .publish(&credential, vec![point("2026-11-20", "12.50")], false)
        .await
        .unwrap();
    assert_eq!((second.accepted, second.revised), (1, 1));

    let points = all_points(&client, &stream).await;
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value, "12.50");
    assert_eq!(points[0].revision_count, 1);
    assert_eq!(points[0].batch_id, second.batch_id);
    let revisions = client
        .query()
        .list_revisions(proto::ListRevisionsRequest {
            stream_id: stream.clone(),
            period: "2026-11-20".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revisions;
    assert_eq!(revisions.len(), 1);
    let revision = &revisions[0];
    assert_eq!(
        (revision.old_value.as_str(), revision.new_value.as_str()),
        ("10", "12.50")
    );
    assert_eq!(revision.period, "2026-11-20");
    assert_eq!(revision.batch_id, second.batch_id);
    assert_eq!(revision.key_id, credential.key_id().as_str());
    assert!(revision.revised_at.is_some());
    assert_eq!(show(&client, &stream).await.stream.unwrap().point_count, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_are_placed_in_the_day_of_the_stream_time_zone() {
    let server = TestServer::start();
    let (paris, paris_key) = server
        .create_stream(stream_request("Paris", Daily, "Europe/Paris"))
        .await;
    let (utc, utc_key) = server
        .create_stream(stream_request("UTC", Daily, "UTC"))
        .await;
    let client = server.client().await;
    let late: Timestamp = "2026-11-23T23:30:00Z".parse().unwrap();
    let before_midnight_in_paris: Timestamp = "2026-11-22T22:59:59Z".parse().unwrap();

    for credential in [&paris_key, &utc_key] {
        client
            .publish(
                credential,
                vec![
                    point_at(late, "1", ""),
                    point_at(before_midnight_in_paris, "2", ""),
                ],
                false,
            )
            .await
            .unwrap();
    }

    assert_eq!(
        values(&client, &paris.id).await,
        pairs(&[("2026-11-22", "2"), ("2026-11-24", "1")])
    );
    assert_eq!(
        values(&client, &utc.id).await,
        pairs(&[("2026-11-22", "2"), ("2026-11-23", "1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_around_new_year_land_in_iso_week_53_or_week_1() {
    let server = TestServer::start();
    let (weekly, credential) = server
        .create_stream(stream_request("Weekly", Weekly, "UTC"))
        .await;
    let client = server.client().await;
    let sunday: Timestamp = "2021-01-03T12:00:00Z".parse().unwrap();
    let monday: Timestamp = "2021-01-04T00:00:00Z".parse().unwrap();

    let response = client
        .publish(
            &credential,
            vec![
                point_at(sunday, "53", ""),
                point_at(monday, "1", ""),
                point("2021-W53", "0"),
            ],
            false,
        )
        .await
        .unwrap();

    assert_eq!(response.accepted, 2);
    let rejected = rejections(&response);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, 2, "2021 has no week 53: {rejected:?}");
    assert_eq!(
        values(&client, &weekly.id).await,
        pairs(&[("2020-W53", "53"), ("2021-W01", "1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_stream_loses_its_points_and_its_credential_stops_working() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Doomed").await;
    let client = server.client().await;
    client
        .publish(
            &credential,
            vec![point("2026-11-20", "1"), point("2026-11-21", "2")],
            false,
        )
        .await
        .unwrap();
    client
        .publish(&credential, vec![point("2026-11-21", "3")], false)
        .await
        .unwrap();

    let deleted = client
        .admin()
        .delete_stream(proto::StreamRef {
            stream_id: stream.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            deleted.points_deleted,
            deleted.revisions_deleted,
            deleted.keys_deleted
        ),
        (2, 1, 1)
    );

    let err = client
        .query()
        .list_points(proto::ListPointsRequest {
            stream_id: stream.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .query()
        .latest(proto::LatestRequest {
            stream_id: stream.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client
        .publish(&credential, vec![point("2026-11-22", "4")], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_stream_refuses_publishes_until_it_is_enabled() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Paused").await;
    let client = server.client().await;
    let reference = || proto::StreamRef {
        stream_id: stream.clone(),
    };

    let disabled = client
        .admin()
        .disable_stream(reference())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.status, proto::StreamStatus::Disabled as i32);
    let err = client
        .publish(&credential, vec![point("2026-11-23", "1")], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("disabled"), "{err:?}");
    assert!(values(&client, &stream).await.is_empty());

    let enabled = client
        .admin()
        .enable_stream(reference())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enabled.status, proto::StreamStatus::Pending as i32);
    client
        .publish(&credential, vec![point("2026-11-23", "1")], false)
        .await
        .expect("an enabled stream takes data again");
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-23", "1")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_accepted_point_makes_a_pending_stream_active() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Fresh").await;
    let client = server.client().await;
    let status = |detail: proto::StreamDetail| detail.stream.unwrap().status;
    assert_eq!(
        status(show(&client, &stream).await),
        proto::StreamStatus::Pending as i32
    );

    // A refused point does not count as data.
    let response = client
        .publish(&credential, vec![point("2026-11-23", "NaN")], false)
        .await
        .unwrap();
    assert_eq!(response.accepted, 0);
    assert_eq!(
        status(show(&client, &stream).await),
        proto::StreamStatus::Pending as i32
    );

    let today = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    client
        .publish(&credential, vec![point(&today.to_string(), "1")], false)
        .await
        .unwrap();
    assert_eq!(
        status(show(&client, &stream).await),
        proto::StreamStatus::Active as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_latest_period_is_old_reads_as_stale_until_new_data_arrives() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Late").await;
    let client = server.client().await;
    let status = |detail: proto::StreamDetail| detail.stream.unwrap().status;

    client
        .publish(&credential, vec![point("2020-01-01", "1")], false)
        .await
        .unwrap();
    assert_eq!(
        status(show(&client, &stream).await),
        proto::StreamStatus::Stale as i32
    );

    let today = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    client
        .publish(&credential, vec![point(&today.to_string(), "2")], false)
        .await
        .unwrap();
    assert_eq!(
        status(show(&client, &stream).await),
        proto::StreamStatus::Active as i32
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_stream_answers_each_batch_in_order_and_a_bad_one_in_band() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Streamed").await;
    let client = server.client().await;
    let mut envelopes: Vec<proto::SignedBatch> = (0..6)
        .map(|i| sealed(&credential, vec![point(&day(i), &i.to_string())]))
        .collect();
    let bad = 3;
    let last = envelopes[bad].batch.len() - 1;
    envelopes[bad].batch[last] ^= 0x01;
    let batch_ids: Vec<String> = envelopes
        .iter()
        .map(|e| {
            <proto::Batch as prost::Message>::decode(e.batch.as_slice())
                .map(|b| b.batch_id)
                .unwrap_or_default()
        })
        .collect();
    let requests = envelopes.into_iter().map(|e| proto::PublishRequest {
        batch: Some(e),
        all_or_nothing: false,
    });

    let answers: Vec<proto::PublishResponse> = client
        .ingest()
        .publish_stream(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.expect("the stream itself does not fail"))
        .collect()
        .await;

    assert_eq!(answers.len(), 6, "one answer per request");
    for (i, answer) in answers.iter().enumerate() {
        if i == bad {
            let error = answer
                .error
                .as_ref()
                .expect("the bad batch is answered in-band");
            assert_eq!(error.code, Code::Unauthenticated as i32, "{error:?}");
            assert!(!error.message.is_empty());
            assert_eq!(answer.accepted, 0);
            assert_eq!(
                answer.batch_id, batch_ids[i],
                "a failed batch is named by the id it claims"
            );
        } else {
            assert!(answer.error.is_none(), "batch {i}: {answer:?}");
            assert_eq!(
                answer.batch_id, batch_ids[i],
                "answers keep the request order"
            );
            assert_eq!(answer.accepted, 1);
        }
    }
    let expected: Vec<(String, String)> = [0, 1, 2, 4, 5]
        .iter()
        .map(|i| (day(*i), i.to_string()))
        .collect();
    assert_eq!(values(&client, &stream).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn all_or_nothing_refuses_the_whole_batch_when_one_point_is_bad() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Strict").await;
    let client = server.client().await;
    let points = vec![
        point("2026-11-20", "1"),
        point("2026-11-21", "Infinity"),
        point("2026-11-22", "3"),
    ];

    let err = client
        .publish(&credential, points.clone(), true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("point 1") && err.message().contains("nothing was stored"),
        "{err:?}"
    );
    assert!(values(&client, &stream).await.is_empty());
    assert_eq!(show(&client, &stream).await.stream.unwrap().point_count, 0);

    let response = client
        .publish(
            &credential,
            vec![points[0].clone(), points[2].clone()],
            true,
        )
        .await
        .expect("an all-good batch passes all_or_nothing");
    assert_eq!(response.accepted, 2);
    assert_eq!(
        values(&client, &stream).await,
        pairs(&[("2026-11-20", "1"), ("2026-11-22", "3")])
    );
}

/// While another connection holds the database's write lock (as an admin change or a
/// backup may), publishes that arrive wait in the writer's queue, and are committed
/// together once it is free: a few transactions, not one per publish.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_single_point_publishes_share_commit_transactions() {
    const PUBLISHES: usize = 200;
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Sign-ups").await;
    // Sealed beforehand, so that the publishes reach the server together.
    let envelopes: Vec<proto::SignedBatch> = (0..PUBLISHES)
        .map(|i| {
            sealed(
                &credential,
                vec![point_for_period(&day(i as i64), &i.to_string(), "")],
            )
        })
        .collect();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.anonymous_client().await);
    }
    let before = server.metric("kpistream_commit_transactions_total");

    // The test holds what the writer needs first: SQLite's write lock, or on PostgreSQL
    // the stream's row (the writer locks it before anything else).
    let mut lock = common::WriteLock::take(&server, &stream).await;
    let publishes = futures::future::join_all(
        envelopes
            .into_iter()
            .enumerate()
            .map(|(i, envelope)| publish_envelope(&clients[i % clients.len()], envelope, false)),
    );
    let release = async {
        // Long enough for the publishes to arrive (the writer waits up to 10 s for a lock).
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        lock.release().await;
    };
    let (responses, ()) = tokio::join!(publishes, release);

    let transactions = server.metric("kpistream_commit_transactions_total") - before;
    for response in responses {
        assert_eq!(response.expect("each publish is accepted").accepted, 1);
    }
    let points = all_points(&server.client().await, &stream).await;
    assert_eq!(points.len(), PUBLISHES);
    println!("{PUBLISHES} publishes committed in {transactions} transactions");
    assert!(
        transactions >= 1.0 && transactions <= (PUBLISHES / 10) as f64,
        "{PUBLISHES} concurrent publishes took {transactions} commit transactions; \
         the writer should group them"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_periods_revisions_come_in_pages_that_make_its_whole_history() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Revised often").await;
    let client = server.client().await;
    for value in 0..7 {
        let sealed = sealed(&credential, vec![point("2026-11-20", &value.to_string())]);
        publish_envelope(&client, sealed, false).await.unwrap();
    }
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .query()
            .list_revisions(proto::ListRevisionsRequest {
                stream_id: stream.clone(),
                period: "2026-11-20".into(),
                page_size: 4,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(
            page.revisions
                .iter()
                .map(|r| format!("{}->{}", r.old_value, r.new_value))
                .collect::<Vec<_>>(),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        pages,
        [vec!["0->1", "1->2", "2->3", "3->4"], vec!["4->5", "5->6"]]
    );
    let all = client.revisions(&stream, "2026-11-20").await.unwrap();
    assert_eq!(all.len(), 6, "the SDK follows the pages");
}
