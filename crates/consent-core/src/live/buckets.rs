//! A compact, bucketed encoding of consent records, for publishing a snapshot once per
//! Envoy (in shared data) and reading one small bucket per request.
//!
//! A person's 16-byte [`SubjectKey`] picks a bucket by its leading bits; a bucket holds the
//! records of its people sorted by key, found by binary search. Every bucket carries the
//! snapshot version and a fingerprint of the policy it was compiled against, because
//! records name purposes and categories by position: a reader with another policy must
//! not trust them.
//!
//! Bucket layout (little-endian): `b"CB2\0"`, fingerprint (8), version (u64), count
//! (u32), then `count` index entries of key (16) and record offset (u32), then the
//! records (each distinct record once: people with the same record point at the same
//! offset). Record: flags (u8: 1 stop use, 2 stop third party, 4 withdrawals follow),
//! if flag 4 a withdrawn count (u8) and that many purposes (u16), then grant count (u8),
//! then per grant purpose (u16), policy version (u32) and explicit categories (LEB128 of
//! the 128-bit set).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use sha2::{Digest, Sha256};

use crate::live::records::{ConsentRecord, Grant};
use crate::live::subject_key::SubjectKey;
use crate::policy::categories::CategorySet;
use crate::policy::compiled::{CompiledPolicy, PurposeIdx};
use crate::policy::Fnv1a;

const MAGIC: &[u8; 4] = b"CB2\0";
const HEADER: usize = 4 + 8 + 8 + 4;
const INDEX_ENTRY: usize = 16 + 4;

/// Why a bucket cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketError {
    /// Not a bucket of this format.
    BadMagic,
    /// Shorter than its own header or index says.
    Truncated,
    /// Compiled against a different policy.
    WrongPolicy,
    /// A record does not decode.
    Corrupt,
}

impl std::fmt::Display for BucketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BucketError::BadMagic => "not a consent bucket",
            BucketError::Truncated => "consent bucket is truncated",
            BucketError::WrongPolicy => "consent bucket was built for another policy",
            BucketError::Corrupt => "consent bucket holds a corrupt record",
        })
    }
}

/// A fingerprint of what record positions mean: policy id, version, purpose and category ids.
pub fn fingerprint(policy: &CompiledPolicy) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(policy.id.as_bytes());
    h.update(policy.version.to_le_bytes());
    for p in &policy.purposes {
        h.update(b"\0p");
        h.update(p.id.as_bytes());
    }
    for c in &policy.categories {
        h.update(b"\0c");
        h.update(c.id.as_bytes());
    }
    let digest = h.finalize();
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(digest.iter()) {
        *o = *b;
    }
    out
}

/// The bucket of a key, from its leading `bits` bits (1 to 24).
pub fn bucket_of(key: &SubjectKey, bits: u8) -> u32 {
    let bits = bits.clamp(1, 24);
    let lead = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    lead >> (32 - u32::from(bits))
}

pub(crate) fn encode_record(record: &ConsentRecord, out: &mut Vec<u8>) {
    let has_withdrawn = !record.withdrawn.is_empty();
    let flags = u8::from(record.stop_use)
        | (u8::from(record.stop_third_party) << 1)
        | (u8::from(has_withdrawn) << 2);
    out.push(flags);
    if has_withdrawn {
        let withdrawn = record.withdrawn.iter().take(255);
        out.push(u8::try_from(record.withdrawn.len().min(255)).unwrap_or(255));
        for p in withdrawn {
            out.extend_from_slice(&p.0.to_le_bytes());
        }
    }
    let grants = record.grants.iter().take(255);
    out.push(u8::try_from(record.grants.len().min(255)).unwrap_or(255));
    for g in grants {
        out.extend_from_slice(&g.purpose.0.to_le_bytes());
        out.extend_from_slice(&g.policy_version.to_le_bytes());
        let mut bits = g.explicit.bits();
        loop {
            let byte = (bits & 0x7f) as u8;
            bits >>= 7;
            if bits == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BucketError> {
        let chunk = self
            .bytes
            .get(self.pos..self.pos + N)
            .and_then(|s| s.first_chunk::<N>())
            .ok_or(BucketError::Corrupt)?;
        self.pos += N;
        Ok(*chunk)
    }
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<ConsentRecord, BucketError> {
    decode_record_len(bytes).map(|(record, _)| record)
}

/// A record at the start of `bytes`, and how many bytes it takes.
fn decode_record_len(bytes: &[u8]) -> Result<(ConsentRecord, usize), BucketError> {
    let mut r = Reader { bytes, pos: 0 };
    let [flags] = r.take::<1>()?;
    let mut withdrawn = Vec::new();
    if flags & 4 != 0 {
        let [n] = r.take::<1>()?;
        for _ in 0..n {
            withdrawn.push(PurposeIdx(u16::from_le_bytes(r.take::<2>()?)));
        }
    }
    let [count] = r.take::<1>()?;
    let mut grants = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let purpose = PurposeIdx(u16::from_le_bytes(r.take::<2>()?));
        let policy_version = u32::from_le_bytes(r.take::<4>()?);
        let mut bits: u128 = 0;
        let mut shift = 0u32;
        loop {
            let [byte] = r.take::<1>()?;
            if shift > 126 {
                return Err(BucketError::Corrupt);
            }
            bits |= u128::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        grants.push(Grant {
            purpose,
            policy_version,
            explicit: CategorySet::from_bits(bits),
        });
    }
    let record = ConsentRecord {
        grants,
        stop_use: flags & 1 != 0,
        stop_third_party: flags & 2 != 0,
        withdrawn,
    };
    Ok((record, r.pos))
}

/// Encodes one bucket. Entries need not be sorted; a key given twice keeps its last record.
pub fn encode_bucket(
    fingerprint: [u8; 8],
    version: u64,
    entries: &[(SubjectKey, &ConsentRecord)],
) -> Vec<u8> {
    let mut sorted: BTreeMap<SubjectKey, Vec<u8>> = BTreeMap::new();
    for (key, record) in entries {
        let mut bytes = Vec::with_capacity(32);
        encode_record(record, &mut bytes);
        sorted.insert(*key, bytes);
    }
    let raw: Vec<(SubjectKey, &[u8])> = sorted.iter().map(|(k, b)| (*k, b.as_slice())).collect();
    encode_sorted_raw(fingerprint, version, &raw)
}

/// The snapshot version a bucket was built from.
pub fn bucket_version(bucket: &[u8]) -> Result<u64, BucketError> {
    if bucket.get(..4) != Some(MAGIC.as_slice()) {
        return Err(BucketError::BadMagic);
    }
    let v = bucket
        .get(12..20)
        .and_then(|s| s.first_chunk::<8>())
        .ok_or(BucketError::Truncated)?;
    Ok(u64::from_le_bytes(*v))
}

/// The parts of a bucket after its header checks: index entries and the record blob.
fn open_bucket(bucket: &[u8], fingerprint: [u8; 8]) -> Result<(&[u8], &[u8]), BucketError> {
    if bucket.get(..4) != Some(MAGIC.as_slice()) {
        return Err(BucketError::BadMagic);
    }
    if bucket.get(4..12) != Some(fingerprint.as_slice()) {
        return Err(BucketError::WrongPolicy);
    }
    let count = bucket
        .get(20..24)
        .and_then(|s| s.first_chunk::<4>())
        .map(|c| u32::from_le_bytes(*c) as usize)
        .ok_or(BucketError::Truncated)?;
    // Checked: on 32-bit wasm a forged count could otherwise wrap to a short index.
    let index_end = count
        .checked_mul(INDEX_ENTRY)
        .and_then(|n| n.checked_add(HEADER))
        .ok_or(BucketError::Corrupt)?;
    let index = bucket
        .get(HEADER..index_end)
        .ok_or(BucketError::Truncated)?;
    let blob = bucket.get(index_end..).ok_or(BucketError::Truncated)?;
    Ok((index, blob))
}

/// The key and record of one index entry.
fn entry_record(entry: &[u8], blob: &[u8]) -> Result<(SubjectKey, ConsentRecord), BucketError> {
    let key = entry.first_chunk::<16>().ok_or(BucketError::Truncated)?;
    let offset = entry
        .get(16..20)
        .and_then(|s| s.first_chunk::<4>())
        .map(|c| u32::from_le_bytes(*c) as usize)
        .ok_or(BucketError::Truncated)?;
    let record = decode_record(blob.get(offset..).ok_or(BucketError::Corrupt)?)?;
    Ok((*key, record))
}

/// Finds the record of `key` in a bucket, checking the bucket's policy fingerprint.
pub fn find_in_bucket(
    bucket: &[u8],
    fingerprint: [u8; 8],
    key: &SubjectKey,
) -> Result<Option<ConsentRecord>, BucketError> {
    let (index, blob) = open_bucket(bucket, fingerprint)?;
    let count = index.len() / INDEX_ENTRY;
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let e = index
            .get(mid * INDEX_ENTRY..(mid + 1) * INDEX_ENTRY)
            .ok_or(BucketError::Truncated)?;
        match e
            .get(..16)
            .ok_or(BucketError::Truncated)?
            .cmp(key.as_slice())
        {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return entry_record(e, blob).map(|(_, r)| Some(r)),
        }
    }
    Ok(None)
}

/// The entries of a bucket in index order, each with the encoded bytes of its record,
/// after checking that every record decodes.
pub(crate) fn raw_entries(
    bucket: &[u8],
    fingerprint: [u8; 8],
) -> Result<Vec<(SubjectKey, &[u8])>, BucketError> {
    let (index, blob) = open_bucket(bucket, fingerprint)?;
    let mut out = Vec::with_capacity(index.len() / INDEX_ENTRY);
    for entry in index.chunks_exact(INDEX_ENTRY) {
        let key = entry.first_chunk::<16>().ok_or(BucketError::Truncated)?;
        let offset = entry
            .get(16..20)
            .and_then(|s| s.first_chunk::<4>())
            .map(|c| u32::from_le_bytes(*c) as usize)
            .ok_or(BucketError::Truncated)?;
        let rest = blob.get(offset..).ok_or(BucketError::Corrupt)?;
        let (_, len) = decode_record_len(rest)?;
        out.push((*key, rest.get(..len).ok_or(BucketError::Corrupt)?));
    }
    Ok(out)
}

/// Encodes a bucket from entries already sorted by key, with records already encoded.
/// People with the same record share its bytes (their index entries point at one copy):
/// records repeat a lot, so a bucket is mostly keys.
pub(crate) fn encode_sorted_raw(
    fingerprint: [u8; 8],
    version: u64,
    entries: &[(SubjectKey, &[u8])],
) -> Vec<u8> {
    let mut offsets = Vec::with_capacity(entries.len());
    let mut distinct: Vec<(&[u8], usize)> = Vec::new();
    let mut by_bytes: HashMap<&[u8], usize, BuildHasherDefault<Fnv1a>> = HashMap::default();
    let mut blob_len = 0usize;
    for (_, record) in entries {
        // Few people per bucket: a scan; many (few bucket bits): a map.
        let known = if entries.len() <= 32 {
            distinct
                .iter()
                .find(|(d, _)| *d == *record)
                .map(|(_, o)| *o)
        } else {
            by_bytes.get(record).copied()
        };
        let offset = match known {
            Some(offset) => offset,
            None => {
                let offset = blob_len;
                blob_len += record.len();
                distinct.push((record, offset));
                if entries.len() > 32 {
                    by_bytes.insert(record, offset);
                }
                offset
            }
        };
        offsets.push(offset);
    }
    let mut out = Vec::with_capacity(HEADER + entries.len() * INDEX_ENTRY + blob_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&fingerprint);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for ((key, _), offset) in entries.iter().zip(&offsets) {
        out.extend_from_slice(key);
        out.extend_from_slice(&u32::try_from(*offset).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (record, _) in distinct {
        out.extend_from_slice(record);
    }
    out
}

/// Groups keyed records into encoded buckets (only buckets that hold someone); the
/// reference the bucket builder is tested against.
#[cfg(any(test, feature = "reference"))]
pub fn encode_buckets<'r, I>(
    records: I,
    bits: u8,
    fingerprint: [u8; 8],
    version: u64,
) -> BTreeMap<u32, Vec<u8>>
where
    I: IntoIterator<Item = (SubjectKey, &'r ConsentRecord)>,
{
    let mut grouped: BTreeMap<u32, Vec<(SubjectKey, &ConsentRecord)>> = BTreeMap::new();
    for (key, record) in records {
        grouped
            .entry(bucket_of(&key, bits))
            .or_default()
            .push((key, record));
    }
    grouped
        .into_iter()
        .map(|(b, entries)| (b, encode_bucket(fingerprint, version, &entries)))
        .collect()
}

/// Every record of a bucket, with the bucket's snapshot version.
pub fn decode_bucket(
    bucket: &[u8],
    fingerprint: [u8; 8],
) -> Result<(u64, Vec<(SubjectKey, ConsentRecord)>), BucketError> {
    let (index, blob) = open_bucket(bucket, fingerprint)?;
    let records = index
        .chunks_exact(INDEX_ENTRY)
        .map(|entry| entry_record(entry, blob))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((bucket_version(bucket)?, records))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::live::subject_key::SubjectKeying;
    use crate::policy::categories::CategoryIdx;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub(crate) fn record(n: u16) -> ConsentRecord {
        let mut explicit = CategorySet::EMPTY;
        explicit.insert(CategoryIdx(10));
        explicit.insert(CategoryIdx(127));
        ConsentRecord {
            grants: vec![
                Grant {
                    purpose: PurposeIdx(n % 16),
                    policy_version: 1,
                    explicit,
                },
                Grant {
                    purpose: PurposeIdx(3),
                    policy_version: 7,
                    explicit: CategorySet::EMPTY,
                },
            ],
            stop_use: n % 3 == 0,
            stop_third_party: n % 5 == 0,
            withdrawn: if n % 4 == 0 {
                vec![PurposeIdx(2), PurposeIdx(n % 16)]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn every_record_is_found_in_its_bucket_and_nobody_else_is() {
        let keying = SubjectKeying::Hmac(b"k-0123456789abcdef".to_vec());
        let records: Vec<(SubjectKey, ConsentRecord)> = (0..2000u16)
            .map(|i| (keying.key_of_user(&format!("u-{i}")), record(i)))
            .collect();
        let fp = [7u8; 8];
        let buckets = encode_buckets(records.iter().map(|(k, r)| (*k, r)), 6, fp, 42);
        assert!(buckets.len() <= 64);
        for (key, rec) in &records {
            let bucket = &buckets[&bucket_of(key, 6)];
            assert_eq!(find_in_bucket(bucket, fp, key).unwrap().as_ref(), Some(rec));
            assert_eq!(bucket_version(bucket).unwrap(), 42);
        }
        let stranger = keying.key_of_user("u-stranger");
        if let Some(bucket) = buckets.get(&bucket_of(&stranger, 6)) {
            assert_eq!(find_in_bucket(bucket, fp, &stranger).unwrap(), None);
        }
    }

    #[test]
    fn a_bucket_for_another_policy_is_refused() {
        let key = SubjectKeying::Plain.key_of_user("u");
        let rec = record(1);
        let bucket = encode_bucket([1; 8], 1, &[(key, &rec)]);
        assert_eq!(
            find_in_bucket(&bucket, [2; 8], &key),
            Err(BucketError::WrongPolicy)
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_errors_not_panics() {
        let key = SubjectKeying::Plain.key_of_user("u");
        let rec = record(2);
        let bucket = encode_bucket([1; 8], 1, &[(key, &rec)]);
        for cut in 0..bucket.len() {
            let r = find_in_bucket(&bucket[..cut], [1; 8], &key);
            assert!(r.is_err(), "cut at {cut} gave {r:?}");
        }
        assert_eq!(
            find_in_bucket(b"garbage!", [1; 8], &key),
            Err(BucketError::BadMagic)
        );
        // A forged entry count (as large as it gets) is refused, whatever the word size.
        let mut forged = bucket.clone();
        forged[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(find_in_bucket(&forged, [1; 8], &key).is_err());
    }

    #[test]
    fn the_fingerprint_changes_with_what_positions_mean() {
        let p = CompiledPolicy::default_policy().unwrap();
        let mut doc: crate::policy::compiled::PolicyDoc =
            serde_json::from_str(crate::policy::compiled::DEFAULT_POLICY_JSON).unwrap();
        doc.purposes.swap(0, 1);
        let swapped = CompiledPolicy::compile(&doc, "policy").unwrap();
        assert_ne!(fingerprint(&p), fingerprint(&swapped));
        assert_eq!(
            fingerprint(&p),
            fingerprint(&CompiledPolicy::default_policy().unwrap())
        );
    }
}
