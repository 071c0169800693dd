//! The HTTP API in-process: credentials and roles, limits and errors, the audit endpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::{bearer, call, config_text, FETCHER, READER, WRITER};
use consent_source::config::AccessConfig;
use consent_source::{Options, Source};

fn start(extra: &str) -> (Source, u16) {
    let options = Options {
        access: AccessConfig::from_toml(&config_text(extra)).unwrap(),
        ..Options::default()
    };
    let source = Source::start("127.0.0.1:0", Path::new(":memory:"), None, options).unwrap();
    let port = source.port().unwrap();
    (source, port)
}

#[test]
fn every_call_but_healthz_needs_a_credential_by_default() {
    let source = Source::start(
        "127.0.0.1:0",
        Path::new(":memory:"),
        None,
        Options::default(),
    )
    .unwrap();
    let port = source.port().unwrap();
    assert_eq!(call(port, "GET", "/healthz", &[], b"").status, 200);
    for (method, path) in [
        ("GET", "/snapshot"),
        ("GET", "/snapshot/parts/0"),
        ("GET", "/deltas/0"),
        ("GET", "/snapshot.minisig"),
        ("GET", "/users/u-bob"),
        ("GET", "/audit"),
        ("PUT", "/users/u-bob/grants/surveys"),
        ("DELETE", "/users/u-bob/grants/surveys"),
        ("PUT", "/users/u-bob/stop-use"),
        ("DELETE", "/users/u-bob/stop-third-party"),
        ("DELETE", "/users/u-bob"),
        ("GET", "/users/u-bob/disclosure"),
        ("POST", "/ledger"),
        ("GET", "/ledger/purges"),
    ] {
        let r = call(port, method, path, &[], b"");
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"], "credentials required");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"consent-source\"")
        );
    }
}

#[test]
fn each_role_does_its_calls_and_only_those() {
    let (_s, port) = start("");
    let w = bearer(WRITER);
    let r = bearer(READER);
    let f = bearer(FETCHER);
    let as_ = |t: &str| vec![("authorization", t.to_string())];
    let send = |method: &str, path: &str, token: &str| {
        let h = as_(token);
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        call(port, method, path, &h, b"")
    };
    let put = send("PUT", "/users/u-bob/grants/surveys", &w);
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(put.text(), "{\"version\":1}");
    for (method, path, token, role) in [
        ("PUT", "/users/u-bob/grants/surveys", &r, "writer"),
        ("PUT", "/users/u-bob/grants/surveys", &f, "writer"),
        ("DELETE", "/users/u-bob", &r, "writer"),
        ("GET", "/users/u-bob", &w, "reader"),
        ("GET", "/users/u-bob", &f, "reader"),
        ("GET", "/audit", &f, "reader"),
        ("GET", "/snapshot", &w, "fetcher"),
        ("GET", "/deltas/0", &r, "fetcher"),
    ] {
        let res = send(method, path, token);
        assert_eq!(res.status, 403, "{method} {path}");
        assert_eq!(
            res.json()["error"],
            format!("this credential lacks the {role} role")
        );
    }
    assert_eq!(
        send("GET", "/users/u-bob", &r).json()["grants"]["surveys"]["policy_version"],
        1
    );
    assert_eq!(send("GET", "/snapshot", &f).json()["version"], 1);
    assert_eq!(send("GET", "/deltas/0", &f).json()["version"], 1);
    let wrong = send("GET", "/snapshot", "Bearer not-a-token");
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"], "invalid credentials");
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // The token never comes back, in any answer.
    for res in [&put, &wrong] {
        assert!(!res.text().contains("token"), "{}", res.text());
    }
}

#[test]
fn public_snapshots_need_no_credential_but_the_rest_still_does() {
    let (_s, port) = start("public_snapshots = true");
    assert_eq!(call(port, "GET", "/snapshot", &[], b"").status, 200);
    assert_eq!(call(port, "GET", "/deltas/0", &[], b"").status, 404);
    assert_eq!(call(port, "GET", "/users/u-bob", &[], b"").status, 401);
    assert_eq!(
        call(port, "PUT", "/users/u-bob/stop-use", &[], b"").status,
        401
    );
}

#[test]
fn the_demo_setting_opens_loopback_and_is_audited_as_such() {
    let source =
        Source::start("127.0.0.1:0", Path::new(":memory:"), None, Options::demo()).unwrap();
    let port = source.port().unwrap();
    let r = call(port, "PUT", "/users/u-bob/grants/surveys", &[], b"");
    assert_eq!((r.status, r.text()), (200, "{\"version\":1}".to_string()));
    let audit = call(port, "GET", "/audit", &[], b"").json();
    assert_eq!(audit["entries"][0]["actor"], "demo-loopback");
    // A wrong token is refused even from loopback.
    let wrong = call(
        port,
        "GET",
        "/snapshot",
        &[("authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
}

#[test]
fn malformed_calls_get_clear_json_errors_without_their_values() {
    let (_s, port) = start("max_body_bytes = 128");
    let w = bearer(WRITER);
    let auth = [("authorization", w.as_str())];
    let cases: Vec<(&str, &str, &[u8], u16, &str)> = vec![
        ("GET", "/nope", b"", 404, "no such call"),
        ("GET", "/snapshot/", b"", 404, "no such call"),
        (
            "POST",
            "/users/u-bob/grants/surveys",
            b"",
            405,
            "method not allowed",
        ),
        (
            "GET",
            "/users/u-bob/stop-use",
            b"",
            405,
            "method not allowed",
        ),
        (
            "PUT",
            "/users/u-secret-person/grants/secret.purpose.value",
            b"",
            400,
            "unknown purpose",
        ),
        (
            "DELETE",
            "/users/u-secret-person/grants/secret.purpose.value",
            b"",
            400,
            "unknown purpose",
        ),
        (
            "PUT",
            "/users/a%2Cb/stop-use",
            b"",
            400,
            "malformed user id",
        ),
        (
            "PUT",
            "/users/%FF%FE/stop-use",
            b"",
            400,
            "malformed user id",
        ),
        (
            "PUT",
            "/users/%20u-bob/stop-use",
            b"",
            400,
            "malformed user id",
        ),
        (
            "PUT",
            "/users/u-bob/grants/surveys",
            b"{\"policy_version\": \"secret-value\"}",
            400,
            "grant body takes",
        ),
        (
            "PUT",
            "/users/u-bob/grants/surveys",
            b"{\"secret-field\": 1}",
            400,
            "grant body takes",
        ),
        (
            "PUT",
            "/users/u-bob/grants/surveys",
            b"secret-value",
            400,
            "grant body is not JSON",
        ),
        (
            "PUT",
            "/users/u-bob/grants/surveys",
            b"{\"explicit\": [\"secret-category\"]}",
            400,
            "grant body: explicit[0]",
        ),
        (
            "PUT",
            "/users/u-bob/grants/surveys",
            b"{\"policy_version\": 0}",
            400,
            "grant body: policy_version must be 1",
        ),
        (
            "PUT",
            "/users/u-bob/grants/surveys",
            &[b' '; 129],
            413,
            "request body too large",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let r = call(port, method, path, &auth, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(message), "{method} {path}: {error}");
        assert!(
            !r.text().contains("secret"),
            "{method} {path}: {}",
            r.text()
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = call(port, "POST", "/users/u-bob/grants/surveys", &auth, b"");
    assert_eq!(r.header("allow"), Some("PUT, DELETE"));
    let f = bearer(FETCHER);
    let fa = [("authorization", f.as_str())];
    assert_eq!(call(port, "GET", "/snapshot/parts/x", &fa, b"").status, 400);
    assert_eq!(call(port, "GET", "/deltas/-1", &fa, b"").status, 400);
    assert_eq!(call(port, "GET", "/snapshot/parts/7", &fa, b"").status, 404);
    // Nothing above changed anything.
    assert_eq!(
        call(port, "GET", "/snapshot", &fa, b"").json()["version"],
        0
    );
}

#[test]
fn a_body_just_under_the_limit_is_read() {
    let (_s, port) = start("max_body_bytes = 128");
    let w = bearer(WRITER);
    let mut body = b"{\"policy_version\": 1}".to_vec();
    body.resize(128, b' ');
    let r = call(
        port,
        "PUT",
        "/users/u-bob/grants/surveys",
        &[("authorization", &w)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn the_audit_endpoint_pages_and_filters() {
    let (_s, port) = start("");
    let w = bearer(WRITER);
    let wa = [("authorization", w.as_str())];
    for i in 0..5 {
        let r = call(
            port,
            "PUT",
            &format!("/users/u-{i}/grants/surveys"),
            &wa,
            b"{\"explicit\": []}",
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(call(port, "DELETE", "/users/u-3", &wa, b"").status, 200);
    let r = bearer(READER);
    let ra = [("authorization", r.as_str())];
    let page = call(port, "GET", "/audit?limit=4", &ra, b"");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let page = page.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 4);
    assert_eq!(page["entries"][0]["actor"], "admin");
    assert_eq!(page["entries"][0]["action"], "grant");
    assert_eq!(page["entries"][0]["purpose"], "surveys");
    assert_eq!(page["next_after"], 4);
    let rest = call(port, "GET", "/audit?limit=4&after=4", &ra, b"").json();
    assert_eq!(rest["entries"].as_array().unwrap().len(), 2);
    assert!(rest["next_after"].is_null());
    assert_eq!(rest["entries"][1]["action"], "erase");
    assert_eq!(rest["entries"][1]["version"], 6);
    let one = call(port, "GET", "/audit?subject=u-3", &ra, b"").json();
    let actions: Vec<&str> = one["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["grant", "erase"]);
    let future = call(port, "GET", "/audit?since=99999999999999", &ra, b"").json();
    assert!(future["entries"].as_array().unwrap().is_empty());
    for bad in [
        "/audit?limit=0",
        "/audit?limit=5000",
        "/audit?since=yesterday",
        "/audit?who=x",
        "/audit?limit=1&limit=2",
        "/audit?subject=a,b",
    ] {
        assert_eq!(call(port, "GET", bad, &ra, b"").status, 400, "{bad}");
    }
}

#[test]
fn the_audit_of_a_keyed_source_holds_no_raw_id() {
    let keying = consent_core::live::SubjectKeying::Hmac(b"0123456789abcdef-test".to_vec());
    let options = Options {
        keying: keying.clone(),
        ..Options::demo()
    };
    let source = Source::start("127.0.0.1:0", Path::new(":memory:"), None, options).unwrap();
    let port = source.port().unwrap();
    assert_eq!(
        call(port, "PUT", "/users/u-alice/grants/surveys", &[], b"").status,
        200
    );
    assert_eq!(call(port, "DELETE", "/users/u-alice", &[], b"").status, 200);
    let audit = call(port, "GET", "/audit?subject=u-alice", &[], b"");
    assert!(!audit.text().contains("u-alice"), "{}", audit.text());
    let entries = audit.json()["entries"].clone();
    assert_eq!(entries[1]["action"], "erase");
    assert_eq!(entries[1]["subject"], keying.subject_for("u-alice"));
    assert_eq!(call(port, "GET", "/users/u-alice", &[], b"").status, 404);
}

/// The lines of the block after `marker` indented by at least `indent` spaces, dedented.
fn block_after(text: &str, marker: &str, indent: usize) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not found"))
        + marker.len();
    let pad = " ".repeat(indent);
    text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(&pad))
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_access_configurations_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest =
        std::fs::read_to_string(root.join("deploy/consent-source/consent-source.yaml")).unwrap();
    let deployed = AccessConfig::from_toml(&block_after(&manifest, "access.toml: |", 4)).unwrap();
    assert!(deployed.trust_forwarded_client_cert && !deployed.public_snapshots);
    assert_eq!(deployed.clients.len(), 2);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let at = readme.find("max_body_bytes = 65536").unwrap();
    let start = readme[..at].rfind("```toml\n").unwrap() + "```toml\n".len();
    let end = at + readme[at..].find("```").unwrap();
    let documented = AccessConfig::from_toml(&readme[start..end]).unwrap();
    assert_eq!(documented.tokens[0].name, "consent-admin");
}
