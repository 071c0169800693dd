//! The consent fetcher: a root context that runs once per Envoy (as an
//! `envoy.bootstrap.wasm` singleton with the filter's `vm_id`), or in one worker VM under
//! a lease, and publishes the live snapshot to shared data as buckets plus a small
//! metadata record.
//!
//! The protocol (full snapshots, parts, deltas, what to rewrite or empty, stats, the tick
//! period) is the core's [`FetchMachine`]; this file only carries out its effects with
//! Envoy's host calls and feeds the results back.

use std::rc::Rc;
use std::time::Duration;

use consent_core::live::{
    Counter, FetchHost, FetchMachine, FetchRequest, Gauge, HostFailure, LogLevel, LogLine,
    PublishedMeta, Response, Ticks, SIGNATURE_HEADER,
};
use consent_core::CompiledConfig;
use proxy_wasm::types::Status;

use crate::host;

/// Envoy as the fetch machine's host, with the fetcher's stats.
struct Envoy {
    version: Option<host::Metric>,
    users: Option<host::Metric>,
    age_ms: Option<host::Metric>,
    fetch_failures: Option<host::Metric>,
    rejected: Option<host::Metric>,
    signature_rejected: Option<host::Metric>,
}

impl Envoy {
    fn define() -> Self {
        Envoy {
            version: host::Metric::gauge(Gauge::Version.name()),
            users: host::Metric::gauge(Gauge::Users.name()),
            age_ms: host::Metric::gauge(Gauge::AgeMs.name()),
            fetch_failures: host::Metric::counter(Counter::FetchFailures.name()),
            rejected: host::Metric::counter(Counter::Rejected.name()),
            signature_rejected: host::Metric::counter(Counter::SignatureRejected.name()),
        }
    }
}

fn failure(status: Status) -> HostFailure {
    HostFailure(format!("{status:?}"))
}

/// Envoy with the root context's ticks, for one run of effects: the fetcher's tick period
/// is one of the root context's two (the worker's copy ticks too).
struct Host<'a> {
    envoy: &'a mut Envoy,
    ticks: &'a mut Ticks,
}

impl FetchHost for Host<'_> {
    fn fetch(&mut self, request: &FetchRequest) -> Result<u32, HostFailure> {
        self.envoy.fetch(request)
    }

    fn write(&mut self, key: &str, bytes: &[u8]) -> Result<(), HostFailure> {
        self.envoy.write(key, bytes)
    }

    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostFailure> {
        self.envoy.read(key)
    }

    fn set_tick(&mut self, period_ms: u64) -> Result<(), HostFailure> {
        let period = self.ticks.set_fetcher(period_ms);
        self.envoy.set_tick(period)
    }

    fn gauge(&mut self, gauge: Gauge, value: u64) {
        self.envoy.gauge(gauge, value);
    }

    fn count(&mut self, counter: Counter) {
        self.envoy.count(counter);
    }

    fn log(&mut self, line: &LogLine) {
        self.envoy.log(line);
    }

    fn now_ms(&self) -> u64 {
        self.envoy.now_ms()
    }
}

impl FetchHost for Envoy {
    fn fetch(&mut self, request: &FetchRequest) -> Result<u32, HostFailure> {
        let timeout = Duration::from_millis(request.timeout_ms);
        host::http_call(&request.cluster, request.headers(), timeout).map_err(failure)
    }

    fn write(&mut self, key: &str, bytes: &[u8]) -> Result<(), HostFailure> {
        host::set_shared_data(key, bytes).map_err(failure)
    }

    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostFailure> {
        host::shared_data(key)
            .map(|(bytes, _)| bytes)
            .map_err(failure)
    }

    fn set_tick(&mut self, period_ms: u64) -> Result<(), HostFailure> {
        host::set_tick(Duration::from_millis(period_ms)).map_err(failure)
    }

    fn gauge(&mut self, gauge: Gauge, value: u64) {
        let metric = match gauge {
            Gauge::Version => self.version,
            Gauge::Users => self.users,
            Gauge::AgeMs => self.age_ms,
        };
        if let Some(m) = metric {
            m.set(value);
        }
    }

    fn count(&mut self, counter: Counter) {
        let metric = match counter {
            Counter::FetchFailures => self.fetch_failures,
            Counter::Rejected => self.rejected,
            Counter::SignatureRejected => self.signature_rejected,
        };
        if let Some(m) = metric {
            m.inc();
        }
    }

    fn log(&mut self, line: &LogLine) {
        match line.level {
            LogLevel::Info => log::info!("{}", line.message),
            LogLevel::Warn => log::warn!("{}", line.message),
            LogLevel::Error => log::error!("{}", line.message),
        }
    }

    fn now_ms(&self) -> u64 {
        host::unix_ms()
    }
}

/// The fetch machine and its host, kept across ticks.
pub struct Fetcher {
    machine: FetchMachine,
    envoy: Envoy,
    config: Rc<CompiledConfig>,
    /// Whether this worker held the lease at the last check.
    held: bool,
}

/// The version of the snapshot published in shared data, if any (`Err`: none readable).
fn published(config: &CompiledConfig) -> Result<Option<u64>, ()> {
    match host::shared_data(config.shared_keys.meta_key()) {
        Ok((Some(bytes), _)) => Ok(Some(
            PublishedMeta::from_json(&bytes).map_or(0, |m| m.version),
        )),
        Ok((None, _)) => Ok(None),
        Err(_) => Err(()),
    }
}

impl Fetcher {
    /// A fetcher for `config` (its `snapshot` block says where and how often), numbering
    /// its publishing epochs from `epoch` (random). A snapshot already published (a
    /// reload, another worker) sets the oldest version it takes.
    pub fn new(config: Rc<CompiledConfig>, epoch: u64) -> Self {
        let found = published(&config);
        let mut machine =
            FetchMachine::new(Rc::clone(&config), matches!(found, Ok(Some(_))), epoch);
        if let Ok(Some(version)) = found {
            machine.published_version(version);
        }
        Fetcher {
            machine,
            envoy: Envoy::define(),
            config,
            held: false,
        }
    }

    fn run(&mut self, effects: consent_core::live::Effects, ticks: &mut Ticks) -> bool {
        let mut host = Host {
            envoy: &mut self.envoy,
            ticks,
        };
        self.machine.run(effects, &mut host)
    }

    /// Starts ticking; false when the host refused the tick period.
    pub fn start(&mut self, ticks: &mut Ticks) -> bool {
        let effects = self.machine.start();
        self.run(effects, ticks)
    }

    /// How long a lease claimed now runs (worker-lease mode).
    pub fn lease_ttl_ms(&self) -> u64 {
        self.machine.lease_ttl_ms()
    }

    /// Worker-lease mode, before each tick: whether worker `holder` holds the lease now.
    pub fn on_lease(&mut self, holder: u64, holds: bool, ticks: &mut Ticks) {
        if holds && !self.held {
            // Another holder may have published newer versions meanwhile.
            if let Ok(Some(version)) = published(&self.config) {
                self.machine.published_version(version);
            }
        }
        self.held = holds;
        let effects = self.machine.on_lease(holder, holds);
        self.run(effects, ticks);
    }

    /// One tick.
    pub fn on_tick(&mut self, ticks: &mut Ticks) {
        let effects = self.machine.on_tick(host::unix_ms());
        self.run(effects, ticks);
    }

    /// The source answered the call `token` (or the call failed: no headers).
    pub fn on_response(&mut self, token: u32, body_size: usize, ticks: &mut Ticks) {
        if !self.machine.awaits(token) {
            return;
        }
        let headers = host::http_call_headers().unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let body = host::http_call_body(body_size).unwrap_or_default();
        let response = Response {
            status: header(":status").and_then(|s| s.parse().ok()),
            etag: header("etag"),
            signature: header(SIGNATURE_HEADER),
            body: &body,
        };
        let effects = self.machine.on_response(token, response, host::unix_ms());
        drop(body);
        self.run(effects, ticks);
    }
}
