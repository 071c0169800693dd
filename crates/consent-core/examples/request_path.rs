//! The wasm side of one header-only request, host calls left out, N times: the header
//! list copied as the SDK copies it, `decide_request` with the shared-snapshot lookup
//! (metadata check, subject key, bucket name, copied bucket and record lookup), request
//! plan, decision header, response plan and body mode.
//! For callgrind (`valgrind --tool=callgrind request_path 20000`) and for timing the glue's
//! share of a request: `request_path [N]`.

use std::collections::HashMap;
use std::hint::black_box;

use consent_core::body::{body_mode, BodyHeaders};
use consent_core::decide::{decision_header_value, plan_request, plan_response};
use consent_core::live::{
    fingerprint, to_hex, BucketBuilder, MetaCache, PublishedMeta, SharedLookup, SharedStore,
    StoreUnavailable, Stored,
};
use consent_core::policy::{CallerFacts, RouteFacts};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{number_arg, record, request_headers, text_response_headers};

/// The clock of every request (the snapshot is always fresh).
const NOW_MS: u64 = 1_800_000_000_000;

/// Published buckets and metadata, as the fetcher leaves them in shared data.
struct Published(HashMap<String, Vec<u8>>);

impl SharedStore for Published {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreUnavailable> {
        Ok(self.0.get(key).map(|bytes| Stored {
            bytes: bytes.clone(),
            cas: Some(1),
        }))
    }
}

fn main() {
    let n = number_arg(1, 100_000);
    let Ok(config) = consent_core::compile_config(
        br#"{"caller": {"unidentified_party": "tsunagu"}, "snapshot": {"source": "shared", "cluster": "consent_source"}}"#,
    ) else {
        eprintln!("bench configuration does not compile");
        std::process::exit(1);
    };
    let doc = record(1, "marketing.newsletters", &[], false);
    let Ok(record) = consent_core::ConsentRecord::compile(&doc, &config.policy, "record") else {
        eprintln!("record does not compile");
        std::process::exit(1);
    };
    let key = config.snapshot.keying.key_of_user("u-0000001");
    let mut builder = BucketBuilder::new(config.snapshot.bucket_bits);
    builder.add(key, &record);
    let store = Published(HashMap::new());
    let mut store = store;
    for (bucket, bytes) in builder
        .finish(fingerprint(&config.policy), 1)
        .unwrap_or_default()
    {
        store.0.insert(config.shared_keys.bucket(bucket), bytes);
    }
    let meta = PublishedMeta {
        version: 1,
        fetched_at_ms: NOW_MS,
        generated_at: None,
        users: 1,
        bucket_bits: config.snapshot.bucket_bits,
        fingerprint: to_hex(&config.policy_fingerprint),
        epoch: 1,
        generation: 1,
    };
    store
        .0
        .insert(config.shared_keys.meta_key().to_string(), meta.to_json());
    let cache = MetaCache::default();
    let request = request_headers(b"/h-text", b"u-0000001", b"marketing.newsletters");
    let mut response = text_response_headers(b"2", b"Sat, 28 Nov 2026 02:00:00 GMT");
    response.push(("x-envoy-upstream-service-time", b"0"));
    let start = std::time::Instant::now();
    let mut total = 0usize;
    for _ in 0..n {
        // As the SDK hands them over: owned names and values.
        let headers: Vec<(String, Vec<u8>)> = black_box(&request)
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        let pairs = || headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let lookup = SharedLookup::new(&config, &store, &cache, NOW_MS);
        let decision = config
            .decide_request(
                pairs(),
                &CallerFacts::default(),
                &RouteFacts::default(),
                &lookup,
            )
            .decision;
        let edits = plan_request(&config.policy, &decision, pairs());
        let header = decision_header_value(&config.policy, &config.routes, &decision);
        let response_headers: Vec<(String, Vec<u8>)> = response
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        let resp = || {
            response_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
        };
        let response_edits = plan_response(&config.policy, &decision, resp());
        let mode = body_mode(
            config.body_needed(&decision),
            &BodyHeaders::from_headers(resp()),
            config.body.max_bytes,
            config.body.encoded,
            config.body.unparsed,
        );
        total += edits.remove.len()
            + header.len()
            + response_edits.remove.len()
            + usize::from(mode == consent_core::body::BodyMode::Skip);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} requests in {secs:.3} s: {:.2} us each (checksum {total})",
        secs * 1e6 / n as f64
    );
}
