//! A small policy and helpers for the tests of the body formats (forms, multipart): every
//! purpose has contract basis, so what it may see is exactly its categories.

use crate::body::redactor::{BodyOutcome, BodyReport};
use crate::body::transform::CivilDate;
use crate::body::{BodyError, BodyHeaders};
use crate::config::{compile_config, CompiledConfig};

pub(crate) const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 11,
    day: 27,
};

/// Categories `location.gps` (`?lat`, `?lng`, `$..gps`, coarsened to 0.01°), `email`,
/// `device_id` (pseudonymised by `analysis`) and `payment` (`?amount`, blocks in
/// `offers`); purposes `strict` (sees nothing), `analysis`, `offers` and `all`.
pub(crate) fn config(unparsed: &str) -> CompiledConfig {
    let doc = serde_json::json!({
        "require_user": false,
        "pseudonymisation_key": "test-pseudonym-key-0123456789",
        "body": {"unparsed": unparsed},
        "caller": {"unidentified_party": "op"},
        "policy": {
            "id": "p", "version": 1,
            "categories": [
                {"id": "location.gps", "label": {"ja": "l", "en": "l"},
                 "query": ["lat", "lng"], "json": ["$..gps", "$..lat", "$..lng"],
                 "coarsen": {"grid_degrees": 0.01}},
                {"id": "email", "label": {"ja": "e", "en": "e"},
                 "query": ["email"], "json": ["$..email"]},
                {"id": "device_id", "label": {"ja": "d", "en": "d"},
                 "query": ["device_id"], "json": ["$..device_id"]},
                {"id": "payment", "label": {"ja": "p", "en": "p"},
                 "query": ["amount"], "json": ["$..amount"]}
            ],
            "purposes": [
                {"id": "strict", "label": {"ja": "s", "en": "s"}, "basis": "contract",
                 "categories": []},
                {"id": "analysis", "label": {"ja": "a", "en": "a"}, "basis": "contract",
                 "categories": ["payment"],
                 "transforms": {"location.gps": "coarsen", "device_id": "pseudonymise"}},
                {"id": "offers", "label": {"ja": "o", "en": "o"}, "basis": "contract",
                 "categories": ["location.gps", "device_id"],
                 "transforms": {"payment": "block"}},
                {"id": "all", "label": {"ja": "x", "en": "x"}, "basis": "contract",
                 "categories": ["location.gps", "email", "device_id", "payment"]}
            ],
            "parties": [{"id": "op", "label": {"ja": "o", "en": "o"}, "kind": "operator"}]
        }
    });
    match compile_config(doc.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("test policy: {e}"),
    }
}

/// Enforces `body` declared as `content_type` for `purpose`, with field paths.
pub(crate) fn enforce(
    c: &CompiledConfig,
    purpose: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(BodyOutcome, BodyReport), BodyError> {
    let decision = c.evaluate([("x-data-purpose", purpose.as_bytes())]);
    let list: Vec<(&str, &[u8])> = content_type
        .map(|ct| ("content-type", ct.as_bytes()))
        .into_iter()
        .collect();
    let headers = BodyHeaders::from_headers(list);
    c.enforce_body(&decision, &headers, body, TODAY, true, &c.inline_consents())
}

/// The body the backend gets.
pub(crate) fn forwarded(body: &[u8], outcome: &BodyOutcome) -> String {
    match outcome {
        BodyOutcome::Unchanged => String::from_utf8_lossy(body).into_owned(),
        BodyOutcome::Rewritten(out) => String::from_utf8_lossy(out).into_owned(),
        BodyOutcome::Blocked(_) => panic!("blocked"),
    }
}
