//! A demo backend: echoes back as JSON what reached it, and serves a user profile that
//! holds personal data of every category of the shipped policy.
//!
//! Endpoints:
//! - `GET /users/{id}/profile`: a profile with every category, plus headers
//!   `x-device-id`, `x-geo-position` and `x-user-email` on the response;
//! - `GET /users`: `{"items": [profile, ...]}` for the three demo users (multi-subject);
//! - `GET /history?n=N`: a profile with N transactions (large bodies);
//! - `GET /broken-json`: a truncated JSON body labelled `application/json`;
//! - `GET /gzip-profile`: the profile of u-alice, gzip-compressed (`content-encoding: gzip`);
//! - `GET /snapshot` (and `PUT /snapshot`), `GET /deltas/{from}`: the demo consent source,
//!   in the state the tests set ([`SnapshotState`]), signed with the key it is given
//!   ([`DemoBackend::sign_with`]): the `consent-signature` header, and `{path}.minisig`;
//! - anything else: `{"method", "path", "query", "headers", "body"}` of the request as seen.
//!
//! Every request (but the consent source's) is also recorded, so tests can assert what the
//! backend saw.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use consent_core::live::{header_value, SIGNATURE_HEADER, SIGNATURE_SUFFIX};

use crate::signing::Signer;

use serde_json::{json, Map, Value};
use tiny_http::{Header, Request, Response, Server};

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// HTTP method.
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Headers with lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// Every value of a header (name in lowercase).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

/// A running demo backend.
pub struct DemoBackend {
    server: Arc<Server>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    source: Arc<SourceState>,
    workers: Vec<JoinHandle<()>>,
}

/// The demo consent source: what it serves and how it signs it.
struct SourceState {
    snapshot: Arc<Mutex<SnapshotState>>,
    /// `GET /deltas/{from}`: by `from` (absent: 404).
    deltas: Mutex<BTreeMap<u64, SnapshotState>>,
    signer: Mutex<Option<Arc<Signer>>>,
    /// Whether signatures also go in the `consent-signature` header (else only in
    /// `{path}.minisig`).
    signature_header: AtomicBool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `GET /snapshot` serves: a consent snapshot (the demo's consent source), or a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    /// Serve this JSON document (with an ETag, answering 304 when it matches).
    Serve(String),
    /// Answer with this status and no snapshot (e.g. 500, 503).
    Fail(u16),
    /// Answer 200 with a body that is not a snapshot.
    Garbage,
    /// Accept the request and answer only a minute later (a hanging source).
    Hang,
    /// Serve `body` with the signature of `signed` (a document changed after signing).
    Forged {
        /// What is served.
        body: String,
        /// What the signature is of.
        signed: String,
    },
}

/// Changes what the backend serves as the consent source, from any thread.
#[derive(Clone)]
pub struct SnapshotHandle(Arc<Mutex<SnapshotState>>);

impl SnapshotHandle {
    /// Serve `state` from now on.
    pub fn set(&self, state: SnapshotState) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }
}

/// Why the backend could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "demo backend cannot start: {}", self.0)
    }
}

impl std::error::Error for StartError {}

impl DemoBackend {
    /// Starts serving on `addr` (port 0 picks a free port) with a few worker threads;
    /// `GET /snapshot` answers 503 until a snapshot is set.
    pub fn start(addr: &str) -> Result<Self, StartError> {
        Self::start_with_snapshot(addr, SnapshotState::Fail(503))
    }

    /// Starts serving with `snapshot` as the consent source's state.
    pub fn start_with_snapshot(addr: &str, snapshot: SnapshotState) -> Result<Self, StartError> {
        let server = Server::http(addr).map_err(|e| StartError(e.to_string()))?;
        let server = Arc::new(server);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let source = Arc::new(SourceState {
            snapshot: Arc::new(Mutex::new(snapshot)),
            deltas: Mutex::new(BTreeMap::new()),
            signer: Mutex::new(None),
            signature_header: AtomicBool::new(true),
        });
        let workers = (0..4)
            .map(|_| {
                let server = Arc::clone(&server);
                let seen = Arc::clone(&seen);
                let source = Arc::clone(&source);
                std::thread::spawn(move || {
                    for request in server.incoming_requests() {
                        handle(request, &seen, &source);
                    }
                })
            })
            .collect();
        Ok(DemoBackend {
            server,
            seen,
            source,
            workers,
        })
    }

    /// Changes what `GET /snapshot` serves.
    pub fn set_snapshot(&self, state: SnapshotState) {
        *locked(&self.source.snapshot) = state;
    }

    /// Serves `state` at `GET /deltas/{from}` (`None`: 404, nothing newer).
    pub fn set_delta(&self, from: u64, state: Option<SnapshotState>) {
        let mut deltas = locked(&self.source.deltas);
        match state {
            Some(state) => deltas.insert(from, state),
            None => deltas.remove(&from),
        };
    }

    /// Signs what the consent source serves with `signer` from now on (`None`: unsigned,
    /// no header and `.minisig` answers 404).
    pub fn sign_with(&self, signer: Option<Signer>) {
        *locked(&self.source.signer) = signer.map(Arc::new);
    }

    /// Whether signatures go in the `consent-signature` header too (default) or only in
    /// `{path}.minisig` files (as static files signed with `minisign -S` would be).
    pub fn signature_header(&self, on: bool) {
        self.source.signature_header.store(on, Ordering::Relaxed);
    }

    /// A handle that changes the snapshot state from another thread.
    pub fn snapshot_handle(&self) -> SnapshotHandle {
        SnapshotHandle(Arc::clone(&self.source.snapshot))
    }

    /// The address it listens on.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        lock(&self.seen).clone()
    }

    /// The last request whose `x-request-tag` header equals `tag`.
    pub fn seen_with_tag(&self, tag: &str) -> Option<SeenRequest> {
        lock(&self.seen)
            .iter()
            .rev()
            .find(|r| r.header("x-request-tag") == Some(tag))
            .cloned()
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.join();
        }
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        // Each call releases one worker blocked waiting for a request.
        for _ in 0..self.workers.len().max(1) {
            self.server.unblock();
        }
    }
}

fn lock(seen: &Mutex<Vec<SeenRequest>>) -> MutexGuard<'_, Vec<SeenRequest>> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn handle(mut request: Request, seen: &Mutex<Vec<SeenRequest>>, source: &SourceState) {
    let mut body = Vec::new();
    if request.as_reader().read_to_end(&mut body).is_err() {
        let _ = request.respond(Response::from_string("cannot read body").with_status_code(400));
        return;
    }
    let path = request.url().split('?').next().unwrap_or("").to_string();
    if path == "/snapshot" {
        serve_snapshot(request, body, source);
        return;
    }
    if path.starts_with("/deltas/") || path == format!("/snapshot{SIGNATURE_SUFFIX}") {
        serve_document(request, &path, source);
        return;
    }
    let record = SeenRequest {
        method: request.method().as_str().to_string(),
        path: request.url().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        body,
    };
    let path_only = record.path.split('?').next().unwrap_or("").to_string();
    let path_only = path_only.as_str();
    let (payload, extra_headers) = match profile_user(&record.path) {
        Some(user) => (profile(user), profile_headers()),
        None if path_only == "/users" => (user_list(), Vec::new()),
        None if path_only == "/history" => (history(&record.path), Vec::new()),
        None if path_only == "/broken-json" => (Value::Null, Vec::new()),
        None if path_only == "/gzip-profile" => {
            (profile("u-alice"), vec![("content-encoding", "gzip")])
        }
        None if path_only == "/cookies" => (echo(&record), demo_cookies()),
        None => (echo(&record), Vec::new()),
    };
    lock(seen).push(record);
    let text = if path_only == "/broken-json" {
        "{\"email\": \"hanako@example.jp\", ".to_string()
    } else {
        payload.to_string()
    };
    let mut response = if path_only == "/gzip-profile" {
        Response::from_data(gzip(text.as_bytes()))
    } else {
        Response::from_data(text.into_bytes())
    };
    for (name, value) in [("content-type", "application/json")]
        .into_iter()
        .chain(extra_headers)
    {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

/// The demo consent source: `GET /snapshot` (ETag, If-None-Match, 304) and
/// `PUT /snapshot` with a new document, so a consent change can be shown with curl.
fn serve_snapshot(request: Request, body: Vec<u8>, source: &SourceState) {
    let mut state = locked(&source.snapshot);
    if request.method().as_str() == "PUT" {
        match serde_json::from_slice::<Value>(&body) {
            Ok(_) => {
                *state = SnapshotState::Serve(String::from_utf8_lossy(&body).into_owned());
                drop(state);
                let _ = request
                    .respond(Response::from_string("{\"stored\":true}").with_status_code(200));
            }
            Err(_) => {
                drop(state);
                let _ = request.respond(
                    Response::from_string("{\"error\":\"not JSON\"}").with_status_code(400),
                );
            }
        }
        return;
    }
    let current = state.clone();
    drop(state);
    if current == SnapshotState::Hang {
        // Hold the request on its own thread, so the workers keep serving everything else.
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(60));
            let _ = request.respond(Response::from_string("").with_status_code(503));
        });
        return;
    }
    let response = match &current {
        SnapshotState::Serve(doc) | SnapshotState::Forged { body: doc, .. } => {
            let etag = format!("\"{:016x}\"", fnv1a(doc.as_bytes()));
            let matches = request
                .headers()
                .iter()
                .any(|h| h.field.equiv("if-none-match") && h.value.as_str() == etag);
            let response = if matches {
                Response::from_string("").with_status_code(304)
            } else {
                signed(doc, &current, source)
            };
            match Header::from_bytes(&b"etag"[..], etag.as_bytes()) {
                Ok(h) => response.with_header(h),
                Err(()) => response,
            }
        }
        SnapshotState::Fail(status) => Response::from_string("").with_status_code(*status),
        SnapshotState::Hang => Response::from_string("").with_status_code(503),
        SnapshotState::Garbage => {
            Response::from_string("<html>not a snapshot</html>").with_status_code(200)
        }
    };
    let _ = request.respond(response);
}

/// `GET /deltas/{from}`, and the `.minisig` files of the snapshot and the deltas.
fn serve_document(request: Request, path: &str, source: &SourceState) {
    let (path, minisig) = match path.strip_suffix(SIGNATURE_SUFFIX) {
        Some(document) => (document, true),
        None => (path, false),
    };
    let state = if path == "/snapshot" {
        Some(locked(&source.snapshot).clone())
    } else {
        path.strip_prefix("/deltas/")
            .and_then(|from| from.parse::<u64>().ok())
            .and_then(|from| locked(&source.deltas).get(&from).cloned())
    };
    let response = match (&state, minisig) {
        (Some(SnapshotState::Serve(doc) | SnapshotState::Forged { body: doc, .. }), false) => {
            signed(
                doc,
                state.as_ref().unwrap_or(&SnapshotState::Garbage),
                source,
            )
        }
        (Some(state), true) => match signature_of(state, source) {
            Some(signature) => Response::from_string(signature).with_status_code(200),
            None => Response::from_string("").with_status_code(404),
        },
        (Some(SnapshotState::Fail(status)), false) => {
            Response::from_string("").with_status_code(*status)
        }
        (Some(SnapshotState::Garbage), false) => {
            Response::from_string("<html>not a delta</html>").with_status_code(200)
        }
        (Some(SnapshotState::Hang) | None, _) => Response::from_string("").with_status_code(404),
    };
    let _ = request.respond(response);
}

/// The `.minisig` text the source serves for `state`, if it signs.
fn signature_of(state: &SnapshotState, source: &SourceState) -> Option<String> {
    let signer = locked(&source.signer).clone()?;
    match state {
        SnapshotState::Serve(doc) => Some(signer.sign(doc.as_bytes())),
        SnapshotState::Forged { signed, .. } => Some(signer.sign(signed.as_bytes())),
        _ => None,
    }
}

/// A 200 with `doc`, and its signature in the header when the source signs there.
fn signed(
    doc: &str,
    state: &SnapshotState,
    source: &SourceState,
) -> Response<std::io::Cursor<Vec<u8>>> {
    let response = Response::from_string(doc).with_status_code(200);
    if !source.signature_header.load(Ordering::Relaxed) {
        return response;
    }
    match signature_of(state, source)
        .and_then(|sig| Header::from_bytes(SIGNATURE_HEADER.as_bytes(), header_value(&sig)).ok())
    {
        Some(header) => response.with_header(header),
        None => response,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn profile_user(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    let rest = path.strip_prefix("/users/")?;
    let user = rest.strip_suffix("/profile")?;
    (!user.is_empty() && !user.contains('/')).then_some(user)
}

fn profile_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("x-device-id", "dev-7f3a9c"),
        ("x-geo-position", "35.8617,139.6455"),
        ("x-user-email", "hanako@example.jp"),
    ]
}

/// `GET /cookies`: the echo, and `Set-Cookie` headers of a session, an analytics, a
/// location and a device cookie (the shipped policy maps the last three to categories).
fn demo_cookies() -> Vec<(&'static str, &'static str)> {
    vec![
        ("set-cookie", "session=s-123; Path=/; HttpOnly"),
        (
            "set-cookie",
            "_ga=GA1.2.345.678; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/",
        ),
        ("set-cookie", "last_location=35.8617,139.6455; Path=/"),
        ("set-cookie", "minna_device=dev-7f3a9c; Path=/; Secure"),
    ]
}

/// Compresses a body (for `/gzip-profile`).
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    if encoder.write_all(data).is_err() {
        return Vec::new();
    }
    encoder.finish().unwrap_or_default()
}

/// `GET /history?n=N`: a profile with N transactions, each with a merchant and a GPS
/// position: a large, realistic body for size and HTTP/2 tests.
fn history(path: &str) -> Value {
    let n: usize = path
        .split_once("n=")
        .and_then(|(_, rest)| rest.split('&').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .min(200_000);
    let mut body = profile("u-history");
    if let Some(fields) = body.as_object_mut() {
        fields.insert(
            "transactions".into(),
            Value::Array((0..n).map(transaction).collect()),
        );
    }
    body
}

/// One invented transaction.
pub fn transaction(i: usize) -> Value {
    json!({
        "id": format!("tx-{i:06}"),
        "date": format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
        "amount": 100 + (i * 37) % 9000,
        "merchant": format!("merchant-{}", i % 97),
        "category": "food",
        "gps": {"lat": 35.8 + (i % 100) as f64 * 0.0011, "lng": 139.6 + (i % 50) as f64 * 0.0013},
        "points": i % 5
    })
}

/// A list of profiles, one per demo user: a multi-subject body.
pub fn user_list() -> Value {
    let items: Vec<Value> = ["u-alice", "u-bob", "u-carol"]
        .iter()
        .map(|u| profile(u))
        .collect();
    json!({ "items": items })
}

/// The demo profile: invented personal data of every category of the shipped policy.
pub fn profile(user: &str) -> Value {
    json!({
        "user_id": user,
        "name": "埼玉 花子",
        "birth_date": "1990-04-01",
        "gender": "female",
        "address": "埼玉県さいたま市浦和区高砂3-1-1",
        "phone": "048-000-0000",
        "email": "hanako@example.jp",
        "device": {"device_id": "dev-7f3a9c", "os_info": "iOS 18.1", "model": "iPhone15,2"},
        "location": {
            "gps": {"lat": 35.8617, "lng": 139.6455},
            "wifi": {"bssid": "00:11:22:33:44:55"},
            "bluetooth": {"beacon_id": "beacon-0042"}
        },
        "transactions": [
            {"date": "2026-11-01", "amount": 1200, "merchant": "浦和ベーカリー"},
            {"date": "2026-11-03", "amount": 560, "merchant": "大宮書店"}
        ]
    })
}

fn echo(request: &SeenRequest) -> Value {
    let (path, query) = match request.path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (request.path.as_str(), ""),
    };
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let entry = headers
            .entry(name.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(value.clone()));
        }
    }
    let body = match serde_json::from_slice::<Value>(&request.body) {
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(&request.body).into_owned()),
    };
    json!({
        "method": request.method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_paths_are_recognised() {
        assert_eq!(profile_user("/users/u-1/profile"), Some("u-1"));
        assert_eq!(profile_user("/users/u-1/profile?x=1"), Some("u-1"));
        assert_eq!(profile_user("/users//profile"), None);
        assert_eq!(profile_user("/echo"), None);
    }

    #[test]
    fn echo_reports_path_query_headers_and_json_body() {
        let seen = SeenRequest {
            method: "POST".into(),
            path: "/a?x=1".into(),
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            body: br#"{"k": 1}"#.to_vec(),
        };
        let v = echo(&seen);
        assert_eq!(v["path"], "/a");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["headers"]["x-a"], json!(["1", "2"]));
        assert_eq!(v["body"]["k"], 1);
    }
}
