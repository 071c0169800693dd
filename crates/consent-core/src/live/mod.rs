//! The live consent snapshot: the documents a consent source serves, the records they
//! hold, how subjects are keyed, the compact bucket format and its builder, one checked
//! delta, the published metadata and change record, the reader that finds a person's
//! record in shared data, each worker's copy of the buckets, where it all lives in shared
//! data, the fetch protocol (a state machine without I/O), the fetcher lease, the root
//! context's ticks, and the `snapshot` settings.

pub(crate) mod buckets;
pub(crate) mod builder;
pub(crate) mod changes;
pub(crate) mod delta;
pub(crate) mod documents;
pub(crate) mod fetch;
pub(crate) mod interner;
pub(crate) mod keyed;
pub(crate) mod lease;
pub(crate) mod meta;
pub(crate) mod reader;
pub(crate) mod records;
pub(crate) mod replica;
pub(crate) mod settings;
pub(crate) mod shared_keys;
pub(crate) mod signature;
pub(crate) mod subject_key;
pub(crate) mod ticks;

#[cfg(any(test, feature = "reference"))]
pub use buckets::encode_buckets;
pub use buckets::{
    bucket_of, bucket_version, decode_bucket, encode_bucket, find_in_bucket, fingerprint,
    BucketError,
};
pub use builder::{BucketBuilder, EncodedBuckets};
pub use changes::{ChangeLog, Changed};
pub use delta::{DeltaError, KeyedDelta};
pub use documents::{DeltaDoc, FullSnapshotDoc, PartHead, SubjectKeyKind};
pub use fetch::{
    BucketRead, BucketsRead, Counter, Effect, Effects, FetchHost, FetchMachine, FetchRequest,
    Gauge, HostFailure, LogLevel, LogLine, Response, Slot, TickChange, FIRST_TICK_MS,
};
pub use keyed::{add_part, KeyedLookup, KeyedSnapshot};
pub use lease::{claim, next_holder_id, Lease, LEASE_SEQ_KEY};
pub use meta::PublishedMeta;
pub use reader::{
    MetaCache, ReadProblem, SharedLookup, SharedStore, StoreUnavailable, Stored, META_RECHECK_MS,
};
pub use records::{ConsentIndex, ConsentRecord, Grant, GrantDoc, RecordDoc, SnapshotDoc};
pub use replica::{LiveLookup, Refresh, Replica, FILL_PER_TICK, REPLICA_TICK_MS};
pub use settings::{
    FailureMode, FetcherMode, SnapshotSettings, SnapshotSettingsDoc, SnapshotSource, MIN_KEY_BYTES,
};
pub use shared_keys::{SharedKeys, INLINE_KEY_BYTES};
pub use signature::{
    header_text, header_value, SignatureError, Trust, TrustedKey, SIGNATURE_HEADER,
    SIGNATURE_SUFFIX,
};
pub use subject_key::{to_hex, SubjectKey, SubjectKeying};
pub use ticks::{Due, Ticks};
