//! The filter's side of the live snapshot: Envoy shared data as the core's
//! [`SharedStore`], this VM's copy of the buckets ([`Replica`], one per snapshot namespace,
//! shared by the root contexts of that namespace), this VM's metadata cache, and the
//! lookup a request is decided with (the inline consents, or the live snapshot).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use consent_core::live::{
    LiveLookup, MetaCache, Refresh, Replica, SharedStore, SnapshotSource, StoreUnavailable, Stored,
    FILL_PER_TICK,
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

/// One VM's copy of the buckets of one configuration.
pub type SharedReplica = Rc<RefCell<Replica>>;

thread_local! {
    /// The metadata this VM read last, per namespace (requests its copy cannot answer).
    static META: MetaCache = MetaCache::default();
    /// This VM's copies by namespace, while a root context holds them.
    static REPLICAS: RefCell<Vec<(String, Weak<RefCell<Replica>>)>> = const { RefCell::new(Vec::new()) };
}

/// This VM's copy of the live snapshot of `config` (the one already held for its namespace,
/// or a new empty one); `None` for inline consents.
pub fn replica_for(config: &CompiledConfig) -> Option<SharedReplica> {
    if config.snapshot.source != SnapshotSource::Shared {
        return None;
    }
    let namespace = config.shared_keys.prefix();
    REPLICAS.with(|all| {
        let mut all = all.borrow_mut();
        all.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(held) = all
            .iter()
            .find(|(ns, _)| ns == namespace)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Some(held);
        }
        let replica = Rc::new(RefCell::new(Replica::new(config)));
        all.push((namespace.to_string(), Rc::downgrade(&replica)));
        Some(replica)
    })
}

/// One tick of this VM's copy: follow the published metadata, copy some buckets.
pub fn refresh(config: &CompiledConfig, replica: &RefCell<Replica>) -> Option<Refresh> {
    let mut replica = replica.try_borrow_mut().ok()?;
    Some(replica.refresh(config, &EnvoySharedData, FILL_PER_TICK))
}

/// Runs `decide` with the lookup `config` names: its inline consents, or the live
/// snapshot (this VM's copy when it can answer, else shared data) at the host's current
/// time, read only if the lookup is asked. A snapshot that cannot be read is logged once
/// per lookup, without a subject.
pub fn with_lookup<R>(
    config: &CompiledConfig,
    replica: Option<&RefCell<Replica>>,
    decide: impl FnOnce(&dyn ConsentLookup) -> R,
) -> R {
    if config.snapshot.source == SnapshotSource::Inline {
        return decide(&config.inline_consents());
    }
    let copy = replica.and_then(|r| r.try_borrow().ok());
    META.with(|cache| {
        let clock = host::unix_ms;
        let lookup = LiveLookup::new(config, &EnvoySharedData, cache, copy.as_deref(), &clock);
        let result = decide(&lookup);
        if let Some(problem) = lookup.problem() {
            log::error!("consent filter: {problem}");
        }
        result
    })
}

/// Version of the snapshot this VM decides on for `config` (no host call), for decision
/// logs: its copy's, else the one it last read from shared data.
pub fn last_version(config: &CompiledConfig, replica: Option<&RefCell<Replica>>) -> Option<u64> {
    match config.snapshot.source {
        SnapshotSource::Shared => replica
            .and_then(|r| r.try_borrow().ok().and_then(|r| r.version()))
            .or_else(|| META.with(|cache| cache.last_version(config))),
        SnapshotSource::Inline => Some(config.consents.version),
    }
}
