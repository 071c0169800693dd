//! A real Prometheus (Debian's package) scraping the fixture Envoy's `/stats/prometheus`
//! every second, queried through its HTTP API: the filter's labelled stats as Prometheus
//! stores them, the shipped alert rules (`deploy/monitoring/consent-alerts.yaml`) evaluated
//! by Prometheus against a failing consent source, and every PromQL expression of the
//! shipped Grafana dashboard (`deploy/monitoring/consent-dashboard.json`) evaluated against
//! the scraped data, so that a renamed metric or label breaks this test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{
    consent_metric_names, curl, demo_consents, repo_root, send, start_demo, start_demo_with,
    wait_until, Fixture, Prometheus, Req, Sample, SnapshotState,
};

const ALERTS: &str = "deploy/monitoring/consent-alerts.yaml";
const DASHBOARD: &str = "deploy/monitoring/consent-dashboard.json";

/// Every name the filter's stats have in Envoy's Prometheus output, and their types.
const METRICS: [(&str, &str); 14] = [
    ("consent_decisions", "counter"),
    ("consent_redactions", "counter"),
    ("consent_refusals", "counter"),
    ("consent_body_bytes", "counter"),
    ("consent_snapshot_version", "gauge"),
    ("consent_snapshot_users", "gauge"),
    ("consent_snapshot_age_ms", "gauge"),
    ("consent_snapshot_fetch_failures", "counter"),
    ("consent_snapshot_rejected", "counter"),
    ("consent_snapshot_signature_rejected", "counter"),
    // The shipped demo keeps the provision ledger; the drainer defines these at start.
    ("consent_ledger_records_sent", "counter"),
    ("consent_ledger_send_failures", "counter"),
    ("consent_ledger_dropped", "counter"),
    ("consent_ledger_buffered", "gauge"),
];

const BOB_SURVEYS_BLOCKS: &str = r#"consent_decisions{mode="enforce",outcome="block",reason="consent_missing",purpose="surveys"}"#;

/// Prometheus scrapes every second; a few seconds cover a scrape and an evaluation.
const SCRAPED: Duration = Duration::from_secs(15);

fn envoy_prometheus_text(f: &Fixture) -> String {
    curl(&[&format!(
        "http://127.0.0.1:{}/stats/prometheus",
        f.envoy.admin
    )])
    .text()
}

fn block_bob_surveys(f: &Fixture) {
    let (r, _) = send(f, Req::get("/echo").who("u-bob", "surveys"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["reason"], "consent_missing");
}

/// A request with GPS in the query and an e-mail address in the JSON body, for a purpose
/// that may not see them as they are: location.gps and email redacted in the request
/// direction.
fn redact_bob_request(f: &Fixture) {
    let (r, seen) = send(
        f,
        Req::get("/echo?lat=35.86")
            .who("u-bob", "service.improvement")
            .json(r#"{"email": "x@example.jp", "note": "hi"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = seen.expect("reached the backend");
    assert!(!String::from_utf8_lossy(&seen.body).contains("x@example.jp"));
}

/// Samples of `expr` by the value of `label`.
fn by_label(samples: &[Sample], label: &str) -> std::collections::BTreeMap<String, f64> {
    samples
        .iter()
        .map(|s| (s.label(label).to_string(), s.value))
        .collect()
}

fn query_ok(prom: &Prometheus, expr: &str) -> Vec<Sample> {
    prom.query(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}\n{}", prom.log_text()))
}

/// The metric names Prometheus holds series of.
fn stored_names(prom: &Prometheus) -> BTreeSet<String> {
    prom.api("/api/v1/label/__name__/values")["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn prometheus_counts_decisions_and_redactions_by_their_labels_and_sees_the_snapshot() {
    let f = start_demo(|y| y.to_string());
    let prom = Prometheus::start(&[f.envoy.admin], &[]);
    // Envoy defines a stat at its first use: one block and one redaction first, seen by
    // Prometheus, then the requests it must count.
    block_bob_surveys(&f);
    redact_bob_request(&f);
    let gps = r#"consent_redactions{mode="enforce",direction="request",category="location.gps"}"#;
    let email = r#"consent_redactions{mode="enforce",direction="request",category="email"}"#;
    let blocks_before = prom
        .wait_value(BOB_SURVEYS_BLOCKS, SCRAPED, |v| v >= 1.0)
        .unwrap_or_else(|| {
            panic!(
                "{BOB_SURVEYS_BLOCKS} never scraped:\n{}",
                envoy_prometheus_text(&f)
            )
        });
    let gps_before = prom.wait_value(gps, SCRAPED, |v| v >= 1.0).expect(gps);
    let email_before = prom.wait_value(email, SCRAPED, |v| v >= 1.0).expect(email);

    const N: u64 = 5;
    const M: u64 = 3;
    for _ in 0..N {
        block_bob_surveys(&f);
    }
    for _ in 0..M {
        redact_bob_request(&f);
    }
    // A response body the purpose may not see whole, and one body refusal.
    let (r, _) = send(
        &f,
        Req::get("/users/u-bob/profile").who("u-bob", "marketing.analysis"),
    );
    assert_eq!(r.status, 200);
    let (r, _) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(r#"{"email": "x@example.jp", "#),
    );
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("body_invalid_json"))
    );

    let want = blocks_before + N as f64;
    let got = prom.wait_value(BOB_SURVEYS_BLOCKS, SCRAPED, |v| v >= want);
    assert_eq!(got, Some(want), "{N} more blocks of surveys for u-bob");
    for (expr, before) in [(gps, gps_before), (email, email_before)] {
        let want = before + M as f64;
        assert_eq!(
            prom.wait_value(expr, SCRAPED, |v| v >= want),
            Some(want),
            "{expr}: {M} more redactions"
        );
    }
    // Two more scrapes: nothing is counted twice (Envoy sums its workers' VMs once).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(prom.value(BOB_SURVEYS_BLOCKS), Some(want));
    // Prometheus sees a counter: its increase covers the N blocks.
    let increase = prom
        .value(&format!("increase({BOB_SURVEYS_BLOCKS}[1m])"))
        .unwrap();
    assert!(increase >= N as f64, "increase {increase} < {N}");

    // The same counts by outcome, reason and purpose, as a dashboard asks for them.
    let by_outcome = by_label(
        &query_ok(&prom, "sum by (outcome) (consent_decisions)"),
        "outcome",
    );
    assert!(by_outcome["block"] >= want, "{by_outcome:?}");
    assert!(by_outcome["redact"] >= (M + 1) as f64, "{by_outcome:?}");
    let by_reason = by_label(
        &query_ok(
            &prom,
            r#"sum by (reason) (consent_decisions{outcome="block"})"#,
        ),
        "reason",
    );
    assert!(by_reason["consent_missing"] >= want, "{by_reason:?}");
    let by_purpose = by_label(
        &query_ok(&prom, "sum by (purpose) (consent_decisions)"),
        "purpose",
    );
    for purpose in [
        "surveys",
        "service.improvement",
        "marketing.analysis",
        "support.inquiries",
    ] {
        assert!(
            by_purpose.get(purpose).is_some_and(|v| *v >= 1.0),
            "{purpose} missing in {by_purpose:?}"
        );
    }
    let by_category = by_label(
        &query_ok(
            &prom,
            r#"sum by (category) (consent_redactions{direction="request"})"#,
        ),
        "category",
    );
    assert_eq!(by_category.get("email"), Some(&(email_before + M as f64)));
    assert_eq!(
        by_category.get("location.gps"),
        Some(&(gps_before + M as f64))
    );
    let response = query_ok(&prom, r#"consent_redactions{direction="response"}"#);
    assert!(
        !response.is_empty() && response.iter().all(|s| s.value >= 1.0),
        "response-side redactions: {response:?}"
    );
    let refusals = query_ok(
        &prom,
        r#"consent_refusals{mode="enforce",direction="request",reason="body_invalid_json"}"#,
    );
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let body_bytes = by_label(&query_ok(&prom, "consent_body_bytes"), "direction");
    assert!(
        body_bytes.get("request").is_some_and(|v| *v > 0.0)
            && body_bytes.get("response").is_some_and(|v| *v > 0.0),
        "{body_bytes:?}"
    );

    // The snapshot: fresh (refresh_ms 1000, max_staleness_ms 10000 in the demo), the demo's
    // people, no failed fetch or rejection.
    let users = serde_json::from_str::<serde_json::Value>(&demo_consents()).unwrap()["records"]
        .as_array()
        .unwrap()
        .len() as f64;
    let age = prom.value("consent_snapshot_age_ms").expect("age gauge");
    assert!((0.0..5000.0).contains(&age), "age {age} ms");
    assert_eq!(prom.value("consent_snapshot_users"), Some(users));
    let version = prom.value("consent_snapshot_version").unwrap();
    assert!(version >= 1.0, "version {version}");
    assert_eq!(prom.value("consent_snapshot_fetch_failures"), Some(0.0));
    assert_eq!(prom.value("consent_snapshot_rejected"), Some(0.0));

    // The names as Envoy emits them (the wasmcustom. prefix dropped, no envoy_ prefix) are
    // the ones Prometheus stores, with their types.
    // (The native module's carry Envoy's `envoy_dynamicmodulescustom_` prefix, which the
    // scrape config renames away.)
    let text = envoy_prometheus_text(&f);
    assert!(!text.contains("wasmcustom"), "a wasmcustom name:\n{text}");
    let prefix = match support::build() {
        support::Build::Wasm => "",
        support::Build::Native => support::NATIVE_PREFIX,
    };
    for (name, kind) in METRICS {
        assert!(
            text.contains(&format!("# TYPE {prefix}{name} {kind}\n")),
            "no `# TYPE {name} {kind}` in Envoy's /stats/prometheus:\n{text}"
        );
    }
    let ours: BTreeSet<String> = stored_names(&prom)
        .into_iter()
        .filter(|n| n.starts_with("consent_"))
        .collect();
    let want: BTreeSet<String> = METRICS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(ours, want);
}

/// Requests of every kind the dashboard shows while the snapshot is good: allow, redact
/// and block decisions, redactions in both directions, refusals in both directions.
fn healthy_traffic(f: &Fixture) {
    block_bob_surveys(f);
    redact_bob_request(f);
    let (r, _) = send(
        f,
        Req::get("/users/u-alice/profile").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (r, _) = send(
        f,
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(r#"{"email": "x@example.jp", "#),
    );
    assert_eq!(r.status, 400);
    let (_, seen) = send(
        f,
        Req::get("/broken-json").who("u-alice", "marketing.newsletters"),
    );
    assert!(seen.is_some());
}

fn stale_reason(f: &Fixture) -> String {
    let (r, _) = send(f, Req::get("/echo").who("u-alice", "marketing.newsletters"));
    if r.status == 403 {
        r.json()["reason"].as_str().unwrap_or("").to_string()
    } else {
        String::new()
    }
}

/// `{{alertname}} -> state` for the instance's active alerts.
fn active(prom: &Prometheus, instance: &str) -> std::collections::BTreeMap<String, String> {
    prom.alerts()
        .into_iter()
        .filter(|(_, _, labels)| labels.get("instance").map(String::as_str) == Some(instance))
        .map(|(name, state, _)| (name, state))
        .collect()
}

#[test]
fn a_failing_source_fires_the_shipped_alerts_and_every_dashboard_query_has_data() {
    let alerts_file = repo_root().join(ALERTS);
    let f = start_demo_with(
        |y| y.to_string(),
        SnapshotState::Serve(demo_consents()),
        true,
    );
    let prom = Prometheus::start(&[f.envoy.admin], std::slice::from_ref(&alerts_file));
    let instance = prom.instances[0].clone();

    // The shipped rules are all loaded and evaluate without error.
    let shipped: Vec<String> = std::fs::read_to_string(&alerts_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: ").map(str::to_string))
        .collect();
    assert!(shipped.len() >= 4, "{shipped:?}");
    let rules = || -> Vec<serde_json::Value> {
        prom.api("/api/v1/rules")["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let loaded: Vec<String> = rules()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(loaded, shipped);

    healthy_traffic(&f);
    assert!(
        prom.wait_value(
            r#"count(consent_refusals{direction="response"}) + count(consent_refusals{direction="request"})"#,
            SCRAPED,
            |v| v >= 2.0
        )
        .is_some(),
        "refusals in both directions:\n{}",
        envoy_prometheus_text(&f)
    );
    let healthy = active(&prom, &instance);
    assert!(
        healthy.is_empty(),
        "alerts with a healthy source: {healthy:?}"
    );

    // The source serves garbage: rejected, the last good snapshot kept (and ageing).
    f.backend.set_snapshot(SnapshotState::Garbage);
    assert!(
        prom.wait_value("consent_snapshot_rejected", SCRAPED, |v| v > 0.0)
            .is_some(),
        "consent_snapshot_rejected stays 0:\n{}",
        f.envoy.log_text()
    );
    assert!(
        wait_until(SCRAPED, || active(&prom, &instance)
            .get("ConsentSnapshotRejected")
            .is_some_and(|s| s == "firing")),
        "ConsentSnapshotRejected does not fire: {:?}",
        prom.alerts()
    );
    // Then it fails outright.
    f.backend.set_snapshot(SnapshotState::Fail(503));
    assert!(
        prom.wait_value("consent_snapshot_fetch_failures", SCRAPED, |v| v > 0.0)
            .is_some(),
        "consent_snapshot_fetch_failures stays 0:\n{}",
        f.envoy.log_text()
    );
    // Past max_staleness_ms (10 s in the demo) requests are blocked as snapshot_stale.
    assert!(
        wait_until(Duration::from_secs(20), || stale_reason(&f)
            == "snapshot_stale"),
        "never snapshot_stale"
    );
    let stale = r#"consent_decisions{mode="enforce",outcome="block",reason="snapshot_stale",purpose="marketing.newsletters"}"#;
    let first = prom.wait_value(stale, SCRAPED, |v| v >= 1.0).expect(stale);
    for _ in 0..20 {
        assert_eq!(stale_reason(&f), "snapshot_stale");
    }
    assert_eq!(
        prom.wait_value(stale, SCRAPED, |v| v >= first + 20.0),
        Some(first + 20.0)
    );
    // The age climbs past the alert's 15 s.
    let age = prom.wait_value("consent_snapshot_age_ms", Duration::from_secs(25), |v| {
        v > 15000.0
    });
    assert!(
        age.is_some(),
        "age: {:?}",
        prom.value("consent_snapshot_age_ms")
    );

    // Every snapshot alert is pending (their `for` is minutes) or firing; no internal error.
    let want = [
        "ConsentSnapshotAging",
        "ConsentSnapshotStale",
        "ConsentSnapshotRejected",
        "ConsentSnapshotFetchFailing",
        "ConsentFailClosedBlocking",
    ];
    let mut now = Default::default();
    let all = wait_until(SCRAPED, || {
        now = active(&prom, &instance);
        want.iter().all(|a| {
            now.get(*a)
                .is_some_and(|s: &String| s == "pending" || s == "firing")
        })
    });
    assert!(all, "want {want:?} active, got {now:?}");
    assert!(!now.contains_key("ConsentInternalErrorSpike"), "{now:?}");
    for rule in rules() {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // Every metric a rule or a dashboard query names is one Prometheus has scraped.
    let stored = stored_names(&prom);
    for rule in rules() {
        let query = rule["query"].as_str().unwrap();
        let names = consent_metric_names(query);
        assert!(!names.is_empty(), "{query}");
        for name in names {
            assert!(
                stored.contains(&name),
                "rule {}: no series {name}",
                rule["name"]
            );
        }
    }
    check_dashboard(&prom, &stored, &instance);
}

/// The labels of every `by (...)` clause in `query`.
fn grouping_labels(query: &str) -> Vec<String> {
    query
        .split("by (")
        .skip(1)
        .filter_map(|rest| rest.split_once(')'))
        .flat_map(|(labels, _)| labels.split(','))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Dashboard panels whose query has no data here: no internal error can be staged in a
/// real Envoy (a host call must fail). Their queries must still parse and evaluate, to an
/// empty vector.
const EXPECTED_EMPTY: [&str; 1] = ["Internal errors"];

/// Every PromQL expression of the shipped dashboard, with its variables as Grafana sends
/// them for "All" (`allValue` `.+`) and `$__rate_interval` as 1m, evaluated.
fn check_dashboard(prom: &Prometheus, stored: &BTreeSet<String>, instance: &str) {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join(DASHBOARD)).unwrap())
            .expect("the dashboard is JSON");
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");

    // Template variables: `label_values(metric, label)` answered by the label API.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let mut names = vec!["__rate_interval".to_string()];
    for var in variables {
        let name = var["name"].as_str().unwrap().to_string();
        if var["type"] == "query" {
            let def = var["definition"].as_str().unwrap();
            let args = def
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: {def}"));
            let (metric, label) = args.split_once(',').unwrap();
            let values = prom.api(&format!(
                "/api/v1/label/{}/values?match[]={}",
                label.trim(),
                metric.trim()
            ));
            let values: Vec<&str> = values["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str())
                .collect();
            assert!(!values.is_empty(), "variable {name}: {def} has no values");
            assert_eq!(var["allValue"], ".+", "{name}");
            if name == "instance" {
                assert!(values.contains(&instance), "{values:?}");
            }
            if name == "mode" {
                assert!(values.contains(&"enforce"), "{values:?}");
            }
        }
        names.push(name);
    }

    let mut checked = 0;
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("");
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{title}: datasource"
            );
            let expr = target["expr"].as_str().expect("expr");
            let mut query = expr.replace("$__rate_interval", "1m");
            for name in &names {
                query = query.replace(&format!("${{{name}}}"), ".+");
                query = query.replace(&format!("${name}"), ".+");
            }
            assert!(!query.contains('$'), "{title}: unknown variable in {expr}");
            let metric_names = consent_metric_names(&query);
            assert!(!metric_names.is_empty(), "{title}: {expr}");
            for name in metric_names {
                assert!(stored.contains(&name), "{title}: no series {name} ({expr})");
            }
            let result = prom
                .query(&query)
                .unwrap_or_else(|e| panic!("{title}: {query}: {e}"));
            if EXPECTED_EMPTY.contains(&title) {
                assert!(result.is_empty(), "{title}: {query}: {result:?}");
            } else {
                assert!(!result.is_empty(), "{title}: {query} returns no data");
                // Every label a panel groups by is one the series carry (a misspelt label
                // would group everything into one unlabelled series).
                for label in grouping_labels(&query) {
                    assert!(
                        result.iter().any(|s| !s.label(&label).is_empty()),
                        "{title}: no sample has the label {label}: {query}: {result:?}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} queries");
    for title in EXPECTED_EMPTY {
        assert!(
            panels.iter().any(|p| p["title"] == title),
            "no panel {title}"
        );
    }
}
