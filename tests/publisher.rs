//! The SDK's Publisher against the real server: restarts, back-pressure, outcomes.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{TestServer, all_points, day, point};
use kpistream::client::{PointOutcome, PublishError, Publisher, RetryPolicy, Transport};
use kpistream::proto;
use tonic::Code;

/// A port that was free a moment ago, so a server can be restarted on the same address.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn patient() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        max_elapsed: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(10),
    }
}

async fn every_point_is_stored_once_across_a_restart(transport: Transport) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = TestServer::start_with(&["--listen", &listen]);
    let (stream, credential) = server.daily_stream("Restarted").await;
    let publisher = Publisher::builder(format!("http://{listen}"), credential)
        .batch_size(40)
        .linger(Duration::from_millis(10))
        .in_flight(4)
        .transport(transport)
        .retry(patient())
        .build()
        .unwrap();

    let total = 2_000;
    let mut receipts = Vec::new();
    for i in 0..total {
        receipts.push(
            publisher
                .publish(point(&day(i), &i.to_string()))
                .await
                .unwrap(),
        );
        if i == 600 {
            server.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.restart();
        }
    }
    let report = publisher.close().await;
    assert!(report.is_clean(), "{report:?}\n{}", server.logs());
    assert_eq!(report.accepted, total as u64);
    for receipt in receipts {
        assert!(matches!(receipt.await, PointOutcome::Accepted { .. }));
    }

    let client = server.client().await;
    let points = all_points(&client, &stream).await;
    assert_eq!(points.len(), total as usize, "no point lost");
    for (i, p) in points.iter().enumerate() {
        assert_eq!(
            (p.period.as_str(), p.value.as_str()),
            (day(i as i64).as_str(), i.to_string().as_str())
        );
        assert_eq!(p.revision_count, 0, "no point stored twice: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_publisher_stores_every_point_once_across_a_server_restart() {
    every_point_is_stored_once_across_a_restart(Transport::Stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unary_publisher_stores_every_point_once_across_a_server_restart() {
    every_point_is_stored_once_across_a_restart(Transport::Unary).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_makes_publish_wait_and_try_publish_refuse() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = TestServer::start_with(&["--listen", &listen]);
    let (stream, credential) = server.daily_stream("Tiny buffer").await;
    server.kill();

    let publisher = Publisher::builder(format!("http://{listen}"), credential)
        .buffer(10)
        .batch_size(5)
        .linger(Duration::from_millis(5))
        .in_flight(1)
        .retry(patient())
        .build()
        .unwrap();
    for i in 0..10 {
        publisher
            .try_publish(point(&day(i), "1"))
            .expect("room in the buffer");
    }
    assert_eq!(
        publisher.try_publish(point(&day(10), "1")).err(),
        Some(PublishError::Full(10))
    );
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        publisher.publish(point(&day(10), "1")),
    )
    .await;
    assert!(waiting.is_err(), "publish waits while the buffer is full");
    assert_eq!(publisher.held(), 10, "never more than the buffer");

    server.restart();
    let receipt = tokio::time::timeout(
        Duration::from_secs(30),
        publisher.publish(point(&day(10), "1")),
    )
    .await
    .expect("room again once the server answers")
    .unwrap();
    assert!(publisher.held() <= 10);
    assert!(matches!(receipt.await, PointOutcome::Accepted { .. }));
    let report = publisher.close().await;
    assert_eq!(report.accepted, 11, "{report:?}");
    assert_eq!(all_points(&server.client().await, &stream).await.len(), 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejections_and_batch_failures_reach_the_caller() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Outcomes").await;
    let publisher = Publisher::builder(server.grpc.clone(), credential)
        .linger(Duration::from_millis(5))
        .build()
        .unwrap();
    let good = publisher.publish(point("2026-11-01", "1")).await.unwrap();
    let bad = publisher.publish(point("2026-11-02", "NaN")).await.unwrap();
    let report = publisher.flush().await;
    assert!(matches!(good.await, PointOutcome::Accepted { .. }));
    match bad.await {
        PointOutcome::Rejected { reason, .. } => assert!(reason.contains("NaN"), "{reason}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(report.accepted, 1);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].point.value, "NaN");

    let client = server.client().await;
    client
        .admin()
        .disable_stream(proto::StreamRef {
            stream_id: stream.clone(),
        })
        .await
        .unwrap();
    let refused = publisher.publish(point("2026-11-03", "3")).await.unwrap();
    let report = publisher.close().await;
    match refused.await {
        PointOutcome::Failed { failure, .. } => {
            assert_eq!(failure.code, Code::FailedPrecondition);
            assert_eq!(failure.attempts, 1, "a refusal is not retried");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].points, 1);
}
