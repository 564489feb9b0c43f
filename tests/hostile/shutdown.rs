//! SIGTERM ends the server within its grace, whatever its clients hold open: an idle
//! `PublishStream` (how the SDK's publisher publishes), a `Watch`, a TCP connection that
//! never said anything. Publishers then go on with the next server without counting
//! anything twice.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use kpistream::client::{Publisher, RetryPolicy, Transport};

use crate::common::{TestServer, all_points, point};

/// The default `limits.shutdown_grace_secs`.
const GRACE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_an_idle_publish_stream_a_watch_and_silent_connections_exits_0_within_the_grace()
 {
    let mut server = TestServer::start();
    let (stream, credential) = server.daily_stream("open streams").await;
    let publisher = Publisher::builder(server.grpc.clone(), credential)
        .transport(Transport::Stream)
        .build()
        .unwrap();
    publisher.publish(point("2026-01-01", "1")).await.unwrap();
    let report = publisher.flush().await;
    assert_eq!(report.accepted, 1, "the PublishStream is open: {report:?}");
    let watcher = server.client().await;
    let _watch = watcher.watch(&stream, false).await.unwrap();
    let grpc: std::net::SocketAddr = server.grpc.trim_start_matches("http://").parse().unwrap();
    let _silent_grpc = TcpStream::connect(grpc).unwrap();
    let _silent_http = TcpStream::connect(server.http).unwrap();

    let asked = Instant::now();
    let status = server.terminate();
    let took = asked.elapsed();
    eprintln!("exited {status:?} {took:?} after SIGTERM");
    assert!(
        status.success(),
        "exit status 0: {status:?}\n{}",
        server.logs()
    );
    assert!(
        took < GRACE,
        "the server exits within its grace ({GRACE:?}), took {took:?}\n{}",
        server.logs()
    );
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_keeps_a_call_open_past_the_grace_is_cut_and_the_server_exits_0() {
    let mut server = TestServer::start_with_limits("shutdown_grace_secs = 2");
    // A call whose message never completes holds its connection open: only the end of
    // the grace closes it.
    let grpc = server.grpc.trim_start_matches("http://").parse().unwrap();
    let mut stalled = crate::raw::RawConnection::open(grpc, 65_535).await;
    stalled
        .stall_calls("/kpistream.v1.Ingest/Publish", 1, 100_000)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let status = server.terminate();
    let took = asked.elapsed();
    assert!(
        status.success(),
        "exit status 0: {status:?}\n{}",
        server.logs()
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "the grace of 2 s is waited for, then the call is cut: took {took:?}\n{}",
        server.logs()
    );
    assert!(
        server.logs().contains("shutdown grace over"),
        "{}",
        server.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streaming_publisher_sends_its_unanswered_batches_to_the_next_server_once() {
    let mut server = TestServer::start();
    let (stream, credential) = server.daily_stream("moving").await;
    let publisher = Publisher::builder(server.grpc.clone(), credential)
        .transport(Transport::Stream)
        .batch_size(20)
        .linger(Duration::from_millis(5))
        .retry(RetryPolicy {
            max_elapsed: Duration::from_secs(60),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let publisher = std::sync::Arc::new(publisher);
    let days = 1500;
    let feeder = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for n in 0..days {
                publisher
                    .publish(point(&crate::common::day(n), &n.to_string()))
                    .await
                    .unwrap();
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.logs());
    server.restart_on_same_ports();
    feeder.await.unwrap();
    let publisher = std::sync::Arc::into_inner(publisher).expect("the feeder is done");
    let report = publisher.close().await;
    assert!(report.is_clean(), "nothing failed: {report:?}");
    let points = all_points(&server.client().await, &stream).await;
    assert_eq!(points.len(), days as usize, "every point is stored");
    assert!(
        points.iter().all(|p| p.revision_count == 0),
        "and none twice (no revision)"
    );
}
