//! Deltas: applied to the buckets they touch, confirmed by a 404, and a full fetch next
//! when one does not apply.

use super::*;
use crate::live::buckets::bucket_version;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A fetcher that published `names` as version 1.
fn published(names: &[&str]) -> Sim {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, names));
    s.take_writes();
    s
}

#[test]
fn a_delta_rewrites_only_its_buckets_and_moves_the_version() {
    let mut s = Sim::new();
    let names = s.names_outside(&["newcomer"], 12);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.fetch(&snapshot(1, &names));
    s.take_writes();
    s.host.now = 7_000;
    assert_eq!(asks(&s.tick().unwrap()), ("/deltas/1", None));
    let (changed, deleted, untouched) = (names[0], names[1], names[2]);
    s.answer(
        Some(200),
        None,
        &delta(1, &[changed, "newcomer"], &[deleted, "nobody"]),
    );
    assert!(s.record(changed).unwrap().stop_use);
    assert!(s.record("newcomer").unwrap().stop_use);
    assert_eq!(s.record(deleted), None);
    assert!(!s.record(untouched).unwrap().stop_use);
    let mut touched: Vec<u32> = [changed, "newcomer", deleted, "nobody"]
        .iter()
        .map(|n| s.bucket_of(n))
        .collect();
    touched.sort_unstable();
    touched.dedup();
    assert_eq!(s.take_bucket_writes(), touched.len());
    for b in 0..16 {
        if let Some(bytes) = s.host.store.get(&s.config.shared_keys.bucket(b)) {
            let expected = if touched.contains(&b) { 2 } else { 1 };
            assert_eq!(bucket_version(bytes), Ok(expected), "bucket {b}");
        }
    }
    let meta = s.meta().unwrap();
    assert_eq!(
        (meta.version, meta.users, meta.fetched_at_ms),
        (2, 12, 7_000)
    );
    assert_eq!(s.people(), 12);
    assert_eq!(s.host.gauges.get(&Gauge::Version), Some(&2));
    assert!(s.logged("applied delta to version 2 (4 changes, "));
    assert_eq!(s.tick().unwrap().path, "/deltas/2");
}

#[test]
fn a_delta_404_confirms_the_snapshot() {
    let mut s = published(&["alice"]);
    s.host.now = 3_000;
    assert_eq!(s.tick().unwrap().path, "/deltas/1");
    s.answer(Some(404), None, "");
    assert!(s.only_meta_written());
    let meta = s.meta().unwrap();
    assert_eq!((meta.version, meta.fetched_at_ms), (1, 3_000));
    assert_eq!(s.tick().unwrap().path, "/deltas/1");
}

#[test]
fn a_delta_from_another_version_asks_for_the_full_snapshot_next() {
    let mut s = published(&["alice"]);
    s.tick().unwrap();
    s.answer(Some(200), None, &delta(4, &["alice"], &[]));
    assert_eq!(s.take_writes(), Vec::<String>::new());
    assert!(!s.record("alice").unwrap().stop_use);
    assert!(s.logged("delta starts at version 4, published is 1; fetching the full snapshot next"));
    assert_eq!(s.counter(Counter::Rejected), 0);
    assert_eq!(s.tick().unwrap().path, "/snapshot");
}

#[test]
fn an_invalid_delta_is_rejected_and_asks_for_the_full_snapshot_next() {
    for body in [
        "{\"from_version\": 1,".to_string(),
        r#"{"from_version": 1, "version": 1, "upserts": [{"subject": "person-alice", "stop_use": true}]}"#
            .to_string(),
        r#"{"from_version": 1, "version": 2, "subject_key": "hmac_sha256"}"#.to_string(),
    ] {
        let mut s = published(&["alice"]);
        s.tick().unwrap();
        s.answer(Some(200), None, &body);
        assert_eq!(s.counter(Counter::Rejected), 1, "{body}");
        assert!(s.logged("delta rejected: "));
        assert_eq!(s.take_writes(), Vec::<String>::new());
        assert!(!s.record("alice").unwrap().stop_use);
        assert_eq!(s.tick().unwrap().path, "/snapshot", "{body}");
    }
}

#[test]
fn a_delta_on_a_bucket_that_does_not_decode_asks_for_the_full_snapshot_next() {
    let mut s = published(&["alice"]);
    let key = s.config.shared_keys.bucket(s.bucket_of("alice"));
    s.host.store.insert(key, b"CB2\0garbage".to_vec());
    s.tick().unwrap();
    s.answer(Some(200), None, &delta(1, &["alice"], &[]));
    assert_eq!(s.take_writes(), Vec::<String>::new());
    assert!(s.logged("; fetching the full snapshot next"));
    assert_eq!(s.meta().map(|m| m.version), Some(1));
    let call = s.tick().unwrap();
    assert_eq!(call.path, "/snapshot");
    s.answer(Some(200), None, &snapshot(2, &["alice"]));
    assert!(s.record("alice").is_some());
}
