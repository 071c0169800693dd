//! One filter configuration (one `DynamicModuleFilter` in Envoy): the plugin configuration
//! compiled once with [`compile_config_with_env`], the stats it defines, and the copy of the compiled
//! configuration each worker thread decides with.
//!
//! A [`CompiledConfig`] is not `Sync` (the body matcher builds its DFA lazily, in a
//! `RefCell`), so workers do not share one: the configuration keeps the compiled template,
//! and each worker clones it once, on its first request, into a thread-local cache (the
//! wasm filter compiles once per worker VM, to the same effect).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use consent_core::live::{Counter, Gauge, SnapshotSource};
use consent_core::{compile_config_with_env, CompiledConfig};

use crate::envoy::{self, Level, MetricKind};
use crate::metrics;
use crate::stat_batch::StatBatch;

/// The stats of the request path (same names and labels as the wasm filter's, see the
/// README's Metrics; Envoy shows them as `dynamicmodulescustom.<name>.<label>.<value>...`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamMetrics {
    /// `consent.decisions{mode, outcome, reason, purpose}`.
    pub decisions: Option<usize>,
    /// `consent.redactions{mode, direction, category}`.
    pub redactions: Option<usize>,
    /// `consent.refusals{mode, direction, reason}`.
    pub refusals: Option<usize>,
    /// `consent.body_bytes{direction}`.
    pub body_bytes: Option<usize>,
}

/// The fetcher's stats (the core's [`Gauge`] and [`Counter`] names), defined by every
/// configuration so that whichever one runs the fetcher can set them.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetcherMetrics {
    /// `consent_snapshot_version`, `consent_snapshot_users`, `consent_snapshot_age_ms`.
    pub gauges: [Option<usize>; 3],
    /// `consent_snapshot_fetch_failures`, `consent_snapshot_rejected`,
    /// `consent_snapshot_signature_rejected`.
    pub counters: [Option<usize>; 3],
}

impl FetcherMetrics {
    /// The id of a gauge.
    pub fn gauge(&self, gauge: Gauge) -> Option<usize> {
        let [version, users, age] = self.gauges;
        match gauge {
            Gauge::Version => version,
            Gauge::Users => users,
            Gauge::AgeMs => age,
        }
    }

    /// The id of a counter.
    pub fn counter(&self, counter: Counter) -> Option<usize> {
        let [failures, rejected, signature_rejected] = self.counters;
        match counter {
            Counter::FetchFailures => failures,
            Counter::Rejected => rejected,
            Counter::SignatureRejected => signature_rejected,
        }
    }
}

/// The provision ledger's stats, defined by a configuration with `ledger.enabled`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerMetrics {
    /// `consent_ledger_records_sent`.
    pub sent: Option<usize>,
    /// `consent_ledger_send_failures`.
    pub failures: Option<usize>,
    /// `consent_ledger_dropped`.
    pub dropped: Option<usize>,
    /// `consent_ledger_buffered` (gauge).
    pub buffered: Option<usize>,
}

/// A variable of Envoy's own environment: keys written `{"env": "NAME"}` come from there
/// (the wasm filter reads its VM's environment instead).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A filter configuration, shared by the main thread and every worker.
#[derive(Debug)]
pub struct FilterConfig {
    /// A number no other configuration of this process has.
    pub id: u64,
    /// Envoy's side of this configuration (used on the main thread only).
    pub envoy: envoy::Config,
    /// The plugin configuration as given (the fetcher compiles its own copy from it).
    pub bytes: Vec<u8>,
    /// The compiled configuration the workers clone.
    template: Mutex<CompiledConfig>,
    /// The shared-data namespace of this configuration's snapshot.
    pub namespace: String,
    /// The prefix of that namespace's bucket keys (`c/<id>`).
    pub bucket_namespace: String,
    /// Whether the snapshot comes from a consent source (else it is inline).
    pub shared: bool,
    /// Request-path stats.
    pub metrics: StreamMetrics,
    /// Where workers leave request-path stats for the main thread to count (`None` when
    /// Envoy defined none of them, or gave no scheduler: then streams count at once).
    pub stat_batch: Option<StatBatch>,
    /// Fetcher stats.
    pub fetcher_metrics: FetcherMetrics,
    /// Ledger stats.
    pub ledger_metrics: LedgerMetrics,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn define(envoy: envoy::Config, kind: MetricKind, name: &str, labels: &[&str]) -> Option<usize> {
    let id = envoy.define(kind, name, labels);
    if id.is_none() {
        envoy::log(
            Level::Warn,
            &format!("consent filter: Envoy refused to define the stat {name}"),
        );
    }
    id
}

impl FilterConfig {
    /// Compiles `bytes`; the error is the one-line message the wasm filter logs.
    pub fn new(envoy: envoy::Config, bytes: &[u8]) -> Result<FilterConfig, String> {
        let config = compile_config_with_env(bytes, &process_env).map_err(|e| e.to_string())?;
        let metrics = StreamMetrics {
            decisions: define(
                envoy,
                MetricKind::Counter,
                "consent.decisions",
                &["mode", "outcome", "reason", "purpose"],
            ),
            redactions: define(
                envoy,
                MetricKind::Counter,
                "consent.redactions",
                &["mode", "direction", "category"],
            ),
            refusals: define(
                envoy,
                MetricKind::Counter,
                "consent.refusals",
                &["mode", "direction", "reason"],
            ),
            body_bytes: define(
                envoy,
                MetricKind::Counter,
                "consent.body_bytes",
                &["direction"],
            ),
        };
        // Only a configuration that reads a fetched snapshot has fetcher stats (as with
        // the wasm filter, whose fetcher alone defines them).
        let shared = config.snapshot.source == SnapshotSource::Shared;
        let fetcher_metrics = if shared {
            FetcherMetrics {
                gauges: [Gauge::Version, Gauge::Users, Gauge::AgeMs]
                    .map(|g| define(envoy, MetricKind::Gauge, g.name(), &[])),
                counters: [
                    Counter::FetchFailures,
                    Counter::Rejected,
                    Counter::SignatureRejected,
                ]
                .map(|c| define(envoy, MetricKind::Counter, c.name(), &[])),
            }
        } else {
            FetcherMetrics::default()
        };
        let ledger_metrics = if config.ledger.enabled {
            let counter = |name: &str| define(envoy, MetricKind::Counter, name, &[]);
            LedgerMetrics {
                sent: counter("consent_ledger_records_sent"),
                failures: counter("consent_ledger_send_failures"),
                dropped: counter("consent_ledger_dropped"),
                buffered: define(envoy, MetricKind::Gauge, "consent_ledger_buffered", &[]),
            }
        } else {
            LedgerMetrics::default()
        };
        let any_stream_stat = metrics.decisions.is_some()
            || metrics.redactions.is_some()
            || metrics.refusals.is_some()
            || metrics.body_bytes.is_some();
        let stat_batch = if any_stream_stat {
            StatBatch::start(envoy)
        } else {
            None
        };
        Ok(FilterConfig {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stat_batch,
            envoy,
            bytes: bytes.to_vec(),
            namespace: config.shared_keys.prefix().to_string(),
            bucket_namespace: config.shared_keys.bucket_prefix().to_string(),
            shared,
            template: Mutex::new(config),
            metrics,
            fetcher_metrics,
            ledger_metrics,
        })
    }

    /// The one-line summary logged when a configuration is accepted (no personal data).
    pub fn summary(&self) -> Option<String> {
        let config = self.template.lock().ok()?;
        Some(format!(
            "consent filter configured: policy {} version {}, {} purposes, {} categories, {} consent records",
            config.policy.id,
            config.policy.version,
            config.policy.purposes.len(),
            config.policy.categories.len(),
            config.consents.len()
        ))
    }

    /// Warns, like the wasm filter, when pseudonymise transforms must remove instead.
    pub fn key_warning(&self) -> Option<String> {
        let config = self.template.lock().ok()?;
        if config.key.is_some() {
            return None;
        }
        config.policy.first_pseudonymising_purpose().map(|path| {
            format!(
                "consent filter: no pseudonymisation_key, so {path} and other pseudonymise transforms remove the value instead"
            )
        })
    }

    /// Counts what the stat batch holds (main thread: on its flush event, and when Envoy
    /// destroys this configuration, after which streams count at once).
    pub fn flush_stats(&self, stopping: bool) {
        let Some(batch) = &self.stat_batch else {
            return;
        };
        let pending = if stopping { batch.stop() } else { batch.take() };
        if pending.is_empty() {
            return;
        }
        let Ok(config) = self.template.lock() else {
            return;
        };
        for (increment, by) in pending {
            if let Some((id, labels, len)) = metrics::resolve(&increment, &self.metrics, &config) {
                self.envoy
                    .count_labelled(id, labels.get(..len).unwrap_or(&[]), by);
            }
        }
    }

    /// This thread's copy of the compiled configuration (cloned on first use).
    pub fn compiled(self: &Arc<Self>) -> Option<Rc<CompiledConfig>> {
        WORKER_COPIES.with(|copies| {
            let mut copies = copies.borrow_mut();
            if let Some((_, _, config)) = copies.iter().find(|(id, _, _)| *id == self.id) {
                return Some(Rc::clone(config));
            }
            let copy = Rc::new(self.template.lock().ok()?.clone());
            // Copies of configurations Envoy has destroyed go when a new one is added.
            copies.retain(|(_, owner, _)| owner.strong_count() > 0);
            copies.push((self.id, Arc::downgrade(self), Rc::clone(&copy)));
            Some(copy)
        })
    }
}

/// Per-thread copies: configuration id, the configuration, the copy.
type Copies = Vec<(u64, Weak<FilterConfig>, Rc<CompiledConfig>)>;

thread_local! {
    static WORKER_COPIES: RefCell<Copies> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<FilterConfig, String> {
        // Metric definitions need Envoy; a null pointer is never dereferenced in tests
        // because `define` is only reached through Envoy in the real module.
        FilterConfig::new(envoy::Config(std::ptr::null_mut()), json.as_bytes())
    }

    #[test]
    fn a_bad_configuration_is_the_cores_one_line_error() {
        let err = config(r#"{"require_usr": false}"#).unwrap_err();
        assert!(err.contains("unknown field `require_usr`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn each_thread_decides_with_its_own_copy_of_one_compilation() {
        let shared = Arc::new(config("{}").unwrap());
        let here = shared.compiled().unwrap();
        assert!(Rc::ptr_eq(&here, &shared.compiled().unwrap()), "cached");
        let other = Arc::clone(&shared);
        let policy = std::thread::spawn(move || other.compiled().unwrap().policy.id.clone())
            .join()
            .unwrap();
        assert_eq!(policy, here.policy.id);
        assert!(!shared.shared, "inline consents by default");
    }
}
