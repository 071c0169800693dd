//! The privacy policy and what the configuration adds to it: purposes, data categories,
//! parties and who the caller is, per-route rules, Global Privacy Control, and the name
//! maps the request path looks ids up in.

pub(crate) mod caller;
pub(crate) mod categories;
pub(crate) mod compiled;
pub(crate) mod document;
pub(crate) mod gpc;
pub(crate) mod name_map;
pub(crate) mod party;
pub(crate) mod routes;

pub use caller::{CallerDoc, CallerSettings};
pub use categories::{CategoryIdx, CategorySet, MAX_CATEGORIES};
pub use compiled::{
    normalise_header_name, Basis, Category, CategoryDoc, CompiledPolicy, Label, PartyDoc,
    PartyKind, PolicyDoc, Purpose, PurposeDoc, PurposeIdx, WithoutConsent, DEFAULT_POLICY_JSON,
};
pub use gpc::{is_signal, GpcDoc, GpcSettings, GPC_HEADER};
pub use name_map::{Fnv1a, NameMap};
pub use party::{
    party_for, resolve_caller, Caller, CallerFacts, CallerFrom, CallerSource, IdentityKind,
    IdentityPattern, Party, PartyIdx,
};
pub use routes::{RouteFacts, RouteMatchDoc, RouteRule, RouteRuleDoc, RouteTable, RuleIdx};
