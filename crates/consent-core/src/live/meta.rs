//! The small metadata record the fetcher publishes next to the buckets: which version,
//! when it was last confirmed with the source, which policy the buckets were built for,
//! and which publish of which epoch they are (for the workers' copies).

use serde::{Deserialize, Serialize};

/// What the fetcher publishes next to the buckets, read by every worker each tick (small).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedMeta {
    /// Snapshot version.
    pub version: u64,
    /// When the fetcher last confirmed this version with the source (Unix ms).
    pub fetched_at_ms: u64,
    /// When the source produced it (Unix seconds), if it said.
    pub generated_at: Option<u64>,
    /// People in the snapshot.
    pub users: u64,
    /// Bucket bits used.
    pub bucket_bits: u8,
    /// Hex of the policy fingerprint the buckets were built against.
    pub fingerprint: String,
    /// The fetcher's publishing epoch (see `live::changes`): a new one whenever it starts
    /// without knowing what shared data holds.
    #[serde(default)]
    pub epoch: u64,
    /// The publish of the epoch these buckets are (1, 2, ...); a confirmation keeps it.
    #[serde(default)]
    pub generation: u64,
}

impl PublishedMeta {
    /// The metadata as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads metadata; `None` when it is not metadata of this format.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
