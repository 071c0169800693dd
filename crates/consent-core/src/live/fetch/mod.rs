//! The fetch protocol of the live snapshot as a state machine without I/O. The host (the
//! proxy-wasm fetcher, or a test's map) feeds it ticks, lease checks, the source's answers
//! and what it read from shared data; the machine answers with [`Effects`] to carry out:
//! calls to the source, bucket and metadata writes, stats, the tick period, log lines.
//! [`FetchMachine::run`] carries them out through a [`FetchHost`].
//!
//! The protocol: a full snapshot at `path` (conditional on the last ETag: 304 is nothing
//! new), in parts at `{path}/parts/{i}` when part 0 says so (restarted when the version
//! changes while parts are read); once published, deltas at `{deltas_path}/{version}` (404
//! is nothing newer; a gap or an invalid delta makes the next fetch a full one). A full
//! publish empties the buckets it no longer writes, or every bucket it does not write when
//! what is published is not known (metadata existed when the fetcher started, a lease
//! handover, a failed shared-data write or read).
//!
//! With `snapshot.public_key`, every 200 is checked against its minisign signature (the
//! `consent-signature` header, else a second call for the same path plus `.minisig`)
//! before any byte of it is parsed (`verify.rs`); a full snapshot older than the newest
//! version published is refused (a replay).

mod delta;
mod driver;
mod effects;
mod full;
#[cfg(test)]
mod tests;
mod verify;

use std::collections::BTreeSet;
use std::rc::Rc;

use crate::config::CompiledConfig;
use crate::live::changes::{ChangeLog, Changed};
use crate::live::delta::KeyedDelta;
use crate::live::meta::PublishedMeta;

pub use delta::BucketsRead;
pub use driver::{FetchHost, HostFailure};
pub use effects::{
    BucketRead, Counter, Effect, Effects, FetchRequest, Gauge, LogLevel, LogLine, Slot, TickChange,
};

/// Tick period until the first snapshot is published.
pub const FIRST_TICK_MS: u64 = 20;

/// What an outstanding call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Part 0 of a full snapshot (conditional on the last ETag).
    Full,
    /// Part `i` (> 0) of the full snapshot being loaded.
    Part(u32),
    /// The changes after the published version.
    Delta,
    /// The `.minisig` file of an answer that came without a signature header.
    Signature,
}

/// The call that is out, and its token once the host reported it.
#[derive(Debug)]
struct InFlight {
    ask: Ask,
    token: Option<u32>,
}

/// The source's answer to a call.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// HTTP status; `None` when the call failed (no answer).
    pub status: Option<u16>,
    /// The `etag` header.
    pub etag: Option<&'a str>,
    /// The `consent-signature` header (base64 of the body's `.minisig` file).
    pub signature: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// The fetcher's state, kept across ticks.
#[derive(Debug)]
pub struct FetchMachine {
    config: Rc<CompiledConfig>,
    /// ETag of the published full snapshot.
    etag: Option<String>,
    in_flight: Option<InFlight>,
    /// A full snapshot arriving in parts.
    loading: Option<full::Loading>,
    /// A checked delta waiting for the published bytes of its buckets.
    delta: Option<KeyedDelta>,
    /// A delta could not be applied: the next fetch is a full one.
    need_full: bool,
    /// The buckets this fetcher published.
    published: BTreeSet<u32>,
    /// Buckets may hold data this fetcher did not write (an earlier fetcher's, a lease
    /// holder's, a failed write's): the next full publish empties every bucket it does
    /// not write.
    published_unknown: bool,
    /// The published metadata.
    meta: Option<PublishedMeta>,
    /// The metadata before the last effects changed it, until the host's next input shows
    /// that none of them failed.
    meta_before: Option<Option<PublishedMeta>>,
    /// Whether this worker held the fetcher lease at the last check (`None` before the
    /// first, and always for a singleton).
    lease_held: Option<bool>,
    /// What the publishes of this epoch changed (published with each).
    changes: ChangeLog,
    /// An answer waiting for its `.minisig` file.
    unsigned: Option<verify::Unsigned>,
    /// The newest version published (by this fetcher, or found in shared data): older full
    /// snapshots are refused. Kept when the fetcher forgets what it published.
    newest_version: u64,
}

impl FetchMachine {
    /// A fetcher for `config` (its `snapshot` block says where and how often).
    /// `published_before`: metadata already exists in shared data, so buckets may hold an
    /// earlier fetcher's data. `epoch`: where this fetcher's epoch numbers start; random
    /// (64 bits from the host), so that no two fetchers of one namespace share an epoch.
    pub fn new(config: Rc<CompiledConfig>, published_before: bool, epoch: u64) -> Self {
        let bits = config.snapshot.bucket_bits;
        FetchMachine {
            changes: ChangeLog::new(epoch, bits),
            config,
            etag: None,
            in_flight: None,
            loading: None,
            delta: None,
            need_full: true,
            published: BTreeSet::new(),
            published_unknown: published_before,
            meta: None,
            meta_before: None,
            lease_held: None,
            unsigned: None,
            newest_version: 0,
        }
    }

    /// A snapshot of `version` is published in shared data (the host read its metadata, at
    /// start or on taking the lease): older full snapshots are refused from now on.
    pub fn published_version(&mut self, version: u64) {
        self.newest_version = self.newest_version.max(version);
    }

    /// Starts ticking, fast until the first snapshot is published.
    pub fn start(&self) -> Effects {
        Effects::from(Effect::SetTick {
            period_ms: FIRST_TICK_MS,
            change: TickChange::First,
        })
    }

    /// How long a lease claimed now runs (worker-lease mode).
    pub fn lease_ttl_ms(&self) -> u64 {
        self.config.snapshot.refresh_ms.saturating_mul(3).max(3000)
    }

    /// Worker-lease mode, before each tick: whether worker `holder` holds the lease now.
    /// After a handover (either way) the buckets may hold what another holder wrote, so
    /// the next full publish rewrites or empties every one of them; a worker without the
    /// lease ticks slower and does not fetch.
    pub fn on_lease(&mut self, holder: u64, holds: bool) -> Effects {
        self.settle();
        let mut effects = Effects::none();
        if self.lease_held == Some(holds) {
            return effects;
        }
        if holds || self.lease_held == Some(true) {
            let verb = if holds { "took" } else { "lost" };
            effects.log(
                LogLevel::Info,
                format!("consent fetcher: worker {holder} {verb} the fetcher lease"),
            );
        }
        // A new fetcher already knows from the metadata whether anything was published.
        if self.lease_held.is_some() {
            self.forget();
        }
        if !holds {
            // Only the holder needs the fast first-fetch tick.
            effects.push(Effect::SetTick {
                period_ms: self.config.snapshot.refresh_ms.clamp(200, 1000),
                change: TickChange::Slow,
            });
        }
        self.lease_held = Some(holds);
        effects
    }

    /// One tick at `now_ms`: the age gauge, and a call to the source unless one is out.
    pub fn on_tick(&mut self, now_ms: u64) -> Effects {
        self.settle();
        let mut effects = Effects::none();
        if self.lease_held == Some(false) {
            return effects;
        }
        if let Some(meta) = &self.meta {
            effects.push(Effect::SetGauge(
                Gauge::AgeMs,
                now_ms.saturating_sub(meta.fetched_at_ms),
            ));
        }
        if let Some(ask) = self.periodic_ask() {
            effects.push(self.ask(ask));
        }
        effects
    }

    /// The call a tick would make now; `None` while a call is out or without the lease.
    pub fn next_request(&self) -> Option<FetchRequest> {
        self.periodic_ask().map(|ask| self.request(ask))
    }

    fn periodic_ask(&self) -> Option<Ask> {
        if self.in_flight.is_some() || self.lease_held == Some(false) {
            return None;
        }
        Some(match (&self.config.snapshot.deltas_path, &self.meta) {
            (Some(_), Some(_)) if !self.need_full => Ask::Delta,
            _ => Ask::Full,
        })
    }

    fn request(&self, ask: Ask) -> FetchRequest {
        let s = &self.config.snapshot;
        let path = match (ask, &s.deltas_path, &self.meta) {
            (Ask::Signature, _, _) => self.signature_path(),
            (Ask::Delta, Some(deltas), Some(meta)) => format!("{deltas}/{}", meta.version),
            (Ask::Part(i), _, _) => format!("{}/parts/{i}", s.path),
            _ => s.path.clone(),
        };
        FetchRequest {
            cluster: s.cluster.clone(),
            path,
            authority: s.authority.clone(),
            if_none_match: self.etag.clone().filter(|_| ask == Ask::Full),
            timeout_ms: s.timeout_ms,
        }
    }

    fn ask(&mut self, ask: Ask) -> Effect {
        self.in_flight = Some(InFlight { ask, token: None });
        Effect::Fetch(self.request(ask))
    }

    /// The host started the call of the last [`Effect::Fetch`]; its answer carries `token`.
    pub fn sent(&mut self, token: u32) {
        if let Some(call) = self.in_flight.as_mut() {
            call.token = Some(token);
        }
    }

    /// Whether the answer to the call `token` is still wanted (so a host need not read an
    /// answer that would be dropped).
    pub fn awaits(&self, token: u32) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|call| call.token == Some(token))
    }

    /// The source answered the call `token` (at `now_ms`).
    pub fn on_response(&mut self, token: u32, response: Response<'_>, now_ms: u64) -> Effects {
        self.settle();
        if !self.awaits(token) {
            return Effects::none();
        }
        let Some(InFlight { ask, .. }) = self.in_flight.take() else {
            return Effects::none();
        };
        match (ask, response.status) {
            (Ask::Full, Some(304)) | (Ask::Delta, Some(404)) => self.confirm(now_ms),
            (Ask::Signature, status) => self.signature_arrived(status, response.body, now_ms),
            (_, Some(200)) => self.answered(ask, &response, now_ms),
            (_, status) => {
                let message = match status {
                    Some(status) => format!(
                        "consent fetcher: source answered {status}; keeping the last good snapshot"
                    ),
                    None => "consent fetcher: source unreachable; keeping the last good snapshot"
                        .to_string(),
                };
                self.fetch_failed(message)
            }
        }
    }

    /// Carrying out `effect` failed with the host's `status`; the effects after it were
    /// dropped. A failed shared-data write makes the next fetch an unconditional full one
    /// that rewrites or empties every bucket.
    pub fn failed(&mut self, effect: &Effect, status: &HostFailure) -> Effects {
        match effect {
            Effect::Fetch(request) => self.fetch_failed(format!(
                "consent fetcher: cannot call cluster {}: {status}",
                request.cluster
            )),
            Effect::Write { slot, .. } => {
                if let Some(meta) = self.meta_before.take() {
                    self.meta = meta;
                }
                let message = match slot {
                    Slot::Bucket(bucket) => {
                        format!("consent fetcher: cannot publish bucket {bucket}: {status}")
                    }
                    Slot::Changes => {
                        format!("consent fetcher: cannot publish the change record: {status}")
                    }
                    Slot::Meta => format!("consent fetcher: cannot publish metadata: {status}"),
                };
                self.store_failed(message)
            }
            Effect::SetTick { change, .. } => {
                let (level, what) = match change {
                    TickChange::First => (LogLevel::Error, "set the tick period"),
                    TickChange::Refresh => (LogLevel::Error, "set the refresh period"),
                    TickChange::Slow => (LogLevel::Warn, "slow the tick"),
                };
                Effects::line(level, format!("consent fetcher: cannot {what}: {status}"))
            }
            Effect::ReadBuckets(_) | Effect::SetGauge(..) | Effect::Count(_) | Effect::Log(_) => {
                Effects::none()
            }
        }
    }

    /// Forgets what this fetcher published (another one may publish meanwhile): the next
    /// fetch is an unconditional full one that rewrites or empties every bucket.
    pub fn forget(&mut self) {
        // A 304 would confirm nothing: the metadata is forgotten too.
        self.etag = None;
        self.in_flight = None;
        self.loading = None;
        self.delta = None;
        self.need_full = true;
        self.published.clear();
        self.published_unknown = true;
        self.meta = None;
        self.meta_before = None;
        self.unsigned = None;
    }

    /// A new input: the effects of the last one all went through (the host reports a
    /// failure before anything else).
    fn settle(&mut self) {
        self.meta_before = None;
    }

    fn fetch_failed(&mut self, message: String) -> Effects {
        self.in_flight = None;
        self.loading = None;
        self.unsigned = None;
        let mut effects = Effects::from(Effect::Count(Counter::FetchFailures));
        effects.log(LogLevel::Warn, message);
        effects
    }

    /// A shared-data write or read failed: what is published is no longer known.
    fn store_failed(&mut self, message: String) -> Effects {
        self.loading = None;
        self.delta = None;
        self.need_full = true;
        self.published_unknown = true;
        self.etag = None;
        Effects::line(LogLevel::Error, message)
    }

    fn reject(&mut self, what: &str, error: &dyn std::fmt::Display) -> Effects {
        self.loading = None;
        let mut effects = Effects::from(Effect::Count(Counter::Rejected));
        effects.log(
            LogLevel::Warn,
            format!("consent fetcher: {what} rejected: {error}; keeping the last good snapshot"),
        );
        effects
    }

    /// The source says nothing changed: the snapshot is fresh again.
    fn confirm(&mut self, now_ms: u64) -> Effects {
        match self.meta.clone() {
            Some(mut meta) => {
                meta.fetched_at_ms = now_ms;
                self.write_meta(meta)
            }
            None => Effects::none(),
        }
    }

    /// Records the next generation of the epoch (a new epoch first when what shared data
    /// holds is not known): what it changed and the buckets that may hold someone now.
    /// Returns the write of the change record, and the epoch and generation for the
    /// metadata.
    fn next_generation(&mut self, changed: Changed) -> (Effect, u64, u64) {
        if self.published_unknown {
            let epoch = self.changes.epoch.wrapping_add(1);
            self.changes = ChangeLog::new(epoch, self.config.snapshot.bucket_bits);
        }
        let changed = if self.changes.generation == 0 {
            Changed::All
        } else {
            changed
        };
        let generation = self.changes.record(changed, &self.published);
        let write = Effect::Write {
            slot: Slot::Changes,
            key: self.config.shared_keys.changes_key().to_string(),
            bytes: self.changes.encode(),
        };
        (write, self.changes.epoch, generation)
    }

    /// Publishes `meta` and the stats it carries.
    fn write_meta(&mut self, meta: PublishedMeta) -> Effects {
        let mut effects = Effects::from(Effect::Write {
            slot: Slot::Meta,
            key: self.config.shared_keys.meta_key().to_string(),
            bytes: meta.to_json(),
        });
        effects.push(Effect::SetGauge(Gauge::Version, meta.version));
        effects.push(Effect::SetGauge(Gauge::Users, meta.users));
        effects.push(Effect::SetGauge(Gauge::AgeMs, 0));
        self.published_version(meta.version);
        self.meta_before = Some(self.meta.replace(meta));
        effects
    }
}
