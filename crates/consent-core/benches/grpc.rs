//! gRPC walker benchmarks: the hand-written wire walker against decoding into a
//! `prost_reflect::DynamicMessage`, clearing the forbidden fields and encoding again, on
//! `saitama.v1.Profile` payment histories of about 1 KiB, 64 KiB and 1 MiB with about 11%
//! of the fields (every transaction's merchant) removed. Both get the same forbidden
//! fields: the walker through the shipped policy's protobuf selectors compiled against
//! the demo descriptors, the contender by clearing `merchant` in every message.
//! Run with `make bench-core` (or `cargo bench -p consent-core --bench grpc`).
#![allow(missing_docs, clippy::expect_used)]

use consent_core::grpc::demo::{demo_config, history_profile, removing, DEMO_DESCRIPTOR_SET};
use consent_core::grpc::{rewrite_into, Walked};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

/// Decode, clear every field named `merchant` at any depth, encode.
fn reflect_redact(desc: &MessageDescriptor, body: &[u8]) -> Vec<u8> {
    fn clear(m: &mut DynamicMessage) {
        m.clear_field_by_name("merchant");
        for (_, value) in m.fields_mut() {
            match value {
                Value::Message(inner) => clear(inner),
                Value::List(items) => {
                    for item in items {
                        if let Value::Message(inner) = item {
                            clear(inner);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut m = DynamicMessage::decode(desc.clone(), body).expect("valid message");
    clear(&mut m);
    m.encode_to_vec()
}

fn bench_walker(c: &mut Criterion) {
    let config = demo_config().expect("demo configuration");
    let r = removing(&config, &["payment.merchant"], false);
    let profile = config
        .grpc
        .schema
        .message_idx("saitama.v1.Profile")
        .expect("Profile");
    let pool = DescriptorPool::decode(DEMO_DESCRIPTOR_SET).expect("pool");
    let desc = pool
        .get_message_by_name("saitama.v1.Profile")
        .expect("Profile");
    let mut group = c.benchmark_group("grpc");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = history_profile(size);
        let mut out = Vec::with_capacity(body.len());
        let mut report = Default::default();
        let walked = rewrite_into(&body, profile, &r, &mut out, &mut report).expect("walks");
        assert_eq!(walked, Walked::Rewritten);
        // Both remove the same fields (prost-reflect re-encodes in field-number order and
        // drops default values, so both are compared in that canonical form).
        let canonical = |b: &[u8]| {
            DynamicMessage::decode(desc.clone(), b)
                .expect("decodes")
                .encode_to_vec()
        };
        assert!(
            canonical(&out) == canonical(&reflect_redact(&desc, &body)),
            "same message"
        );
        println!(
            "  {label:>5}: message {} B, output {} B ({:.1}% of bytes removed), {} fields removed",
            body.len(),
            out.len(),
            100.0 * (body.len() - out.len()) as f64 / body.len() as f64,
            report.removed
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("walker", label), &body, |b, body| {
            b.iter(|| {
                out.clear();
                let mut report = Default::default();
                rewrite_into(black_box(body), profile, &r, &mut out, &mut report)
                    .map(|w| w == Walked::Rewritten)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("prost_reflect", label),
            &body,
            |b, body| b.iter(|| reflect_redact(&desc, black_box(body)).len()),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_walker);
criterion_main!(benches);
