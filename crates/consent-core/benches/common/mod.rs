//! Fixtures shared by the benches and the examples: consent records and their published
//! buckets, a request as wrk sends it through Envoy, and transaction-history bodies with
//! their redaction rules. The benches declare `mod common;`, the examples include this
//! file with `#[path = "../benches/common/mod.rs"]`.

// Each bench or example uses some of these.
#![allow(dead_code)]

use std::collections::BTreeMap;

use consent_core::body::{BodyRules, CivilDate};
use consent_core::live::{
    add_part, fingerprint, BucketBuilder, FullSnapshotDoc, GrantDoc, RecordDoc, SubjectKeyKind,
    SubjectKeying,
};
use consent_core::policy::{CategorySet, CompiledPolicy};
use serde_json::json;

/// Person `i` (`u-` and seven digits), granting `purpose` under policy version 1 with
/// the `explicit` categories.
pub fn record(i: usize, purpose: &str, explicit: &[&str], stop_use: bool) -> RecordDoc {
    let mut grants = BTreeMap::new();
    grants.insert(
        purpose.to_string(),
        GrantDoc {
            policy_version: 1,
            explicit: explicit.iter().map(|c| c.to_string()).collect(),
        },
    );
    RecordDoc {
        subject: format!("u-{i:07}"),
        grants,
        stop_use,
        stop_third_party: false,
        withdrawn: Vec::new(),
    }
}

/// The buckets the fetcher publishes for a plain-keyed snapshot of people `0..users`
/// (person `i` is `record(i)`), added in parts of 20,000 records; `None` if a part or
/// the encoding fails.
pub fn publish(
    policy: &CompiledPolicy,
    bits: u8,
    users: usize,
    record: impl Fn(usize) -> RecordDoc,
) -> Option<BTreeMap<u32, Vec<u8>>> {
    let mut builder = BucketBuilder::new(bits);
    for chunk in (0..users).collect::<Vec<_>>().chunks(20_000) {
        let doc = FullSnapshotDoc {
            version: 1,
            generated_at: None,
            subject_key: SubjectKeyKind::Plain,
            records: chunk.iter().map(|i| record(*i)).collect(),
            parts: None,
            part: None,
        };
        add_part(&doc, policy, &SubjectKeying::Plain, &mut builder).ok()?;
    }
    builder.finish(fingerprint(policy), 1).ok()
}

/// The request headers of one wrk request to `path` through Envoy, asking for `purpose`
/// about `user`.
pub fn request_headers<'a>(
    path: &'a [u8],
    user: &'a [u8],
    purpose: &'a [u8],
) -> Vec<(&'static str, &'a [u8])> {
    vec![
        (":authority", b"127.0.0.1:10000"),
        (":path", path),
        (":method", b"GET"),
        (":scheme", b"http"),
        ("user-agent", b"wrk"),
        ("x-user-id", user),
        ("x-data-purpose", purpose),
        ("x-forwarded-proto", b"http"),
        ("x-request-id", b"0f6a1d2e-3b4c-4d5e-8f90-112233445566"),
    ]
}

/// The response headers of a `text/plain` answer from Envoy of `content_length` bytes,
/// sent at `date`.
pub fn text_response_headers<'a>(
    content_length: &'a [u8],
    date: &'a [u8],
) -> Vec<(&'static str, &'a [u8])> {
    vec![
        (":status", b"200"),
        ("content-type", b"text/plain"),
        ("content-length", content_length),
        ("date", date),
        ("server", b"envoy"),
    ]
}

/// The number argument at `position` of the command line, or `default`.
pub fn number_arg(position: usize, default: usize) -> usize {
    std::env::args()
        .nth(position)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A transaction history of at least `target` bytes: ten leaf fields per transaction,
/// one of which (`merchant`) is the forbidden category.
pub fn history(target: usize) -> Vec<u8> {
    let mut txs = Vec::new();
    let mut size = 0;
    let mut i = 0usize;
    while size < target {
        let tx = json!({
            "id": format!("tx-{i:07}"),
            "date": format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
            "amount": 100 + (i * 37) % 9000,
            "merchant": format!("merchant-{}", i % 97),
            "category": "food",
            "gps": {"lat": 35.8 + (i % 100) as f64 * 0.0011, "lng": 139.6 + (i % 50) as f64 * 0.0013},
            "points": i % 5,
            "channel": "app",
            "status": "settled"
        });
        size += tx.to_string().len() + 1;
        txs.push(tx);
        i += 1;
    }
    let doc = json!({"user_id": "u-bench", "currency": "JPY", "transactions": txs});
    doc.to_string().into_bytes()
}

/// The categories forbidden in a history: the merchant alone (`None` if the policy has
/// no `payment.merchant`).
pub fn merchant_forbidden(policy: &CompiledPolicy) -> Option<CategorySet> {
    let mut forbidden = CategorySet::EMPTY;
    forbidden.insert(policy.category_idx("payment.merchant")?);
    Some(forbidden)
}

/// The policy's body rules with the default action (remove) for every forbidden category,
/// no pseudonym key and no field paths.
pub fn body_rules(policy: &CompiledPolicy) -> BodyRules<'_> {
    BodyRules {
        matcher: &policy.matcher,
        actions: &[],
        coarsen: &policy.coarsen,
        key: None,
        today: CivilDate {
            year: 2026,
            month: 11,
            day: 27,
        },
        record_paths: false,
    }
}
