//! The bucket builder: a snapshot that arrives in parts becomes published buckets while
//! each person is held as a key and the id of their record, each distinct record once.

use std::collections::{BTreeMap, BTreeSet};

use crate::live::buckets::{bucket_of, encode_record, encode_sorted_raw};
use crate::live::interner::RecordArena;
use crate::live::records::ConsentRecord;
use crate::live::subject_key::SubjectKey;

/// People per chunk of entries: chunks are allocated whole and never grow, so the builder
/// holds no spare capacity beyond the last chunk and never copies what it holds.
const CHUNK: usize = 8192;

/// Entries sorted at a time when the buckets are encoded (a range of buckets holding about
/// this many people).
const RANGE_ENTRIES: u64 = 65_536;

/// One person: the subject key and the id of the encoded record.
type Entry = (SubjectKey, u32);

/// Builds buckets from records that arrive a few at a time (a snapshot in parts). Each
/// person costs 20 bytes (key and record id); each distinct record is kept once, encoded.
#[derive(Debug, Default)]
pub struct BucketBuilder {
    bits: u8,
    records: RecordArena,
    chunks: Vec<Vec<Entry>>,
    /// Records of a part not added yet.
    staged: Vec<Entry>,
    /// The buckets that hold someone, one bit each.
    filled: Vec<u64>,
    count: usize,
}

impl BucketBuilder {
    /// A builder for 2^`bits` buckets.
    pub fn new(bits: u8) -> Self {
        BucketBuilder {
            bits,
            ..BucketBuilder::default()
        }
    }

    /// Adds one record.
    pub fn add(&mut self, key: SubjectKey, record: &ConsentRecord) {
        let id = self.intern(record);
        self.push(key, id);
    }

    /// Stages one record: it is added only by [`BucketBuilder::commit_staged`] (the
    /// records of a part, before the part is known to be good).
    pub(crate) fn stage(&mut self, key: SubjectKey, record: &ConsentRecord) {
        let id = self.intern(record);
        self.staged.push((key, id));
    }

    /// Adds the staged records.
    pub(crate) fn commit_staged(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        for (key, id) in staged {
            self.push(key, id);
        }
    }

    /// Forgets the staged records (their distinct records stay known: harmless).
    pub(crate) fn discard_staged(&mut self) {
        self.staged = Vec::new();
    }

    fn intern(&mut self, record: &ConsentRecord) -> u32 {
        let mut encoded = Vec::with_capacity(32);
        encode_record(record, &mut encoded);
        self.records.intern(&encoded)
    }

    fn push(&mut self, key: SubjectKey, id: u32) {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push((key, id));
        }
        let bucket = bucket_of(&key, self.bits) as usize;
        if self.filled.len() <= bucket / 64 {
            self.filled.resize(bucket / 64 + 1, 0);
        }
        if let Some(word) = self.filled.get_mut(bucket / 64) {
            *word |= 1 << (bucket % 64);
        }
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

    /// Distinct records among them.
    pub fn distinct_records(&self) -> usize {
        self.records.len()
    }

    /// The buckets that will hold someone.
    pub fn buckets(&self) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for (w, word) in self.filled.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                out.insert((w as u32) * 64 + b);
            }
        }
        out
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
    /// the whole encoded snapshot. Every subject is checked to appear once first:
    /// `Err(key)` names one that appears twice.
    pub fn into_encoded(
        self,
        fingerprint: [u8; 8],
        version: u64,
    ) -> Result<EncodedBuckets, SubjectKey> {
        let mut ranges = Ranges::new(self.bits, self.count);
        let mut scratch = Vec::new();
        while let Some(range) = ranges.next() {
            collect_range(&self.chunks, self.bits, range, &mut scratch);
            if let Some(pair) = scratch
                .windows(2)
                .find(|w| w.first().map(|e| e.0) == w.get(1).map(|e| e.0))
            {
                if let Some((key, _)) = pair.first() {
                    return Err(*key);
                }
            }
        }
        scratch.clear();
        Ok(EncodedBuckets {
            fingerprint,
            version,
            bits: self.bits,
            records: self.records,
            chunks: self.chunks,
            ranges: Ranges::new(self.bits, self.count),
            scratch,
            at: 0,
        })
    }
}

/// Ranges of bucket numbers, each holding about [`RANGE_ENTRIES`] people (keys are
/// uniform, so buckets fill evenly).
#[derive(Debug, Clone, Copy)]
struct Ranges {
    next: u64,
    end: u64,
    width: u64,
}

impl Ranges {
    fn new(bits: u8, count: usize) -> Self {
        let end = 1u64 << u32::from(bits.clamp(1, 24));
        let ranges = (count as u64).div_ceil(RANGE_ENTRIES).max(1);
        Ranges {
            next: 0,
            end,
            width: end.div_ceil(ranges).max(1),
        }
    }

    fn next(&mut self) -> Option<(u32, u32)> {
        if self.next >= self.end {
            return None;
        }
        let lo = self.next;
        self.next = (lo + self.width).min(self.end);
        Some((lo as u32, (self.next - 1) as u32))
    }
}

/// The entries of buckets `lo..=hi`, sorted by key, into `out`.
fn collect_range(chunks: &[Vec<Entry>], bits: u8, (lo, hi): (u32, u32), out: &mut Vec<Entry>) {
    out.clear();
    for chunk in chunks {
        out.extend(
            chunk
                .iter()
                .filter(|(key, _)| (lo..=hi).contains(&bucket_of(key, bits))),
        );
    }
    out.sort_unstable_by_key(|e| e.0);
}

/// The buckets of a finished [`BucketBuilder`] in bucket order, each encoded as it is
/// taken.
#[derive(Debug)]
pub struct EncodedBuckets {
    fingerprint: [u8; 8],
    version: u64,
    bits: u8,
    records: RecordArena,
    chunks: Vec<Vec<Entry>>,
    ranges: Ranges,
    /// The entries of the current range of buckets, sorted; `at` is the next one.
    scratch: Vec<Entry>,
    at: usize,
}

impl Iterator for EncodedBuckets {
    type Item = (u32, Vec<u8>);

    fn next(&mut self) -> Option<(u32, Vec<u8>)> {
        while self.at >= self.scratch.len() {
            let range = self.ranges.next()?;
            collect_range(&self.chunks, self.bits, range, &mut self.scratch);
            self.at = 0;
        }
        let rest = self.scratch.get(self.at..).unwrap_or_default();
        let (first_key, _) = rest.first()?;
        let bucket = bucket_of(first_key, self.bits);
        let run = rest
            .iter()
            .take_while(|(key, _)| bucket_of(key, self.bits) == bucket)
            .count();
        let entries: Vec<(SubjectKey, &[u8])> = rest
            .iter()
            .take(run)
            .map(|(key, id)| (*key, self.records.get(*id)))
            .collect();
        let encoded = encode_sorted_raw(self.fingerprint, self.version, &entries);
        self.at += run;
        if self.at >= self.scratch.len() && self.ranges.next >= self.ranges.end {
            // The last bucket: what the builder held can go now.
            self.chunks = Vec::new();
        }
        Some((bucket, encoded))
    }
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
