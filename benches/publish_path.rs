//! Micro-benchmarks of the CPU half of a publish: the signature over a 1,000-point
//! batch (PAE and Ed25519 verification), decoding the batch, parsing periods and
//! decimal values, and validating the points. `cargo bench --bench publish_path`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signature;
use jiff::ToSpan;
use jiff::tz::TimeZone;
use kpistream::client::{new_batch, point_for_period};
use kpistream::ids::{KeyId, StreamId};
use kpistream::ingest::validate::validate_points;
use kpistream::period::{Frequency, Period};
use kpistream::proto;
use kpistream::signature::{self, Credential};
use kpistream::value::ValueType;
use prost::Message;

/// A signed batch of `points` daily points, as a publisher sends it.
fn sealed_batch(credential: &Credential, points: usize) -> proto::SignedBatch {
    let first = jiff::civil::date(2000, 1, 1);
    let points = (0..points)
        .map(|i| {
            let day = first
                .checked_add((i as i64).days())
                .expect("a day in range");
            point_for_period(&day.to_string(), &format!("{i}.25"), "")
        })
        .collect();
    credential.seal(&new_batch(points))
}

fn signature_and_decode(c: &mut Criterion) {
    let credential = Credential::generate(StreamId::generate(), KeyId::generate());
    let key = credential.public_key();
    let envelope = sealed_batch(&credential, 1000);
    let stream = credential.stream_id().as_str().to_owned();
    let mut group = c.benchmark_group("batch_of_1000_points");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("pae_and_verify", |b| {
        let signature = Signature::from_slice(&envelope.signature).expect("64 bytes");
        b.iter(|| {
            let message = signature::pae(&stream, black_box(&envelope.batch));
            key.verify_strict(&message, &signature)
                .expect("it verifies")
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| proto::Batch::decode(black_box(envelope.batch.as_slice())).expect("it decodes"))
    });
    group.bench_function("verify_then_decode", |b| {
        b.iter(|| {
            signature::verify(
                credential.stream_id(),
                credential.key_id(),
                &key,
                black_box(&envelope.batch),
                &envelope.signature,
            )
            .expect("it verifies")
        })
    });
    let verified = signature::verify(
        credential.stream_id(),
        credential.key_id(),
        &key,
        &envelope.batch,
        &envelope.signature,
    )
    .expect("it verifies");
    group.bench_function("validate", |b| {
        b.iter(|| {
            validate_points(
                black_box(verified.points()),
                Frequency::Daily,
                &ValueType::Number,
                &TimeZone::UTC,
            )
        })
    });
    group.finish();
}

fn periods(c: &mut Criterion) {
    let mut group = c.benchmark_group("period_parse");
    for (frequency, text) in [
        (Frequency::Daily, "2026-11-23"),
        (Frequency::Weekly, "2026-W48"),
        (Frequency::Monthly, "2026-11"),
        (Frequency::Quarterly, "2026-Q4"),
    ] {
        group.bench_function(frequency.as_str(), |b| {
            b.iter(|| Period::parse(frequency, black_box(text)).expect("a valid period"))
        });
    }
    group.finish();
}

fn decimals(c: &mut Criterion) {
    let eur = ValueType::from_parts("currency", Some("EUR")).expect("EUR is a currency");
    let mut group = c.benchmark_group("decimal_parse_and_canonicalise");
    for (name, value_type, text) in [
        ("number", ValueType::Number, "1234567.125"),
        ("small_negative", ValueType::Number, "-0.000125"),
        ("currency_eur", eur, "1234.50"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                value_type
                    .parse_value(black_box(text))
                    .expect("a valid value")
                    .to_string()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signature_and_decode, periods, decimals);
criterion_main!(benches);
