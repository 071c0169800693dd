//! Consent records and the index the filter looks them up in.
//!
//! A snapshot is a list of records, one per person. It is compiled against a policy:
//! purpose and category ids become indexes and records are keyed by subject for a lookup
//! that never scans.
//!
//! Records an operator writes (inline in the configuration, or sent to the reference
//! source) are compiled strictly: an unknown purpose or category is an error naming the
//! field. Live snapshots are compiled leniently, because policies change (§11) while
//! snapshots keep flowing: ids the loaded policy does not know are skipped rather than
//! rejecting every record, since a grant for a purpose the policy no longer has, or an
//! explicit grant of a category that no longer takes one, can only count for less, never
//! for more. Either way a grant under a policy version newer than the loaded one is kept,
//! and the decision refuses to count it (`consent_version_unknown`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::decide::request::MAX_IDENTITY_LEN;
use crate::error::ConfigError;
use crate::policy::categories::CategorySet;
use crate::policy::compiled::{CompiledPolicy, PurposeIdx};

/// One grant in a record: consent to a purpose, under a policy version, with the
/// explicit-grant categories (e.g. location) the person allowed for it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantDoc {
    /// Policy version the person saw when granting (§11).
    pub policy_version: u32,
    /// Categories that need an explicit grant (location) allowed for this purpose.
    #[serde(default)]
    pub explicit: Vec<String>,
}

/// One person's consent state as written in a snapshot.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDoc {
    /// Who the record is about: the value the user-ID header carries.
    pub subject: String,
    /// Grants by purpose id.
    #[serde(default)]
    pub grants: BTreeMap<String, GrantDoc>,
    /// The person asked to stop use (利用停止, §10).
    #[serde(default)]
    pub stop_use: bool,
    /// The person asked to stop third-party provision (第三者提供の停止, §10).
    #[serde(default)]
    pub stop_third_party: bool,
    /// Purposes the person withdrew consent to or objected to (§10). A withdrawal wins
    /// over a grant of the same purpose.
    #[serde(default)]
    pub withdrawn: Vec<String>,
}

/// A consent snapshot as written: a version and the records.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDoc {
    /// Snapshot version, counting up at the source.
    #[serde(default)]
    pub version: u64,
    /// One record per person.
    #[serde(default)]
    pub records: Vec<RecordDoc>,
}

/// A compiled grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The purpose granted.
    pub purpose: PurposeIdx,
    /// Policy version at consent.
    pub policy_version: u32,
    /// Explicitly granted categories.
    pub explicit: CategorySet,
}

/// A compiled consent record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Grants, at most one per purpose.
    pub grants: Vec<Grant>,
    /// Stop-use request (§10).
    pub stop_use: bool,
    /// Stop third-party provision request (§10).
    pub stop_third_party: bool,
    /// Withdrawn or objected purposes (§10).
    pub withdrawn: Vec<PurposeIdx>,
}

impl ConsentRecord {
    /// The grant for `purpose`, if any.
    pub fn grant(&self, purpose: PurposeIdx) -> Option<&Grant> {
        self.grants.iter().find(|g| g.purpose == purpose)
    }

    /// Whether the person withdrew consent to, or objected to, `purpose`.
    pub fn has_withdrawn(&self, purpose: PurposeIdx) -> bool {
        self.withdrawn.contains(&purpose)
    }

    /// Compiles one record strictly against a policy: unknown purposes and categories are
    /// errors. `path` names the record in errors (never by subject).
    pub fn compile(
        doc: &RecordDoc,
        policy: &CompiledPolicy,
        path: &str,
    ) -> Result<Self, ConfigError> {
        Self::compile_with(doc, policy, path, true)
    }

    /// Compiles one record of a live snapshot: ids the policy does not know are skipped.
    pub fn compile_lenient(
        doc: &RecordDoc,
        policy: &CompiledPolicy,
        path: &str,
    ) -> Result<Self, ConfigError> {
        Self::compile_with(doc, policy, path, false)
    }

    fn compile_with(
        doc: &RecordDoc,
        policy: &CompiledPolicy,
        path: &str,
        strict: bool,
    ) -> Result<Self, ConfigError> {
        let unknown = |at: String, what: &str, id: &str| {
            ConfigError::invalid(at, format!("unknown {what} `{id}`"))
        };
        let mut grants = Vec::with_capacity(doc.grants.len());
        for (purpose_id, grant) in &doc.grants {
            let at = format!("{path}.grants.{purpose_id}");
            let Some(purpose) = policy.purpose_idx(purpose_id) else {
                if strict {
                    return Err(unknown(at, "purpose", purpose_id));
                }
                continue;
            };
            if grant.policy_version == 0 {
                return Err(ConfigError::invalid(
                    format!("{at}.policy_version"),
                    "must be 1 or more",
                ));
            }
            let mut explicit = CategorySet::EMPTY;
            for (i, cid) in grant.explicit.iter().enumerate() {
                let cat = policy
                    .category_idx(cid)
                    .filter(|c| policy.explicit_grant.contains(*c));
                match cat {
                    Some(cat) => explicit.insert(cat),
                    None if strict => {
                        return Err(ConfigError::invalid(
                            format!("{at}.explicit[{i}]"),
                            format!("`{cid}` is not a category that takes an explicit grant"),
                        ))
                    }
                    None => {}
                }
            }
            grants.push(Grant {
                purpose,
                policy_version: grant.policy_version,
                explicit,
            });
        }
        if strict {
            if let Some((i, id)) = doc
                .withdrawn
                .iter()
                .enumerate()
                .find(|(_, id)| policy.purpose_idx(id).is_none())
            {
                return Err(unknown(format!("{path}.withdrawn[{i}]"), "purpose", id));
            }
        }
        let mut withdrawn: Vec<PurposeIdx> = doc
            .withdrawn
            .iter()
            .filter_map(|id| policy.purpose_idx(id))
            .collect();
        withdrawn.sort_by_key(|p| p.0);
        withdrawn.dedup();
        Ok(ConsentRecord {
            grants,
            stop_use: doc.stop_use,
            stop_third_party: doc.stop_third_party,
            withdrawn,
        })
    }
}

/// Consent records keyed by subject.
#[derive(Debug, Clone, Default)]
pub struct ConsentIndex {
    /// Snapshot version.
    pub version: u64,
    records: HashMap<String, ConsentRecord>,
}

impl ConsentIndex {
    /// Compiles a snapshot against a policy. Duplicate subjects are an error, since either
    /// record could be the wrong one; errors name records by position, never by subject.
    pub fn compile(
        doc: &SnapshotDoc,
        policy: &CompiledPolicy,
        path: &str,
    ) -> Result<Self, ConfigError> {
        let mut records = HashMap::with_capacity(doc.records.len());
        for (i, record) in doc.records.iter().enumerate() {
            let at = format!("{path}.records[{i}]");
            let subject = record.subject.trim();
            if subject.is_empty() || subject.len() > MAX_IDENTITY_LEN || subject.contains(',') {
                return Err(ConfigError::invalid(
                    format!("{at}.subject"),
                    format!("must be 1 to {MAX_IDENTITY_LEN} bytes without commas"),
                ));
            }
            let compiled = ConsentRecord::compile(record, policy, &at)?;
            if records.insert(subject.to_string(), compiled).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.subject"),
                    "the same subject appears in an earlier record",
                ));
            }
        }
        Ok(ConsentIndex {
            version: doc.version,
            records,
        })
    }

    /// The record of `subject`, if the snapshot has one.
    pub fn lookup(&self, subject: &str) -> Option<&ConsentRecord> {
        self.records.get(subject)
    }

    /// Number of people in the snapshot.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::default_policy().unwrap()
    }

    fn snapshot(v: serde_json::Value) -> Result<ConsentIndex, ConfigError> {
        let doc: SnapshotDoc = serde_json::from_value(v).unwrap();
        ConsentIndex::compile(&doc, &policy(), "consents")
    }

    #[test]
    fn records_are_found_by_subject() {
        let idx = snapshot(serde_json::json!({"records": [
            {"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}},
            {"subject": "u-2", "stop_use": true}
        ]}))
        .unwrap();
        let p = policy();
        let r1 = idx.lookup("u-1").unwrap();
        assert!(r1.grant(p.purpose_idx("surveys").unwrap()).is_some());
        assert!(idx.lookup("u-2").unwrap().stop_use);
        assert!(idx.lookup("u-3").is_none());
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn live_records_skip_ids_the_policy_does_not_know() {
        let doc: RecordDoc = serde_json::from_value(serde_json::json!(
            {"subject": "u", "grants": {
                "retired.purpose": {"policy_version": 1},
                "surveys": {"policy_version": 1, "explicit": ["email", "retired.category"]}
            }, "withdrawn": ["retired.purpose", "marketing.campaigns"]}
        ))
        .unwrap();
        let p = policy();
        let r = ConsentRecord::compile_lenient(&doc, &p, "r").unwrap();
        assert_eq!(r.grants.len(), 1);
        assert!(r.grants[0].explicit.is_empty());
        assert_eq!(
            r.withdrawn,
            vec![p.purpose_idx("marketing.campaigns").unwrap()]
        );
    }

    #[test]
    fn records_an_operator_writes_name_unknown_ids_by_position() {
        let cases = [
            (
                serde_json::json!({"surveys": {"policy_version": 1}, "survey": {"policy_version": 1}}),
                serde_json::json!([]),
                "consents.records[0].grants.survey",
            ),
            (
                serde_json::json!({"surveys": {"policy_version": 1, "explicit": ["email"]}}),
                serde_json::json!([]),
                "consents.records[0].grants.surveys.explicit[0]",
            ),
            (
                serde_json::json!({}),
                serde_json::json!(["surveys", "nope"]),
                "consents.records[0].withdrawn[1]",
            ),
        ];
        for (grants, withdrawn, path) in cases {
            let err = snapshot(serde_json::json!({"records": [
                {"subject": "secret-user", "grants": grants, "withdrawn": withdrawn}
            ]}))
            .unwrap_err();
            assert_eq!(err.path(), path);
            assert!(!err.to_string().contains("secret-user"));
        }
    }

    #[test]
    fn a_grant_under_version_zero_names_the_record_by_position() {
        let err = snapshot(serde_json::json!({"records": [
            {"subject": "secret-user", "grants": {"surveys": {"policy_version": 0}}}
        ]}))
        .unwrap_err();
        assert_eq!(
            err.path(),
            "consents.records[0].grants.surveys.policy_version"
        );
        assert!(!err.to_string().contains("secret-user"));
    }

    #[test]
    fn consent_under_a_future_policy_version_is_kept_for_the_decision_to_refuse() {
        let idx = snapshot(serde_json::json!({"records": [
            {"subject": "u", "grants": {"surveys": {"policy_version": 9}}}
        ]}))
        .unwrap();
        assert_eq!(idx.lookup("u").unwrap().grants[0].policy_version, 9);
    }

    #[test]
    fn duplicate_subjects_are_rejected() {
        let err = snapshot(serde_json::json!({"records": [
            {"subject": "u"}, {"subject": "u"}
        ]}))
        .unwrap_err();
        assert_eq!(err.path(), "consents.records[1].subject");
    }
}
