//! Runs the streaming redactor N times over a 64 KiB transaction history, for profilers
//! (`perf stat`, callgrind) that want a fixed amount of work: `redact_loop [N]`.

use consent_core::body::redact;
use consent_core::policy::CompiledPolicy;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{body_rules, history, merchant_forbidden, number_arg};

fn main() {
    let n = number_arg(1, 1000);
    let Ok(policy) = CompiledPolicy::default_policy() else {
        eprintln!("shipped policy does not compile");
        std::process::exit(1);
    };
    let Some(forbidden) = merchant_forbidden(&policy) else {
        eprintln!("shipped policy has no payment.merchant");
        std::process::exit(1);
    };
    let body = history(64 * 1024);
    let rules = body_rules(&policy);
    let mut total = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..n {
        if let Ok((consent_core::body::BodyOutcome::Rewritten(out), _)) =
            redact(&body, &rules, forbidden, None)
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
