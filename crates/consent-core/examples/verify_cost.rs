//! What checking a snapshot document's minisign signature costs the fetcher: one
//! `Trust::verify` (BLAKE2b of the document, two Ed25519 verifications) per document, for
//! a small delta, a 2.4 MB snapshot part (20,000 records, the reference source's part size)
//! and a whole 121 MB snapshot's worth. Run natively or as wasm under Node:
//! `verify_cost [REPEATS]`.

use consent_core::config::compile_config;

#[path = "../benches/common/mod.rs"]
mod common;
use common::number_arg;

fn main() {
    let repeats = number_arg(1, 20);
    let Ok(minisign::KeyPair { pk, sk }) = minisign::KeyPair::generate_unencrypted_keypair() else {
        std::process::exit(1);
    };
    let config = format!(r#"{{"snapshot": {{"public_key": "{}"}}}}"#, pk.to_base64());
    let Some(trust) = compile_config(config.as_bytes())
        .ok()
        .and_then(|c| c.snapshot.trust)
    else {
        std::process::exit(1);
    };
    for (what, bytes) in [
        ("delta, 1 KB", 1_000usize),
        ("part, 2.4 MB", 2_400_000),
        ("snapshot, 121 MB", 121_000_000),
    ] {
        let document: Vec<u8> = (0..bytes).map(|i| b'a' + (i % 26) as u8).collect();
        let Ok(signature) = minisign::sign(Some(&pk), &sk, document.as_slice(), None, None) else {
            std::process::exit(1);
        };
        let minisig = signature.into_string();
        let runs = if bytes > 10_000_000 { 1 } else { repeats };
        let started = std::time::Instant::now();
        for _ in 0..runs {
            if trust.verify(&document, &minisig).is_err() {
                std::process::exit(1);
            }
        }
        let each = started.elapsed().as_secs_f64() / runs as f64;
        println!(
            "{what:18} {:9.3} ms per check ({:.0} MB/s)",
            each * 1e3,
            bytes as f64 / each / 1e6
        );
    }
}
