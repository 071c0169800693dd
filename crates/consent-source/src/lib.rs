//! The reference consent source: consent records in SQLite, an HTTP API to change them,
//! and full snapshots and deltas in the format the consent filter's fetcher reads.
//!
//! The same protocol works from static files (a CDN or object storage): `snapshot` is the
//! full document and `deltas/{N}` the changes after version N; a 404 means "nothing newer".

pub mod api;
pub mod auth;
pub mod config;
pub mod sign;
pub mod store;

use std::path::Path;
use std::sync::{Arc, Mutex};

use consent_core::live::FullSnapshotDoc;
use consent_core::live::SubjectKeying;
use consent_core::policy::CompiledPolicy;

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
        keying: SubjectKeying,
    ) -> Result<Source, String> {
        Self::start_with_parts(addr, db, seed, keying, store::DEFAULT_PART_SIZE)
    }

    /// [`Source::start`] with `part_size` records per snapshot part.
    pub fn start_with_parts(
        addr: &str,
        db: &Path,
        seed: Option<&FullSnapshotDoc>,
        keying: SubjectKeying,
        part_size: usize,
    ) -> Result<Source, String> {
        let policy = CompiledPolicy::default_policy().map_err(|e| e.to_string())?;
        let mut store = store::Store::open(db, policy, keying).map_err(|e| e.to_string())?;
        store.set_part_size(part_size);
        if let Some(seed) = seed {
            if store.version().map_err(|e| e.to_string())? == 0 {
                store.seed(seed).map_err(|e| e.to_string())?;
            }
        }
        let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| e.to_string())?);
        let workers = api::serve(Arc::clone(&server), Arc::new(Mutex::new(store)), 2);
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
