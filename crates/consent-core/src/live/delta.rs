//! One checked delta, used by every path that applies one: the fetcher on published
//! buckets, and the reference snapshot in tests. Checking is all or nothing: one invalid
//! change rejects the whole delta.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ConfigError;
use crate::live::buckets::{bucket_of, decode_bucket, encode_bucket, BucketError};
use crate::live::documents::DeltaDoc;
use crate::live::keyed::{check_kind, keyed_record};
use crate::live::records::ConsentRecord;
use crate::live::subject_key::{SubjectKey, SubjectKeying};
use crate::policy::compiled::CompiledPolicy;

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

    /// Every subject the delta deletes.
    pub fn deletes(&self) -> impl Iterator<Item = &SubjectKey> {
        self.deletes.values().flatten()
    }

    /// Every record the delta adds or replaces.
    pub fn upserts(&self) -> impl Iterator<Item = &(SubjectKey, ConsentRecord)> {
        self.upserts.values().flatten()
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
