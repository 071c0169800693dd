//! What operators see of each request besides stats: the sampled decision-log line, its
//! settings, and the facts a stream gathers for it.

pub(crate) mod decision_log;

pub use decision_log::{
    log_line, safe_request_id, DecisionLogDoc, DecisionLogSettings, LogLine, LoggedField, Refused,
    Removed, StreamFacts,
};
