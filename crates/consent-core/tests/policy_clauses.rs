//! The seed policy clause by clause (§3, §4, §7, §8, §10, §11): one table of decision
//! cases through the real configuration path (caller resolution from the shipped party
//! identities, GPC, route rules, the inline snapshot), each named after its clause.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use consent_core::policy::{CallerFacts, RouteFacts};
use consent_core::{
    compile_config, CompiledConfig, Decision, HeaderValue, Outcome, Reason, RequestView,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const OPERATOR: &str = "spiffe://minna-app.example/ns/tsunagu/sa/app-api";
const PROCESSOR: &str = "spiffe://minna-app.example/ns/felica-pocket-marketing/sa/points";
const CITY: &str = "spiffe://minna-app.example/ns/saitama-city/sa/portal";
const AEON: &str = "spiffe://minna-app.example/ns/aeon-financial-service/sa/wallet";
const STRANGER: &str = "spiffe://ads.example/ns/default/sa/offers";

fn records() -> serde_json::Value {
    serde_json::json!({"records": [
        {"subject": "granted", "grants": {
            "marketing.campaigns": {"policy_version": 1},
            "marketing.newsletters": {"policy_version": 1},
            "marketing.third_party_offers": {"policy_version": 1},
            "surveys": {"policy_version": 1},
            "third_party.provision": {"policy_version": 1},
            "service.improvement": {"policy_version": 1, "explicit": ["location.gps"]},
            "security.crime_prevention": {"policy_version": 1, "explicit": ["location.gps", "location.wifi"]}
        }},
        {"subject": "stopped", "stop_use": true, "grants": {"marketing.newsletters": {"policy_version": 1}}},
        {"subject": "no-third-party", "stop_third_party": true, "grants": {
            "marketing.newsletters": {"policy_version": 1},
            "third_party.provision": {"policy_version": 1}
        }},
        {"subject": "withdrew", "withdrawn": ["marketing.newsletters", "service.improvement", "third_party.provision", "business.partner_operations"],
         "grants": {"marketing.newsletters": {"policy_version": 1}}},
        {"subject": "provision-only", "grants": {"third_party.provision": {"policy_version": 1}}},
        {"subject": "later", "grants": {"surveys": {"policy_version": 9}}}
    ]})
}

fn config_with(policy: Option<serde_json::Value>, consents: serde_json::Value) -> CompiledConfig {
    let mut doc = serde_json::json!({
        "consents": consents,
        "gpc": {"purposes": ["marketing.third_party_offers"]},
        "routes": [{"name": "public-stats", "match": {"path_prefix": "/stats/"}, "purposes": ["joint.ebpm", "marketing.analysis"]}]
    });
    if let Some(p) = policy {
        doc["policy"] = p;
    }
    compile_config(doc.to_string().as_bytes()).unwrap()
}

fn config() -> CompiledConfig {
    config_with(None, records())
}

#[derive(Clone, Copy)]
struct Ask<'a> {
    caller: &'a str,
    user: &'a str,
    purpose: &'a str,
    gpc: bool,
    path: &'a str,
}

/// `caller` asks about `user` for `purpose`, on `/` and without GPC.
fn asking<'a>(caller: &'a str, user: &'a str, purpose: &'a str) -> Ask<'a> {
    Ask {
        caller,
        user,
        purpose,
        gpc: false,
        path: "/",
    }
}

fn ask(c: &CompiledConfig, a: &Ask<'_>) -> Decision {
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    if a.gpc {
        headers.push(("sec-gpc", b"1"));
    }
    let facts = CallerFacts {
        uri_san: Some(a.caller),
        ..CallerFacts::default()
    };
    let route = RouteFacts {
        path: Some(a.path),
        ..RouteFacts::default()
    };
    let context = c.context(&facts, &route, headers);
    let view = RequestView {
        user: HeaderValue::One(a.user),
        purpose: if a.purpose.is_empty() {
            HeaderValue::Absent
        } else {
            HeaderValue::One(a.purpose)
        },
        context,
    };
    c.decide(&view)
}

/// One row: clause, who asks, about whom, for what, and the expected outcome and reason.
struct Row {
    clause: &'static str,
    caller: &'static str,
    user: &'static str,
    purpose: &'static str,
    gpc: bool,
    outcome: Outcome,
    reason: Reason,
}

const fn row(
    clause: &'static str,
    caller: &'static str,
    user: &'static str,
    purpose: &'static str,
    outcome: Outcome,
    reason: Reason,
) -> Row {
    Row {
        clause,
        caller,
        user,
        purpose,
        gpc: false,
        outcome,
        reason,
    }
}

const fn with_gpc(mut r: Row) -> Row {
    r.gpc = true;
    r
}

use Outcome::{Block, Redact};

const TABLE: &[Row] = &[
    // §3 purposes of use and their legal bases.
    row(
        "§3(1)ア① campaigns with consent pass their categories only",
        OPERATOR,
        "granted",
        "marketing.campaigns",
        Redact,
        Reason::ConsentGranted,
    ),
    row(
        "§3(1)ア① campaigns without consent are stripped, not blocked",
        OPERATOR,
        "nobody",
        "marketing.campaigns",
        Redact,
        Reason::ConsentMissing,
    ),
    row(
        "§3(1)ア② newsletters without consent are blocked",
        OPERATOR,
        "nobody",
        "marketing.newsletters",
        Block,
        Reason::ConsentMissing,
    ),
    row(
        "§3(1)ア③ third-party offers with consent pass",
        OPERATOR,
        "granted",
        "marketing.third_party_offers",
        Redact,
        Reason::ConsentGranted,
    ),
    row(
        "§3(1)ア④ surveys without consent are blocked",
        OPERATOR,
        "nobody",
        "surveys",
        Block,
        Reason::ConsentMissing,
    ),
    row(
        "§3(1)イ partner operations rest on contract, not consent",
        OPERATOR,
        "nobody",
        "business.partner_operations",
        Redact,
        Reason::ContractBasis,
    ),
    row(
        "§3(2) inquiries rest on notice",
        OPERATOR,
        "nobody",
        "support.inquiries",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§3(2) crime prevention rests on notice",
        OPERATOR,
        "granted",
        "security.crime_prevention",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§3(3)ア marketing analysis rests on notice",
        OPERATOR,
        "nobody",
        "marketing.analysis",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§3(3)ウ outsourced operations by a processor rest on contract",
        PROCESSOR,
        "nobody",
        "outsourced.operations",
        Redact,
        Reason::ContractBasis,
    ),
    row(
        "§3(4) service improvement rests on notice",
        OPERATOR,
        "granted",
        "service.improvement",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§3(5) administrative services rest on law",
        OPERATOR,
        "nobody",
        "government.benefits",
        Redact,
        Reason::LegalBasis,
    ),
    // §4 no use beyond the purposes.
    row(
        "§4 a request without a purpose is use beyond purpose",
        OPERATOR,
        "granted",
        "",
        Block,
        Reason::PurposeMissing,
    ),
    row(
        "§4 a purpose outside the catalogue is use beyond purpose",
        OPERATOR,
        "granted",
        "ads.resale",
        Block,
        Reason::PurposeUnknown,
    ),
    // §7 third-party provision only with consent or by law.
    row(
        "§7 a third party without consent to provision is refused",
        STRANGER,
        "nobody",
        "marketing.analysis",
        Block,
        Reason::ThirdPartyConsentMissing,
    ),
    row(
        "§7 a third party with consent to provision gets the purpose's data",
        STRANGER,
        "granted",
        "marketing.third_party_offers",
        Redact,
        Reason::ConsentGranted,
    ),
    row(
        "§7 consent to provision still needs consent to the purpose",
        STRANGER,
        "provision-only",
        "surveys",
        Block,
        Reason::ConsentMissing,
    ),
    row(
        "§7 provision allowed by law needs no consent",
        STRANGER,
        "nobody",
        "government.benefits",
        Redact,
        Reason::LegalBasis,
    ),
    with_gpc(row(
        "§7 GPC objects to provision to third parties",
        STRANGER,
        "granted",
        "marketing.third_party_offers",
        Block,
        Reason::GpcObjection,
    )),
    with_gpc(row(
        "§7 GPC objects to third-party marketing whoever asks",
        OPERATOR,
        "granted",
        "marketing.third_party_offers",
        Block,
        Reason::GpcObjection,
    )),
    with_gpc(row(
        "§7 GPC leaves first-party purposes alone",
        OPERATOR,
        "granted",
        "marketing.newsletters",
        Redact,
        Reason::ConsentGranted,
    )),
    // §8 joint use among the operator, the city and the financial company.
    row(
        "§8 the city may use data for joint-use purposes",
        CITY,
        "nobody",
        "joint.ebpm",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§8 the financial company may use data for joint-use purposes",
        AEON,
        "nobody",
        "joint.troubleshooting",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§8 the operator is one of the joint users",
        OPERATOR,
        "nobody",
        "joint.administrative_services",
        Redact,
        Reason::NoticeBasis,
    ),
    row(
        "§8 a joint user gets joint-use purposes only",
        CITY,
        "granted",
        "marketing.newsletters",
        Block,
        Reason::JointUseOnly,
    ),
    row(
        "§8 a third party is not a joint user",
        STRANGER,
        "granted",
        "joint.ebpm",
        Block,
        Reason::PartyNotJointUser,
    ),
    // §10 rights.
    row(
        "§10 stop use blocks notice-based use",
        OPERATOR,
        "stopped",
        "support.inquiries",
        Block,
        Reason::UseStopped,
    ),
    row(
        "§10 stop use blocks consent-based use",
        OPERATOR,
        "stopped",
        "marketing.newsletters",
        Block,
        Reason::UseStopped,
    ),
    row(
        "§10 stop use blocks joint use",
        CITY,
        "stopped",
        "joint.ebpm",
        Block,
        Reason::UseStopped,
    ),
    row(
        "§10 stop use leaves legally required use",
        OPERATOR,
        "stopped",
        "government.benefits",
        Redact,
        Reason::LegalBasis,
    ),
    row(
        "§10 stop third-party provision overrides consent to it",
        STRANGER,
        "no-third-party",
        "marketing.newsletters",
        Block,
        Reason::ThirdPartyStopped,
    ),
    row(
        "§10 stop third-party provision leaves the operator alone",
        OPERATOR,
        "no-third-party",
        "marketing.newsletters",
        Redact,
        Reason::ConsentGranted,
    ),
    row(
        "§10 withdrawn consent wins over a stale grant",
        OPERATOR,
        "withdrew",
        "marketing.newsletters",
        Block,
        Reason::ConsentWithdrawn,
    ),
    row(
        "§10 an objection stops a notice-based purpose",
        OPERATOR,
        "withdrew",
        "service.improvement",
        Block,
        Reason::Objected,
    ),
    row(
        "§10 an objection cannot stop a contract",
        OPERATOR,
        "withdrew",
        "business.partner_operations",
        Redact,
        Reason::ContractBasis,
    ),
    row(
        "§10 withdrawn consent to provision refuses third parties",
        STRANGER,
        "withdrew",
        "marketing.analysis",
        Block,
        Reason::ThirdPartyConsentMissing,
    ),
    // §11 changes (the policy-version cases with a second version are below).
    row(
        "§11 consent under a version this filter does not know is not counted",
        OPERATOR,
        "later",
        "surveys",
        Block,
        Reason::ConsentVersionUnknown,
    ),
];

#[test]
fn every_clause_of_the_seed_policy_decides_as_written() {
    let c = config();
    let mut failures = Vec::new();
    for r in TABLE {
        let d = ask(
            &c,
            &Ask {
                gpc: r.gpc,
                ..asking(r.caller, r.user, r.purpose)
            },
        );
        if (d.outcome, d.reason) != (r.outcome, r.reason) {
            failures.push(format!(
                "{}: expected {:?}/{}, got {:?}/{}",
                r.clause,
                r.outcome,
                r.reason.as_str(),
                d.outcome,
                d.reason.as_str()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_clause_and_every_party_kind() {
    for clause in [
        "§3(1)", "§3(2)", "§3(3)", "§3(4)", "§3(5)", "§4", "§7", "§8", "§10", "§11",
    ] {
        assert!(
            TABLE.iter().any(|r| r.clause.starts_with(clause)),
            "{clause}"
        );
    }
    for caller in [OPERATOR, PROCESSOR, CITY, AEON, STRANGER] {
        assert!(TABLE.iter().any(|r| r.caller == caller));
    }
}

fn redacted_with_reason(c: &CompiledConfig, d: &Decision, category: &str) -> Option<Reason> {
    let idx = c.policy.category_idx(category)?;
    d.redactions().find(|r| r.category == idx).map(|r| r.reason)
}

#[test]
fn s3_categories_follow_the_purpose_and_location_needs_an_explicit_grant() {
    let c = config();
    let base = asking(OPERATOR, "granted", "security.crime_prevention");
    let d = ask(&c, &base);
    assert_eq!(redacted_with_reason(&c, &d, "location.gps"), None);
    assert_eq!(redacted_with_reason(&c, &d, "location.wifi"), None);
    assert_eq!(
        redacted_with_reason(&c, &d, "location.bluetooth"),
        Some(Reason::ExplicitGrantMissing)
    );
    assert_eq!(
        redacted_with_reason(&c, &d, "email"),
        Some(Reason::CategoryNotInPurpose)
    );
    // §3(1)イ: a contract purpose touches only its listed categories.
    let d = ask(
        &c,
        &Ask {
            purpose: "business.partner_operations",
            ..base
        },
    );
    assert_eq!(
        redacted_with_reason(&c, &d, "payment.amount"),
        Some(Reason::CategoryNotInPurpose)
    );
    assert_eq!(redacted_with_reason(&c, &d, "email"), None);
}

#[test]
fn s7_a_third_party_gets_only_what_consent_to_provision_covers() {
    let c = config();
    let d = ask(&c, &asking(STRANGER, "granted", "service.improvement"));
    assert_eq!((d.outcome, d.reason), (Redact, Reason::NoticeBasis));
    assert_eq!(
        redacted_with_reason(&c, &d, "device_id"),
        Some(Reason::NotForThirdParties)
    );
    assert_eq!(
        redacted_with_reason(&c, &d, "location.gps"),
        Some(Reason::NotForThirdParties)
    );
    assert!(d.facts.caller.is_third_party());
    assert_eq!(d.facts.provision_grant_version, Some(1));
}

#[test]
fn s8_joint_use_passes_location_only_with_an_explicit_grant() {
    let c = config();
    let d = ask(&c, &asking(CITY, "granted", "joint.ebpm"));
    assert_eq!(redacted_with_reason(&c, &d, "email"), None);
    assert_eq!(
        redacted_with_reason(&c, &d, "location.gps"),
        Some(Reason::ExplicitGrantMissing)
    );
    assert_eq!(d.facts.caller.party, c.policy.party_idx("saitama-city"));
}

fn policy_v2(changed: &str) -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_str(consent_core::DEFAULT_POLICY_JSON).unwrap();
    doc["version"] = serde_json::json!(2);
    for p in doc["purposes"].as_array_mut().unwrap() {
        if p["id"] == changed {
            p["changed_in"] = serde_json::json!(2);
        }
    }
    doc
}

#[test]
fn s11_a_material_change_needs_fresh_consent_for_that_purpose_only() {
    let c = config_with(Some(policy_v2("marketing.newsletters")), records());
    let base = asking(OPERATOR, "granted", "marketing.newsletters");
    let d = ask(&c, &base);
    assert_eq!((d.outcome, d.reason), (Block, Reason::ReconsentRequired));
    assert_eq!(
        (d.facts.grant_version, d.facts.changed_in),
        (Some(1), Some(2))
    );
    // Unchanged purposes keep their version-1 consents.
    for purpose in [
        "surveys",
        "marketing.campaigns",
        "marketing.third_party_offers",
    ] {
        assert_eq!(
            ask(&c, &Ask { purpose, ..base }).reason,
            Reason::ConsentGranted,
            "{purpose}"
        );
    }
    // Explicit location grants under unchanged purposes survive too.
    let d = ask(
        &c,
        &Ask {
            purpose: "service.improvement",
            ..base
        },
    );
    assert_eq!(redacted_with_reason(&c, &d, "location.gps"), None);
    // Consent under the new version counts.
    let fresh = serde_json::json!({"records": [{"subject": "granted", "grants": {"marketing.newsletters": {"policy_version": 2}}}]});
    let c2 = config_with(Some(policy_v2("marketing.newsletters")), fresh);
    assert_eq!(ask(&c2, &base).reason, Reason::ConsentGranted);
}

#[test]
fn s11_a_new_version_neither_revives_withdrawals_nor_forgets_a_pending_reconsent() {
    // Version 3 changes nothing further: consent from before the version-2 change still
    // does not count, and a withdrawal still holds.
    let mut v3 = policy_v2("marketing.newsletters");
    v3["version"] = serde_json::json!(3);
    let c = config_with(Some(v3), records());
    let base = asking(OPERATOR, "granted", "marketing.newsletters");
    let reason = |a: Ask<'_>| ask(&c, &a).reason;
    assert_eq!(reason(base), Reason::ReconsentRequired);
    let withdrew = Ask {
        user: "withdrew",
        ..base
    };
    assert_eq!(reason(withdrew), Reason::ConsentWithdrawn);
    let surveys = Ask {
        purpose: "surveys",
        ..base
    };
    assert_eq!(reason(surveys), Reason::ConsentGranted);
}

#[test]
fn s11_a_changed_provision_consent_needs_renewal_before_third_parties_get_data() {
    let c = config_with(Some(policy_v2("third_party.provision")), records());
    let d = ask(
        &c,
        &asking(STRANGER, "granted", "marketing.third_party_offers"),
    );
    assert_eq!((d.outcome, d.reason), (Block, Reason::ReconsentRequired));
}

#[test]
fn route_rules_accept_only_their_purposes() {
    let c = config();
    let base = Ask {
        path: "/stats/wards",
        ..asking(CITY, "granted", "joint.ebpm")
    };
    let d = ask(&c, &base);
    assert_eq!(d.reason, Reason::NoticeBasis);
    assert!(d.facts.rule.is_some());
    let d = ask(
        &c,
        &Ask {
            caller: OPERATOR,
            purpose: "support.inquiries",
            ..base
        },
    );
    assert_eq!((d.outcome, d.reason), (Block, Reason::PurposeNotOnRoute));
}

/// The decision with the snapshot stale and the failure mode `strip`.
fn decide_stale_stripping(c: &CompiledConfig, view: &RequestView<'_>) -> Decision {
    consent_core::decide::decide_without_snapshot(
        view,
        &c.policy,
        &c.enforcement(view),
        Reason::SnapshotStale,
        consent_core::live::FailureMode::Strip,
    )
}

#[test]
fn without_a_snapshot_the_strip_mode_still_honours_gpc_and_provision_rules() {
    let c = compile_config(
        br#"{"snapshot": {"source": "shared", "cluster": "consent_source", "failure_mode": "strip"},
             "gpc": {"purposes": ["marketing.third_party_offers"]}}"#,
    )
    .unwrap();
    let facts = CallerFacts {
        uri_san: Some(STRANGER),
        ..CallerFacts::default()
    };
    let headers: [(&str, &[u8]); 1] = [("sec-gpc", b"1")];
    let context = c.context(&facts, &RouteFacts::default(), headers);
    let view = RequestView {
        user: HeaderValue::One("granted"),
        purpose: HeaderValue::One("marketing.third_party_offers"),
        context,
    };
    let d = decide_stale_stripping(&c, &view);
    assert_eq!((d.outcome, d.reason), (Block, Reason::GpcObjection));
    // Without the signal the failure mode applies (strip).
    let context = c.context(&facts, &RouteFacts::default(), []);
    let view = RequestView { context, ..view };
    let d = decide_stale_stripping(&c, &view);
    assert_eq!((d.outcome, d.reason), (Redact, Reason::SnapshotStale));
}

const ABROAD: &str = "spiffe://minna-app.example/ns/overseas-support/sa/helpdesk";

/// The shipped policy with a processor abroad (the operator is in JP).
fn policy_with_a_processor_abroad() -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_str(consent_core::DEFAULT_POLICY_JSON).unwrap();
    doc["parties"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "overseas-support", "kind": "processor", "country": "SG",
            "label": {"ja": "海外サポート", "en": "Overseas support (processor abroad)"},
            "identities": ["spiffe://minna-app.example/ns/overseas-support/*"]
        }));
    doc
}

#[test]
fn s6_a_processor_abroad_gets_personal_data_only_with_consent_to_outsourcing_abroad() {
    let mut consents = records();
    consents["records"].as_array_mut().unwrap().push(
        serde_json::json!({"subject": "abroad-ok", "grants": {
            "outsourcing.abroad": {"policy_version": 1}
        }}),
    );
    consents["records"].as_array_mut().unwrap().push(
        serde_json::json!({"subject": "abroad-withdrawn", "withdrawn": ["outsourcing.abroad"],
            "grants": {"outsourcing.abroad": {"policy_version": 1}}}),
    );
    let c = config_with(Some(policy_with_a_processor_abroad()), consents);
    let asking = |caller, user, purpose| {
        ask(
            &c,
            &Ask {
                caller,
                user,
                purpose,
                gpc: false,
                path: "/",
            },
        )
    };
    let outcome = |d: Decision| (d.outcome, d.reason);
    // Without consent to outsourcing abroad: blocked, whatever the purpose's basis.
    for user in ["granted", "nobody", "abroad-withdrawn"] {
        assert_eq!(
            outcome(asking(ABROAD, user, "support.inquiries")),
            (Outcome::Block, Reason::ForeignOutsourcingConsentMissing),
            "{user}"
        );
    }
    // With it, the purpose decides as for any processor.
    assert_eq!(
        outcome(asking(ABROAD, "abroad-ok", "support.inquiries")).1,
        Reason::NoticeBasis
    );
    // The processor at home needs no such consent; legally required use continues.
    assert_eq!(
        outcome(asking(PROCESSOR, "nobody", "support.inquiries")).1,
        Reason::NoticeBasis
    );
    assert_eq!(
        outcome(asking(ABROAD, "nobody", "government.benefits")).1,
        Reason::LegalBasis
    );
    // Without a snapshot the consent cannot be known: blocked even in the strip mode.
    let facts = CallerFacts {
        uri_san: Some(ABROAD),
        ..CallerFacts::default()
    };
    let view = RequestView {
        user: HeaderValue::One("abroad-ok"),
        purpose: HeaderValue::One("support.inquiries"),
        context: c.context(&facts, &RouteFacts::default(), []),
    };
    let d = consent_core::decide::decide_without_snapshot(
        &view,
        &c.policy,
        &c.enforcement(&view),
        Reason::SnapshotStale,
        consent_core::live::FailureMode::Strip,
    );
    assert_eq!(
        outcome(d),
        (Outcome::Block, Reason::ForeignOutsourcingConsentMissing)
    );
}
