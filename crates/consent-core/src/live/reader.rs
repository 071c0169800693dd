//! The reader's side of the live snapshot, host-free: check the published metadata (kept
//! for [`META_RECHECK_MS`], parsed again only when its CAS token changes), judge
//! staleness against the bound, and find the person's record in their one bucket. The host
//! supplies a [`SharedStore`] (Envoy shared data in the proxy-wasm glue) and the clock.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};

use crate::config::CompiledConfig;
use crate::decide::entry::{ConsentLookup, Found};
use crate::decide::reason::Reason;
use crate::live::buckets::{bucket_of, find_in_bucket};
use crate::live::meta::PublishedMeta;
use crate::live::subject_key::{to_hex, SubjectKey};

/// How long a reader trusts the metadata it read before reading it again. The bucket itself
/// is read on every request; the metadata only says how buckets are laid out and when the
/// source last confirmed the snapshot, so staleness is judged at most this much late.
pub const META_RECHECK_MS: u64 = 50;

/// Namespaces a [`MetaCache`] remembers (a VM holds more than one configuration during a
/// reload); the oldest goes first.
const CACHED_NAMESPACES: usize = 4;

/// A value in the host's shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The compare-and-swap token, if the host gives one.
    pub cas: Option<u32>,
}

/// The host call failed (not: the key is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

/// Where the fetcher published the snapshot (Envoy shared data, or a test's map).
pub trait SharedStore {
    /// The value under `key`; `Ok(None)` when nothing was published there.
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreUnavailable>;
}

/// Why a lookup could not be trusted, for the host's log (never a subject or a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadProblem {
    /// The published buckets were built for another policy than the reader's.
    OtherPolicy,
    /// A bucket did not decode.
    BadBucket(u32),
}

impl std::fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadProblem::OtherPolicy => f.write_str(
                "the published snapshot was built for another policy; check that the fetcher and the filter have the same policy",
            ),
            ReadProblem::BadBucket(b) => write!(f, "bucket {b} does not decode"),
        }
    }
}

/// What a request needs from the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetaView {
    version: u64,
    fetched_at_ms: u64,
    bucket_bits: u8,
}

/// The metadata a reader read last, for one namespace.
#[derive(Debug, Clone)]
struct Cached {
    namespace: String,
    cas: Option<u32>,
    read_at_ms: u64,
    meta: MetaView,
}

/// The metadata one VM (or thread) read last, per namespace.
#[derive(Debug, Default)]
pub struct MetaCache {
    entries: RefCell<Vec<Cached>>,
}

impl MetaCache {
    /// Version of the snapshot last read for `config` (no store read), for decision logs.
    pub fn last_version(&self, config: &CompiledConfig) -> Option<u64> {
        let namespace = config.shared_keys.prefix();
        self.entries
            .borrow()
            .iter()
            .find(|c| c.namespace == namespace)
            .map(|c| c.meta.version)
    }

    fn fresh(&self, namespace: &str, now_ms: u64) -> Option<MetaView> {
        self.entries
            .borrow()
            .iter()
            .find(|c| c.namespace == namespace)
            .filter(|c| now_ms.saturating_sub(c.read_at_ms) < META_RECHECK_MS)
            .map(|c| c.meta)
    }

    fn known(&self, namespace: &str, cas: Option<u32>) -> Option<MetaView> {
        self.entries
            .borrow()
            .iter()
            .find(|c| c.namespace == namespace && cas.is_some() && c.cas == cas)
            .map(|c| c.meta)
    }

    fn remember(&self, entry: Cached) {
        let mut entries = self.entries.borrow_mut();
        match entries.iter_mut().find(|c| c.namespace == entry.namespace) {
            Some(c) => *c = entry,
            None => {
                if entries.len() >= CACHED_NAMESPACES {
                    entries.remove(0);
                }
                entries.push(entry);
            }
        }
    }
}

/// A lookup in the published snapshot of one configuration, at one moment.
pub struct SharedLookup<'a, S> {
    config: &'a CompiledConfig,
    store: &'a S,
    cache: &'a MetaCache,
    now_ms: u64,
    problem: Cell<Option<ReadProblem>>,
}

impl<'a, S: SharedStore> SharedLookup<'a, S> {
    /// A lookup for `config` in `store` at `now_ms` (Unix ms), remembering metadata in
    /// `cache`.
    pub fn new(
        config: &'a CompiledConfig,
        store: &'a S,
        cache: &'a MetaCache,
        now_ms: u64,
    ) -> Self {
        SharedLookup {
            config,
            store,
            cache,
            now_ms,
            problem: Cell::new(None),
        }
    }

    /// What went wrong in the last lookup that was not simply a missing or stale snapshot.
    pub fn problem(&self) -> Option<ReadProblem> {
        self.problem.get()
    }

    fn current_meta(&self) -> Result<MetaView, Reason> {
        let namespace = self.config.shared_keys.prefix();
        let meta = match self.cache.fresh(namespace, self.now_ms) {
            Some(meta) => meta,
            None => self.read_meta()?,
        };
        if self.now_ms.saturating_sub(meta.fetched_at_ms) > self.config.snapshot.max_staleness_ms {
            return Err(Reason::SnapshotStale);
        }
        Ok(meta)
    }

    fn read_meta(&self) -> Result<MetaView, Reason> {
        let namespace = self.config.shared_keys.prefix();
        let stored = self
            .store
            .get(self.config.shared_keys.meta_key())
            .map_err(|_| Reason::SnapshotUnavailable)?
            .ok_or(Reason::SnapshotUnavailable)?;
        let meta = match self.cache.known(namespace, stored.cas) {
            Some(meta) => meta,
            None => {
                let meta =
                    PublishedMeta::from_json(&stored.bytes).ok_or(Reason::SnapshotUnavailable)?;
                if meta.fingerprint != to_hex(&self.config.policy_fingerprint) {
                    self.problem.set(Some(ReadProblem::OtherPolicy));
                    return Err(Reason::SnapshotUnavailable);
                }
                MetaView {
                    version: meta.version,
                    fetched_at_ms: meta.fetched_at_ms,
                    bucket_bits: meta.bucket_bits,
                }
            }
        };
        self.cache.remember(Cached {
            namespace: namespace.to_string(),
            cas: stored.cas,
            read_at_ms: self.now_ms,
            meta,
        });
        Ok(meta)
    }
}

impl<S: SharedStore> SharedLookup<'_, S> {
    /// The record of `key` in its published bucket (of a `bucket_bits` layout), without
    /// reading the metadata: for a caller that already judged the snapshot fresh.
    pub(crate) fn find_key(&self, key: &SubjectKey, bucket_bits: u8) -> Found<'_> {
        let bucket = bucket_of(key, bucket_bits);
        match self.store.get(&self.config.shared_keys.bucket(bucket)) {
            Ok(None) => Found::Record(None),
            Ok(Some(stored)) => {
                match find_in_bucket(&stored.bytes, self.config.policy_fingerprint, key) {
                    Ok(record) => Found::Record(record.map(Cow::Owned)),
                    Err(_) => {
                        self.problem.set(Some(ReadProblem::BadBucket(bucket)));
                        Found::Fault(Reason::SnapshotUnavailable)
                    }
                }
            }
            Err(_) => Found::Fault(Reason::SnapshotUnavailable),
        }
    }
}

impl<S: SharedStore> ConsentLookup for SharedLookup<'_, S> {
    fn find(&self, user: Option<&str>) -> Found<'_> {
        let meta = match self.current_meta() {
            Ok(meta) => meta,
            Err(reason) => return Found::Fault(reason),
        };
        let Some(user) = user else {
            return Found::Record(None);
        };
        let key = self.config.snapshot.keying.key_of_user(user);
        self.find_key(&key, meta.bucket_bits)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::compile_config;
    use crate::live::builder::BucketBuilder;
    use crate::live::records::{ConsentRecord, RecordDoc};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Default)]
    struct Map(RefCell<HashMap<String, Stored>>, Cell<u32>);

    impl Map {
        fn put(&self, key: &str, bytes: Vec<u8>) {
            self.1.set(self.1.get() + 1);
            let cas = Some(self.1.get());
            self.0
                .borrow_mut()
                .insert(key.to_string(), Stored { bytes, cas });
        }
    }

    impl SharedStore for Map {
        fn get(&self, key: &str) -> Result<Option<Stored>, StoreUnavailable> {
            Ok(self.0.borrow().get(key).cloned())
        }
    }

    fn config() -> CompiledConfig {
        compile_config(
            br#"{"snapshot": {"source": "shared", "cluster": "c", "bucket_bits": 4, "refresh_ms": 1000, "max_staleness_ms": 5000}}"#,
        )
        .unwrap()
    }

    fn publish(c: &CompiledConfig, store: &Map, fetched_at_ms: u64, fingerprint: [u8; 8]) {
        let doc: RecordDoc = serde_json::from_value(serde_json::json!(
            {"subject": "u-1", "stop_use": true}
        ))
        .unwrap();
        let record = ConsentRecord::compile(&doc, &c.policy, "r").unwrap();
        let mut builder = BucketBuilder::new(4);
        builder.add(c.snapshot.keying.key_of_user("u-1"), &record);
        for (b, bytes) in builder.finish(fingerprint, 7).unwrap() {
            store.put(&c.shared_keys.bucket(b), bytes);
        }
        let meta = PublishedMeta {
            version: 7,
            fetched_at_ms,
            generated_at: None,
            users: 1,
            bucket_bits: 4,
            fingerprint: to_hex(&fingerprint),
            epoch: 1,
            generation: 1,
        };
        store.put(c.shared_keys.meta_key(), meta.to_json());
    }

    fn found_stop_use(found: Found<'_>) -> Option<bool> {
        match found {
            Found::Record(r) => Some(r.is_some_and(|r| r.stop_use)),
            Found::Fault(_) => None,
        }
    }

    #[test]
    fn nothing_published_is_unavailable() {
        let c = config();
        let (store, cache) = (Map::default(), MetaCache::default());
        let l = SharedLookup::new(&c, &store, &cache, 1_000);
        assert_eq!(
            l.find(Some("u-1")),
            Found::Fault(Reason::SnapshotUnavailable)
        );
        assert_eq!(l.find(None), Found::Fault(Reason::SnapshotUnavailable));
    }

    #[test]
    fn a_published_record_is_found_and_strangers_have_none() {
        let c = config();
        let (store, cache) = (Map::default(), MetaCache::default());
        publish(&c, &store, 1_000, c.policy_fingerprint);
        let l = SharedLookup::new(&c, &store, &cache, 2_000);
        assert_eq!(found_stop_use(l.find(Some("u-1"))), Some(true));
        assert_eq!(found_stop_use(l.find(Some("u-2"))), Some(false));
        assert_eq!(found_stop_use(l.find(None)), Some(false));
        assert_eq!(cache.last_version(&c), Some(7));
    }

    #[test]
    fn a_snapshot_past_the_bound_is_stale_even_from_the_cache() {
        let c = config();
        let (store, cache) = (Map::default(), MetaCache::default());
        publish(&c, &store, 1_000, c.policy_fingerprint);
        let at_bound = SharedLookup::new(&c, &store, &cache, 6_000);
        assert_eq!(found_stop_use(at_bound.find(Some("u-1"))), Some(true));
        // Within the recheck window the cached metadata is used, and still judged.
        let past = SharedLookup::new(&c, &store, &cache, 6_001);
        assert_eq!(past.find(Some("u-1")), Found::Fault(Reason::SnapshotStale));
    }

    #[test]
    fn a_refreshed_snapshot_is_seen_after_the_recheck_window() {
        let c = config();
        let (store, cache) = (Map::default(), MetaCache::default());
        publish(&c, &store, 1_000, c.policy_fingerprint);
        assert!(found_stop_use(SharedLookup::new(&c, &store, &cache, 5_990).find(None)).is_some());
        publish(&c, &store, 6_000, c.policy_fingerprint);
        let soon = SharedLookup::new(&c, &store, &cache, 6_020);
        assert_eq!(
            soon.find(None),
            Found::Fault(Reason::SnapshotStale),
            "cached for 50 ms"
        );
        let later = SharedLookup::new(&c, &store, &cache, 6_020 + META_RECHECK_MS);
        assert_eq!(found_stop_use(later.find(Some("u-1"))), Some(true));
    }

    #[test]
    fn buckets_of_another_policy_are_refused_and_said_why() {
        let c = config();
        let (store, cache) = (Map::default(), MetaCache::default());
        publish(&c, &store, 1_000, [9; 8]);
        let l = SharedLookup::new(&c, &store, &cache, 1_500);
        assert_eq!(
            l.find(Some("u-1")),
            Found::Fault(Reason::SnapshotUnavailable)
        );
        assert_eq!(l.problem(), Some(ReadProblem::OtherPolicy));
    }

    #[test]
    fn a_corrupt_bucket_is_unavailable_not_an_empty_record() {
        let c = config();
        let (store, cache) = (Map::default(), MetaCache::default());
        publish(&c, &store, 1_000, c.policy_fingerprint);
        let key = c.snapshot.keying.key_of_user("u-1");
        let bucket = bucket_of(&key, 4);
        store.put(&c.shared_keys.bucket(bucket), b"CB2\0garbage".to_vec());
        let l = SharedLookup::new(&c, &store, &cache, 1_500);
        assert_eq!(
            l.find(Some("u-1")),
            Found::Fault(Reason::SnapshotUnavailable)
        );
        assert_eq!(l.problem(), Some(ReadProblem::BadBucket(bucket)));
    }
}
