//! JSON body enforcement: selectors, the streaming redactor, value transforms, and the
//! choice of what to do with a body given its headers.

pub mod dfa;
pub mod matcher;
pub mod redactor;
pub mod reference;
pub mod scan;
pub mod selector;
pub mod transform;

use serde::{Deserialize, Serialize};

use crate::reason::Reason;

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
    /// Refuse it (`body_not_json`).
    Block,
}

/// What the filter does with one body, decided from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Nothing to check: do not buffer.
    Skip,
    /// Buffer the body and run the redactor on it.
    Redact,
    /// Buffer it and replace it by nothing.
    Strip,
    /// Refuse it before reading.
    Refuse(Reason),
}

/// Body facts read from a header map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyHeaders<'a> {
    /// `content-type`.
    pub content_type: Option<&'a [u8]>,
    /// `content-encoding`.
    pub content_encoding: Option<&'a [u8]>,
    /// `content-length`, when it parses.
    pub content_length: Option<u64>,
}

impl<'a> BodyHeaders<'a> {
    /// Reads the body headers out of a header list (lowercase names).
    pub fn from_headers<I>(headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut out = BodyHeaders::default();
        for (name, value) in headers {
            match name {
                "content-type" => out.content_type = Some(value),
                "content-encoding" => out.content_encoding = Some(value),
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

/// Whether a content type is JSON: `application/json` or `application/*+json`.
pub fn is_json(content_type: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a content encoding leaves the bytes readable.
pub fn is_identity(content_encoding: Option<&[u8]>) -> bool {
    match content_encoding {
        None => true,
        Some(v) => {
            let v = String::from_utf8_lossy(v);
            let v = v.trim();
            v.is_empty() || v.eq_ignore_ascii_case("identity")
        }
    }
}

/// Decides how to treat a body. `needed` says whether the decision forbids any category a
/// body selector can find (or elements must be checked); without that the body is skipped.
pub fn body_mode(
    needed: bool,
    headers: &BodyHeaders<'_>,
    max_bytes: usize,
    encoded: EncodedBody,
    unparsed: UnparsedBody,
) -> BodyMode {
    if !needed {
        return BodyMode::Skip;
    }
    if !is_identity(headers.content_encoding) {
        return match encoded {
            EncodedBody::Block => BodyMode::Refuse(Reason::BodyEncodingUnsupported),
            EncodedBody::Strip => BodyMode::Strip,
        };
    }
    if !headers.content_type.is_some_and(is_json) {
        return match unparsed {
            UnparsedBody::Pass => BodyMode::Skip,
            UnparsedBody::Block => BodyMode::Refuse(Reason::BodyNotJson),
        };
    }
    if headers.content_length.is_some_and(|n| n > max_bytes as u64) {
        return BodyMode::Refuse(Reason::BodyTooLarge);
    }
    BodyMode::Redact
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn h<'a>(ct: Option<&'a str>, ce: Option<&'a str>, len: Option<u64>) -> BodyHeaders<'a> {
        BodyHeaders {
            content_type: ct.map(str::as_bytes),
            content_encoding: ce.map(str::as_bytes),
            content_length: len,
        }
    }

    #[test]
    fn json_types_are_recognised() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/problem+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"application/jsonp"));
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
