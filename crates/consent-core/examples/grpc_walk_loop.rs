//! Times the gRPC wire walker on `saitama.v1.Profile` payment histories of about 1 KiB
//! and 64 KiB (every transaction's merchant removed, about 11% of the fields), natively or
//! as wasm32-wasip1 under Node (`make bench-grpc-wasm` runs both):
//! `grpc_walk_loop [SECONDS_PER_SIZE]`.

use consent_core::grpc::demo::{demo_config, history_profile, removing};
use consent_core::grpc::{rewrite_into, Walked};

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2.0);
    let Ok(config) = demo_config() else {
        eprintln!("the demo configuration does not compile");
        std::process::exit(1);
    };
    let Some(profile) = config.grpc.schema.message_idx("saitama.v1.Profile") else {
        std::process::exit(1);
    };
    let rules = removing(&config, &["payment.merchant"], false);
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
