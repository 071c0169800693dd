//! Decision logs: one JSON line per request with what was decided and done, for operators.
//! A line never holds a personal-data value or a raw user ID: the subject is a keyed hash,
//! field paths name only selector keys and indexes, and nothing the client sent is echoed
//! except the request id (Envoy's `x-request-id`, checked to be a short token).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::body::redactor::{FieldHit, HitAction};
use crate::decide::decision::Decision;
use crate::decide::explain::{explain, Explanation};
use crate::decide::reason::Reason;
use crate::direction::{Direction, Mode};
use crate::error::ConfigError;
use crate::policy::compiled::CompiledPolicy;
use crate::policy::routes::RouteTable;

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// Decision logging as written in the plugin configuration (`decision_log`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogDoc {
    /// Whether decision lines are written (Envoy's log, level info, `consent_decision ` prefix).
    #[serde(default)]
    pub enabled: bool,
    /// Share of requests logged, 0.0 to 1.0 (by a hash of the request id).
    #[serde(default = "one")]
    pub sample_rate: f64,
    /// Log every block and refusal whatever the sample rate.
    #[serde(default = "yes")]
    pub always_log_blocks: bool,
    /// Record the path of each body field removed or coarsened (reads cost a little more).
    #[serde(default = "yes")]
    pub field_paths: bool,
    /// Key (16+ bytes) for the subject hash, inline or `{"env": "NAME"}`; defaults to
    /// `snapshot.subject_key_secret`, then `pseudonymisation_key`. Without any, lines carry
    /// no subject. Never logged.
    #[serde(default)]
    pub subject_key_secret: Option<crate::secret::KeyDoc>,
}

impl Default for DecisionLogDoc {
    fn default() -> Self {
        DecisionLogDoc {
            enabled: false,
            sample_rate: 1.0,
            always_log_blocks: true,
            field_paths: true,
            subject_key_secret: None,
        }
    }
}

/// Checked decision-log settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionLogSettings {
    /// Lines are written.
    pub enabled: bool,
    /// Sample rate as a threshold on a 32-bit hash.
    pub threshold: u64,
    /// Blocks are always logged.
    pub always_log_blocks: bool,
    /// Field paths are recorded.
    pub field_paths: bool,
    /// Key of the subject hash.
    pub subject_key: Option<Vec<u8>>,
}

impl DecisionLogSettings {
    /// Checks `doc`; `fallback_key` is the key used when the block names none. A key given
    /// as `{"env": ...}` is not found (see [`DecisionLogSettings::compile_with_env`]).
    pub fn compile(doc: &DecisionLogDoc, fallback_key: Option<&[u8]>) -> Result<Self, ConfigError> {
        Self::compile_with_env(doc, fallback_key, &crate::secret::no_env)
    }

    /// [`DecisionLogSettings::compile`], reading an `{"env": ...}` key through `env`.
    pub fn compile_with_env(
        doc: &DecisionLogDoc,
        fallback_key: Option<&[u8]>,
        env: crate::secret::EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&doc.sample_rate) {
            return Err(ConfigError::invalid(
                "decision_log.sample_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        let subject_key = match &doc.subject_key_secret {
            Some(k) => Some(k.resolve_min(
                "decision_log.subject_key_secret",
                crate::live::MIN_KEY_BYTES,
                env,
            )?),
            None => fallback_key.map(<[u8]>::to_vec),
        };
        Ok(DecisionLogSettings {
            enabled: doc.enabled,
            threshold: (doc.sample_rate * f64::from(u32::MAX)).round() as u64,
            always_log_blocks: doc.always_log_blocks,
            field_paths: doc.enabled && doc.field_paths,
            subject_key,
        })
    }

    /// Whether the request with `request_id` is in the sample (`blocked`: the filter blocked
    /// or refused it). Requests without an id use `fallback` (e.g. a per-VM counter).
    pub fn sampled(&self, request_id: Option<&str>, fallback: u64, blocked: bool) -> bool {
        if !self.enabled {
            return false;
        }
        if blocked && self.always_log_blocks {
            return true;
        }
        let hash = match request_id {
            Some(id) => u64::from(fnv1a(id.as_bytes())),
            None => fallback.wrapping_mul(0x9E37_79B9) & u64::from(u32::MAX),
        };
        hash < self.threshold
    }

    /// The keyed hash of a user ID (32 hex characters), if a key is configured.
    pub fn subject_hash(&self, user: &str) -> Option<String> {
        let key = self.subject_key.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(b"consent-filter decision log\0");
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        Some(crate::live::subject_key::to_hex(
            digest.get(..16).unwrap_or_default(),
        ))
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Keeps a client-sent request id only when it is a short token (Envoy's UUIDs are), so a
/// crafted id cannot smuggle data into logs.
pub fn safe_request_id(raw: &str) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(raw)
}

/// Counts of what was removed (or, in dry-run, would have been).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Request headers.
    pub request_headers: usize,
    /// Query parameters.
    pub query_params: usize,
    /// Response headers.
    pub response_headers: usize,
    /// Cookies taken out of `Cookie` request headers.
    pub request_cookies: usize,
    /// `Set-Cookie` response headers dropped.
    pub response_cookies: usize,
    /// Request body fields (removed or transformed).
    pub request_body_fields: usize,
    /// Response body fields (removed or transformed).
    pub response_body_fields: usize,
    /// Multi-subject elements dropped.
    pub elements_dropped: usize,
}

impl Removed {
    /// Counts body fields removed or transformed in `direction`.
    pub fn add_body_fields(&mut self, direction: Direction, fields: usize) {
        match direction {
            Direction::Request => self.request_body_fields += fields,
            Direction::Response => self.response_body_fields += fields,
        }
    }
}

/// One body field in a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedField {
    /// Request or response body.
    pub direction: Direction,
    /// Path (selector keys and indexes only).
    pub path: String,
    /// Category id.
    pub category: Option<String>,
    /// What was done.
    pub action: HitAction,
}

impl LoggedField {
    /// A body field of `direction` as logged.
    pub fn from_hit(policy: &CompiledPolicy, direction: Direction, hit: &FieldHit) -> Self {
        LoggedField {
            direction,
            path: hit.path.clone(),
            category: hit.category.map(|c| policy.category_id(c).to_string()),
            action: hit.action,
        }
    }
}

/// Everything a request's stream did, collected by the glue until the stream ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFacts {
    /// Envoy's request id, when it is a safe token.
    pub request_id: Option<String>,
    /// Envoy route name.
    pub route_name: Option<String>,
    /// Keyed hash of the user ID.
    pub subject: Option<String>,
    /// Decided in dry-run mode: nothing was changed.
    pub dry_run: bool,
    /// A later refusal (body too large, invalid JSON, ...) that overrode the decision.
    pub refusal: Option<(Direction, Reason)>,
    /// Removal counts.
    pub removed: Removed,
    /// Body fields acted on.
    pub fields: Vec<LoggedField>,
    /// More fields were acted on than recorded.
    pub fields_truncated: bool,
    /// Body bytes inspected, request and response (by [`Direction::index`]).
    pub body_bytes: [usize; 2],
    /// A body passed without being read (a format the filter cannot read, with
    /// `body.unparsed: pass`), request and response (by [`Direction::index`]).
    pub body_unread: [bool; 2],
    /// Snapshot version used, when the snapshot is live.
    pub snapshot_version: Option<u64>,
}

/// One decision log line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine<'a> {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// `enforce` or `dry_run`.
    pub mode: Mode,
    /// Envoy's request id.
    pub request_id: Option<&'a str>,
    /// Envoy route name.
    pub route: Option<&'a str>,
    /// Keyed hash of the user ID.
    pub subject: Option<&'a str>,
    /// The decision explained (outcome, reason, purpose, party, rule, consent facts, redactions).
    #[serde(flatten)]
    pub decision: Explanation<'a>,
    /// What finally happened when a body refusal overrode the decision: `block` (or, in
    /// dry-run, `would_block`) with its reason and direction.
    pub refused: Option<Refused>,
    /// What was removed (or would have been, in dry-run).
    pub removed: Removed,
    /// Body fields acted on.
    pub fields: &'a [LoggedField],
    /// More fields were acted on than listed.
    pub fields_truncated: bool,
    /// Body bytes inspected, request and response.
    pub body_bytes: [usize; 2],
    /// A body passed unread, request and response.
    pub body_unread: [bool; 2],
    /// Consent snapshot version.
    pub snapshot_version: Option<u64>,
}

impl LogLine<'_> {
    /// The line as one line of JSON.
    pub fn to_json(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}

/// A refusal in a log line.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Refused {
    /// Which body.
    pub direction: Direction,
    /// Why.
    pub reason: &'static str,
}

/// Builds the log line of one stream.
pub fn log_line<'a>(
    policy: &'a CompiledPolicy,
    routes: &'a RouteTable,
    decision: &Decision,
    stream: &'a StreamFacts,
    ts_ms: u64,
) -> LogLine<'a> {
    LogLine {
        ts_ms,
        mode: Mode::of(stream.dry_run),
        request_id: stream.request_id.as_deref(),
        route: stream.route_name.as_deref(),
        subject: stream.subject.as_deref(),
        decision: explain(policy, routes, decision),
        refused: stream.refusal.map(|(direction, reason)| Refused {
            direction,
            reason: reason.as_str(),
        }),
        removed: stream.removed,
        fields: &stream.fields,
        fields_truncated: stream.fields_truncated,
        body_bytes: stream.body_bytes,
        body_unread: stream.body_unread,
        snapshot_version: stream.snapshot_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn settings(doc: serde_json::Value) -> Result<DecisionLogSettings, ConfigError> {
        let doc: DecisionLogDoc = serde_json::from_value(doc).unwrap();
        DecisionLogSettings::compile(&doc, Some(b"fallback-key-0123456789"))
    }

    #[test]
    fn sampling_follows_the_rate_and_always_keeps_blocks() {
        let s = settings(serde_json::json!({"enabled": true, "sample_rate": 0.25})).unwrap();
        let ids: Vec<String> = (0..4000).map(|i| format!("req-{i}")).collect();
        let kept = ids
            .iter()
            .filter(|id| s.sampled(Some(id), 0, false))
            .count();
        assert!((800..1200).contains(&kept), "{kept} of 4000 at 0.25");
        assert!(ids.iter().all(|id| s.sampled(Some(id), 0, true)));
        let off = settings(serde_json::json!({"enabled": false})).unwrap();
        assert!(!off.sampled(Some("x"), 0, true));
        let none = settings(
            serde_json::json!({"enabled": true, "sample_rate": 0.0, "always_log_blocks": false}),
        )
        .unwrap();
        assert!(!none.sampled(Some("x"), 0, true));
    }

    #[test]
    fn the_subject_is_a_keyed_hash_never_the_id() {
        let s = settings(serde_json::json!({"enabled": true})).unwrap();
        let h = s.subject_hash("u-alice").unwrap();
        assert_eq!(h.len(), 32);
        assert!(!h.contains("alice"));
        assert_eq!(Some(h.clone()), s.subject_hash("u-alice"));
        assert_ne!(Some(h), s.subject_hash("u-bob"));
        let doc: DecisionLogDoc =
            serde_json::from_value(serde_json::json!({"enabled": true})).unwrap();
        assert_eq!(
            DecisionLogSettings::compile(&doc, None)
                .unwrap()
                .subject_hash("u"),
            None
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        assert_eq!(
            settings(serde_json::json!({"sample_rate": 2.0}))
                .unwrap_err()
                .path(),
            "decision_log.sample_rate"
        );
        assert_eq!(
            settings(serde_json::json!({"subject_key_secret": "short"}))
                .unwrap_err()
                .path(),
            "decision_log.subject_key_secret"
        );
    }

    #[test]
    fn request_ids_that_are_not_short_tokens_are_dropped() {
        assert_eq!(
            safe_request_id("0f6a1d2e-3b4c-4d5e-8f90-112233445566"),
            Some("0f6a1d2e-3b4c-4d5e-8f90-112233445566")
        );
        assert_eq!(safe_request_id("alice@example.jp"), None);
        assert_eq!(safe_request_id(&"a".repeat(65)), None);
    }

    #[test]
    fn a_log_line_has_the_decision_the_fields_and_no_user_id() {
        let c = compile_config(
            br#"{"caller": {"unidentified_party": "tsunagu"}, "pseudonymisation_key": "demo-key-0123456789abcdef",
                 "decision_log": {"enabled": true},
                 "consents": {"records": [{"subject": "u-secret", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let headers: [(&str, &[u8]); 2] = [
            ("x-user-id", b"u-secret"),
            ("x-data-purpose", b"marketing.newsletters"),
        ];
        let d = c.evaluate(headers);
        let stream = StreamFacts {
            request_id: Some("r-1".into()),
            subject: c.decision_log.subject_hash("u-secret"),
            removed: Removed {
                response_body_fields: 1,
                ..Removed::default()
            },
            fields: vec![LoggedField {
                direction: Direction::Response,
                path: "$.location.gps".into(),
                category: Some("location.gps".into()),
                action: HitAction::Removed,
            }],
            ..StreamFacts::default()
        };
        let line = serde_json::to_string(&log_line(&c.policy, &c.routes, &d, &stream, 1)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["mode"], "enforce");
        assert_eq!(v["reason"], "consent_granted");
        assert_eq!(v["purpose"]["id"], "marketing.newsletters");
        assert_eq!(v["party"]["id"], "tsunagu");
        assert_eq!(v["fields"][0]["path"], "$.location.gps");
        assert_eq!(v["policy_version"], 1);
        assert!(!line.contains("u-secret"), "{line}");
        assert_eq!(v["subject"].as_str().unwrap().len(), 32);
        assert_eq!(v["body_unread"], serde_json::json!([false, false]));
        let unread = StreamFacts {
            body_unread: [true, false],
            ..StreamFacts::default()
        };
        let line = log_line(&c.policy, &c.routes, &d, &unread, 1)
            .to_json()
            .unwrap();
        assert!(line.contains(r#""body_unread":[true,false]"#), "{line}");
    }
}
