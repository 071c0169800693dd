//! The filter's Envoy stats. Names carry their labels as `.label.value` pairs; the shipped
//! Envoy configs extract them as tags (`stats_config.stats_tags`), so Prometheus shows e.g.
//! `consent_decisions{mode="enforce",outcome="block",reason="consent_missing",purpose="surveys"}`.
//! Label values come only from the policy and the reason codes, never from a request, so the
//! number of series is bounded by the policy.
//!
//! | stat | type | labels |
//! |---|---|---|
//! | `consent.decisions` | counter | mode, outcome, reason, purpose |
//! | `consent.redactions` | counter | mode, direction, category (one per category a request had removed in that direction) |
//! | `consent.refusals` | counter | mode, direction, reason (body refusals after the decision) |
//! | `consent.body_bytes` | counter | direction (bytes of bodies inspected) |
//!
//! Each VM defines a stat once and keeps its id; Envoy sums the workers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use consent_core::decide::{Decision, Outcome};
use consent_core::policy::CategoryIdx;
use consent_core::policy::Fnv1a;
use consent_core::stream::Stat;
use consent_core::{CompiledConfig, Direction, Mode, Reason};

use crate::host::Metric;

/// A stat as this VM knows it. Purposes and categories are positions in one policy, so the
/// policy's fingerprint is part of the key: after a reload with another policy the same
/// positions name other ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Decision([u8; 8], Mode, Outcome, Reason, Option<u16>),
    Redaction([u8; 8], Mode, Direction, usize),
    Refusal(Mode, Direction, Reason),
    BodyBytes(Direction),
}

/// Stat ids by key; FNV-hashed (the keys come from the policy and reason codes, never from
/// a request, and the lookup is on every request).
type Ids = HashMap<Key, Option<Metric>, BuildHasherDefault<Fnv1a>>;

thread_local! {
    static IDS: RefCell<Ids> = RefCell::new(Ids::default());
}

fn add(key: Key, by: u64, name: impl FnOnce() -> String) {
    let metric = IDS.with(|ids| {
        *ids.borrow_mut()
            .entry(key)
            .or_insert_with(|| Metric::counter(&name()))
    });
    if let Some(metric) = metric {
        metric.add(by);
    }
}

/// Adds the stream's stats events to Envoy's counters.
pub fn record(config: &CompiledConfig, mode: Mode, stats: Vec<Stat>) {
    for stat in stats {
        match stat {
            Stat::Decision(d) => decision(config, &d, mode),
            Stat::Redaction(direction, category) => {
                redactions(config, std::iter::once(category), direction, mode)
            }
            Stat::Refusal(direction, reason) => refusal(reason, direction, mode),
            Stat::BodyBytes(direction, bytes) => body_bytes(direction, bytes),
        }
    }
}

/// Counts one decision.
fn decision(config: &CompiledConfig, decision: &Decision, mode: Mode) {
    let purpose = decision.purpose;
    let key = Key::Decision(
        config.policy_fingerprint,
        mode,
        decision.outcome,
        decision.reason,
        purpose.map(|p| p.0),
    );
    add(key, 1, || {
        let purpose = purpose
            .and_then(|p| config.policy.purpose(p))
            .map_or("none", |p| p.id.as_str());
        format!(
            "consent.decisions.mode.{}.outcome.{}.reason.{}.purpose.{purpose}",
            mode.as_str(),
            decision.outcome.as_str(),
            decision.reason.as_str()
        )
    });
}

/// Counts the categories removed (or, in dry-run, that would be) in one direction.
fn redactions(
    config: &CompiledConfig,
    categories: impl Iterator<Item = CategoryIdx>,
    direction: Direction,
    mode: Mode,
) {
    for category in categories {
        add(
            Key::Redaction(
                config.policy_fingerprint,
                mode,
                direction,
                category.position(),
            ),
            1,
            || {
                format!(
                    "consent.redactions.mode.{}.direction.{}.category.{}",
                    mode.as_str(),
                    direction.as_str(),
                    config.policy.category_id(category)
                )
            },
        );
    }
}

/// Counts a body refusal.
fn refusal(reason: Reason, direction: Direction, mode: Mode) {
    add(Key::Refusal(mode, direction, reason), 1, || {
        format!(
            "consent.refusals.mode.{}.direction.{}.reason.{}",
            mode.as_str(),
            direction.as_str(),
            reason.as_str()
        )
    });
}

/// Counts body bytes inspected.
fn body_bytes(direction: Direction, bytes: usize) {
    add(Key::BodyBytes(direction), bytes as u64, || {
        format!("consent.body_bytes.direction.{}", direction.as_str())
    });
}
