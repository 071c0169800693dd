//! The consent fetcher: a root context that runs once per Envoy (as an
//! `envoy.bootstrap.wasm` singleton with the filter's `vm_id`), pulls the snapshot from the
//! consent source, checks it against the policy, and publishes it to shared data as buckets
//! plus a small metadata record.
//!
//! A full snapshot may come in parts (`parts` in part 0, the rest at `{path}/parts/{i}`);
//! records are kept only in compact bucket form while parts arrive. Deltas are applied to
//! the published buckets they touch, so the fetcher never holds a copy of the snapshot.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use consent_core::live::to_hex;
use consent_core::live::{add_part, DeltaDoc, FullSnapshotDoc, KeyedDelta, PublishedMeta};
use consent_core::live::{encode_bucket, fingerprint, BucketBuilder};
use consent_core::CompiledConfig;

use crate::host;

/// Tick period until the first snapshot is published.
const FIRST_FETCH_TICK: Duration = Duration::from_millis(20);

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
    /// Part 0 of a full snapshot (conditional on the last ETag).
    Full,
    /// Part `i` (> 0) of the full snapshot being loaded.
    Part(u32),
    /// The changes after the published version.
    Delta,
}

/// A full snapshot arriving in parts.
struct Loading {
    version: u64,
    parts: u32,
    generated_at: Option<u64>,
    etag: Option<String>,
    builder: BucketBuilder,
}

/// Fetcher state, kept across ticks.
pub struct Fetcher {
    config: Rc<CompiledConfig>,
    etag: Option<String>,
    in_flight: Option<(u32, Ask)>,
    loading: Option<Loading>,
    /// A delta could not be applied: the next fetch is a full one.
    need_full: bool,
    published: BTreeSet<u32>,
    /// Buckets may hold data this fetcher did not write (an earlier fetcher's, before a
    /// configuration reload or a lease handover): the next full publish empties every
    /// bucket it does not write.
    published_unknown: bool,
    meta: Option<PublishedMeta>,
    stats: Stats,
}

impl Fetcher {
    /// A fetcher for `config` (its `snapshot` block says where and how often).
    pub fn new(config: Rc<CompiledConfig>) -> Self {
        let published_unknown = matches!(
            host::shared_data(config.shared_keys.meta_key()),
            Ok((Some(_), _))
        );
        Fetcher {
            config,
            etag: None,
            in_flight: None,
            loading: None,
            need_full: true,
            published: BTreeSet::new(),
            published_unknown,
            meta: None,
            stats: Stats::define(),
        }
    }

    /// Forgets what this fetcher published (another one may publish meanwhile): the next
    /// fetch is a full one that rewrites or empties every bucket.
    pub fn forget(&mut self) {
        self.in_flight = None;
        self.loading = None;
        self.need_full = true;
        self.published.clear();
        self.published_unknown = true;
        self.meta = None;
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
        let ask = match (&self.config.snapshot.deltas_path, &self.meta) {
            (Some(_), Some(_)) if !self.need_full => Ask::Delta,
            _ => Ask::Full,
        };
        self.ask(ask);
    }

    fn ask(&mut self, ask: Ask) {
        let s = &self.config.snapshot;
        let path = match (ask, &s.deltas_path, &self.meta) {
            (Ask::Delta, Some(deltas), Some(meta)) => format!("{deltas}/{}", meta.version),
            (Ask::Part(i), _, _) => format!("{}/parts/{i}", s.path),
            _ => s.path.clone(),
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
                self.loading = None;
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
        let body = || host::http_call_body(body_size).unwrap_or_default();
        match (ask, header(":status").as_deref()) {
            (Ask::Full, Some("304")) | (Ask::Delta, Some("404")) => self.confirm(),
            (Ask::Full, Some("200")) => self.first_part(&body(), header("etag")),
            (Ask::Part(i), Some("200")) => self.next_part(i, &body()),
            (Ask::Delta, Some("200")) => self.apply_delta(&body()),
            (_, status) => {
                self.loading = None;
                self.count(self.stats.fetch_failures);
                match status {
                    Some(status) => log::warn!(
                        "consent fetcher: source answered {status}; keeping the last good snapshot"
                    ),
                    None => log::warn!(
                        "consent fetcher: source unreachable; keeping the last good snapshot"
                    ),
                }
            }
        }
    }

    fn count(&self, counter: Option<host::Metric>) {
        if let Some(m) = counter {
            m.inc();
        }
    }

    fn reject(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.loading = None;
        self.count(self.stats.rejected);
        log::warn!("consent fetcher: {what} rejected: {error}; keeping the last good snapshot");
    }

    /// The source says nothing changed: the snapshot is fresh again.
    fn confirm(&mut self) {
        if let Some(mut meta) = self.meta.clone() {
            meta.fetched_at_ms = host::unix_ms();
            self.write_meta(meta);
        }
    }

    fn first_part(&mut self, body: &[u8], etag: Option<String>) {
        let doc = match FullSnapshotDoc::from_json(body) {
            Ok(doc) => doc,
            Err(e) => return self.reject("snapshot", &e),
        };
        let mut loading = Loading {
            version: doc.version,
            parts: doc.parts.unwrap_or(1).max(1),
            generated_at: doc.generated_at,
            etag,
            builder: BucketBuilder::new(self.config.snapshot.bucket_bits),
        };
        if let Err(e) = add_part(
            &doc,
            &self.config.policy,
            &self.config.snapshot.keying,
            &mut loading.builder,
        ) {
            return self.reject("snapshot", &e);
        }
        drop(doc);
        self.loading = Some(loading);
        self.continue_loading(1);
    }

    fn next_part(&mut self, part: u32, body: &[u8]) {
        let config = Rc::clone(&self.config);
        let Some(loading) = self.loading.as_mut() else {
            return;
        };
        let doc = match FullSnapshotDoc::from_json(body) {
            Ok(doc) => doc,
            Err(e) => return self.reject("snapshot part", &e),
        };
        if doc.version != loading.version || doc.part.unwrap_or(0) != part {
            // The source moved on while the parts were read: start again.
            self.loading = None;
            log::info!(
                "consent fetcher: the snapshot changed while its parts were read; starting again"
            );
            return;
        }
        if let Err(e) = add_part(
            &doc,
            &config.policy,
            &config.snapshot.keying,
            &mut loading.builder,
        ) {
            return self.reject("snapshot part", &e);
        }
        drop(doc);
        self.continue_loading(part + 1);
    }

    /// Asks for part `next`, or publishes when every part has arrived.
    fn continue_loading(&mut self, next: u32) {
        let Some(parts) = self.loading.as_ref().map(|l| l.parts) else {
            return;
        };
        if next < parts {
            self.ask(Ask::Part(next));
            return;
        }
        if let Some(loading) = self.loading.take() {
            self.publish(loading);
        }
    }

    fn publish(&mut self, loading: Loading) {
        let config = Rc::clone(&self.config);
        let fp = fingerprint(&config.policy);
        let users = loading.builder.len() as u64;
        let mut written = BTreeSet::new();
        let mut failed = None;
        let finished = loading
            .builder
            .finish_with(fp, loading.version, |bucket, bytes| {
                if failed.is_none() {
                    match host::set_shared_data(&config.shared_keys.bucket(bucket), &bytes) {
                        Ok(()) => {
                            written.insert(bucket);
                        }
                        Err(status) => failed = Some((bucket, status)),
                    }
                }
            });
        if finished.is_err() {
            return self.reject("snapshot", &"a subject appears twice");
        }
        if let Some((bucket, status)) = failed {
            log::error!("consent fetcher: cannot publish bucket {bucket}: {status:?}");
            return;
        }
        let emptied: Vec<u32> = if self.published_unknown {
            let count = 1u32 << u32::from(config.snapshot.bucket_bits.clamp(1, 24));
            (0..count).filter(|b| !written.contains(b)).collect()
        } else {
            self.published.difference(&written).copied().collect()
        };
        for bucket in emptied {
            if let Err(status) = host::set_shared_data(
                &config.shared_keys.bucket(bucket),
                &encode_bucket(fp, loading.version, &[]),
            ) {
                log::error!("consent fetcher: cannot publish bucket {bucket}: {status:?}");
                return;
            }
        }
        let buckets = written;
        self.published = buckets.clone();
        self.published_unknown = false;
        let meta = PublishedMeta {
            version: loading.version,
            fetched_at_ms: host::unix_ms(),
            generated_at: loading.generated_at,
            users,
            bucket_bits: config.snapshot.bucket_bits,
            fingerprint: to_hex(&fp),
        };
        log::info!(
            "consent fetcher: published snapshot version {} ({} users, {} parts, {} buckets)",
            meta.version,
            meta.users,
            loading.parts,
            buckets.len()
        );
        let first = self.meta.is_none();
        self.write_meta(meta);
        self.etag = loading.etag;
        self.need_full = false;
        if first {
            if let Err(status) = host::set_tick(Duration::from_millis(config.snapshot.refresh_ms)) {
                log::error!("consent fetcher: cannot set the refresh period: {status:?}");
            }
        }
    }

    /// Applies a delta to the published buckets it touches; a delta that does not apply
    /// makes the next fetch a full one.
    fn apply_delta(&mut self, body: &[u8]) {
        let config = Rc::clone(&self.config);
        let Some(meta) = self.meta.clone() else {
            self.need_full = true;
            return;
        };
        let doc = match DeltaDoc::from_json(body) {
            Ok(d) => d,
            Err(e) => {
                self.need_full = true;
                return self.reject("delta", &e);
            }
        };
        if doc.from_version != meta.version {
            self.need_full = true;
            log::info!(
                "consent fetcher: delta starts at version {}, published is {}; fetching the full snapshot next",
                doc.from_version,
                meta.version
            );
            return;
        }
        let bits = config.snapshot.bucket_bits;
        let delta = match KeyedDelta::compile(&doc, &config.policy, &config.snapshot.keying, bits) {
            Ok(d) => d,
            Err(e) => {
                self.need_full = true;
                return self.reject("delta", &e);
            }
        };
        let fp = fingerprint(&config.policy);
        let mut users = meta.users as i64;
        let mut rewritten = Vec::new();
        for bucket in delta.buckets() {
            let current = match host::shared_data(&config.shared_keys.bucket(bucket)) {
                Ok((bytes, _)) => bytes,
                Err(status) => {
                    self.need_full = true;
                    log::error!("consent fetcher: cannot read bucket {bucket}: {status:?}");
                    return;
                }
            };
            match delta.apply_to_bucket(bucket, current.as_deref(), fp) {
                Ok((bytes, change)) => {
                    users += change;
                    rewritten.push((bucket, bytes));
                }
                Err(e) => {
                    self.need_full = true;
                    log::error!(
                        "consent fetcher: bucket {bucket}: {e}; fetching the full snapshot next"
                    );
                    return;
                }
            }
        }
        for (bucket, bytes) in &rewritten {
            if let Err(status) = host::set_shared_data(&config.shared_keys.bucket(*bucket), bytes) {
                self.need_full = true;
                log::error!("consent fetcher: cannot publish bucket {bucket}: {status:?}");
                return;
            }
            self.published.insert(*bucket);
        }
        let meta = PublishedMeta {
            version: delta.version,
            fetched_at_ms: host::unix_ms(),
            generated_at: delta.generated_at.or(meta.generated_at),
            users: u64::try_from(users).unwrap_or(0),
            bucket_bits: bits,
            fingerprint: to_hex(&fp),
        };
        log::info!(
            "consent fetcher: applied delta to version {} ({} changes, {} buckets)",
            meta.version,
            delta.len(),
            rewritten.len()
        );
        self.write_meta(meta);
    }

    fn write_meta(&mut self, meta: PublishedMeta) {
        match host::set_shared_data(self.config.shared_keys.meta_key(), &meta.to_json()) {
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
