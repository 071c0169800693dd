//! `demo-backend [ADDR] [SNAPSHOT.json]`: serves the demo backend (default 127.0.0.1:8081)
//! and, at `/snapshot`, the demo consent source, starting from SNAPSHOT.json
//! (default `envoy-config/demo-consents.json`), until stopped. It signs what it serves with
//! the demo's (DEMO ONLY) key, `envoy-config/demo-signing/minisign.key`, when it is there.

use consent_tools::demo_backend::{DemoBackend, SnapshotState};
use consent_tools::signing::{Signer, DEMO_SIGNING_KEY};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8081".to_string());
    let snapshot_path = args
        .next()
        .unwrap_or_else(|| "envoy-config/demo-consents.json".to_string());
    let snapshot = match std::fs::read_to_string(&snapshot_path) {
        Ok(doc) => SnapshotState::Serve(doc),
        Err(e) => {
            eprintln!("cannot read {snapshot_path}: {e}");
            std::process::exit(1);
        }
    };
    match DemoBackend::start_with_snapshot(&addr, snapshot) {
        Ok(backend) => {
            match Signer::from_file(std::path::Path::new(DEMO_SIGNING_KEY)) {
                Ok(signer) => backend.sign_with(Some(signer)),
                Err(e) => eprintln!("the snapshot is served unsigned: {e}"),
            }
            eprintln!("demo backend and consent source listening on http://{addr} (snapshot at /snapshot)");
            backend.wait();
        }
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    }
}
