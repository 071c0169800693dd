//! Encoded consent records kept once however many people share them. People's records
//! repeat a lot (the same grants under the same policy version), so the fetcher's bucket
//! builder and every worker's copy of the buckets keep each distinct record once and give
//! each person a small id instead: an append-only arena for the builder, a table with
//! reference counts for a worker's copy, whose buckets change.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::policy::Fnv1a;

/// No id (the end of a hash chain).
const NONE: u32 = u32::MAX;

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    h.write(bytes);
    h.finish()
}

/// Records by hash: the newest id with that hash (others are chained).
type Heads = HashMap<u64, u32, BuildHasherDefault<Fnv1a>>;

/// Distinct encoded records, append-only: each is stored once, back to back.
#[derive(Debug, Default)]
pub(crate) struct RecordArena {
    bytes: Vec<u8>,
    /// End offset in `bytes` of each id's record (its start is the previous end).
    ends: Vec<u32>,
    heads: Heads,
    /// Per id, the previous id with the same hash.
    next: Vec<u32>,
}

impl RecordArena {
    /// The id of `record`, stored if it is new.
    pub(crate) fn intern(&mut self, record: &[u8]) -> u32 {
        let hash = hash_of(record);
        let mut at = self.heads.get(&hash).copied().unwrap_or(NONE);
        while at != NONE {
            if self.get(at) == record {
                return at;
            }
            at = self.next.get(at as usize).copied().unwrap_or(NONE);
        }
        let id = u32::try_from(self.ends.len()).unwrap_or(NONE - 1);
        self.bytes.extend_from_slice(record);
        self.ends
            .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
        self.next.push(self.heads.insert(hash, id).unwrap_or(NONE));
        id
    }

    /// The record of `id` (empty for an unknown id).
    pub(crate) fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(0) as usize;
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// Distinct records stored.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// One distinct record of a [`RecordTable`] and how many people hold it.
#[derive(Debug)]
struct Slot {
    bytes: Rc<[u8]>,
    refs: u32,
}

/// Distinct encoded records with reference counts: a record nobody holds any more is
/// dropped and its id reused.
#[derive(Debug, Default)]
pub(crate) struct RecordTable {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: HashMap<Rc<[u8]>, u32, BuildHasherDefault<Fnv1a>>,
}

impl RecordTable {
    /// The id of `record`, one more holder counted (stored if it is new).
    pub(crate) fn acquire(&mut self, record: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(record) {
            if let Some(Some(slot)) = self.slots.get_mut(id as usize) {
                slot.refs = slot.refs.saturating_add(1);
            }
            return id;
        }
        let bytes: Rc<[u8]> = Rc::from(record);
        let slot = Slot {
            bytes: Rc::clone(&bytes),
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(place) = self.slots.get_mut(id as usize) {
                    *place = Some(slot);
                }
                id
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).unwrap_or(NONE)
            }
        };
        self.ids.insert(bytes, id);
        id
    }

    /// One holder of `id` fewer; the record goes when nobody holds it.
    pub(crate) fn release(&mut self, id: u32) {
        let Some(place) = self.slots.get_mut(id as usize) else {
            return;
        };
        let Some(slot) = place.as_mut() else {
            return;
        };
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs == 0 {
            if let Some(slot) = place.take() {
                self.ids.remove(&slot.bytes);
            }
            self.free.push(id);
        }
    }

    /// The record of `id`, if it is held.
    pub(crate) fn get(&self, id: u32) -> Option<&[u8]> {
        match self.slots.get(id as usize) {
            Some(Some(slot)) => Some(&slot.bytes),
            _ => None,
        }
    }

    /// Distinct records held.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The largest id in use plus one (ids are reused, so this stays near `len`).
    pub(crate) fn id_bound(&self) -> usize {
        self.slots.len()
    }

    /// Forgets every record.
    pub(crate) fn clear(&mut self) {
        *self = RecordTable::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_arena_keeps_each_record_once_and_gives_it_back() {
        let mut a = RecordArena::default();
        let records: Vec<Vec<u8>> = (0..300u16)
            .map(|i| i.to_le_bytes().repeat(usize::from(i % 7)))
            .collect();
        let ids: Vec<u32> = records.iter().map(|r| a.intern(r)).collect();
        for (r, id) in records.iter().zip(&ids) {
            assert_eq!(a.intern(r), *id, "the same record, the same id");
            assert_eq!(a.get(*id), r.as_slice());
        }
        let distinct: std::collections::BTreeSet<&Vec<u8>> = records.iter().collect();
        assert_eq!(a.len(), distinct.len());
        assert_eq!(a.get(9_999), b"");
    }

    #[test]
    fn the_table_drops_a_record_with_its_last_holder_and_reuses_its_id() {
        let mut t = RecordTable::default();
        let a = t.acquire(b"grant-a");
        assert_eq!(t.acquire(b"grant-a"), a);
        let b = t.acquire(b"grant-b");
        assert_ne!(a, b);
        t.release(a);
        assert_eq!(t.get(a), Some(b"grant-a".as_slice()), "one holder left");
        t.release(a);
        assert_eq!(t.get(a), None);
        assert_eq!(t.len(), 1);
        let c = t.acquire(b"grant-c");
        assert_eq!(c, a, "the freed id is reused");
        assert_eq!(t.get(c), Some(b"grant-c".as_slice()));
        assert_eq!(t.acquire(b"grant-a"), 2, "a new id for a record that went");
        assert_eq!(t.id_bound(), 3);
        t.release(99);
        t.clear();
        assert_eq!((t.len(), t.id_bound()), (0, 0));
    }
}
