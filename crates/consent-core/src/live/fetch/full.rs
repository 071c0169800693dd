//! A full snapshot: part 0 at the snapshot path, the rest at `{path}/parts/{i}`, held only
//! in compact bucket form while parts arrive, then published as buckets plus metadata.

use crate::live::buckets::encode_bucket;
use crate::live::builder::BucketBuilder;
use crate::live::documents::FullSnapshotDoc;
use crate::live::fetch::effects::{Candidates, Effect, Effects, LogLevel, TickChange};
use crate::live::fetch::{Ask, FetchMachine};
use crate::live::keyed::add_part;
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

impl FetchMachine {
    /// Part 0 arrived (200 to the full fetch).
    pub(super) fn first_part(&mut self, body: &[u8], etag: Option<&str>, now_ms: u64) -> Effects {
        let doc = match FullSnapshotDoc::from_json(body) {
            Ok(doc) => doc,
            Err(e) => return self.reject("snapshot", &e),
        };
        if let Some(why) = self.older_than_published(doc.version) {
            return self.reject("snapshot", &why);
        }
        self.loading = Some(Loading {
            version: doc.version,
            parts: doc.parts.unwrap_or(1).max(1),
            generated_at: doc.generated_at,
            etag: etag.map(str::to_string),
            builder: BucketBuilder::new(self.config.snapshot.bucket_bits),
        });
        self.add(doc, 1, "snapshot", now_ms)
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
        if self.loading.is_none() {
            return Effects::none();
        }
        let doc = match FullSnapshotDoc::from_json(body) {
            Ok(doc) => doc,
            Err(e) => return self.reject("snapshot part", &e),
        };
        let Some(loading) = &self.loading else {
            return Effects::none();
        };
        if doc.version != loading.version || doc.part.unwrap_or(0) != part {
            // The source moved on while the parts were read: start again.
            self.loading = None;
            return Effects::line(
                LogLevel::Info,
                "consent fetcher: the snapshot changed while its parts were read; starting again"
                    .to_string(),
            );
        }
        self.add(doc, part + 1, "snapshot part", now_ms)
    }

    /// Adds the records of a part to the snapshot being loaded, then asks for part `next`.
    fn add(&mut self, doc: FullSnapshotDoc, next: u32, what: &str, now_ms: u64) -> Effects {
        let Some(loading) = self.loading.as_mut() else {
            return Effects::none();
        };
        let s = &self.config.snapshot;
        if let Err(e) = add_part(&doc, &self.config.policy, &s.keying, &mut loading.builder) {
            return self.reject(what, &e);
        }
        drop(doc);
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
        self.published_unknown = false;
        let meta = PublishedMeta {
            version: loading.version,
            fetched_at_ms: now_ms,
            generated_at: loading.generated_at,
            users,
            bucket_bits: config.snapshot.bucket_bits,
            fingerprint: to_hex(&fp),
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
