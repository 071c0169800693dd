//! A real gRPC server and client for the end-to-end tests: the demo ProfileService and its
//! client (scripts/grpc/, grpcio from the project venv), behind the fixture's Envoy.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::envoy::{free_port, leashed, repo_root, tag};
use super::fixture::wait_until;

/// The demo's gRPC backend port in the shipped config.
pub const SHIPPED_GRPC_PORT: u16 = 8083;

/// The project venv's Python (with grpcio, installed by `make grpc-tools`).
fn python() -> PathBuf {
    let path = repo_root().join(".venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run `make test`, which installs grpcio with `make grpc-tools`",
        path.display()
    );
    path
}

/// The demo gRPC service, killed on drop; `seen` collects what it received.
pub struct GrpcServer {
    child: Child,
    /// Its port.
    pub port: u16,
    seen: PathBuf,
}

impl GrpcServer {
    /// Starts the service on a free port and waits until it accepts connections.
    pub fn start() -> GrpcServer {
        let port = free_port();
        let seen = std::env::temp_dir().join(format!("{}.jsonl", tag("grpc-seen")));
        let child = leashed(&python())
            .arg(repo_root().join("scripts/grpc/profile_service.py"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--seen")
            .arg(&seen)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gRPC service");
        let server = GrpcServer { child, port, seen };
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the gRPC service did not start on {port}");
        server
    }

    /// Every request message the backend received whose metadata carries `tag` (the
    /// client's `x-test-tag`), as the service recorded it.
    pub fn seen(&self, tag: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.seen).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["metadata"]["x-test-tag"] == tag)
            .collect()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.seen);
    }
}

/// What the client printed: the gRPC status and the messages.
#[derive(Debug, Clone)]
pub struct GrpcCall {
    /// The whole JSON the client printed.
    pub out: Value,
    /// The tag sent as `x-test-tag`, to find the call at the backend.
    pub tag: String,
}

impl GrpcCall {
    /// The status code name (`OK`, `PERMISSION_DENIED`, ...).
    pub fn code(&self) -> &str {
        self.out["code"].as_str().unwrap_or("")
    }

    /// `grpc-message`.
    pub fn details(&self) -> &str {
        self.out["details"].as_str().unwrap_or("")
    }

    /// The response messages.
    pub fn messages(&self) -> &[Value] {
        self.out["messages"].as_array().map_or(&[], Vec::as_slice)
    }
}

/// Calls the service through Envoy at `port` with the demo client: `call` is `get`,
/// `update` or `history`, `args` more client arguments.
pub fn grpc_call(port: u16, user: &str, purpose: &str, call: &str, args: &[&str]) -> GrpcCall {
    let tag = tag("grpc");
    let output = Command::new(python())
        .arg(repo_root().join("scripts/grpc/profile_client.py"))
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args(["--user", user, "--purpose", purpose])
        .args(["--header", &format!("x-test-tag={tag}")])
        .arg(call)
        .args(args)
        .output()
        .expect("run the gRPC client");
    let out: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the gRPC client printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    GrpcCall { out, tag }
}
