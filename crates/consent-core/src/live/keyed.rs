//! A full snapshot checked and keyed by [`SubjectKey`]: what the fetcher adds to its
//! bucket builder part by part, and what `consentctl` looks records up in. Applying deltas
//! to a whole snapshot and encoding all its buckets are reference paths for tests.

use std::borrow::Cow;
use std::collections::BTreeMap;
#[cfg(any(test, feature = "reference"))]
use std::collections::BTreeSet;

use crate::decide::entry::{ConsentLookup, Found};
use crate::error::ConfigError;
#[cfg(any(test, feature = "reference"))]
use crate::live::buckets::{bucket_of, encode_bucket, fingerprint};
use crate::live::builder::BucketBuilder;
#[cfg(any(test, feature = "reference"))]
use crate::live::delta::{DeltaError, KeyedDelta};
#[cfg(any(test, feature = "reference"))]
use crate::live::documents::DeltaDoc;
use crate::live::documents::{FullSnapshotDoc, SubjectKeyKind};
use crate::live::records::{ConsentRecord, RecordDoc};
use crate::live::subject_key::{SubjectKey, SubjectKeying};
use crate::policy::compiled::CompiledPolicy;

/// Records keyed by subject key, with the snapshot's version.
#[derive(Debug, Clone, Default)]
pub struct KeyedSnapshot {
    /// Snapshot version.
    pub version: u64,
    /// Source time of the version (Unix seconds).
    pub generated_at: Option<u64>,
    /// The records.
    pub records: BTreeMap<SubjectKey, ConsentRecord>,
}

pub(crate) fn check_kind(
    declared: SubjectKeyKind,
    keying: &SubjectKeying,
    path: &str,
) -> Result<(), ConfigError> {
    let expected = match keying {
        SubjectKeying::Plain => SubjectKeyKind::Plain,
        SubjectKeying::Hmac(_) => SubjectKeyKind::HmacSha256,
    };
    if declared == expected {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            format!("{path}.subject_key"),
            "the snapshot's subject keying differs from the filter's",
        ))
    }
}

pub(crate) fn keyed_record(
    doc: &RecordDoc,
    policy: &CompiledPolicy,
    keying: &SubjectKeying,
    at: &str,
) -> Result<(SubjectKey, ConsentRecord), ConfigError> {
    let key = keying.key_of_subject(doc.subject.trim()).ok_or_else(|| {
        ConfigError::invalid(format!("{at}.subject"), "not a subject of this keying")
    })?;
    Ok((key, ConsentRecord::compile_lenient(doc, policy, at)?))
}

/// Checks one part of a full snapshot and adds its records to `builder` in compact form.
pub fn add_part(
    doc: &FullSnapshotDoc,
    policy: &CompiledPolicy,
    keying: &SubjectKeying,
    builder: &mut BucketBuilder,
) -> Result<(), ConfigError> {
    check_kind(doc.subject_key, keying, "snapshot")?;
    for (i, r) in doc.records.iter().enumerate() {
        let at = format!("snapshot.records[{i}]");
        let (key, record) = keyed_record(r, policy, keying, &at)?;
        builder.add(key, &record);
    }
    Ok(())
}

impl KeyedSnapshot {
    /// Checks and keys a full snapshot; any invalid record rejects the whole snapshot.
    pub fn compile(
        doc: &FullSnapshotDoc,
        policy: &CompiledPolicy,
        keying: &SubjectKeying,
    ) -> Result<Self, ConfigError> {
        check_kind(doc.subject_key, keying, "snapshot")?;
        let mut records = BTreeMap::new();
        for (i, r) in doc.records.iter().enumerate() {
            let at = format!("snapshot.records[{i}]");
            let (key, record) = keyed_record(r, policy, keying, &at)?;
            if records.insert(key, record).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.subject"),
                    "the same subject appears in an earlier record",
                ));
            }
        }
        Ok(KeyedSnapshot {
            version: doc.version,
            generated_at: doc.generated_at,
            records,
        })
    }

    /// Applies a delta all or nothing (checked as [`KeyedDelta::compile`] checks it for
    /// the fetcher); returns the keys it changed.
    #[cfg(any(test, feature = "reference"))]
    pub fn apply(
        &mut self,
        delta: &DeltaDoc,
        policy: &CompiledPolicy,
        keying: &SubjectKeying,
    ) -> Result<BTreeSet<SubjectKey>, DeltaError> {
        if delta.from_version != self.version {
            return Err(DeltaError::Gap {
                have: self.version,
                from: delta.from_version,
            });
        }
        // Grouping by bucket does not matter here: one bucket bit.
        let checked = KeyedDelta::compile(delta, policy, keying, 1)?;
        let mut changed = BTreeSet::new();
        for key in checked.deletes() {
            self.records.remove(key);
            changed.insert(*key);
        }
        for (key, record) in checked.upserts() {
            self.records.insert(*key, record.clone());
            changed.insert(*key);
        }
        self.version = checked.version;
        self.generated_at = checked.generated_at.or(self.generated_at);
        Ok(changed)
    }

    /// Encodes the buckets `only` names (every non-empty bucket when `None`). A named
    /// bucket that became empty is still encoded, so that readers see it emptied.
    #[cfg(any(test, feature = "reference"))]
    pub fn buckets(
        &self,
        policy: &CompiledPolicy,
        bits: u8,
        only: Option<&BTreeSet<u32>>,
    ) -> BTreeMap<u32, Vec<u8>> {
        let fp = fingerprint(policy);
        let mut grouped: BTreeMap<u32, Vec<(SubjectKey, &ConsentRecord)>> = BTreeMap::new();
        if let Some(only) = only {
            for b in only {
                grouped.entry(*b).or_default();
            }
        }
        for (key, record) in &self.records {
            let b = bucket_of(key, bits);
            if only.is_none_or(|o| o.contains(&b)) {
                grouped.entry(b).or_default().push((*key, record));
            }
        }
        grouped
            .into_iter()
            .map(|(b, entries)| (b, encode_bucket(fp, self.version, &entries)))
            .collect()
    }
}

/// A compiled snapshot file as a lookup: the record of a request's user found by the same
/// subject key the shared-snapshot reader computes (what `consentctl explain --snapshot`
/// decides with).
#[derive(Debug, Clone, Copy)]
pub struct KeyedLookup<'s> {
    snapshot: &'s KeyedSnapshot,
    keying: &'s SubjectKeying,
}

impl KeyedSnapshot {
    /// This snapshot as a lookup, finding users by `keying` (the configuration's).
    pub fn lookup<'s>(&'s self, keying: &'s SubjectKeying) -> KeyedLookup<'s> {
        KeyedLookup {
            snapshot: self,
            keying,
        }
    }
}

impl ConsentLookup for KeyedLookup<'_> {
    fn find(&self, user: Option<&str>) -> Found<'_> {
        let record = user.and_then(|u| self.snapshot.records.get(&self.keying.key_of_user(u)));
        Found::Record(record.map(Cow::Borrowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::buckets::find_in_bucket;
    use crate::live::meta::PublishedMeta;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::default_policy().unwrap()
    }

    fn full(v: serde_json::Value) -> FullSnapshotDoc {
        serde_json::from_value(v).unwrap()
    }

    /// The full snapshot `v`, compiled for the default policy with plain subject keys.
    fn plain_snapshot(v: serde_json::Value) -> KeyedSnapshot {
        KeyedSnapshot::compile(&full(v), &policy(), &SubjectKeying::Plain).unwrap()
    }

    fn parse_delta(v: serde_json::Value) -> DeltaDoc {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn garbage_snapshots_are_errors_that_name_the_field_not_the_value() {
        let err = FullSnapshotDoc::from_json(br#"{"version": 1, "records": [{"subject": 4242}]}"#)
            .unwrap_err();
        assert_eq!(err.path(), "snapshot.records[0].subject");
        assert!(!err.to_string().contains("4242"));
        assert!(FullSnapshotDoc::from_json(b"<html>").is_err());
        let meta = PublishedMeta {
            version: 3,
            fetched_at_ms: 9,
            generated_at: None,
            users: 2,
            bucket_bits: 16,
            fingerprint: "ab".into(),
            epoch: 5,
            generation: 2,
        };
        assert_eq!(
            PublishedMeta::from_json(
                br#"{"version":3,"fetched_at_ms":9,"generated_at":null,"users":2,"bucket_bits":16,"fingerprint":"ab"}"#
            )
            .map(|m| (m.epoch, m.generation)),
            Some((0, 0)),
            "metadata without an epoch reads as epoch 0"
        );
        assert_eq!(PublishedMeta::from_json(&meta.to_json()), Some(meta));
    }

    #[test]
    fn a_delta_changes_only_what_it_names_and_moves_the_version() {
        let p = policy();
        let k = SubjectKeying::Plain;
        let mut snap = plain_snapshot(serde_json::json!({"version": 1, "records": [
            {"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}},
            {"subject": "u-2"}
        ]}));
        let delta = parse_delta(serde_json::json!({
            "from_version": 1, "version": 2,
            "upserts": [{"subject": "u-2", "stop_use": true}],
            "deletes": ["u-1"]
        }));
        let changed = snap.apply(&delta, &p, &k).unwrap();
        assert_eq!(changed.len(), 2);
        assert_eq!(snap.version, 2);
        assert!(!snap.records.contains_key(&k.key_of_user("u-1")));
        assert!(snap.records[&k.key_of_user("u-2")].stop_use);
    }

    #[test]
    fn a_delta_from_another_version_is_a_gap_and_changes_nothing() {
        let p = policy();
        let k = SubjectKeying::Plain;
        let mut snap =
            plain_snapshot(serde_json::json!({"version": 5, "records": [{"subject": "u"}]}));
        let delta =
            parse_delta(serde_json::json!({"from_version": 4, "version": 6, "deletes": ["u"]}));
        assert_eq!(
            snap.apply(&delta, &p, &k),
            Err(DeltaError::Gap { have: 5, from: 4 })
        );
        assert_eq!(snap.records.len(), 1);
    }

    #[test]
    fn an_invalid_record_rejects_the_whole_delta() {
        let p = policy();
        let k = SubjectKeying::Plain;
        let mut snap =
            plain_snapshot(serde_json::json!({"version": 1, "records": [{"subject": "u"}]}));
        let delta = parse_delta(serde_json::json!({
            "from_version": 1, "version": 2,
            "upserts": [{"subject": "v"}, {"subject": "w", "grants": {"surveys": {"policy_version": 0}}}],
            "deletes": ["u"]
        }));
        assert!(matches!(
            snap.apply(&delta, &p, &k),
            Err(DeltaError::Invalid(_))
        ));
        assert_eq!((snap.version, snap.records.len()), (1, 1));
        assert!(snap.records.contains_key(&k.key_of_user("u")));
    }

    #[test]
    fn hashed_snapshots_carry_no_raw_ids_and_are_found_by_the_user_id() {
        let p = policy();
        let k = SubjectKeying::Hmac(b"shared-by-source-and-filter".to_vec());
        let doc = full(
            serde_json::json!({"version": 3, "subject_key": "hmac_sha256", "records": [
                {"subject": k.subject_for("u-alice"), "grants": {"surveys": {"policy_version": 1}}}
            ]}),
        );
        assert!(!serde_json::to_string(&doc).unwrap().contains("alice"));
        let snap = KeyedSnapshot::compile(&doc, &p, &k).unwrap();
        let buckets = snap.buckets(&p, 8, None);
        let key = k.key_of_user("u-alice");
        let bucket = &buckets[&bucket_of(&key, 8)];
        let rec = find_in_bucket(bucket, fingerprint(&p), &key)
            .unwrap()
            .unwrap();
        assert!(rec.grant(p.purpose_idx("surveys").unwrap()).is_some());
    }

    #[test]
    fn a_snapshot_keyed_differently_from_the_filter_is_rejected() {
        let p = policy();
        let doc =
            full(serde_json::json!({"version": 1, "subject_key": "hmac_sha256", "records": []}));
        assert!(KeyedSnapshot::compile(&doc, &p, &SubjectKeying::Plain).is_err());
    }

    #[test]
    fn deltas_applied_to_published_buckets_equal_a_rebuilt_snapshot() {
        let p = policy();
        let k = SubjectKeying::Plain;
        let fp = fingerprint(&p);
        let base_doc = full(
            serde_json::json!({"version": 1, "records": (0..200).map(|i| serde_json::json!({"subject": format!("u-{i}"), "grants": {"surveys": {"policy_version": 1}}})).collect::<Vec<_>>()}),
        );
        let mut builder = BucketBuilder::new(4);
        add_part(&base_doc, &p, &k, &mut builder).unwrap();
        let mut published = builder.finish(fp, 1).unwrap();
        let delta_doc = parse_delta(serde_json::json!({
            "from_version": 1, "version": 2,
            "upserts": [{"subject": "u-5", "stop_use": true}, {"subject": "u-new"}],
            "deletes": ["u-7", "u-8", "u-nobody"]
        }));
        let delta = KeyedDelta::compile(&delta_doc, &p, &k, 4).unwrap();
        let mut users: i64 = 200;
        for b in delta.buckets() {
            let (bytes, change) = delta
                .apply_to_bucket(b, published.get(&b).map(Vec::as_slice), fp)
                .unwrap();
            users += change;
            published.insert(b, bytes);
        }
        let mut expected = KeyedSnapshot::compile(&base_doc, &p, &k).unwrap();
        expected.apply(&delta_doc, &p, &k).unwrap();
        assert_eq!(users as usize, expected.records.len());
        for (key, record) in &expected.records {
            let b = bucket_of(key, 4);
            assert_eq!(
                crate::live::buckets::find_in_bucket(&published[&b], fp, key)
                    .unwrap()
                    .as_ref(),
                Some(record)
            );
        }
        assert_eq!(
            crate::live::buckets::find_in_bucket(
                &published[&bucket_of(&k.key_of_user("u-7"), 4)],
                fp,
                &k.key_of_user("u-7")
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn buckets_emptied_by_a_delta_are_republished_empty() {
        let p = policy();
        let k = SubjectKeying::Plain;
        let mut snap =
            plain_snapshot(serde_json::json!({"version": 1, "records": [{"subject": "u"}]}));
        let delta =
            parse_delta(serde_json::json!({"from_version": 1, "version": 2, "deletes": ["u"]}));
        let changed = snap.apply(&delta, &p, &k).unwrap();
        let touched: BTreeSet<u32> = changed.iter().map(|key| bucket_of(key, 8)).collect();
        let buckets = snap.buckets(&p, 8, Some(&touched));
        assert_eq!(buckets.len(), 1);
        let (b, bytes) = buckets.iter().next().unwrap();
        assert_eq!(*b, bucket_of(&k.key_of_user("u"), 8));
        assert_eq!(
            find_in_bucket(bytes, fingerprint(&p), &k.key_of_user("u")).unwrap(),
            None
        );
    }
}
