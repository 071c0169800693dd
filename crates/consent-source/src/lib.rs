//! The reference consent source: consent records in SQLite, an HTTP API to change them,
//! and full snapshots and deltas in the format the consent filter's fetcher reads.
//!
//! The same protocol works from static files (a CDN or object storage): `snapshot` is the
//! full document and `deltas/{N}` the changes after version N; a 404 means "nothing newer".
//!
//! Secure by default: [`Options::default`] lets nothing but `/healthz` through; callers
//! need a token or a client identity from an [`config::AccessConfig`] (or, for the local
//! demo only, [`Options::demo_allow_loopback`]).

pub mod api;
pub mod auth;
pub mod config;
pub mod disclosure;
pub mod ledger;
pub mod sign;
pub mod store;

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use consent_core::live::FullSnapshotDoc;
use consent_core::live::SubjectKeying;
use consent_core::policy::{CompiledPolicy, PolicyDoc};
use consent_core::DEFAULT_POLICY_JSON;

/// Now, in Unix milliseconds. The source reads time through one, so tests can move it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// How often the ledger's retention purge runs (it also runs at start).
pub const LEDGER_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// How a source runs besides where it listens and stores.
pub struct Options {
    /// How subjects are written in what is served and in the audit table.
    pub keying: SubjectKeying,
    /// Records in one snapshot part.
    pub part_size: usize,
    /// Who may call what, and the body size limit.
    pub access: config::AccessConfig,
    /// Calls from loopback without a credential get every role (the demo's setting).
    pub demo_allow_loopback: bool,
    /// Signs every snapshot part and delta served.
    pub signer: Option<sign::Signer>,
    /// The policy document (JSON); `None` for the shipped policy.
    pub policy_json: Option<String>,
    /// The ledger's key when subjects are plain (with [`SubjectKeying::Hmac`] the ledger
    /// uses that key, and this must be `None`). Without any key the ledger is off.
    pub ledger_key: Option<Vec<u8>>,
    /// How long ledger records are kept, in days ([`ledger::MIN_RETENTION_DAYS`] or more).
    pub ledger_retention_days: u32,
    /// How often the retention purge runs.
    pub ledger_purge_interval: Duration,
    /// Now, in Unix milliseconds.
    pub clock: Clock,
}

impl Default for Options {
    /// Plain subjects, parts of [`store::DEFAULT_PART_SIZE`], nothing open, no signing.
    fn default() -> Self {
        Options {
            keying: SubjectKeying::Plain,
            part_size: store::DEFAULT_PART_SIZE,
            access: config::AccessConfig::default(),
            demo_allow_loopback: false,
            signer: None,
            policy_json: None,
            ledger_key: None,
            ledger_retention_days: ledger::DEFAULT_RETENTION_DAYS,
            ledger_purge_interval: LEDGER_PURGE_INTERVAL,
            clock: system_clock(),
        }
    }
}

impl Options {
    /// The demo's options: every role for unauthenticated loopback calls, nothing else
    /// changed (what `make run` and the end-to-end tests use).
    pub fn demo() -> Options {
        Options {
            demo_allow_loopback: true,
            ..Options::default()
        }
    }
}

/// Why a source could not start.
#[derive(Debug)]
pub enum StartError {
    /// The shipped policy did not compile.
    Policy(String),
    /// The database could not be opened or seeded.
    Store(store::StoreError),
    /// The address could not be bound.
    Listen(String),
    /// The ledger settings are not usable.
    Ledger(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Policy(e) => write!(f, "policy: {e}"),
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Listen(e) => write!(f, "cannot listen: {e}"),
            StartError::Ledger(e) => write!(f, "ledger: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<store::StoreError> for StartError {
    fn from(e: store::StoreError) -> Self {
        StartError::Store(e)
    }
}

/// A running source.
pub struct Source {
    server: Arc<tiny_http::Server>,
    workers: Vec<std::thread::JoinHandle<()>>,
    api: Arc<api::Api>,
    ledger_on: bool,
    purger: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

fn log_purge(result: Result<Option<ledger::PurgeEntry>, store::StoreError>) {
    match result {
        Ok(Some(p)) => eprintln!(
            "consent-source: ledger purge: {} record(s) from before {} (Japan time) deleted, retention {} days (purge log seq {})",
            p.deleted,
            disclosure::format_jst(p.cutoff_ms),
            p.retention_days,
            p.seq
        ),
        Ok(None) => {}
        Err(e) => eprintln!("consent-source: ledger purge failed: {e}"),
    }
}

/// The ledger key the options name, or why they cannot be used.
fn ledger_key(options: &Options) -> Result<Option<ledger::LedgerKey>, StartError> {
    let short = || StartError::Ledger("the ledger subject key needs at least 16 bytes".to_string());
    match (&options.keying, &options.ledger_key) {
        (SubjectKeying::Hmac(_), Some(_)) => Err(StartError::Ledger(
            "subjects are already keyed (--subject-key-secret): the ledger uses that key; drop --ledger-subject-key"
                .to_string(),
        )),
        (SubjectKeying::Hmac(k), None) => ledger::LedgerKey::new(k.clone()).map(Some).ok_or_else(short),
        (SubjectKeying::Plain, Some(k)) => ledger::LedgerKey::new(k.clone()).map(Some).ok_or_else(short),
        (SubjectKeying::Plain, None) => Ok(None),
    }
}

impl Source {
    /// Opens the store at `db` (seeding it from `seed` when empty) and serves on `addr`.
    pub fn start(
        addr: &str,
        db: &Path,
        seed: Option<&FullSnapshotDoc>,
        options: Options,
    ) -> Result<Source, StartError> {
        let text = options
            .policy_json
            .as_deref()
            .unwrap_or(DEFAULT_POLICY_JSON);
        let policy =
            CompiledPolicy::from_json(text).map_err(|e| StartError::Policy(e.to_string()))?;
        let doc: PolicyDoc =
            serde_json::from_str(text).map_err(|e| StartError::Policy(e.to_string()))?;
        let retention_days = ledger::check_retention_days(options.ledger_retention_days)
            .map_err(StartError::Ledger)?;
        let key = ledger_key(&options)?;
        let ledger_on = key.is_some();
        let mut store = store::Store::open(db, policy, options.keying.clone())?;
        store.set_part_size(options.part_size);
        if let Some(key) = key {
            store.enable_ledger(key)?;
        }
        if let Some(seed) = seed {
            if store.version()? == 0 {
                let at_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                store.seed(seed, store::Actor { who: "seed", at_ms })?;
            }
        }
        let server =
            Arc::new(tiny_http::Server::http(addr).map_err(|e| StartError::Listen(e.to_string()))?);
        let access = auth::Access::new(options.access, options.demo_allow_loopback);
        let settings = api::ApiSettings {
            labels: disclosure::PolicyLabels::from_doc(&doc),
            retention_days,
            clock: Arc::clone(&options.clock),
        };
        let api = Arc::new(api::Api::new(store, access, options.signer, settings));
        let purger = if ledger_on {
            // Once at start, then on the schedule.
            log_purge(api.purge_ledger());
            let (stop, wait) = mpsc::channel::<()>();
            let purging = Arc::clone(&api);
            let interval = options.ledger_purge_interval;
            let handle = std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(interval) {
                    log_purge(purging.purge_ledger());
                }
            });
            Some((stop, handle))
        } else {
            None
        };
        let workers = api::serve(Arc::clone(&server), Arc::clone(&api), 2);
        Ok(Source {
            server,
            workers,
            api,
            ledger_on,
            purger,
        })
    }

    /// Whether the ledger is on (the source has a ledger key).
    pub fn ledger_on(&self) -> bool {
        self.ledger_on
    }

    /// Runs the ledger's retention purge now, as the schedule does.
    pub fn purge_ledger(&self) -> Result<Option<ledger::PurgeEntry>, store::StoreError> {
        self.api.purge_ledger()
    }

    /// The port it listens on.
    pub fn port(&self) -> Option<u16> {
        self.server.server_addr().to_ip().map(|a| a.port())
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        for w in std::mem::take(&mut self.workers) {
            let _ = w.join();
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.purger.take() {
            drop(stop);
            let _ = handle.join();
        }
        // Each call releases one worker blocked waiting for a request.
        for _ in 0..self.workers.len().max(1) {
            self.server.unblock();
        }
    }
}
