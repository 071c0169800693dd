//! The `body` block of the plugin configuration: size limit, what to do with bodies the
//! filter cannot read, multi-subject elements, and whether headers wait for the body.

use serde::{Deserialize, Serialize};

use crate::body::matcher::Matcher;
use crate::body::selector::{parse_selector, Segment};
use crate::body::{EncodedBody, UnparsedBody};
use crate::error::ConfigError;
use crate::policy::categories::CategoryIdx;

/// Default largest body the filter buffers (Envoy's default buffer limit is 1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest accepted `body.max_bytes`.
const MAX_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Where the subjects of a multi-subject body are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectsDoc {
    /// Selector of the elements, each about one person (e.g. `$.items[*]`).
    pub elements: String,
    /// Path from an element to its subject id (e.g. `$.user_id`); exact keys only.
    pub subject: String,
}

/// Body handling settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BodyDoc {
    /// Largest body buffered; larger ones get 413 (request) or an error reply (response).
    pub max_bytes: usize,
    /// Bodies with an unreadable `content-encoding`: `block` (default) or `strip`.
    pub encoded: EncodedBody,
    /// Bodies declared as something other than JSON when data must be checked: `pass`
    /// (default), `sniff` (redact them if they parse as JSON) or `block`.
    pub unparsed: UnparsedBody,
    /// Multi-subject bodies: each element is decided with its own subject's consent.
    pub subjects: Vec<SubjectsDoc>,
    /// Hold a message's headers until its body is checked (default). Needs Envoy's
    /// `allow_on_headers_stop_iteration: true`, which Istio's `WasmPlugin` and Envoy
    /// Gateway's `EnvoyExtensionPolicy` cannot set: there, use `false`. Then headers go on
    /// first and the body is buffered and checked before any of it goes on; a refused
    /// request body still gets its error reply, a refused response body resets the stream
    /// (the client gets the headers and no body, never the unchecked body).
    pub hold_headers: bool,
}

impl Default for BodyDoc {
    fn default() -> Self {
        BodyDoc {
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            encoded: EncodedBody::default(),
            unparsed: UnparsedBody::default(),
            subjects: Vec::new(),
            hold_headers: true,
        }
    }
}

/// Checked body settings.
#[derive(Debug, Clone)]
pub struct BodySettings {
    /// Largest body buffered.
    pub max_bytes: usize,
    /// What to do with encoded bodies.
    pub encoded: EncodedBody,
    /// What to do with non-JSON bodies.
    pub unparsed: UnparsedBody,
    /// Element selectors (the match id is the index into `subject_paths`).
    pub elements: Matcher,
    /// Key paths from an element to its subject.
    pub subject_paths: Vec<Vec<String>>,
    /// Hold headers until the body is checked.
    pub hold_headers: bool,
}

impl BodySettings {
    /// Whether multi-subject elements are configured.
    pub fn has_elements(&self) -> bool {
        !self.subject_paths.is_empty()
    }

    /// Checks the `body` block; errors name the field under `body.`.
    pub fn compile(doc: &BodyDoc) -> Result<Self, ConfigError> {
        if doc.max_bytes == 0 || doc.max_bytes > MAX_MAX_BODY_BYTES {
            return Err(ConfigError::invalid(
                "body.max_bytes",
                format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
            ));
        }
        let mut elements = Matcher::default();
        let mut subject_paths = Vec::new();
        for (i, s) in doc.subjects.iter().enumerate() {
            let at = format!("body.subjects[{i}]");
            let selector = parse_selector(&s.elements)
                .map_err(|m| ConfigError::invalid(format!("{at}.elements"), m))?;
            let id = CategoryIdx::from_position(i)
                .map_err(|_| ConfigError::invalid(&at, "too many subject rules"))?;
            elements
                .add(&selector, id)
                .map_err(|m| ConfigError::invalid(format!("{at}.elements"), m))?;
            let subject = parse_selector(&s.subject)
                .map_err(|m| ConfigError::invalid(format!("{at}.subject"), m))?;
            let path: Option<Vec<String>> = subject
                .segments
                .iter()
                .map(|seg| match seg {
                    Segment::Key(k) => Some(k.clone()),
                    _ => None,
                })
                .collect();
            let path = path.ok_or_else(|| {
                ConfigError::invalid(format!("{at}.subject"), "only exact keys, e.g. `$.user_id`")
            })?;
            subject_paths.push(path);
        }
        Ok(BodySettings {
            max_bytes: doc.max_bytes,
            encoded: doc.encoded,
            unparsed: doc.unparsed,
            elements,
            subject_paths,
            hold_headers: doc.hold_headers,
        })
    }
}
