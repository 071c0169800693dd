//! End to end through real Envoy with a real gRPC server and client (grpcio): the demo
//! ProfileService behind the consent filter, configured with the shipped descriptor set.
//! Unary and server-streaming calls are enforced message by message in both directions;
//! a blocked call is a gRPC status with the reason code; compressed messages and methods
//! the descriptors do not describe are refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{grpc_call, start_demo, with_port, Fixture, GrpcServer, SHIPPED_GRPC_PORT};

/// The demo (Envoy, consent source, JSON backend) with the gRPC route pointed at a real
/// gRPC server, started once for the whole binary.
fn demo() -> &'static (GrpcServer, Fixture) {
    static DEMO: std::sync::OnceLock<(GrpcServer, Fixture)> = std::sync::OnceLock::new();
    DEMO.get_or_init(|| {
        let server = GrpcServer::start();
        let port = server.port;
        let fixture = start_demo(move |yaml| with_port(yaml, SHIPPED_GRPC_PORT, port));
        (server, fixture)
    })
}

fn envoy_port() -> u16 {
    demo().1.envoy.port
}

/// Bob's update: forbidden for service.improvement are name, email and phone (removed)
/// and location.gps without a grant (coarsened); device_id and note are allowed.
const BOB_UPDATE: &str = r#"{"user_id": "u-bob", "name": "埼玉 太郎", "email": "taro@example.jp",
  "phone": "048-111-1111", "gps": {"lat": 35.8617, "lng": 139.6455}, "device_id": "dev-9999",
  "note": "hello", "history": [{"id": "tx-1", "merchant": "m-1", "gps": {"lat": 35.8617, "lng": 139.6455}}]}"#;

fn assert_bob_update_enforced(message: &Value) {
    assert_eq!(message["device_id"], "dev-9999", "{message}");
    assert_eq!(message["note"], "hello");
    for gone in ["name", "email", "phone"] {
        assert!(message.get(gone).is_none(), "{gone} passed: {message}");
    }
    assert_eq!(message["gps"], json!({"lat": 35.86, "lng": 139.65}));
    assert_eq!(
        message["history"][0]["gps"],
        json!({"lat": 35.86, "lng": 139.65})
    );
    let text = message.to_string();
    assert!(
        !text.contains("example.jp") && !text.contains("35.8617") && !text.contains("048-111"),
        "{text}"
    );
}

#[test]
fn a_unary_request_message_reaches_the_backend_without_forbidden_fields() {
    let call = grpc_call(
        envoy_port(),
        "u-bob",
        "service.improvement",
        "update",
        &["--json", BOB_UPDATE],
    );
    assert_eq!(call.code(), "OK", "{}", call.out);
    let seen = demo().0.seen(&call.tag);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_bob_update_enforced(&seen[0]["message"]);
    let decision = seen[0]["metadata"]["x-consent-decision"].as_str().unwrap();
    assert!(decision.starts_with("outcome=redact;"), "{decision}");
    // The echoed profile comes back through the filter, and is enforced again.
    assert_bob_update_enforced(&call.messages()[0]);
}

#[test]
fn a_unary_response_loses_the_categories_the_purpose_may_not_see() {
    let call = grpc_call(envoy_port(), "u-alice", "marketing.newsletters", "get", &[]);
    assert_eq!(call.code(), "OK", "{}", call.out);
    let profile = &call.messages()[0];
    // Newsletters may see contact details, not location, device or payments.
    assert_eq!(profile["email"], "hanako@example.jp");
    assert_eq!(profile["name"], "埼玉 花子");
    for gone in [
        "gps",
        "device_id",
        "os_info",
        "wifi_bssid",
        "beacon_id",
        "device_model",
    ] {
        assert!(profile.get(gone).is_none(), "{gone} passed: {profile}");
    }
    for gone in ["device_id", "os_info", "device_model"] {
        assert!(
            profile["device"].get(gone).is_none(),
            "device.{gone} passed: {profile}"
        );
    }
    for tx in profile["history"].as_array().unwrap() {
        for gone in ["amount", "merchant", "date", "gps"] {
            assert!(tx.get(gone).is_none(), "history {gone} passed: {tx}");
        }
        assert!(tx["id"].is_string(), "other fields stay: {tx}");
    }
    assert_eq!(profile["note"], "demo profile");
    assert_eq!(profile["attributes"]["language"], "ja");
}

#[test]
fn a_server_stream_is_enforced_message_by_message() {
    let call = grpc_call(
        envoy_port(),
        "u-alice",
        "marketing.newsletters",
        "history",
        &["--limit", "2000"],
    );
    assert_eq!(call.code(), "OK", "{}", call.out);
    let messages = call.messages();
    assert_eq!(messages.len(), 2000, "every message arrives");
    for (i, tx) in messages.iter().enumerate() {
        assert_eq!(tx["id"], format!("tx-{i:06}"));
        for gone in ["amount", "merchant", "date", "gps"] {
            assert!(tx.get(gone).is_none(), "message {i}: {gone} passed: {tx}");
        }
    }
    // Without anything forbidden, the same stream passes whole.
    let open = grpc_call(
        envoy_port(),
        "u-alice",
        "service.improvement",
        "history",
        &["--limit", "3"],
    );
    assert_eq!(open.code(), "OK", "{}", open.out);
    assert!(open.messages()[2]["merchant"].is_string(), "{}", open.out);
}

#[test]
fn a_blocked_call_is_a_grpc_status_with_the_reason_code() {
    let call = grpc_call(envoy_port(), "u-bob", "surveys", "get", &[]);
    assert_eq!(call.code(), "PERMISSION_DENIED", "{}", call.out);
    assert_eq!(call.details(), "consent_missing");
    let decision = call.out["decision"].as_str().unwrap();
    assert!(
        decision.starts_with("outcome=block; reason=consent_missing;"),
        "{decision}"
    );
    assert!(
        demo().0.seen(&call.tag).is_empty(),
        "the backend saw nothing"
    );
    let carol = grpc_call(envoy_port(), "u-carol", "service.improvement", "get", &[]);
    assert_eq!(carol.code(), "PERMISSION_DENIED", "{}", carol.out);
    assert_eq!(carol.details(), "use_stopped");
}

#[test]
fn a_compressed_message_is_refused_as_invalid_argument() {
    let call = grpc_call(
        envoy_port(),
        "u-bob",
        "service.improvement",
        "update",
        &["--json", BOB_UPDATE, "--compress"],
    );
    assert_eq!(call.code(), "INVALID_ARGUMENT", "{}", call.out);
    assert_eq!(call.details(), "body_encoding_unsupported");
    assert!(
        demo().0.seen(&call.tag).is_empty(),
        "the backend saw nothing"
    );
}

#[test]
fn a_method_the_descriptors_do_not_describe_is_refused() {
    // Field 7 (`email` in a Profile) as a string: unreadable without a descriptor.
    let message = hex("3a107461726f406578616d706c652e6a7021");
    let call = grpc_call(
        envoy_port(),
        "u-bob",
        "service.improvement",
        "raw",
        &["--method", "/saitama.v1.Unknown/Store", "--hex", &message],
    );
    assert_eq!(call.code(), "PERMISSION_DENIED", "{}", call.out);
    assert_eq!(call.details(), "grpc_method_unknown");
    let decision = call.out["decision"].as_str().unwrap();
    assert!(
        decision.contains("reason=grpc_method_unknown"),
        "{decision}"
    );
}

#[test]
fn malformed_protobuf_never_reaches_the_backend() {
    // A length-delimited field whose length runs past the message.
    let call = grpc_call(
        envoy_port(),
        "u-bob",
        "service.improvement",
        "raw",
        &[
            "--method",
            "/saitama.v1.ProfileService/UpdateProfile",
            "--hex",
            "3a7f78",
        ],
    );
    assert_eq!(call.code(), "INVALID_ARGUMENT", "{}", call.out);
    assert_eq!(call.details(), "body_invalid_protobuf");
    assert!(
        demo().0.seen(&call.tag).is_empty(),
        "reached the gRPC backend"
    );
}

/// Hex as the client takes it (checked here, so a typo fails loudly).
fn hex(text: &str) -> String {
    assert!(text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()));
    text.to_string()
}
