//! The stream's stats events as Envoy counters: the same stats and labels as the wasm
//! filter's (README "Metrics"). Here the labels are Envoy tags of counters defined once per
//! configuration, so no `stats_tags` rules are needed: Prometheus shows e.g.
//! `consent_decisions{mode="enforce",outcome="block",reason="consent_missing",purpose="surveys"}`.
//! Label values come only from the policy and the reason codes, never from a request.
//!
//! Envoy resolves a labelled counter on every increment (about 4,000 instructions each,
//! measured with callgrind), so a stream's events become [`Increment`]s, which the
//! configuration's [`StatBatch`](crate::stat_batch::StatBatch) either lets the stream count
//! at once ([`record_now`]: low rates, or no batch) or sums for the main thread to count a
//! few milliseconds later (under load).

use consent_core::decide::{Decision, Outcome};
use consent_core::policy::{CategoryIdx, PurposeIdx};
use consent_core::stream::Stat;
use consent_core::{CompiledConfig, Direction, Mode, Reason};

use crate::config::StreamMetrics;
use crate::envoy::MAX_LABELS;

/// One counter increment, named by its labels' positions in the policy and the reason
/// codes (so that it can wait in a batch without borrowing the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Increment {
    /// `consent.decisions{mode, outcome, reason, purpose}`.
    Decision(Mode, Outcome, Reason, Option<PurposeIdx>),
    /// `consent.redactions{mode, direction, category}`.
    Redaction(Mode, Direction, CategoryIdx),
    /// `consent.refusals{mode, direction, reason}`.
    Refusal(Mode, Direction, Reason),
    /// `consent.body_bytes{direction}`.
    BodyBytes(Direction),
}

/// The increments of a stream's stats events, with the amount of each.
pub fn increments(mode: Mode, stats: &[Stat]) -> impl Iterator<Item = (Increment, u64)> + '_ {
    stats.iter().map(move |stat| match *stat {
        Stat::Decision(ref decision) => (decision_increment(mode, decision), 1),
        Stat::Redaction(direction, category) => {
            (Increment::Redaction(mode, direction, category), 1)
        }
        Stat::Refusal(direction, reason) => (Increment::Refusal(mode, direction, reason), 1),
        Stat::BodyBytes(direction, bytes) => (
            Increment::BodyBytes(direction),
            u64::try_from(bytes).unwrap_or(u64::MAX),
        ),
    })
}

fn decision_increment(mode: Mode, decision: &Decision) -> Increment {
    Increment::Decision(mode, decision.outcome, decision.reason, decision.purpose)
}

/// The counter of an increment and its label values (as many as the counter's label
/// names); `None` when Envoy did not define that counter.
pub fn resolve<'c>(
    increment: &Increment,
    ids: &StreamMetrics,
    config: &'c CompiledConfig,
) -> Option<(usize, [&'c str; MAX_LABELS], usize)> {
    let (id, labels, len) = match *increment {
        Increment::Decision(mode, outcome, reason, purpose) => {
            let purpose = purpose
                .and_then(|p| config.policy.purpose(p))
                .map_or("none", |p| p.id.as_str());
            let labels = [mode.as_str(), outcome.as_str(), reason.as_str(), purpose];
            (ids.decisions, labels, 4)
        }
        Increment::Redaction(mode, direction, category) => {
            let labels = [
                mode.as_str(),
                direction.as_str(),
                config.policy.category_id(category),
                "",
            ];
            (ids.redactions, labels, 3)
        }
        Increment::Refusal(mode, direction, reason) => {
            let labels = [mode.as_str(), direction.as_str(), reason.as_str(), ""];
            (ids.refusals, labels, 3)
        }
        Increment::BodyBytes(direction) => (ids.body_bytes, [direction.as_str(), "", "", ""], 1),
    };
    Some((id?, labels, len))
}

/// Counts a stream's increments at once, through the stream.
pub fn record_now(
    stream: crate::envoy::Stream,
    ids: &StreamMetrics,
    config: &CompiledConfig,
    increments: impl IntoIterator<Item = (Increment, u64)>,
) {
    for (increment, by) in increments {
        if let Some((id, labels, len)) = resolve(&increment, ids, config) {
            stream.count(id, labels.get(..len).unwrap_or(&[]), by);
        }
    }
}
