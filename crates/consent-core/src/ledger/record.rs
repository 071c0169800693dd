//! One provision record, as `POST /ledger` takes it, built from a finished stream: who
//! received the data (a third party or a joint user), the purpose and its basis, the
//! categories that passed after every redaction, the keyed subject, the outcome and why.

use serde::Serialize;

use crate::config::CompiledConfig;
use crate::decide::decision::{Decision, Outcome};
use crate::decide::reason::Reason;
use crate::policy::categories::CategorySet;
use crate::policy::compiled::PartyKind;
use crate::policy::party::{Caller, CallerFacts, CallerSource};

/// One record (field names and rules are the consent source's, crates/consent-source
/// `ledger.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRecord {
    /// Idempotence key: the request id and a suffix unique to this filter VM.
    pub request_id: String,
    /// When the stream ended (Unix ms).
    pub ts_ms: u64,
    /// The party id, or `-` for a third party no party claims.
    pub recipient: String,
    /// `third_party` or `joint_user`.
    pub recipient_kind: &'static str,
    /// The caller's URI SAN, `dns:` name, `cluster:` name or `header:` value, when known.
    pub recipient_identity: Option<String>,
    /// The purpose id.
    pub purpose: String,
    /// The purpose's basis.
    pub basis: &'static str,
    /// Category ids that passed (after header, query and body redaction); empty for a block.
    pub categories: Vec<String>,
    /// The keyed subject (never the raw user ID).
    pub subject: String,
    /// `allow`, `redact` or `block`.
    pub outcome: &'static str,
    /// The reason code.
    pub reason: &'static str,
}

impl LedgerRecord {
    /// The record as compact JSON, the form it is queued and batched in.
    pub fn to_json(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }
}

/// Whether provisions to `caller` are recorded: third parties (§7) and joint users (§8).
/// The operator's own traffic and processors (entrusted, not provided, even abroad) are not.
pub fn is_recorded(caller: &Caller) -> bool {
    matches!(caller.kind, PartyKind::ThirdParty | PartyKind::JointUser)
}

/// What the stream keeps from the request headers for the record (the raw user ID lives
/// only here, until the record is built and it is hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    user: String,
    request_id: Option<String>,
    identity: Option<String>,
    /// The ledger was unavailable when the request was decided: nothing is recorded.
    pub unrecorded: bool,
}

/// A caller identity as the consent source accepts it: 1 to 512 printable ASCII
/// characters without blanks, quotes, backslashes or angle brackets.
fn acceptable_identity(text: &str) -> bool {
    (1..=512).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`'))
}

/// The identity that named the caller, in the policy's identity syntax.
fn identity_of(caller: &Caller, facts: &CallerFacts<'_>) -> Option<String> {
    let text = match caller.source {
        CallerSource::UriSan => facts.uri_san?.to_string(),
        CallerSource::DnsSan => format!("dns:{}", facts.dns_san?),
        CallerSource::Cluster => format!("cluster:{}", facts.cluster?),
        CallerSource::Header => match facts.header {
            crate::decide::request::HeaderValue::One(v) => format!("header:{v}"),
            _ => return None,
        },
        CallerSource::Unidentified => return None,
        // A third party no party claims: the identity it presented, if any.
        CallerSource::Unknown => facts
            .uri_san
            .map(str::to_string)
            .or_else(|| facts.dns_san.map(|d| format!("dns:{d}")))
            .or_else(|| facts.cluster.map(|c| format!("cluster:{c}")))?,
    };
    acceptable_identity(&text).then_some(text)
}

impl Draft {
    /// The draft of a request decided as `decision`, when it is a provision the ledger
    /// records: a third party or joint user, a purpose the policy knows and a user ID.
    pub fn of(
        decision: &Decision,
        user: Option<&str>,
        request_id: Option<&str>,
        facts: &CallerFacts<'_>,
    ) -> Option<Draft> {
        let caller = &decision.facts.caller;
        if !is_recorded(caller) || decision.purpose.is_none() || decision.facts.basis.is_none() {
            return None;
        }
        Some(Draft {
            user: user?.to_string(),
            request_id: request_id.map(str::to_string),
            identity: identity_of(caller, facts),
            unrecorded: false,
        })
    }

    /// The record of the finished stream. `decision` is the request's decision, `refusal`
    /// a later refusal of a body (then nothing passed: a block), `dry_run` whether nothing
    /// was changed (everything passed), `unique` a suffix no other record of this Envoy
    /// has. `None` when the decision names no purpose.
    ///
    /// The categories that passed are every category the decision did not remove: body
    /// passes remove exactly those in headers, parameters and bodies (a coarsened or
    /// pseudonymised value still passes, as its category), and elements dropped from a
    /// multi-subject body are other people's data, recorded under no one here.
    pub fn record(
        &self,
        config: &CompiledConfig,
        decision: &Decision,
        refusal: Option<Reason>,
        dry_run: bool,
        now_ms: u64,
        unique: &str,
    ) -> Option<LedgerRecord> {
        let policy = &config.policy;
        let purpose = policy.purpose(decision.purpose?)?;
        let basis = decision.facts.basis?;
        let caller = &decision.facts.caller;
        let recipient = match caller.party.and_then(|p| policy.party(p)) {
            Some(party) => party.id.clone(),
            None => "-".to_string(),
        };
        let (outcome, reason, passed) = if dry_run {
            // Dry-run changes nothing: every category could reach the recipient.
            (Outcome::Allow, decision.reason, policy.all_categories)
        } else if let Some(reason) = refusal {
            (Outcome::Block, reason, CategorySet::EMPTY)
        } else if decision.outcome == Outcome::Block {
            (Outcome::Block, decision.reason, CategorySet::EMPTY)
        } else {
            let passed = policy.all_categories.difference(decision.redacted);
            (decision.outcome, decision.reason, passed)
        };
        let request_id = match &self.request_id {
            Some(id) => format!("{id}~{unique}"),
            None => format!("r~{unique}"),
        };
        Some(LedgerRecord {
            request_id,
            ts_ms: now_ms,
            recipient,
            recipient_kind: caller.kind.as_str(),
            recipient_identity: self.identity.clone(),
            purpose: purpose.id.clone(),
            basis: basis.as_str(),
            categories: passed
                .iter()
                .map(|c| policy.category_id(c).to_string())
                .collect(),
            subject: config.ledger.subject_for(&self.user),
            outcome: outcome.as_str(),
            reason: reason.as_str(),
        })
    }
}
