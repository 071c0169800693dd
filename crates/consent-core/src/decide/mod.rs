//! Deciding one request: the request as the decision sees it, the one entry point
//! ([`crate::CompiledConfig::decide_request`]), the pure decision function and its reason
//! codes, explanations, block replies and the decision header, and the header and query
//! plans that carry a decision out.

pub(crate) mod cookie_plan;
pub(crate) mod decision;
pub(crate) mod entry;
pub(crate) mod explain;
pub(crate) mod header_plan;
pub(crate) mod query;
pub(crate) mod reason;
pub(crate) mod reply;
pub(crate) mod request;

pub use decision::{
    decide, decide_without_snapshot, Decision, Enforcement, Facts, Outcome, Redaction,
};
pub use entry::{ConsentLookup, Found, InlineConsents, RequestDecision};
pub use explain::{explain, ConsentFact, Explanation, PartyFact, PurposeFact, RedactionFact};
pub use header_plan::{plan_request, plan_response, CookieEdit, HeaderEdits};
pub use query::{decode_name, strip_params, QueryDoc, QuerySettings};
pub use reason::Reason;
pub use reply::{
    block_body, block_reply, decision_header_for, decision_header_value, not_configured_reply,
    refusal_status, GrpcStatus, HeaderNotes, LocalReply, INTERNAL_ERROR_STATUS,
};
pub use request::{HeaderScan, HeaderValue, RequestContext, RequestView, MAX_IDENTITY_LEN};
