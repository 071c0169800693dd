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

thread_local! {
    /// The last metadata read by this VM, with its CAS token.
    static META: RefCell<Option<(u32, PublishedMeta)>> = const { RefCell::new(None) };
}

fn current_meta(config: &CompiledConfig) -> Result<PublishedMeta, Reason> {
    let (bytes, cas) =
        host::shared_data(&config.shared_keys.meta()).map_err(|_| Reason::SnapshotUnavailable)?;
    let (Some(bytes), Some(cas)) = (bytes, cas) else {
        return Err(Reason::SnapshotUnavailable);
    };
    let cached = META.with(|m| {
        m.borrow()
            .as_ref()
            .filter(|(c, _)| *c == cas)
            .map(|(_, meta)| meta.clone())
    });
    let meta = match cached {
        Some(meta) => meta,
        None => {
            let meta = PublishedMeta::from_json(&bytes).ok_or(Reason::SnapshotUnavailable)?;
            if meta.fingerprint != to_hex(&config.policy_fingerprint) {
                log::error!("consent filter: the published snapshot was built for another policy; check that the fetcher and the filter have the same policy");
                return Err(Reason::SnapshotUnavailable);
            }
            META.with(|m| *m.borrow_mut() = Some((cas, meta.clone())));
            meta
        }
    };
    let age = host::unix_ms().saturating_sub(meta.fetched_at_ms);
    if age > config.snapshot.max_staleness_ms {
        return Err(Reason::SnapshotStale);
    }
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

/// Version of the snapshot this VM last read (no host call), for decision logs.
pub fn last_version() -> Option<u64> {
    META.with(|m| m.borrow().as_ref().map(|(_, meta)| meta.version))
}
