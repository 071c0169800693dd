//! The fetch machine against an in-memory host: a map plays shared data, the tests play
//! the source. Results are read back by decoding the published buckets, as a reader would.

mod delta;
mod failures;
mod full;
mod handover;
mod replica;
mod signatures;

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::config::{compile_config, CompiledConfig};
use crate::live::buckets::{bucket_of, decode_bucket, find_in_bucket};
use crate::live::changes::ChangeLog;
use crate::live::fetch::{
    Counter, FetchHost, FetchMachine, FetchRequest, Gauge, HostFailure, LogLine, Response,
};
use crate::live::meta::PublishedMeta;
use crate::live::records::ConsentRecord;

/// Subjects in these tests all start with this, so that a log line naming one is caught.
const SUBJECT: &str = "person-";

/// Refresh period of [`config`].
const REFRESH_MS: u64 = 1000;

/// The epoch the tests' fetchers start at.
const EPOCH: u64 = 1_000;

/// 16 buckets, deltas served, a 1 s refresh.
fn config() -> CompiledConfig {
    compile_config(
        br#"{"snapshot": {"source": "shared", "cluster": "consent", "path": "/snapshot",
            "deltas_path": "/deltas", "bucket_bits": 4, "refresh_ms": 1000,
            "max_staleness_ms": 5000}}"#,
    )
    .unwrap()
}

/// The same without deltas: every refresh is a (conditional) full fetch.
fn config_without_deltas() -> CompiledConfig {
    compile_config(
        br#"{"snapshot": {"source": "shared", "cluster": "consent", "path": "/snapshot",
            "bucket_bits": 4, "refresh_ms": 1000, "max_staleness_ms": 5000}}"#,
    )
    .unwrap()
}

/// A record of `name` (`person-{name}`); `stop` marks it so that a rewrite shows.
fn record(name: &str, stop: bool) -> serde_json::Value {
    serde_json::json!({"subject": format!("{SUBJECT}{name}"), "stop_use": stop})
}

/// A full snapshot (or part 0 of one) of these people.
fn snapshot(version: u64, names: &[&str]) -> String {
    let records: Vec<_> = names.iter().map(|n| record(n, false)).collect();
    serde_json::json!({"version": version, "records": records}).to_string()
}

/// Part 0 of a snapshot in `parts` parts.
fn first_part(version: u64, parts: u32, names: &[&str]) -> String {
    let records: Vec<_> = names.iter().map(|n| record(n, false)).collect();
    serde_json::json!({"version": version, "parts": parts, "records": records}).to_string()
}

/// Part `part` (> 0) of a snapshot.
fn part(version: u64, part: u32, names: &[&str]) -> String {
    let records: Vec<_> = names.iter().map(|n| record(n, false)).collect();
    serde_json::json!({"version": version, "part": part, "records": records}).to_string()
}

/// What a call asks for: its path and the ETag it is conditional on.
fn asks(call: &FetchRequest) -> (&str, Option<&str>) {
    (call.path.as_str(), call.if_none_match.as_deref())
}

/// A delta from `from` to `from + 1`.
fn delta(from: u64, upserts: &[&str], deletes: &[&str]) -> String {
    let upserts: Vec<_> = upserts.iter().map(|n| record(n, true)).collect();
    let deletes: Vec<_> = deletes.iter().map(|n| format!("{SUBJECT}{n}")).collect();
    serde_json::json!({"from_version": from, "version": from + 1, "upserts": upserts, "deletes": deletes})
        .to_string()
}

/// Envoy as the fetcher sees it: shared data, stats, the tick, the log and the calls made.
#[derive(Default)]
struct Host {
    now: u64,
    store: BTreeMap<String, Vec<u8>>,
    /// Keys written, in order, since the test last took them.
    writes: Vec<String>,
    gauges: BTreeMap<Gauge, u64>,
    counters: BTreeMap<Counter, u64>,
    tick_ms: Option<u64>,
    logs: Vec<LogLine>,
    /// Calls made, with their tokens.
    calls: Vec<(u32, FetchRequest)>,
    /// Writes that go through before one fails (`Some(0)`: the next fails).
    writes_before_failure: Option<usize>,
    fail_reads: bool,
    fail_calls: bool,
    fail_ticks: bool,
}

impl FetchHost for Host {
    fn fetch(&mut self, request: &FetchRequest) -> Result<u32, HostFailure> {
        if self.fail_calls {
            return Err(HostFailure("BadArgument".to_string()));
        }
        let token = self.calls.len() as u32 + 100;
        self.calls.push((token, request.clone()));
        Ok(token)
    }

    fn write(&mut self, key: &str, bytes: &[u8]) -> Result<(), HostFailure> {
        match self.writes_before_failure {
            Some(0) => {
                self.writes_before_failure = None;
                return Err(HostFailure("InternalFailure".to_string()));
            }
            Some(n) => self.writes_before_failure = Some(n - 1),
            None => {}
        }
        self.writes.push(key.to_string());
        self.store.insert(key.to_string(), bytes.to_vec());
        Ok(())
    }

    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostFailure> {
        if self.fail_reads {
            return Err(HostFailure("InternalFailure".to_string()));
        }
        Ok(self.store.get(key).cloned())
    }

    fn set_tick(&mut self, period_ms: u64) -> Result<(), HostFailure> {
        if self.fail_ticks {
            return Err(HostFailure("BadArgument".to_string()));
        }
        self.tick_ms = Some(period_ms);
        Ok(())
    }

    fn gauge(&mut self, gauge: Gauge, value: u64) {
        self.gauges.insert(gauge, value);
    }

    fn count(&mut self, counter: Counter) {
        *self.counters.entry(counter).or_default() += 1;
    }

    fn log(&mut self, line: &LogLine) {
        assert!(!line.message.contains(SUBJECT), "{line:?}");
        self.logs.push(line.clone());
    }

    fn now_ms(&self) -> u64 {
        self.now
    }
}

/// A fetcher with its host.
struct Sim {
    config: Rc<CompiledConfig>,
    machine: FetchMachine,
    host: Host,
}

impl Sim {
    /// A started fetcher of [`config`] on an empty Envoy.
    fn new() -> Self {
        Sim::with(config(), Host::default())
    }

    /// A started fetcher of `config` on `host` (which may hold an earlier publish).
    fn with(config: CompiledConfig, mut host: Host) -> Self {
        let config = Rc::new(config);
        let published_before = host.store.contains_key(config.shared_keys.meta_key());
        let mut machine = FetchMachine::new(Rc::clone(&config), published_before, EPOCH);
        assert!(machine.run(machine.start(), &mut host));
        Sim {
            config,
            machine,
            host,
        }
    }

    /// One tick; the call it made, if any.
    fn tick(&mut self) -> Option<FetchRequest> {
        let calls = self.host.calls.len();
        let effects = self.machine.on_tick(self.host.now);
        self.machine.run(effects, &mut self.host);
        self.host.calls.get(calls).map(|(_, r)| r.clone())
    }

    /// The source answers the last call; the call that followed (a next part), if any.
    fn answer(
        &mut self,
        status: Option<u16>,
        etag: Option<&str>,
        body: &str,
    ) -> Option<FetchRequest> {
        self.respond(Response {
            status,
            etag,
            signature: None,
            body: body.as_bytes(),
        })
    }

    /// The source answers the last call with `response`; the call that followed, if any.
    fn respond(&mut self, response: Response<'_>) -> Option<FetchRequest> {
        let calls = self.host.calls.len();
        let (token, _) = self.host.calls.last().cloned().unwrap();
        let effects = self.machine.on_response(token, response, self.host.now);
        self.machine.run(effects, &mut self.host);
        self.host.calls.get(calls).map(|(_, r)| r.clone())
    }

    /// A tick answered 200 with `body`.
    fn fetch(&mut self, body: &str) {
        self.tick().unwrap();
        assert_eq!(self.answer(Some(200), None, body), None);
    }

    /// Worker 7's lease check before a tick.
    fn lease(&mut self, holds: bool) {
        let effects = self.machine.on_lease(7, holds);
        self.machine.run(effects, &mut self.host);
    }

    /// The published record of `name`, found as a reader finds it.
    fn record(&self, name: &str) -> Option<ConsentRecord> {
        let meta = self.meta()?;
        let key = self
            .config
            .snapshot
            .keying
            .key_of_user(&format!("{SUBJECT}{name}"));
        let bucket = self.host.store.get(
            &self
                .config
                .shared_keys
                .bucket(bucket_of(&key, meta.bucket_bits)),
        )?;
        find_in_bucket(bucket, self.config.policy_fingerprint, &key).unwrap()
    }

    /// The published metadata.
    fn meta(&self) -> Option<PublishedMeta> {
        let bytes = self.host.store.get(self.config.shared_keys.meta_key())?;
        Some(PublishedMeta::from_json(bytes).unwrap())
    }

    /// People in every published bucket, by decoding them all.
    fn people(&self) -> usize {
        (0..16)
            .filter_map(|b| self.host.store.get(&self.config.shared_keys.bucket(b)))
            .map(|bytes| {
                decode_bucket(bytes, self.config.policy_fingerprint)
                    .unwrap()
                    .1
                    .len()
            })
            .sum()
    }

    /// The keys written since the last call, and forget them.
    fn take_writes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.host.writes)
    }

    /// Whether only the metadata was written since the last call; forget the writes.
    fn only_meta_written(&mut self) -> bool {
        self.take_writes() == [self.config.shared_keys.meta_key()]
    }

    /// How many buckets were written since the last call, and forget the writes.
    fn take_bucket_writes(&mut self) -> usize {
        let keys = &self.config.shared_keys;
        let (meta, changes) = (keys.meta_key().to_string(), keys.changes_key().to_string());
        self.take_writes()
            .iter()
            .filter(|k| **k != meta && **k != changes)
            .count()
    }

    /// The published change record.
    fn changes(&self) -> Option<ChangeLog> {
        let bytes = self.host.store.get(self.config.shared_keys.changes_key())?;
        ChangeLog::decode(bytes)
    }

    fn counter(&self, counter: Counter) -> u64 {
        self.host.counters.get(&counter).copied().unwrap_or(0)
    }

    /// The bucket of `name`.
    fn bucket_of(&self, name: &str) -> u32 {
        let key = self
            .config
            .snapshot
            .keying
            .key_of_user(&format!("{SUBJECT}{name}"));
        bucket_of(&key, 4)
    }

    /// `n` names whose buckets differ from the buckets of all of `others`.
    fn names_outside(&self, others: &[&str], n: usize) -> Vec<String> {
        let avoid: Vec<u32> = others.iter().map(|o| self.bucket_of(o)).collect();
        (0..)
            .map(|i| format!("n{i}"))
            .filter(|name| !avoid.contains(&self.bucket_of(name)))
            .take(n)
            .collect()
    }

    /// Whether a log line contains `text`.
    fn logged(&self, text: &str) -> bool {
        self.host.logs.iter().any(|l| l.message.contains(text))
    }
}
