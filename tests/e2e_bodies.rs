//! End to end through real Envoy: JSON request and response bodies, chunked and HTTP/2,
//! compressed, oversize and invalid bodies, multi-subject lists, and the block action.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::{send, start_demo, with_plugin_config, Req};

use support::shipped_demo as fixture;

/// A request body with every kind of field service.improvement sees differently for bob:
/// email (not in purpose: removed), gps (no grant: coarsened), device_id (in purpose: kept).
fn bob_body() -> String {
    json!({
        "device_id": "dev-123",
        "email": "bob@example.jp",
        "gps": {"lat": 35.8617, "lng": 139.6455},
        "note": "keep me",
        "nested": [{"Email": "hidden@example.jp", "ok": true}]
    })
    .to_string()
}

fn assert_bob_body_enforced(seen: &Value) {
    assert_eq!(seen["device_id"], "dev-123");
    assert_eq!(seen["note"], "keep me");
    assert!(seen.get("email").is_none(), "{seen}");
    assert_eq!(seen["nested"], json!([{"ok": true}]));
    assert_eq!(seen["gps"], json!({"lat": 35.86, "lng": 139.65}));
    let text = seen.to_string();
    assert!(
        !text.contains("example.jp") && !text.contains("35.8617"),
        "{text}"
    );
}

fn seen_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "backend got invalid JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

#[test]
fn a_json_request_body_loses_forbidden_fields_and_keeps_the_rest() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(bob_body()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("reached the backend");
    assert_bob_body_enforced(&seen_json(&seen.body));
    if let Some(len) = seen.header("content-length") {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            seen.body.len(),
            "content-length matches the new body"
        );
    }
}

#[test]
fn a_chunked_request_body_is_enforced_whole() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(bob_body())
            .chunked(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_bob_body_enforced(&seen_json(&seen.unwrap().body));
}

#[test]
fn an_http2_request_body_is_enforced() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(bob_body())
            .http2(),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_bob_body_enforced(&seen_json(&seen.unwrap().body));
}

#[test]
fn a_json_response_body_loses_what_the_purpose_may_not_see() {
    let (resp, _) = send(
        fixture(),
        Req::get("/users/u-alice/profile").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body["email"], "hanako@example.jp");
    assert_eq!(body["name"], "埼玉 花子");
    for gone in ["birth_date", "gender"] {
        assert!(body.get(gone).is_none(), "{gone} must be removed: {body}");
    }
    assert_eq!(body["location"], json!({}));
    assert_eq!(body["device"], json!({}));
    assert_eq!(body["transactions"], json!([{}, {}]));
}

#[test]
fn the_location_ladder_gives_precise_coarse_or_nothing() {
    // alice granted GPS for service improvement: precise.
    let (resp, _) = send(
        fixture(),
        Req::get("/users/u-alice/profile").who("u-alice", "service.improvement"),
    );
    assert_eq!(
        resp.json()["location"]["gps"],
        json!({"lat": 35.8617, "lng": 139.6455})
    );
    // bob did not: coarse (service.improvement coarsens location it may not see precisely).
    let (resp, _) = send(
        fixture(),
        Req::get("/users/u-bob/profile").who("u-bob", "service.improvement"),
    );
    assert_eq!(
        resp.json()["location"]["gps"],
        json!({"lat": 35.86, "lng": 139.65})
    );
    // newsletters may not touch location at all: nothing.
    let (resp, _) = send(
        fixture(),
        Req::get("/users/u-alice/profile").who("u-alice", "marketing.newsletters"),
    );
    assert!(resp.json()["location"].get("gps").is_none());
}

#[test]
fn anonymised_use_coarsens_addresses_and_pseudonymises_device_ids() {
    let (resp, _) = send(
        fixture(),
        Req::get("/users/u-bob/profile").who("u-bob", "marketing.analysis"),
    );
    let body = resp.json();
    assert_eq!(body["address"], "埼玉県さいたま市浦和区");
    let device = body["device"]["device_id"].as_str().unwrap();
    assert!(
        device.starts_with("ps_") && !device.contains("7f3a9c"),
        "{device}"
    );
    assert!(body.get("email").is_none());
    assert_eq!(
        body["birth_date"], "1990-04-01",
        "birth date is in marketing.analysis"
    );
}

#[test]
fn a_multi_subject_list_is_enforced_per_element() {
    let (resp, _) = send(
        fixture(),
        Req::get("/users").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(resp.status, 200);
    let items = resp.json()["items"].as_array().unwrap().clone();
    assert_eq!(
        items.len(),
        1,
        "bob never consented and carol stopped use: {items:?}"
    );
    assert_eq!(items[0]["user_id"], "u-alice");
    assert!(
        items[0]["device"].get("model").is_none(),
        "device model is not for newsletters"
    );
    assert!(!resp.text().contains("u-bob") && !resp.text().contains("u-carol"));
}

#[test]
fn large_bodies_are_enforced_over_http1_and_http2() {
    for http2 in [false, true] {
        let req = Req::get("/history?n=5000").who("u-alice", "marketing.newsletters");
        let req = if http2 { req.http2() } else { req };
        let (resp, _) = send(fixture(), req);
        assert_eq!(
            resp.status,
            200,
            "http2={http2}: {}",
            resp.text().chars().take(300).collect::<String>()
        );
        assert!(
            resp.body.len() > 100_000,
            "http2={http2}: body of {} bytes",
            resp.body.len()
        );
        let body = resp.json();
        let txs = body["transactions"].as_array().unwrap();
        assert_eq!(txs.len(), 5000, "no element lost (http2={http2})");
        assert_eq!(txs[4999]["id"], "tx-004999");
        assert!(txs
            .iter()
            .all(|t| t.get("merchant").is_none() && t.get("gps").is_none()));
    }
    // A large request body over HTTP/2.
    let txs: Vec<Value> = (0..5000)
        .map(consent_tools::demo_backend::transaction)
        .collect();
    let big = json!({"transactions": txs, "email": "x@example.jp"}).to_string();
    assert!(big.len() > 500_000);
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(big)
            .http2(),
    );
    assert_eq!(
        resp.status,
        200,
        "{}",
        resp.text().chars().take(300).collect::<String>()
    );
    let seen = seen_json(&seen.unwrap().body);
    let got = seen["transactions"].as_array().unwrap();
    assert_eq!(got.len(), 5000);
    assert!(seen.get("email").is_none());
    assert_eq!(got[4999]["id"], "tx-004999");
    assert!(got.iter().all(|t| t["gps"]["lat"]
        .as_f64()
        .is_some_and(|x| ((x * 100.0).round() - x * 100.0).abs() < 1e-6)));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}

#[test]
fn gzip_bodies_are_decompressed_by_envoy_first_and_then_enforced() {
    let req = Req::get("/echo")
        .who("u-bob", "service.improvement")
        .header("content-encoding", "gzip")
        .json(gzip(bob_body().as_bytes()));
    let (resp, seen) = send(fixture(), req);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_bob_body_enforced(&seen_json(&seen.unwrap().body));
}

#[test]
fn compressed_responses_are_refused_never_passed_unread() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/gzip-profile").who("u-alice", "marketing.newsletters"),
    );
    let seen = seen.expect("reached the backend");
    assert_eq!(
        seen.header("accept-encoding"),
        None,
        "the demo asks upstreams for identity bodies"
    );
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (502, Some("body_encoding_unsupported"))
    );
    assert!(!resp.text().contains("hanako"));
}

#[test]
fn bodies_in_an_encoding_the_filter_cannot_read_are_refused_not_passed() {
    let req = Req::get("/echo")
        .who("u-bob", "service.improvement")
        .header("content-encoding", "br")
        .json(b"\x1b\x00\x00".to_vec());
    let (resp, seen) = send(fixture(), req);
    assert_eq!(resp.status, 415);
    assert_eq!(resp.json()["reason"], "body_encoding_unsupported");
    assert!(seen.is_none());
}

#[test]
fn invalid_json_is_blocked_in_both_directions() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(r#"{"email": "x@example.jp", "#),
    );
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (400, Some("body_invalid_json"))
    );
    assert!(seen.is_none());
    let (resp, seen) = send(
        fixture(),
        Req::get("/broken-json").who("u-alice", "marketing.newsletters"),
    );
    assert!(seen.is_some());
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (502, Some("body_invalid_json"))
    );
    assert!(!resp.text().contains("hanako"));
}

#[test]
fn oversize_request_bodies_get_413_and_never_reach_the_backend() {
    let big = format!(
        "{{\"email\":\"x@example.jp\",\"pad\":\"{}\"}}",
        "a".repeat(2 * 1024 * 1024)
    );
    for chunked in [false, true] {
        let req = Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(big.clone());
        let req = if chunked { req.chunked() } else { req };
        let (resp, seen) = send(fixture(), req);
        assert_eq!(resp.status, 413, "chunked={chunked}");
        assert!(seen.is_none(), "chunked={chunked}");
    }
}

#[test]
fn oversize_response_bodies_are_replaced_by_an_error() {
    let small = start_demo(|yaml| yaml.replace("\"max_bytes\": 1048576", "\"max_bytes\": 65536"));
    let (resp, seen) = send(
        &small,
        Req::get("/history?n=2000").who("u-alice", "marketing.newsletters"),
    );
    assert!(seen.is_some());
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (502, Some("body_too_large"))
    );
    assert!(!resp.text().contains("merchant"));
}

#[test]
fn an_undeclared_body_is_redacted_when_it_is_json_and_passed_when_it_is_not() {
    let req = Req::get("/echo")
        .who("u-bob", "service.improvement")
        .body(bob_body())
        .without_content_type();
    let (resp, seen) = send(fixture(), req);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.unwrap();
    assert_eq!(seen.header("content-type"), None);
    assert_bob_body_enforced(&seen_json(&seen.body));
    let req = Req::get("/echo")
        .who("u-bob", "service.improvement")
        .body("plain words, not JSON")
        .without_content_type();
    let (resp, seen) = send(fixture(), req);
    assert_eq!(resp.status, 200);
    assert_eq!(seen.unwrap().body, b"plain words, not JSON");
}

#[test]
fn a_second_content_type_cannot_hide_a_json_body() {
    let req = Req::get("/echo")
        .who("u-bob", "service.improvement")
        .json(bob_body())
        .header("content-type", "text/plain");
    let (resp, seen) = send(fixture(), req);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_bob_body_enforced(&seen_json(&seen.unwrap().body));
}

#[test]
fn non_json_bodies_pass_unread_by_default() {
    let req = Req::get("/echo")
        .who("u-bob", "service.improvement")
        .header("content-type", "text/plain")
        .body("email me at x@example.jp");
    let (resp, seen) = send(fixture(), req);
    assert_eq!(resp.status, 200);
    assert_eq!(seen.unwrap().body, b"email me at x@example.jp");
}

#[test]
fn a_block_action_refuses_a_body_holding_that_category() {
    let consent = r#"{
  "caller": {"unidentified_party": "tsunagu"},
  "consents": {"records": [{"subject": "u-dave", "grants": {"marketing.third_party_offers": {"policy_version": 1}}}]}
}"#;
    let f = start_demo(|yaml| with_plugin_config(yaml, consent));
    let body = json!({"email": "d@example.jp", "transactions": [{"merchant": "A", "amount": 1}]})
        .to_string();
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .who("u-dave", "marketing.third_party_offers")
            .json(body),
    );
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (403, Some("forbidden_data_present"))
    );
    assert!(seen.is_none());
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .who("u-dave", "marketing.third_party_offers")
            .json(r#"{"email":"d@example.jp"}"#),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(seen_json(&seen.unwrap().body)["email"], "d@example.jp");
}

/// Istio's WasmPlugin and Envoy Gateway cannot set `allow_on_headers_stop_iteration`: with
/// `body.hold_headers: false` headers go on first, bodies are still checked whole.
#[test]
fn without_holding_headers_bodies_are_still_checked_before_any_byte_goes_on() {
    let f = start_demo(|y| {
        y.replace(
            "allow_on_headers_stop_iteration: true",
            "allow_on_headers_stop_iteration: false",
        )
        .replacen(
            "\"max_bytes\": 1048576,",
            "\"max_bytes\": 1048576,\n              \"hold_headers\": false,",
            1,
        )
    });
    // A request body loses its forbidden fields.
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(bob_body()),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let got: Value = serde_json::from_slice(&seen.unwrap().body).unwrap();
    assert!(got.get("email").is_none(), "{got}");
    // A response body too.
    let (resp, _) = send(
        &f,
        Req::get("/users/u-alice/profile").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(resp.status, 200);
    let profile = resp.json();
    assert_eq!(profile["email"], "hanako@example.jp");
    assert_eq!(
        profile["location"],
        json!({}),
        "location fields removed: {profile}"
    );
    // An invalid request body is still refused before the backend answers.
    let (resp, _) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(r#"{"email": "x@example.jp", "#),
    );
    assert_eq!(resp.json()["reason"], "body_invalid_json");
    // An invalid response body cannot be refused with a status any more (the headers are
    // gone): the stream is reset and not one byte of the unchecked body reaches the client.
    let (resp, _) = send(
        &f,
        Req::get("/broken-json").who("u-alice", "marketing.newsletters"),
    );
    assert!(!resp.text().contains("hanako"), "{}", resp.text());
    assert!(
        resp.body.is_empty() || resp.status != 200,
        "{} {}",
        resp.status,
        resp.text()
    );
}
