//! The fetcher's work for one delta of 1,000 changes on a snapshot of N users (default
//! 1,000,000): checking the delta, then reading, changing and re-encoding every bucket it
//! touches. Prints the time per delta; run natively or as wasm under Node.
//! `delta_cost [USERS] [REPEATS]`

use consent_core::live::SubjectKeying;
use consent_core::live::{fingerprint, DeltaDoc, KeyedDelta, RecordDoc, SubjectKeyKind};
use consent_core::policy::CompiledPolicy;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{number_arg, publish};

/// Person `i`, granting service improvement with GPS explicitly.
fn record(i: usize, stop_use: bool) -> RecordDoc {
    common::record(i, "service.improvement", &["location.gps"], stop_use)
}

fn main() {
    let users = number_arg(1, 1_000_000);
    let repeats = number_arg(2, 20);
    let Ok(policy) = CompiledPolicy::default_policy() else {
        std::process::exit(1);
    };
    let keying = SubjectKeying::Plain;
    let fp = fingerprint(&policy);
    let bits = 16;
    let Some(mut published) = publish(&policy, bits, users, |i| record(i, false)) else {
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
