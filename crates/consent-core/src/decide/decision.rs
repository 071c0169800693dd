//! The one decision function: request view + policy + consent record in, decision out.

use serde::Serialize;

use crate::decide::reason::Reason;
use crate::decide::request::{HeaderValue, RequestView};
use crate::live::records::{ConsentRecord, Grant};
use crate::live::settings::FailureMode;
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

/// The decision for one request (small and `Copy`: ids, bit sets and facts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// request is blocked with `reason`, or, in the `strip` failure mode, passed with every
/// category removed.
pub fn decide_without_snapshot(
    request: &RequestView<'_>,
    policy: &CompiledPolicy,
    enforcement: &Enforcement<'_>,
    reason: Reason,
    failure_mode: FailureMode,
) -> Decision {
    match identify(request, policy, enforcement) {
        Ok((idx, purpose, _, facts)) => {
            if let Some(refused) = record_free_block(policy, idx, purpose, enforcement.gpc, &facts)
            {
                return Decision::block(refused, Some(idx)).with_facts(facts);
            }
            if failure_mode == FailureMode::Strip {
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
    if purpose.basis != Basis::Legal && processor_abroad(policy, facts) {
        // Consent to outsourcing abroad cannot be known without a record.
        return Some(Reason::ForeignOutsourcingConsentMissing);
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

/// Whether the caller is a processor in another country than the operator's (§6).
fn processor_abroad(policy: &CompiledPolicy, facts: &Facts) -> bool {
    facts.caller.kind == PartyKind::Processor
        && facts
            .caller
            .party
            .and_then(|p| policy.party(p))
            .is_some_and(|p| p.abroad)
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
    // A processor abroad (§6): only with consent to entrusting the data abroad, unless the
    // law requires the use.
    if !legal && processor_abroad(policy, &facts) {
        let Some((abroad_idx, abroad)) = policy.foreign_outsourcing() else {
            return block(Reason::ForeignOutsourcingConsentMissing, facts);
        };
        let abroad_grant = record.and_then(|r| r.grant(abroad_idx));
        let withdrawn = record.is_some_and(|r| r.has_withdrawn(abroad_idx));
        let refused = match grant_status(policy, abroad.changed_in, abroad_grant) {
            Ok(()) if !withdrawn => None,
            Err(reason @ (Reason::ReconsentRequired | Reason::ConsentVersionUnknown)) => {
                Some(reason)
            }
            _ => Some(Reason::ForeignOutsourcingConsentMissing),
        };
        if let Some(reason) = refused {
            return match abroad.without_consent {
                WithoutConsent::Block => block(reason, facts),
                WithoutConsent::Strip => Decision::strip_all(policy, reason, idx).with_facts(facts),
            };
        }
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
mod tests;
