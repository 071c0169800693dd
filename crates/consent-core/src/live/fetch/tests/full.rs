//! Full snapshots: whole, conditional, in parts, rejected, and what a publish empties.

use super::*;
use crate::live::fetch::FIRST_TICK_MS;
use crate::live::subject_key::to_hex;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn the_first_full_snapshot_publishes_buckets_and_meta_and_switches_to_the_refresh_period() {
    let mut s = Sim::new();
    assert_eq!(s.host.tick_ms, Some(FIRST_TICK_MS));
    s.host.now = 50_000;
    let call = s.tick().unwrap();
    assert_eq!(
        (
            call.cluster.as_str(),
            call.timeout_ms,
            call.if_none_match.as_deref()
        ),
        ("consent", 2_000, None)
    );
    assert_eq!(
        call.headers(),
        vec![
            (":method", "GET"),
            (":path", "/snapshot"),
            (":authority", "consent"),
            ("accept", "application/json"),
        ]
    );
    assert_eq!(s.tick(), None, "one call at a time");
    assert_eq!(s.meta(), None);
    s.answer(Some(200), Some("\"v1\""), &snapshot(1, &["alice", "bob"]));
    assert!(s.record("alice").is_some() && s.record("bob").is_some());
    assert_eq!(s.record("carol"), None);
    assert_eq!(
        s.meta(),
        Some(PublishedMeta {
            version: 1,
            fetched_at_ms: 50_000,
            generated_at: None,
            users: 2,
            bucket_bits: 4,
            fingerprint: to_hex(&s.config.policy_fingerprint),
            epoch: EPOCH,
            generation: 1,
        })
    );
    assert_eq!(
        s.host.gauges,
        BTreeMap::from([(Gauge::Version, 1), (Gauge::Users, 2), (Gauge::AgeMs, 0)])
    );
    assert_eq!(s.host.tick_ms, Some(REFRESH_MS));
    assert!(s.logged("published snapshot version 1 (2 users, 1 parts, "));
}

#[test]
fn a_304_confirms_the_snapshot_without_rewriting_it() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    s.tick().unwrap();
    s.answer(Some(200), Some("\"v1\""), &snapshot(1, &["alice"]));
    s.take_writes();
    s.host.now = 9_000;
    let call = s.tick().unwrap();
    assert_eq!(call.path, "/snapshot");
    assert!(call.headers().contains(&("if-none-match", "\"v1\"")));
    s.answer(Some(304), None, "");
    assert!(s.only_meta_written());
    let meta = s.meta().unwrap();
    assert_eq!((meta.version, meta.fetched_at_ms), (1, 9_000));
    assert!(s.record("alice").is_some());
    s.host.now = 9_400;
    s.tick().unwrap();
    assert_eq!(
        s.host.gauges.get(&Gauge::AgeMs),
        Some(&400),
        "age since the 304"
    );
}

#[test]
fn a_snapshot_in_three_parts_is_loaded_whole() {
    let mut s = Sim::new();
    s.tick().unwrap();
    let next = s
        .answer(Some(200), Some("\"v5\""), &first_part(5, 3, &["alice"]))
        .unwrap();
    assert_eq!(asks(&next), ("/snapshot/parts/1", None));
    assert_eq!(s.meta(), None, "nothing is published before the last part");
    let next = s.answer(Some(200), None, &part(5, 1, &["bob"])).unwrap();
    assert_eq!(next.path, "/snapshot/parts/2");
    assert_eq!(s.answer(Some(200), None, &part(5, 2, &["carol"])), None);
    for name in ["alice", "bob", "carol"] {
        assert!(s.record(name).is_some(), "{name}");
    }
    assert_eq!(s.people(), 3);
    let meta = s.meta().unwrap();
    assert_eq!((meta.version, meta.users), (5, 3));
    assert!(s.logged("(3 users, 3 parts, "));
    assert_eq!(s.tick().unwrap().path, "/deltas/5");
}

#[test]
fn the_version_changing_between_parts_starts_again() {
    let mut s = Sim::new();
    s.tick().unwrap();
    s.answer(Some(200), None, &first_part(5, 2, &["alice"]))
        .unwrap();
    let moved_on = part(6, 1, &["bob"]);
    assert_eq!(s.answer(Some(200), None, &moved_on), None);
    assert_eq!(s.meta(), None);
    assert!(s.logged("the snapshot changed while its parts were read; starting again"));
    assert_eq!(s.counter(Counter::Rejected), 0);
    assert_eq!(s.tick().unwrap().path, "/snapshot");
    let part0 = first_part(6, 2, &["alice"]);
    s.answer(Some(200), None, &part0).unwrap();
    assert_eq!(
        s.answer(Some(200), None, &part(6, 2, &[])),
        None,
        "not the part asked for"
    );
    assert_eq!(s.meta(), None);
    assert_eq!(s.tick().unwrap().path, "/snapshot");
    s.answer(Some(200), None, &part0).unwrap();
    assert_eq!(s.answer(Some(200), None, &moved_on), None);
    assert_eq!(s.meta().map(|m| m.version), Some(6));
    assert!(s.record("alice").is_some() && s.record("bob").is_some());
}

#[test]
fn an_invalid_snapshot_or_part_is_rejected_and_the_last_good_one_kept() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    s.fetch(&snapshot(1, &["alice"]));
    s.tick().unwrap();
    s.answer(Some(200), None, "{\"version\": 2, \"records\": [");
    assert_eq!(s.counter(Counter::Rejected), 1);
    assert!(s.logged("snapshot rejected: "));
    s.tick().unwrap();
    s.answer(Some(200), None, &first_part(2, 2, &["bob"]))
        .unwrap();
    let other_keying = r#"{"version": 2, "part": 1, "subject_key": "hmac_sha256", "records": []}"#;
    assert_eq!(s.answer(Some(200), None, other_keying), None);
    assert_eq!(s.counter(Counter::Rejected), 2);
    assert!(s.logged("snapshot part rejected: "));
    assert_eq!(s.meta().map(|m| m.version), Some(1));
    assert!(s.record("alice").is_some());
    assert_eq!(s.record("bob"), None);
    assert_eq!(s.counter(Counter::FetchFailures), 0);
}

#[test]
fn a_subject_appearing_twice_rejects_the_snapshot() {
    let mut s = Sim::new();
    s.tick().unwrap();
    s.answer(Some(200), None, &snapshot(1, &["alice", "bob", "alice"]));
    assert_eq!(s.counter(Counter::Rejected), 1);
    assert!(s.logged("snapshot rejected: a subject appears twice"));
    assert_eq!(s.take_writes(), Vec::<String>::new());
    // Also when the two are in different parts.
    s.tick().unwrap();
    s.answer(Some(200), None, &first_part(1, 2, &["alice"]))
        .unwrap();
    assert_eq!(s.answer(Some(200), None, &part(1, 1, &["alice"])), None);
    assert_eq!(s.counter(Counter::Rejected), 2);
    assert_eq!(s.meta(), None);
    assert_eq!(s.host.tick_ms, Some(FIRST_TICK_MS));
}

#[test]
fn a_full_publish_empties_the_buckets_it_no_longer_writes() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    let others = s.names_outside(&["bob"], 3);
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let mut with_bob = others.clone();
    with_bob.push("bob");
    s.tick().unwrap();
    s.answer(Some(200), Some("\"v1\""), &snapshot(1, &with_bob));
    assert!(s.record("bob").is_some());
    s.take_writes();
    s.tick().unwrap();
    s.answer(Some(200), Some("\"v2\""), &snapshot(2, &others));
    assert_eq!(s.record("bob"), None, "the deleted person's record is gone");
    assert!(others.iter().all(|n| s.record(n).is_some()));
    assert_eq!(s.people(), 3);
    let mut buckets: Vec<u32> = others.iter().map(|n| s.bucket_of(n)).collect();
    buckets.sort_unstable();
    buckets.dedup();
    assert_eq!(
        s.take_bucket_writes(),
        buckets.len() + 1,
        "its buckets and bob's, not every bucket"
    );
}
