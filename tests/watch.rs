//! `Query.Watch`: points arrive as they are committed, to readers only, and the watch
//! ends when access goes.

mod common;

use std::time::Duration;

use common::{TestServer, point};
use kpistream::client::Client;
use kpistream::proto;
use tonic::Code;

async fn next(
    points: &mut tonic::Streaming<proto::DataPoint>,
) -> Result<proto::DataPoint, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(10), points.message())
        .await
        .expect("a point or an error within 10 s")
        .map(|p| p.expect("the watch goes on"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_sends_the_latest_point_then_each_committed_point_of_its_stream_only() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Watched").await;
    let (_, other_credential) = server.daily_stream("Other").await;
    let client = server.client().await;
    let publisher = server.anonymous_client().await;
    publisher
        .publish(&credential, vec![point("2026-11-01", "1")], false)
        .await
        .unwrap();

    let mut points = client.watch(&stream, true).await.unwrap();
    assert_eq!(
        next(&mut points).await.unwrap().value,
        "1",
        "the latest point first"
    );

    publisher
        .publish(&other_credential, vec![point("2026-11-02", "99")], false)
        .await
        .unwrap();
    publisher
        .publish(
            &credential,
            vec![point("2026-11-02", "2"), point("2026-11-03", "3.50")],
            false,
        )
        .await
        .unwrap();
    let second = next(&mut points).await.unwrap();
    let third = next(&mut points).await.unwrap();
    assert_eq!(
        (second.period.as_str(), second.value.as_str()),
        ("2026-11-02", "2")
    );
    assert_eq!(
        (third.period.as_str(), third.value.as_str()),
        ("2026-11-03", "3.50")
    );
    assert!(!second.batch_id.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_is_for_readers_and_ends_when_the_token_is_revoked() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Guarded").await;
    let admin = server.client().await;
    admin
        .create_user("ada", kpistream::client::Role::Member)
        .await
        .unwrap();
    let (_, secret) = admin
        .create_token("watch", Some("ada"), None)
        .await
        .unwrap();
    let ada = Client::connect(&server.grpc, Some(secret)).await.unwrap();

    let refused = ada
        .watch(&stream, false)
        .await
        .expect_err("no grant, no watch");
    assert_eq!(refused.code(), Code::NotFound);

    admin.add_grant(&stream, "user:ada").await.unwrap();
    let mut points = ada.watch(&stream, false).await.unwrap();
    let publisher = server.anonymous_client().await;
    publisher
        .publish(&credential, vec![point("2026-11-01", "1")], false)
        .await
        .unwrap();
    assert_eq!(next(&mut points).await.unwrap().value, "1");

    let tokens = admin.tokens(Some("ada"), 0).await.unwrap();
    admin.revoke_token(&tokens[0].id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publisher
        .publish(&credential, vec![point("2026-11-02", "2")], false)
        .await
        .unwrap();
    let ended = next(&mut points)
        .await
        .expect_err("a revoked token ends the watch");
    assert_eq!(ended.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_watch_does_not_hold_up_a_shutdown() {
    let mut server = TestServer::start();
    let (stream, _) = server.daily_stream("Open").await;
    let client = server.client().await;
    let mut points = client.watch(&stream, false).await.unwrap();
    let status = server.terminate();
    assert!(
        status.success(),
        "serve exits 0 with a watch open: {status:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(10), points.message())
        .await
        .expect("the watch ends with the server");
    assert!(
        !matches!(end, Ok(Some(_))),
        "no point after shutdown: {end:?}"
    );
}

/// Batches committed in one transaction share its time; the watcher gets every one of
/// them, not only the first.
#[tokio::test(flavor = "multi_thread")]
async fn every_batch_of_one_commit_reaches_the_watcher() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Grouped").await;
    let client = server.client().await;
    let mut points = client.watch(&stream, false).await.unwrap();
    let publisher = server.anonymous_client().await;
    let before = server.metric("kpistream_commit_transactions_total");

    // The writer takes the first publish and waits for the lock the test holds; the two
    // that follow queue behind it, and are committed together once it is released.
    let mut lock = common::WriteLock::take(&server, &stream).await;
    let first = publisher.publish(&credential, vec![point("2026-11-01", "1")], false);
    let grouped = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::join!(
            publisher.publish(
                &credential,
                vec![point("2026-11-02", "2"), point("2026-11-04", "4")],
                false
            ),
            publisher.publish(
                &credential,
                vec![point("2026-11-03", "3"), point("2026-11-05", "5")],
                false
            )
        )
    };
    let release = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        lock.release().await;
    };
    let (first, (a, b), ()) = tokio::join!(first, grouped, release);
    for answer in [first, a, b] {
        answer.expect("accepted");
    }
    assert_eq!(
        server.metric("kpistream_commit_transactions_total") - before,
        2.0,
        "the first publish alone, then the two that queued behind it together"
    );

    let mut periods = std::collections::BTreeSet::new();
    while periods.len() < 5 {
        periods.insert(next(&mut points).await.unwrap().period);
    }
    assert_eq!(
        periods.into_iter().collect::<Vec<_>>(),
        [
            "2026-11-01",
            "2026-11-02",
            "2026-11-03",
            "2026-11-04",
            "2026-11-05"
        ]
    );
}
