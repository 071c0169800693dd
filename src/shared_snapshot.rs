//! The filter's side of the live snapshot: Envoy shared data as the core's
//! [`SharedStore`], this VM's metadata cache, and the lookup a request is decided with
//! (the inline consents, or the published buckets).

use consent_core::live::{
    MetaCache, SharedLookup, SharedStore, SnapshotSource, StoreUnavailable, Stored,
};
use consent_core::{CompiledConfig, ConsentLookup};

use crate::host;

/// Envoy shared data (same `vm_id` as the fetcher).
struct EnvoySharedData;

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreUnavailable> {
        match host::shared_data(key) {
            Ok((Some(bytes), cas)) => Ok(Some(Stored { bytes, cas })),
            Ok((None, _)) => Ok(None),
            Err(_) => Err(StoreUnavailable),
        }
    }
}

thread_local! {
    /// The metadata this VM read last, per namespace.
    static META: MetaCache = MetaCache::default();
}

/// Runs `decide` with the lookup `config` names: its inline consents, or the live
/// snapshot in shared data (at the host's current time). A snapshot that cannot be read
/// is logged once per lookup, without a subject.
pub fn with_lookup<R>(config: &CompiledConfig, decide: impl FnOnce(&dyn ConsentLookup) -> R) -> R {
    if config.snapshot.source == SnapshotSource::Inline {
        return decide(&config.inline_consents());
    }
    META.with(|cache| {
        let lookup = SharedLookup::new(config, &EnvoySharedData, cache, host::unix_ms());
        let result = decide(&lookup);
        if let Some(problem) = lookup.problem() {
            log::error!("consent filter: {problem}");
        }
        result
    })
}

/// Version of the snapshot this VM last read for `config` (no host call), for decision logs.
pub fn last_version(config: &CompiledConfig) -> Option<u64> {
    match config.snapshot.source {
        SnapshotSource::Shared => META.with(|cache| cache.last_version(config)),
        SnapshotSource::Inline => Some(config.consents.version),
    }
}
