//! Workers' copies of the buckets against what the fetcher publishes: a copy follows
//! publishes, deltas and confirmations by re-reading only the buckets that changed, and
//! every answer it gives is the one shared data gives.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use super::*;
use crate::decide::entry::{ConsentLookup, Found};
use crate::decide::reason::Reason;
use crate::live::changes::Changed;
use crate::live::reader::{MetaCache, SharedLookup, SharedStore, StoreUnavailable, Stored};
use crate::live::replica::{LiveLookup, Refresh, Replica};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The fetcher's shared data as a worker reads it, counting the reads by kind.
struct Shared<'a> {
    store: &'a BTreeMap<String, Vec<u8>>,
    config: &'a CompiledConfig,
    bucket_reads: Cell<usize>,
    other_reads: Cell<usize>,
    fail: bool,
}

impl<'a> Shared<'a> {
    fn of(s: &'a Sim) -> Self {
        Shared {
            store: &s.host.store,
            config: &s.config,
            bucket_reads: Cell::new(0),
            other_reads: Cell::new(0),
            fail: false,
        }
    }

    fn reads(&self) -> (usize, usize) {
        (self.bucket_reads.get(), self.other_reads.get())
    }
}

impl SharedStore for Shared<'_> {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreUnavailable> {
        if self.fail {
            return Err(StoreUnavailable);
        }
        let keys = &self.config.shared_keys;
        let counter = if key == keys.meta_key() || key == keys.changes_key() {
            &self.other_reads
        } else {
            &self.bucket_reads
        };
        counter.set(counter.get() + 1);
        Ok(self.store.get(key).map(|bytes| Stored {
            bytes: bytes.clone(),
            cas: None,
        }))
    }
}

/// One worker: its copy of the buckets.
struct Worker {
    replica: RefCell<Replica>,
    cache: MetaCache,
}

impl Worker {
    fn new(s: &Sim) -> Self {
        Worker {
            replica: RefCell::new(Replica::new(&s.config)),
            cache: MetaCache::default(),
        }
    }

    /// One tick copying up to `budget` buckets; what it did and the reads it made.
    fn tick(&self, s: &Sim, budget: usize) -> (Refresh, (usize, usize)) {
        let shared = Shared::of(s);
        let report = self
            .replica
            .borrow_mut()
            .refresh(&s.config, &shared, budget);
        (report, shared.reads())
    }

    /// What the worker decides `name` on at `s.host.now`, and the shared-data reads it made.
    fn find(&self, s: &Sim, name: &str) -> (Found<'static>, (usize, usize)) {
        let shared = Shared::of(s);
        let replica = self.replica.borrow();
        let now = s.host.now;
        let clock = move || now;
        let lookup = LiveLookup::new(&s.config, &shared, &self.cache, Some(&replica), &clock);
        let found = owned(lookup.find(Some(&format!("{SUBJECT}{name}"))));
        (found, shared.reads())
    }
}

/// What a worker without a copy decides `name` on (fresh metadata cache).
fn reference(s: &Sim, name: &str) -> Found<'static> {
    let shared = Shared::of(s);
    let cache = MetaCache::default();
    let lookup = SharedLookup::new(&s.config, &shared, &cache, s.host.now);
    owned(lookup.find(Some(&format!("{SUBJECT}{name}"))))
}

fn owned(found: Found<'_>) -> Found<'static> {
    match found {
        Found::Record(r) => Found::Record(r.map(|r| std::borrow::Cow::Owned(r.into_owned()))),
        Found::Fault(reason) => Found::Fault(reason),
    }
}

fn stop_use(found: &Found<'_>) -> Option<bool> {
    match found {
        Found::Record(r) => Some(r.as_ref().is_some_and(|r| r.stop_use)),
        Found::Fault(_) => None,
    }
}

const ALL: usize = usize::MAX;

#[test]
fn before_anything_is_published_a_worker_reads_shared_data_and_gets_the_failure_mode() {
    let s = Sim::new();
    let w = Worker::new(&s);
    let (report, _) = w.tick(&s, ALL);
    assert_eq!(report.generation, None);
    let (found, (buckets, _)) = w.find(&s, "alice");
    assert_eq!(found, Found::Fault(Reason::SnapshotUnavailable));
    assert_eq!(found, reference(&s, "alice"));
    assert_eq!(buckets, 0);
}

#[test]
fn a_copied_snapshot_answers_without_reading_shared_data() {
    let mut s = Sim::new();
    let names = ["alice", "bob", "carol", "dave", "erin"];
    s.fetch(&snapshot(1, &names));
    let w = Worker::new(&s);
    let (report, (bucket_reads, _)) = w.tick(&s, ALL);
    assert!(report.reset);
    assert_eq!(report.generation, Some(1));
    assert_eq!(report.pending, 0);
    let filled: BTreeSet<u32> = names.iter().map(|n| s.bucket_of(n)).collect();
    assert_eq!(
        bucket_reads,
        filled.len(),
        "only the buckets that hold someone"
    );
    for name in names.iter().chain(&["stranger"]) {
        let (found, reads) = w.find(&s, name);
        assert_eq!(reads, (0, 0), "{name}: no shared-data read");
        assert_eq!(found, reference(&s, name), "{name}");
    }
    assert_eq!(w.replica.borrow().version(), Some(1));
    assert_eq!(
        w.replica.borrow().distinct_records(),
        1,
        "everyone holds the same record"
    );
}

#[test]
fn a_delta_is_followed_by_copying_only_the_buckets_it_touched() {
    let mut s = Sim::new();
    let names = s.names_outside(&["newcomer"], 12);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.fetch(&snapshot(1, &names));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    s.host.now = 7_000;
    s.tick().unwrap();
    let (changed, deleted) = (names[0], names[1]);
    s.answer(
        Some(200),
        None,
        &delta(1, &[changed, "newcomer"], &[deleted]),
    );
    let touched: BTreeSet<u32> = [changed, "newcomer", deleted]
        .iter()
        .map(|n| s.bucket_of(n))
        .collect();
    let (report, (bucket_reads, other_reads)) = w.tick(&s, ALL);
    assert!(!report.reset);
    assert_eq!(report.generation, Some(2));
    assert_eq!(bucket_reads, touched.len());
    assert_eq!(other_reads, 2, "the metadata and the change record");
    assert_eq!(stop_use(&w.find(&s, changed).0), Some(true));
    assert_eq!(stop_use(&w.find(&s, "newcomer").0), Some(true));
    assert_eq!(w.find(&s, deleted).0, Found::Record(None));
    for name in names.iter().chain(&["newcomer", "stranger"]) {
        assert_eq!(w.find(&s, name), (reference(&s, name), (0, 0)), "{name}");
    }
}

#[test]
fn a_confirmation_moves_the_copy_on_without_reading_any_bucket() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    s.host.now = 4_000;
    s.tick().unwrap();
    s.answer(Some(404), None, "");
    let (report, reads) = w.tick(&s, ALL);
    assert_eq!(report.generation, Some(1));
    assert_eq!(reads, (0, 1), "only the metadata");
    // Within the bound of the confirmation, the copy answers.
    s.host.now = 4_000 + 5_000;
    assert_eq!(w.find(&s, "alice").1, (0, 0));
}

#[test]
fn a_copy_confirmed_longer_ago_than_the_bound_is_not_decided_on() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    // The source stops answering: nothing confirms the snapshot any more.
    s.host.now = 5_000;
    assert_eq!(w.find(&s, "alice").1, (0, 0), "at the bound");
    s.host.now = 5_001;
    let (found, (_, meta_reads)) = w.find(&s, "alice");
    assert_eq!(found, Found::Fault(Reason::SnapshotStale));
    assert_eq!(found, reference(&s, "alice"));
    assert_eq!(
        meta_reads, 1,
        "judged on the published metadata, as without a copy"
    );
    // A worker whose tick did not come in time still decides on fresher metadata (read
    // again after META_RECHECK_MS, as without a copy).
    s.tick().unwrap();
    s.answer(Some(404), None, "");
    s.host.now += crate::live::reader::META_RECHECK_MS;
    let (found, (buckets, _)) = w.find(&s, "alice");
    assert_eq!(found, reference(&s, "alice"));
    assert!(stop_use(&found).is_some());
    assert_eq!(buckets, 1, "read from shared data until the copy follows");
    w.tick(&s, ALL);
    assert_eq!(w.find(&s, "alice").1, (0, 0));
}

#[test]
fn buckets_not_copied_yet_are_read_from_shared_data() {
    let mut s = Sim::new();
    let names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    s.fetch(&snapshot(1, &names));
    let w = Worker::new(&s);
    let (report, (bucket_reads, _)) = w.tick(&s, 2);
    assert_eq!(bucket_reads, 2);
    assert!(report.pending > 0);
    let mut from_shared = 0;
    for name in names {
        let (found, (buckets, meta)) = w.find(&s, name);
        assert_eq!(found, reference(&s, name), "{name}");
        assert_eq!(meta, 0, "the copy's metadata is fresh");
        from_shared += buckets;
    }
    assert!(from_shared > 0);
    while w.tick(&s, 2).0.pending > 0 {}
    for name in names {
        assert_eq!(w.find(&s, name).1, (0, 0), "{name}");
    }
}

#[test]
fn another_fetcher_or_a_gap_makes_the_copy_start_again() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice", "bob"]));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    // The fetcher restarts (another VM, a reload): a new epoch.
    let mut other = FetchMachine::new(Rc::clone(&s.config), true, EPOCH * 3);
    assert!(other.run(other.start(), &mut s.host));
    let effects = other.on_tick(s.host.now);
    other.run(effects, &mut s.host);
    let (token, _) = s.host.calls.last().cloned().unwrap();
    let body = snapshot(5, &["bob", "carol"]);
    let response = Response {
        status: Some(200),
        etag: None,
        signature: None,
        body: body.as_bytes(),
    };
    let effects = other.on_response(token, response, s.host.now);
    other.run(effects, &mut s.host);
    let (report, _) = w.tick(&s, ALL);
    assert!(report.reset);
    for name in ["alice", "bob", "carol"] {
        assert_eq!(w.find(&s, name), (reference(&s, name), (0, 0)), "{name}");
    }
    assert_eq!(w.replica.borrow().version(), Some(5));
}

#[test]
fn a_worker_that_missed_more_generations_than_the_record_keeps_copies_everything() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    for v in 1..70u64 {
        s.host.now += 1_000;
        s.tick().unwrap();
        s.answer(Some(200), None, &delta(v, &["alice"], &[]));
    }
    let (report, _) = w.tick(&s, ALL);
    assert!(
        report.reset,
        "the record no longer reaches back to generation 1"
    );
    assert_eq!(w.find(&s, "alice"), (reference(&s, "alice"), (0, 0)));
}

#[test]
fn a_copy_follows_only_generations_the_metadata_names() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    // The fetcher is between the change record and the metadata of generation 2.
    let mut changes = s.changes().unwrap();
    let filled: BTreeSet<u32> = [s.bucket_of("alice")].into();
    changes.record(Changed::Buckets(vec![s.bucket_of("alice")]), &filled);
    let key = s.config.shared_keys.changes_key().to_string();
    s.host.store.insert(key, changes.encode());
    let (report, (buckets, _)) = w.tick(&s, ALL);
    assert_eq!(
        (report.generation, report.invalidated, buckets),
        (Some(1), 0, 0)
    );
}

#[test]
fn a_bucket_that_does_not_decode_is_read_from_shared_data_and_fails_there() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice", "bob"]));
    let bucket = s.bucket_of("alice");
    s.host.store.insert(
        s.config.shared_keys.bucket(bucket),
        b"CB2\0garbage".to_vec(),
    );
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    let (found, (buckets, _)) = w.find(&s, "alice");
    assert_eq!(found, Found::Fault(Reason::SnapshotUnavailable));
    assert_eq!(found, reference(&s, "alice"));
    assert_eq!(buckets, 1);
    let (_, (again, _)) = w.tick(&s, ALL);
    assert_eq!(again, 0, "not copied again until it changes");
}

#[test]
fn a_worker_that_cannot_read_shared_data_keeps_its_copy_until_the_bound() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    let w = Worker::new(&s);
    w.tick(&s, ALL);
    let mut shared = Shared::of(&s);
    shared.fail = true;
    let report = w.replica.borrow_mut().refresh(&s.config, &shared, ALL);
    assert_eq!(report.generation, Some(1));
    assert_eq!(w.find(&s, "alice"), (reference(&s, "alice"), (0, 0)));
}

/// A small deterministic generator (xorshift), for the random walk below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn after_every_tick_a_copy_answers_as_shared_data_does() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let pool: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let mut s = if seed % 2 == 0 {
            Sim::new()
        } else {
            Sim::with(config_without_deltas(), Host::default())
        };
        let workers = [Worker::new(&s), Worker::new(&s)];
        let mut version = 0;
        let mut from_copy = 0;
        for step in 0..60 {
            s.host.now += rng.below(1_500);
            match rng.below(4) {
                0 | 1 if s.machine.next_request().is_some() => {
                    let call = s.tick().unwrap();
                    if call.path.starts_with("/deltas/") && rng.below(3) > 0 {
                        let upserts: Vec<&str> = (0..rng.below(4))
                            .map(|_| pool[rng.below(40) as usize].as_str())
                            .collect();
                        let deletes: Vec<&str> = (0..rng.below(3))
                            .map(|_| pool[rng.below(40) as usize].as_str())
                            .filter(|d| !upserts.contains(d))
                            .collect();
                        s.answer(Some(200), None, &delta(version, &upserts, &deletes));
                        version += 1;
                    } else if call.path.starts_with("/deltas/") {
                        s.answer(Some(404), None, "");
                    } else {
                        version += 1;
                        let names: Vec<&str> = pool
                            .iter()
                            .filter(|_| rng.below(2) == 0)
                            .map(String::as_str)
                            .collect();
                        s.answer(Some(200), None, &snapshot(version, &names));
                    }
                }
                2 => {
                    let w = &workers[rng.below(2) as usize];
                    w.tick(&s, rng.below(6) as usize);
                }
                _ => {}
            }
            for (i, w) in workers.iter().enumerate() {
                for name in pool.iter().take(12) {
                    let (found, _) = w.find(&s, name);
                    let expected = reference(&s, name);
                    // A copy behind the published generation may answer for the one it
                    // follows, but never past the bound, and never when shared data
                    // would fail.
                    if found != expected {
                        assert!(
                            matches!(expected, Found::Record(_)),
                            "seed {seed} step {step} worker {i} {name}: {found:?} / {expected:?}"
                        );
                        assert!(matches!(found, Found::Record(_)));
                        assert_ne!(
                            w.replica.borrow().version(),
                            s.meta().map(|m| m.version),
                            "seed {seed} step {step} worker {i} {name}: only a copy behind differs"
                        );
                    }
                }
            }
            // Right after a full tick, the copy answers exactly as shared data does.
            let w = &workers[0];
            w.tick(&s, ALL);
            for name in &pool {
                let (found, reads) = w.find(&s, name);
                assert_eq!(found, reference(&s, name), "seed {seed} step {step} {name}");
                if reads == (0, 0) {
                    from_copy += 1;
                }
            }
        }
        assert!(
            from_copy > 1_000,
            "seed {seed}: {from_copy} answers from the copy"
        );
    }
}

#[test]
fn every_publish_names_its_generation_and_what_it_changed() {
    let mut s = Sim::new();
    let names = s.names_outside(&["newcomer"], 6);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.fetch(&snapshot(1, &names));
    let meta = s.meta().unwrap();
    assert_eq!((meta.epoch, meta.generation), (EPOCH, 1));
    let changes = s.changes().unwrap();
    assert_eq!((changes.epoch, changes.generation), (EPOCH, 1));
    assert_eq!(
        changes.changed_between(0, 1),
        None,
        "a first publish changes everything"
    );
    for b in 0..16 {
        let holds = names.iter().any(|n| s.bucket_of(n) == b);
        assert_eq!(changes.may_hold(b), holds, "bucket {b}");
    }
    // A confirmation writes only the metadata, with the same generation.
    s.take_writes();
    s.host.now = 2_000;
    s.tick().unwrap();
    s.answer(Some(404), None, "");
    assert!(s.only_meta_written());
    assert_eq!(s.meta().unwrap().generation, 1);
    // A delta: generation 2, its buckets.
    s.tick().unwrap();
    s.answer(Some(200), None, &delta(1, &["newcomer"], &[names[0]]));
    let changes = s.changes().unwrap();
    assert_eq!(s.meta().unwrap().generation, 2);
    let touched: BTreeSet<u32> = [s.bucket_of("newcomer"), s.bucket_of(names[0])].into();
    assert_eq!(changes.changed_between(1, 2), Some(touched));
    assert!(changes.may_hold(s.bucket_of("newcomer")));
}

#[test]
fn a_full_republish_names_the_buckets_it_wrote_or_emptied() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    s.fetch(&snapshot(1, &["alice", "bob"]));
    s.tick().unwrap();
    s.answer(Some(200), None, &snapshot(2, &["bob", "carol"]));
    let changed: BTreeSet<u32> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| s.bucket_of(n))
        .collect();
    let changes = s.changes().unwrap();
    assert_eq!(changes.changed_between(1, 2), Some(changed));
    assert_eq!(s.meta().unwrap().generation, 2);
}

#[test]
fn after_a_failed_write_the_next_publish_starts_a_new_epoch() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    s.fetch(&snapshot(1, &["alice"]));
    s.host.writes_before_failure = Some(0);
    s.tick().unwrap();
    s.answer(Some(200), None, &snapshot(2, &["alice", "bob"]));
    assert_eq!(
        s.meta().unwrap().epoch,
        EPOCH,
        "the metadata was not rewritten"
    );
    s.tick().unwrap();
    s.answer(Some(200), None, &snapshot(2, &["alice", "bob"]));
    let meta = s.meta().unwrap();
    assert_eq!((meta.epoch, meta.generation), (EPOCH + 1, 1));
    assert_eq!(s.changes().unwrap().epoch, EPOCH + 1);
}
