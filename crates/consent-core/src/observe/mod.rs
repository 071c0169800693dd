//! What operators see of each request besides stats: the sampled decision-log line, its
//! settings, and the facts a stream gathers for it; the decision in filter state for
//! access logs (`observe.access_log_decision`).

pub(crate) mod access_log;
pub(crate) mod decision_log;

pub use access_log::{ObserveDoc, ObserveSettings};

pub use decision_log::{
    log_line, safe_request_id, DecisionLogDoc, DecisionLogSettings, LogLine, LoggedField, Refused,
    Removed, StreamFacts,
};
