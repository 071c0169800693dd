//! The stream's side of the provision ledger: which streams produce a record, what it
//! holds, and what happens while the ledger is unavailable.

use std::cell::Cell;

use super::*;
use crate::config::compile_config;
use crate::policy::party::CallerFacts;
use crate::policy::routes::RouteFacts;
use crate::stream::RequestStep;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY: &str = "demo-ledger-key-not-a-secret";
const THIRD_PARTY: &str = "spiffe://ads.example/ns/ads/sa/offers";
const JOINT_USER: &str = "spiffe://minna-app.example/ns/saitama-city/sa/portal";
const PROCESSOR: &str = "spiffe://minna-app.example/ns/felica-pocket-marketing/sa/app";

fn config(on_unavailable: &str) -> CompiledConfig {
    let doc = serde_json::json!({
        "caller": {"unidentified_party": "tsunagu"},
        "snapshot": {"source": "shared", "cluster": "consent_source"},
        "ledger": {"enabled": true, "subject_key_secret": KEY, "on_unavailable": on_unavailable},
        "consents": {"records": [
            {"subject": "u-alice", "grants": {
                "marketing.third_party_offers": {"policy_version": 1},
                "third_party.provision": {"policy_version": 1}}},
            {"subject": "u-bob"}
        ]}
    });
    compile_config(doc.to_string().as_bytes()).unwrap()
}

/// One request from the caller with URI SAN `san` (`None`: the operator's unidentified
/// app), with the ledger `available`; returns the step and whether the gate was asked.
fn request(
    stream: &mut Stream,
    c: &CompiledConfig,
    san: Option<&str>,
    (user, purpose): (&str, &str),
    available: bool,
) -> (RequestStep, bool) {
    let headers = [
        ("x-user-id", user.as_bytes()),
        ("x-data-purpose", purpose.as_bytes()),
        ("x-request-id", b"req-1".as_slice()),
    ];
    let asked = Cell::new(false);
    let step = stream.on_request_headers_with_ledger(
        c,
        headers,
        &CallerFacts {
            uri_san: san,
            ..CallerFacts::default()
        },
        &RouteFacts::default(),
        &c.inline_consents(),
        true,
        || {
            asked.set(true);
            available
        },
    );
    (step, asked.get())
}

fn emitted(stream: &mut Stream, c: &CompiledConfig) -> LedgerEmit {
    stream.ledger_emit(c, || 1_773_624_600_000, || "vm1-7".to_string())
}

fn record(stream: &mut Stream, c: &CompiledConfig) -> serde_json::Value {
    match emitted(stream, c) {
        LedgerEmit::Record(json) => serde_json::from_slice(&json).unwrap(),
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn a_consented_third_party_provision_is_recorded_with_the_categories_that_passed() {
    let c = config("block");
    let mut s = Stream::new(&c);
    let (step, asked) = request(
        &mut s,
        &c,
        Some(THIRD_PARTY),
        ("u-alice", "marketing.third_party_offers"),
        true,
    );
    assert!(matches!(step, RequestStep::Forward { .. }), "{step:?}");
    assert!(asked);
    let r = record(&mut s, &c);
    assert_eq!(
        r,
        serde_json::json!({
            "request_id": "req-1~vm1-7",
            "ts_ms": 1_773_624_600_000u64,
            "recipient": "-",
            "recipient_kind": "third_party",
            "recipient_identity": THIRD_PARTY,
            "purpose": "marketing.third_party_offers",
            "basis": "consent",
            "categories": ["name", "address", "phone", "email"],
            "subject": c.ledger.subject_for("u-alice"),
            "outcome": "redact",
            "reason": "consent_granted"
        })
    );
    assert_ne!(r["subject"], "u-alice");
    assert_eq!(
        emitted(&mut s, &c),
        LedgerEmit::Nothing,
        "one record per stream"
    );
}

#[test]
fn a_joint_users_joint_use_is_recorded_without_the_explicit_grant_categories() {
    let c = config("block");
    let mut s = Stream::new(&c);
    request(&mut s, &c, Some(JOINT_USER), ("u-bob", "joint.ebpm"), true);
    let r = record(&mut s, &c);
    assert_eq!(
        (&r["recipient"], &r["recipient_kind"], &r["basis"]),
        (
            &serde_json::json!("saitama-city"),
            &serde_json::json!("joint_user"),
            &serde_json::json!("notice")
        )
    );
    let categories: Vec<&str> = r["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(categories.len(), 16, "{categories:?}");
    assert!(categories.contains(&"payment.amount"));
    assert!(
        !categories.contains(&"location.gps"),
        "needs an explicit grant"
    );
}

#[test]
fn a_refused_third_party_provision_is_recorded_as_a_block_without_categories() {
    let c = config("block");
    let mut s = Stream::new(&c);
    let (step, _) = request(
        &mut s,
        &c,
        Some(THIRD_PARTY),
        ("u-bob", "marketing.third_party_offers"),
        true,
    );
    assert!(matches!(step, RequestStep::Reply(_)));
    let r = record(&mut s, &c);
    assert_eq!(r["outcome"], "block");
    assert_eq!(r["reason"], "third_party_consent_missing");
    assert_eq!(r["categories"], serde_json::json!([]));
}

#[test]
fn operator_and_processor_traffic_is_never_recorded_nor_gated() {
    let c = config("block");
    for san in [None, Some(PROCESSOR)] {
        let mut s = Stream::new(&c);
        let (step, asked) = request(&mut s, &c, san, ("u-alice", "support.inquiries"), false);
        assert!(matches!(step, RequestStep::Forward { .. }), "{san:?}");
        assert!(!asked, "{san:?}: the ledger is not consulted");
        assert_eq!(emitted(&mut s, &c), LedgerEmit::Nothing);
    }
}

#[test]
fn an_unavailable_ledger_blocks_third_party_provisions_with_its_reason() {
    let c = config("block");
    let mut s = Stream::new(&c);
    let (step, _) = request(
        &mut s,
        &c,
        Some(THIRD_PARTY),
        ("u-alice", "marketing.third_party_offers"),
        false,
    );
    let RequestStep::Reply(reply) = step else {
        panic!("expected a block, got {step:?}");
    };
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("ledger_unavailable"), "{}", reply.body);
    assert_eq!(
        emitted(&mut s, &c),
        LedgerEmit::Nothing,
        "a refusal is not an unrecorded provision"
    );
}

#[test]
fn on_unavailable_pass_lets_the_provision_through_unrecorded() {
    let c = config("pass");
    let mut s = Stream::new(&c);
    let (step, _) = request(&mut s, &c, Some(JOINT_USER), ("u-bob", "joint.ebpm"), false);
    assert!(matches!(step, RequestStep::Forward { .. }), "{step:?}");
    assert_eq!(emitted(&mut s, &c), LedgerEmit::Unrecorded);
}

#[test]
fn a_disabled_ledger_records_nothing() {
    let doc = serde_json::json!({
        "consents": {"records": [{"subject": "u-bob"}]}
    });
    let c = compile_config(doc.to_string().as_bytes()).unwrap();
    let mut s = Stream::new(&c);
    let (_, asked) = request(&mut s, &c, Some(JOINT_USER), ("u-bob", "joint.ebpm"), false);
    assert!(!asked);
    assert_eq!(emitted(&mut s, &c), LedgerEmit::Nothing);
}
