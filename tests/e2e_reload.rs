//! Configuration reload through real Envoy: the listener (with the consent filter's plugin
//! configuration) comes from a watched LDS file; a new configuration takes effect without
//! failing requests in flight, a bad one is rejected while the old one keeps serving, and a
//! new policy version is picked up (the worker-lease fetcher fetches it into its own
//! shared-data namespace).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{
    curl, free_port, localise, map_plugin_config, send, shipped_config, split_lds, wait_until,
    Envoy, Fixture, Req,
};

const MARKER: &str = "\"user_header\": \"x-user-id\",";

/// Replaces the listener file atomically (Envoy watches for moves into the directory).
fn publish(dir: &Path, lds: &str, version: u32) {
    let text = lds.replacen(
        "version_info: \"1\"",
        &format!("version_info: \"{version}\""),
        1,
    );
    let tmp = dir.join("lds.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("lds.yaml")).unwrap();
}

fn stat(f: &Fixture, name: &str) -> u64 {
    let text = curl(&[&format!(
        "http://127.0.0.1:{}/stats?filter=^{name}$",
        f.envoy.admin
    )])
    .text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn reason(f: &Fixture, req: Req) -> (u16, String) {
    let (resp, _) = send(f, req);
    let reason = if resp.status == 200 {
        String::new()
    } else {
        resp.json()["reason"].as_str().unwrap_or("").to_string()
    };
    (resp.status, reason)
}

#[test]
fn a_reloaded_configuration_takes_effect_without_failing_requests_and_a_bad_one_is_rejected() {
    let (source, source_port) = support::start_source(consent_source::store::DEFAULT_PART_SIZE);
    let (backend, backend_port) = support::start_backend();
    let (port, admin) = (free_port(), free_port());
    let dir: PathBuf = std::env::temp_dir().join(support::tag("lds"));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = support::worker_lease(&support::for_reference_source(&shipped_config(
        "envoy-demo.yaml",
    )));
    let (boot, lds) = split_lds(&demo, &dir);
    let boot = localise(&boot, port, admin, backend_port, source_port);
    let lds = localise(&lds, port, admin, backend_port, source_port);
    publish(&dir, &lds, 1);
    let envoy = Envoy::start(&boot, port, admin).unwrap_or_else(|e| panic!("{e}"));
    let f = Fixture {
        backend,
        envoy,
        source: Some(source),
        client_tls: None,
    };
    let ok =
        |f: &Fixture| reason(f, Req::get("/echo").who("u-alice", "support.inquiries")).0 == 200;
    assert!(
        wait_until(Duration::from_secs(15), || ok(&f)),
        "first snapshot"
    );
    let probe = || Req::get("/reloaded/x").who("u-alice", "support.inquiries");
    assert_eq!(reason(&f, probe()).0, 200);

    let load = support::Load::start(f.envoy.url("/echo"));
    std::thread::sleep(Duration::from_millis(300));

    // 1. A new rule arrives by LDS and takes effect.
    let with_rule = map_plugin_config(&lds, |json| {
        json.replacen(
            "\"routes\": [",
            "\"routes\": [\n                          { \"name\": \"reload-check\", \"match\": { \"path_prefix\": \"/reloaded/\" }, \"purposes\": [\"joint.ebpm\"] },",
            1,
        )
    });
    assert_ne!(with_rule, lds);
    let updates = stat(&f, "listener_manager.lds.update_success");
    publish(&dir, &with_rule, 2);
    assert!(
        wait_until(Duration::from_secs(10), || reason(&f, probe())
            == (403, "purpose_not_on_route".into())),
        "the new rule never applied:\n{}",
        f.envoy.log_text()
    );
    assert!(stat(&f, "listener_manager.lds.update_success") > updates);

    // 2. A bad configuration is rejected; the one in force keeps serving.
    let rejected = stat(&f, "listener_manager.lds.update_rejected");
    let bad = map_plugin_config(&with_rule, |json| {
        json.replacen(
            MARKER,
            &format!("\"require_usr\": true,\n                          {MARKER}"),
            1,
        )
    });
    assert_ne!(bad, with_rule);
    publish(&dir, &bad, 3);
    assert!(
        wait_until(Duration::from_secs(10), || stat(
            &f,
            "listener_manager.lds.update_rejected"
        ) > rejected),
        "the bad configuration was not rejected:\n{}",
        f.envoy.log_text()
    );
    // The stat can move before Envoy flushes the log line (every 50 ms).
    assert!(
        wait_until(Duration::from_secs(2), || f
            .envoy
            .log_text()
            .contains("consent filter configuration rejected: require_usr")),
        "no rejection line:\n{}",
        f.envoy.log_text()
    );
    assert_eq!(reason(&f, probe()), (403, "purpose_not_on_route".into()));
    assert!(ok(&f));
    // Reloads can be quicker than the load's first 20 answers (the native module's are).
    assert!(
        wait_until(Duration::from_secs(10), || load.answered() > 20),
        "the load got only {} answers",
        load.answered()
    );
    let before_policy = Instant::now();

    // 3. A new policy version: consent to the changed purpose needs renewal.
    let v2 = map_plugin_config(&with_rule, |json| {
        json.replacen(
            MARKER,
            &format!(
                "\"policy\": {},\n                          {MARKER}",
                support::policy_v2_changing("marketing.newsletters")
            ),
            1,
        )
    });
    publish(&dir, &v2, 4);
    assert!(
        wait_until(Duration::from_secs(15), || reason(
            &f,
            Req::get("/echo").who("u-alice", "marketing.newsletters")
        ) == (
            403,
            "reconsent_required".into()
        )),
        "policy v2 never applied:\n{}",
        f.envoy.log_text()
    );
    assert!(wait_until(Duration::from_secs(10), || ok(&f)));
    std::thread::sleep(Duration::from_millis(300));
    let seen = load.finish();

    let during_config: Vec<_> = seen.iter().filter(|(t, _, _)| *t < before_policy).collect();
    assert!(
        during_config.len() > 20,
        "only {} requests",
        during_config.len()
    );
    let failed: Vec<_> = during_config.iter().filter(|(_, s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "requests failed during reloads 1-2: {failed:?}"
    );
    // Across the policy change the new policy's snapshot is fetched into its own
    // namespace: requests in that window get the failure mode, never anything else.
    let after: Vec<_> = seen
        .iter()
        .filter(|(t, _, _)| *t >= before_policy)
        .collect();
    let gap: Vec<_> = after.iter().filter(|(_, s, _)| *s != 200).collect();
    for (_, status, body) in &gap {
        assert_eq!(*status, 403, "{body}");
        assert!(body.contains("snapshot_unavailable"), "{body}");
    }
    let window = match (gap.first(), gap.last()) {
        (Some(a), Some(b)) => b.0.duration_since(a.0),
        _ => Duration::ZERO,
    };
    eprintln!(
        "reload: {} requests during config reloads, all 200; policy change: {} of {} requests in a {:?} window answered snapshot_unavailable",
        during_config.len(),
        gap.len(),
        after.len(),
        window
    );
    assert!(window < Duration::from_secs(3), "{window:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
