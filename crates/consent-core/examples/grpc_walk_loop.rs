//! Times the gRPC wire walker on `saitama.v1.Profile` payment histories of about 1 KiB
//! and 64 KiB (every transaction's merchant removed, about 11% of the fields), natively or
//! as wasm32-wasip1 under Node (`make bench-grpc-wasm` runs both):
//! `grpc_walk_loop [SECONDS_PER_SIZE]`.

use consent_core::body::CivilDate;
use consent_core::grpc::demo::{demo_descriptor_base64, history_profile};
use consent_core::grpc::{rewrite_into, ProtoRules, Walked};
use consent_core::policy::CategorySet;
use consent_core::{compile_config, CompiledConfig};

fn config() -> Option<CompiledConfig> {
    let doc = format!(
        r#"{{"grpc": {{"descriptor_set": "{}"}}}}"#,
        demo_descriptor_base64()
    );
    compile_config(doc.as_bytes()).ok()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2.0);
    let Some(config) = config() else {
        eprintln!("the demo configuration does not compile");
        std::process::exit(1);
    };
    let mut forbidden = CategorySet::EMPTY;
    if let Some(c) = config.policy.category_idx("payment.merchant") {
        forbidden.insert(c);
    }
    let Some(profile) = config.grpc.schema.message_idx("saitama.v1.Profile") else {
        std::process::exit(1);
    };
    let rules = ProtoRules {
        schema: &config.grpc.schema,
        tables: &config.grpc.tables,
        forbidden,
        actions: &[],
        coarsen: &config.policy.coarsen,
        key: None,
        today: CivilDate {
            year: 2026,
            month: 11,
            day: 27,
        },
        record_paths: false,
    };
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32 (Node)"
    } else {
        "native"
    };
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let body = history_profile(size);
        let mut out = Vec::with_capacity(body.len());
        let start = std::time::Instant::now();
        let mut runs = 0u64;
        let mut removed = 0usize;
        while start.elapsed().as_secs_f64() < seconds {
            for _ in 0..64 {
                out.clear();
                let mut report = Default::default();
                match rewrite_into(&body, profile, &rules, &mut out, &mut report) {
                    Ok(Walked::Rewritten) => removed = report.removed,
                    _ => std::process::exit(1),
                }
                runs += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let per = elapsed / runs as f64;
        println!(
            "{target} {label}: {} B, {removed} fields removed, {:.2} us per message, {:.0} MB/s",
            body.len(),
            per * 1e6,
            body.len() as f64 / per / 1e6
        );
    }
}
