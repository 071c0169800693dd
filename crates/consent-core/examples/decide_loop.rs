//! Runs the header path of one request N times (evaluate, plan, decision header), for
//! profilers and for timing the core under a wasm runtime: `decide_loop [N]`.

use consent_core::decide::decision_header_value;
use consent_core::decide::{plan_request, plan_response};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{number_arg, request_headers, text_response_headers};

fn main() {
    let n = number_arg(1, 100_000);
    let config = match consent_core::compile_config(
        br#"{"consents": {"records": [{"subject": "u-bench", "grants": {"service.improvement": {"policy_version": 1, "explicit": ["location.gps"]}}}]}}"#,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let headers = request_headers(b"/1k-text", b"u-bench", b"service.improvement");
    let response = text_response_headers(b"1100", b"Fri, 27 Nov 2026 21:30:00 GMT");
    let start = std::time::Instant::now();
    let mut total = 0usize;
    for _ in 0..n {
        let decision = config.evaluate(headers.iter().copied());
        let edits = plan_request(&config.policy, &decision, headers.iter().copied());
        let header = decision_header_value(&config.policy, &config.routes, &decision);
        let resp = plan_response(&config.policy, &decision, response.iter().copied());
        total += edits.remove.len()
            + header.len()
            + resp.remove.len()
            + usize::from(config.body_needed(&decision));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} header decisions in {secs:.3} s: {:.2} us each (checksum {total})",
        secs * 1e6 / n as f64
    );
}
