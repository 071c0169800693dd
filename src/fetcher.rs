//! The consent fetcher: a root context that runs once per Envoy (as an
//! `envoy.bootstrap.wasm` singleton with the filter's `vm_id`), pulls the full snapshot
//! from the consent source with conditional requests, checks it against the policy, and
//! publishes it to shared data as buckets plus a small metadata record.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use consent_core::buckets::{bucket_of, fingerprint};
use consent_core::keyed_snapshot::{
    bucket_key, DeltaDoc, FullSnapshotDoc, KeyedSnapshot, PublishedMeta, META_KEY,
};
use consent_core::subject_key::to_hex;
use consent_core::CompiledConfig;

use crate::host;

/// Tick period until the first snapshot is published.
const FIRST_FETCH_TICK: Duration = Duration::from_millis(200);

/// Freshness stats of the published snapshot.
struct Stats {
    version: Option<host::Metric>,
    users: Option<host::Metric>,
    age_ms: Option<host::Metric>,
    fetch_failures: Option<host::Metric>,
    rejected: Option<host::Metric>,
}

impl Stats {
    fn define() -> Self {
        Stats {
            version: host::Metric::gauge("consent_snapshot_version"),
            users: host::Metric::gauge("consent_snapshot_users"),
            age_ms: host::Metric::gauge("consent_snapshot_age_ms"),
            fetch_failures: host::Metric::counter("consent_snapshot_fetch_failures"),
            rejected: host::Metric::counter("consent_snapshot_rejected"),
        }
    }
}

/// What an outstanding call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Full,
    Delta,
}

/// Fetcher state, kept across ticks.
pub struct Fetcher {
    config: Rc<CompiledConfig>,
    etag: Option<String>,
    in_flight: Option<(u32, Ask)>,
    /// The snapshot last published, kept to apply deltas to.
    snapshot: Option<KeyedSnapshot>,
    /// A delta could not be applied: the next fetch is a full one.
    need_full: bool,
    published: BTreeSet<u32>,
    meta: Option<PublishedMeta>,
    stats: Stats,
}

impl Fetcher {
    /// A fetcher for `config` (its `snapshot` block says where and how often).
    pub fn new(config: Rc<CompiledConfig>) -> Self {
        Fetcher {
            config,
            etag: None,
            in_flight: None,
            snapshot: None,
            need_full: true,
            published: BTreeSet::new(),
            meta: None,
            stats: Stats::define(),
        }
    }

    /// Starts ticking.
    pub fn start(&self) -> bool {
        match host::set_tick(FIRST_FETCH_TICK) {
            Ok(()) => true,
            Err(status) => {
                log::error!("consent fetcher: cannot set the tick period: {status:?}");
                false
            }
        }
    }

    /// One tick: ask the source unless a call is still out.
    pub fn on_tick(&mut self) {
        if let (Some(meta), Some(age)) = (&self.meta, self.stats.age_ms) {
            age.set(host::unix_ms().saturating_sub(meta.fetched_at_ms));
        }
        if self.in_flight.is_some() {
            return;
        }
        let s = &self.config.snapshot;
        let (ask, path) = match (&s.deltas_path, &self.snapshot) {
            (Some(deltas), Some(snapshot)) if !self.need_full => {
                (Ask::Delta, format!("{deltas}/{}", snapshot.version))
            }
            _ => (Ask::Full, s.path.clone()),
        };
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", s.authority.as_str()),
            ("accept", "application/json"),
        ];
        let etag = self.etag.clone();
        if let (Ask::Full, Some(etag)) = (ask, etag.as_deref()) {
            headers.push(("if-none-match", etag));
        }
        match host::http_call(&s.cluster, headers, Duration::from_millis(s.timeout_ms)) {
            Ok(token) => self.in_flight = Some((token, ask)),
            Err(status) => {
                self.count(self.stats.fetch_failures);
                log::warn!(
                    "consent fetcher: cannot call cluster {}: {status:?}",
                    s.cluster
                )
            }
        }
    }

    /// The source answered (or the call failed: no headers).
    pub fn on_response(&mut self, token: u32, body_size: usize) {
        let ask = match self.in_flight {
            Some((t, ask)) if t == token => ask,
            _ => return,
        };
        self.in_flight = None;
        let headers = host::http_call_headers().unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        match (ask, header(":status").as_deref()) {
            (Ask::Full, Some("304")) | (Ask::Delta, Some("404")) => self.confirm(),
            (Ask::Full, Some("200")) => {
                let body = host::http_call_body(body_size).unwrap_or_default();
                self.publish(&body, header("etag"));
            }
            (Ask::Delta, Some("200")) => {
                let body = host::http_call_body(body_size).unwrap_or_default();
                self.apply_delta(&body);
            }
            (_, Some(status)) => {
                self.count(self.stats.fetch_failures);
                log::warn!(
                    "consent fetcher: source answered {status}; keeping the last good snapshot"
                )
            }
            (_, None) => {
                self.count(self.stats.fetch_failures);
                log::warn!("consent fetcher: source unreachable; keeping the last good snapshot")
            }
        }
    }

    /// Applies a delta to the held snapshot and republishes the buckets it touched; a
    /// delta that does not apply makes the next fetch a full one.
    fn apply_delta(&mut self, body: &[u8]) {
        let config = Rc::clone(&self.config);
        let delta = match DeltaDoc::from_json(body) {
            Ok(d) => d,
            Err(e) => {
                self.rejected();
                self.need_full = true;
                log::warn!("consent fetcher: delta rejected: {e}; fetching the full snapshot next");
                return;
            }
        };
        let Some(snapshot) = self.snapshot.as_mut() else {
            self.need_full = true;
            return;
        };
        let changed = match snapshot.apply(&delta, &config.policy, &config.snapshot.keying) {
            Ok(changed) => changed,
            Err(e) => {
                self.rejected();
                self.need_full = true;
                log::warn!(
                    "consent fetcher: delta not applied: {e}; fetching the full snapshot next"
                );
                return;
            }
        };
        let bits = config.snapshot.bucket_bits;
        let touched: BTreeSet<u32> = changed.iter().map(|k| bucket_of(k, bits)).collect();
        let buckets = snapshot.buckets(&config.policy, bits, Some(&touched));
        for (bucket, bytes) in &buckets {
            if let Err(status) = host::set_shared_data(&bucket_key(*bucket), bytes) {
                log::error!("consent fetcher: cannot publish bucket {bucket}: {status:?}");
                self.need_full = true;
                return;
            }
        }
        self.published.extend(buckets.keys().copied());
        let meta = PublishedMeta {
            version: snapshot.version,
            fetched_at_ms: host::unix_ms(),
            generated_at: snapshot.generated_at,
            users: snapshot.records.len() as u64,
            bucket_bits: bits,
            fingerprint: to_hex(&fingerprint(&config.policy)),
        };
        log::info!(
            "consent fetcher: applied delta to version {} ({} changes, {} buckets)",
            meta.version,
            changed.len(),
            buckets.len()
        );
        self.write_meta(meta);
    }

    fn count(&self, counter: Option<host::Metric>) {
        if let Some(m) = counter {
            m.inc();
        }
    }

    fn rejected(&self) {
        self.count(self.stats.rejected);
    }

    /// The source says nothing changed: the snapshot is fresh again.
    fn confirm(&mut self) {
        if let Some(mut meta) = self.meta.clone() {
            meta.fetched_at_ms = host::unix_ms();
            self.write_meta(meta);
        }
    }

    fn publish(&mut self, body: &[u8], etag: Option<String>) {
        let config = Rc::clone(&self.config);
        let doc = match FullSnapshotDoc::from_json(body) {
            Ok(doc) => doc,
            Err(e) => {
                self.rejected();
                log::warn!("consent fetcher: snapshot rejected: {e}; keeping the last good one");
                return;
            }
        };
        let keyed = match KeyedSnapshot::compile(&doc, &config.policy, &config.snapshot.keying) {
            Ok(k) => k,
            Err(e) => {
                self.rejected();
                log::warn!("consent fetcher: snapshot rejected: {e}; keeping the last good one");
                return;
            }
        };
        let bits = config.snapshot.bucket_bits;
        let mut buckets = keyed.buckets(&config.policy, bits, None);
        let emptied: BTreeSet<u32> = self
            .published
            .iter()
            .filter(|b| !buckets.contains_key(b))
            .copied()
            .collect();
        buckets.extend(keyed.buckets(&config.policy, bits, Some(&emptied)));
        for (bucket, bytes) in &buckets {
            if let Err(status) = host::set_shared_data(&bucket_key(*bucket), bytes) {
                log::error!("consent fetcher: cannot publish bucket {bucket}: {status:?}");
                return;
            }
        }
        self.published = buckets.keys().copied().collect();
        let meta = PublishedMeta {
            version: keyed.version,
            fetched_at_ms: host::unix_ms(),
            generated_at: keyed.generated_at,
            users: keyed.records.len() as u64,
            bucket_bits: bits,
            fingerprint: to_hex(&fingerprint(&config.policy)),
        };
        log::info!(
            "consent fetcher: published snapshot version {} ({} users, {} buckets)",
            meta.version,
            meta.users,
            buckets.len()
        );
        let first = self.meta.is_none();
        self.write_meta(meta);
        self.etag = etag;
        self.snapshot = Some(keyed);
        self.need_full = false;
        if first {
            if let Err(status) = host::set_tick(Duration::from_millis(config.snapshot.refresh_ms)) {
                log::error!("consent fetcher: cannot set the refresh period: {status:?}");
            }
        }
    }

    fn write_meta(&mut self, meta: PublishedMeta) {
        match host::set_shared_data(META_KEY, &meta.to_json()) {
            Ok(()) => {
                for (metric, value) in [
                    (self.stats.version, meta.version),
                    (self.stats.users, meta.users),
                    (self.stats.age_ms, 0),
                ] {
                    if let Some(m) = metric {
                        m.set(value);
                    }
                }
                self.meta = Some(meta);
            }
            Err(status) => log::error!("consent fetcher: cannot publish metadata: {status:?}"),
        }
    }
}
