//! An external consent-decision service for Envoy's `ext_authz` filter (HTTP service
//! mode), as an OPA-Envoy style deployment would run it: Envoy sends each request's
//! headers, the service decides with the filter's own engine (`consent-core`) and answers
//! `200` (allow or redact, with the decision header for the backend) or the block status
//! with the filter's block reply. `bench/compare.py` measures it against the filter.
//!
//! Consents come from a snapshot document as a consent source serves it (one or more
//! parts), compiled as the plugin configuration's inline `consents`; the configuration's
//! `snapshot` block is ignored (the service holds the whole snapshot itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use consent_core::config::{compile_doc, ConfigDoc};
use consent_core::decide::{block_body, decision_header_value};
use consent_core::live::SnapshotDoc;
use consent_core::live::SnapshotSettingsDoc;
use consent_core::live::{FullSnapshotDoc, SubjectKeyKind};
use consent_core::{CompiledConfig, Outcome};
use tiny_http::{Header, Request, Response, Server};

/// What the service answers for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `200` to let the request through, else the configured block status.
    pub status: u16,
    /// Value of the decision header (its name is `decision_header`).
    pub decision: String,
    /// The block reply body (JSON), for a block.
    pub body: Option<String>,
}

/// A compiled configuration with its consents, deciding requests by their headers.
/// Not `Sync` (the configuration caches matchers lazily): each worker thread holds its
/// own copy, as each Envoy worker holds its own filter VM.
#[derive(Debug, Clone)]
pub struct ConsentAuthz {
    config: CompiledConfig,
}

impl ConsentAuthz {
    /// Compiles a plugin configuration (JSON) with the records of the snapshot `parts`
    /// (JSON documents as a source serves them, plain subject keying only) as its consents.
    pub fn new(config_json: &[u8], parts: &[Vec<u8>]) -> Result<Self, String> {
        let mut doc: ConfigDoc =
            serde_json::from_slice(config_json).map_err(|e| format!("configuration: {e}"))?;
        let mut consents = SnapshotDoc::default();
        for (i, part) in parts.iter().enumerate() {
            let snap =
                FullSnapshotDoc::from_json(part).map_err(|e| format!("snapshot part {i}: {e}"))?;
            if snap.subject_key != SubjectKeyKind::Plain {
                return Err(format!(
                    "snapshot part {i}: only plain subject keying is supported"
                ));
            }
            consents.version = snap.version;
            consents.records.extend(snap.records);
        }
        if !parts.is_empty() {
            doc.consents = consents;
        }
        doc.snapshot = SnapshotSettingsDoc::default();
        let config = compile_doc(&doc).map_err(|e| format!("configuration: {e}"))?;
        Ok(ConsentAuthz { config })
    }

    /// People in the consent snapshot.
    pub fn users(&self) -> usize {
        self.config.consents.len()
    }

    /// Name of the decision header (lowercase).
    pub fn decision_header(&self) -> &str {
        &self.config.settings.decision_header
    }

    /// Decides a request by its headers (names in lowercase) for a caller without
    /// identity on the default route, as the filter does on a plain listener.
    pub fn check<'a, I>(&self, headers: I) -> Verdict
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let decision = self.config.evaluate(headers);
        let value = decision_header_value(&self.config.policy, &self.config.routes, &decision);
        if decision.outcome == Outcome::Block {
            Verdict {
                status: self.config.settings.block_status,
                decision: value,
                body: Some(block_body(&self.config.policy, &decision)),
            }
        } else {
            Verdict {
                status: 200,
                decision: value,
                body: None,
            }
        }
    }
}

/// A running service: `threads` workers answering check requests on one listener.
pub struct AuthzServer {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
}

impl AuthzServer {
    /// Starts serving `authz` on `addr` (port 0 picks a free port), one copy per thread.
    pub fn start(addr: &str, authz: &ConsentAuthz, threads: usize) -> Result<Self, String> {
        let server = Arc::new(Server::http(addr).map_err(|e| e.to_string())?);
        let workers = (0..threads.max(1))
            .map(|_| {
                let server = Arc::clone(&server);
                let authz = authz.clone();
                std::thread::spawn(move || {
                    for request in server.incoming_requests() {
                        answer(request, &authz);
                    }
                })
            })
            .collect();
        Ok(AuthzServer { server, workers })
    }

    /// The address it listens on.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.join();
        }
    }
}

impl Drop for AuthzServer {
    fn drop(&mut self) {
        for _ in 0..self.workers.len().max(1) {
            self.server.unblock();
        }
    }
}

fn answer(request: Request, authz: &ConsentAuthz) {
    let headers: Vec<(String, &[u8])> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().as_bytes(),
            )
        })
        .collect();
    let verdict = authz.check(headers.iter().map(|(n, v)| (n.as_str(), *v)));
    let mut response =
        Response::from_string(verdict.body.unwrap_or_default()).with_status_code(verdict.status);
    if let Ok(h) = Header::from_bytes(authz.decision_header().as_bytes(), verdict.decision) {
        response.add_header(h);
    }
    if verdict.status != 200 {
        if let Ok(h) = Header::from_bytes(&b"content-type"[..], &b"application/json"[..]) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"caller": {"unidentified_party": "tsunagu"},
        "snapshot": {"source": "shared", "cluster": "consent_source"}}"#;
    const PART: &str = r#"{"version": 3, "subject_key": "plain", "parts": 1, "part": 0, "records": [
        {"subject": "u-1", "grants": {"marketing.newsletters": {"policy_version": 1}}},
        {"subject": "u-2", "grants": {}}]}"#;

    fn authz() -> ConsentAuthz {
        match ConsentAuthz::new(CONFIG.as_bytes(), &[PART.as_bytes().to_vec()]) {
            Ok(a) => a,
            Err(e) => unreachable!("{e}"),
        }
    }

    fn check(a: &ConsentAuthz, user: &str, purpose: &str) -> Verdict {
        a.check([
            ("x-user-id", user.as_bytes()),
            ("x-data-purpose", purpose.as_bytes()),
        ])
    }

    #[test]
    fn decides_like_the_filter() {
        let a = authz();
        assert_eq!(a.users(), 2);
        let granted = check(&a, "u-1", "marketing.newsletters");
        assert_eq!(granted.status, 200);
        assert!(granted
            .decision
            .starts_with("outcome=redact; reason=consent_granted"));
        assert!(granted.decision.contains("party=tsunagu"));
        let refused = check(&a, "u-2", "marketing.newsletters");
        assert_eq!(refused.status, 403);
        assert!(refused.body.unwrap_or_default().contains("consent_missing"));
        assert_eq!(check(&a, "u-9", "marketing.newsletters").status, 403);
        assert_eq!(check(&a, "u-2", "service.improvement").status, 200);
    }

    #[test]
    fn answers_over_http() {
        let server = match AuthzServer::start("127.0.0.1:0", &authz(), 2) {
            Ok(s) => s,
            Err(e) => unreachable!("{e}"),
        };
        let Some(addr) = server.addr() else {
            unreachable!("no address")
        };
        let status = |user: &str| {
            use std::io::{Read, Write};
            let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                unreachable!("connect")
            };
            let req = format!("GET /check HTTP/1.1\r\nhost: x\r\nx-user-id: {user}\r\nx-data-purpose: marketing.newsletters\r\nconnection: close\r\n\r\n");
            let _ = s.write_all(req.as_bytes());
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        let ok = status("u-1");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok
            .to_ascii_lowercase()
            .contains("x-consent-decision: outcome=redact"));
        assert!(status("u-2").starts_with("HTTP/1.1 403"));
    }
}
