//! The fetcher's work for one delta of 1,000 changes on a snapshot of N users (default
//! 1,000,000): checking the delta, then reading, changing and re-encoding every bucket it
//! touches. Prints the time per delta; run natively or as wasm under Node.
//! `delta_cost [USERS] [REPEATS]`

use std::collections::BTreeMap;

use consent_core::live::SubjectKeying;
use consent_core::live::{add_part, DeltaDoc, FullSnapshotDoc, KeyedDelta, SubjectKeyKind};
use consent_core::live::{fingerprint, BucketBuilder};
use consent_core::live::{GrantDoc, RecordDoc};
use consent_core::policy::CompiledPolicy;

fn record(i: usize, stop_use: bool) -> RecordDoc {
    let mut grants = BTreeMap::new();
    grants.insert(
        "service.improvement".to_string(),
        GrantDoc {
            policy_version: 1,
            explicit: vec!["location.gps".to_string()],
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

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let Ok(policy) = CompiledPolicy::default_policy() else {
        std::process::exit(1);
    };
    let keying = SubjectKeying::Plain;
    let fp = fingerprint(&policy);
    let bits = 16;
    let mut builder = BucketBuilder::new(bits);
    for chunk in (0..users).collect::<Vec<_>>().chunks(20_000) {
        let doc = FullSnapshotDoc {
            version: 1,
            generated_at: None,
            subject_key: SubjectKeyKind::Plain,
            records: chunk.iter().map(|i| record(*i, false)).collect(),
            parts: None,
            part: None,
        };
        if add_part(&doc, &policy, &keying, &mut builder).is_err() {
            std::process::exit(1);
        }
    }
    let Ok(mut published) = builder.finish(fp, 1) else {
        std::process::exit(1);
    };
    let delta_doc = DeltaDoc {
        from_version: 1,
        version: 2,
        generated_at: None,
        subject_key: SubjectKeyKind::Plain,
        upserts: (0..1000)
            .map(|i| record(i * (users / 1000).max(1), true))
            .collect(),
        deletes: vec![],
    };
    let start = std::time::Instant::now();
    let mut touched = 0;
    for _ in 0..repeats {
        let Ok(delta) = KeyedDelta::compile(&delta_doc, &policy, &keying, bits) else {
            std::process::exit(1);
        };
        for bucket in delta.buckets() {
            if let Ok((bytes, _)) =
                delta.apply_to_bucket(bucket, published.get(&bucket).map(Vec::as_slice), fp)
            {
                published.insert(bucket, bytes);
                touched += 1;
            }
        }
    }
    let each = start.elapsed().as_secs_f64() / repeats as f64;
    println!(
        "delta of 1000 changes on {users} users: {:.2} ms each ({} buckets touched per delta)",
        each * 1e3,
        touched / repeats
    );
}
