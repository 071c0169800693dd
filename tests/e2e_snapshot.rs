//! End to end: the live consent snapshot. The demo backend plays the consent source; the
//! fetcher (a bootstrap singleton) publishes to shared data; the filter follows it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    demo_consents, send, start_demo, start_demo_parts, start_demo_with, wait_until, Fixture, Req,
    SnapshotState,
};

/// Fast refresh and a short staleness bound, for the fault tests.
fn fast(yaml: &str) -> String {
    yaml.replace("\"refresh_ms\": 1000", "\"refresh_ms\": 200")
        .replace("\"max_staleness_ms\": 10000", "\"max_staleness_ms\": 2500")
}

fn reason(f: &Fixture, user: &str, purpose: &str) -> (u16, String) {
    let (r, _) = send(f, Req::get("/echo").who(user, purpose));
    let reason = if r.status == 200 {
        r.json()["headers"]["x-consent-decision"][0]
            .as_str()
            .and_then(|d| d.split("; ").find_map(|kv| kv.strip_prefix("reason=")))
            .unwrap_or("")
            .to_string()
    } else {
        r.json()["reason"].as_str().unwrap_or("").to_string()
    };
    (r.status, reason)
}

/// The demo consents at a new version, changed by `edit`.
fn consents_with(version: u64, edit: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_str(&demo_consents()).unwrap();
    doc["version"] = version.into();
    edit(&mut doc);
    doc.to_string()
}

/// Calls the consent source's API; returns the status.
fn source_call(f: &Fixture, method: &str, path: &str) -> u16 {
    support::curl(&["-X", method, &f.source_url(path)]).status
}

#[test]
fn a_consent_given_at_the_source_takes_effect_within_one_refresh_period() {
    let f = start_demo(|y| y.to_string());
    assert_eq!(
        reason(&f, "u-bob", "surveys"),
        (403, "consent_missing".into())
    );
    let changed_at = Instant::now();
    assert_eq!(source_call(&f, "PUT", "/users/u-bob/grants/surveys"), 200);
    assert!(wait_until(Duration::from_secs(5), || reason(
        &f, "u-bob", "surveys"
    )
    .0 == 200));
    let took = changed_at.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} with a 1 s refresh period"
    );
}

#[test]
fn withdrawal_stop_use_and_erasure_take_effect_within_one_refresh_period() {
    let f = start_demo(|y| y.to_string());
    assert_eq!(reason(&f, "u-alice", "marketing.newsletters").0, 200);
    assert_eq!(
        source_call(&f, "DELETE", "/users/u-alice/grants/marketing.newsletters"),
        200
    );
    assert!(wait_until(Duration::from_secs(5), || {
        reason(&f, "u-alice", "marketing.newsletters") == (403, "consent_withdrawn".into())
    }));
    // Withdrawing a notice-based purpose is an objection (§10).
    assert_eq!(reason(&f, "u-alice", "marketing.analysis").0, 200);
    assert_eq!(
        source_call(&f, "DELETE", "/users/u-alice/grants/marketing.analysis"),
        200
    );
    assert!(wait_until(Duration::from_secs(5), || {
        reason(&f, "u-alice", "marketing.analysis") == (403, "objected".into())
    }));
    // A new grant ends the withdrawal.
    assert_eq!(
        source_call(&f, "PUT", "/users/u-alice/grants/marketing.newsletters"),
        200
    );
    assert!(wait_until(Duration::from_secs(5), || {
        reason(&f, "u-alice", "marketing.newsletters").0 == 200
    }));
    assert_eq!(reason(&f, "u-alice", "support.inquiries").0, 200);
    assert_eq!(source_call(&f, "PUT", "/users/u-alice/stop-use"), 200);
    assert!(wait_until(Duration::from_secs(5), || {
        reason(&f, "u-alice", "support.inquiries") == (403, "use_stopped".into())
    }));
    assert_eq!(source_call(&f, "DELETE", "/users/u-carol"), 200);
    assert!(wait_until(Duration::from_secs(5), || reason(
        &f,
        "u-carol",
        "support.inquiries"
    )
    .0 == 200));
    assert_eq!(
        source_call(&f, "PUT", "/users/u-bob/grants/no.such.purpose"),
        400,
        "the source validates"
    );
}

#[test]
fn a_source_that_goes_down_leaves_the_last_good_snapshot_until_the_bound() {
    let mut f = start_demo(fast);
    assert_eq!(reason(&f, "u-alice", "marketing.newsletters").0, 200);
    f.source = None;
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reason(&f, "u-alice", "marketing.newsletters").0, 200);
    assert!(wait_until(Duration::from_secs(6), || {
        reason(&f, "u-alice", "marketing.newsletters") == (403, "snapshot_stale".into())
    }));
}

#[test]
fn a_failing_source_keeps_the_last_good_snapshot_until_the_staleness_bound_then_recovers() {
    for fault in [
        SnapshotState::Fail(500),
        SnapshotState::Garbage,
        SnapshotState::Fail(503),
        SnapshotState::Hang,
    ] {
        let f = start_demo_with(fast, SnapshotState::Serve(demo_consents()), true);
        assert_eq!(reason(&f, "u-alice", "marketing.newsletters").0, 200);
        f.backend.set_snapshot(fault.clone());
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(
            reason(&f, "u-alice", "marketing.newsletters").0,
            200,
            "{fault:?}: the last good snapshot still serves inside the bound"
        );
        assert!(
            wait_until(Duration::from_secs(6), || {
                reason(&f, "u-alice", "marketing.newsletters") == (403, "snapshot_stale".into())
            }),
            "{fault:?}: past the bound the failure mode applies"
        );
        f.backend
            .set_snapshot(SnapshotState::Serve(consents_with(3, |_| {})));
        assert!(
            wait_until(Duration::from_secs(5), || reason(
                &f,
                "u-alice",
                "marketing.newsletters"
            )
            .0 == 200),
            "{fault:?}: recovers when the source returns"
        );
    }
}

#[test]
fn before_the_first_snapshot_the_failure_mode_applies() {
    let f = start_demo_with(|y| y.to_string(), SnapshotState::Fail(503), false);
    assert_eq!(
        reason(&f, "u-alice", "support.inquiries"),
        (403, "snapshot_unavailable".into())
    );
    f.backend
        .set_snapshot(SnapshotState::Serve(demo_consents()));
    assert!(wait_until(Duration::from_secs(5), || reason(
        &f,
        "u-alice",
        "support.inquiries"
    )
    .0 == 200));
}

#[test]
fn the_strip_failure_mode_passes_requests_with_every_category_removed() {
    let strip = |y: &str| y.replace("\"failure_mode\": \"block\"", "\"failure_mode\": \"strip\"");
    let f = start_demo_with(strip, SnapshotState::Fail(503), false);
    let (r, seen) = send(
        &f,
        Req::get("/echo?lat=35.8")
            .who("u-alice", "service.improvement")
            .header("x-geo-position", "35.8617,139.6455")
            .header("x-device-id", "dev-1"),
    );
    assert_eq!(r.status, 200);
    let seen = seen.unwrap();
    assert_eq!(seen.header("x-geo-position"), None);
    assert_eq!(seen.header("x-device-id"), None);
    assert_eq!(seen.path, "/echo");
    assert!(seen
        .header("x-consent-decision")
        .unwrap()
        .contains("reason=snapshot_unavailable"));
}

#[test]
fn a_snapshot_in_another_keying_is_rejected_and_the_last_good_one_kept() {
    let f = start_demo_with(fast, SnapshotState::Serve(demo_consents()), true);
    let doc = consents_with(2, |d| d["subject_key"] = "hmac_sha256".into());
    f.backend.set_snapshot(SnapshotState::Serve(doc));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(reason(&f, "u-alice", "marketing.newsletters").0, 200);
}

#[test]
fn snapshot_version_users_age_and_failures_are_envoy_stats() {
    let f = start_demo_with(fast, SnapshotState::Serve(demo_consents()), true);
    let stats = || {
        let r = support::curl(&[&format!(
            "http://127.0.0.1:{}/stats?filter=consent_snapshot",
            f.envoy.admin
        )]);
        r.text()
    };
    assert!(
        wait_until(Duration::from_secs(3), || stats()
            .contains("consent_snapshot_users: 3")),
        "{}",
        stats()
    );
    assert!(
        stats().contains("consent_snapshot_version: 1"),
        "{}",
        stats()
    );
    f.backend.set_snapshot(SnapshotState::Fail(500));
    assert!(
        wait_until(Duration::from_secs(3), || !stats()
            .contains("consent_snapshot_fetch_failures: 0")),
        "{}",
        stats()
    );
    let age_line = stats()
        .lines()
        .find(|l| l.contains("consent_snapshot_age_ms"))
        .unwrap_or("")
        .to_string();
    let age: u64 = age_line
        .rsplit(": ")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(age > 0, "{age_line}");
    let prom = support::curl(&[&format!(
        "http://127.0.0.1:{}/stats/prometheus",
        f.envoy.admin
    )])
    .text();
    assert!(
        prom.contains("consent_snapshot_version"),
        "visible to Prometheus"
    );
}

#[test]
fn a_snapshot_served_in_parts_is_loaded_whole() {
    let f = start_demo_parts(|y| y.to_string(), 1);
    assert_eq!(reason(&f, "u-alice", "marketing.newsletters").0, 200);
    assert_eq!(
        reason(&f, "u-bob", "surveys"),
        (403, "consent_missing".into())
    );
    assert_eq!(
        reason(&f, "u-carol", "support.inquiries"),
        (403, "use_stopped".into())
    );
    let users = support::curl(&[&format!(
        "http://127.0.0.1:{}/stats?filter=consent_snapshot_users",
        f.envoy.admin
    )])
    .text();
    assert!(users.contains("consent_snapshot_users: 3"), "{users}");
    assert_eq!(source_call(&f, "PUT", "/users/u-bob/grants/surveys"), 200);
    assert!(wait_until(Duration::from_secs(5), || reason(
        &f, "u-bob", "surveys"
    )
    .0 == 200));
}

#[test]
fn a_flapping_source_never_lets_a_request_through_on_a_snapshot_past_the_bound() {
    let f = start_demo_with(fast, SnapshotState::Serve(demo_consents()), true);
    // For 4 s the source cycles: a new good version for 200 ms (bob granting surveys on
    // even versions, withdrawing on odd ones), then 503, then garbage, 100 ms each.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = std::sync::Arc::clone(&stop);
        let backend = f.backend.snapshot_handle();
        std::thread::spawn(move || {
            let mut version = 10u64;
            let mut step = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let state = match step % 3 {
                    0 => {
                        version += 1;
                        let grant = version % 2 == 0;
                        SnapshotState::Serve(consents_with(version, |doc| {
                            if grant {
                                doc["records"][1]["grants"]["surveys"] =
                                    serde_json::json!({"policy_version": 1});
                            }
                        }))
                    }
                    1 => SnapshotState::Fail(503),
                    _ => SnapshotState::Garbage,
                };
                let hold = if step % 3 == 0 { 200 } else { 100 };
                backend.set(state);
                step += 1;
                std::thread::sleep(Duration::from_millis(hold));
            }
            version
        })
    };
    let started = Instant::now();
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    while started.elapsed() < Duration::from_secs(4) {
        let (status, why) = reason(&f, "u-alice", "marketing.newsletters");
        *answers.entry(format!("{status} {why}")).or_default() += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = flipper.join().unwrap();
    // Good versions keep arriving well inside the 2.5 s bound: never stale, never unavailable.
    assert_eq!(
        answers.keys().cloned().collect::<Vec<_>>(),
        vec!["200 consent_granted".to_string()],
        "{answers:?}"
    );
    // The source settles on its last good version and the filter follows it.
    let settled = consents_with(last + 1, |_| {});
    f.backend.set_snapshot(SnapshotState::Serve(settled));
    assert!(wait_until(Duration::from_secs(5), || reason(
        &f, "u-bob", "surveys"
    ) == (
        403,
        "consent_missing".into()
    )));
}
