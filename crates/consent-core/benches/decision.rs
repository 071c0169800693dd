//! Criterion benchmarks of the header-only path (`make bench-core`): one decision on request
//! headers, and the live-snapshot lookup the filter does per request (subject key, bucket,
//! record) with 1,000 and 1,000,000 people in the snapshot.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use consent_core::decide::decision_header_value;
use consent_core::decide::plan_request;
use consent_core::live::SubjectKeying;
use consent_core::live::{bucket_of, find_in_bucket, fingerprint};
use consent_core::policy::CompiledPolicy;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

mod common;
use common::{publish, record, request_headers};

/// Bucket bits of the shipped configuration.
const BITS: u8 = 16;

/// The published buckets of a snapshot of `users` people, as the fetcher writes them.
fn buckets(policy: &CompiledPolicy, users: usize) -> BTreeMap<u32, Vec<u8>> {
    publish(policy, BITS, users, |i| {
        record(i, "marketing.newsletters", &[], false)
    })
    .unwrap_or_default()
}

fn bench_decision(c: &mut Criterion) {
    let Ok(config) = consent_core::compile_config(
        br#"{"consents": {"records": [{"subject": "u-bench", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}}"#,
    ) else {
        return;
    };
    let headers = request_headers(b"/h-text", b"u-bench", b"marketing.newsletters");
    let mut group = c.benchmark_group("decide");
    group.sample_size(30);
    group.bench_function("header_path", |b| {
        b.iter(|| {
            let decision = config.evaluate(black_box(&headers).iter().copied());
            let edits = plan_request(&config.policy, &decision, headers.iter().copied());
            let header = decision_header_value(&config.policy, &config.routes, &decision);
            edits.remove.len() + header.len()
        })
    });
    group.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let Ok(policy) = CompiledPolicy::default_policy() else {
        return;
    };
    let fp = fingerprint(&policy);
    let keying = SubjectKeying::Plain;
    let mut group = c.benchmark_group("lookup");
    group.sample_size(30);
    group.bench_function("subject_key", |b| {
        b.iter(|| keying.key_of_user(black_box("u-0012345")))
    });
    for users in [1_000usize, 1_000_000] {
        let published = buckets(&policy, users);
        // A fixed walk over the people, so both sizes look up the same number of records.
        let ids: Vec<String> = (0..1024)
            .map(|i| format!("u-{:07}", (i * 7919) % users))
            .collect();
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::new("record", users), &users, |b, _| {
            b.iter(|| {
                next = (next + 1) % ids.len();
                let user = ids.get(next).map_or("", String::as_str);
                let key = keying.key_of_user(user);
                let bucket = published.get(&bucket_of(&key, BITS));
                bucket.and_then(|bytes| find_in_bucket(bytes, fp, &key).ok().flatten())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decision, bench_lookup);
criterion_main!(benches);
