//! How the workers learn, without a host call per request, whether the ledger takes
//! records: the drainer writes a small flag into shared data on every tick (available or
//! not, when, how many records wait), and each worker VM re-reads it at most every
//! [`META_RECHECK_MS`], only when a request is a provision the ledger records. A flag that
//! is missing, unreadable or older than the bound (the drainer stopped) means unavailable.

use std::cell::Cell;

use crate::ledger::outbox::Health;
use crate::live::reader::META_RECHECK_MS;

/// Shared-data key of the flag (same `vm_id` as the filter).
pub const HEALTH_KEY: &str = "consent/ledger/health";
/// Shared-data key of the drainer's unsent records (one a line), for the next drainer.
pub const OUTBOX_KEY: &str = "consent/ledger/outbox";
/// Shared queue the filters put records in and the drainer takes them from.
pub const QUEUE_NAME: &str = "consent_ledger";

/// The flag as written: `1 <written_ms> <buffered>` or `0 ...`.
pub fn encode_health(health: Health, now_ms: u64) -> Vec<u8> {
    format!(
        "{} {now_ms} {}",
        u8::from(health.available),
        health.buffered
    )
    .into_bytes()
}

/// Whether the flag `bytes` says available at `now_ms`, given that a flag older than
/// `stale_ms` no longer counts.
pub fn available_from(bytes: Option<&[u8]>, now_ms: u64, stale_ms: u64) -> bool {
    let Some(text) = bytes.and_then(|b| std::str::from_utf8(b).ok()) else {
        return false;
    };
    let mut parts = text.split(' ');
    let ok = parts.next() == Some("1");
    let written = parts.next().and_then(|t| t.parse::<u64>().ok());
    match written {
        Some(at) => ok && now_ms.saturating_sub(at) <= stale_ms,
        None => false,
    }
}

/// One worker VM's view of the flag.
#[derive(Debug, Default)]
pub struct HealthCache {
    last: Cell<Option<(u64, bool)>>,
}

impl HealthCache {
    /// Whether the ledger is available at `now_ms`; `read` fetches the flag from shared
    /// data, called at most once per [`META_RECHECK_MS`].
    pub fn available(
        &self,
        now_ms: u64,
        stale_ms: u64,
        read: impl FnOnce() -> Option<Vec<u8>>,
    ) -> bool {
        if let Some((at, available)) = self.last.get() {
            if now_ms.saturating_sub(at) < META_RECHECK_MS && now_ms >= at {
                return available;
            }
        }
        let available = available_from(read().as_deref(), now_ms, stale_ms);
        self.last.set(Some((now_ms, available)));
        available
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn flag(available: bool, at: u64) -> Vec<u8> {
        encode_health(
            Health {
                available,
                buffered: 3,
            },
            at,
        )
    }

    #[test]
    fn the_flag_says_available_only_while_fresh() {
        assert!(available_from(Some(&flag(true, 1000)), 1000, 500));
        assert!(available_from(Some(&flag(true, 1000)), 1500, 500));
        assert!(!available_from(Some(&flag(true, 1000)), 1501, 500), "stale");
        assert!(!available_from(Some(&flag(false, 1000)), 1000, 500));
        assert!(!available_from(None, 1000, 500), "no drainer yet");
        assert!(!available_from(Some(b"garbage"), 1000, 500));
    }

    #[test]
    fn a_worker_reads_the_flag_at_most_once_per_recheck_window() {
        let cache = HealthCache::default();
        let reads = Cell::new(0);
        let read = |value: Vec<u8>| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                Some(value)
            }
        };
        assert!(cache.available(1000, 10_000, read(flag(true, 1000))));
        assert!(cache.available(1010, 10_000, read(flag(false, 1000))));
        assert_eq!(reads.get(), 1, "cached inside the window");
        assert!(!cache.available(1000 + META_RECHECK_MS, 10_000, read(flag(false, 1040))));
        assert_eq!(reads.get(), 2);
    }
}
