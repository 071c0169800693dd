//! The process-wide snapshot store: what the wasm filter keeps in Envoy shared data (the
//! published buckets and metadata of each configuration's namespace), kept here in one map
//! in the module's memory. The fetcher writes it on the main thread; every worker reads it
//! through the core's [`SharedStore`], one metadata check and one bucket per request, with
//! the same staleness bound and failure mode as the wasm filter.
//!
//! Values are reference-counted, so a read holds the lock only to clone a pointer, and a
//! write replaces one key without copying the others. Every write gets a new CAS token, as
//! Envoy shared data does, which the core's metadata cache keys on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use consent_core::live::{SharedStore, StoreUnavailable, Stored};

/// One stored value and its CAS token.
#[derive(Debug, Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    cas: u32,
}

/// A stored value: its bytes and CAS token.
pub type Value = (Arc<[u8]>, u32);

/// A map of keys to bytes shared by every thread of the process.
#[derive(Debug, Default)]
pub struct Store {
    map: RwLock<HashMap<String, Entry>>,
    next_cas: AtomicU32,
}

/// The store of this process.
pub static STORE: LazyLock<Store> = LazyLock::new(Store::default);

impl Store {
    /// Writes `bytes` under `key`; false only if the lock was poisoned (a writer panicked).
    pub fn put(&self, key: &str, bytes: &[u8]) -> bool {
        let cas = self
            .next_cas
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        let entry = Entry {
            bytes: Arc::from(bytes),
            cas,
        };
        match self.map.write() {
            Ok(mut map) => {
                match map.get_mut(key) {
                    Some(slot) => *slot = entry,
                    None => {
                        map.insert(key.to_string(), entry);
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The bytes under `key` and their CAS token (a shared pointer, no copy).
    pub fn bytes(&self, key: &str) -> Result<Option<Value>, StoreUnavailable> {
        let map = self.map.read().map_err(|_| StoreUnavailable)?;
        Ok(map.get(key).map(|e| (Arc::clone(&e.bytes), e.cas)))
    }

    /// Removes every key of a namespace (`<namespace>/...`), when no configuration reads
    /// it any more.
    pub fn remove_namespace(&self, namespace: &str) {
        let prefix = format!("{namespace}/");
        if let Ok(mut map) = self.map.write() {
            map.retain(|key, _| !key.starts_with(&prefix));
        }
    }

    /// Whether anything is stored under `key`.
    pub fn has(&self, key: &str) -> bool {
        matches!(self.bytes(key), Ok(Some(_)))
    }
}

impl SharedStore for Store {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreUnavailable> {
        Ok(self.bytes(key)?.map(|(bytes, cas)| Stored {
            bytes: bytes.to_vec(),
            cas: Some(cas),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_gets_a_new_cas_and_reads_see_the_last_one() {
        let store = Store::default();
        assert_eq!(store.get("k"), Ok(None));
        assert!(store.put("k", b"one"));
        let first = store.get("k").unwrap().unwrap();
        assert_eq!(first.bytes, b"one");
        assert!(store.put("k", b"two"));
        let second = store.get("k").unwrap().unwrap();
        assert_eq!(second.bytes, b"two");
        assert_ne!(first.cas, second.cas);
        assert!(store.has("k") && !store.has("other"));
    }

    #[test]
    fn a_namespace_goes_whole_and_alone() {
        let store = Store::default();
        store.put("consent/aa/meta", b"m");
        store.put("consent/aa/changes", b"c");
        store.put("c/qq/1", b"b");
        store.put("consent/aab/meta", b"other");
        store.remove_namespace("consent/aa");
        assert!(!store.has("consent/aa/meta") && !store.has("consent/aa/changes"));
        assert!(
            store.has("c/qq/1"),
            "bucket keys are under their own prefix"
        );
        store.remove_namespace("c/qq");
        assert!(!store.has("c/qq/1"));
        assert!(store.has("consent/aab/meta"));
    }

    #[test]
    fn readers_on_other_threads_see_what_was_written() {
        let store = Arc::new(Store::default());
        store.put("bucket", b"abc");
        let reader = Arc::clone(&store);
        let seen = std::thread::spawn(move || reader.get("bucket").unwrap().unwrap().bytes)
            .join()
            .unwrap();
        assert_eq!(seen, b"abc");
    }
}
