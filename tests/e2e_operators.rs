//! What operators rely on, through real Envoy: dry-run (global and per rule), decision log
//! lines, labelled stats in the Prometheus endpoint, the decision in the access log, and the
//! worker-lease fetcher that needs no bootstrap extension.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use support::{curl, send, start_demo, wait_until, Fixture, Req};

fn prometheus(f: &Fixture) -> String {
    curl(&[&format!(
        "http://127.0.0.1:{}/stats/prometheus",
        f.envoy.admin
    )])
    .text()
}

/// The Prometheus text once it holds every one of `wants`, or as it is after two seconds
/// (the native module's stream stats reach Envoy a few milliseconds after the request).
fn prometheus_with(f: &Fixture, wants: &[&str]) -> String {
    let mut text = String::new();
    wait_until(Duration::from_secs(2), || {
        text = prometheus(f);
        wants.iter().all(|w| text.contains(w))
    });
    text
}

/// The decision-log lines Envoy has written so far, parsed.
fn decision_lines(f: &Fixture) -> Vec<serde_json::Value> {
    f.envoy
        .log_text()
        .lines()
        .filter_map(|l| l.split_once("consent_decision ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

fn line_for(f: &Fixture, request_id: &str) -> serde_json::Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(5), || {
        found = decision_lines(f)
            .into_iter()
            .find(|l| l["request_id"] == request_id);
        found.is_some()
    });
    assert!(
        ok,
        "no decision line for {request_id}:\n{}",
        f.envoy.log_text()
    );
    found.unwrap()
}

fn with_config(yaml: &str, key_value: &str) -> String {
    yaml.replacen(
        "\"user_header\": \"x-user-id\",",
        &format!("{key_value},\n            \"user_header\": \"x-user-id\","),
        1,
    )
}

#[test]
fn dry_run_changes_nothing_and_records_what_it_would_have_done() {
    let f = start_demo(|y| with_config(y, "\"dry_run\": true"));
    // A request enforcement would block reaches the backend.
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "surveys")
            .header("x-request-id", "dry-block-1"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("reached the backend");
    let decision = seen.header("x-consent-decision").unwrap_or_default();
    assert!(
        decision.starts_with("mode=dry_run; outcome=block; reason=consent_missing"),
        "{decision}"
    );
    let line = line_for(&f, "dry-block-1");
    assert_eq!(
        (line["mode"].as_str(), line["outcome"].as_str()),
        (Some("dry_run"), Some("block"))
    );
    // Headers, query and body that enforcement would strip pass byte for byte.
    let body =
        r#"{"email": "b@example.jp", "gps": {"lat": 35.861234, "lng": 139.645678}, "note": "hi"}"#;
    let (resp, seen) = send(
        &f,
        Req::get("/echo?lat=35.86&page=2")
            .who("u-bob", "support.inquiries")
            .header("x-geo-position", "35.86,139.64")
            .header("x-device-id", "dev-1")
            .header("x-request-id", "dry-strip-1")
            .json(body),
    );
    assert_eq!(resp.status, 200);
    let seen = seen.unwrap();
    assert_eq!(seen.body, body.as_bytes());
    assert!(seen.path.contains("lat=35.86"));
    assert_eq!(seen.header("x-geo-position"), Some("35.86,139.64"));
    assert_eq!(seen.header("x-device-id"), Some("dev-1"));
    // ... and the log says per field what would have gone.
    let line = line_for(&f, "dry-strip-1");
    assert_eq!(line["mode"], "dry_run");
    assert_eq!(line["removed"]["request_headers"], 2, "{line}");
    assert_eq!(line["removed"]["query_params"], 1, "{line}");
    let paths: Vec<&str> = line["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(paths.contains(&"$.gps"), "{line}");
    let text = line.to_string();
    for secret in ["u-bob", "b@example.jp", "35.861234", "dev-1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // The stats separate dry-run from enforcement.
    let want = r#"consent_decisions{mode="dry_run",outcome="block",reason="consent_missing",purpose="surveys"} 1"#;
    let stats = prometheus_with(&f, &[want]);
    assert!(stats.contains(want), "{stats}");
}

#[test]
fn a_route_rule_can_run_in_dry_run_while_the_rest_is_enforced() {
    let f = start_demo(|y| {
        y.replacen(
            "\"routes\": [",
            "\"routes\": [\n              { \"name\": \"shadow\", \"match\": { \"path_prefix\": \"/shadow/\" }, \"dry_run\": true },",
            1,
        )
    });
    let (resp, seen) = send(&f, Req::get("/shadow/echo").who("u-bob", "surveys"));
    assert_eq!(resp.status, 200);
    assert!(seen
        .unwrap()
        .header("x-consent-decision")
        .unwrap()
        .contains("rule=shadow"));
    let (resp, seen) = send(&f, Req::get("/echo").who("u-bob", "surveys"));
    assert_eq!(resp.status, 403);
    assert!(seen.is_none());
}

#[test]
fn decision_logs_carry_ids_decisions_and_field_paths_but_no_personal_data() {
    let f = support::shipped_demo();
    let body = r#"{"items": [{"user_id": "u-alice", "email": "a@example.jp"}], "gps": {"lat": 35.8612, "lng": 139.6456}}"#;
    let (resp, _) = send(
        f,
        Req::get("/echo")
            .who("u-bob", "marketing.analysis")
            .header("x-request-id", "log-test-1")
            .json(body),
    );
    assert_eq!(resp.status, 200);
    let line = line_for(f, "log-test-1");
    assert_eq!(line["mode"], "enforce");
    assert_eq!(line["route"], "backend");
    assert_eq!(line["rule"], "default");
    assert_eq!(line["purpose"]["id"], "marketing.analysis");
    assert_eq!(line["party"]["id"], "tsunagu");
    assert_eq!(line["policy"], "saitama-minna-app");
    assert!(line["snapshot_version"].as_u64().is_some(), "{line}");
    let subject = line["subject"].as_str().unwrap();
    assert_eq!(subject.len(), 32);
    let fields = line["fields"].as_array().unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f["path"] == "$.items[0].email" && f["action"] == "removed"),
        "{line}"
    );
    assert!(
        fields
            .iter()
            .any(|f| f["path"] == "$.gps" && f["action"] == "coarsened"),
        "{line}"
    );
    let text = line.to_string();
    for secret in ["u-bob", "u-alice", "a@example.jp", "35.8612"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // A client-chosen request id that is not a plain token is not logged.
    let (_, _) = send(
        f,
        Req::get("/echo")
            .who("u-bob", "surveys")
            .header("x-request-id", "bob@example.jp"),
    );
    assert!(wait_until(Duration::from_secs(5), || decision_lines(f)
        .iter()
        .any(
            |l| l["purpose"]["id"] == "surveys" && l["request_id"].is_null()
        )));
    assert!(!f.envoy.log_text().contains("bob@example.jp"));
}

#[test]
fn stats_are_labelled_in_prometheus() {
    let f = support::shipped_demo();
    let (resp, _) = send(
        f,
        Req::get("/echo?lat=35.86")
            .who("u-bob", "service.improvement")
            .json(r#"{"email": "x@example.jp"}"#),
    );
    assert_eq!(resp.status, 200);
    let (resp, _) = send(f, Req::get("/echo").who("u-bob", "surveys"));
    assert_eq!(resp.status, 403);
    let wants = [
        r#"consent_decisions{mode="enforce",outcome="block",reason="consent_missing",purpose="surveys"}"#,
        r#"consent_decisions{mode="enforce",outcome="redact",reason="notice_basis",purpose="service.improvement"}"#,
        r#"consent_redactions{mode="enforce",direction="request",category="location.gps"}"#,
        r#"consent_redactions{mode="enforce",direction="request",category="email"}"#,
        r#"consent_body_bytes{direction="request"}"#,
        "consent_snapshot_version",
        "consent_snapshot_users",
        "consent_snapshot_age_ms",
    ];
    let stats = prometheus_with(f, &wants);
    for want in wants {
        assert!(stats.contains(want), "missing {want} in\n{stats}");
    }
}

#[test]
fn the_access_log_reads_the_decision_from_filter_state() {
    let log = std::env::temp_dir()
        .join(support::tag("access"))
        .with_extension("log");
    let log_path = log.display().to_string();
    let f = start_demo(|y| {
        y.replace(
            "          - name: envoy.access_loggers.stdout\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n",
            &format!("          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {log_path}\n"),
        )
    });
    let (resp, _) = send(&f, Req::get("/echo").who("u-bob", "surveys"));
    assert_eq!(resp.status, 403);
    let (resp, _) = send(
        &f,
        Req::get("/echo").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(resp.status, 200);
    let mut text = String::new();
    assert!(wait_until(Duration::from_secs(5), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("purpose=marketing.newsletters")
    }));
    assert!(
        text.contains("-> 403 outcome=block; reason=consent_missing; purpose=surveys"),
        "{text}"
    );
    assert!(
        text.contains(
            "-> 200 outcome=redact; reason=consent_granted; purpose=marketing.newsletters"
        ),
        "{text}"
    );
    assert!(!text.contains("u-bob") && !text.contains("u-alice"));
    let _ = std::fs::remove_file(&log);
}

#[test]
fn with_a_worker_lease_the_filter_fetches_without_a_bootstrap_extension() {
    let f = start_demo(support::worker_lease);
    let yaml = std::fs::read_to_string(f.envoy.log.with_file_name("envoy.yaml")).unwrap();
    assert!(!yaml.contains("bootstrap_extensions"));
    assert!(yaml.contains("\"fetcher\": \"worker_lease\""));
    // start_demo waited for a snapshot; changes flow as with the singleton.
    let (resp, _) = send(&f, Req::get("/echo").who("u-bob", "surveys"));
    assert_eq!(resp.status, 403);
    let status = curl(&["-X", "PUT", &f.source_url("/users/u-bob/grants/surveys")]).status;
    assert_eq!(status, 200);
    assert!(wait_until(Duration::from_secs(6), || {
        send(&f, Req::get("/echo").who("u-bob", "surveys")).0.status == 200
    }));
    let log = f.envoy.log_text();
    match support::build() {
        // Exactly one of the two workers holds the lease.
        support::Build::Wasm => assert_eq!(log.matches("the fetcher lease").count(), 1, "{log}"),
        // The native module needs no lease: one fetcher for the process, whatever the setting.
        support::Build::Native => {
            assert_eq!(log.matches("consent fetcher: fetching").count(), 1, "{log}")
        }
    }
}
