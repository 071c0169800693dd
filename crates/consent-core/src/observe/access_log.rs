//! The `observe` block: what the filter exposes to Envoy's own observability besides stats
//! and decision logs. Today one switch: the decision in filter state for access logs.

use serde::{Deserialize, Serialize};

/// The `observe` block as written in the plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveDoc {
    /// Put the decision header value in Envoy's filter state as `wasm.consent_decision`,
    /// where access logs print it with `%FILTER_STATE(wasm.consent_decision:PLAIN)%`. It
    /// costs one host call per request, so it is off unless an access log reads it.
    pub access_log_decision: bool,
}

/// Checked `observe` settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObserveSettings {
    /// The decision goes to filter state (`wasm.consent_decision`).
    pub access_log_decision: bool,
}

impl ObserveSettings {
    /// The settings of `doc` (every value is valid).
    pub fn compile(doc: &ObserveDoc) -> Self {
        ObserveSettings {
            access_log_decision: doc.access_log_decision,
        }
    }
}
