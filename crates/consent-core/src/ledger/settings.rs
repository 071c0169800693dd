//! The `ledger` block of the plugin configuration: whether provisions to third parties and
//! joint users are reported to the consent source's provision ledger, with which key the
//! person is named, and what happens to such provisions while the ledger cannot take them.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::live::settings::{SnapshotSettings, SnapshotSource, MIN_KEY_BYTES};
use crate::live::subject_key::SubjectKeying;
use crate::secret::{EnvLookup, KeyDoc};

/// Most records in one `POST /ledger` batch (the consent source refuses more).
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Largest `POST /ledger` body in bytes (the consent source refuses more).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Most records the drainer may hold unsent.
pub const MAX_BUFFER_RECORDS: usize = 1_000_000;

/// What the filter does with a provision the ledger cannot record now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Block it with `ledger_unavailable`: no provision without a record.
    #[default]
    Block,
    /// Let it through unrecorded, counted in `consent_ledger_dropped`.
    Pass,
}

/// The `ledger` block as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerDoc {
    /// Whether provisions are recorded (default false).
    pub enabled: bool,
    /// Path of `POST /ledger` at the snapshot's `cluster`.
    pub path: String,
    /// Key (16+ bytes) of the keyed subject, inline or `{"env": "NAME"}`: required with
    /// plain snapshot subjects; with `hmac_sha256` snapshots the snapshot's key is used and
    /// this must be absent or the same key. Never logged.
    pub subject_key_secret: Option<KeyDoc>,
    /// `block` (default) or `pass`, while the ledger is unavailable.
    pub on_unavailable: OnUnavailable,
    /// Most records the drainer holds unsent; when full the ledger is unavailable.
    pub buffer_records: usize,
    /// Most records in one `POST /ledger` (at most 1000).
    pub max_batch: usize,
    /// The ledger is unavailable once its oldest unsent record is older than this.
    pub max_unsent_age_ms: u64,
    /// How long one `POST /ledger` may take.
    pub timeout_ms: u64,
}

impl Default for LedgerDoc {
    fn default() -> Self {
        LedgerDoc {
            enabled: false,
            path: "/ledger".to_string(),
            subject_key_secret: None,
            on_unavailable: OnUnavailable::default(),
            buffer_records: 10_000,
            max_batch: 500,
            max_unsent_age_ms: 60_000,
            timeout_ms: 2_000,
        }
    }
}

/// Checked ledger settings.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Records are produced.
    pub enabled: bool,
    /// `POST` path at the consent source.
    pub path: String,
    /// Envoy cluster of the consent source.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// How the keyed subject is computed: HMAC with the ledger key (`Plain` when disabled).
    pub keying: SubjectKeying,
    /// Block or pass while unavailable.
    pub on_unavailable: OnUnavailable,
    /// Bound of the drainer's buffer.
    pub buffer_records: usize,
    /// Records per batch.
    pub max_batch: usize,
    /// Age bound of the oldest unsent record.
    pub max_unsent_age_ms: u64,
    /// Call timeout.
    pub timeout_ms: u64,
    /// A health flag older than this (the drainer stopped writing it) is unavailable.
    pub health_stale_ms: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            enabled: false,
            path: String::new(),
            cluster: String::new(),
            authority: String::new(),
            keying: SubjectKeying::Plain,
            on_unavailable: OnUnavailable::Block,
            buffer_records: 0,
            max_batch: 1,
            max_unsent_age_ms: 0,
            timeout_ms: 0,
            health_stale_ms: 0,
        }
    }
}

impl LedgerSettings {
    /// The keyed subject of `user`: 32 lowercase hex digits, the first 16 bytes of
    /// HMAC-SHA-256(ledger key, user ID), as the consent source files it.
    pub fn subject_for(&self, user: &str) -> String {
        crate::live::subject_key::to_hex(&self.keying.key_of_user(user))
    }
}

impl std::fmt::Debug for LedgerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("LedgerSettings")
            .field("enabled", &self.enabled)
            .field("path", &self.path)
            .field("cluster", &self.cluster)
            .field("on_unavailable", &self.on_unavailable)
            .field("buffer_records", &self.buffer_records)
            .field("max_batch", &self.max_batch)
            .field("max_unsent_age_ms", &self.max_unsent_age_ms)
            .finish_non_exhaustive()
    }
}

impl LedgerSettings {
    /// Checks the `ledger` block against the compiled `snapshot` settings (the cluster and
    /// the subject keying); errors name the field under `ledger.`.
    pub fn compile(
        doc: &LedgerDoc,
        snapshot: &SnapshotSettings,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        if !doc.enabled {
            return Ok(LedgerSettings::default());
        }
        if snapshot.source != SnapshotSource::Shared {
            return Err(ConfigError::invalid(
                "ledger.enabled",
                "needs snapshot.source shared (records go to the snapshot's cluster, sent by the fetcher)",
            ));
        }
        if !doc.path.starts_with('/') {
            return Err(ConfigError::invalid("ledger.path", "must start with `/`"));
        }
        if doc.max_batch == 0 || doc.max_batch > MAX_BATCH_RECORDS {
            return Err(ConfigError::invalid(
                "ledger.max_batch",
                format!("must be 1 to {MAX_BATCH_RECORDS}"),
            ));
        }
        if doc.buffer_records < doc.max_batch || doc.buffer_records > MAX_BUFFER_RECORDS {
            return Err(ConfigError::invalid(
                "ledger.buffer_records",
                format!("must be ledger.max_batch to {MAX_BUFFER_RECORDS}"),
            ));
        }
        if doc.max_unsent_age_ms < 1000 {
            return Err(ConfigError::invalid(
                "ledger.max_unsent_age_ms",
                "must be at least 1000",
            ));
        }
        if doc.timeout_ms == 0 || doc.timeout_ms > doc.max_unsent_age_ms {
            return Err(ConfigError::invalid(
                "ledger.timeout_ms",
                "must be 1 to ledger.max_unsent_age_ms",
            ));
        }
        const FIELD: &str = "ledger.subject_key_secret";
        let key = match (&snapshot.keying, &doc.subject_key_secret) {
            (SubjectKeying::Hmac(secret), None) => secret.clone(),
            (SubjectKeying::Hmac(secret), Some(own)) => {
                if own.resolve_min(FIELD, MIN_KEY_BYTES, env)? != *secret {
                    return Err(ConfigError::invalid(
                        FIELD,
                        "must be absent (or the same key) with hmac_sha256 snapshot subjects: the ledger files people under snapshot.subject_key_secret, as the consent source does",
                    ));
                }
                secret.clone()
            }
            (SubjectKeying::Plain, Some(secret)) => secret.resolve_min(FIELD, MIN_KEY_BYTES, env)?,
            (SubjectKeying::Plain, None) => {
                return Err(ConfigError::invalid(
                    FIELD,
                    format!("required with plain snapshot subjects (the consent source's ledger key), at least {MIN_KEY_BYTES} bytes"),
                ))
            }
        };
        Ok(LedgerSettings {
            enabled: true,
            path: doc.path.clone(),
            cluster: snapshot.cluster.clone(),
            authority: snapshot.authority.clone(),
            keying: SubjectKeying::Hmac(key),
            on_unavailable: doc.on_unavailable,
            buffer_records: doc.buffer_records,
            max_batch: doc.max_batch,
            max_unsent_age_ms: doc.max_unsent_age_ms,
            timeout_ms: doc.timeout_ms,
            health_stale_ms: doc
                .max_unsent_age_ms
                .saturating_add(snapshot.refresh_ms.saturating_mul(3)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::settings::SnapshotSettingsDoc;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn shared() -> SnapshotSettings {
        let doc = SnapshotSettingsDoc {
            source: SnapshotSource::Shared,
            cluster: Some("consent_source".into()),
            ..SnapshotSettingsDoc::default()
        };
        SnapshotSettings::compile(&doc).unwrap()
    }

    fn enabled() -> LedgerDoc {
        LedgerDoc {
            enabled: true,
            subject_key_secret: Some(KeyDoc::Inline("demo-ledger-key-not-a-secret".into())),
            ..LedgerDoc::default()
        }
    }

    fn error(doc: &LedgerDoc, snapshot: &SnapshotSettings) -> String {
        LedgerSettings::compile(doc, snapshot, &crate::secret::no_env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_disabled_ledger_needs_nothing() {
        let inline = SnapshotSettings::compile(&SnapshotSettingsDoc::default()).unwrap();
        let s = LedgerSettings::compile(&LedgerDoc::default(), &inline, &crate::secret::no_env)
            .unwrap();
        assert!(!s.enabled);
    }

    #[test]
    fn an_enabled_ledger_posts_to_the_snapshot_cluster_with_its_key() {
        let s = LedgerSettings::compile(&enabled(), &shared(), &crate::secret::no_env).unwrap();
        assert!(s.enabled);
        assert_eq!(
            (s.cluster.as_str(), s.path.as_str()),
            ("consent_source", "/ledger")
        );
        assert_eq!(
            s.subject_for("u-alice"),
            SubjectKeying::Hmac(b"demo-ledger-key-not-a-secret".to_vec()).subject_for("u-alice")
        );
        assert_eq!(s.on_unavailable, OnUnavailable::Block);
        assert!(!format!("{s:?}").contains("demo-ledger-key"));
    }

    #[test]
    fn plain_subjects_need_a_ledger_key_and_hmac_subjects_reuse_theirs() {
        let mut doc = enabled();
        doc.subject_key_secret = None;
        assert!(error(&doc, &shared()).starts_with("ledger.subject_key_secret: required"));
        let hmac_doc = SnapshotSettingsDoc {
            source: SnapshotSource::Shared,
            cluster: Some("consent_source".into()),
            subject_key: crate::live::SubjectKeyKind::HmacSha256,
            subject_key_secret: Some(KeyDoc::Inline("snapshot-key-0123456789".into())),
            ..SnapshotSettingsDoc::default()
        };
        let hmac = SnapshotSettings::compile(&hmac_doc).unwrap();
        let s = LedgerSettings::compile(&doc, &hmac, &crate::secret::no_env).unwrap();
        assert_eq!(
            s.subject_for("u-bob"),
            SubjectKeying::Hmac(b"snapshot-key-0123456789".to_vec()).subject_for("u-bob")
        );
        assert!(error(&enabled(), &hmac).starts_with("ledger.subject_key_secret: must be absent"));
        let mut same = enabled();
        same.subject_key_secret = Some(KeyDoc::Inline("snapshot-key-0123456789".into()));
        assert!(LedgerSettings::compile(&same, &hmac, &crate::secret::no_env).is_ok());
    }

    #[test]
    fn bad_bounds_name_their_field() {
        let inline = SnapshotSettings::compile(&SnapshotSettingsDoc::default()).unwrap();
        assert!(error(&enabled(), &inline).starts_with("ledger.enabled:"));
        type Edit = fn(&mut LedgerDoc);
        let cases: [(Edit, &str); 6] = [
            (|d| d.path = "ledger".into(), "ledger.path:"),
            (|d| d.max_batch = 0, "ledger.max_batch:"),
            (|d| d.max_batch = 1001, "ledger.max_batch:"),
            (|d| d.buffer_records = 10, "ledger.buffer_records:"),
            (|d| d.max_unsent_age_ms = 10, "ledger.max_unsent_age_ms:"),
            (|d| d.timeout_ms = 0, "ledger.timeout_ms:"),
        ];
        for (edit, field) in cases {
            let mut doc = enabled();
            edit(&mut doc);
            assert!(error(&doc, &shared()).starts_with(field), "{field}");
        }
    }
}
