//! What the fetch machine asks its host to do: calls to the consent source, shared-data
//! writes and reads, stats, the tick period and log lines. Bucket writes of a full publish
//! are produced lazily, one bucket at a time, so that a publisher never holds the whole
//! encoded snapshot at once.

use std::collections::{btree_set, BTreeSet, VecDeque};
use std::ops::Range;

use crate::live::builder::EncodedBuckets;
use crate::live::shared_keys::SharedKeys;

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Normal progress.
    Info,
    /// Something went wrong; the last good snapshot stays.
    Warn,
    /// The host refused something.
    Error,
}

/// A log line for the host. It carries versions, counts, bucket numbers, statuses and
/// reasons, never a subject, a record or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// How loud.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// A gauge of the published snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gauge {
    /// `consent_snapshot_version`.
    Version,
    /// `consent_snapshot_users`.
    Users,
    /// `consent_snapshot_age_ms`: since the source last confirmed the snapshot.
    AgeMs,
}

impl Gauge {
    /// The stat's name.
    pub fn name(self) -> &'static str {
        match self {
            Gauge::Version => "consent_snapshot_version",
            Gauge::Users => "consent_snapshot_users",
            Gauge::AgeMs => "consent_snapshot_age_ms",
        }
    }
}

/// A counter of the fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// `consent_snapshot_fetch_failures`: the source could not be asked or did not answer
    /// as expected.
    FetchFailures,
    /// `consent_snapshot_rejected`: a snapshot, part or delta did not check (a bad
    /// signature included).
    Rejected,
    /// `consent_snapshot_signature_rejected`: of those, the ones whose signature was
    /// missing, malformed, made with another key or did not match.
    SignatureRejected,
}

impl Counter {
    /// The stat's name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::FetchFailures => "consent_snapshot_fetch_failures",
            Counter::Rejected => "consent_snapshot_rejected",
            Counter::SignatureRejected => "consent_snapshot_signature_rejected",
        }
    }
}

/// What a shared-data write holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A bucket.
    Bucket(u32),
    /// Which buckets the last publishes changed.
    Changes,
    /// The metadata record.
    Meta,
}

/// Why the tick period changes (a failure is logged per reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickChange {
    /// The fast first ticks, until a snapshot is published.
    First,
    /// The refresh period, once a snapshot is published.
    Refresh,
    /// A slower tick for a worker that does not hold the lease.
    Slow,
}

/// One bucket whose published bytes a delta needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRead {
    /// The bucket.
    pub bucket: u32,
    /// Its shared-data key.
    pub key: String,
}

/// A GET to the consent source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// Envoy cluster of the source.
    pub cluster: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// The ETag of the published full snapshot, for a conditional fetch.
    pub if_none_match: Option<String>,
    /// How long the call may take.
    pub timeout_ms: u64,
}

impl FetchRequest {
    /// The request headers, in the order they are sent.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            (":method", "GET"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(etag) = &self.if_none_match {
            headers.push(("if-none-match", etag.as_str()));
        }
        headers
    }
}

/// One thing for the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Call the source; report the call's token with `FetchMachine::sent`.
    Fetch(FetchRequest),
    /// Write `bytes` under `key` in shared data.
    Write {
        /// What is written.
        slot: Slot,
        /// Shared-data key.
        key: String,
        /// The value.
        bytes: Vec<u8>,
    },
    /// Read these buckets and hand what was read to `FetchMachine::on_buckets_read`.
    ReadBuckets(Vec<BucketRead>),
    /// Set a gauge.
    SetGauge(Gauge, u64),
    /// Add one to a counter.
    Count(Counter),
    /// Set the tick period.
    SetTick {
        /// The period.
        period_ms: u64,
        /// Why.
        change: TickChange,
    },
    /// Write a log line.
    Log(LogLine),
}

/// The buckets a full publish empties: every candidate it does not write.
#[derive(Debug)]
pub(crate) enum Candidates {
    /// Every bucket of the layout (what is published is not known).
    All(Range<u32>),
    /// The buckets this fetcher published before.
    Published(btree_set::IntoIter<u32>),
}

impl Iterator for Candidates {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match self {
            Candidates::All(range) => range.next(),
            Candidates::Published(buckets) => buckets.next(),
        }
    }
}

/// A run of effects that is produced as it is taken.
#[derive(Debug)]
enum Segment {
    One(Option<Effect>),
    Encoded {
        buckets: EncodedBuckets,
        keys: SharedKeys,
    },
    Emptied {
        candidates: Candidates,
        written: BTreeSet<u32>,
        empty: Vec<u8>,
        keys: SharedKeys,
    },
}

impl Segment {
    fn next(&mut self) -> Option<Effect> {
        match self {
            Segment::One(effect) => effect.take(),
            Segment::Encoded { buckets, keys } => {
                let (bucket, bytes) = buckets.next()?;
                Some(bucket_write(keys, bucket, bytes))
            }
            Segment::Emptied {
                candidates,
                written,
                empty,
                keys,
            } => {
                let bucket = candidates.find(|b| !written.contains(b))?;
                Some(bucket_write(keys, bucket, empty.clone()))
            }
        }
    }
}

/// The write of one bucket.
pub(crate) fn bucket_write(keys: &SharedKeys, bucket: u32, bytes: Vec<u8>) -> Effect {
    Effect::Write {
        slot: Slot::Bucket(bucket),
        key: keys.bucket(bucket),
        bytes,
    }
}

/// Effects in the order the host carries them out. The host stops at the first one that
/// fails and reports it with `FetchMachine::failed`; the rest are dropped.
#[derive(Debug, Default)]
pub struct Effects {
    segments: VecDeque<Segment>,
}

impl Effects {
    /// Nothing to do.
    pub fn none() -> Self {
        Effects::default()
    }

    pub(crate) fn push(&mut self, effect: Effect) {
        self.segments.push_back(Segment::One(Some(effect)));
    }

    /// Just a log line.
    pub(crate) fn line(level: LogLevel, message: String) -> Self {
        Effects::from(Effect::Log(LogLine { level, message }))
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.push(Effect::Log(LogLine { level, message }));
    }

    pub(crate) fn append(&mut self, mut other: Effects) {
        self.segments.append(&mut other.segments);
    }

    /// Writes every bucket of a finished builder.
    pub(crate) fn write_encoded(&mut self, buckets: EncodedBuckets, keys: SharedKeys) {
        self.segments.push_back(Segment::Encoded { buckets, keys });
    }

    /// Writes `empty` to every candidate bucket not in `written`.
    pub(crate) fn write_emptied(
        &mut self,
        candidates: Candidates,
        written: BTreeSet<u32>,
        empty: Vec<u8>,
        keys: SharedKeys,
    ) {
        self.segments.push_back(Segment::Emptied {
            candidates,
            written,
            empty,
            keys,
        });
    }
}

impl From<Effect> for Effects {
    fn from(effect: Effect) -> Self {
        let mut effects = Effects::none();
        effects.push(effect);
        effects
    }
}

impl Iterator for Effects {
    type Item = Effect;

    fn next(&mut self) -> Option<Effect> {
        loop {
            if let Some(effect) = self.segments.front_mut()?.next() {
                return Some(effect);
            }
            self.segments.pop_front();
        }
    }
}
