//! Redaction core benchmarks: the two-stage redactor (`redact`: SIMD structural index,
//! then a walk over its tokens) against the scalar one-pass redactor it replaced
//! (`redact_scalar`, now its fallback and reference) and the plain `serde_json::Value`
//! parse-edit-serialise approach, on realistic transaction histories of 1 KiB, 64 KiB and
//! 1 MiB with about 10% of the fields removed.
//!
//! Before the timed runs it prints the peak extra heap each approach needs per body,
//! measured with a counting allocator. Run with `make bench-core`.

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to System.
#![allow(unsafe_code, missing_docs, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use consent_core::body::reference::redact_value;
use consent_core::body::{redact, redact_scalar, BodyOutcome};
use consent_core::policy::CategorySet;
use consent_core::policy::CompiledPolicy;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod common;
use common::{body_rules, history, merchant_forbidden};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn setup() -> (CompiledPolicy, CategorySet) {
    let policy = CompiledPolicy::default_policy().expect("shipped policy");
    let forbidden = merchant_forbidden(&policy).expect("merchant");
    (policy, forbidden)
}

fn peak_extra(f: impl FnOnce() -> usize) -> (usize, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out_len = f();
    (PEAK.load(Ordering::Relaxed).saturating_sub(base), out_len)
}

fn report_memory(policy: &CompiledPolicy, forbidden: CategorySet) {
    println!("peak extra heap per body (bytes, and as a multiple of the body):");
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = history(size);
        let r = body_rules(policy);
        let (stream_peak, out_len) = peak_extra(|| match redact(&body, &r, forbidden, None) {
            Ok((BodyOutcome::Rewritten(out), _)) => out.len(),
            _ => 0,
        });
        let (value_peak, _) =
            peak_extra(|| redact_value(&body, &r, forbidden).map_or(0, |v| v.len()));
        let removed = 100.0 * (body.len() - out_len) as f64 / body.len() as f64;
        println!(
            "  {label:>5}: body {} B, output {} B ({removed:.1}% of bytes removed); streaming {} B ({:.2}x), serde_json::Value {} B ({:.2}x)",
            body.len(),
            out_len,
            stream_peak,
            stream_peak as f64 / body.len() as f64,
            value_peak,
            value_peak as f64 / body.len() as f64
        );
    }
}

fn bench_redaction(c: &mut Criterion) {
    let (policy, forbidden) = setup();
    report_memory(&policy, forbidden);
    let mut group = c.benchmark_group("redact");
    group.sample_size(20);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = history(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        let r = body_rules(&policy);
        assert_eq!(
            redact(&body, &r, forbidden, None),
            redact_scalar(&body, &r, forbidden, None),
            "both redactors give the same result"
        );
        group.bench_with_input(BenchmarkId::new("two_stage", label), &body, |b, body| {
            b.iter(|| {
                redact(black_box(body), &r, forbidden, None)
                    .map(|(o, _)| matches!(o, BodyOutcome::Rewritten(_)))
            })
        });
        group.bench_with_input(BenchmarkId::new("scalar", label), &body, |b, body| {
            b.iter(|| {
                redact_scalar(black_box(body), &r, forbidden, None)
                    .map(|(o, _)| matches!(o, BodyOutcome::Rewritten(_)))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("serde_json_value", label),
            &body,
            |b, body| b.iter(|| redact_value(black_box(body), &r, forbidden).map(|v| v.len())),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_redaction);
criterion_main!(benches);
