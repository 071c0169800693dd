//! Runs the streaming redactor N times over a 64 KiB transaction history, for profilers
//! (`perf stat`, callgrind) that want a fixed amount of work: `redact_loop [N]`.

use consent_core::body::CivilDate;
use consent_core::body::{redact, BodyRules};
use consent_core::policy::CategorySet;
use consent_core::policy::CompiledPolicy;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let Ok(policy) = CompiledPolicy::default_policy() else {
        eprintln!("shipped policy does not compile");
        std::process::exit(1);
    };
    let mut forbidden = CategorySet::EMPTY;
    if let Some(c) = policy.category_idx("payment.merchant") {
        forbidden.insert(c);
    }
    let mut txs = Vec::new();
    let mut i = 0usize;
    let mut size = 0;
    while size < 64 * 1024 {
        let tx = format!(
            r#"{{"id":"tx-{i:07}","date":"2026-{:02}-{:02}","amount":{},"merchant":"merchant-{}","category":"food","gps":{{"lat":{:.4},"lng":{:.4}}},"points":{},"channel":"app","status":"settled"}}"#,
            1 + i % 12,
            1 + i % 28,
            100 + (i * 37) % 9000,
            i % 97,
            35.8 + (i % 100) as f64 * 0.0011,
            139.6 + (i % 50) as f64 * 0.0013,
            i % 5
        );
        size += tx.len() + 1;
        txs.push(tx);
        i += 1;
    }
    let body = format!(
        r#"{{"user_id":"u-bench","currency":"JPY","transactions":[{}]}}"#,
        txs.join(",")
    );
    let rules = BodyRules {
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
    };
    let mut total = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..n {
        if let Ok((consent_core::body::BodyOutcome::Rewritten(out), _)) =
            redact(body.as_bytes(), &rules, forbidden, None)
        {
            total += out.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} x {} B in {secs:.3} s: {:.0} MB/s (output {total} B)",
        body.len(),
        (n * body.len()) as f64 / secs / 1e6
    );
}
