//! What operators see besides stats: the decision in Envoy's filter state (for access
//! logs) and one JSON decision-log line per sampled request.

use std::cell::{Cell, RefCell};

use consent_core::live::Replica;
use consent_core::stream::Stream;
use consent_core::CompiledConfig;

use crate::{host, shared_snapshot};

/// Filter-state name of the decision (`wasm.consent_decision` in access-log formats).
pub const DECISION_PROPERTY: &str = "consent_decision";

thread_local! {
    /// Requests seen by this VM without a request id, for sampling them.
    static UNNAMED: Cell<u64> = const { Cell::new(0) };
}

/// Puts the decision header value in filter state, where access logs can print it with
/// `%FILTER_STATE(wasm.consent_decision:PLAIN)%`, when the configuration asks for it
/// (`observe.access_log_decision`: one host call per request, so off by default).
pub fn expose_decision(config: Option<&CompiledConfig>, value: &str) {
    if !config.is_some_and(|c| c.observe.access_log_decision) {
        return;
    }
    if let Err(status) = host::set_property(DECISION_PROPERTY, value.as_bytes()) {
        log::debug!("consent filter: cannot set the decision property: {status:?}");
    }
}

/// Writes the decision-log line of a finished stream, if it is in the sample.
pub fn log_decision(
    config: &CompiledConfig,
    replica: Option<&RefCell<Replica>>,
    stream: &mut Stream,
) {
    if !config.decision_log.enabled {
        return;
    }
    let fallback = UNNAMED.with(|n| {
        let next = n.get().wrapping_add(1);
        n.set(next);
        next
    });
    let line = stream.log_line(
        config,
        fallback,
        host::unix_ms(),
        || host::string_property(&["xds", "route_name"]).ok().flatten(),
        shared_snapshot::last_version(config, replica),
    );
    if let Some(json) = line {
        log::info!("consent_decision {json}");
    }
}
