//! The plugin configuration: parsed once, checked block by block by the module that owns
//! each block, and compiled into an immutable [`CompiledConfig`].

use serde::{Deserialize, Serialize};

use crate::body::settings::{BodyDoc, BodySettings};
use crate::decide::query::{QueryDoc, QuerySettings};
use crate::error::ConfigError;
use crate::grpc::{GrpcDoc, GrpcSettings};
use crate::ledger::{LedgerDoc, LedgerSettings};
use crate::live::records::{ConsentIndex, SnapshotDoc};
use crate::live::settings::{SnapshotSettings, SnapshotSettingsDoc, MIN_KEY_BYTES};
use crate::live::shared_keys::SharedKeys;
use crate::observe::access_log::{ObserveDoc, ObserveSettings};
use crate::observe::decision_log::{DecisionLogDoc, DecisionLogSettings};
use crate::policy::caller::{CallerDoc, CallerSettings};
use crate::policy::compiled::{normalise_header_name, CompiledPolicy, PolicyDoc};
use crate::policy::gpc::{GpcDoc, GpcSettings};
use crate::policy::routes::{RouteRuleDoc, RouteTable};
use crate::secret::{no_env, EnvLookup, KeyDoc};

#[cfg(test)]
mod tests;

/// Default header carrying who the data is about.
pub const DEFAULT_USER_HEADER: &str = "x-user-id";
/// Default header carrying why the data is used.
pub const DEFAULT_PURPOSE_HEADER: &str = "x-data-purpose";
/// Default header telling backends what the filter decided.
pub const DEFAULT_DECISION_HEADER: &str = "x-consent-decision";
/// Default status of a block reply.
pub const DEFAULT_BLOCK_STATUS: u16 = 403;

/// The plugin configuration as an operator writes it (Envoy's `configuration` value).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigDoc {
    /// The policy to enforce; the shipped default policy when absent.
    pub policy: Option<PolicyDoc>,
    /// Header naming the data subject.
    pub user_header: String,
    /// Header naming the data purpose.
    pub purpose_header: String,
    /// Header set on the request to tell backends what was decided (any client value is replaced).
    pub decision_header: String,
    /// Whether a request without a user ID is blocked (`user_missing`).
    pub require_user: bool,
    /// HTTP status of block replies (400-599).
    pub block_status: u16,
    /// Inline consent snapshot.
    pub consents: SnapshotDoc,
    /// Body handling.
    pub body: BodyDoc,
    /// gRPC bodies: the descriptor set and what to do with unknown methods.
    pub grpc: GrpcDoc,
    /// How query strings and form bodies are split into parameters.
    pub query: QueryDoc,
    /// Key for pseudonyms (HMAC-SHA-256), at least 16 bytes, inline or `{"env": "NAME"}`.
    /// Without it, `pseudonymise` transforms remove the value instead. Never logged.
    pub pseudonymisation_key: Option<KeyDoc>,
    /// Live snapshot: where records come from and how fresh they must be.
    pub snapshot: SnapshotSettingsDoc,
    /// Who receives the data: where the caller's identity comes from.
    pub caller: CallerDoc,
    /// Global Privacy Control handling.
    pub gpc: GpcDoc,
    /// Per-route rules, matched by route name, host and path prefix.
    pub routes: Vec<RouteRuleDoc>,
    /// The rule for requests no route rule matches.
    pub default_route: RouteRuleDoc,
    /// Shadow mode: decide and record everything, change nothing (rules may override).
    pub dry_run: bool,
    /// Decision log lines.
    pub decision_log: DecisionLogDoc,
    /// What Envoy's access logs can read (the decision in filter state).
    pub observe: ObserveDoc,
    /// The provision ledger: records of provisions to third parties and joint users.
    pub ledger: LedgerDoc,
}

impl Default for ConfigDoc {
    fn default() -> Self {
        ConfigDoc {
            policy: None,
            user_header: DEFAULT_USER_HEADER.to_string(),
            purpose_header: DEFAULT_PURPOSE_HEADER.to_string(),
            decision_header: DEFAULT_DECISION_HEADER.to_string(),
            require_user: true,
            block_status: DEFAULT_BLOCK_STATUS,
            consents: SnapshotDoc::default(),
            body: BodyDoc::default(),
            grpc: GrpcDoc::default(),
            query: QueryDoc::default(),
            pseudonymisation_key: None,
            snapshot: SnapshotSettingsDoc::default(),
            caller: CallerDoc::default(),
            gpc: GpcDoc::default(),
            routes: Vec::new(),
            default_route: RouteRuleDoc::default(),
            dry_run: false,
            decision_log: DecisionLogDoc::default(),
            observe: ObserveDoc::default(),
            ledger: LedgerDoc::default(),
        }
    }
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

/// A configuration ready for the request path: settings, policy and consents. Its
/// request-path methods are in `decide::entry` (deciding) and `body::enforce` (bodies).
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// Checked settings.
    pub settings: Settings,
    /// Compiled policy.
    pub policy: CompiledPolicy,
    /// Consent snapshot.
    pub consents: ConsentIndex,
    /// Body handling.
    pub body: BodySettings,
    /// gRPC bodies: schema, compiled protobuf selectors, unknown methods.
    pub grpc: GrpcSettings,
    /// Query-string and form splitting.
    pub query: QuerySettings,
    /// Pseudonymisation key.
    pub key: Option<Vec<u8>>,
    /// Live snapshot settings.
    pub snapshot: SnapshotSettings,
    /// Fingerprint of the policy, checked against published buckets.
    pub policy_fingerprint: [u8; 8],
    /// Where the live snapshot of this policy, keying and layout is in shared data.
    pub shared_keys: SharedKeys,
    /// Caller identification.
    pub caller: CallerSettings,
    /// GPC handling.
    pub gpc: GpcSettings,
    /// Route rules.
    pub routes: RouteTable,
    /// Decision logging.
    pub decision_log: DecisionLogSettings,
    /// Access-log exposure of the decision.
    pub observe: ObserveSettings,
    /// The provision ledger.
    pub ledger: LedgerSettings,
    /// The secret keys written inline in the configuration (field paths, for a warning:
    /// `{"env": "NAME"}` keeps them out of it).
    pub inline_secrets: Vec<&'static str>,
}

/// Parses one JSON document; errors name the field (under `root`), never a value, and
/// anything after the document is an error.
pub fn parse_json_doc<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    root: &str,
) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc: T =
        serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_serde(root, e))?;
    de.end().map_err(|_| {
        let at = if root.is_empty() { "(document)" } else { root };
        ConfigError::invalid(at, "trailing characters after the JSON document")
    })?;
    Ok(doc)
}

/// Parses and checks a plugin configuration. Empty input means every default. Keys given as
/// `{"env": "NAME"}` are not found: hosts with an environment use
/// [`compile_config_with_env`].
pub fn compile_config(bytes: &[u8]) -> Result<CompiledConfig, ConfigError> {
    compile_config_with_env(bytes, &no_env)
}

/// [`compile_config`], reading keys given as `{"env": "NAME"}` through `env` (the filter
/// passes the Wasm VM's environment, `std::env::var`).
pub fn compile_config_with_env(
    bytes: &[u8],
    env: EnvLookup<'_>,
) -> Result<CompiledConfig, ConfigError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ConfigError::invalid("(document)", "the configuration is not UTF-8"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    compile_doc_with_env(&parse_json_doc(text.as_bytes(), "")?, env)
}

/// Checks a parsed configuration document (keys from the environment are not found).
pub fn compile_doc(doc: &ConfigDoc) -> Result<CompiledConfig, ConfigError> {
    compile_doc_with_env(doc, &no_env)
}

/// Checks a parsed configuration document, reading `{"env": ...}` keys through `env`.
pub fn compile_doc_with_env(
    doc: &ConfigDoc,
    env: EnvLookup<'_>,
) -> Result<CompiledConfig, ConfigError> {
    let policy = match &doc.policy {
        Some(p) => CompiledPolicy::compile(p, "policy")?,
        None => CompiledPolicy::default_policy()?,
    };
    let settings = compile_settings(doc, &policy)?;
    let consents = ConsentIndex::compile(&doc.consents, &policy, "consents")?;
    let body = BodySettings::compile(&doc.body)?;
    let grpc = GrpcSettings::compile(&doc.grpc, &policy)?;
    let snapshot = SnapshotSettings::compile_with_env(&doc.snapshot, env)?;
    let key = doc
        .pseudonymisation_key
        .as_ref()
        .map(|k| k.resolve_min("pseudonymisation_key", MIN_KEY_BYTES, env))
        .transpose()?;
    let policy_fingerprint = crate::live::buckets::fingerprint(&policy);
    let shared_keys = SharedKeys::new(policy_fingerprint, &snapshot.keying, snapshot.bucket_bits);
    let caller = CallerSettings::compile(
        &doc.caller,
        &policy,
        [
            &settings.user_header,
            &settings.purpose_header,
            &settings.decision_header,
        ],
    )?;
    let gpc = GpcSettings::compile(&doc.gpc, &policy, "gpc")?;
    let routes = RouteTable::compile(
        &doc.routes,
        &doc.default_route,
        &policy,
        doc.require_user,
        doc.dry_run,
    )?;
    let snapshot_secret = match &snapshot.keying {
        crate::live::subject_key::SubjectKeying::Hmac(secret) => Some(secret.clone()),
        crate::live::subject_key::SubjectKeying::Plain => doc
            .snapshot
            .subject_key_secret
            .as_ref()
            .map(|k| k.resolve_min("snapshot.subject_key_secret", MIN_KEY_BYTES, env))
            .transpose()?,
    };
    let log_key = snapshot_secret.as_deref().or(key.as_deref());
    let decision_log = DecisionLogSettings::compile_with_env(&doc.decision_log, log_key, env)?;
    let ledger = LedgerSettings::compile(&doc.ledger, &snapshot, env)?;
    Ok(CompiledConfig {
        settings,
        policy,
        consents,
        body,
        grpc,
        query: QuerySettings::compile(&doc.query),
        key,
        snapshot,
        shared_keys,
        policy_fingerprint,
        caller,
        gpc,
        routes,
        decision_log,
        observe: ObserveSettings::compile(&doc.observe),
        ledger,
        inline_secrets: inline_secrets(doc),
    })
}

/// The secret keys `doc` writes inline (the snapshot's public key is not a secret).
fn inline_secrets(doc: &ConfigDoc) -> Vec<&'static str> {
    [
        (
            "snapshot.subject_key_secret",
            &doc.snapshot.subject_key_secret,
        ),
        ("pseudonymisation_key", &doc.pseudonymisation_key),
        (
            "decision_log.subject_key_secret",
            &doc.decision_log.subject_key_secret,
        ),
        ("ledger.subject_key_secret", &doc.ledger.subject_key_secret),
    ]
    .into_iter()
    .filter(|(_, key)| key.as_ref().is_some_and(KeyDoc::is_inline))
    .map(|(field, _)| field)
    .collect()
}

/// The header names and reply status: three different headers, none of them a data
/// category's, and an error status.
fn compile_settings(doc: &ConfigDoc, policy: &CompiledPolicy) -> Result<Settings, ConfigError> {
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
    Ok(Settings {
        user_header,
        purpose_header,
        decision_header,
        require_user: doc.require_user,
        block_status: doc.block_status,
    })
}
