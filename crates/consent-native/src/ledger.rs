//! The provision ledger in the native module: one outbox per process, in process memory
//! that every worker reads, so no queue and no health flag are needed. Workers check it
//! (a lock, no Envoy call) before a provision to a third party or joint user and put the
//! stream's record in it at the end; the snapshot fetcher's owner configuration sends its
//! batches to `POST /ledger` on its ticks (HTTP callouts on the main thread) with the
//! core's [`Outbox`] deciding batches, retries and health, as the wasm drainer does.
//!
//! The outbox outlives the configuration that created it (a listener update, a new owner):
//! records wait until some configuration's fetcher sends them; only a process exit loses
//! them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use consent_core::ledger::{LedgerSettings, Outbox};

use crate::config::FilterConfig;
use crate::envoy::{self, Level};
use crate::filter::unix_ms;

/// The process's ledger.
struct Ledger {
    outbox: Outbox,
    settings: LedgerSettings,
    /// The batch out: the sending configuration's id and Envoy's callout id.
    pending: Option<(u64, u64)>,
}

static LEDGER: Mutex<Option<Ledger>> = Mutex::new(None);
static SEQ: AtomicU64 = AtomicU64::new(0);
static NONCE: AtomicU64 = AtomicU64::new(0);

fn with<R>(f: impl FnOnce(&mut Option<Ledger>) -> R) -> Option<R> {
    LEDGER.lock().ok().map(|mut ledger| f(&mut ledger))
}

/// A fetcher with `settings` (the ledger is enabled) starts: the outbox exists from now on
/// (one already there, with its records, is kept; a batch a former owner sent is sent
/// again, since its answer goes to a configuration that is gone).
pub fn start(settings: &LedgerSettings) {
    with(|ledger| match ledger {
        Some(l) => {
            if l.pending.take().is_some() {
                l.outbox.not_sent(unix_ms());
            }
        }
        None => {
            *ledger = Some(Ledger {
                outbox: Outbox::new(settings),
                settings: settings.clone(),
                pending: None,
            });
        }
    });
}

/// Whether a provision the ledger records may proceed now (no fetcher yet: no).
pub fn available() -> bool {
    with(|ledger| {
        ledger
            .as_ref()
            .is_some_and(|l| l.outbox.health(unix_ms()).available)
    })
    .unwrap_or(false)
}

/// A request-id suffix no other record of this process has.
pub fn unique() -> String {
    let mut nonce = NONCE.load(Ordering::Relaxed);
    if nonce == 0 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(unix_ms());
        nonce = h.finish().max(1);
        nonce = match NONCE.compare_exchange(0, nonce, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => nonce,
            Err(set) => set,
        };
    }
    let seq = SEQ.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    format!("{nonce:016x}-{seq}")
}

/// Puts a record in the outbox; false when it was not kept.
pub fn queue(json: Vec<u8>) -> bool {
    with(|ledger| {
        ledger
            .as_mut()
            .is_some_and(|l| l.outbox.has_room() && l.outbox.push(json, unix_ms()))
    })
    .unwrap_or(false)
}

/// A tick of the fetcher owned by `owner`: sends the next batch, if any.
pub fn on_tick(owner: &FilterConfig) {
    let metrics = owner.ledger_metrics;
    let refused = with(|ledger| {
        let l = ledger.as_mut()?;
        if let Some(id) = metrics.buffered {
            owner.envoy.set_gauge(id, l.outbox.len() as u64);
        }
        if l.pending.is_some() {
            return None;
        }
        let body = l.outbox.next_batch(unix_ms())?;
        let headers = [
            (":method", "POST"),
            (":path", l.settings.path.as_str()),
            (":authority", l.settings.authority.as_str()),
            ("content-type", "application/json"),
        ];
        match owner.envoy.http_call_with_body(
            &l.settings.cluster,
            &headers,
            &body,
            l.settings.timeout_ms,
        ) {
            Ok(callout) => {
                l.pending = Some((owner.id, callout));
                None
            }
            Err(code) => {
                l.outbox.not_sent(unix_ms());
                Some(code)
            }
        }
    })
    .flatten();
    if let Some(code) = refused {
        count(owner, metrics.failures, 1);
        envoy::log(
            Level::Warn,
            &format!("consent ledger: Envoy refused the call to the consent source ({code})"),
        );
    }
}

fn count(owner: &FilterConfig, id: Option<usize>, n: u64) {
    if let Some(id) = id {
        for _ in 0..n {
            owner.envoy.count(id);
        }
    }
}

/// The answer to callout `callout` of configuration `config`; false when it is not the
/// ledger's.
pub fn on_answer(owner: &FilterConfig, callout: u64, status: Option<u16>) -> bool {
    let answered = with(|ledger| {
        let l = ledger.as_mut()?;
        if l.pending != Some((owner.id, callout)) {
            return None;
        }
        l.pending = None;
        Some(l.outbox.answered(status, unix_ms()))
    })
    .flatten();
    let Some(answered) = answered else {
        return false;
    };
    let metrics = owner.ledger_metrics;
    count(owner, metrics.sent, answered.sent as u64);
    if answered.failed {
        count(owner, metrics.failures, 1);
        envoy::log(
            Level::Warn,
            &format!(
                "consent ledger: the consent source did not take a batch ({})",
                status.map_or("no answer".to_string(), |s| s.to_string())
            ),
        );
    }
    if answered.dropped > 0 {
        count(owner, metrics.dropped, answered.dropped as u64);
        envoy::log(
            Level::Error,
            &format!(
                "consent ledger: dropped {} record(s) the consent source refuses",
                answered.dropped
            ),
        );
    }
    true
}
