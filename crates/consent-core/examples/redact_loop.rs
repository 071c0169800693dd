//! Runs the redactor N times over a transaction history, for profilers (`perf stat`,
//! callgrind) that want a fixed amount of work, and for `make bench-redact-wasm` (the same
//! natively and as wasm32-wasip1 under Node): `redact_loop [N] [two-stage|scalar|both]
//! [SIZE]`. `scalar` runs the scalar redactor (the two-stage one's fallback and
//! reference); `both` runs the two in ten interleaved rounds and reports the best and
//! median round of each and the median of the per-round ratios, which a noisy machine
//! disturbs least. SIZE is the body's size in bytes (default 65536: the criterion bench's
//! 64 KiB history, 65,615 B).

use consent_core::body::{redact, redact_scalar, BodyOutcome, BodyRules};
use consent_core::policy::{CategorySet, CompiledPolicy};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{body_rules, history, merchant_forbidden, number_arg};

/// One pass, the output's length. Not inlined: V8 moves a WebAssembly function to its
/// optimising tier only when it is called again, so a loop inlined into `main` would run
/// in the baseline tier throughout (a filter's body callback is called per request).
#[inline(never)]
fn once(body: &[u8], rules: &BodyRules<'_>, forbidden: CategorySet, scalar: bool) -> usize {
    let result = if scalar {
        redact_scalar(body, rules, forbidden, None)
    } else {
        redact(body, rules, forbidden, None)
    };
    match result {
        Ok((BodyOutcome::Rewritten(out), _)) => out.len(),
        _ => 0,
    }
}

/// `n` passes; the output bytes and the throughput in MB/s.
fn run(
    n: usize,
    body: &[u8],
    rules: &BodyRules<'_>,
    forbidden: CategorySet,
    scalar: bool,
) -> (usize, f64) {
    let mut total = 0usize;
    let start = std::time::Instant::now();
    for _ in 0..n {
        total += once(body, rules, forbidden, scalar);
    }
    let secs = start.elapsed().as_secs_f64();
    (total, (n * body.len()) as f64 / secs / 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let n = number_arg(1, 1000);
    let which = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "two-stage".to_string());
    let size = number_arg(3, 64 * 1024);
    let Ok(policy) = CompiledPolicy::default_policy() else {
        eprintln!("shipped policy does not compile");
        std::process::exit(1);
    };
    let Some(forbidden) = merchant_forbidden(&policy) else {
        eprintln!("shipped policy has no payment.merchant");
        std::process::exit(1);
    };
    let body = history(size);
    let rules = body_rules(&policy);
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32 (Node)"
    } else {
        "native"
    };
    if which != "both" {
        let scalar = which == "scalar";
        let (total, mbps) = run(n, &body, &rules, forbidden, scalar);
        println!(
            "{target} {which}: {n} x {} B: {mbps:.0} MB/s (output {total} B)",
            body.len()
        );
        return;
    }
    let rounds = 10;
    let per_round = (n / rounds).max(1);
    // Warm up both (the DFA, and V8's optimising tier).
    run(per_round, &body, &rules, forbidden, false);
    run(per_round, &body, &rules, forbidden, true);
    let (mut fast, mut slow, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (_, a) = run(per_round, &body, &rules, forbidden, false);
        let (_, b) = run(per_round, &body, &rules, forbidden, true);
        fast.push(a);
        slow.push(b);
        ratios.push(a / b);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "{target} {} B, {rounds} rounds of {per_round}: two-stage best {:.0} MB/s, median {:.0}; \
         scalar best {:.0} MB/s, median {:.0}; ratio (median of rounds) {:.2}x",
        body.len(),
        best(&fast),
        median(fast.clone()),
        best(&slow),
        median(slow.clone()),
        median(ratios)
    );
}
