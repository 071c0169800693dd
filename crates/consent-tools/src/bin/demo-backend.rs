//! `demo-backend [ADDR]`: serves the demo backend (default 127.0.0.1:8081) until stopped.

use consent_tools::demo_backend::DemoBackend;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_string());
    match DemoBackend::start(&addr) {
        Ok(backend) => {
            eprintln!("demo backend listening on http://{addr}");
            backend.wait();
        }
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    }
}
