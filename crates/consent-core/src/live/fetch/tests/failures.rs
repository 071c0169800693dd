//! The source failing, and the host failing to carry out an effect.

use super::*;
use crate::live::fetch::{LogLevel, FIRST_TICK_MS};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn an_unreachable_or_failing_source_counts_a_fetch_failure_and_keeps_the_last_good() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    s.fetch(&snapshot(1, &["alice"]));
    s.tick().unwrap();
    s.answer(None, None, "");
    s.tick().unwrap();
    s.answer(Some(503), None, "upstream connect error");
    s.host.fail_calls = true;
    assert_eq!(s.tick(), None);
    assert_eq!(s.counter(Counter::FetchFailures), 3);
    assert!(s.logged("source unreachable; keeping the last good snapshot"));
    assert!(s.logged("source answered 503; keeping the last good snapshot"));
    assert!(s.logged("cannot call cluster consent: BadArgument"));
    assert!(s.record("alice").is_some());
    assert_eq!(s.meta().map(|m| m.version), Some(1));
    s.host.fail_calls = false;
    assert!(s.tick().is_some(), "a failed call is not left outstanding");
}

#[test]
fn a_source_failing_while_parts_are_read_starts_again() {
    let mut s = Sim::new();
    s.tick().unwrap();
    let part0 = first_part(5, 2, &["alice"]);
    s.answer(Some(200), None, &part0).unwrap();
    assert_eq!(s.answer(Some(500), None, ""), None);
    assert_eq!(s.counter(Counter::FetchFailures), 1);
    assert_eq!(s.meta(), None);
    assert_eq!(s.tick().unwrap().path, "/snapshot");
    s.host.fail_calls = true;
    assert_eq!(s.answer(Some(200), None, &part0), None);
    s.host.fail_calls = false;
    assert_eq!(
        s.counter(Counter::FetchFailures),
        2,
        "asking for part 1 failed"
    );
    assert_eq!(s.tick().unwrap().path, "/snapshot");
}

#[test]
fn a_failed_write_makes_the_next_fetch_a_full_one_that_rewrites_everything() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    s.host.now = 2_000;
    assert_eq!(s.tick().unwrap().path, "/deltas/1");
    s.host.writes_before_failure = Some(0);
    s.answer(Some(200), None, &delta(1, &["alice"], &[]));
    assert!(s.logged("cannot publish bucket "));
    assert_eq!(s.meta().map(|m| m.version), Some(1));
    s.take_writes();
    s.host.now = 3_000;
    assert_eq!(asks(&s.tick().unwrap()), ("/snapshot", None));
    assert_eq!(
        s.host.gauges.get(&Gauge::AgeMs),
        Some(&3_000),
        "the age of what is published"
    );
    s.answer(Some(200), None, &snapshot(2, &["bob"]));
    assert_eq!(
        s.take_bucket_writes(),
        16,
        "every bucket rewritten or emptied"
    );
    assert_eq!(s.record("alice"), None);
    assert!(s.record("bob").is_some());
}

#[test]
fn a_publish_cut_short_by_a_failed_write_leaves_nothing_behind_after_the_next() {
    let mut s = Sim::new();
    let names = s.names_outside(&["carol"], 6);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.host.writes_before_failure = Some(1);
    s.fetch(&snapshot(1, &names));
    assert_eq!(
        s.take_writes().len(),
        1,
        "one bucket written, then the failure"
    );
    assert_eq!(s.meta(), None);
    assert_eq!(
        s.host.tick_ms,
        Some(FIRST_TICK_MS),
        "still the fast first ticks"
    );
    s.fetch(&snapshot(2, &["carol"]));
    assert_eq!(s.people(), 1, "the first publish's bucket was emptied");
    assert!(s.record("carol").is_some());
    assert_eq!(s.host.tick_ms, Some(REFRESH_MS));
}

#[test]
fn a_failed_metadata_write_makes_the_next_fetch_unconditional() {
    let mut s = Sim::with(config_without_deltas(), Host::default());
    s.tick().unwrap();
    s.answer(Some(200), Some("\"v1\""), &snapshot(1, &["alice"]));
    s.host.now = 4_000;
    assert!(s.tick().unwrap().if_none_match.is_some());
    s.host.writes_before_failure = Some(0);
    s.answer(Some(304), None, "");
    assert!(s.logged("cannot publish metadata: InternalFailure"));
    assert_eq!(s.meta().map(|m| m.fetched_at_ms), Some(0));
    assert_eq!(s.tick().unwrap().if_none_match, None);
}

#[test]
fn a_bucket_that_cannot_be_read_makes_the_next_fetch_a_full_one() {
    let mut s = Sim::new();
    s.fetch(&snapshot(1, &["alice"]));
    s.take_writes();
    s.tick().unwrap();
    s.host.fail_reads = true;
    s.answer(Some(200), None, &delta(1, &["alice"], &[]));
    s.host.fail_reads = false;
    assert!(s.logged(&format!(
        "cannot read bucket {}: InternalFailure",
        s.bucket_of("alice")
    )));
    assert_eq!(s.take_writes(), Vec::<String>::new());
    assert_eq!(asks(&s.tick().unwrap()), ("/snapshot", None));
    s.answer(Some(200), None, &snapshot(2, &["alice"]));
    assert_eq!(s.take_bucket_writes(), 16);
}

#[test]
fn a_tick_period_the_host_refuses_fails_the_start() {
    let config = Rc::new(config());
    let mut host = Host {
        fail_ticks: true,
        ..Host::default()
    };
    let mut machine = FetchMachine::new(config, false, EPOCH);
    assert!(!machine.run(machine.start(), &mut host));
    assert_eq!(host.logs.len(), 1);
    assert_eq!(host.logs[0].level, LogLevel::Error);
    assert_eq!(
        host.logs[0].message,
        "consent fetcher: cannot set the tick period: BadArgument"
    );
}
