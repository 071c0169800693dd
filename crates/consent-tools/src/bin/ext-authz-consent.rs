//! `ext-authz-consent --config CONFIG.json --snapshot PART.json [--snapshot PART.json ...]
//! [--listen ADDR] [--threads N]`: an Envoy `ext_authz` HTTP service deciding each request
//! with consent-core (200 with the decision header, or the block reply), for
//! `bench/compare.py`. Listens on 127.0.0.1:9191 by default with 4 worker threads.

use consent_tools::ext_authz::{AuthzServer, ConsentAuthz};

fn fail(message: &str) -> ! {
    eprintln!("ext-authz-consent: {message}");
    std::process::exit(1);
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| fail(&format!("cannot read {path}: {e}")))
}

fn main() {
    let mut listen = "127.0.0.1:9191".to_string();
    let mut threads = 4usize;
    let mut config = None;
    let mut parts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--listen" => listen = value(),
            "--threads" => {
                threads = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--threads needs a number"))
            }
            "--config" => config = Some(read(&value())),
            "--snapshot" => parts.push(read(&value())),
            "-h" | "--help" => {
                println!("ext-authz-consent --config CONFIG.json --snapshot PART.json [--snapshot PART.json ...] [--listen ADDR] [--threads N]");
                return;
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    let config = config.unwrap_or_else(|| fail("--config is required"));
    let authz = ConsentAuthz::new(&config, &parts).unwrap_or_else(|e| fail(&e));
    let users = authz.users();
    let server = AuthzServer::start(&listen, &authz, threads)
        .unwrap_or_else(|e| fail(&format!("cannot listen on {listen}: {e}")));
    eprintln!("ext-authz-consent: {users} users, {threads} threads, listening on http://{listen}");
    server.wait();
}
