//! Body enforcement: JSON selectors, the streaming JSON redactor, form and multipart
//! bodies, value transforms, the `body` settings, what a decision means for a body, and
//! the choice of what to do with a body given its headers. `reference` (tests and benches
//! only, feature `reference`) is the `serde_json::Value` implementation the redactor is
//! checked against.
//!
//! Which reading a body gets ([`CompiledConfig::enforce_body`](crate::CompiledConfig::enforce_body)):
//!
//! | declared | read as |
//! |---|---|
//! | JSON (`application/json`, `application/*+json`) | JSON; invalid JSON is refused (`body_invalid_json`) |
//! | `application/x-www-form-urlencoded` | a form; and as JSON too when it parses as JSON |
//! | `multipart/form-data` | multipart; malformed multipart is refused (`body_invalid_multipart`) |
//! | gRPC (`application/grpc*`) | [`BodyFormat::Grpc`]: the host's protobuf path; here, like anything else |
//! | anything else, or nothing | JSON when it parses as JSON (a backend may parse it whatever its label), else `body.unparsed` decides |
//! | two of the above | refused (`body_type_ambiguous`): the filter cannot know which one the backend reads |

pub(crate) mod dfa;
pub(crate) mod enforce;
pub(crate) mod form;
pub(crate) mod matcher;
pub(crate) mod multipart;
pub(crate) mod params;
pub(crate) mod redactor;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
pub(crate) mod scan;
pub(crate) mod selector;
pub(crate) mod settings;
pub(crate) mod structural;
#[cfg(test)]
mod test_support;
pub(crate) mod transform;
pub(crate) mod two_stage;

use std::fmt;

pub use matcher::Matcher;
pub use multipart::{Boundary, MultipartError, MAX_BOUNDARY_BYTES, MAX_PART_HEADER_BYTES};
pub use redactor::{
    redact, redact_scalar, BodyOutcome, BodyReport, BodyRules, ElementRules, ElementVerdict,
    FieldAction, FieldHit, HitAction, VerdictFn, MAX_FIELD_HITS,
};
pub use scan::{JsonError, MAX_DEPTH};

/// The two-stage redactor alone (what [`redact`] runs first), for tests and benches:
/// `None` where it gives up and [`redact`] hands the body to [`redact_scalar`] (a body
/// that is not valid JSON, is nested too deep, or is not UTF-8).
#[cfg(feature = "reference")]
pub fn redact_two_stage<'v>(
    input: &[u8],
    rules: &BodyRules<'_>,
    forbidden: crate::policy::categories::CategorySet,
    elements: Option<(&ElementRules<'_>, &'v mut VerdictFn<'v>)>,
) -> Option<(BodyOutcome, BodyReport)> {
    let (element_rules, verdict) = match elements {
        Some((r, v)) => (Some(r), Some(v)),
        None => (None, None),
    };
    two_stage::redact_indexed(input, rules, forbidden, element_rules, verdict)
}
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

/// What to do with a body the filter cannot read (not JSON, not a form, not multipart,
/// or a multipart part that is none of these) when its data must be checked. Every such
/// body is read first: one that parses as JSON is enforced as JSON whatever its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnparsedBody {
    /// Forward it as it was, and say so: the report's `unread`, the decision header's
    /// `body=unread`, the decision log's `body_unread`. `sniff`, the name of an older
    /// setting that read such bodies as JSON when they parsed, is accepted and means the
    /// same: every body is sniffed now.
    #[default]
    #[serde(alias = "sniff")]
    Pass,
    /// Refuse it (`body_unreadable`).
    Block,
}

/// A body's format, as its `content-type` declares it. Every `content-type` occurrence
/// and every comma-separated element of one counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// No content type.
    #[default]
    Undeclared,
    /// `application/json` or `application/*+json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data`, with its boundary (`None`: missing or invalid).
    Multipart(Option<Boundary>),
    /// `application/grpc` and its `+proto`, `-web` kinds: the host's protobuf path
    /// decides; [`CompiledConfig::enforce_body`](crate::CompiledConfig::enforce_body)
    /// treats it as a body it cannot read.
    Grpc,
    /// Any other content type (read as JSON if it parses as JSON).
    Other,
    /// Two different formats: refused (`body_type_ambiguous`).
    Conflicting,
}

/// The media type of one content-type element, lowercase: what precedes its first `;`,
/// trimmed. Borrowed from `element` when that is ASCII and already lowercase (the usual
/// case: no allocation on the request path), else read leniently as UTF-8 and lowercased.
pub(crate) fn media_essence(element: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = element
        .iter()
        .position(|b| *b == b';')
        .unwrap_or(element.len());
    let head = element.get(..end).unwrap_or_default();
    if head.iter().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        if let Ok(text) = std::str::from_utf8(head) {
            return std::borrow::Cow::Borrowed(text.trim());
        }
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(head).trim().to_ascii_lowercase())
}

impl BodyFormat {
    /// The format of one content-type element.
    fn of_element(element: &[u8]) -> Self {
        let essence = media_essence(element);
        match essence.as_ref() {
            "application/x-www-form-urlencoded" => BodyFormat::Form,
            "multipart/form-data" => {
                let boundary = params::parse(element, true).ok().and_then(|(_, params)| {
                    match params::values_of(&params, "boundary").as_deref() {
                        Ok([one]) => Boundary::new(one),
                        _ => None,
                    }
                });
                BodyFormat::Multipart(boundary)
            }
            e if e == "application/grpc"
                || e.starts_with("application/grpc+")
                || e.starts_with("application/grpc-") =>
            {
                BodyFormat::Grpc
            }
            _ if is_json(element) => BodyFormat::Json,
            _ => BodyFormat::Other,
        }
    }

    /// Two declarations of one body together: the same format stays, an unknown type
    /// gives way to a known one, two different formats conflict.
    fn and(self, other: BodyFormat) -> BodyFormat {
        match (self, other) {
            (BodyFormat::Undeclared, f) | (f, BodyFormat::Undeclared) => f,
            (BodyFormat::Other, f) | (f, BodyFormat::Other) => f,
            (a, b) if a == b => a,
            _ => BodyFormat::Conflicting,
        }
    }
}

/// Body facts read from a header map. Every occurrence of a header counts, so a second
/// `content-type` or `content-encoding` cannot hide the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyHeaders {
    /// The declared format.
    pub format: BodyFormat,
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
                    // One media type (no comma anywhere) is its own list, without the Vec.
                    let declared = if value.contains(&b',') {
                        params::split_list(value)
                            .into_iter()
                            .map(BodyFormat::of_element)
                            .fold(BodyFormat::Other, BodyFormat::and)
                    } else {
                        BodyFormat::Other.and(BodyFormat::of_element(value))
                    };
                    out.format = out.format.and(declared);
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

/// Why a body was refused after it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Declared JSON (the body, or a part of a multipart body), and not valid JSON.
    InvalidJson(JsonError),
    /// Declared multipart, and not valid multipart.
    InvalidMultipart(MultipartError),
    /// The filter cannot read it (or a part of it) and `body.unparsed` is `block`.
    Unreadable,
    /// It declares two different formats.
    AmbiguousType,
}

impl BodyError {
    /// The reason code of the refusal.
    pub fn reason(&self) -> Reason {
        match self {
            BodyError::InvalidJson(_) => Reason::BodyInvalidJson,
            BodyError::InvalidMultipart(_) => Reason::BodyInvalidMultipart,
            BodyError::Unreadable => Reason::BodyUnreadable,
            BodyError::AmbiguousType => Reason::BodyTypeAmbiguous,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::InvalidJson(e) => write!(f, "invalid json: {e:?}"),
            BodyError::InvalidMultipart(e) => write!(f, "invalid multipart: {e}"),
            BodyError::Unreadable => f.write_str("a body the filter cannot read"),
            BodyError::AmbiguousType => f.write_str("the body declares two formats"),
        }
    }
}

impl std::error::Error for BodyError {}

/// What the filter does with one body, decided from the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyMode {
    /// Nothing to check: do not buffer.
    #[default]
    Skip,
    /// Buffer the body and enforce it
    /// ([`CompiledConfig::enforce_body`](crate::CompiledConfig::enforce_body)): it is
    /// declared JSON, a form or multipart, and must be what it says, or `body.unparsed`
    /// is `block` and a body that cannot be read is refused.
    Redact,
    /// Buffer the body and enforce it; a body the filter cannot read passes, recorded as
    /// unread (`body.unparsed: pass`).
    Sniff,
    /// Buffer it and replace it by nothing.
    Strip,
    /// Refuse it before reading.
    Refuse(Reason),
}

/// Whether a content type declares JSON: `application/json` or `application/*+json`.
/// Envoy joins repeated headers with commas, so every comma-separated element counts.
pub fn is_json(content_type: &[u8]) -> bool {
    content_type.split(|b| *b == b',').any(|element| {
        let essence = media_essence(element);
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
/// body can carry (or elements must be checked); without that the body is skipped. Every
/// body that must be checked is buffered, whatever its label: a body that parses as JSON
/// is enforced as JSON. Known failures are refused before reading: an unreadable
/// encoding, a declared size over `max_bytes`, two declared formats, a multipart type
/// without a valid boundary.
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
    match (headers.format, unparsed) {
        (BodyFormat::Conflicting, _) => BodyMode::Refuse(Reason::BodyTypeAmbiguous),
        (BodyFormat::Multipart(None), _) => BodyMode::Refuse(Reason::BodyInvalidMultipart),
        (BodyFormat::Json | BodyFormat::Form | BodyFormat::Multipart(_), _)
        | (_, UnparsedBody::Block) => BodyMode::Redact,
        (_, UnparsedBody::Pass) => BodyMode::Sniff,
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
        assert!(is_json(b" APPLICATION/JSON ;x=1"));
        assert!(
            is_json("application/json\u{3000}".as_bytes()),
            "Unicode space trims"
        );
        assert!(!is_json(b"application/js\xffon"));
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
    fn every_body_that_must_be_checked_is_read_whatever_its_label() {
        for ct in [None, Some("text/plain"), Some("application/octet-stream")] {
            let facts = h(ct, None, Some(10));
            assert_eq!(
                body_mode(true, &facts, 100, EncodedBody::Block, UnparsedBody::Pass),
                BodyMode::Sniff,
                "{ct:?}"
            );
            assert_eq!(
                body_mode(true, &facts, 100, EncodedBody::Block, UnparsedBody::Block),
                BodyMode::Redact,
                "{ct:?}: read, and refused only if it cannot be read"
            );
        }
    }

    #[test]
    fn forms_and_multipart_are_read_as_declared() {
        let form = h(Some("application/x-www-form-urlencoded"), None, None);
        assert_eq!(form.format, BodyFormat::Form);
        assert_eq!(
            body_mode(true, &form, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Redact
        );
        let multipart = h(
            Some(r#"multipart/form-data; boundary="----x y""#),
            None,
            None,
        );
        let BodyFormat::Multipart(Some(b)) = multipart.format else {
            panic!("{:?}", multipart.format)
        };
        assert_eq!(b.as_bytes(), b"----x y");
        assert_eq!(
            h(Some("Multipart/Form-Data; Boundary=abc"), None, None).format,
            BodyFormat::Multipart(Boundary::new(b"abc"))
        );
        for broken in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"a\"; boundary=b",
            "multipart/form-data; boundary=\"unterminated",
        ] {
            let facts = h(Some(broken), None, None);
            assert_eq!(facts.format, BodyFormat::Multipart(None), "{broken}");
            assert_eq!(
                body_mode(true, &facts, 100, EncodedBody::Block, UnparsedBody::Pass),
                BodyMode::Refuse(Reason::BodyInvalidMultipart),
                "{broken}"
            );
        }
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(
            h(Some(&long), None, None).format,
            BodyFormat::Multipart(None)
        );
        assert_eq!(
            h(Some("application/grpc+proto"), None, None).format,
            BodyFormat::Grpc
        );
    }

    #[test]
    fn two_declared_formats_are_refused() {
        let list: [(&str, &[u8]); 2] = [
            ("content-type", b"application/json"),
            ("content-type", b"application/x-www-form-urlencoded"),
        ];
        let facts = BodyHeaders::from_headers(list);
        assert_eq!(facts.format, BodyFormat::Conflicting);
        assert_eq!(
            body_mode(true, &facts, 100, EncodedBody::Block, UnparsedBody::Pass),
            BodyMode::Refuse(Reason::BodyTypeAmbiguous)
        );
        let joined = h(
            Some("multipart/form-data; boundary=a, multipart/form-data; boundary=b"),
            None,
            None,
        );
        assert_eq!(joined.format, BodyFormat::Conflicting, "two boundaries");
        let same = h(
            Some("application/json, application/problem+json"),
            None,
            None,
        );
        assert_eq!(same.format, BodyFormat::Json);
    }

    #[test]
    fn the_old_sniff_setting_still_parses_and_means_pass() {
        let doc: UnparsedBody = serde_json::from_str("\"sniff\"").unwrap();
        assert_eq!(doc, UnparsedBody::Pass);
        assert_eq!(serde_json::to_string(&doc).unwrap(), "\"pass\"");
        assert!(serde_json::from_str::<UnparsedBody>("\"snif\"").is_err());
    }
}
