//! The ledger drainer: runs where the snapshot fetcher runs (the singleton, or the worker
//! holding the fetcher lease). On every tick it takes the records the filters queued into
//! its bounded [`Outbox`], sends them to the consent source in `POST /ledger` batches
//! (one call out at a time; the next goes as soon as the last is answered), keeps what is
//! unsent in shared data (for the next drainer, should this VM or root context go) and
//! writes the health flag the filters read. Batching, retries and health are the core's; this file
//! only makes the host calls.

use std::time::Duration;

use consent_core::ledger::{
    encode_health, LedgerSettings, Outbox, HEALTH_KEY, OUTBOX_KEY, QUEUE_NAME,
};

use crate::host;

/// The drainer's stats.
struct Stats {
    sent: Option<host::Metric>,
    failures: Option<host::Metric>,
    dropped: Option<host::Metric>,
    buffered: Option<host::Metric>,
}

/// The outbox, the queue this root context drains, and the call out.
pub struct Drainer {
    settings: LedgerSettings,
    outbox: Outbox,
    queue: Option<u32>,
    token: Option<u32>,
    stats: Stats,
    /// The last health flag written (available), to log changes only.
    was_available: Option<bool>,
    /// The last batch failed (failures are logged once until one succeeds).
    failing: bool,
    /// The outbox changed since it was last kept in shared data.
    dirty: bool,
}

impl Drainer {
    /// A drainer for `settings` (the ledger is enabled); registers nothing yet.
    pub fn new(settings: &LedgerSettings) -> Self {
        Drainer {
            outbox: Outbox::new(settings),
            settings: settings.clone(),
            queue: None,
            token: None,
            stats: Stats {
                sent: host::Metric::counter("consent_ledger_records_sent"),
                failures: host::Metric::counter("consent_ledger_send_failures"),
                dropped: host::Metric::counter(crate::ledger::DROPPED),
                buffered: host::Metric::gauge("consent_ledger_buffered"),
            },
            was_available: None,
            failing: false,
            dirty: false,
        }
    }

    /// Registers (or takes over) the queue; records already in it stay. False when the
    /// host refuses.
    pub fn start(&mut self) -> bool {
        match host::register_queue(QUEUE_NAME) {
            Ok(id) => {
                self.queue = Some(id);
                self.take_back();
                self.on_tick();
                true
            }
            Err(status) => {
                log::error!("consent ledger: cannot register the record queue: {status:?}");
                false
            }
        }
    }

    /// Takes back the records a former drainer kept in shared data and had not sent (its
    /// VM or root context was replaced, or the lease moved).
    fn take_back(&mut self) {
        let Ok((Some(kept), _)) = host::shared_data(OUTBOX_KEY) else {
            return;
        };
        if kept.is_empty() {
            return;
        }
        let before = self.outbox.len();
        let dropped = self.outbox.restore(&kept, host::unix_ms());
        log::info!(
            "consent ledger: took back {} unsent record(s) of a former drainer",
            self.outbox.len().saturating_sub(before)
        );
        if dropped > 0 {
            self.count_dropped(dropped);
            log::error!("consent ledger: {dropped} kept record(s) did not fit in the buffer");
        }
        self.dirty = true;
    }

    /// Whether this drainer drains (it registered the queue).
    pub fn draining(&self) -> bool {
        self.queue.is_some()
    }

    /// Stops taking records (the fetcher lease went to another worker); what the outbox
    /// holds is still sent.
    pub fn stop(&mut self) {
        self.queue = None;
    }

    /// One tick: take queued records while there is room, send, publish health.
    pub fn on_tick(&mut self) {
        let now = host::unix_ms();
        if let Some(queue) = self.queue {
            while self.outbox.has_room() {
                match host::dequeue(queue) {
                    Ok(Some(record)) => {
                        self.dirty = true;
                        if !self.outbox.push(record, now) {
                            self.count_dropped(1);
                            log::error!("consent ledger: dropped a record larger than a batch");
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        log::error!("consent ledger: cannot read the record queue: {status:?}");
                        break;
                    }
                }
            }
        }
        self.send(now);
        self.publish(now);
    }

    fn send(&mut self, now: u64) {
        let Some(body) = self.outbox.next_batch(now) else {
            return;
        };
        let headers = vec![
            (":method", "POST"),
            (":path", self.settings.path.as_str()),
            (":authority", self.settings.authority.as_str()),
            ("content-type", "application/json"),
        ];
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        match host::http_call_with_body(&self.settings.cluster, headers, &body, timeout) {
            Ok(token) => self.token = Some(token),
            Err(status) => {
                log::warn!("consent ledger: cannot call the consent source: {status:?}");
                self.outbox.not_sent(now);
                if let Some(m) = self.stats.failures {
                    m.inc();
                }
            }
        }
    }

    fn publish(&mut self, now: u64) {
        let health = self.outbox.health(now);
        if !self.draining() {
            // The gauge and the flag are the lease holder's.
            return;
        }
        if let Some(m) = self.stats.buffered {
            m.set(health.buffered as u64);
        }
        if self.dirty {
            // Kept before the flag: a record is never said to be safe before it is kept.
            match host::set_shared_data(OUTBOX_KEY, &self.outbox.to_lines()) {
                Ok(()) => self.dirty = false,
                Err(status) => log::error!("consent ledger: cannot keep its records: {status:?}"),
            }
        }
        if let Err(status) = host::set_shared_data(HEALTH_KEY, &encode_health(health, now)) {
            log::error!("consent ledger: cannot publish its health: {status:?}");
        }
        if self.was_available != Some(health.available) {
            if health.available {
                log::info!(
                    "consent ledger: available ({} records waiting)",
                    health.buffered
                );
            } else {
                log::warn!(
                    "consent ledger: unavailable ({} records waiting, the oldest past ledger.max_unsent_age_ms or the buffer full); provisions to third parties and joint users are {}",
                    health.buffered,
                    match self.settings.on_unavailable {
                        consent_core::ledger::OnUnavailable::Block => "blocked",
                        consent_core::ledger::OnUnavailable::Pass => "passed unrecorded",
                    }
                );
            }
            self.was_available = Some(health.available);
        }
    }

    fn count_dropped(&self, n: usize) {
        if let Some(m) = self.stats.dropped {
            m.add(n as u64);
        }
    }

    /// Whether `token` is this drainer's call.
    pub fn awaits(&self, token: u32) -> bool {
        self.token == Some(token)
    }

    /// The consent source answered (or the call failed: no `:status`).
    pub fn on_response(&mut self, status: Option<u16>) {
        self.token = None;
        let now = host::unix_ms();
        let answered = self.outbox.answered(status, now);
        self.dirty |= answered.sent > 0 || answered.dropped > 0;
        if answered.sent > 0 {
            if let Some(m) = self.stats.sent {
                m.add(answered.sent as u64);
            }
        }
        if answered.failed {
            if let Some(m) = self.stats.failures {
                m.inc();
            }
            if !self.failing || answered.dropped > 0 {
                // The status only: the answer's body is whatever the cluster sends, and
                // may quote what it was sent (keyed subjects, request ids).
                log::warn!(
                    "consent ledger: the consent source did not take a batch ({}); retrying (counted in consent_ledger_send_failures)",
                    status.map_or("no answer".to_string(), |s| s.to_string())
                );
            }
            self.failing = true;
        } else if self.failing {
            log::info!("consent ledger: the consent source takes records again");
            self.failing = false;
        }
        if answered.dropped > 0 {
            self.count_dropped(answered.dropped);
            log::error!(
                "consent ledger: dropped {} record(s) the consent source refuses",
                answered.dropped
            );
        }
        // The next batch goes at once (or after the retry wait, on a later tick).
        self.send(now);
        self.publish(now);
    }
}
