//! The one decision function: request view + policy + consent record in, decision out.

use serde::Serialize;

use crate::categories::{CategoryIdx, CategorySet};
use crate::policy::{Basis, CompiledPolicy, Purpose, PurposeIdx, WithoutConsent};
use crate::reason::Reason;
use crate::request::{HeaderValue, RequestView};
use crate::snapshot::ConsentRecord;

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Categories removed because consent for the purpose is missing or outdated.
    stripped_for: Option<Reason>,
    /// Categories removed because they need an explicit grant that is missing.
    not_granted: CategorySet,
}

impl Decision {
    /// A block with `reason`.
    pub fn block(reason: Reason, purpose: Option<PurposeIdx>) -> Self {
        Decision {
            outcome: Outcome::Block,
            reason,
            purpose,
            redacted: CategorySet::EMPTY,
            stripped_for: None,
            not_granted: CategorySet::EMPTY,
        }
    }

    /// A pass with every category of the policy removed, for `reason`.
    pub fn strip_all(policy: &CompiledPolicy, reason: Reason, purpose: PurposeIdx) -> Self {
        Decision {
            outcome: Outcome::Redact,
            reason,
            purpose: Some(purpose),
            redacted: policy.all_categories,
            stripped_for: Some(reason),
            not_granted: CategorySet::EMPTY,
        }
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
        } else {
            Reason::CategoryNotInPurpose
        }
    }
}

/// Decides one request. Pure: the same inputs always give the same decision.
///
/// `record` is the consent record of the request's user, looked up by the caller
/// (`None` when the snapshot has none, which counts as no consent at all).
/// `require_user` says whether a request without a user ID is blocked. When in doubt
/// (a malformed, repeated or unknown header) the decision blocks.
pub fn decide(
    request: &RequestView<'_>,
    policy: &CompiledPolicy,
    record: Option<&ConsentRecord>,
    require_user: bool,
) -> Decision {
    match identify(request, policy, require_user) {
        Ok((idx, purpose, has_user)) => {
            decide_for_purpose(policy, idx, purpose, record.filter(|_| has_user))
        }
        Err(blocked) => blocked,
    }
}

/// Decides a request whose consent record cannot be known (no snapshot yet, or one older
/// than allowed): the identity headers are checked as usual, then the request is blocked
/// with `reason`, or, when `strip` is set, passed with every category removed.
pub fn decide_without_snapshot(
    request: &RequestView<'_>,
    policy: &CompiledPolicy,
    require_user: bool,
    reason: Reason,
    strip: bool,
) -> Decision {
    match identify(request, policy, require_user) {
        Ok((idx, _, _)) if strip => Decision::strip_all(policy, reason, idx),
        Ok((idx, _, _)) => Decision::block(reason, Some(idx)),
        Err(blocked) => blocked,
    }
}

/// Checks the identity headers: the purpose (use beyond purpose, §4) and the user. Returns
/// the purpose and whether a user was named, or the blocking decision.
fn identify<'p>(
    request: &RequestView<'_>,
    policy: &'p CompiledPolicy,
    require_user: bool,
) -> Result<(PurposeIdx, &'p Purpose, bool), Decision> {
    let purpose_id = match request.purpose {
        HeaderValue::One(id) => id,
        HeaderValue::Absent => return Err(Decision::block(Reason::PurposeMissing, None)),
        HeaderValue::Repeated => return Err(Decision::block(Reason::PurposeAmbiguous, None)),
        HeaderValue::Invalid => return Err(Decision::block(Reason::PurposeInvalid, None)),
    };
    let Some(idx) = policy.purpose_idx(purpose_id) else {
        return Err(Decision::block(Reason::PurposeUnknown, None));
    };
    let Some(purpose) = policy.purpose(idx) else {
        return Err(Decision::block(Reason::InternalError, None));
    };
    match request.user {
        HeaderValue::One(_) => Ok((idx, purpose, true)),
        HeaderValue::Absent if require_user => Err(Decision::block(Reason::UserMissing, Some(idx))),
        HeaderValue::Absent => Ok((idx, purpose, false)),
        HeaderValue::Repeated => Err(Decision::block(Reason::UserAmbiguous, Some(idx))),
        HeaderValue::Invalid => Err(Decision::block(Reason::UserInvalid, Some(idx))),
    }
}

fn decide_for_purpose(
    policy: &CompiledPolicy,
    idx: PurposeIdx,
    purpose: &Purpose,
    record: Option<&ConsentRecord>,
) -> Decision {
    let stop_use = record.is_some_and(|r| r.stop_use);
    if stop_use && purpose.basis != Basis::Legal {
        return Decision::block(Reason::UseStopped, Some(idx));
    }
    // A grant counts only if it was given under the purpose's current terms (§11).
    let grant = record.and_then(|r| r.grant(idx));
    let current_grant = grant.filter(|g| g.policy_version >= purpose.changed_in);
    if purpose.basis == Basis::Consent && current_grant.is_none() {
        let reason = if grant.is_some() {
            Reason::ReconsentRequired
        } else {
            Reason::ConsentMissing
        };
        return match purpose.without_consent {
            WithoutConsent::Block => Decision::block(reason, Some(idx)),
            WithoutConsent::Strip => Decision::strip_all(policy, reason, idx),
        };
    }
    let granted_explicit = current_grant.map(|g| g.explicit).unwrap_or_default();
    let needs_grant = purpose.categories.intersection(policy.explicit_grant);
    let not_granted = needs_grant.difference(granted_explicit);
    let not_in_purpose = policy.all_categories.difference(purpose.categories);
    let redacted = not_in_purpose.union(not_granted);
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
        stripped_for: None,
        not_granted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{ConsentIndex, SnapshotDoc};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::default_policy().unwrap()
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
        };
        let record = user.and_then(|u| idx.lookup(u));
        decide(&view, p, record, true)
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
        };
        let d = decide(&view, &p, None, false);
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
        };
        assert_eq!(decide(&view, &p, None, true).reason, Reason::UserAmbiguous);
        let view = RequestView {
            user: HeaderValue::One("alice"),
            purpose: HeaderValue::Repeated,
        };
        assert_eq!(
            decide(&view, &p, None, true).reason,
            Reason::PurposeAmbiguous
        );
        let view = RequestView {
            user: HeaderValue::Invalid,
            purpose: HeaderValue::One("surveys"),
        };
        assert_eq!(decide(&view, &p, None, true).reason, Reason::UserInvalid);
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
        let mut doc: crate::policy::PolicyDoc =
            serde_json::from_str(crate::policy::DEFAULT_POLICY_JSON).unwrap();
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
        };
        let d = decide_without_snapshot(&view, &p, true, Reason::SnapshotStale, false);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Block, Reason::SnapshotStale)
        );
        let d = decide_without_snapshot(&view, &p, true, Reason::SnapshotUnavailable, true);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Redact, Reason::SnapshotUnavailable)
        );
        assert_eq!(d.redacted, p.all_categories);
        let bad = RequestView {
            user: HeaderValue::One("u"),
            purpose: HeaderValue::One("nope"),
        };
        assert_eq!(
            decide_without_snapshot(&bad, &p, true, Reason::SnapshotStale, true).reason,
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
