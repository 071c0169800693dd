//! Host-free consent engine for the consent-enforcement filter.
//!
//! Nothing in this crate talks to a proxy: it reads a policy, a plugin configuration and a
//! consent snapshot, and answers one question per request with
//! [`CompiledConfig::decide_request`]: allow, allow with redactions, or block, and why.
//! Hosts (the proxy-wasm glue in the `consent-filter` crate, `consentctl`, the ext_authz
//! service) only translate their calls into these types and carry out the plans.
//!
//! | folder | owns |
//! |---|---|
//! | [`policy`] | the policy, categories, parties and callers, route rules, GPC, name maps |
//! | [`decide`] | the request view, the entry point, the decision, reasons, explanations, replies, header, query and cookie plans |
//! | [`live`] | snapshot documents and records, subject keys, buckets, deltas, metadata, shared-data keys, the lease |
//! | [`body`] | JSON selectors, the streaming redactor, form and multipart bodies, transforms, body settings, formats and modes |
//! | [`grpc`] | the protobuf schema, protobuf selectors, the wire walker, gRPC framing |
//! | [`ledger`] | provision records, the drainer's outbox and the ledger's health flag |
//! | [`observe`] | decision-log lines |
//! | [`stream`] | one HTTP stream as steps a host carries out (headers, bodies, failures, stats) |
//! | [`config`] | parsing the plugin configuration and delegating each block |

pub mod body;
pub mod config;
pub mod decide;
mod decimal;
mod direction;
pub mod error;
pub mod grpc;
pub mod ledger;
pub mod live;
pub mod observe;
mod pieces;
pub mod policy;
pub mod secret;
pub mod stream;
mod urlencoded;

pub use config::{compile_config, compile_config_with_env, CompiledConfig, ConfigDoc, Settings};
pub use decide::{
    decide, ConsentLookup, Decision, Enforcement, Facts, Found, HeaderValue, Outcome, Reason,
    Redaction, RequestContext, RequestDecision, RequestView,
};
pub use direction::{Direction, Mode};
pub use error::ConfigError;
pub use live::{ConsentIndex, ConsentRecord};
pub use policy::{CompiledPolicy, DEFAULT_POLICY_JSON};
