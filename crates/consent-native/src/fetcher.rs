//! The snapshot fetcher: one per snapshot namespace per process, whichever filter
//! configurations read it. It runs the core's [`FetchMachine`] on Envoy's main thread,
//! calls the consent source through Envoy (HTTP callouts of a filter configuration, so the
//! source is an ordinary Envoy cluster, as for the wasm fetcher) and publishes into the
//! process's [`store`](crate::store), which every worker reads.
//!
//! - Ticks: a small thread sleeps the machine's tick period and posts an event to the
//!   owning configuration through its main-thread scheduler; the tick itself runs on the
//!   main thread, like every other fetcher step.
//! - Ownership: the first configuration of a namespace owns its fetcher (callouts, stats,
//!   scheduler). When Envoy destroys it (a listener update, say) and other configurations
//!   of the namespace remain, the next one takes over with a new machine that rewrites or
//!   empties every bucket on its first publish; when the last one goes, the namespace's
//!   keys are removed from the store. A policy change gets a new namespace, so the old
//!   configuration keeps its snapshot while the new one's is fetched.
//! - Nothing runs under `--mode validate`, and nothing for inline consents.
//!
//! No worker lease is needed: the store is process memory, shared by every worker, so
//! `snapshot.fetcher` (singleton or worker_lease) changes nothing here.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use consent_core::compile_config_with_env;
use consent_core::live::{
    Counter, FetchHost, FetchMachine, FetchRequest, Gauge, HostFailure, LogLevel, LogLine,
    PublishedMeta, Response, SIGNATURE_HEADER,
};

use crate::abi::callout_result;
use crate::config::{process_env, FilterConfig};
use crate::envoy::{self, CallAnswer, Level, Scheduler};
use crate::filter::unix_ms;
use crate::store::STORE;

/// The scheduler event of a tick.
pub const TICK_EVENT: u64 = 1;

#[derive(Debug)]
struct TickState {
    period_ms: u64,
    stop: bool,
}

type TickShared = Arc<(Mutex<TickState>, Condvar)>;

/// The thread that posts ticks to the owning configuration.
struct Ticker {
    state: TickShared,
    thread: Option<JoinHandle<()>>,
    scheduler: Arc<Scheduler>,
}

impl Ticker {
    fn start(config: envoy::Config, period_ms: u64) -> Option<Ticker> {
        let scheduler = Arc::new(config.scheduler()?);
        let state: TickShared = Arc::new((
            Mutex::new(TickState {
                period_ms,
                stop: false,
            }),
            Condvar::new(),
        ));
        let (thread_state, thread_scheduler) = (Arc::clone(&state), Arc::clone(&scheduler));
        let thread = std::thread::Builder::new()
            .name("consent-fetcher".to_string())
            .spawn(move || tick_loop(&thread_state, &thread_scheduler))
            .ok()?;
        Some(Ticker {
            state,
            thread: Some(thread),
            scheduler,
        })
    }

    fn set_period(&self, period_ms: u64) -> bool {
        let (lock, wake) = &*self.state;
        match lock.lock() {
            Ok(mut state) => {
                state.period_ms = period_ms;
                wake.notify_all();
                true
            }
            Err(_) => false,
        }
    }

    /// Stops the thread, then deletes the scheduler (nothing commits to it any more).
    fn stop(mut self) {
        let (lock, wake) = &*self.state;
        if let Ok(mut state) = lock.lock() {
            state.stop = true;
            wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Ok(scheduler) = Arc::try_unwrap(self.scheduler) {
            scheduler.delete();
        }
    }
}

fn tick_loop(state: &TickShared, scheduler: &Scheduler) {
    let (lock, wake) = &**state;
    let Ok(mut guard) = lock.lock() else {
        return;
    };
    loop {
        if guard.stop {
            return;
        }
        let period = guard.period_ms.max(1);
        let Ok((next, waited)) = wake.wait_timeout(guard, Duration::from_millis(period)) else {
            return;
        };
        guard = next;
        if guard.stop {
            return;
        }
        // Woken early: the period changed (or a spurious wake-up); wait the new period.
        if waited.timed_out() && guard.period_ms.max(1) == period {
            scheduler.commit(TICK_EVENT);
        }
    }
}

/// Envoy as the fetch machine's host.
struct Host {
    owner: Arc<FilterConfig>,
    ticker: Option<Ticker>,
    /// The call that is out: Envoy's callout id and the machine's token.
    pending: Option<(u64, u32)>,
    next_token: u32,
}

impl Host {
    fn new(owner: Arc<FilterConfig>) -> Self {
        Host {
            owner,
            ticker: None,
            pending: None,
            next_token: 0,
        }
    }

    fn stop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
        self.pending = None;
    }
}

fn refusal(code: u32) -> &'static str {
    match code {
        1 => "missing required headers",
        2 => "cluster not found",
        3 => "duplicate callout id",
        4 => "cannot create the request (no healthy upstream?)",
        _ => "unknown refusal",
    }
}

impl FetchHost for Host {
    fn fetch(&mut self, request: &FetchRequest) -> Result<u32, HostFailure> {
        let config = self.owner.envoy;
        match config.http_call(&request.cluster, &request.headers(), request.timeout_ms) {
            Ok(id) => {
                self.next_token = self.next_token.wrapping_add(1);
                self.pending = Some((id, self.next_token));
                Ok(self.next_token)
            }
            Err(code) => Err(HostFailure(format!(
                "Envoy refused the call: {}",
                refusal(code)
            ))),
        }
    }

    fn write(&mut self, key: &str, bytes: &[u8]) -> Result<(), HostFailure> {
        if STORE.put(key, bytes) {
            Ok(())
        } else {
            Err(HostFailure("the snapshot store is unusable".to_string()))
        }
    }

    fn read(&mut self, key: &str) -> Result<Option<Vec<u8>>, HostFailure> {
        STORE
            .bytes(key)
            .map(|found| found.map(|(bytes, _)| bytes.to_vec()))
            .map_err(|_| HostFailure("the snapshot store is unusable".to_string()))
    }

    fn set_tick(&mut self, period_ms: u64) -> Result<(), HostFailure> {
        let updated = match &self.ticker {
            Some(ticker) => ticker.set_period(period_ms),
            None => {
                self.ticker = Ticker::start(self.owner.envoy, period_ms);
                self.ticker.is_some()
            }
        };
        if updated {
            Ok(())
        } else {
            Err(HostFailure("cannot start the tick thread".to_string()))
        }
    }

    fn gauge(&mut self, gauge: Gauge, value: u64) {
        if let Some(id) = self.owner.fetcher_metrics.gauge(gauge) {
            self.owner.envoy.set_gauge(id, value);
        }
    }

    fn count(&mut self, counter: Counter) {
        if let Some(id) = self.owner.fetcher_metrics.counter(counter) {
            self.owner.envoy.count(id);
        }
    }

    fn log(&mut self, line: &LogLine) {
        let level = match line.level {
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        envoy::log(level, &line.message);
    }

    fn now_ms(&self) -> u64 {
        unix_ms()
    }
}

/// 64 random bits (the standard library's hash keys are seeded from the OS): where a
/// machine's publishing epochs start, so that no two fetchers of a namespace share one.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_ms());
    h.finish()
}

/// The fetcher of one namespace.
struct Fetcher {
    namespace: String,
    machine: FetchMachine,
    host: Host,
    /// The configurations that read this namespace, the owner first.
    users: Vec<Arc<FilterConfig>>,
}

impl Fetcher {
    /// A fetcher owned by `owner`, started (its first tick is set).
    fn start(owner: Arc<FilterConfig>) -> Option<Fetcher> {
        // The configuration compiled once already; this copy is the machine's own.
        let config = compile_config_with_env(&owner.bytes, &process_env).ok()?;
        if config.ledger.enabled {
            crate::ledger::start(&config.ledger);
        }
        // A snapshot already in the store (a configuration that took over) sets the oldest
        // version the machine takes: older full snapshots are refused as replays.
        let published = STORE.bytes(config.shared_keys.meta_key()).ok().flatten();
        let mut machine = FetchMachine::new(Rc::new(config), published.is_some(), random_u64());
        if let Some((bytes, _)) = published {
            machine.published_version(PublishedMeta::from_json(&bytes).map_or(0, |m| m.version));
        }
        let mut fetcher = Fetcher {
            namespace: owner.namespace.clone(),
            machine,
            host: Host::new(Arc::clone(&owner)),
            users: vec![owner],
        };
        let effects = fetcher.machine.start();
        if !fetcher.machine.run(effects, &mut fetcher.host) {
            envoy::log(Level::Error, "consent fetcher: cannot start ticking");
        }
        Some(fetcher)
    }
}

/// An answer that arrived while the fetchers were busy (a callout completed inline).
struct Deferred {
    config: u64,
    callout: u64,
    status: Option<u16>,
    answer: CallAnswer,
}

thread_local! {
    /// The fetchers of this process (main thread only: every caller is a configuration
    /// hook).
    static FETCHERS: RefCell<Vec<Fetcher>> = const { RefCell::new(Vec::new()) };
    static DEFERRED: RefCell<Vec<Deferred>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the fetchers, then any answer that arrived meanwhile.
fn with_fetchers(f: impl FnOnce(&mut Vec<Fetcher>)) {
    let ran = FETCHERS.with(|fetchers| match fetchers.try_borrow_mut() {
        Ok(mut fetchers) => {
            f(&mut fetchers);
            true
        }
        Err(_) => false,
    });
    if !ran {
        envoy::log(Level::Error, "consent fetcher: re-entered; step dropped");
        return;
    }
    let deferred: Vec<Deferred> = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    for d in deferred {
        answered(d.config, d.callout, d.status, &d.answer);
    }
}

/// A configuration that reads a shared snapshot was created: it joins its namespace's
/// fetcher, or starts one.
pub fn register(config: &Arc<FilterConfig>) {
    if !config.shared || envoy::validation_mode() {
        return;
    }
    with_fetchers(|fetchers| {
        if let Some(fetcher) = fetchers
            .iter_mut()
            .find(|f| f.namespace == config.namespace)
        {
            fetcher.users.push(Arc::clone(config));
            return;
        }
        if let Some(fetcher) = Fetcher::start(Arc::clone(config)) {
            envoy::log(
                Level::Info,
                &format!(
                    "consent fetcher: fetching {} into this process",
                    fetcher.namespace
                ),
            );
            fetchers.push(fetcher);
        }
    });
}

/// Envoy destroys a configuration: it leaves its fetcher, which moves to another
/// configuration of the namespace or, with none left, stops and forgets the namespace.
pub fn release(config: &FilterConfig) {
    with_fetchers(|fetchers| {
        let Some(at) = fetchers
            .iter()
            .position(|f| f.users.iter().any(|u| u.id == config.id))
        else {
            return;
        };
        let Some(fetcher) = fetchers.get_mut(at) else {
            return;
        };
        fetcher.users.retain(|u| u.id != config.id);
        if fetcher.host.owner.id != config.id {
            return;
        }
        fetcher.host.stop();
        if let Some(next) = fetcher.users.first().cloned() {
            let users = std::mem::take(&mut fetcher.users);
            if let Some(mut moved) = Fetcher::start(next) {
                moved.users = users;
                *fetcher = moved;
                return;
            }
        }
        let gone = fetchers.remove(at);
        STORE.remove_namespace(&gone.namespace);
        STORE.remove_namespace(&gone.host.owner.bucket_namespace);
    });
}

/// A tick posted by a ticker arrived for `config`.
pub fn on_tick(config: u64) {
    with_fetchers(|fetchers| {
        if let Some(fetcher) = fetchers.iter_mut().find(|f| f.host.owner.id == config) {
            let effects = fetcher.machine.on_tick(unix_ms());
            fetcher.machine.run(effects, &mut fetcher.host);
            crate::ledger::on_tick(&fetcher.host.owner);
        }
    });
}

/// The answer to callout `callout` of `config` arrived (`result` as Envoy reports it).
pub fn on_answer(config: u64, callout: u64, result: u32, answer: CallAnswer) {
    let status = if result == callout_result::SUCCESS {
        answer.header(":status").and_then(|s| s.parse().ok())
    } else {
        None
    };
    let busy = FETCHERS.with(|f| f.try_borrow_mut().is_err());
    if busy {
        DEFERRED.with(|d| {
            d.borrow_mut().push(Deferred {
                config,
                callout,
                status,
                answer,
            })
        });
        return;
    }
    answered(config, callout, status, &answer);
}

fn answered(config: u64, callout: u64, status: Option<u16>, answer: &CallAnswer) {
    with_fetchers(|fetchers| {
        let Some(fetcher) = fetchers.iter_mut().find(|f| f.host.owner.id == config) else {
            return;
        };
        // A ledger batch's answer (its calls share the owner's callouts).
        if crate::ledger::on_answer(&fetcher.host.owner, callout, status) {
            return;
        }
        let Some((id, token)) = fetcher.host.pending else {
            return;
        };
        if id != callout {
            return;
        }
        fetcher.host.pending = None;
        if !fetcher.machine.awaits(token) {
            return;
        }
        let response = Response {
            status,
            etag: answer.header("etag"),
            signature: answer.header(SIGNATURE_HEADER),
            body: &answer.body,
        };
        let effects = fetcher.machine.on_response(token, response, unix_ms());
        fetcher.machine.run(effects, &mut fetcher.host);
    });
}
