//! JSON body enforcement: selectors, the streaming redactor, value transforms, the
//! `body` settings, what a decision means for a body, and the choice of what to do with a
//! body given its headers. `reference` (tests and benches only, feature `reference`) is the
//! `serde_json::Value` implementation the redactor is checked against.

pub(crate) mod dfa;
pub(crate) mod enforce;
pub(crate) mod matcher;
pub(crate) mod redactor;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
pub(crate) mod scan;
pub(crate) mod selector;
pub(crate) mod settings;
pub(crate) mod transform;

pub use matcher::Matcher;
pub use redactor::{
    redact, BodyOutcome, BodyReport, BodyRules, ElementRules, ElementVerdict, FieldAction,
    FieldHit, HitAction, VerdictFn, MAX_FIELD_HITS,
};
pub use scan::{JsonError, MAX_DEPTH};
pub use selector::{parse_selector, Segment, Selector};
pub use settings::{BodyDoc, BodySettings, SubjectsDoc, DEFAULT_MAX_BODY_BYTES};
pub use transform::{coarsen_number, coarsen_text, pseudonym, CivilDate, CoarsenSpec};

use serde::{Deserialize, Serialize};

use crate::decide::reason::Reason;

/// What to do with a body whose `content-encoding` the filter cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodedBody {
    /// Refuse it (`body_encoding_unsupported`).
    #[default]
    Block,
    /// Remove the whole body.
    Strip,
}

/// What to do with a body that is not JSON when its data must be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnparsedBody {
    /// Forward it unread (only JSON bodies carry mapped fields).
    #[default]
    Pass,
    /// Read it anyway and redact it if it parses as JSON (for backends that parse bodies
    /// whatever their declared type); bodies over `max_bytes` are then refused.
    Sniff,
    /// Refuse it (`body_not_json`).
    Block,
}

/// What the filter does with one body, decided from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyMode {
    /// Nothing to check: do not buffer.
    #[default]
    Skip,
    /// Buffer the body and run the redactor on it.
    Redact,
    /// No content type was declared: buffer the body and redact it if it parses as JSON,
    /// else pass it as it was (a backend may parse an undeclared body as JSON).
    Sniff,
    /// Buffer it and replace it by nothing.
    Strip,
    /// Refuse it before reading.
    Refuse(Reason),
}

/// Body facts read from a header map. Every occurrence of a header counts, so a second
/// `content-type` or `content-encoding` cannot hide the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyHeaders {
    /// Some `content-type` was sent.
    pub has_content_type: bool,
    /// Some `content-type` declares JSON.
    pub declares_json: bool,
    /// Some `content-encoding` is not `identity`.
    pub encoded: bool,
    /// `content-length`, when it parses.
    pub content_length: Option<u64>,
}

impl BodyHeaders {
    /// Reads the body headers out of a header list (lowercase names).
    pub fn from_headers<'a, I>(headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut out = BodyHeaders::default();
        for (name, value) in headers {
            match name {
                "content-type" => {
                    out.has_content_type = true;
                    out.declares_json |= is_json(value);
                }
                "content-encoding" => out.encoded |= !is_identity(Some(value)),
                "content-length" => {
                    out.content_length = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                }
                _ => {}
            }
        }
        out
    }
}

/// Whether a content type declares JSON: `application/json` or `application/*+json`.
/// Envoy joins repeated headers with commas, so every comma-separated element counts.
pub fn is_json(content_type: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    text.split(',').any(|element| {
        let essence = element.split(';').next().unwrap_or("").trim();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Whether a content encoding leaves the bytes readable: absent, empty or only `identity`
/// (every comma-separated element).
pub fn is_identity(content_encoding: Option<&[u8]>) -> bool {
    match content_encoding {
        None => true,
        Some(v) => String::from_utf8_lossy(v).split(',').all(|element| {
            let element = element.trim();
            element.is_empty() || element.eq_ignore_ascii_case("identity")
        }),
    }
}

/// Decides how to treat a body. `needed` says whether the decision forbids any category a
/// body selector can find (or elements must be checked); without that the body is skipped.
pub fn body_mode(
    needed: bool,
    headers: &BodyHeaders,
    max_bytes: usize,
    encoded: EncodedBody,
    unparsed: UnparsedBody,
) -> BodyMode {
    if !needed {
        return BodyMode::Skip;
    }
    if headers.encoded {
        return match encoded {
            EncodedBody::Block => BodyMode::Refuse(Reason::BodyEncodingUnsupported),
            EncodedBody::Strip => BodyMode::Strip,
        };
    }
    if headers.content_length.is_some_and(|n| n > max_bytes as u64) {
        return BodyMode::Refuse(Reason::BodyTooLarge);
    }
    if headers.declares_json {
        return BodyMode::Redact;
    }
    match (headers.has_content_type, unparsed) {
        (_, UnparsedBody::Block) => BodyMode::Refuse(Reason::BodyNotJson),
        (false, UnparsedBody::Pass) | (_, UnparsedBody::Sniff) => BodyMode::Sniff,
        (true, UnparsedBody::Pass) => BodyMode::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn h(ct: Option<&str>, ce: Option<&str>, len: Option<u64>) -> BodyHeaders {
        let len_text = len.map(|n| n.to_string());
        let mut list: Vec<(&str, &[u8])> = Vec::new();
        if let Some(ct) = ct {
            list.push(("content-type", ct.as_bytes()));
        }
        if let Some(ce) = ce {
            list.push(("content-encoding", ce.as_bytes()));
        }
        if let Some(l) = &len_text {
            list.push(("content-length", l.as_bytes()));
        }
        BodyHeaders::from_headers(list)
    }

    #[test]
    fn json_types_are_recognised() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/problem+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"application/jsonp"));
        assert!(is_json(b"text/plain,application/json"), "joined duplicates");
        assert!(is_identity(Some(b"identity, identity")));
        assert!(!is_identity(Some(b"identity, gzip")));
    }

    #[test]
    fn bodies_are_skipped_when_nothing_needs_checking() {
        let mode = body_mode(
            false,
            &h(Some("application/json"), None, Some(10)),
            100,
            EncodedBody::Block,
            UnparsedBody::Pass,
        );
        assert_eq!(mode, BodyMode::Skip);
    }

    #[test]
    fn unreadable_encodings_are_refused_or_stripped_never_passed() {
        let gz = h(Some("application/json"), Some("gzip"), None);
        assert_eq!(
            body_mode(true, &gz, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Refuse(Reason::BodyEncodingUnsupported)
        );
        assert_eq!(
            body_mode(true, &gz, 100, EncodedBody::Strip, UnparsedBody::Pass),
            BodyMode::Strip
        );
        let identity = h(Some("application/json"), Some("identity"), None);
        assert_eq!(
            body_mode(true, &identity, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Redact
        );
    }

    #[test]
    fn declared_oversize_is_refused_up_front() {
        let big = h(Some("application/json"), None, Some(101));
        assert_eq!(
            body_mode(true, &big, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Refuse(Reason::BodyTooLarge)
        );
    }

    #[test]
    fn a_second_content_type_or_encoding_cannot_hide_the_first() {
        let list: [(&str, &[u8]); 2] = [
            ("content-type", b"application/json"),
            ("content-type", b"text/plain"),
        ];
        let facts = BodyHeaders::from_headers(list);
        assert_eq!(
            body_mode(true, &facts, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Redact
        );
        let list: [(&str, &[u8]); 3] = [
            ("content-type", b"application/json"),
            ("content-encoding", b"gzip"),
            ("content-encoding", b"identity"),
        ];
        let facts = BodyHeaders::from_headers(list);
        assert_eq!(
            body_mode(true, &facts, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Refuse(Reason::BodyEncodingUnsupported)
        );
    }

    #[test]
    fn an_undeclared_body_is_sniffed() {
        let none = h(None, None, Some(10));
        assert_eq!(
            body_mode(true, &none, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Sniff
        );
        assert_eq!(
            body_mode(true, &none, 100, EncodedBody::Block, UnparsedBody::Block),
            BodyMode::Refuse(Reason::BodyNotJson)
        );
    }

    #[test]
    fn non_json_bodies_follow_the_unparsed_setting() {
        let text = h(Some("text/plain"), None, None);
        assert_eq!(
            body_mode(true, &text, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Skip
        );
        assert_eq!(
            body_mode(true, &text, 100, EncodedBody::Block, UnparsedBody::Block),
            BodyMode::Refuse(Reason::BodyNotJson)
        );
    }
}
