//! A full snapshot: part 0 at the snapshot path, the rest at `{path}/parts/{i}`, held only
//! in compact bucket form while parts arrive, then published as buckets plus metadata.

use crate::config::CompiledConfig;
use crate::error::ConfigError;
use crate::live::buckets::encode_bucket;
use crate::live::builder::BucketBuilder;
use crate::live::changes::{Changed, MAX_LISTED};
use crate::live::documents::{FullSnapshotDoc, PartHead};
use crate::live::fetch::effects::{Candidates, Effect, Effects, LogLevel, TickChange};
use crate::live::fetch::{Ask, FetchMachine};
use crate::live::keyed::{check_kind, keyed_record};
use crate::live::meta::PublishedMeta;
use crate::live::subject_key::to_hex;

/// A full snapshot arriving in parts.
#[derive(Debug)]
pub(super) struct Loading {
    version: u64,
    parts: u32,
    generated_at: Option<u64>,
    etag: Option<String>,
    builder: BucketBuilder,
}

/// One part read record by record into a builder's staging area: its other fields, and
/// the first record that did not check.
struct Read {
    head: PartHead,
    first_error: Option<ConfigError>,
}

/// Reads one part into `builder`'s staging area (nothing is added until it is committed).
fn read_part(
    body: &[u8],
    config: &CompiledConfig,
    builder: &mut BucketBuilder,
) -> Result<Read, ConfigError> {
    let mut first_error = None;
    builder.discard_staged();
    let head = FullSnapshotDoc::stream(body, |i, record| {
        if first_error.is_some() {
            return;
        }
        let at = format!("snapshot.records[{i}]");
        match keyed_record(&record, &config.policy, &config.snapshot.keying, &at) {
            Ok((key, compiled)) => builder.stage(key, &compiled),
            Err(e) => first_error = Some(e),
        }
    })?;
    Ok(Read { head, first_error })
}

impl FetchMachine {
    /// Part 0 arrived (200 to the full fetch). Its records are read one at a time, so
    /// that only their compact form is ever held.
    pub(super) fn first_part(&mut self, body: &[u8], etag: Option<&str>, now_ms: u64) -> Effects {
        let mut builder = BucketBuilder::new(self.config.snapshot.bucket_bits);
        let read = match read_part(body, &self.config, &mut builder) {
            Ok(read) => read,
            Err(e) => return self.reject("snapshot", &e),
        };
        if let Some(why) = self.older_than_published(read.head.version) {
            return self.reject("snapshot", &why);
        }
        self.loading = Some(Loading {
            version: read.head.version,
            parts: read.head.parts.unwrap_or(1).max(1),
            generated_at: read.head.generated_at,
            etag: etag.map(str::to_string),
            builder,
        });
        self.add(read, 1, "snapshot", now_ms)
    }

    /// Why a full snapshot of `version` is refused as a replay, if it is: it is older than
    /// a version already published. The same version is taken (the source signs one state
    /// per version; publishing it again rewrites what a failed write may have left).
    fn older_than_published(&self, version: u64) -> Option<String> {
        (version < self.newest_version).then(|| {
            format!(
                "version {version} is older than version {} already published (a replayed or rolled-back snapshot)",
                self.newest_version
            )
        })
    }

    /// Part `part` (> 0) arrived.
    pub(super) fn next_part(&mut self, part: u32, body: &[u8], now_ms: u64) -> Effects {
        let Some(loading) = self.loading.as_mut() else {
            return Effects::none();
        };
        let read = match read_part(body, &self.config, &mut loading.builder) {
            Ok(read) => read,
            Err(e) => return self.reject("snapshot part", &e),
        };
        if read.head.version != loading.version || read.head.part.unwrap_or(0) != part {
            // The source moved on while the parts were read: start again.
            self.loading = None;
            return Effects::line(
                LogLevel::Info,
                "consent fetcher: the snapshot changed while its parts were read; starting again"
                    .to_string(),
            );
        }
        self.add(read, part + 1, "snapshot part", now_ms)
    }

    /// Adds the records of a part (staged in the builder) to the snapshot being loaded, then
    /// asks for part `next`: the part's keying is checked first, then its records in order.
    fn add(&mut self, read: Read, next: u32, what: &str, now_ms: u64) -> Effects {
        let Some(loading) = self.loading.as_mut() else {
            return Effects::none();
        };
        let checked = check_kind(
            read.head.subject_key,
            &self.config.snapshot.keying,
            "snapshot",
        )
        .and_then(|()| read.first_error.map_or(Ok(()), Err));
        if let Err(e) = checked {
            return self.reject(what, &e);
        }
        loading.builder.commit_staged();
        self.continue_loading(next, now_ms)
    }

    /// Asks for part `next`, or publishes when every part has arrived.
    fn continue_loading(&mut self, next: u32, now_ms: u64) -> Effects {
        let Some(parts) = self.loading.as_ref().map(|l| l.parts) else {
            return Effects::none();
        };
        if next < parts {
            return Effects::from(self.ask(Ask::Part(next)));
        }
        match self.loading.take() {
            Some(loading) => self.publish(loading, now_ms),
            None => Effects::none(),
        }
    }

    /// Writes every bucket of `loading`, empties the buckets it no longer fills, then the
    /// metadata.
    fn publish(&mut self, loading: Loading, now_ms: u64) -> Effects {
        let config = std::rc::Rc::clone(&self.config);
        let fp = config.policy_fingerprint;
        let users = loading.builder.len() as u64;
        let written = loading.builder.buckets();
        let Ok(encoded) = loading.builder.into_encoded(fp, loading.version) else {
            return self.reject("snapshot", &"a subject appears twice");
        };
        // Every bucket written or emptied, when few enough to list.
        let changed =
            if self.published_unknown || written.len().max(self.published.len()) > MAX_LISTED {
                Changed::All
            } else {
                Changed::Buckets(written.union(&self.published).copied().collect())
            };
        let candidates = if self.published_unknown {
            let count = 1u32 << u32::from(config.snapshot.bucket_bits.clamp(1, 24));
            Candidates::All(0..count)
        } else {
            Candidates::Published(std::mem::take(&mut self.published).into_iter())
        };
        let mut effects = Effects::none();
        effects.write_encoded(encoded, config.shared_keys.clone());
        effects.write_emptied(
            candidates,
            written.clone(),
            encode_bucket(fp, loading.version, &[]),
            config.shared_keys.clone(),
        );
        let buckets = written.len();
        self.published = written;
        let (changes, epoch, generation) = self.next_generation(changed);
        effects.push(changes);
        self.published_unknown = false;
        let meta = PublishedMeta {
            version: loading.version,
            fetched_at_ms: now_ms,
            generated_at: loading.generated_at,
            users,
            bucket_bits: config.snapshot.bucket_bits,
            fingerprint: to_hex(&fp),
            epoch,
            generation,
        };
        effects.log(
            LogLevel::Info,
            format!(
                "consent fetcher: published snapshot version {} ({} users, {} parts, {} buckets)",
                meta.version, meta.users, loading.parts, buckets
            ),
        );
        let first = self.meta.is_none();
        effects.append(self.write_meta(meta));
        self.etag = loading.etag;
        self.need_full = false;
        if first {
            effects.push(Effect::SetTick {
                period_ms: config.snapshot.refresh_ms,
                change: TickChange::Refresh,
            });
        }
        effects
    }
}
