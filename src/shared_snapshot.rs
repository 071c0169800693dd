//! The filter's side of the live snapshot: one small metadata read (parsed again only when
//! its CAS changes) and one bucket read per request.

use std::cell::RefCell;

use consent_core::buckets::{bucket_of, find_in_bucket};
use consent_core::keyed_snapshot::PublishedMeta;
use consent_core::snapshot::ConsentRecord;
use consent_core::subject_key::to_hex;
use consent_core::{CompiledConfig, Reason};

use crate::host;

/// A record lookup in the published snapshot.
pub enum Lookup {
    /// The snapshot is usable; the person's record, if any.
    Record(Option<ConsentRecord>),
    /// The snapshot cannot be trusted: decide with the failure mode and this reason.
    Fault(Reason),
}

/// How long a VM trusts the metadata it read before reading it again. The bucket itself
/// is read on every request; the metadata only says how buckets are laid out and when the
/// source last confirmed the snapshot, so staleness is judged at most this much late.
const META_RECHECK_MS: u64 = 50;

/// What a request needs from the metadata.
#[derive(Debug, Clone, Copy)]
struct MetaView {
    version: u64,
    fetched_at_ms: u64,
    bucket_bits: u8,
}

/// The metadata a VM read last, for one namespace.
struct Cached {
    namespace: String,
    cas: u32,
    read_at_ms: u64,
    meta: MetaView,
}

thread_local! {
    /// The last metadata read by this VM per namespace (a VM holds more than one
    /// configuration during a reload).
    static META: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

fn current_meta(config: &CompiledConfig) -> Result<MetaView, Reason> {
    let now = host::unix_ms();
    let namespace = config.shared_keys.prefix();
    let fresh = META.with(|m| {
        m.borrow()
            .iter()
            .find(|c| c.namespace == namespace)
            .filter(|c| now.saturating_sub(c.read_at_ms) < META_RECHECK_MS)
            .map(|c| c.meta)
    });
    let meta = match fresh {
        Some(meta) => meta,
        None => read_meta(config, now)?,
    };
    if now.saturating_sub(meta.fetched_at_ms) > config.snapshot.max_staleness_ms {
        return Err(Reason::SnapshotStale);
    }
    Ok(meta)
}

/// Reads the metadata (parsing it again only when its CAS token changed) and caches it.
fn read_meta(config: &CompiledConfig, now: u64) -> Result<MetaView, Reason> {
    let namespace = config.shared_keys.prefix();
    let (bytes, cas) = host::shared_data(config.shared_keys.meta_key())
        .map_err(|_| Reason::SnapshotUnavailable)?;
    let (Some(bytes), Some(cas)) = (bytes, cas) else {
        return Err(Reason::SnapshotUnavailable);
    };
    let known = META.with(|m| {
        m.borrow()
            .iter()
            .find(|c| c.namespace == namespace && c.cas == cas)
            .map(|c| c.meta)
    });
    let meta = match known {
        Some(meta) => meta,
        None => {
            let meta = PublishedMeta::from_json(&bytes).ok_or(Reason::SnapshotUnavailable)?;
            if meta.fingerprint != to_hex(&config.policy_fingerprint) {
                log::error!("consent filter: the published snapshot was built for another policy; check that the fetcher and the filter have the same policy");
                return Err(Reason::SnapshotUnavailable);
            }
            MetaView {
                version: meta.version,
                fetched_at_ms: meta.fetched_at_ms,
                bucket_bits: meta.bucket_bits,
            }
        }
    };
    META.with(|m| {
        let mut m = m.borrow_mut();
        let entry = Cached {
            namespace: namespace.to_string(),
            cas,
            read_at_ms: now,
            meta,
        };
        match m.iter_mut().find(|c| c.namespace == namespace) {
            Some(c) => *c = entry,
            None => {
                // Keep the cache small: old namespaces go first.
                if m.len() >= 4 {
                    m.remove(0);
                }
                m.push(entry);
            }
        }
    });
    Ok(meta)
}

/// Looks up `user` (None: the request names nobody) in the published snapshot.
pub fn lookup(config: &CompiledConfig, user: Option<&str>) -> Lookup {
    let meta = match current_meta(config) {
        Ok(meta) => meta,
        Err(reason) => return Lookup::Fault(reason),
    };
    let Some(user) = user else {
        return Lookup::Record(None);
    };
    let key = config.snapshot.keying.key_of_user(user);
    let bucket = bucket_of(&key, meta.bucket_bits);
    match host::shared_data(&config.shared_keys.bucket(bucket)) {
        Ok((None, _)) => Lookup::Record(None),
        Ok((Some(bytes), _)) => match find_in_bucket(&bytes, config.policy_fingerprint, &key) {
            Ok(record) => Lookup::Record(record),
            Err(e) => {
                log::error!("consent filter: bucket {bucket}: {e}");
                Lookup::Fault(Reason::SnapshotUnavailable)
            }
        },
        Err(_) => Lookup::Fault(Reason::SnapshotUnavailable),
    }
}

/// Version of the snapshot this VM last read for `config` (no host call), for decision logs.
pub fn last_version(config: &CompiledConfig) -> Option<u64> {
    let namespace = config.shared_keys.prefix();
    META.with(|m| {
        m.borrow()
            .iter()
            .find(|c| c.namespace == namespace)
            .map(|c| c.meta.version)
    })
}
