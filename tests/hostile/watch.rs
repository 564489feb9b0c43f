//! A stalled watcher cannot hold other subscribers' or organisations' batches: it holds
//! at most its own bound (`limits.watch_buffer_points`) of its own stream, is ended with
//! ABORTED naming where to resume, and resumes from there without a gap.

use std::time::{Duration, Instant};

use jiff::ToSpan;
use kpistream::client::Credential;
use tonic::Code;

use crate::common::{TestServer, point, publish_envelope, sealed};

const BATCHES: usize = 300;
const POINTS: usize = 10_000;

/// The `n`th day after 1000-01-01: room for the 3 million distinct days published here.
fn old_day(n: usize) -> String {
    jiff::civil::date(1000, 1, 1)
        .checked_add((n as i64).days())
        .unwrap()
        .to_string()
}

async fn publish_batches(server: &TestServer, credential: &Credential, quiet: &Credential) {
    let client = server.anonymous_client().await;
    for b in 0..BATCHES {
        let points = (b * POINTS..(b + 1) * POINTS)
            .map(|n| point(&old_day(n), "12.5"))
            .collect();
        let reply = publish_envelope(&client, sealed(credential, points), false)
            .await
            .expect("a 10,000-point batch is stored");
        assert_eq!(reply.accepted as usize, POINTS);
        if b % 30 == 0 {
            client
                .publish(quiet, vec![point(&old_day(b), "1")], false)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_watcher_of_300_batches_of_10000_points_keeps_memory_bounded_and_resumes_without_a_gap()
 {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("busy").await;
    let (quiet_stream, quiet) = server.daily_stream("quiet").await;
    let reader = server.client().await;
    // A watcher that never reads, of the busy stream...
    let mut stalled = reader.watch(&stream, false).await.unwrap();
    // ...and one that reads, of another stream.
    let mut live = reader.watch(&quiet_stream, false).await.unwrap();
    let live_points = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < BATCHES / 30 {
            match tokio::time::timeout(Duration::from_secs(120), live.message()).await {
                Ok(Ok(Some(point))) => got.push(point.period),
                other => panic!("the reading watcher goes on: {other:?}"),
            }
        }
        got
    });

    let before = server.rss_mib();
    let started = Instant::now();
    let publishing = publish_batches(&server, &credential, &quiet);
    tokio::pin!(publishing);
    let mut peak = before;
    loop {
        tokio::select! {
            () = &mut publishing => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => peak = peak.max(server.rss_mib()),
        }
    }
    peak = peak.max(server.rss_mib());
    eprintln!(
        "{BATCHES} x {POINTS} points published in {:?} with a stalled watcher: RSS {before} MiB before, peak {peak} MiB",
        started.elapsed()
    );
    assert!(
        peak < 256,
        "the stalled watcher does not hold the batches: peak {peak} MiB\n{}",
        server.logs()
    );
    let live_got = live_points.await.unwrap();
    assert_eq!(
        live_got.len(),
        BATCHES / 30,
        "the other watcher got each of its points"
    );

    // The stalled watcher gets what was queued before it fell behind, then ABORTED.
    let mut received = 0usize;
    let mut last = None;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(30), stalled.message()).await {
            Ok(Ok(Some(point))) => {
                received += 1;
                last = point.updated_at;
            }
            Ok(Err(status)) => break status,
            other => panic!("the stalled watch ends with an error: {other:?}"),
        }
    };
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("watch again with since ="),
        "the status names where to resume: {}",
        status.message()
    );
    assert!(
        received < BATCHES * POINTS,
        "the watcher lost batches ({received})"
    );

    // Resuming from the last point received starts right after it.
    let last_received = last.expect("some points arrived first");
    let mut resumed = reader.watch_since(&stream, last_received).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), resumed.message())
        .await
        .expect("the resumed watch sends")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.period,
        old_day(received),
        "the first point not received before"
    );
}

/// Publishes `batches` batches of `size` points (distinct days from `first`).
async fn publish_small(
    server: &TestServer,
    credential: &Credential,
    first: usize,
    batches: usize,
    size: usize,
) {
    let client = server.anonymous_client().await;
    for b in 0..batches {
        let points = (0..size)
            .map(|i| point(&old_day(first + b * size + i), &b.to_string()))
            .collect();
        publish_envelope(&client, sealed(credential, points), false)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_resumed_with_since_misses_nothing_and_repeats_nothing() {
    let server = TestServer::start_with_limits("watch_buffer_points = 200");
    let (stream, credential) = server.daily_stream("resumed").await;
    let reader = server.client().await;
    let mut stalled = reader.watch(&stream, false).await.unwrap();
    publish_small(&server, &credential, 0, 500, 50).await;

    let mut received = Vec::new();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.message()).await {
            Ok(Ok(Some(point))) => received.push(point),
            Ok(Err(status)) => break status,
            other => panic!("the stalled watch ends with an error: {other:?}"),
        }
    };
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        received.len() < 500 * 50,
        "it fell behind ({} received)",
        received.len()
    );
    let last = received.last().unwrap().updated_at.unwrap();
    assert!(
        status.message().contains(&format!(
            "since = {}",
            jiff::Timestamp::new(last.seconds, last.nanos).unwrap()
        )),
        "the status names the last point's time: {}",
        status.message()
    );

    let mut resumed = reader.watch_since(&stream, last).await.unwrap();
    // More is published while the resumed watch catches up.
    publish_small(&server, &credential, 500 * 50, 4, 50).await;
    let total = 504 * 50;
    while received.len() < total {
        let point = tokio::time::timeout(Duration::from_secs(10), resumed.message())
            .await
            .expect("the resumed watch goes on")
            .unwrap()
            .unwrap();
        received.push(point);
    }
    let periods: Vec<String> = received.iter().map(|p| p.period.clone()).collect();
    let expected: Vec<String> = (0..total).map(old_day).collect();
    assert_eq!(
        periods, expected,
        "every point once, in the order they were committed"
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), resumed.message()).await;
    assert!(extra.is_err(), "nothing more: {extra:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_watch_resumes_by_itself_when_its_reader_falls_behind() {
    use std::io::{BufRead, BufReader};

    let server = TestServer::start_with_limits("watch_buffer_points = 200");
    let (stream, credential) = server.daily_stream("piped").await;
    publish_small(&server, &credential, 0, 1, 1).await;
    let mut watch = crate::common::cli(server.dir())
        .args(["query", &stream, "--watch", "--output", "json"])
        .args(["--server", &server.grpc, "--token", &server.token])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    assert!(
        lines.next().unwrap().unwrap().contains(&old_day(0)),
        "the latest point comes first"
    );
    // Nobody reads the pipe while 25,000 points are published: the CLI blocks on it,
    // stops reading its watch, and the server ends the watch.
    publish_small(&server, &credential, 1, 500, 50).await;
    let total = 1 + 500 * 50;
    let reader = std::thread::spawn(move || {
        let mut periods = Vec::new();
        for line in lines.by_ref() {
            let point: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            periods.push(point["period"].as_str().unwrap().to_owned());
            if periods.len() == total - 1 {
                break;
            }
        }
        periods
    });
    let periods = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("resuming"),
        "the watch was resumed: {stderr}"
    );
    let expected: Vec<String> = (1..total).map(old_day).collect();
    assert_eq!(
        periods, expected,
        "every point once, in order, across the resume"
    );
}
