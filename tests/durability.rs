//! What an acknowledgement promises, tested by stopping the real server under load:
//! after SIGKILL every acknowledged batch is still there (and replays as such), the
//! database passes SQLite's integrity check, no batch is half stored, and SIGTERM
//! finishes the calls in flight and exits cleanly.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, all_points, day, point, publish_envelope, sealed};
use kpistream::client::{Client, Credential};
use kpistream::proto;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};
use tonic::Status;

const PUBLISHERS: usize = 8;
const POINTS_PER_BATCH: i64 = 3;

/// One batch a publisher sent, with its answer if it got one.
struct Sent {
    batch_id: String,
    envelope: proto::SignedBatch,
    points: Vec<(String, String)>,
    answer: Option<proto::PublishResponse>,
    answered_at: Option<Instant>,
}

/// What one publisher did: its stream, every batch it sent, and the error that ended it.
struct Publisher {
    stream_id: String,
    sent: Vec<Sent>,
    failure: Option<Status>,
    failed_before_stop: bool,
}

impl Publisher {
    fn acked(&self) -> impl Iterator<Item = &Sent> {
        self.sent.iter().filter(|s| s.answer.is_some())
    }
}

/// Publishes small batches of distinct daily periods, one after another, until a
/// publish fails; records everything it sent and which answers came back.
async fn publish_until_failure(
    grpc: String,
    stream_id: String,
    credential: Credential,
    stopping: Arc<AtomicBool>,
) -> Publisher {
    let client = Client::connect(&grpc, None).await.expect("connect");
    let mut publisher = Publisher {
        stream_id,
        sent: Vec::new(),
        failure: None,
        failed_before_stop: false,
    };
    for b in 0i64.. {
        let points: Vec<(String, String)> = (0..POINTS_PER_BATCH)
            .map(|p| (day(b * POINTS_PER_BATCH + p), (b * 10 + p).to_string()))
            .collect();
        let envelope = sealed(
            &credential,
            points.iter().map(|(period, v)| point(period, v)).collect(),
        );
        let batch: proto::Batch = prost::Message::decode(envelope.batch.as_slice()).unwrap();
        publisher.sent.push(Sent {
            batch_id: batch.batch_id,
            envelope: envelope.clone(),
            points,
            answer: None,
            answered_at: None,
        });
        let was_stopping = stopping.load(Ordering::SeqCst);
        match publish_envelope(&client, envelope, false).await {
            Ok(answer) => {
                let sent = publisher.sent.last_mut().unwrap();
                sent.answer = Some(answer);
                sent.answered_at = Some(Instant::now());
            }
            Err(status) => {
                publisher.failed_before_stop = !was_stopping && !stopping.load(Ordering::SeqCst);
                publisher.failure = Some(status);
                break;
            }
        }
    }
    publisher
}

/// Starts the publishers, lets them run for `load`, stops the server with `stop`, and
/// returns what each publisher did and when the stop began.
async fn publish_then_stop(
    server: &mut TestServer,
    load: Duration,
    stop: impl FnOnce(&mut TestServer),
) -> (Vec<Publisher>, Instant) {
    let stopping = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..PUBLISHERS {
        let (stream_id, credential) = server.daily_stream(&format!("Load {n}")).await;
        tasks.push(tokio::spawn(publish_until_failure(
            server.grpc.clone(),
            stream_id,
            credential,
            stopping.clone(),
        )));
    }
    tokio::time::sleep(load).await;
    stopping.store(true, Ordering::SeqCst);
    let stopped_at = Instant::now();
    stop(server);
    let mut publishers = Vec::new();
    for task in tasks {
        let publisher = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("a publisher notices the stopped server")
            .expect("a publisher does not panic");
        assert!(
            !publisher.failed_before_stop,
            "a publish failed before the server was stopped: {:?}\n{}",
            publisher.failure,
            server.logs()
        );
        let acked = publisher.acked().count();
        assert!(
            acked > 0,
            "publisher of {} got no acknowledgement before the stop",
            publisher.stream_id
        );
        publishers.push(publisher);
    }
    (publishers, stopped_at)
}

/// Checks, on the restarted server, that every acknowledged batch is stored exactly,
/// that nothing was stored that was never sent, and that no batch is half stored.
async fn assert_acknowledged_batches_survived(client: &Client, publishers: &[Publisher]) {
    for publisher in publishers {
        let stored: HashMap<String, (String, String)> = all_points(client, &publisher.stream_id)
            .await
            .into_iter()
            .map(|p| (p.period, (p.value, p.batch_id)))
            .collect();
        let sent_ids: HashSet<&str> = publisher.sent.iter().map(|s| s.batch_id.as_str()).collect();
        for (period, (_, batch_id)) in &stored {
            assert!(
                sent_ids.contains(batch_id.as_str()),
                "{period} holds a value from batch {batch_id}, which was never sent"
            );
        }
        for sent in &publisher.sent {
            let present = sent
                .points
                .iter()
                .filter(|(period, value)| {
                    stored.get(period) == Some(&(value.clone(), sent.batch_id.clone()))
                })
                .count();
            if sent.answer.is_some() {
                assert_eq!(
                    present,
                    sent.points.len(),
                    "acknowledged batch {} of {} lost points",
                    sent.batch_id,
                    publisher.stream_id
                );
            } else {
                assert!(
                    present == 0 || present == sent.points.len(),
                    "unacknowledged batch {} is half stored ({present} of {} points)",
                    sent.batch_id,
                    sent.points.len()
                );
            }
        }
    }
}

/// Replays some acknowledged batches: each must answer its first result, marked replayed.
async fn assert_acknowledged_batches_replay(client: &Client, publishers: &[Publisher]) {
    for publisher in publishers {
        let acked: Vec<&Sent> = publisher.acked().collect();
        let first = acked.first().into_iter();
        let last_few = acked.iter().rev().take(5);
        for sent in first.chain(last_few) {
            let answer = publish_envelope(client, sent.envelope.clone(), false)
                .await
                .expect("an acknowledged batch can be replayed");
            assert!(
                answer.replayed,
                "batch {} is known after the restart",
                sent.batch_id
            );
            assert_eq!(
                proto::PublishResponse {
                    replayed: false,
                    ..answer
                },
                *sent.answer.as_ref().unwrap(),
                "the replay answers the first result"
            );
        }
    }
}

async fn integrity_check(server: &TestServer) -> String {
    let options = SqliteConnectOptions::new()
        .filename(server.db_path())
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePool::connect_with(options)
        .await
        .expect("the database file opens");
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .expect("integrity_check runs");
    pool.close().await;
    verdict
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_batches_survive_a_sigkill_under_concurrent_load() {
    let mut server = TestServer::start();

    let (publishers, _) = publish_then_stop(&mut server, Duration::from_millis(1500), |server| {
        server.kill()
    })
    .await;

    // The SQLite file is whole (PostgreSQL keeps its own files whole).
    if server.postgres_url().is_none() {
        assert_eq!(integrity_check(&server).await, "ok");
    }
    server.restart();
    let client = server.client().await;
    assert_acknowledged_batches_survived(&client, &publishers).await;
    assert_acknowledged_batches_replay(&client, &publishers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_calls_in_flight_and_exits_cleanly() {
    let mut server = TestServer::start();
    let mut status = None;

    let (publishers, sigterm_at) =
        publish_then_stop(&mut server, Duration::from_millis(700), |server| {
            status = Some(server.terminate());
        })
        .await;

    let status = status.unwrap();
    assert!(
        status.success(),
        "SIGTERM ends the server with status 0, got {status:?}\n{}",
        server.logs()
    );
    assert!(
        publishers.iter().all(|p| p.failure.is_some()),
        "every publisher ends with an error once the server is gone"
    );
    // Every publisher always has a call outstanding, so some were in flight at SIGTERM:
    // they were answered, not dropped.
    assert!(
        publishers
            .iter()
            .flat_map(Publisher::acked)
            .any(|s| s.answered_at.is_some_and(|at| at > sigterm_at)),
        "no call in flight at SIGTERM was answered"
    );
    // The SQLite file is whole (PostgreSQL keeps its own files whole).
    if server.postgres_url().is_none() {
        assert_eq!(integrity_check(&server).await, "ok");
    }
    server.restart();
    let client = server.client().await;
    assert_acknowledged_batches_survived(&client, &publishers).await;
    assert_acknowledged_batches_replay(&client, &publishers).await;
}
