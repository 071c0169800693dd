//! Which buckets each publish changed: the record the fetcher writes next to the metadata
//! (`consent/<id>/changes`) so that every worker keeps its own copy of the buckets and
//! re-reads only the ones that changed.
//!
//! A fetcher publishes in *epochs*: an epoch starts whenever it does not know what shared
//! data holds (it just started, took the lease over, or a write failed), and numbers its
//! publishes 1, 2, ... (*generations*). The metadata names the epoch and generation of the
//! buckets it describes. This record names the same epoch, its newest generation, the
//! buckets that may hold someone then (one bit each), and for the last few generations the
//! buckets each one rewrote or emptied; a generation that changed too many to list says
//! so, and a worker that finds a gap (or another epoch) copies every bucket again.
//!
//! Layout (little-endian): `b"CC1\0"`, epoch (u64), generation (u64), bucket bits (u8),
//! bitmap length (u32) and bitmap (bit `b % 8` of byte `b / 8` for bucket `b`), entry count
//! (u32), then per entry its generation (u64) and either `u32::MAX` (too many to list) or
//! a count (u32) and that many bucket numbers (u32).

use std::collections::{BTreeSet, VecDeque};

const MAGIC: &[u8; 4] = b"CC1\0";

/// Generations the record remembers.
const MAX_ENTRIES: usize = 64;

/// Bucket numbers it lists at most, over all its generations (64 KiB); a generation that
/// changed more is recorded as having changed everything.
pub const MAX_LISTED: usize = 16_384;

/// No list: the generation changed too many buckets to name.
const ALL: u32 = u32::MAX;

/// What one generation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These buckets (rewritten or emptied).
    Buckets(Vec<u32>),
    /// Too many to list: every bucket may have changed.
    All,
}

/// The change record of one epoch, as the fetcher keeps it and workers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLog {
    /// The epoch.
    pub epoch: u64,
    /// The newest generation (0 before the first publish).
    pub generation: u64,
    /// Bucket bits of the layout.
    pub bits: u8,
    /// The buckets that may hold someone at `generation`, one bit each (a bucket that
    /// holds someone always has its bit; one whose bit is clear holds nobody).
    filled: Vec<u8>,
    /// Recent generations, oldest first, with what each changed.
    entries: VecDeque<(u64, Changed)>,
}

impl ChangeLog {
    /// A new epoch with nothing published.
    pub fn new(epoch: u64, bits: u8) -> Self {
        ChangeLog {
            epoch,
            generation: 0,
            bits,
            filled: Vec::new(),
            entries: VecDeque::new(),
        }
    }

    /// Records the next generation: what it changed, and the buckets that may hold someone
    /// now. Returns the new generation.
    pub fn record(&mut self, changed: Changed, filled: &BTreeSet<u32>) -> u64 {
        self.generation += 1;
        let changed = match changed {
            Changed::Buckets(list) if list.len() > MAX_LISTED => Changed::All,
            other => other,
        };
        self.entries.push_back((self.generation, changed));
        while self.entries.len() > MAX_ENTRIES || self.listed() > MAX_LISTED {
            self.entries.pop_front();
        }
        let count = 1usize << u32::from(self.bits.clamp(1, 24));
        self.filled = vec![0; count.div_ceil(8)];
        for bucket in filled {
            if let Some(byte) = self.filled.get_mut(*bucket as usize / 8) {
                *byte |= 1 << (bucket % 8);
            }
        }
        self.generation
    }

    fn listed(&self) -> usize {
        self.entries
            .iter()
            .map(|(_, c)| match c {
                Changed::Buckets(list) => list.len(),
                Changed::All => 0,
            })
            .sum()
    }

    /// Whether `bucket` may hold someone at the newest generation.
    pub fn may_hold(&self, bucket: u32) -> bool {
        self.filled
            .get(bucket as usize / 8)
            .is_some_and(|byte| byte & (1 << (bucket % 8)) != 0)
    }

    /// The buckets that changed after generation `since` up to `upto` (in this epoch), or
    /// `None` when the record does not say: it no longer reaches back that far, a
    /// generation in between changed too many to list, or `upto` is beyond it.
    pub fn changed_between(&self, since: u64, upto: u64) -> Option<BTreeSet<u32>> {
        if upto > self.generation || since > upto {
            return None;
        }
        let mut out = BTreeSet::new();
        if since == upto {
            return Some(out);
        }
        let oldest = self.entries.front().map(|(g, _)| *g)?;
        if oldest > since + 1 {
            return None;
        }
        for (generation, changed) in &self.entries {
            if *generation <= since || *generation > upto {
                continue;
            }
            match changed {
                Changed::Buckets(list) => out.extend(list.iter().copied()),
                Changed::All => return None,
            }
        }
        Some(out)
    }

    /// The record as published.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(33 + self.filled.len() + 4 * self.listed());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.push(self.bits);
        out.extend_from_slice(&(self.filled.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.filled);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (generation, changed) in &self.entries {
            out.extend_from_slice(&generation.to_le_bytes());
            match changed {
                Changed::All => out.extend_from_slice(&ALL.to_le_bytes()),
                Changed::Buckets(list) => {
                    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                    for bucket in list {
                        out.extend_from_slice(&bucket.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Reads a published record; `None` when it is not one of this format.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take(4)? != MAGIC.as_slice() {
            return None;
        }
        let epoch = r.u64()?;
        let generation = r.u64()?;
        let bits = *r.take(1)?.first()?;
        let filled_len = r.u32()? as usize;
        let filled = r.take(filled_len)?.to_vec();
        let count = r.u32()? as usize;
        let mut entries = VecDeque::with_capacity(count.min(MAX_ENTRIES));
        for _ in 0..count {
            let g = r.u64()?;
            let n = r.u32()?;
            if n == ALL {
                entries.push_back((g, Changed::All));
                continue;
            }
            let mut list = Vec::with_capacity((n as usize).min(MAX_LISTED));
            for _ in 0..n {
                list.push(r.u32()?);
            }
            entries.push_back((g, Changed::Buckets(list)));
        }
        (r.at == bytes.len()).then_some(ChangeLog {
            epoch,
            generation,
            bits,
            filled,
            entries,
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?
            .first_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?
            .first_chunk::<8>()
            .map(|b| u64::from_le_bytes(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn set(buckets: &[u32]) -> BTreeSet<u32> {
        buckets.iter().copied().collect()
    }

    #[test]
    fn changes_are_named_between_any_two_generations_it_remembers() {
        let mut log = ChangeLog::new(7, 4);
        assert_eq!(log.record(Changed::All, &set(&[1, 3])), 1);
        assert_eq!(
            log.record(Changed::Buckets(vec![3, 5]), &set(&[1, 3, 5])),
            2
        );
        assert_eq!(log.record(Changed::Buckets(vec![1]), &set(&[3, 5])), 3);
        assert_eq!(log.changed_between(1, 3), Some(set(&[1, 3, 5])));
        assert_eq!(log.changed_between(2, 3), Some(set(&[1])));
        assert_eq!(log.changed_between(3, 3), Some(set(&[])));
        assert_eq!(
            log.changed_between(0, 3),
            None,
            "generation 1 changed everything"
        );
        assert_eq!(log.changed_between(2, 4), None, "not published yet");
        assert!(log.may_hold(3) && log.may_hold(5) && !log.may_hold(1) && !log.may_hold(15));
        let read = ChangeLog::decode(&log.encode()).unwrap();
        assert_eq!(read, log);
        assert_eq!(read.changed_between(1, 2), Some(set(&[3, 5])));
    }

    #[test]
    fn old_generations_are_forgotten_and_then_not_answered_for() {
        let mut log = ChangeLog::new(1, 16);
        log.record(Changed::All, &set(&[]));
        for g in 0..MAX_ENTRIES as u32 + 5 {
            log.record(Changed::Buckets(vec![g]), &set(&[g]));
        }
        assert_eq!(log.changed_between(1, log.generation), None);
        let recent = log.generation - 3;
        assert_eq!(
            log.changed_between(recent, log.generation).map(|s| s.len()),
            Some(3)
        );
        let long: Vec<u32> = (0..MAX_LISTED as u32 + 1).collect();
        let g = log.record(Changed::Buckets(long), &set(&[]));
        assert_eq!(log.changed_between(g - 1, g), None, "too many to list");
        let listed: Vec<u32> = (0..MAX_LISTED as u32).collect();
        let g = log.record(Changed::Buckets(listed), &set(&[]));
        assert_eq!(
            log.changed_between(g - 1, g).map(|s| s.len()),
            Some(MAX_LISTED)
        );
        assert!(log.encode().len() < 8 * 1024 + 4 * MAX_LISTED + 64 * 16 + 64);
    }

    #[test]
    fn anything_else_is_not_a_change_record() {
        let mut log = ChangeLog::new(1, 4);
        log.record(Changed::Buckets(vec![2]), &set(&[2]));
        let bytes = log.encode();
        for cut in 0..bytes.len() {
            assert_eq!(ChangeLog::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(ChangeLog::decode(&longer), None);
        assert_eq!(ChangeLog::decode(b"CB2\0................"), None);
    }
}
