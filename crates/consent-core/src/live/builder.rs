//! The bucket builder: a snapshot that arrives in parts becomes published buckets while
//! each record is held only in its compact encoded form.

use std::collections::{BTreeMap, BTreeSet};

use crate::live::buckets::{bucket_of, encode_record, encode_sorted_raw};
use crate::live::records::ConsentRecord;
use crate::live::subject_key::SubjectKey;

/// Builds buckets from records that arrive a few at a time (a snapshot in parts), holding
/// each record only in its compact encoded form: about 40 bytes a person.
#[derive(Debug, Default)]
pub struct BucketBuilder {
    bits: u8,
    /// Per bucket: entries of key (16), record length (u16), record bytes.
    pending: BTreeMap<u32, Vec<u8>>,
    count: usize,
}

impl BucketBuilder {
    /// A builder for 2^`bits` buckets.
    pub fn new(bits: u8) -> Self {
        BucketBuilder {
            bits,
            pending: BTreeMap::new(),
            count: 0,
        }
    }

    /// Adds one record.
    pub fn add(&mut self, key: SubjectKey, record: &ConsentRecord) {
        let mut encoded = Vec::with_capacity(32);
        encode_record(record, &mut encoded);
        let slot = self.pending.entry(bucket_of(&key, self.bits)).or_default();
        slot.extend_from_slice(&key);
        slot.extend_from_slice(
            &u16::try_from(encoded.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        slot.extend_from_slice(&encoded);
        self.count += 1;
    }

    /// Records added so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The buckets that will hold someone.
    pub fn buckets(&self) -> BTreeSet<u32> {
        self.pending.keys().copied().collect()
    }

    /// Encodes every bucket; `Err(key)` names a subject that appeared twice.
    pub fn finish(
        self,
        fingerprint: [u8; 8],
        version: u64,
    ) -> Result<BTreeMap<u32, Vec<u8>>, SubjectKey> {
        Ok(self.into_encoded(fingerprint, version)?.collect())
    }

    /// The buckets, each encoded only when it is taken, so that a publisher never holds
    /// the whole encoded snapshot twice. Every bucket is checked for a subject given twice
    /// first: `Err(key)` names one.
    pub fn into_encoded(
        self,
        fingerprint: [u8; 8],
        version: u64,
    ) -> Result<EncodedBuckets, SubjectKey> {
        for flat in self.pending.values() {
            let mut keys: Vec<SubjectKey> = entries_of(flat).into_iter().map(|(k, _)| k).collect();
            keys.sort_unstable();
            if let Some(key) = keys
                .windows(2)
                .find(|w| w.first() == w.get(1))
                .and_then(|w| w.first())
            {
                return Err(*key);
            }
        }
        Ok(EncodedBuckets {
            fingerprint,
            version,
            pending: self.pending.into_iter(),
        })
    }
}

/// The buckets of a finished [`BucketBuilder`] in bucket order, each encoded as it is
/// taken (and its compact form dropped).
#[derive(Debug)]
pub struct EncodedBuckets {
    fingerprint: [u8; 8],
    version: u64,
    pending: std::collections::btree_map::IntoIter<u32, Vec<u8>>,
}

impl Iterator for EncodedBuckets {
    type Item = (u32, Vec<u8>);

    fn next(&mut self) -> Option<(u32, Vec<u8>)> {
        let (bucket, flat) = self.pending.next()?;
        let mut entries = entries_of(&flat);
        entries.sort_unstable_by_key(|e| e.0);
        Some((
            bucket,
            encode_sorted_raw(self.fingerprint, self.version, &entries),
        ))
    }
}

/// The (key, encoded record) entries of one pending bucket.
fn entries_of(flat: &[u8]) -> Vec<(SubjectKey, &[u8])> {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(key) = flat.get(at..at + 16).and_then(|k| k.first_chunk::<16>()) {
        let len = flat
            .get(at + 16..at + 18)
            .and_then(|l| l.first_chunk::<2>())
            .map(|l| usize::from(u16::from_le_bytes(*l)))
            .unwrap_or(0);
        entries.push((*key, flat.get(at + 18..at + 18 + len).unwrap_or_default()));
        at += 18 + len;
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::buckets::tests::record;
    use crate::live::buckets::{decode_bucket, encode_buckets};
    use crate::live::subject_key::SubjectKeying;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_builder_gives_the_same_buckets_as_encoding_all_at_once() {
        let k = SubjectKeying::Plain;
        let records: Vec<(SubjectKey, ConsentRecord)> = (0..3000u16)
            .map(|i| (k.key_of_user(&format!("u-{i}")), record(i)))
            .collect();
        let mut builder = BucketBuilder::new(5);
        for (key, r) in records.iter().rev() {
            builder.add(*key, r);
        }
        assert_eq!(builder.len(), 3000);
        let built = builder.finish([3; 8], 9).unwrap();
        let direct = encode_buckets(records.iter().map(|(k, r)| (*k, r)), 5, [3; 8], 9);
        assert_eq!(built, direct);
        let (version, decoded) = decode_bucket(built.values().next().unwrap(), [3; 8]).unwrap();
        assert_eq!(version, 9);
        for (key, r) in decoded {
            assert_eq!(
                records.iter().find(|(k2, _)| *k2 == key).map(|(_, r2)| r2),
                Some(&r)
            );
        }
    }

    #[test]
    fn the_buckets_to_fill_are_known_before_any_is_encoded() {
        let k = SubjectKeying::Plain;
        let mut builder = BucketBuilder::new(4);
        for i in 0..50u16 {
            builder.add(k.key_of_user(&format!("u-{i}")), &record(i));
        }
        let buckets: Vec<u32> = builder.buckets().into_iter().collect();
        let encoded: Vec<u32> = builder
            .into_encoded([3; 8], 1)
            .unwrap()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(buckets, encoded);
        assert!(buckets.len() > 1);
    }

    #[test]
    fn a_subject_given_twice_is_reported() {
        let key = SubjectKeying::Plain.key_of_user("u");
        let mut builder = BucketBuilder::new(4);
        builder.add(key, &record(1));
        builder.add(key, &record(2));
        assert_eq!(builder.finish([0; 8], 1), Err(key));
    }
}
