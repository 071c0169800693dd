//! Who publishes: the worker lease changing hands, and a fetcher starting where an earlier
//! one already published.

use super::*;
use crate::live::fetch::FIRST_TICK_MS;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// [`config`] with the shortest refresh period, so that a worker without the lease ticks
/// slower than the holder.
fn fast_config() -> CompiledConfig {
    compile_config(
        br#"{"snapshot": {"source": "shared", "cluster": "consent", "deltas_path": "/deltas",
            "bucket_bits": 4, "refresh_ms": 100, "max_staleness_ms": 5000}}"#,
    )
    .unwrap()
}

/// Another worker, holding the lease now, publishes `names` on the same shared data.
fn other_worker_publishes(s: &mut Sim, names: &[&str]) {
    let mut other = FetchMachine::new(Rc::clone(&s.config), true, EPOCH * 2);
    let effects = other.on_lease(8, true);
    other.run(effects, &mut s.host);
    let effects = other.on_tick(s.host.now);
    other.run(effects, &mut s.host);
    let (token, _) = s.host.calls.last().cloned().unwrap();
    let body = snapshot(2, names);
    let response = Response {
        status: Some(200),
        etag: None,
        signature: None,
        body: body.as_bytes(),
    };
    let effects = other.on_response(token, response, s.host.now);
    other.run(effects, &mut s.host);
    // The other worker's tick period is its own.
    s.host.tick_ms = Some(200);
}

#[test]
fn after_a_handover_the_next_full_publish_rewrites_or_empties_every_bucket() {
    let mut s = Sim::with(fast_config(), Host::default());
    s.lease(true);
    assert_eq!(s.host.tick_ms, Some(FIRST_TICK_MS));
    s.fetch(&snapshot(1, &["alice"]));
    assert_eq!(s.host.tick_ms, Some(100));
    s.lease(false);
    assert_eq!(
        s.host.tick_ms,
        Some(200),
        "a worker without the lease ticks slower"
    );
    assert_eq!(s.tick(), None, "and does not fetch");
    let dave = s.names_outside(&["alice", "carol"], 1).remove(0);
    other_worker_publishes(&mut s, &[&dave]);
    assert!(s.record(&dave).is_some());
    assert_eq!(s.record("alice"), None);
    s.take_writes();
    s.lease(true);
    let call = s.tick().unwrap();
    assert_eq!(call.path, "/snapshot", "a full fetch, not a delta");
    s.answer(Some(200), None, &snapshot(3, &["carol"]));
    assert_eq!(s.take_bucket_writes(), 16);
    assert_eq!(s.record(&dave), None, "what the other holder wrote is gone");
    assert!(s.record("carol").is_some());
    assert_eq!(s.people(), 1);
    assert_eq!(
        s.host.tick_ms,
        Some(100),
        "the holder refreshes at its period again"
    );
    let lease_lines: Vec<&str> = s
        .host
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .filter(|m| m.contains("the fetcher lease"))
        .collect();
    assert_eq!(
        lease_lines,
        [
            "consent fetcher: worker 7 took the fetcher lease",
            "consent fetcher: worker 7 lost the fetcher lease",
            "consent fetcher: worker 8 took the fetcher lease",
            "consent fetcher: worker 7 took the fetcher lease",
        ]
    );
}

#[test]
fn a_worker_that_never_held_the_lease_neither_fetches_nor_reports_age_nor_logs() {
    let mut s = Sim::with(fast_config(), Host::default());
    s.lease(false);
    assert_eq!(s.host.tick_ms, Some(200));
    assert_eq!(s.tick(), None);
    assert_eq!(s.machine.next_request(), None);
    s.lease(false);
    assert!(s.host.logs.is_empty(), "{:?}", s.host.logs);
    assert!(s.host.gauges.is_empty());
}

#[test]
fn an_answer_to_a_call_made_before_a_handover_is_dropped() {
    let mut s = Sim::new();
    s.lease(true);
    s.tick().unwrap();
    let (token, _) = s.host.calls.last().cloned().unwrap();
    assert!(s.machine.awaits(token));
    s.lease(false);
    s.lease(true);
    assert!(!s.machine.awaits(token));
    s.answer(Some(200), None, &snapshot(1, &["alice"]));
    assert_eq!(s.meta(), None);
    assert_eq!(s.take_writes(), Vec::<String>::new());
    assert!(s.tick().is_some(), "the new holder asks again");
}

#[test]
fn a_fetcher_that_finds_metadata_already_published_empties_every_bucket_it_does_not_write() {
    let mut earlier = Sim::new();
    let alice = earlier.names_outside(&["carol"], 1).remove(0);
    earlier.fetch(&snapshot(1, &[&alice]));
    let mut s = Sim::with(config(), std::mem::take(&mut earlier.host));
    s.take_writes();
    s.fetch(&snapshot(2, &["carol"]));
    assert_eq!(s.take_bucket_writes(), 16);
    assert_eq!(
        s.record(&alice),
        None,
        "the earlier fetcher's record is gone"
    );
    assert!(s.record("carol").is_some());
    // On an empty Envoy the same publish writes only the bucket it fills.
    let mut fresh = Sim::new();
    fresh.fetch(&snapshot(2, &["carol"]));
    assert_eq!(fresh.take_bucket_writes(), 1);
}

#[test]
fn a_lease_runs_three_refresh_periods_and_at_least_three_seconds() {
    let fast = FetchMachine::new(Rc::new(fast_config()), false, EPOCH);
    assert_eq!(fast.lease_ttl_ms(), 3_000);
    let slow = compile_config(
        br#"{"snapshot": {"source": "shared", "cluster": "c", "refresh_ms": 5000, "max_staleness_ms": 10000}}"#,
    )
    .unwrap();
    assert_eq!(
        FetchMachine::new(Rc::new(slow), false, EPOCH).lease_ttl_ms(),
        15_000
    );
}

#[test]
fn after_regaining_the_lease_the_full_fetch_is_unconditional() {
    let mut s = Sim::with(fast_config(), Host::default());
    s.lease(true);
    s.tick().unwrap();
    s.answer(Some(200), Some("\"v1\""), &snapshot(1, &["alice"]));
    s.lease(false);
    s.lease(true);
    s.take_writes();
    // With the old ETag an unchanged source would answer 304, and a fetcher that forgot
    // its metadata would have nothing to confirm: the snapshot would go stale.
    assert_eq!(asks(&s.tick().unwrap()), ("/snapshot", None));
    s.answer(Some(200), Some("\"v1\""), &snapshot(1, &["alice"]));
    assert_eq!(s.meta().map(|m| m.version), Some(1));
    assert_eq!(s.take_bucket_writes(), 16);
}
