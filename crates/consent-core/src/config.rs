//! The plugin configuration: typed, checked once, compiled into an immutable form.

use serde::{Deserialize, Serialize};

use crate::decision::{decide, Decision};
use crate::error::ConfigError;
use crate::policy::{normalise_header_name, CompiledPolicy, PolicyDoc};
use crate::request::RequestView;
use crate::snapshot::{ConsentIndex, SnapshotDoc};

/// Default header carrying who the data is about.
pub const DEFAULT_USER_HEADER: &str = "x-user-id";
/// Default header carrying why the data is used.
pub const DEFAULT_PURPOSE_HEADER: &str = "x-data-purpose";
/// Default header telling backends what the filter decided.
pub const DEFAULT_DECISION_HEADER: &str = "x-consent-decision";
/// Default status of a block reply.
pub const DEFAULT_BLOCK_STATUS: u16 = 403;

fn default_user_header() -> String {
    DEFAULT_USER_HEADER.to_string()
}
fn default_purpose_header() -> String {
    DEFAULT_PURPOSE_HEADER.to_string()
}
fn default_decision_header() -> String {
    DEFAULT_DECISION_HEADER.to_string()
}
fn default_require_user() -> bool {
    true
}
fn default_block_status() -> u16 {
    DEFAULT_BLOCK_STATUS
}

/// The plugin configuration as an operator writes it (Envoy's `configuration` value).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    /// The policy to enforce; the shipped default policy when absent.
    #[serde(default)]
    pub policy: Option<PolicyDoc>,
    /// Header naming the data subject.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// Header naming the data purpose.
    #[serde(default = "default_purpose_header")]
    pub purpose_header: String,
    /// Header set on the request to tell backends what was decided (any client value is replaced).
    #[serde(default = "default_decision_header")]
    pub decision_header: String,
    /// Whether a request without a user ID is blocked (`user_missing`).
    #[serde(default = "default_require_user")]
    pub require_user: bool,
    /// HTTP status of block replies (400-599).
    #[serde(default = "default_block_status")]
    pub block_status: u16,
    /// Inline consent snapshot.
    #[serde(default)]
    pub consents: SnapshotDoc,
}

/// Checked settings the request path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lowercase user-ID header name.
    pub user_header: String,
    /// Lowercase purpose header name.
    pub purpose_header: String,
    /// Lowercase decision header name.
    pub decision_header: String,
    /// Block requests without a user ID.
    pub require_user: bool,
    /// Status of block replies.
    pub block_status: u16,
}

/// A configuration ready for the request path: settings, policy and consents.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// Checked settings.
    pub settings: Settings,
    /// Compiled policy.
    pub policy: CompiledPolicy,
    /// Consent snapshot.
    pub consents: ConsentIndex,
}

impl CompiledConfig {
    /// Reads a request's identity headers and decides it against this configuration.
    pub fn evaluate<'a, I>(&self, headers: I) -> Decision
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let view = RequestView::from_headers(
            &self.settings.user_header,
            &self.settings.purpose_header,
            headers,
        );
        self.decide(&view)
    }

    /// Looks up the request's user and decides.
    pub fn decide(&self, view: &RequestView<'_>) -> Decision {
        let record = match view.user {
            crate::request::HeaderValue::One(user) => self.consents.lookup(user),
            _ => None,
        };
        decide(view, &self.policy, record, self.settings.require_user)
    }
}

/// Parses and checks a plugin configuration. Empty input means every default.
pub fn compile_config(bytes: &[u8]) -> Result<CompiledConfig, ConfigError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ConfigError::invalid("(document)", "the configuration is not UTF-8"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: ConfigDoc =
        serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_serde("", e))?;
    de.end().map_err(|_| {
        ConfigError::invalid("(document)", "trailing characters after the JSON document")
    })?;
    compile_doc(&doc)
}

/// Checks a parsed configuration document.
pub fn compile_doc(doc: &ConfigDoc) -> Result<CompiledConfig, ConfigError> {
    let policy = match &doc.policy {
        Some(p) => CompiledPolicy::compile(p, "policy")?,
        None => CompiledPolicy::default_policy()?,
    };
    let user_header = normalise_header_name(&doc.user_header, "user_header")?;
    let purpose_header = normalise_header_name(&doc.purpose_header, "purpose_header")?;
    let decision_header = normalise_header_name(&doc.decision_header, "decision_header")?;
    if user_header == purpose_header
        || decision_header == user_header
        || decision_header == purpose_header
    {
        return Err(ConfigError::invalid(
            "decision_header",
            "user_header, purpose_header and decision_header must be three different headers",
        ));
    }
    for (field, name) in [
        ("user_header", &user_header),
        ("purpose_header", &purpose_header),
        ("decision_header", &decision_header),
    ] {
        if !policy.header_categories(name).is_empty() {
            return Err(ConfigError::invalid(
                field,
                format!("`{name}` is also mapped to a data category in the policy"),
            ));
        }
    }
    if !(400..=599).contains(&doc.block_status) {
        return Err(ConfigError::invalid(
            "block_status",
            "must be an HTTP error status (400-599)",
        ));
    }
    let consents = ConsentIndex::compile(&doc.consents, &policy, "consents")?;
    Ok(CompiledConfig {
        settings: Settings {
            user_header,
            purpose_header,
            decision_header,
            require_user: doc.require_user,
            block_status: doc.block_status,
        },
        policy,
        consents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Outcome;
    use crate::reason::Reason;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn empty_configuration_takes_every_default() {
        let c = compile_config(b"").unwrap();
        assert_eq!(c.settings.user_header, "x-user-id");
        assert_eq!(c.settings.purpose_header, "x-data-purpose");
        assert_eq!(c.settings.block_status, 403);
        assert!(c.settings.require_user);
        assert_eq!(c.policy.id, "saitama-minna-app");
        assert!(c.consents.is_empty());
    }

    #[test]
    fn a_typo_in_a_key_is_rejected_not_ignored() {
        let err = compile_config(br#"{"require_usr": false}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `require_usr`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_purpose_in_the_snapshot_names_the_field() {
        let err = compile_config(
            br#"{"consents": {"records": [{"subject": "u-1", "grants": {"marketing.campains": {"policy_version": 1}}}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "consents.records[0].grants.marketing.campains");
        assert!(err.to_string().contains("unknown purpose"), "{err}");
    }

    #[test]
    fn malformed_json_is_rejected() {
        let err = compile_config(br#"{"require_user": tru"#).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn a_wrong_value_type_names_the_field_without_the_value() {
        let err = compile_config(
            br#"{"consents": {"records": [{"subject": "u-secret", "stop_use": "u-secret"}]}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), "consents.records[0].stop_use");
        assert!(!err.to_string().contains("u-secret"), "{err}");
    }

    #[test]
    fn header_names_are_lowercased_and_must_differ() {
        let c = compile_config(br#"{"user_header": "X-Subject"}"#).unwrap();
        assert_eq!(c.settings.user_header, "x-subject");
        let err = compile_config(br#"{"user_header": "x-data-purpose"}"#).unwrap_err();
        assert_eq!(err.path(), "decision_header");
    }

    #[test]
    fn identity_headers_cannot_be_category_headers() {
        let err = compile_config(br#"{"user_header": "x-device-id"}"#).unwrap_err();
        assert_eq!(err.path(), "user_header");
    }

    #[test]
    fn block_status_must_be_an_error_status() {
        let err = compile_config(br#"{"block_status": 200}"#).unwrap_err();
        assert_eq!(err.path(), "block_status");
        assert!(compile_config(br#"{"block_status": 451}"#).is_ok());
    }

    #[test]
    fn evaluate_reads_headers_and_looks_up_the_user() {
        let c = compile_config(
            br#"{"consents": {"records": [{"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-1"), ("x-data-purpose", b"surveys")];
        let d = c.evaluate(h);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Redact, Reason::ConsentGranted)
        );
        let h: [(&str, &[u8]); 2] = [("x-user-id", b"u-2"), ("x-data-purpose", b"surveys")];
        assert_eq!(c.evaluate(h).reason, Reason::ConsentMissing);
    }
}
