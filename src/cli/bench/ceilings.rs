//! `kpistream bench --ceilings`: what the two halves of the publish path manage alone,
//! on the same batches as the run. Verification: signature check, decode and
//! validation on every core, no network. The store: the validated rows committed
//! straight into a fresh SQLite store, in groups like the server's writer makes, no
//! gRPC and no crypto.

use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::load::proto_batch;
use super::workload::{GenBatch, Workload};
use crate::batch::PreparedBatch;
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::ingest::validate::validate_points;
use crate::period::Frequency;
use crate::proto;
use crate::signature::{self, Credential};
use crate::store::{AccessStore, Bootstrap, NewKey, PointStore, SqliteStore, StreamStore};
use crate::stream::{KeyOrigin, StreamDefinition};
use crate::value::ValueType;

/// The server's writer commits at most this many batches in one transaction.
const WRITER_MAX_GROUP: usize = 64;

/// The ceilings measured.
#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    /// Points verified and validated per second on all cores.
    pub verify_points_per_s: f64,
    /// Threads that verified (the machine's cores).
    pub verify_threads: usize,
    /// Points committed per second straight into the store.
    pub store_points_per_s: f64,
    /// Batches per transaction in the store ceiling.
    pub store_group_batches: usize,
}

/// Measures both ceilings on the batches of `workload`.
pub async fn measure(workload: &Workload) -> anyhow::Result<Ceilings> {
    let batches = workload.all_batches();
    let points: u64 = batches.iter().map(|b| b.points.len() as u64).sum();
    let credentials: Vec<Credential> = (0..workload.streams)
        .map(|_| Credential::generate(StreamId::generate(), KeyId::generate()))
        .collect();
    let envelopes = seal_all(workload, &batches, &credentials);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (verified, verify_time) = verify_all(&envelopes, &credentials, threads)?;
    let group = workload.publishers.clamp(1, WRITER_MAX_GROUP);
    let store_time = commit_all(&credentials, verified, group).await?;
    Ok(Ceilings {
        verify_points_per_s: points as f64 / verify_time.as_secs_f64(),
        verify_threads: threads,
        store_points_per_s: points as f64 / store_time.as_secs_f64(),
        store_group_batches: group,
    })
}

/// Signs every batch as a publisher would (not timed).
fn seal_all(
    workload: &Workload,
    batches: &[GenBatch],
    credentials: &[Credential],
) -> Vec<(usize, proto::SignedBatch)> {
    batches
        .iter()
        .map(|batch| {
            let sealed = credentials[batch.stream].seal(&proto_batch(workload, batch));
            (batch.stream, sealed)
        })
        .collect()
}

/// Verifies and validates every envelope on `threads` threads; returns the prepared
/// batches, in order, and the time it took.
fn verify_all(
    envelopes: &[(usize, proto::SignedBatch)],
    credentials: &[Credential],
    threads: usize,
) -> anyhow::Result<(Vec<PreparedBatch>, Duration)> {
    let keys: Vec<_> = credentials.iter().map(Credential::public_key).collect();
    let chunk = envelopes.len().div_ceil(threads).max(1);
    let started = Instant::now();
    let prepared = std::thread::scope(|scope| {
        let workers: Vec<_> = envelopes
            .chunks(chunk)
            .map(|part| {
                let keys = &keys;
                scope.spawn(move || {
                    part.iter()
                        .map(|(stream, envelope)| {
                            verify_one(&credentials[*stream], &keys[*stream], envelope)
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a verifying thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let elapsed = started.elapsed();
    Ok((prepared.into_iter().flatten().collect(), elapsed))
}

fn verify_one(
    credential: &Credential,
    key: &ed25519_dalek::VerifyingKey,
    envelope: &proto::SignedBatch,
) -> anyhow::Result<PreparedBatch> {
    let verified = signature::verify(
        credential.stream_id(),
        credential.key_id(),
        key,
        &envelope.batch,
        &envelope.signature,
    )?;
    let valid = validate_points(
        verified.points(),
        Frequency::Daily,
        &ValueType::Number,
        &TimeZone::UTC,
    );
    if let Some(first) = valid.rejected.first() {
        anyhow::bail!(
            "the verification ceiling refused point {}: {}",
            first.index,
            first.reason
        );
    }
    Ok(PreparedBatch::new(
        credential.stream_id().clone(),
        credential.key_id().clone(),
        verified.batch_id().to_owned(),
        Frequency::Daily,
        valid.points,
        valid.rejected,
    ))
}

/// Commits the batches into a fresh store on a temporary file, `group` at a time, one
/// transaction after the other like the server's single writer; returns the time.
async fn commit_all(
    credentials: &[Credential],
    batches: Vec<PreparedBatch>,
    group: usize,
) -> anyhow::Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("kpistream-ceiling-")
        .tempdir()
        .context("cannot create a temporary folder for the store ceiling")?;
    let url = format!("sqlite://{}", dir.path().join("ceiling.db").display());
    let store = SqliteStore::open(&url).await?;
    create_streams(&store, credentials).await?;
    // Grouped before the clock starts, as the server's writer receives them.
    let mut groups = Vec::new();
    let mut batches = batches.into_iter().peekable();
    while batches.peek().is_some() {
        groups.push(std::sync::Arc::new(
            batches.by_ref().take(group).collect::<Vec<_>>(),
        ));
    }
    let started = Instant::now();
    for chunk in groups {
        for result in store.commit_batches(chunk, jiff::Timestamp::now()).await? {
            result?;
        }
    }
    let elapsed = started.elapsed();
    store.pool().close().await;
    dir.close()
        .context("cannot remove the store ceiling's temporary folder")?;
    Ok(elapsed)
}

/// An organisation with one daily number stream per credential.
pub async fn create_streams(store: &SqliteStore, credentials: &[Credential]) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let org = OrgId::generate();
    let user = UserId::generate();
    let first = Bootstrap {
        org_id: org.clone(),
        org_name: "bench".into(),
        user_id: user.clone(),
        user_name: "bench".into(),
        token_hash: [0; 32],
    };
    store.bootstrap(&first, now).await?;
    for (i, credential) in credentials.iter().enumerate() {
        let definition = StreamDefinition {
            name: format!("bench {i}"),
            description: String::new(),
            category: None,
            frequency: Frequency::Daily,
            value_type: ValueType::Number,
            time_zone: "UTC".into(),
        };
        let key = NewKey {
            key_id: credential.key_id().clone(),
            public_key: credential.public_key().to_bytes(),
            origin: KeyOrigin::Registered,
        };
        store
            .create_stream(
                &org,
                &user,
                credential.stream_id(),
                &definition,
                &key,
                &[],
                now,
            )
            .await?;
    }
    Ok(())
}
