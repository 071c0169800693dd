//! The stream's stats events as Envoy counters: the same stats and labels as the wasm
//! filter's (README "Metrics"). Here the labels are Envoy tags of counters defined once per
//! configuration, so no `stats_tags` rules are needed: Prometheus shows e.g.
//! `consent_decisions{mode="enforce",outcome="block",reason="consent_missing",purpose="surveys"}`.
//! Label values come only from the policy and the reason codes, never from a request.

use consent_core::decide::Decision;
use consent_core::stream::Stat;
use consent_core::{CompiledConfig, Mode};

use crate::config::StreamMetrics;
use crate::envoy;

/// Adds the stream's stats events to Envoy's counters.
pub fn record(
    stream: envoy::Stream,
    ids: &StreamMetrics,
    config: &CompiledConfig,
    mode: Mode,
    stats: Vec<Stat>,
) {
    for stat in stats {
        match stat {
            Stat::Decision(decision) => decision_stat(stream, ids, config, mode, &decision),
            Stat::Redaction(direction, category) => {
                if let Some(id) = ids.redactions {
                    let labels = [
                        mode.as_str(),
                        direction.as_str(),
                        config.policy.category_id(category),
                    ];
                    stream.count(id, &labels, 1);
                }
            }
            Stat::Refusal(direction, reason) => {
                if let Some(id) = ids.refusals {
                    let labels = [mode.as_str(), direction.as_str(), reason.as_str()];
                    stream.count(id, &labels, 1);
                }
            }
            Stat::BodyBytes(direction, bytes) => {
                if let Some(id) = ids.body_bytes {
                    let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
                    stream.count(id, &[direction.as_str()], bytes);
                }
            }
        }
    }
}

fn decision_stat(
    stream: envoy::Stream,
    ids: &StreamMetrics,
    config: &CompiledConfig,
    mode: Mode,
    decision: &Decision,
) {
    let Some(id) = ids.decisions else {
        return;
    };
    let purpose = decision
        .purpose
        .and_then(|p| config.policy.purpose(p))
        .map_or("none", |p| p.id.as_str());
    let labels = [
        mode.as_str(),
        decision.outcome.as_str(),
        decision.reason.as_str(),
        purpose,
    ];
    stream.count(id, &labels, 1);
}
