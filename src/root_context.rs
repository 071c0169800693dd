//! The root context: compiles the plugin configuration once per VM in `on_configure`.
//! Configured with root id `consent_fetcher` (as a bootstrap singleton), it runs the
//! snapshot fetcher instead of serving as a filter. With `snapshot.fetcher: worker_lease`
//! the filter's own root contexts run the fetcher, one at a time under a lease in shared
//! data (for Istio and Envoy Gateway, which cannot add bootstrap extensions). A root
//! context that serves requests from a live snapshot keeps this VM's copy of its buckets
//! up to date on its tick, from the first request on (VMs that never serve requests, such
//! as Envoy's base VMs, copy nothing).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use consent_core::live::{claim, next_holder_id, Lease, LEASE_SEQ_KEY};
use consent_core::live::{FetcherMode, SnapshotSource, Ticks, REPLICA_TICK_MS};
use consent_core::{compile_config_with_env, CompiledConfig};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::drainer::Drainer;
use crate::fetcher::Fetcher;
use crate::host;
use crate::http_context::ConsentHttp;
use crate::shared_snapshot::{self, SharedReplica};

/// Root id that makes this plugin the snapshot fetcher.
pub const FETCHER_ROOT_ID: &str = "consent_fetcher";

/// Holds the compiled configuration shared by every request of this VM.
#[derive(Default)]
pub struct ConsentRoot {
    config: Option<Rc<CompiledConfig>>,
    fetcher: Option<Fetcher>,
    /// With a worker lease: this root context's holder id.
    lease: Option<u64>,
    /// This VM's copy of the live snapshot's buckets (a filter with a shared source).
    replica: Option<SharedReplica>,
    /// The copy ticks (from the first request on).
    replica_ticking: Cell<bool>,
    /// The periods of the fetcher and the copy.
    ticks: RefCell<Ticks>,
    /// The provision ledger's drainer, where the fetcher runs and the ledger is enabled.
    drainer: Option<Drainer>,
}

/// 64 random bits: the standard library seeds its hash keys from WASI's `random_get`.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(host::unix_ms());
    h.finish()
}

/// A holder id no other root context has: 64 random bits, mixed with the shared counter
/// and the clock. Ids from the counter alone could repeat: two workers that both find the
/// counter absent both write it unconditionally.
fn holder_id() -> Option<u64> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let (stored, _) = host::shared_data(LEASE_SEQ_KEY).ok()?;
    let seq = next_holder_id(stored.as_deref());
    let _ = host::set_shared_data_cas(LEASE_SEQ_KEY, &seq.to_le_bytes(), None);
    h.write_u64(seq);
    h.write_u64(host::unix_ms());
    Some(h.finish().max(1))
}

/// Claims or renews the lease for `me`; true while this root context holds it.
fn hold_lease(key: &str, me: u64, ttl_ms: u64) -> bool {
    let Ok((stored, cas)) = host::shared_data(key) else {
        return false;
    };
    let current = stored.as_deref().and_then(Lease::decode);
    if stored.is_none() {
        // Create the key first, so that every later claim is a compare-and-swap.
        let free = Lease {
            holder: 0,
            expires_ms: 0,
        };
        let _ = host::set_shared_data_cas(key, &free.encode(), None);
        return false;
    }
    match claim(current, me, host::unix_ms(), ttl_ms) {
        Some(lease) => host::set_shared_data_cas(key, &lease.encode(), cas).is_ok(),
        None => false,
    }
}

/// How the live snapshot's documents are checked: the key's id (as `minisign` prints it,
/// never the key) and whether unsigned documents are refused.
fn log_trust(config: &CompiledConfig) {
    if config.snapshot.source != SnapshotSource::Shared {
        return;
    }
    let next = config
        .snapshot
        .trust
        .as_ref()
        .and_then(|t| t.next.as_ref())
        .map_or(String::new(), |k| {
            format!(" (or, rotating, key id {})", k.id())
        });
    match &config.snapshot.trust {
        Some(trust) if trust.required => log::info!(
            "consent filter: snapshot documents must be signed with minisign key id {}{next}",
            trust.key.id()
        ),
        Some(trust) => log::warn!(
            "consent filter: snapshot signatures are checked against minisign key id {}{next} but not required (snapshot.require_signature: false)",
            trust.key.id()
        ),
        None => log::warn!(
            "consent filter: snapshot documents are not signature-checked (no snapshot.public_key)"
        ),
    }
}

impl Context for ConsentRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(drainer) = self.drainer.as_mut().filter(|d| d.awaits(token_id)) {
            let status = host::http_call_headers().ok().and_then(|headers| {
                headers
                    .iter()
                    .find(|(n, _)| n == ":status")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            });
            drainer.on_response(status);
            return;
        }
        if let Some(fetcher) = self.fetcher.as_mut() {
            fetcher.on_response(token_id, body_size, self.ticks.get_mut());
        }
    }
}

impl RootContext for ConsentRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration() {
            Ok(bytes) => bytes,
            Err(status) => {
                log::error!("consent filter: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        // Keys given as {"env": "NAME"} come from the VM's environment
        // (vm_config.environment_variables).
        let env = |name: &str| std::env::var(name).ok();
        match compile_config_with_env(&bytes, &env) {
            Ok(config) => {
                log::info!(
                    "consent filter configured: policy {} version {}, {} purposes, {} categories, {} consent records",
                    config.policy.id,
                    config.policy.version,
                    config.policy.purposes.len(),
                    config.policy.categories.len(),
                    config.consents.len()
                );
                for field in &config.inline_secrets {
                    log::warn!(
                        "consent filter: {field} is written in the configuration; prefer {{\"env\": \"NAME\"}} (a variable of the Wasm VM, vm_config.environment_variables)"
                    );
                }
                if config.key.is_none() {
                    if let Some(path) = config.policy.first_pseudonymising_purpose() {
                        log::warn!(
                            "consent filter: no pseudonymisation_key, so {path} and other pseudonymise transforms remove the value instead"
                        );
                    }
                }
                log_trust(&config);
                let config = Rc::new(config);
                self.config = Some(Rc::clone(&config));
                if host::root_id().as_deref() == Some(FETCHER_ROOT_ID) {
                    if config.snapshot.source == SnapshotSource::Inline {
                        log::info!("consent fetcher: snapshot.source is inline, nothing to fetch");
                        return true;
                    }
                    let mut fetcher = Fetcher::new(Rc::clone(&config), random_u64());
                    let started = fetcher.start(self.ticks.get_mut());
                    self.fetcher = Some(fetcher);
                    if config.ledger.enabled {
                        let mut drainer = Drainer::new(&config.ledger);
                        let registered = drainer.start();
                        self.drainer = Some(drainer);
                        return started && registered;
                    }
                    return started;
                }
                self.replica = shared_snapshot::replica_for(&config);
                if config.snapshot.source == SnapshotSource::Shared
                    && config.snapshot.fetcher == FetcherMode::WorkerLease
                {
                    let Some(me) = holder_id() else {
                        log::error!("consent filter: cannot take a fetcher lease id");
                        return false;
                    };
                    let mut fetcher = Fetcher::new(Rc::clone(&config), random_u64());
                    let started = fetcher.start(self.ticks.get_mut());
                    self.fetcher = Some(fetcher);
                    self.lease = Some(me);
                    if config.ledger.enabled {
                        // Drains only while this worker holds the lease (on_tick).
                        self.drainer = Some(Drainer::new(&config.ledger));
                    }
                    return started;
                }
                true
            }
            Err(err) => {
                log::error!("consent filter configuration rejected: {err}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let due = self.ticks.get_mut().due(host::unix_ms());
        if due.fetcher {
            if let Some(fetcher) = self.fetcher.as_mut() {
                let ticks = self.ticks.get_mut();
                if let (Some(me), Some(config)) = (self.lease, self.config.as_ref()) {
                    let holds = hold_lease(&config.shared_keys.lease(), me, fetcher.lease_ttl_ms());
                    fetcher.on_lease(me, holds, ticks);
                    if let Some(drainer) = self.drainer.as_mut() {
                        if holds && !drainer.draining() {
                            drainer.start();
                        } else if !holds && drainer.draining() {
                            drainer.stop();
                        }
                    }
                }
                fetcher.on_tick(ticks);
                if let Some(drainer) = self.drainer.as_mut() {
                    drainer.on_tick();
                }
            }
        }
        if due.replica {
            if let (Some(config), Some(replica)) = (self.config.as_ref(), self.replica.as_ref()) {
                shared_snapshot::refresh(config, replica);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.replica.is_some() && !self.replica_ticking.get() {
            // This VM serves requests: keep its copy of the buckets from now on.
            self.replica_ticking.set(true);
            let period = self.ticks.borrow_mut().set_replica(REPLICA_TICK_MS);
            if let Err(status) = host::set_tick(std::time::Duration::from_millis(period)) {
                log::warn!("consent filter: cannot tick to copy the snapshot: {status:?}");
            }
        }
        Some(Box::new(ConsentHttp::new(
            self.config.clone(),
            self.replica.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
