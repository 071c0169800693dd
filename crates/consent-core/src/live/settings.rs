//! The `snapshot` block of the plugin configuration: where consent records come from, how
//! often the fetcher asks, and how fresh a snapshot must be to decide on.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::live::documents::SubjectKeyKind;
use crate::live::signature::{Trust, TrustedKey};
use crate::live::subject_key::SubjectKeying;
use crate::secret::{no_env, EnvLookup, KeyDoc};

/// Shortest accepted HMAC key (subject keying, pseudonyms, log hashes), in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Where the filter gets consent records from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotSource {
    /// The `consents` block of this configuration.
    #[default]
    Inline,
    /// Envoy shared data, published by the `consent_fetcher` singleton (same `vm_id`).
    Shared,
}

/// What the filter does when it cannot trust its snapshot (none yet, or too old).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Block the request.
    #[default]
    Block,
    /// Pass it with every personal-data category removed.
    Strip,
}

/// Who fetches the live snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetcherMode {
    /// A bootstrap singleton with root id `consent_fetcher`.
    #[default]
    Singleton,
    /// The filter's worker VMs, one at a time under a lease.
    WorkerLease,
}

/// The live snapshot settings (`snapshot` in the plugin configuration).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotSettingsDoc {
    /// `inline` (default) or `shared`.
    pub source: SnapshotSource,
    /// Envoy cluster of the consent source (fetcher).
    pub cluster: Option<String>,
    /// Path of the full snapshot at the source.
    pub path: String,
    /// `:authority` of the fetch (default: the cluster name).
    pub authority: Option<String>,
    /// Where deltas are: `{deltas_path}/{version}` gives the changes after `version`
    /// (404: nothing newer). Without it every refresh asks for the full snapshot.
    pub deltas_path: Option<String>,
    /// How often the fetcher asks the source.
    pub refresh_ms: u64,
    /// How long one fetch may take.
    pub timeout_ms: u64,
    /// Oldest snapshot the filter decides on; older ones get the failure mode.
    pub max_staleness_ms: u64,
    /// Buckets are 2^bits; each request reads one.
    pub bucket_bits: u8,
    /// How snapshot subjects are written: `plain` or `hmac_sha256`.
    pub subject_key: SubjectKeyKind,
    /// The HMAC key shared with the source (16+ bytes), inline or `{"env": "NAME"}`.
    /// Never logged.
    pub subject_key_secret: Option<KeyDoc>,
    /// The minisign public key documents must be signed with (the base64 line of a `.pub`
    /// file, `RW...`), inline or `{"env": "NAME"}`.
    pub public_key: Option<KeyDoc>,
    /// A second public key also accepted, while the source's signing key is rotated (the
    /// signature's key id picks the key).
    pub next_public_key: Option<KeyDoc>,
    /// Refuse documents without a valid signature. Default: true whenever `public_key` is
    /// set; `true` without a key is an error.
    pub require_signature: Option<bool>,
    /// `block` (default) or `strip`, when the snapshot is missing or stale.
    pub failure_mode: FailureMode,
    /// Who fetches: `singleton` (an `envoy.bootstrap.wasm` service with root id
    /// `consent_fetcher`, default) or `worker_lease` (one of the filter's own worker VMs,
    /// elected through a lease in shared data; for Istio and Envoy Gateway, which cannot
    /// add bootstrap extensions).
    pub fetcher: FetcherMode,
}

impl Default for SnapshotSettingsDoc {
    fn default() -> Self {
        SnapshotSettingsDoc {
            source: SnapshotSource::default(),
            cluster: None,
            path: "/snapshot".to_string(),
            authority: None,
            deltas_path: None,
            refresh_ms: 5_000,
            timeout_ms: 2_000,
            max_staleness_ms: 30_000,
            bucket_bits: 16,
            subject_key: SubjectKeyKind::default(),
            subject_key_secret: None,
            public_key: None,
            next_public_key: None,
            require_signature: None,
            failure_mode: FailureMode::default(),
            fetcher: FetcherMode::default(),
        }
    }
}

/// Checked live snapshot settings.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// Where records come from.
    pub source: SnapshotSource,
    /// Cluster of the consent source (empty when inline).
    pub cluster: String,
    /// Path of the full snapshot.
    pub path: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// Path prefix of deltas, if the source serves them.
    pub deltas_path: Option<String>,
    /// Refresh period.
    pub refresh_ms: u64,
    /// Fetch timeout.
    pub timeout_ms: u64,
    /// Staleness bound.
    pub max_staleness_ms: u64,
    /// Bucket bits.
    pub bucket_bits: u8,
    /// Subject keying.
    pub keying: SubjectKeying,
    /// The key documents are checked against, and whether a signature is required; `None`
    /// without `public_key` (documents are not checked).
    pub trust: Option<Trust>,
    /// Failure mode.
    pub failure_mode: FailureMode,
    /// Who fetches.
    pub fetcher: FetcherMode,
}

impl SnapshotSettings {
    /// Checks the `snapshot` block; errors name the field under `snapshot.`. Keys given as
    /// `{"env": ...}` are not found (see [`SnapshotSettings::compile_with_env`]).
    pub fn compile(doc: &SnapshotSettingsDoc) -> Result<Self, ConfigError> {
        Self::compile_with_env(doc, &no_env)
    }

    /// [`SnapshotSettings::compile`], reading `{"env": ...}` keys through `env`.
    pub fn compile_with_env(
        doc: &SnapshotSettingsDoc,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let cluster = doc.cluster.clone().unwrap_or_default();
        if doc.source == SnapshotSource::Shared && cluster.trim().is_empty() {
            return Err(ConfigError::invalid(
                "snapshot.cluster",
                "required when snapshot.source is shared (the Envoy cluster of the consent source)",
            ));
        }
        if !doc.path.starts_with('/') {
            return Err(ConfigError::invalid("snapshot.path", "must start with `/`"));
        }
        if doc
            .deltas_path
            .as_deref()
            .is_some_and(|p| !p.starts_with('/'))
        {
            return Err(ConfigError::invalid(
                "snapshot.deltas_path",
                "must start with `/`",
            ));
        }
        if doc.refresh_ms < 100 {
            return Err(ConfigError::invalid(
                "snapshot.refresh_ms",
                "must be at least 100",
            ));
        }
        if doc.max_staleness_ms < doc.refresh_ms {
            return Err(ConfigError::invalid(
                "snapshot.max_staleness_ms",
                "must be at least snapshot.refresh_ms",
            ));
        }
        if !(1..=20).contains(&doc.bucket_bits) {
            return Err(ConfigError::invalid(
                "snapshot.bucket_bits",
                "must be 1 to 20",
            ));
        }
        let keying = compile_keying(doc, env)?;
        let trust = compile_trust(doc, env)?;
        Ok(SnapshotSettings {
            source: doc.source,
            authority: doc.authority.clone().unwrap_or_else(|| cluster.clone()),
            cluster,
            deltas_path: doc
                .deltas_path
                .as_ref()
                .map(|p| p.trim_end_matches('/').to_string()),
            path: doc.path.clone(),
            refresh_ms: doc.refresh_ms,
            timeout_ms: doc.timeout_ms,
            max_staleness_ms: doc.max_staleness_ms,
            bucket_bits: doc.bucket_bits,
            keying,
            trust,
            failure_mode: doc.failure_mode,
            fetcher: doc.fetcher,
        })
    }
}

/// `subject_key` and its secret.
fn compile_keying(
    doc: &SnapshotSettingsDoc,
    env: EnvLookup<'_>,
) -> Result<SubjectKeying, ConfigError> {
    const FIELD: &str = "snapshot.subject_key_secret";
    match (doc.subject_key, &doc.subject_key_secret) {
        (SubjectKeyKind::Plain, _) => Ok(SubjectKeying::Plain),
        (SubjectKeyKind::HmacSha256, Some(secret)) => Ok(SubjectKeying::Hmac(secret.resolve_min(
            FIELD,
            MIN_KEY_BYTES,
            env,
        )?)),
        (SubjectKeyKind::HmacSha256, None) => Err(ConfigError::invalid(
            FIELD,
            format!("required for hmac_sha256, at least {MIN_KEY_BYTES} bytes"),
        )),
    }
}

/// `public_key` and `require_signature`: a key makes signatures required unless the
/// configuration says otherwise; requiring them without a key is an error (never a
/// silently unchecked snapshot).
fn compile_trust(
    doc: &SnapshotSettingsDoc,
    env: EnvLookup<'_>,
) -> Result<Option<Trust>, ConfigError> {
    match (&doc.public_key, doc.require_signature) {
        (None, Some(true)) => Err(ConfigError::invalid(
            "snapshot.require_signature",
            "needs snapshot.public_key (the minisign public key documents are signed with)",
        )),
        (None, _) if doc.next_public_key.is_some() => Err(ConfigError::invalid(
            "snapshot.next_public_key",
            "needs snapshot.public_key (next_public_key is the second key of a rotation)",
        )),
        (None, _) => Ok(None),
        (Some(key), required) => Ok(Some(Trust {
            key: trusted_key(key, "snapshot.public_key", env)?,
            next: doc
                .next_public_key
                .as_ref()
                .map(|k| trusted_key(k, "snapshot.next_public_key", env))
                .transpose()?,
            required: required.unwrap_or(true),
        })),
    }
}

/// A public key of the configuration; errors name `field` and the variable, not the text.
fn trusted_key(key: &KeyDoc, field: &str, env: EnvLookup<'_>) -> Result<TrustedKey, ConfigError> {
    let text = key.resolve(field, env)?;
    TrustedKey::parse(&text, field).map_err(|e| match key {
        KeyDoc::Env { env } => ConfigError::invalid(
            field,
            format!("environment variable `{env}` does not hold a minisign public key (the base64 line of a .pub file, `RW...`)"),
        ),
        KeyDoc::Inline(_) => e,
    })
}
