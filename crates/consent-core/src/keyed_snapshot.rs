//! A snapshot keyed by [`SubjectKey`]: what a fetcher holds, applies deltas to, and
//! publishes as buckets. Full snapshots and deltas share the record format of the inline
//! `consents` configuration.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::buckets::{
    bucket_of, decode_bucket, encode_bucket, fingerprint, BucketBuilder, BucketError,
};
use crate::error::ConfigError;
use crate::policy::CompiledPolicy;
use crate::snapshot::{ConsentRecord, RecordDoc};
use crate::subject_key::{SubjectKey, SubjectKeying};

/// What the fetcher publishes next to the buckets, read by every request (small).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedMeta {
    /// Snapshot version.
    pub version: u64,
    /// When the fetcher last confirmed this version with the source (Unix ms).
    pub fetched_at_ms: u64,
    /// When the source produced it (Unix seconds), if it said.
    pub generated_at: Option<u64>,
    /// People in the snapshot.
    pub users: u64,
    /// Bucket bits used.
    pub bucket_bits: u8,
    /// Hex of the policy fingerprint the buckets were built against.
    pub fingerprint: String,
}

impl PublishedMeta {
    /// The metadata as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads metadata; `None` when it is not metadata of this format.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// How a snapshot names people, as its source declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKeyKind {
    /// Raw user IDs.
    #[default]
    Plain,
    /// Hex of the first 16 bytes of HMAC-SHA-256(shared key, user ID).
    HmacSha256,
}

/// A full snapshot as served by a consent source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FullSnapshotDoc {
    /// Snapshot version, counting up at the source.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    #[serde(default)]
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// One record per person.
    #[serde(default)]
    pub records: Vec<RecordDoc>,
    /// How many parts the snapshot of this version is split into (part 0 is the document
    /// at the snapshot path, part i is served at `{path}/parts/{i}`); 1 when absent.
    #[serde(default)]
    pub parts: Option<u32>,
    /// Which part this is (0 when absent).
    #[serde(default)]
    pub part: Option<u32>,
}

/// Parses a document served by a source; errors name the field (under `root`), never a value.
fn parse_doc<T: serde::de::DeserializeOwned>(bytes: &[u8], root: &str) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let doc: T =
        serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_serde(root, e))?;
    de.end()
        .map_err(|_| ConfigError::invalid(root, "trailing characters after the JSON document"))?;
    Ok(doc)
}

impl FullSnapshotDoc {
    /// Parses a snapshot (or part) served by a source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_doc(bytes, "snapshot")
    }
}

impl DeltaDoc {
    /// Parses a delta served by a source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_doc(bytes, "delta")
    }
}

/// The changes from one snapshot version to the next.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaDoc {
    /// The version this delta applies to.
    pub from_version: u64,
    /// The version it produces.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    #[serde(default)]
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// New or replaced records.
    #[serde(default)]
    pub upserts: Vec<RecordDoc>,
    /// Subjects whose records are gone.
    #[serde(default)]
    pub deletes: Vec<String>,
}

/// Why a delta was not applied (the snapshot is left as it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaError {
    /// The delta starts from another version: fetch a full snapshot.
    Gap {
        /// Version held.
        have: u64,
        /// Version the delta starts from.
        from: u64,
    },
    /// The delta does not move forward.
    NotForward,
    /// A record or subject in it is invalid.
    Invalid(ConfigError),
}

impl std::fmt::Display for DeltaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeltaError::Gap { have, from } => {
                write!(f, "delta starts at version {from}, snapshot is at {have}")
            }
            DeltaError::NotForward => f.write_str("delta version does not move forward"),
            DeltaError::Invalid(e) => write!(f, "invalid delta: {e}"),
        }
    }
}

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

fn check_kind(
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

fn keyed_record(
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

/// A delta checked against the policy and grouped by the bucket each change falls in, so
/// that it can be applied to published buckets without a copy of the whole snapshot.
#[derive(Debug, Clone)]
pub struct KeyedDelta {
    /// The version the delta applies to.
    pub from_version: u64,
    /// The version it produces.
    pub version: u64,
    /// Source time of the new version.
    pub generated_at: Option<u64>,
    upserts: BTreeMap<u32, Vec<(SubjectKey, ConsentRecord)>>,
    deletes: BTreeMap<u32, Vec<SubjectKey>>,
}

impl KeyedDelta {
    /// Checks every change of a delta (all or nothing) and groups them by bucket.
    pub fn compile(
        delta: &DeltaDoc,
        policy: &CompiledPolicy,
        keying: &SubjectKeying,
        bits: u8,
    ) -> Result<Self, DeltaError> {
        if delta.version <= delta.from_version {
            return Err(DeltaError::NotForward);
        }
        check_kind(delta.subject_key, keying, "delta").map_err(DeltaError::Invalid)?;
        let mut upserts: BTreeMap<u32, Vec<(SubjectKey, ConsentRecord)>> = BTreeMap::new();
        for (i, r) in delta.upserts.iter().enumerate() {
            let at = format!("delta.upserts[{i}]");
            let (key, record) =
                keyed_record(r, policy, keying, &at).map_err(DeltaError::Invalid)?;
            upserts
                .entry(bucket_of(&key, bits))
                .or_default()
                .push((key, record));
        }
        let mut deletes: BTreeMap<u32, Vec<SubjectKey>> = BTreeMap::new();
        for (i, s) in delta.deletes.iter().enumerate() {
            let key = keying.key_of_subject(s.trim()).ok_or_else(|| {
                DeltaError::Invalid(ConfigError::invalid(
                    format!("delta.deletes[{i}]"),
                    "not a subject of this keying",
                ))
            })?;
            deletes.entry(bucket_of(&key, bits)).or_default().push(key);
        }
        Ok(KeyedDelta {
            from_version: delta.from_version,
            version: delta.version,
            generated_at: delta.generated_at,
            upserts,
            deletes,
        })
    }

    /// The buckets the delta touches.
    pub fn buckets(&self) -> BTreeSet<u32> {
        self.upserts
            .keys()
            .chain(self.deletes.keys())
            .copied()
            .collect()
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.upserts.values().map(Vec::len).sum::<usize>()
            + self.deletes.values().map(Vec::len).sum::<usize>()
    }

    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The new content of `bucket` given its published bytes (`None`: it held nobody), and
    /// the change in the number of people it holds.
    pub fn apply_to_bucket(
        &self,
        bucket: u32,
        published: Option<&[u8]>,
        fingerprint: [u8; 8],
    ) -> Result<(Vec<u8>, i64), BucketError> {
        let mut records: BTreeMap<SubjectKey, ConsentRecord> = match published {
            Some(bytes) => decode_bucket(bytes, fingerprint)?.1.into_iter().collect(),
            None => BTreeMap::new(),
        };
        let before = records.len() as i64;
        for key in self.deletes.get(&bucket).into_iter().flatten() {
            records.remove(key);
        }
        for (key, record) in self.upserts.get(&bucket).into_iter().flatten() {
            records.insert(*key, record.clone());
        }
        let after = records.len() as i64;
        let entries: Vec<(SubjectKey, &ConsentRecord)> =
            records.iter().map(|(k, r)| (*k, r)).collect();
        Ok((
            encode_bucket(fingerprint, self.version, &entries),
            after - before,
        ))
    }
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

    /// Applies a delta all or nothing; returns the keys it changed.
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
        if delta.version <= delta.from_version {
            return Err(DeltaError::NotForward);
        }
        check_kind(delta.subject_key, keying, "delta").map_err(DeltaError::Invalid)?;
        let mut upserts = Vec::with_capacity(delta.upserts.len());
        for (i, r) in delta.upserts.iter().enumerate() {
            let at = format!("delta.upserts[{i}]");
            upserts.push(keyed_record(r, policy, keying, &at).map_err(DeltaError::Invalid)?);
        }
        let mut deletes = Vec::with_capacity(delta.deletes.len());
        for (i, s) in delta.deletes.iter().enumerate() {
            let key = keying.key_of_subject(s.trim()).ok_or_else(|| {
                DeltaError::Invalid(ConfigError::invalid(
                    format!("delta.deletes[{i}]"),
                    "not a subject of this keying",
                ))
            })?;
            deletes.push(key);
        }
        let mut changed = BTreeSet::new();
        for key in deletes {
            self.records.remove(&key);
            changed.insert(key);
        }
        for (key, record) in upserts {
            self.records.insert(key, record);
            changed.insert(key);
        }
        self.version = delta.version;
        self.generated_at = delta.generated_at.or(self.generated_at);
        Ok(changed)
    }

    /// Encodes the buckets `only` names (every non-empty bucket when `None`). A named
    /// bucket that became empty is still encoded, so that readers see it emptied.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::find_in_bucket;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::default_policy().unwrap()
    }

    fn full(v: serde_json::Value) -> FullSnapshotDoc {
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
        };
        assert_eq!(PublishedMeta::from_json(&meta.to_json()), Some(meta));
    }

    #[test]
    fn a_delta_changes_only_what_it_names_and_moves_the_version() {
        let p = policy();
        let k = SubjectKeying::Plain;
        let mut snap = KeyedSnapshot::compile(
            &full(serde_json::json!({"version": 1, "records": [
                {"subject": "u-1", "grants": {"surveys": {"policy_version": 1}}},
                {"subject": "u-2"}
            ]})),
            &p,
            &k,
        )
        .unwrap();
        let delta: DeltaDoc = serde_json::from_value(serde_json::json!({
            "from_version": 1, "version": 2,
            "upserts": [{"subject": "u-2", "stop_use": true}],
            "deletes": ["u-1"]
        }))
        .unwrap();
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
        let mut snap = KeyedSnapshot::compile(
            &full(serde_json::json!({"version": 5, "records": [{"subject": "u"}]})),
            &p,
            &k,
        )
        .unwrap();
        let delta: DeltaDoc = serde_json::from_value(
            serde_json::json!({"from_version": 4, "version": 6, "deletes": ["u"]}),
        )
        .unwrap();
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
        let mut snap = KeyedSnapshot::compile(
            &full(serde_json::json!({"version": 1, "records": [{"subject": "u"}]})),
            &p,
            &k,
        )
        .unwrap();
        let delta: DeltaDoc = serde_json::from_value(serde_json::json!({
            "from_version": 1, "version": 2,
            "upserts": [{"subject": "v"}, {"subject": "w", "grants": {"surveys": {"policy_version": 0}}}],
            "deletes": ["u"]
        }))
        .unwrap();
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
        let delta_doc: DeltaDoc = serde_json::from_value(serde_json::json!({
            "from_version": 1, "version": 2,
            "upserts": [{"subject": "u-5", "stop_use": true}, {"subject": "u-new"}],
            "deletes": ["u-7", "u-8", "u-nobody"]
        }))
        .unwrap();
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
                crate::buckets::find_in_bucket(&published[&b], fp, key)
                    .unwrap()
                    .as_ref(),
                Some(record)
            );
        }
        assert_eq!(
            crate::buckets::find_in_bucket(
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
        let mut snap = KeyedSnapshot::compile(
            &full(serde_json::json!({"version": 1, "records": [{"subject": "u"}]})),
            &p,
            &k,
        )
        .unwrap();
        let delta: DeltaDoc = serde_json::from_value(
            serde_json::json!({"from_version": 1, "version": 2, "deletes": ["u"]}),
        )
        .unwrap();
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
