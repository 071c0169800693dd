use super::*;
use crate::live::records::{ConsentIndex, SnapshotDoc};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy() -> CompiledPolicy {
    CompiledPolicy::default_policy().unwrap()
}

/// The operator itself, as the shipped demo listener identifies unidentified callers.
fn operator(p: &CompiledPolicy) -> crate::decide::request::RequestContext {
    crate::decide::request::RequestContext {
        caller: Caller {
            party: p.party_idx("tsunagu"),
            kind: PartyKind::Operator,
            source: crate::policy::party::CallerSource::Unidentified,
        },
        ..Default::default()
    }
}

pub(crate) struct Owned {
    routes: crate::policy::routes::RouteTable,
    gpc: GpcSettings,
}

impl Owned {
    pub(crate) fn as_ref(&self) -> Enforcement<'_> {
        Enforcement {
            rule: self.routes.rule(None),
            gpc: &self.gpc,
        }
    }
}

pub(crate) fn enforcement(p: &CompiledPolicy, require_user: bool) -> Owned {
    Owned {
        routes: crate::policy::routes::RouteTable::compile(
            &[],
            &Default::default(),
            p,
            require_user,
            false,
        )
        .unwrap(),
        gpc: GpcSettings::default(),
    }
}

fn decide_t(
    view: &RequestView<'_>,
    p: &CompiledPolicy,
    record: Option<&ConsentRecord>,
    require_user: bool,
) -> Decision {
    decide(view, p, record, &enforcement(p, require_user).as_ref())
}

fn index(p: &CompiledPolicy, v: serde_json::Value) -> ConsentIndex {
    let doc: SnapshotDoc = serde_json::from_value(v).unwrap();
    ConsentIndex::compile(&doc, p, "consents").unwrap()
}

fn run(
    p: &CompiledPolicy,
    idx: &ConsentIndex,
    user: Option<&str>,
    purpose: Option<&str>,
) -> Decision {
    let view = RequestView {
        user: user.map_or(HeaderValue::Absent, HeaderValue::One),
        purpose: purpose.map_or(HeaderValue::Absent, HeaderValue::One),
        context: operator(p),
    };
    let record = user.and_then(|u| idx.lookup(u));
    decide_t(&view, p, record, true)
}

fn redacted_ids(p: &CompiledPolicy, d: &Decision) -> Vec<String> {
    d.redacted
        .iter()
        .map(|c| p.category_id(c).to_string())
        .collect()
}

fn users(p: &CompiledPolicy) -> ConsentIndex {
    index(
        p,
        serde_json::json!({"records": [
            {"subject": "alice", "grants": {
                "marketing.newsletters": {"policy_version": 1},
                "service.improvement": {"policy_version": 1, "explicit": ["location.gps"]}
            }},
            {"subject": "stopped", "stop_use": true, "grants": {"marketing.newsletters": {"policy_version": 1}}}
        ]}),
    )
}

#[test]
fn a_request_without_purpose_is_use_beyond_purpose() {
    let p = policy();
    let d = run(&p, &users(&p), Some("alice"), None);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::PurposeMissing)
    );
}

#[test]
fn a_purpose_outside_the_catalogue_is_blocked() {
    let p = policy();
    let d = run(&p, &users(&p), Some("alice"), Some("ads.resale"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::PurposeUnknown)
    );
    assert_eq!(d.purpose, None);
}

#[test]
fn a_missing_user_is_blocked_when_required() {
    let p = policy();
    let d = run(&p, &users(&p), None, Some("support.inquiries"));
    assert_eq!((d.outcome, d.reason), (Outcome::Block, Reason::UserMissing));
}

#[test]
fn a_missing_user_is_treated_as_no_consent_when_not_required() {
    let p = policy();
    let view = RequestView {
        user: HeaderValue::Absent,
        purpose: HeaderValue::One("marketing.newsletters"),
        context: operator(&p),
    };
    let d = decide_t(&view, &p, None, false);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::ConsentMissing)
    );
}

#[test]
fn repeated_identity_headers_block_with_their_own_codes() {
    let p = policy();
    let view = RequestView {
        user: HeaderValue::Repeated,
        purpose: HeaderValue::One("surveys"),
        context: operator(&p),
    };
    assert_eq!(
        decide_t(&view, &p, None, true).reason,
        Reason::UserAmbiguous
    );
    let view = RequestView {
        user: HeaderValue::One("alice"),
        purpose: HeaderValue::Repeated,
        context: operator(&p),
    };
    assert_eq!(
        decide_t(&view, &p, None, true).reason,
        Reason::PurposeAmbiguous
    );
    let view = RequestView {
        user: HeaderValue::Invalid,
        purpose: HeaderValue::One("surveys"),
        context: operator(&p),
    };
    assert_eq!(decide_t(&view, &p, None, true).reason, Reason::UserInvalid);
}

#[test]
fn opt_in_purpose_with_consent_passes_only_its_categories() {
    let p = policy();
    let d = run(&p, &users(&p), Some("alice"), Some("marketing.newsletters"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Redact, Reason::ConsentGranted)
    );
    let removed = redacted_ids(&p, &d);
    assert!(removed.contains(&"location.gps".to_string()));
    assert!(removed.contains(&"device_id".to_string()));
    assert!(!removed.contains(&"email".to_string()));
    let gps = p.category_idx("location.gps").unwrap();
    let reason = d.redactions().find(|r| r.category == gps).unwrap().reason;
    assert_eq!(reason, Reason::CategoryNotInPurpose);
}

#[test]
fn opt_in_purpose_without_consent_is_blocked_when_the_policy_says_block() {
    let p = policy();
    let d = run(&p, &users(&p), Some("alice"), Some("surveys"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::ConsentMissing)
    );
    assert_eq!(d.purpose, p.purpose_idx("surveys"));
}

#[test]
fn opt_in_purpose_without_consent_is_stripped_when_the_policy_says_strip() {
    let p = policy();
    let d = run(&p, &users(&p), Some("alice"), Some("marketing.campaigns"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Redact, Reason::ConsentMissing)
    );
    assert_eq!(d.redacted, p.all_categories);
    assert!(d.redactions().all(|r| r.reason == Reason::ConsentMissing));
}

#[test]
fn an_unknown_user_has_no_consent() {
    let p = policy();
    let d = run(
        &p,
        &users(&p),
        Some("nobody"),
        Some("marketing.newsletters"),
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::ConsentMissing)
    );
}

#[test]
fn stop_use_blocks_every_purpose_but_legal_ones() {
    let p = policy();
    let idx = users(&p);
    for purpose in [
        "marketing.newsletters",
        "support.inquiries",
        "joint.ebpm",
        "business.partner_operations",
    ] {
        let d = run(&p, &idx, Some("stopped"), Some(purpose));
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Block, Reason::UseStopped),
            "{purpose}"
        );
    }
    let d = run(&p, &idx, Some("stopped"), Some("government.benefits"));
    assert_ne!(d.outcome, Outcome::Block);
    assert_eq!(d.reason, Reason::LegalBasis);
}

#[test]
fn location_needs_an_explicit_grant_for_the_purpose_at_hand() {
    let p = policy();
    let idx = users(&p);
    let d = run(&p, &idx, Some("alice"), Some("service.improvement"));
    let removed = redacted_ids(&p, &d);
    assert!(
        !removed.contains(&"location.gps".to_string()),
        "gps was granted"
    );
    assert!(removed.contains(&"location.wifi".to_string()));
    let wifi = p.category_idx("location.wifi").unwrap();
    assert_eq!(
        d.redactions().find(|r| r.category == wifi).unwrap().reason,
        Reason::ExplicitGrantMissing
    );
    // The same grant does not carry over to another purpose.
    let d = run(&p, &idx, Some("alice"), Some("security.crime_prevention"));
    assert!(redacted_ids(&p, &d).contains(&"location.gps".to_string()));
}

#[test]
fn notice_purpose_is_allowed_without_a_record() {
    let p = policy();
    let d = run(&p, &users(&p), Some("nobody"), Some("support.inquiries"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Redact, Reason::NoticeBasis)
    );
    assert!(redacted_ids(&p, &d).contains(&"location.gps".to_string()));
    assert!(!redacted_ids(&p, &d).contains(&"email".to_string()));
}

#[test]
fn consent_given_before_a_material_change_requires_reconsent() {
    let mut doc: crate::policy::compiled::PolicyDoc =
        serde_json::from_str(crate::policy::compiled::DEFAULT_POLICY_JSON).unwrap();
    doc.version = 2;
    for purpose in &mut doc.purposes {
        if purpose.id == "marketing.newsletters" {
            purpose.changed_in = 2;
        }
    }
    let p = CompiledPolicy::compile(&doc, "policy").unwrap();
    let idx = index(
        &p,
        serde_json::json!({"records": [{"subject": "alice", "grants": {
            "marketing.newsletters": {"policy_version": 1},
            "marketing.third_party_offers": {"policy_version": 1}
        }}]}),
    );
    let d = run(&p, &idx, Some("alice"), Some("marketing.newsletters"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::ReconsentRequired)
    );
    let d = run(
        &p,
        &idx,
        Some("alice"),
        Some("marketing.third_party_offers"),
    );
    assert_eq!(
        d.reason,
        Reason::ConsentGranted,
        "unchanged purposes keep working"
    );
}

#[test]
fn without_a_snapshot_identity_is_still_checked_then_the_failure_mode_applies() {
    let p = policy();
    let view = RequestView {
        user: HeaderValue::One("u"),
        purpose: HeaderValue::One("support.inquiries"),
        context: operator(&p),
    };
    let d = decide_without_snapshot(
        &view,
        &p,
        &enforcement(&p, true).as_ref(),
        Reason::SnapshotStale,
        FailureMode::Block,
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Block, Reason::SnapshotStale)
    );
    let d = decide_without_snapshot(
        &view,
        &p,
        &enforcement(&p, true).as_ref(),
        Reason::SnapshotUnavailable,
        FailureMode::Strip,
    );
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Redact, Reason::SnapshotUnavailable)
    );
    assert_eq!(d.redacted, p.all_categories);
    let bad = RequestView {
        user: HeaderValue::One("u"),
        purpose: HeaderValue::One("nope"),
        context: operator(&p),
    };
    assert_eq!(
        decide_without_snapshot(
            &bad,
            &p,
            &enforcement(&p, true).as_ref(),
            Reason::SnapshotStale,
            FailureMode::Strip
        )
        .reason,
        Reason::PurposeUnknown
    );
}

#[test]
fn a_purpose_that_may_touch_everything_is_allowed_untouched() {
    let doc = serde_json::json!({
        "id": "p", "version": 1,
        "categories": [{"id": "email", "label": {"ja": "a", "en": "b"}}],
        "purposes": [{"id": "all", "label": {"ja": "a", "en": "b"}, "basis": "contract", "categories": ["email"]}]
    });
    let p = CompiledPolicy::from_json(&doc.to_string()).unwrap();
    let d = run(&p, &ConsentIndex::default(), Some("u"), Some("all"));
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Allow, Reason::ContractBasis)
    );
    assert!(!d.redacts());
}
