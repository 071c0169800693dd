//! A worker's own copy of the published buckets, so that a request finds the person's
//! record without a shared-data read (each costs Envoy a call back into the VM).
//!
//! On every tick ([`REPLICA_TICK_MS`]) the worker reads the metadata. When it names the
//! epoch and generation the copy already has, only the confirmation time moves on. When
//! it names a newer generation of the same epoch, the change record (`live::changes`)
//! says which buckets changed since, and only those are copied again; another epoch, or a
//! gap the record no longer covers, makes every bucket be copied again. Copying runs a
//! bounded number of buckets per tick.
//!
//! Staleness is judged as before: a request is decided on the copy only while the
//! metadata the copy was brought up to was confirmed by the source at most
//! `snapshot.max_staleness_ms` ago. A bucket not copied yet (or changed since) is read
//! from shared data, which holds that generation or a newer one. When the copy cannot
//! answer (not synced, or its confirmation too old), the request reads the metadata and
//! its bucket from shared data exactly as a worker without a copy does
//! ([`SharedLookup`]), with the same staleness bound and failure mode.
//!
//! The copy keeps, per bucket, each person's key without the leading bytes the bucket
//! number already fixes, and a small id of their record; each distinct record is kept
//! once ([`RecordTable`]): about 15 bytes a person when records repeat, as they do.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::BTreeSet;

use crate::config::CompiledConfig;
use crate::decide::entry::{ConsentLookup, Found};
use crate::live::buckets::{bucket_of, decode_record, raw_entries};
use crate::live::changes::ChangeLog;
use crate::live::interner::RecordTable;
use crate::live::meta::PublishedMeta;
use crate::live::reader::{MetaCache, ReadProblem, SharedLookup, SharedStore};
use crate::live::records::ConsentRecord;
use crate::live::subject_key::{to_hex, SubjectKey};

/// How often a worker brings its copy up to the published metadata.
pub const REPLICA_TICK_MS: u64 = 50;

/// Buckets a worker copies per tick at most (a whole copy of 65,536 buckets takes 64
/// ticks, about 3 s; requests meanwhile read the buckets not copied yet from shared data).
pub const FILL_PER_TICK: usize = 1024;

/// The published state the copy was brought up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Synced {
    epoch: u64,
    generation: u64,
    version: u64,
    fetched_at_ms: u64,
}

/// What one tick did to a copy (for tests and stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refresh {
    /// The copy now stands for this generation (`None`: it cannot answer).
    pub generation: Option<u64>,
    /// Every bucket is to be copied again (a new epoch, or a gap).
    pub reset: bool,
    /// Buckets marked as changed and to be copied again.
    pub invalidated: usize,
    /// Buckets copied on this tick.
    pub copied: usize,
    /// Buckets still to copy.
    pub pending: usize,
}

/// What the copy says about one person.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// It cannot answer: not synced, or its confirmation is older than the bound.
    Unsure,
    /// The person's bucket is not copied (yet, or since it changed).
    NotCopied,
    /// Their record, if they have one.
    Record(Option<ConsentRecord>),
}

/// One worker's copy of the published buckets of one configuration.
#[derive(Debug)]
pub struct Replica {
    bits: u8,
    /// Leading key bytes the bucket number fixes (not stored).
    fixed: usize,
    fingerprint: [u8; 8],
    synced: Option<Synced>,
    /// Per bucket: its people (see [`encode_local`]); an empty slice when it holds
    /// nobody; `None` while it is not copied.
    slots: Vec<Option<Box<[u8]>>>,
    /// Buckets that do not decode: not copied again until they change (requests read
    /// them from shared data, and fail as they would there).
    bad: BTreeSet<u32>,
    /// Slots that are `None` and not bad.
    pending: usize,
    /// Where copying goes on.
    cursor: usize,
    records: RecordTable,
    /// The metadata read last, with its CAS token (parsed again only when it changes).
    meta: Option<(Option<u32>, PublishedMeta)>,
}

impl Replica {
    /// An empty copy for `config` (nothing is copied before the first tick).
    pub fn new(config: &CompiledConfig) -> Self {
        let bits = config.snapshot.bucket_bits.clamp(1, 24);
        Replica {
            bits,
            fixed: usize::from(bits / 8),
            fingerprint: config.policy_fingerprint,
            synced: None,
            slots: Vec::new(),
            bad: BTreeSet::new(),
            pending: 0,
            cursor: 0,
            records: RecordTable::default(),
            meta: None,
        }
    }

    /// The snapshot version the copy stands for, if it is synced.
    pub fn version(&self) -> Option<u64> {
        self.synced.map(|s| s.version)
    }

    /// Buckets still to copy.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Distinct records the copy holds.
    pub fn distinct_records(&self) -> usize {
        self.records.len()
    }

    /// One tick: reads the metadata, follows what changed since the last tick, and copies
    /// up to `budget` buckets from `store`.
    pub fn refresh(
        &mut self,
        config: &CompiledConfig,
        store: &impl SharedStore,
        budget: usize,
    ) -> Refresh {
        let mut report = Refresh::default();
        self.follow(config, store, &mut report);
        report.copied = self.fill(config, store, budget);
        report.pending = self.pending;
        report.generation = self.synced.map(|s| s.generation);
        report
    }

    /// Brings the copy's state up to the published metadata (nothing copied yet).
    fn follow(&mut self, config: &CompiledConfig, store: &impl SharedStore, report: &mut Refresh) {
        let Some(meta) = self.read_meta(config, store) else {
            return;
        };
        if meta.fingerprint != to_hex(&self.fingerprint) || meta.bucket_bits != self.bits {
            // Another policy's buckets: requests read shared data, which says why.
            self.synced = None;
            return;
        }
        let seen = Synced {
            epoch: meta.epoch,
            generation: meta.generation,
            version: meta.version,
            fetched_at_ms: meta.fetched_at_ms,
        };
        if let Some(s) = self.synced.as_mut() {
            if s.epoch == seen.epoch && s.generation == seen.generation {
                *s = seen;
                return;
            }
        }
        let Some(changes) = store
            .get(config.shared_keys.changes_key())
            .ok()
            .flatten()
            .and_then(|stored| ChangeLog::decode(&stored.bytes))
        else {
            return;
        };
        if changes.epoch != seen.epoch
            || changes.generation < seen.generation
            || changes.bits != self.bits
        {
            // The fetcher is between writes (or failed one): try again next tick; the
            // copy still stands for what it synced.
            return;
        }
        let since = self
            .synced
            .filter(|s| s.epoch == seen.epoch)
            .and_then(|s| changes.changed_between(s.generation, seen.generation));
        match since {
            Some(buckets) => {
                for bucket in buckets {
                    if self.invalidate(bucket) {
                        report.invalidated += 1;
                    }
                }
            }
            None => {
                self.reset(&changes);
                report.reset = true;
            }
        }
        self.synced = Some(seen);
    }

    fn read_meta(
        &mut self,
        config: &CompiledConfig,
        store: &impl SharedStore,
    ) -> Option<PublishedMeta> {
        let stored = store.get(config.shared_keys.meta_key()).ok().flatten()?;
        if let Some((cas, meta)) = &self.meta {
            if stored.cas.is_some() && *cas == stored.cas {
                return Some(meta.clone());
            }
        }
        let meta = PublishedMeta::from_json(&stored.bytes)?;
        self.meta = Some((stored.cas, meta.clone()));
        Some(meta)
    }

    /// Every bucket is to be copied again: those the change record says may hold someone
    /// are not copied, the others hold nobody.
    fn reset(&mut self, changes: &ChangeLog) {
        let count = 1usize << u32::from(self.bits);
        self.records.clear();
        self.bad.clear();
        self.slots.clear();
        self.slots.reserve_exact(count);
        self.pending = 0;
        for bucket in 0..count as u32 {
            if changes.may_hold(bucket) {
                self.slots.push(None);
                self.pending += 1;
            } else {
                self.slots.push(Some(Box::default()));
            }
        }
        self.cursor = 0;
    }

    /// Marks `bucket` as changed; true when it was copied (or bad) before.
    fn invalidate(&mut self, bucket: u32) -> bool {
        let was_bad = self.bad.remove(&bucket);
        let Some(slot) = self.slots.get_mut(bucket as usize) else {
            return false;
        };
        match slot.take() {
            Some(local) => {
                release_all(&mut self.records, &local, 16 - self.fixed);
                self.pending += 1;
                true
            }
            None => {
                if was_bad {
                    self.pending += 1;
                }
                was_bad
            }
        }
    }

    /// Copies up to `budget` buckets not copied yet; returns how many it read.
    fn fill(&mut self, config: &CompiledConfig, store: &impl SharedStore, budget: usize) -> usize {
        let count = self.slots.len();
        let mut read = 0;
        let mut looked = 0;
        while self.pending > 0 && read < budget && looked < count {
            let bucket = self.cursor;
            self.cursor = (self.cursor + 1) % count;
            looked += 1;
            let b = bucket as u32;
            if !matches!(self.slots.get(bucket), Some(None)) || self.bad.contains(&b) {
                continue;
            }
            let Ok(stored) = store.get(&config.shared_keys.bucket(b)) else {
                break;
            };
            read += 1;
            let local = match stored {
                None => Some(Box::default()),
                Some(stored) => self.encode_local(b, &stored.bytes),
            };
            self.pending -= 1;
            match local {
                Some(local) => {
                    if let Some(slot) = self.slots.get_mut(bucket) {
                        *slot = Some(local);
                    }
                }
                None => {
                    self.bad.insert(b);
                }
            }
        }
        read
    }

    /// The copy of one published bucket: `[id width][keys without their fixed bytes]
    /// [record ids]`, in the bucket's order; `None` when it does not decode or holds a key
    /// of another bucket.
    fn encode_local(&mut self, bucket: u32, published: &[u8]) -> Option<Box<[u8]>> {
        let entries = raw_entries(published, self.fingerprint).ok()?;
        if entries.is_empty() {
            return Some(Box::default());
        }
        if entries
            .iter()
            .any(|(key, _)| bucket_of(key, self.bits) != bucket)
        {
            return None;
        }
        let ids: Vec<u32> = entries
            .iter()
            .map(|(_, record)| self.records.acquire(record))
            .collect();
        let width = id_width(self.records.id_bound());
        let stored = 16 - self.fixed;
        let mut out = Vec::with_capacity(1 + entries.len() * (stored + width));
        out.push(width as u8);
        for (key, _) in &entries {
            out.extend_from_slice(key.get(self.fixed..).unwrap_or_default());
        }
        for id in ids {
            out.extend_from_slice(id.to_le_bytes().get(..width).unwrap_or_default());
        }
        Some(out.into_boxed_slice())
    }

    /// What the copy says about the person with `key` at `now_ms`.
    fn answer(&self, key: &SubjectKey, now_ms: u64, max_staleness_ms: u64) -> Answer {
        let Some(synced) = self.synced else {
            return Answer::Unsure;
        };
        if now_ms.saturating_sub(synced.fetched_at_ms) > max_staleness_ms {
            return Answer::Unsure;
        }
        let bucket = bucket_of(key, self.bits);
        let Some(Some(local)) = self.slots.get(bucket as usize) else {
            return Answer::NotCopied;
        };
        match find_local(local, key.get(self.fixed..).unwrap_or_default()) {
            None => Answer::Record(None),
            Some(id) => match self.records.get(id).map(decode_record) {
                Some(Ok(record)) => Answer::Record(Some(record)),
                // Checked when copied; never taken.
                _ => Answer::NotCopied,
            },
        }
    }

    /// Whether the copy can answer for requests at `now_ms` (synced, and confirmed within
    /// the bound).
    fn trusted(&self, now_ms: u64, max_staleness_ms: u64) -> bool {
        self.synced
            .is_some_and(|s| now_ms.saturating_sub(s.fetched_at_ms) <= max_staleness_ms)
    }
}

/// Bytes per record id for ids below `bound`.
fn id_width(bound: usize) -> usize {
    match bound {
        0..=0x100 => 1,
        0x101..=0x1_0000 => 2,
        0x1_0001..=0x100_0000 => 3,
        _ => 4,
    }
}

/// The record id of the person whose key ends with `suffix`, searched as
/// `find_in_bucket` searches the published bucket (the same order, the same probes).
fn find_local(local: &[u8], suffix: &[u8]) -> Option<u32> {
    let stored = suffix.len();
    let (keys, ids, width) = local_parts(local, stored)?;
    let count = keys.len() / stored.max(1);
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let key = keys.get(mid * stored..(mid + 1) * stored)?;
        match key.cmp(suffix) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                return ids.get(mid * width..(mid + 1) * width).map(read_id);
            }
        }
    }
    None
}

/// The key suffixes and record ids of a local bucket whose keys keep `stored` bytes,
/// with the id width.
fn local_parts(local: &[u8], stored: usize) -> Option<(&[u8], &[u8], usize)> {
    let (&width, rest) = local.split_first()?;
    let width = usize::from(width);
    let count = rest.len().checked_div(stored + width)?;
    let (keys, ids) = rest.split_at_checked(count * stored)?;
    Some((keys, ids, width))
}

/// A record id stored in `width` bytes.
fn read_id(raw: &[u8]) -> u32 {
    let mut id = [0u8; 4];
    for (d, s) in id.iter_mut().zip(raw) {
        *d = *s;
    }
    u32::from_le_bytes(id)
}

/// Releases the record ids a local bucket holds.
fn release_all(records: &mut RecordTable, local: &[u8], stored: usize) {
    let Some((_, ids, width)) = local_parts(local, stored) else {
        return;
    };
    for raw in ids.chunks_exact(width.max(1)) {
        records.release(read_id(raw));
    }
}

/// A lookup result that no longer borrows the lookup it came from.
fn owned(found: Found<'_>) -> Found<'static> {
    match found {
        Found::Record(record) => Found::Record(record.map(|r| Cow::Owned(r.into_owned()))),
        Found::Fault(reason) => Found::Fault(reason),
    }
}

/// A lookup of one request in the live snapshot: in this worker's copy when it can answer,
/// else in shared data as [`SharedLookup`] reads it. The clock is read once, and only if
/// the lookup is asked something.
pub struct LiveLookup<'a, S> {
    config: &'a CompiledConfig,
    store: &'a S,
    cache: &'a MetaCache,
    replica: Option<&'a Replica>,
    clock: &'a dyn Fn() -> u64,
    now_ms: OnceCell<u64>,
    problem: Cell<Option<ReadProblem>>,
}

impl<'a, S: SharedStore> LiveLookup<'a, S> {
    /// A lookup for `config`: in `replica` when it can answer, else in `store` (metadata
    /// remembered in `cache`); `clock` gives the host's Unix time in ms.
    pub fn new(
        config: &'a CompiledConfig,
        store: &'a S,
        cache: &'a MetaCache,
        replica: Option<&'a Replica>,
        clock: &'a dyn Fn() -> u64,
    ) -> Self {
        LiveLookup {
            config,
            store,
            cache,
            replica,
            clock,
            now_ms: OnceCell::new(),
            problem: Cell::new(None),
        }
    }

    /// What went wrong in the last lookup that was not simply a missing or stale snapshot.
    pub fn problem(&self) -> Option<ReadProblem> {
        self.problem.get()
    }

    fn now(&self) -> u64 {
        *self.now_ms.get_or_init(|| (self.clock)())
    }

    fn shared(&self) -> SharedLookup<'a, S> {
        SharedLookup::new(self.config, self.store, self.cache, self.now())
    }
}

impl<S: SharedStore> ConsentLookup for LiveLookup<'_, S> {
    fn find(&self, user: Option<&str>) -> Found<'_> {
        let now = self.now();
        let bound = self.config.snapshot.max_staleness_ms;
        let replica = self.replica.filter(|r| r.trusted(now, bound));
        let (Some(replica), Some(user)) = (replica, user) else {
            if replica.is_some() {
                return Found::Record(None);
            }
            let shared = self.shared();
            let found = owned(shared.find(user));
            self.problem.set(shared.problem());
            return found;
        };
        let key = self.config.snapshot.keying.key_of_user(user);
        match replica.answer(&key, now, bound) {
            Answer::Record(record) => Found::Record(record.map(Cow::Owned)),
            Answer::NotCopied => {
                let shared = self.shared();
                let found = owned(shared.find_key(&key, replica.bits));
                self.problem.set(shared.problem());
                found
            }
            Answer::Unsure => {
                let shared = self.shared();
                let found = owned(shared.find(Some(user)));
                self.problem.set(shared.problem());
                found
            }
        }
    }
}
