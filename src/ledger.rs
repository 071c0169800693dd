//! The filter's side of the provision ledger on the request path: whether the ledger takes
//! records (the drainer's health flag, cached per VM and re-read at most every 50 ms, and
//! only for provisions the ledger records), and one shared-queue write per record at the
//! end of such a stream. Operator and processor traffic makes no host call here.

use std::cell::{Cell, RefCell};

use consent_core::ledger::{HealthCache, HEALTH_KEY, QUEUE_NAME};
use consent_core::live::META_RECHECK_MS;
use consent_core::stream::{LedgerEmit, Stream};
use consent_core::CompiledConfig;

use crate::host;

/// Name of the counter of provisions that passed unrecorded (`on_unavailable: pass`) or
/// whose record could not be queued.
pub const DROPPED: &str = "consent_ledger_dropped";

thread_local! {
    static HEALTH: HealthCache = HealthCache::default();
    /// The queue's id once resolved, and when it was last looked for.
    static QUEUE: Cell<(Option<u32>, u64)> = const { Cell::new((None, 0)) };
    /// This VM's `vm_id`, read once.
    static VM_ID: RefCell<Option<String>> = const { RefCell::new(None) };
    /// A random id of this VM and its record counter: together a unique request-id suffix.
    static UNIQUE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    static DROPPED_METRIC: Cell<Option<Option<host::Metric>>> = const { Cell::new(None) };
}

/// The shared queue, resolved once (looked for again at most every 50 ms while missing).
fn queue(now_ms: u64) -> Option<u32> {
    let (id, looked_at) = QUEUE.with(Cell::get);
    if id.is_some() || now_ms.saturating_sub(looked_at) < META_RECHECK_MS {
        return id;
    }
    let vm_id = VM_ID.with(|v| {
        v.borrow_mut()
            .get_or_insert_with(|| host::vm_id().unwrap_or_default())
            .clone()
    });
    let id = host::resolve_queue(&vm_id, QUEUE_NAME).ok().flatten();
    QUEUE.with(|q| q.set((id, now_ms)));
    id
}

/// Whether a provision the ledger records may proceed now: the drainer's queue exists and
/// its flag says available (fresh).
pub fn available(config: &CompiledConfig) -> bool {
    let now = host::unix_ms();
    if queue(now).is_none() {
        return false;
    }
    HEALTH.with(|h| {
        h.available(now, config.ledger.health_stale_ms, || {
            host::shared_data(HEALTH_KEY).ok().and_then(|(v, _)| v)
        })
    })
}

fn unique() -> String {
    UNIQUE.with(|u| {
        let (mut nonce, seq) = u.get();
        if nonce == 0 {
            use std::hash::{BuildHasher, Hasher};
            // RandomState is seeded from WASI's random_get.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(host::unix_ms());
            nonce = h.finish().max(1);
        }
        let seq = seq.wrapping_add(1);
        u.set((nonce, seq));
        format!("{nonce:016x}-{seq}")
    })
}

fn count_dropped() {
    let metric = DROPPED_METRIC.with(|m| {
        let metric = m.get().unwrap_or_else(|| host::Metric::counter(DROPPED));
        m.set(Some(metric));
        metric
    });
    if let Some(metric) = metric {
        metric.inc();
    }
}

/// At stream end: queues the stream's record, if it is a provision the ledger records.
pub fn emit(config: &CompiledConfig, stream: &mut Stream) {
    if !config.ledger.enabled {
        return;
    }
    match stream.ledger_emit(config, host::unix_ms, unique) {
        LedgerEmit::Nothing => {}
        LedgerEmit::Unrecorded => count_dropped(),
        LedgerEmit::Record(json) => {
            let queued = queue(host::unix_ms()).map(|q| host::enqueue(q, &json));
            if !matches!(queued, Some(Ok(()))) {
                // The queue went away after the gate said available (a drainer restart).
                QUEUE.with(|q| q.set((None, 0)));
                count_dropped();
                log::error!("consent filter: ledger: cannot queue a provision record");
            }
        }
    }
}
