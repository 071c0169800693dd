//! The HTTP API of the reference consent source.
//!
//! | call | does |
//! |---|---|
//! | `GET /snapshot` | part 0 of the full snapshot (`ETag: "v<version>"`, 304 on a match); `parts` says how many |
//! | `GET /snapshot/parts/{i}` | part i of the current version (404 past the last) |
//! | `GET /deltas/{from}` | the changes after version `from`; 404 when there are none |
//! | `GET /users/{id}` | the stored record, 404 when none |
//! | `PUT /users/{id}/grants/{purpose}` | grant (body optional: `{"policy_version": n, "explicit": [..]}`) |
//! | `DELETE /users/{id}/grants/{purpose}` | withdraw consent to, or object to, a purpose (§10; recorded in `withdrawn` until a new grant) |
//! | `PUT` / `DELETE /users/{id}/stop-use` | ask / stop asking to stop use (§10) |
//! | `PUT` / `DELETE /users/{id}/stop-third-party` | the same for third-party provision |
//! | `DELETE /users/{id}` | erase the record |
//!
//! Changes answer `{"version": n}`; invalid ones 400 with `{"error": ...}`.

use std::sync::{Arc, Mutex};

use consent_core::live::{GrantDoc, RecordDoc};
use serde::Deserialize;
use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::store::{Store, StoreError};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    #[serde(default)]
    policy_version: Option<u32>,
    #[serde(default)]
    explicit: Vec<String>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json_response(status: u16, value: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut r = Response::from_string(value.to_string()).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"content-type"[..], &b"application/json"[..]) {
        r = r.with_header(h);
    }
    r
}

fn changed(result: Result<u64, StoreError>) -> Response<std::io::Cursor<Vec<u8>>> {
    match result {
        Ok(version) => json_response(200, &json!({ "version": version })),
        Err(StoreError::Invalid(m)) => json_response(400, &json!({ "error": m })),
        Err(e) => json_response(500, &json!({ "error": e.to_string() })),
    }
}

/// Answers one request.
pub fn handle(mut request: Request, store: &Mutex<Store>) {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    let if_none_match = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("if-none-match"))
        .map(|h| h.value.as_str().to_string());
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    let response = match (&method, segments.as_slice()) {
        (Method::Get, ["healthz"]) => json_response(200, &json!({"ok": true})),
        (Method::Get, ["snapshot"]) => match store.snapshot_part(now_secs(), 0) {
            Ok(Some(snap)) => {
                let etag = format!("\"v{}\"", snap.version);
                let response = if if_none_match.as_deref() == Some(etag.as_str()) {
                    Response::from_string("").with_status_code(304)
                } else {
                    json_response(200, &serde_json::to_value(&snap).unwrap_or_default())
                };
                match Header::from_bytes(&b"etag"[..], etag.as_bytes()) {
                    Ok(h) => response.with_header(h),
                    Err(()) => response,
                }
            }
            Ok(None) => json_response(500, &json!({"error": "no first part"})),
            Err(e) => json_response(500, &json!({"error": e.to_string()})),
        },
        (Method::Get, ["snapshot", "parts", part]) => match part.parse::<usize>() {
            Ok(part) => match store.snapshot_part(now_secs(), part) {
                Ok(Some(doc)) => {
                    json_response(200, &serde_json::to_value(&doc).unwrap_or_default())
                }
                Ok(None) => json_response(404, &json!({"error": "no such part"})),
                Err(e) => json_response(500, &json!({"error": e.to_string()})),
            },
            Err(_) => json_response(400, &json!({"error": "the part must be a number"})),
        },
        (Method::Get, ["deltas", from]) => match from.parse::<u64>() {
            Ok(from) => match store.delta(from, now_secs()) {
                Ok(Some(delta)) => {
                    json_response(200, &serde_json::to_value(&delta).unwrap_or_default())
                }
                Ok(None) => json_response(404, &json!({"error": "no changes after this version"})),
                Err(e) => json_response(500, &json!({"error": e.to_string()})),
            },
            Err(_) => json_response(400, &json!({"error": "the version must be a number"})),
        },
        (Method::Get, ["users", id]) => match store.get(id) {
            Ok(Some(record)) => {
                json_response(200, &serde_json::to_value(&record).unwrap_or_default())
            }
            Ok(None) => json_response(404, &json!({"error": "no record"})),
            Err(e) => json_response(500, &json!({"error": e.to_string()})),
        },
        (Method::Put, ["users", id, "grants", purpose]) => {
            let parsed: Result<GrantBody, _> = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(GrantBody::default())
            } else {
                serde_json::from_slice(&body)
            };
            match parsed {
                Ok(g) => {
                    let version = g.policy_version.unwrap_or(store.policy().version);
                    let purpose = purpose.to_string();
                    changed(store.update(id, move |r: &mut RecordDoc| {
                        r.withdrawn.retain(|w| *w != purpose);
                        r.grants.insert(
                            purpose,
                            GrantDoc {
                                policy_version: version,
                                explicit: g.explicit,
                            },
                        );
                    }))
                }
                Err(e) => json_response(400, &json!({"error": format!("grant body: {e}")})),
            }
        }
        (Method::Delete, ["users", id, "grants", purpose]) => {
            let purpose = purpose.to_string();
            changed(store.update(id, move |r| {
                r.grants.remove(&purpose);
                if !r.withdrawn.contains(&purpose) {
                    r.withdrawn.push(purpose);
                }
            }))
        }
        (
            Method::Put | Method::Delete,
            ["users", id, right @ ("stop-use" | "stop-third-party")],
        ) => {
            let on = method == Method::Put;
            let stop_use = *right == "stop-use";
            changed(store.update(id, move |r| {
                if stop_use {
                    r.stop_use = on;
                } else {
                    r.stop_third_party = on;
                }
            }))
        }
        (Method::Delete, ["users", id]) => changed(store.erase(id)),
        _ => json_response(404, &json!({"error": "no such call"})),
    };
    drop(store);
    let _ = request.respond(response);
}

/// Serves the API on `server` with a few threads, until the server is unblocked.
pub fn serve(
    server: Arc<Server>,
    store: Arc<Mutex<Store>>,
    threads: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads.max(1))
        .map(|_| {
            let server = Arc::clone(&server);
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(request, &store);
                }
            })
        })
        .collect()
}
