//! A delta: checked against the policy, then applied to the published bytes of the buckets
//! it touches (which the host reads for it), so the fetcher never holds a copy of the
//! snapshot. A delta that does not apply makes the next fetch a full one.

use std::collections::BTreeMap;

use crate::live::changes::Changed;
use crate::live::delta::KeyedDelta;
use crate::live::documents::DeltaDoc;
use crate::live::fetch::driver::HostFailure;
use crate::live::fetch::effects::{bucket_write, BucketRead, Effect, Effects, LogLevel};
use crate::live::fetch::FetchMachine;
use crate::live::meta::PublishedMeta;
use crate::live::subject_key::to_hex;

/// What the host read for a delta: per bucket, its published bytes (`None`: it holds
/// nobody) or why it could not be read.
pub type BucketsRead = Vec<(u32, Result<Option<Vec<u8>>, HostFailure>)>;

impl FetchMachine {
    /// A delta arrived (200 to the delta fetch): check it, then ask for its buckets.
    pub(super) fn delta_arrived(&mut self, body: &[u8]) -> Effects {
        let Some(meta) = &self.meta else {
            self.need_full = true;
            return Effects::none();
        };
        let doc = match DeltaDoc::from_json(body) {
            Ok(d) => d,
            Err(e) => {
                self.need_full = true;
                return self.reject("delta", &e);
            }
        };
        if doc.from_version != meta.version {
            self.need_full = true;
            return Effects::line(
                LogLevel::Info,
                format!(
                    "consent fetcher: delta starts at version {}, published is {}; fetching the full snapshot next",
                    doc.from_version, meta.version
                ),
            );
        }
        let s = &self.config.snapshot;
        let delta = match KeyedDelta::compile(&doc, &self.config.policy, &s.keying, s.bucket_bits) {
            Ok(d) => d,
            Err(e) => {
                self.need_full = true;
                return self.reject("delta", &e);
            }
        };
        let reads = delta
            .buckets()
            .into_iter()
            .map(|bucket| BucketRead {
                bucket,
                key: self.config.shared_keys.bucket(bucket),
            })
            .collect();
        self.delta = Some(delta);
        Effects::from(Effect::ReadBuckets(reads))
    }

    /// The published bytes of the buckets the waiting delta touches (after
    /// [`Effect::ReadBuckets`]), read at `now_ms`: the delta's bucket writes and metadata.
    pub fn on_buckets_read(&mut self, read: BucketsRead, now_ms: u64) -> Effects {
        self.settle();
        let Some(delta) = self.delta.take() else {
            return Effects::none();
        };
        let Some(meta) = self.meta.clone() else {
            self.need_full = true;
            return Effects::none();
        };
        let fp = self.config.policy_fingerprint;
        let mut read: BTreeMap<u32, Result<Option<Vec<u8>>, HostFailure>> =
            read.into_iter().collect();
        let mut users = meta.users as i64;
        let mut rewritten = Vec::new();
        for bucket in delta.buckets() {
            let current = match read.remove(&bucket) {
                Some(Ok(bytes)) => bytes,
                Some(Err(status)) => {
                    return self.store_failed(format!(
                        "consent fetcher: cannot read bucket {bucket}: {status}"
                    ))
                }
                None => {
                    return self.store_failed(format!(
                        "consent fetcher: cannot read bucket {bucket}: it was not read"
                    ))
                }
            };
            match delta.apply_to_bucket(bucket, current.as_deref(), fp) {
                Ok((bytes, change)) => {
                    users += change;
                    rewritten.push((bucket, bytes));
                }
                Err(e) => {
                    self.need_full = true;
                    return Effects::line(
                        LogLevel::Error,
                        format!(
                            "consent fetcher: bucket {bucket}: {e}; fetching the full snapshot next"
                        ),
                    );
                }
            }
        }
        let mut effects = Effects::none();
        let buckets = rewritten.len();
        let changed: Vec<u32> = rewritten.iter().map(|(bucket, _)| *bucket).collect();
        for (bucket, bytes) in rewritten {
            effects.push(bucket_write(&self.config.shared_keys, bucket, bytes));
            self.published.insert(bucket);
        }
        let (changes, epoch, generation) = self.next_generation(Changed::Buckets(changed));
        effects.push(changes);
        let meta = PublishedMeta {
            version: delta.version,
            fetched_at_ms: now_ms,
            generated_at: delta.generated_at.or(meta.generated_at),
            users: u64::try_from(users).unwrap_or(0),
            bucket_bits: self.config.snapshot.bucket_bits,
            fingerprint: to_hex(&fp),
            epoch,
            generation,
        };
        effects.log(
            LogLevel::Info,
            format!(
                "consent fetcher: applied delta to version {} ({} changes, {} buckets)",
                meta.version,
                delta.len(),
                buckets
            ),
        );
        effects.append(self.write_meta(meta));
        effects
    }
}
