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
pub mod ledger;
pub mod sign;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use consent_core::live::FullSnapshotDoc;
use consent_core::live::SubjectKeying;
use consent_core::policy::CompiledPolicy;

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
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Policy(e) => write!(f, "policy: {e}"),
            StartError::Store(e) => write!(f, "{e}"),
            StartError::Listen(e) => write!(f, "cannot listen: {e}"),
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
}

impl Source {
    /// Opens the store at `db` (seeding it from `seed` when empty) and serves on `addr`.
    pub fn start(
        addr: &str,
        db: &Path,
        seed: Option<&FullSnapshotDoc>,
        options: Options,
    ) -> Result<Source, StartError> {
        let policy =
            CompiledPolicy::default_policy().map_err(|e| StartError::Policy(e.to_string()))?;
        let mut store = store::Store::open(db, policy, options.keying)?;
        store.set_part_size(options.part_size);
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
        let api = Arc::new(api::Api::new(store, access, options.signer));
        let workers = api::serve(Arc::clone(&server), api, 2);
        Ok(Source { server, workers })
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
        // Each call releases one worker blocked waiting for a request.
        for _ in 0..self.workers.len().max(1) {
            self.server.unblock();
        }
    }
}
