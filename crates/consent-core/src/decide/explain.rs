//! Explainable decisions: a decision and the facts it rests on, with ids and labels
//! resolved against the policy, ready to serialise for decision logs and the explain tool.
//! Never holds a personal-data value or a user ID.

use serde::Serialize;

use crate::decide::decision::Decision;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::routes::RouteTable;

/// Who received the data, as explained.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartyFact<'a> {
    /// Party id, or `None` for a caller no party claims.
    pub id: Option<&'a str>,
    /// `operator`, `processor`, `joint_user` or `third_party`.
    pub kind: &'static str,
    /// How the caller was identified (`uri_san`, `cluster`, `unidentified`, `unknown`, ...).
    pub via: &'static str,
}

/// The purpose, as explained.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PurposeFact<'a> {
    /// Purpose id.
    pub id: &'a str,
    /// Legal basis.
    pub basis: &'static str,
    /// The policy's clause, e.g. `§3(1)ア②`.
    pub section: Option<&'a str>,
    /// Version in which its terms last changed materially (§11).
    pub changed_in: u32,
    /// Whether it is a joint-use purpose (§8).
    pub joint_use: bool,
}

/// The person's consent state as far as this decision read it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConsentFact {
    /// The snapshot holds a record for the person.
    pub record: bool,
    /// Policy version of the person's grant for the purpose.
    pub grant_version: Option<u32>,
    /// Policy version of the person's consent to third-party provision.
    pub provision_grant_version: Option<u32>,
    /// Stop-use request (§10).
    pub stop_use: bool,
    /// Stop third-party provision request (§10).
    pub stop_third_party: bool,
    /// Withdrawal of, or objection to, the purpose (§10).
    pub withdrawn: bool,
}

/// One removed category.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RedactionFact<'a> {
    /// Category id.
    pub category: &'a str,
    /// Why it is removed.
    pub reason: &'static str,
}

/// A decision with everything it rests on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Explanation<'a> {
    /// `allow`, `redact` or `block`.
    pub outcome: &'static str,
    /// The reason code.
    pub reason: &'static str,
    /// The reason in words.
    pub message: &'static str,
    /// The purpose, when the policy knows it.
    pub purpose: Option<PurposeFact<'a>>,
    /// Who receives the data.
    pub party: PartyFact<'a>,
    /// The route rule applied.
    pub rule: &'a str,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
    /// The consent state read.
    pub consent: ConsentFact,
    /// Policy id and version.
    pub policy: &'a str,
    /// Policy version enforced.
    pub policy_version: u32,
    /// Categories removed, with reasons.
    pub redactions: Vec<RedactionFact<'a>>,
}

/// Explains `decision` against the policy and route table it was made with.
pub fn explain<'a>(
    policy: &'a CompiledPolicy,
    routes: &'a RouteTable,
    decision: &Decision,
) -> Explanation<'a> {
    let facts = &decision.facts;
    let purpose = decision
        .purpose
        .and_then(|p| policy.purpose(p))
        .map(|p| PurposeFact {
            id: &p.id,
            basis: p.basis.as_str(),
            section: p.section.as_deref(),
            changed_in: p.changed_in,
            joint_use: p.joint_use,
        });
    Explanation {
        outcome: decision.outcome.as_str(),
        reason: decision.reason.as_str(),
        message: decision.reason.message(),
        purpose,
        party: PartyFact {
            id: facts
                .caller
                .party
                .and_then(|p| policy.party(p))
                .map(|p| p.id.as_str()),
            kind: facts.caller.kind.as_str(),
            via: facts.caller.source.as_str(),
        },
        rule: &routes.rule(facts.rule).name,
        gpc: facts.gpc,
        consent: ConsentFact {
            record: facts.has_record,
            grant_version: facts.grant_version,
            provision_grant_version: facts.provision_grant_version,
            stop_use: facts.stop_use,
            stop_third_party: facts.stop_third_party,
            withdrawn: facts.withdrawn,
        },
        policy: &policy.id,
        policy_version: policy.version,
        redactions: decision
            .redactions()
            .map(|r| RedactionFact {
                category: policy.category_id(r.category),
                reason: r.reason.as_str(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile_config;
    use crate::decide::request::RequestView;
    use crate::policy::party::CallerFacts;
    use crate::policy::routes::RouteFacts;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn an_explanation_names_purpose_party_rule_versions_and_redactions_but_no_person() {
        let c = compile_config(
            br#"{"consents": {"records": [{"subject": "u-secret", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let headers: [(&str, &[u8]); 2] = [
            ("x-user-id", b"u-secret"),
            ("x-data-purpose", b"marketing.newsletters"),
        ];
        let caller = CallerFacts {
            uri_san: Some("spiffe://minna-app.example/ns/tsunagu/sa/api"),
            ..CallerFacts::default()
        };
        let context = c.context(&caller, &RouteFacts::default(), headers);
        let view =
            RequestView::from_headers("x-user-id", "x-data-purpose", headers).with_context(context);
        let d = c.decide(&view);
        let e = explain(&c.policy, &c.routes, &d);
        assert_eq!((e.outcome, e.reason), ("redact", "consent_granted"));
        let purpose = e.purpose.clone().unwrap();
        assert_eq!(
            (purpose.id, purpose.basis, purpose.section),
            ("marketing.newsletters", "consent", Some("§3(1)ア②"))
        );
        assert_eq!(
            e.party,
            PartyFact {
                id: Some("tsunagu"),
                kind: "operator",
                via: "uri_san"
            }
        );
        assert_eq!(e.rule, "default");
        assert_eq!(e.consent.grant_version, Some(1));
        assert!(e.redactions.contains(&RedactionFact {
            category: "location.gps",
            reason: "category_not_in_purpose"
        }));
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("u-secret"), "{json}");
    }
}
