//! Host-free consent engine for the consent-enforcement filter.
//!
//! Nothing in this crate talks to a proxy: it reads a policy, a plugin
//! configuration and a consent snapshot, and answers one question per request
//! with [`decide`]: allow, allow with redactions, or block, and why.
//! The proxy-wasm glue in the `consent-filter` crate only translates host calls
//! into these types.

pub mod body;
pub mod buckets;
pub mod categories;
pub mod config;
pub mod decimal;
pub mod decision;
pub mod decision_log;
pub mod error;
pub mod explain;
pub mod gpc;
pub mod header_plan;
pub mod keyed_snapshot;
pub mod lease;
pub mod name_map;
pub mod party;
pub mod policy;
#[cfg(test)]
mod policy_clauses;
pub mod query;
pub mod reason;
pub mod reply;
pub mod request;
pub mod routes;
pub mod shared_keys;
pub mod snapshot;
pub mod subject_key;

pub use config::{compile_config, CompiledConfig, Settings};
pub use decision::{decide, Decision, Enforcement, Facts, Outcome, Redaction};
pub use error::ConfigError;
pub use policy::{CompiledPolicy, DEFAULT_POLICY_JSON};
pub use reason::Reason;
pub use request::{HeaderValue, RequestContext, RequestView};
pub use snapshot::{ConsentIndex, ConsentRecord};
