//! The documents a consent source serves: full snapshots (whole or in parts) and deltas.
//! They share the record format of the inline `consents` configuration.

use serde::{Deserialize, Serialize};

use crate::config::parse_json_doc;
use crate::error::ConfigError;
use crate::live::records::RecordDoc;

/// How a snapshot names people, as its source declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKeyKind {
    /// Raw user IDs.
    #[default]
    Plain,
    /// Hex of the first 16 bytes of HMAC-SHA-256(shared key, user ID).
    HmacSha256,
}

/// A full snapshot as served by a consent source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FullSnapshotDoc {
    /// Snapshot version, counting up at the source.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    #[serde(default)]
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// One record per person.
    #[serde(default)]
    pub records: Vec<RecordDoc>,
    /// How many parts the snapshot of this version is split into (part 0 is the document
    /// at the snapshot path, part i is served at `{path}/parts/{i}`); 1 when absent.
    #[serde(default)]
    pub parts: Option<u32>,
    /// Which part this is (0 when absent).
    #[serde(default)]
    pub part: Option<u32>,
}

/// The changes from one snapshot version to the next.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaDoc {
    /// The version this delta applies to.
    pub from_version: u64,
    /// The version it produces.
    pub version: u64,
    /// When the source produced it (Unix seconds).
    #[serde(default)]
    pub generated_at: Option<u64>,
    /// How `subject` is written.
    #[serde(default)]
    pub subject_key: SubjectKeyKind,
    /// New or replaced records.
    #[serde(default)]
    pub upserts: Vec<RecordDoc>,
    /// Subjects whose records are gone.
    #[serde(default)]
    pub deletes: Vec<String>,
}

impl FullSnapshotDoc {
    /// Parses a snapshot (or part) served by a source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_json_doc(bytes, "snapshot")
    }
}

impl DeltaDoc {
    /// Parses a delta served by a source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        parse_json_doc(bytes, "delta")
    }
}
