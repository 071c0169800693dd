//! The one decision function: request view + policy + consent record in, decision out.

use serde::Serialize;

use crate::decide::reason::Reason;
use crate::decide::request::{HeaderValue, RequestView};
use crate::live::records::{ConsentRecord, Grant};
use crate::policy::categories::{CategoryIdx, CategorySet};
use crate::policy::compiled::{
    Basis, CompiledPolicy, PartyKind, Purpose, PurposeIdx, WithoutConsent,
};
use crate::policy::gpc::GpcSettings;
use crate::policy::party::Caller;
use crate::policy::routes::{RouteRule, RuleIdx};

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Pass unchanged.
    Allow,
    /// Pass with the categories in [`Decision::redacted`] removed.
    Redact,
    /// Answer locally with the block status; nothing reaches the backend.
    Block,
}

impl Outcome {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Redact => "redact",
            Outcome::Block => "block",
        }
    }
}

/// One removed category and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redaction {
    /// The category removed.
    pub category: CategoryIdx,
    /// Why it was removed.
    pub reason: Reason,
}

/// The facts a decision rests on, for logs and the explain tool. Fixed size: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// Who receives the data and how that was established.
    pub caller: Caller,
    /// The route rule applied (`None`: the default rule).
    pub rule: Option<RuleIdx>,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
    /// The purpose's legal basis, once the purpose is known.
    pub basis: Option<Basis>,
    /// Policy version under which the person granted the purpose, if they did.
    pub grant_version: Option<u32>,
    /// Policy version in which the purpose's terms last changed materially.
    pub changed_in: Option<u32>,
    /// Policy version of the person's consent to third-party provision, if any.
    pub provision_grant_version: Option<u32>,
    /// The snapshot holds a record for the person.
    pub has_record: bool,
    /// The person asked to stop use (§10).
    pub stop_use: bool,
    /// The person asked to stop third-party provision (§10).
    pub stop_third_party: bool,
    /// The person withdrew consent to, or objected to, this purpose (§10).
    pub withdrawn: bool,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, redact or block.
    pub outcome: Outcome,
    /// The main reason: the basis that allowed it, or what blocked or stripped it.
    pub reason: Reason,
    /// The purpose, when it is one the policy knows.
    pub purpose: Option<PurposeIdx>,
    /// Categories that must not pass (empty unless the outcome is `Redact`).
    pub redacted: CategorySet,
    /// What the decision rests on.
    pub facts: Facts,
    /// Categories removed because consent for the purpose is missing or outdated.
    stripped_for: Option<Reason>,
    /// Categories removed because they need an explicit grant that is missing.
    not_granted: CategorySet,
    /// Categories removed because the person's consent to provision does not cover them.
    not_for_third_parties: CategorySet,
}

impl Decision {
    /// A block with `reason`.
    pub fn block(reason: Reason, purpose: Option<PurposeIdx>) -> Self {
        Decision {
            outcome: Outcome::Block,
            reason,
            purpose,
            redacted: CategorySet::EMPTY,
            facts: Facts::default(),
            stripped_for: None,
            not_granted: CategorySet::EMPTY,
            not_for_third_parties: CategorySet::EMPTY,
        }
    }

    /// A pass with every category of the policy removed, for `reason`.
    pub fn strip_all(policy: &CompiledPolicy, reason: Reason, purpose: PurposeIdx) -> Self {
        Decision {
            outcome: Outcome::Redact,
            redacted: policy.all_categories,
            stripped_for: Some(reason),
            ..Decision::block(reason, Some(purpose))
        }
    }

    /// The same decision resting on `facts`.
    pub fn with_facts(mut self, facts: Facts) -> Self {
        self.facts = facts;
        self
    }

    /// Whether anything must be removed from the traffic.
    pub fn redacts(&self) -> bool {
        self.outcome == Outcome::Redact && !self.redacted.is_empty()
    }

    /// Each removed category with its reason, in category order.
    pub fn redactions(&self) -> impl Iterator<Item = Redaction> + '_ {
        self.redacted.iter().map(move |category| Redaction {
            category,
            reason: self.redaction_reason(category),
        })
    }

    fn redaction_reason(&self, category: CategoryIdx) -> Reason {
        if let Some(reason) = self.stripped_for {
            reason
        } else if self.not_granted.contains(category) {
            Reason::ExplicitGrantMissing
        } else if self.not_for_third_parties.contains(category) {
            Reason::NotForThirdParties
        } else {
            Reason::CategoryNotInPurpose
        }
    }
}

/// What the configuration adds to the policy for one request: the route rule that applies
/// and how the Global Privacy Control signal is honoured.
#[derive(Debug, Clone, Copy)]
pub struct Enforcement<'a> {
    /// The route rule (accepted purposes, whether a user ID is required).
    pub rule: &'a RouteRule,
    /// GPC handling.
    pub gpc: &'a GpcSettings,
}

/// Decides one request. Pure: the same inputs always give the same decision.
///
/// `record` is the consent record of the request's user, looked up by the caller
/// (`None` when the snapshot has none, which counts as no consent at all). The request
/// view carries the resolved caller, the GPC signal and the route rule. When in doubt
/// (a malformed, repeated or unknown header, an unknown caller) the decision is the
/// stricter one.
pub fn decide(
    request: &RequestView<'_>,
    policy: &CompiledPolicy,
    record: Option<&ConsentRecord>,
    enforcement: &Enforcement<'_>,
) -> Decision {
    match identify(request, policy, enforcement) {
        Ok((idx, purpose, has_user, facts)) => decide_for_purpose(
            policy,
            idx,
            purpose,
            record.filter(|_| has_user),
            enforcement.gpc,
            facts,
        ),
        Err(blocked) => blocked,
    }
}

/// Decides a request whose consent record cannot be known (no snapshot yet, or one older
/// than allowed): the identity headers, route and party are checked as usual, then the
/// request is blocked with `reason`, or, when `strip` is set, passed with every category
/// removed.
pub fn decide_without_snapshot(
    request: &RequestView<'_>,
    policy: &CompiledPolicy,
    enforcement: &Enforcement<'_>,
    reason: Reason,
    strip: bool,
) -> Decision {
    match identify(request, policy, enforcement) {
        Ok((idx, purpose, _, facts)) => {
            if let Some(refused) = record_free_block(policy, idx, purpose, enforcement.gpc, &facts)
            {
                return Decision::block(refused, Some(idx)).with_facts(facts);
            }
            if strip {
                Decision::strip_all(policy, reason, idx).with_facts(facts)
            } else {
                Decision::block(reason, Some(idx)).with_facts(facts)
            }
        }
        Err(blocked) => blocked,
    }
}

/// The refusals that need no consent record: a GPC objection, and provision to a third
/// party when the policy has no consent to provision. Without a snapshot these still hold,
/// so the `strip` failure mode never passes such a request.
fn record_free_block(
    policy: &CompiledPolicy,
    idx: PurposeIdx,
    purpose: &Purpose,
    gpc: &GpcSettings,
    facts: &Facts,
) -> Option<Reason> {
    let gpc_signal = facts.gpc && gpc.enabled;
    if gpc_signal && gpc.objects_to(idx) {
        return Some(Reason::GpcObjection);
    }
    if facts.caller.is_third_party() && purpose.basis != Basis::Legal {
        if gpc_signal && gpc.third_party_provision {
            return Some(Reason::GpcObjection);
        }
        if policy.third_party_provision().is_none() {
            return Some(Reason::ThirdPartyConsentMissing);
        }
    }
    None
}

/// Checks what needs no consent record: the purpose (use beyond purpose, §4), the route,
/// the user header and who receives the data (joint use, §8). Returns the purpose,
/// whether a user was named and the facts so far, or the blocking decision.
fn identify<'p>(
    request: &RequestView<'_>,
    policy: &'p CompiledPolicy,
    enforcement: &Enforcement<'_>,
) -> Result<(PurposeIdx, &'p Purpose, bool, Facts), Decision> {
    let mut facts = Facts {
        caller: request.context.caller,
        rule: request.context.rule,
        gpc: request.context.gpc,
        ..Facts::default()
    };
    let block = |reason, purpose, facts| Err(Decision::block(reason, purpose).with_facts(facts));
    let purpose_id = match request.purpose {
        HeaderValue::One(id) => id,
        HeaderValue::Absent => return block(Reason::PurposeMissing, None, facts),
        HeaderValue::Repeated => return block(Reason::PurposeAmbiguous, None, facts),
        HeaderValue::Invalid => return block(Reason::PurposeInvalid, None, facts),
    };
    let Some(idx) = policy.purpose_idx(purpose_id) else {
        return block(Reason::PurposeUnknown, None, facts);
    };
    let Some(purpose) = policy.purpose(idx) else {
        return block(Reason::InternalError, None, facts);
    };
    facts.basis = Some(purpose.basis);
    facts.changed_in = Some(purpose.changed_in);
    if !enforcement.rule.accepts(idx) {
        return block(Reason::PurposeNotOnRoute, Some(idx), facts);
    }
    let has_user = match request.user {
        HeaderValue::One(_) => true,
        HeaderValue::Absent if enforcement.rule.require_user => {
            return block(Reason::UserMissing, Some(idx), facts)
        }
        HeaderValue::Absent => false,
        HeaderValue::Repeated => return block(Reason::UserAmbiguous, Some(idx), facts),
        HeaderValue::Invalid => return block(Reason::UserInvalid, Some(idx), facts),
    };
    match facts.caller.kind {
        PartyKind::JointUser if !purpose.joint_use => block(Reason::JointUseOnly, Some(idx), facts),
        PartyKind::ThirdParty if purpose.joint_use => {
            block(Reason::PartyNotJointUser, Some(idx), facts)
        }
        _ => Ok((idx, purpose, has_user, facts)),
    }
}

/// Whether a grant counts under the loaded policy (§11), and if not, why.
fn grant_status(
    policy: &CompiledPolicy,
    changed_in: u32,
    grant: Option<&Grant>,
) -> Result<(), Reason> {
    match grant {
        None => Err(Reason::ConsentMissing),
        Some(g) if g.policy_version > policy.version => Err(Reason::ConsentVersionUnknown),
        Some(g) if g.policy_version < changed_in => Err(Reason::ReconsentRequired),
        Some(_) => Ok(()),
    }
}

fn decide_for_purpose(
    policy: &CompiledPolicy,
    idx: PurposeIdx,
    purpose: &Purpose,
    record: Option<&ConsentRecord>,
    gpc: &GpcSettings,
    mut facts: Facts,
) -> Decision {
    let grant = record.and_then(|r| r.grant(idx));
    facts.has_record = record.is_some();
    facts.stop_use = record.is_some_and(|r| r.stop_use);
    facts.stop_third_party = record.is_some_and(|r| r.stop_third_party);
    facts.withdrawn = record.is_some_and(|r| r.has_withdrawn(idx));
    facts.grant_version = grant.map(|g| g.policy_version);
    let block = |reason, facts| Decision::block(reason, Some(idx)).with_facts(facts);
    let legal = purpose.basis == Basis::Legal;
    // Rights (§10): stop use leaves only legally required use; withdrawal and objection
    // end one purpose.
    if facts.stop_use && !legal {
        return block(Reason::UseStopped, facts);
    }
    if facts.withdrawn {
        match purpose.basis {
            Basis::Consent => return block(Reason::ConsentWithdrawn, facts),
            Basis::Notice => return block(Reason::Objected, facts),
            Basis::Contract | Basis::Legal => {}
        }
    }
    let gpc_signal = facts.gpc && gpc.enabled;
    if gpc_signal && gpc.objects_to(idx) {
        return block(Reason::GpcObjection, facts);
    }
    // Provision to third parties (§7): only with consent, unless the law allows it.
    let mut not_for_third_parties = CategorySet::EMPTY;
    if facts.caller.is_third_party() && !legal {
        if facts.stop_third_party {
            return block(Reason::ThirdPartyStopped, facts);
        }
        if gpc_signal && gpc.third_party_provision {
            return block(Reason::GpcObjection, facts);
        }
        let Some((provision_idx, provision)) = policy.third_party_provision() else {
            return block(Reason::ThirdPartyConsentMissing, facts);
        };
        let provision_grant = record.and_then(|r| r.grant(provision_idx));
        facts.provision_grant_version = provision_grant.map(|g| g.policy_version);
        let withdrawn = record.is_some_and(|r| r.has_withdrawn(provision_idx));
        match grant_status(policy, provision.changed_in, provision_grant) {
            Ok(()) if !withdrawn => {}
            Err(Reason::ReconsentRequired) => return block(Reason::ReconsentRequired, facts),
            Err(Reason::ConsentVersionUnknown) => {
                return block(Reason::ConsentVersionUnknown, facts)
            }
            _ => return block(Reason::ThirdPartyConsentMissing, facts),
        }
        not_for_third_parties = policy.all_categories.difference(provision.categories);
    }
    // Consent to the purpose under its current terms (§3, §11).
    let current_grant = grant.filter(|g| grant_status(policy, purpose.changed_in, Some(g)).is_ok());
    if purpose.basis == Basis::Consent {
        if let Err(reason) = grant_status(policy, purpose.changed_in, grant) {
            return match purpose.without_consent {
                WithoutConsent::Block => block(reason, facts),
                WithoutConsent::Strip => Decision::strip_all(policy, reason, idx).with_facts(facts),
            };
        }
    }
    let granted_explicit = current_grant.map(|g| g.explicit).unwrap_or_default();
    let needs_grant = purpose.categories.intersection(policy.explicit_grant);
    let not_granted = needs_grant.difference(granted_explicit);
    let not_in_purpose = policy.all_categories.difference(purpose.categories);
    let redacted = not_in_purpose
        .union(not_granted)
        .union(not_for_third_parties);
    let reason = match purpose.basis {
        Basis::Consent => Reason::ConsentGranted,
        Basis::Notice => Reason::NoticeBasis,
        Basis::Contract => Reason::ContractBasis,
        Basis::Legal => Reason::LegalBasis,
    };
    Decision {
        outcome: if redacted.is_empty() {
            Outcome::Allow
        } else {
            Outcome::Redact
        },
        reason,
        purpose: Some(idx),
        redacted,
        facts,
        stripped_for: None,
        not_granted,
        not_for_third_parties: not_for_third_parties.difference(not_in_purpose.union(not_granted)),
    }
}

#[cfg(test)]
mod tests {
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
            false,
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
            true,
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
                true
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
}
