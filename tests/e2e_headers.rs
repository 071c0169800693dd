//! End to end through real Envoy with the shipped demo config: header and query
//! enforcement, block replies and the decision header, as the client and the backend see them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use consent_tools::demo_backend::SeenRequest;
use support::{start_demo, without_filter, Fixture, Req, Response};

use support::shipped_demo as fixture;

fn send_via(f: &Fixture, path: &str, headers: &[(&str, &str)]) -> (Response, Option<SeenRequest>) {
    let req = headers
        .iter()
        .fold(Req::get(path), |r, (n, v)| r.header(n, v));
    support::send(f, req)
}

fn send(path: &str, headers: &[(&str, &str)]) -> (Response, Option<SeenRequest>) {
    send_via(fixture(), path, headers)
}

const LOCATION_AND_DEVICE: [(&str, &str); 3] = [
    ("x-geo-position", "35.8617,139.6455"),
    ("x-device-id", "dev-123"),
    ("x-user-email", "hanako@example.jp"),
];

fn with(
    base: &[(&'static str, &'static str)],
    more: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn granted_location_and_in_purpose_categories_reach_the_backend() {
    let headers = with(
        &[
            ("x-user-id", "u-alice"),
            ("x-data-purpose", "service.improvement"),
        ],
        &LOCATION_AND_DEVICE,
    );
    let (resp, seen) = send("/echo?lat=35.86&lng=139.64&page=2", &headers);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("request reached the backend");
    assert_eq!(seen.header("x-geo-position"), Some("35.8617,139.6455"));
    assert_eq!(seen.header("x-device-id"), Some("dev-123"));
    assert_eq!(seen.path, "/echo?lat=35.86&lng=139.64&page=2");
    // Email is not a category service.improvement may touch.
    assert_eq!(seen.header("x-user-email"), None);
    let decision = seen.header("x-consent-decision").expect("decision header");
    assert!(
        decision.contains("purpose=service.improvement"),
        "{decision}"
    );
    assert!(decision.contains("reason=notice_basis"), "{decision}");
    assert!(decision.contains("policy_version=1"), "{decision}");
    assert!(
        !decision.contains("location.gps"),
        "gps is granted: {decision}"
    );
}

#[test]
fn location_without_an_explicit_grant_is_stripped_from_headers_and_query() {
    let headers = with(
        &[
            ("x-user-id", "u-bob"),
            ("x-data-purpose", "service.improvement"),
        ],
        &LOCATION_AND_DEVICE,
    );
    let (resp, seen) = send("/echo?q=caf%C3%A9+x&lat=35.86&LN%67=139.6&z", &headers);
    assert_eq!(resp.status, 200);
    let seen = seen.expect("request reached the backend");
    assert_eq!(seen.header("x-geo-position"), None);
    assert_eq!(seen.header("x-device-id"), Some("dev-123"));
    assert_eq!(
        seen.path, "/echo?q=caf%C3%A9+x&z",
        "other params byte for byte"
    );
    let decision = seen.header("x-consent-decision").unwrap();
    assert!(decision.contains("outcome=redact"), "{decision}");
    assert!(decision.contains("location.gps"), "{decision}");
    assert!(
        !decision.contains("35.86"),
        "no values in the decision header"
    );
}

#[test]
fn opt_in_purpose_without_consent_is_blocked_with_a_json_reason() {
    let headers = with(
        &[("x-user-id", "u-bob"), ("x-data-purpose", "surveys")],
        &LOCATION_AND_DEVICE,
    );
    let (resp, seen) = send("/echo", &headers);
    assert_eq!(resp.status, 403);
    assert!(
        seen.is_none(),
        "a blocked request must not reach the backend"
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["reason"], "consent_missing");
    assert_eq!(body["purpose"], "surveys");
    assert!(body["error"].is_string());
    assert!(!resp.text().contains("u-bob"), "no user id in the reply");
    assert!(resp
        .header("x-consent-decision")
        .unwrap()
        .contains("outcome=block"));
}

#[test]
fn strip_purpose_without_consent_passes_with_every_category_removed() {
    let headers = with(
        &[
            ("x-user-id", "u-bob"),
            ("x-data-purpose", "marketing.campaigns"),
        ],
        &LOCATION_AND_DEVICE,
    );
    let (resp, seen) = send("/echo?email=a%40b&page=1", &headers);
    assert_eq!(resp.status, 200);
    let seen = seen.unwrap();
    for (name, _) in LOCATION_AND_DEVICE {
        assert_eq!(seen.header(name), None, "{name} must be stripped");
    }
    assert_eq!(seen.path, "/echo?page=1");
    assert!(seen
        .header("x-consent-decision")
        .unwrap()
        .contains("reason=consent_missing"));
}

#[test]
fn use_beyond_purpose_is_blocked() {
    let (resp, seen) = send("/echo", &[("x-user-id", "u-alice")]);
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (403, Some("purpose_missing"))
    );
    assert!(seen.is_none());
    let (resp, seen) = send(
        "/echo",
        &[("x-user-id", "u-alice"), ("x-data-purpose", "ads.resale")],
    );
    assert_eq!(resp.json()["reason"], "purpose_unknown");
    assert_eq!(resp.json()["purpose"], serde_json::Value::Null);
    assert!(seen.is_none());
}

#[test]
fn missing_or_repeated_identity_headers_are_blocked_with_their_own_codes() {
    let (resp, _) = send("/echo", &[("x-data-purpose", "support.inquiries")]);
    assert_eq!(resp.json()["reason"], "user_missing");
    let (resp, seen) = send(
        "/echo",
        &[
            ("x-user-id", "u-alice"),
            ("x-user-id", "u-bob"),
            ("x-data-purpose", "support.inquiries"),
        ],
    );
    assert_eq!(resp.json()["reason"], "user_ambiguous");
    assert!(seen.is_none());
    let (resp, _) = send(
        "/echo",
        &[
            ("x-user-id", "u-alice"),
            ("x-data-purpose", "support.inquiries, marketing.newsletters"),
        ],
    );
    assert_eq!(resp.json()["reason"], "purpose_ambiguous");
}

#[test]
fn stop_use_blocks_all_but_legally_required_purposes() {
    let (resp, seen) = send(
        "/echo",
        &[
            ("x-user-id", "u-carol"),
            ("x-data-purpose", "marketing.newsletters"),
        ],
    );
    assert_eq!(
        (resp.status, resp.json()["reason"].as_str()),
        (403, Some("use_stopped"))
    );
    assert!(seen.is_none());
    let (resp, seen) = send(
        "/echo",
        &[
            ("x-user-id", "u-carol"),
            ("x-data-purpose", "government.benefits"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert!(seen
        .unwrap()
        .header("x-consent-decision")
        .unwrap()
        .contains("reason=legal_basis"));
}

#[test]
fn forbidden_response_headers_are_removed_and_allowed_ones_kept() {
    let (resp, seen) = send(
        "/users/u-alice/profile",
        &[
            ("x-user-id", "u-alice"),
            ("x-data-purpose", "marketing.newsletters"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert!(seen.is_some());
    assert_eq!(resp.header("x-device-id"), None);
    assert_eq!(resp.header("x-geo-position"), None);
    assert_eq!(resp.header("x-user-email"), Some("hanako@example.jp"));
}

#[test]
fn a_client_cannot_forge_the_decision_header() {
    let (_, seen) = send(
        "/echo",
        &[
            ("x-user-id", "u-bob"),
            ("x-data-purpose", "support.inquiries"),
            ("x-consent-decision", "outcome=allow; redacted="),
        ],
    );
    let seen = seen.unwrap();
    assert_eq!(seen.header_values("x-consent-decision").len(), 1);
    assert!(seen
        .header("x-consent-decision")
        .unwrap()
        .contains("outcome=redact"));
}

#[test]
fn without_the_filter_the_same_request_leaks_which_proves_the_tests_can_fail() {
    let bare = start_demo(without_filter);
    let headers = with(
        &[("x-user-id", "u-bob"), ("x-data-purpose", "surveys")],
        &LOCATION_AND_DEVICE,
    );
    let (resp, seen) = send_via(&bare, "/echo?lat=1", &headers);
    assert_eq!(resp.status, 200);
    assert_eq!(
        seen.unwrap().header("x-geo-position"),
        Some("35.8617,139.6455")
    );
}

#[test]
fn a_decision_header_sent_by_the_client_is_replaced_and_one_is_added_otherwise() {
    // The filter adds its decision header when the request has none (cheaper in Envoy than
    // a replace) and replaces a client's: the backend sees exactly one, the filter's.
    let base = [
        ("x-user-id", "u-alice"),
        ("x-data-purpose", "service.improvement"),
    ];
    for forged in [
        None,
        Some("outcome=allow; reason=consent_granted"),
        Some("x"),
    ] {
        let mut headers = base.to_vec();
        if let Some(value) = forged {
            headers.push(("x-consent-decision", value));
            headers.push(("X-Consent-Decision", value));
        }
        let (resp, seen) = send("/echo", &headers);
        assert_eq!(resp.status, 200, "{forged:?}");
        let seen = seen.unwrap();
        let values = seen.header_values("x-consent-decision");
        assert_eq!(values.len(), 1, "{forged:?}: {values:?}");
        assert!(values[0].starts_with("outcome="), "{values:?}");
        assert_ne!(Some(values[0]), forged, "the client's value is gone");
    }
}
