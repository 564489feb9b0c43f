//! Micro-benchmark of the store's write path: one transaction committing a batch of
//! 1,000 new daily points into a `SqliteStore` on a temporary file (WAL,
//! `synchronous=FULL`: each commit waits for the disk). `cargo bench --bench store_write`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::ToSpan;
use kpistream::batch::{PreparedBatch, ValidPoint};
use kpistream::ids::{KeyId, OrgId, StreamId, UserId};
use kpistream::period::Frequency;
use kpistream::store::{AccessStore, Bootstrap, NewKey, PointStore, SqliteStore, StreamStore};
use kpistream::stream::{KeyOrigin, StreamDefinition};
use kpistream::value::ValueType;

const POINTS: usize = 1000;
/// Batches one stream takes before its days run out (years 1000 to 9998).
const BATCHES_PER_STREAM: u64 = 3000;

/// A fresh store with an organisation, and what adds streams to it.
struct Fixture {
    store: SqliteStore,
    org: OrgId,
    user: UserId,
    stream: StreamId,
    key: KeyId,
    batches_in_stream: u64,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = SqliteStore::open(&url).await.expect("the store opens");
        let (org, user) = (OrgId::generate(), UserId::generate());
        let first = Bootstrap {
            org_id: org.clone(),
            org_name: "bench".into(),
            user_id: user.clone(),
            user_name: "bench".into(),
            token_hash: [0; 32],
        };
        store
            .bootstrap(&first, jiff::Timestamp::now())
            .await
            .expect("the organisation is created");
        let mut fixture = Self {
            store,
            org,
            user,
            stream: StreamId::generate(),
            key: KeyId::generate(),
            batches_in_stream: 0,
            _dir: dir,
        };
        fixture.new_stream().await;
        fixture
    }

    async fn new_stream(&mut self) {
        self.stream = StreamId::generate();
        self.key = KeyId::generate();
        self.batches_in_stream = 0;
        let definition = StreamDefinition {
            name: "bench".into(),
            description: String::new(),
            category: None,
            frequency: Frequency::Daily,
            value_type: ValueType::Number,
            time_zone: "UTC".into(),
        };
        let key = NewKey {
            key_id: self.key.clone(),
            public_key: [0; 32],
            origin: KeyOrigin::Registered,
        };
        self.store
            .create_stream(
                &self.org,
                &self.user,
                &self.stream,
                &definition,
                &key,
                &[],
                jiff::Timestamp::now(),
            )
            .await
            .expect("the stream is created");
    }

    /// The next batch of 1,000 points on days no earlier batch of the stream used.
    async fn next_batch(&mut self) -> PreparedBatch {
        if self.batches_in_stream == BATCHES_PER_STREAM {
            self.new_stream().await;
        }
        let first = jiff::civil::date(1000, 1, 1)
            .checked_add(((self.batches_in_stream * POINTS as u64) as i64).days())
            .expect("a day in range");
        self.batches_in_stream += 1;
        let points = (0..POINTS)
            .map(|i| ValidPoint {
                period: first
                    .checked_add((i as i64).days())
                    .expect("a day in range")
                    .to_string(),
                value: format!("{i}.25"),
                external_id: None,
            })
            .collect();
        PreparedBatch::new(
            self.stream.clone(),
            self.key.clone(),
            uuid::Uuid::now_v7().to_string(),
            Frequency::Daily,
            points,
            Vec::new(),
        )
    }
}

fn store_write(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut fixture = runtime.block_on(Fixture::new());
    let mut group = c.benchmark_group("sqlite_store");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.sample_size(20);
    group.bench_function("commit_1000_new_points", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let batch = std::sync::Arc::new(vec![fixture.next_batch().await]);
                    let started = Instant::now();
                    let results = fixture
                        .store
                        .commit_batches(batch, jiff::Timestamp::now())
                        .await
                        .expect("the commit succeeds");
                    spent += started.elapsed();
                    results[0].as_ref().expect("the batch is taken");
                }
                spent
            })
        })
    });
    group.finish();
}

criterion_group!(benches, store_write);
criterion_main!(benches);
