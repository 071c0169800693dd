//! Hostile requests through real Envoy: malformed identity headers, repeats over HTTP/2,
//! oversize headers, trickled bodies, and a client spoofing the user header when the user
//! ID must come from a verified token (Envoy's `jwt_authn` in front of the filter). Every
//! case gets a clear status, nothing forbidden reaches the backend, and Envoy keeps serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use support::{send, shipped_demo, start_demo, Fixture, Req};

fn still_serving(f: &Fixture) {
    let (resp, seen) = send(f, Req::get("/echo").who("u-alice", "support.inquiries"));
    assert_eq!(resp.status, 200, "Envoy stopped serving: {}", resp.text());
    assert!(seen.is_some());
}

/// curl with raw header bytes (not UTF-8), through the fixture.
fn raw_header(f: &Fixture, header: &[u8]) -> (u16, String, bool) {
    let tag = support::tag("raw");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(["-H", &format!("x-request-tag: {tag}")])
        .args(["-H", "x-data-purpose: support.inquiries"])
        .arg("-H")
        .arg(OsStr::from_bytes(header))
        .arg(f.envoy.url("/echo"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let reached = f.backend.seen_with_tag(&tag).is_some();
    (code.trim().parse().unwrap_or(0), body.to_string(), reached)
}

#[test]
fn malformed_identity_headers_are_refused_before_the_backend() {
    let f = shipped_demo();
    for header in [
        &b"x-user-id: u-\xff\xfealice"[..],
        b"x-user-id: u-alice\x01",
        b"x-user-id: u-alice, u-bob",
    ] {
        let (status, body, reached) = raw_header(f, header);
        assert!(!reached, "{header:?} reached the backend");
        // Envoy's codec may refuse the bytes itself (400); otherwise the filter does (403).
        assert!(
            status == 400
                || (status == 403
                    && (body.contains("user_invalid") || body.contains("user_ambiguous"))),
            "{header:?}: {status} {body}"
        );
    }
    still_serving(f);
}

#[test]
fn repeated_identity_headers_are_refused_over_http2_too() {
    let f = shipped_demo();
    let (resp, seen) = send(
        f,
        Req::get("/echo")
            .who("u-bob", "support.inquiries")
            .header("x-user-id", "u-alice")
            .http2(),
    );
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (403, Some("user_ambiguous"))
    );
    assert!(seen.is_none());
    let (resp, _) = send(
        f,
        Req::get("/echo")
            .who("u-alice", "support.inquiries")
            .header("x-data-purpose", "marketing.newsletters")
            .http2(),
    );
    assert_eq!(resp.json()["reason"], "purpose_ambiguous");
    still_serving(f);
}

#[test]
fn oversize_headers_are_refused_by_envoy_and_it_keeps_serving() {
    let f = shipped_demo();
    let huge = "x".repeat(100 * 1024);
    let (resp, seen) = send(
        f,
        Req::get("/echo")
            .who("u-alice", "support.inquiries")
            .header("x-geo-position", &huge),
    );
    assert_eq!(resp.status, 431, "{}", resp.text());
    assert!(seen.is_none());
    still_serving(f);
}

#[test]
fn a_trickled_body_is_still_enforced_whole() {
    let f = shipped_demo();
    let filler: String = (0..300)
        .map(|i| format!("\"k{i}\": \"{i:05}\", "))
        .collect();
    let body = format!("{{{filler}\"email\": \"slow@example.jp\", \"gps\": {{\"lat\": 35.861234, \"lng\": 139.645678}}}}");
    let tag = support::tag("slow");
    let path = std::env::temp_dir().join(format!("{tag}.json"));
    std::fs::write(&path, &body).unwrap();
    // ~6 KB at 3 KB/s: the body arrives in pieces over about two seconds.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(["--limit-rate", "3k", "-H", &format!("x-request-tag: {tag}")])
        .args([
            "-H",
            "x-user-id: u-bob",
            "-H",
            "x-data-purpose: support.inquiries",
        ])
        .args(["-H", "content-type: application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", path.display()))
        .arg(f.envoy.url("/echo"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let seen = f.backend.seen_with_tag(&tag).expect("reached the backend");
    let got: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert!(got.get("gps").is_none(), "bob gave no gps grant: {got}");
    assert_eq!(
        got["email"], "slow@example.jp",
        "support.inquiries may see email"
    );
    assert_eq!(got["k299"], "00299");
}

fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 JWT for `sub`, signed with `key` (HMAC by the openssl command).
fn jwt(sub: &str, key: &str) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims =
        b64url(format!(r#"{{"iss":"consent-test","sub":"{sub}","exp":4102444800}}"#).as_bytes());
    let input = format!("{header}.{claims}");
    let out = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-binary",
            "-mac",
            "HMAC",
            "-macopt",
            &format!("key:{key}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    format!("{input}.{}", b64url(&out.stdout))
}

/// Puts, before the consent filter, a header mutation that drops any client-sent user
/// header and `jwt_authn` that requires a token and sets the user header from its `sub`.
fn with_jwt(yaml: &str, key: &str) -> String {
    let k = b64url(key.as_bytes());
    let jwks = format!(r#"{{\"keys\":[{{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"{k}\"}}]}}"#);
    let filters = format!(
        "          - name: drop-client-user-header
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - remove: x-user-id
          - name: envoy.filters.http.jwt_authn
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                app:
                  issuer: consent-test
                  local_jwks: {{ inline_string: \"{jwks}\" }}
                  claim_to_headers:
                  - {{ header_name: x-user-id, claim_name: sub }}
              rules:
              - match: {{ prefix: \"/\" }}
                requires: {{ provider_name: app }}
          - name: decompress-requests\n"
    );
    let out = yaml.replacen("          - name: decompress-requests\n", &filters, 1);
    assert_ne!(out, yaml);
    out
}

#[test]
fn with_jwt_authn_in_front_a_spoofed_user_header_is_replaced_by_the_verified_one() {
    let key = "jwt-test-key-0123456789abcdef";
    let f = start_demo_jwt(key);
    // Bob's token, plus a header claiming to be alice (who granted GPS).
    let token = jwt("u-bob", key);
    let authed = || {
        Req::get("/echo")
            .header("authorization", &format!("Bearer {token}"))
            .header("x-data-purpose", "support.inquiries")
    };
    assert!(
        support::wait_until(std::time::Duration::from_secs(10), || send(&f, authed())
            .0
            .status
            == 200),
        "no snapshot in use"
    );
    let (resp, seen) = send(
        &f,
        Req::get("/echo?lat=35.86")
            .header("authorization", &format!("Bearer {token}"))
            .header("x-user-id", "u-alice")
            .header("x-data-purpose", "service.improvement"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.unwrap();
    assert_eq!(
        seen.header_values("x-user-id"),
        vec!["u-bob"],
        "the token's subject only"
    );
    assert!(
        !seen.path.contains("lat="),
        "decided for bob, who gave no GPS grant"
    );
    // No token: jwt_authn refuses before anything else runs.
    let (resp, seen) = send(&f, Req::get("/echo").who("u-alice", "service.improvement"));
    assert_eq!(resp.status, 401);
    assert!(seen.is_none());
    // A token signed with another key is refused too.
    let forged = jwt("u-alice", "another-key-0123456789abcdef");
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .header("authorization", &format!("Bearer {forged}"))
            .header("x-data-purpose", "service.improvement"),
    );
    assert_eq!(resp.status, 401);
    assert!(seen.is_none());
}

fn start_demo_jwt(key: &str) -> Fixture {
    let key = key.to_string();
    // The fixture's readiness probe carries no token; give the probe path its own rule.
    start_demo(move |y| {
        with_jwt(y, &key).replacen(
            "              rules:\n              - match: { prefix: \"/\" }",
            "              rules:\n              - match: { prefix: \"/probe\" }\n              - match: { prefix: \"/\" }",
            1,
        )
    })
}
