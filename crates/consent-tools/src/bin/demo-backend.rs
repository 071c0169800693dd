//! `demo-backend [ADDR] [SNAPSHOT.json]`: serves the demo backend (default 127.0.0.1:8081)
//! and, at `/snapshot`, the demo consent source, starting from SNAPSHOT.json
//! (default `envoy-config/demo-consents.json`), until stopped.

use consent_tools::demo_backend::{DemoBackend, SnapshotState};

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
            eprintln!("demo backend and consent source listening on http://{addr} (snapshot at /snapshot)");
            backend.wait();
        }
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    }
}
