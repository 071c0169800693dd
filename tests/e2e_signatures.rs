//! End to end: signed snapshots and keys from the Wasm VM's environment, through real
//! Envoy. The demo backend plays the consent source and signs what it serves with the
//! demo key the shipped configuration trusts (header, and `.minisig` files); the tests
//! tamper with snapshots and deltas, sign with another key, drop the signature and replay
//! an older snapshot, and check that decisions stay on the last good snapshot. Then keys
//! delivered through `vm_config.environment_variables`, and no key value in any log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use consent_core::live::SubjectKeying;
use consent_tools::signing::Signer;
use serde_json::Value;
use support::{
    demo_consents, free_port, localise, map_plugin_config, send, shipped_config, start_demo_signed,
    start_demo_with, wait_until, Envoy, Fixture, Req, SnapshotState,
};

/// Fast refresh and a short staleness bound.
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

/// The demo consents at `version`; with `bob_surveys`, bob granted surveys.
fn consents(version: u64, bob_surveys: bool) -> String {
    let mut doc: Value = serde_json::from_str(&demo_consents()).unwrap();
    doc["version"] = version.into();
    if bob_surveys {
        let bob = doc["records"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|r| r["subject"] == "u-bob")
            .unwrap();
        bob["grants"]["surveys"] = serde_json::json!({"policy_version": 1});
    }
    doc.to_string()
}

/// A delta from `from` granting (or withdrawing) bob's surveys.
fn bob_delta(from: u64, grant: bool) -> String {
    let grants = if grant {
        serde_json::json!({"surveys": {"policy_version": 1}})
    } else {
        serde_json::json!({})
    };
    serde_json::json!({"from_version": from, "version": from + 1,
        "upserts": [{"subject": "u-bob", "grants": grants}]})
    .to_string()
}

fn stat(f: &Fixture, name: &str) -> u64 {
    let text = support::curl(&[&format!(
        "http://127.0.0.1:{}/stats?filter={name}$",
        f.envoy.admin
    )])
    .text();
    text.lines()
        .find_map(|l| l.rsplit(": ").next()?.trim().parse().ok())
        .unwrap_or(0)
}

fn bob_surveys(f: &Fixture) -> (u16, String) {
    reason(f, "u-bob", "surveys")
}

/// A full-snapshot source (no deltas) at version 1, bob without surveys.
fn full_snapshots() -> Fixture {
    let f = start_demo_with(fast, SnapshotState::Serve(consents(1, false)), true);
    assert_eq!(bob_surveys(&f), (403, "consent_missing".into()));
    f
}

/// For `hold`, bob stays refused surveys, and version `version` stays published.
fn stays_on_last_good(f: &Fixture, version: u64, hold: Duration) {
    let started = Instant::now();
    while started.elapsed() < hold {
        assert_eq!(bob_surveys(f), (403, "consent_missing".into()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stat(f, "consent_snapshot_version"), version);
}

#[test]
fn signed_snapshots_and_deltas_are_taken_from_the_header_or_the_minisig_file() {
    let f = start_demo_signed(fast, SnapshotState::Serve(consents(1, false)), true);
    assert_eq!(bob_surveys(&f), (403, "consent_missing".into()));
    f.backend
        .set_delta(1, Some(SnapshotState::Serve(bob_delta(1, true))));
    assert!(wait_until(Duration::from_secs(5), || bob_surveys(&f).0 == 200));
    assert_eq!(stat(&f, "consent_snapshot_version"), 2);
    // Static files signed with `minisign -S`: no header, the .minisig next to each file.
    f.backend.signature_header(false);
    f.backend
        .set_delta(2, Some(SnapshotState::Serve(bob_delta(2, false))));
    assert!(wait_until(Duration::from_secs(5), || bob_surveys(&f).0 == 403));
    assert_eq!(stat(&f, "consent_snapshot_version"), 3);
    assert_eq!(stat(&f, "consent_snapshot_signature_rejected"), 0);
    assert_eq!(stat(&f, "consent_snapshot_rejected"), 0);
}

#[test]
fn a_tampered_snapshot_is_refused_and_decisions_stay_on_the_last_good_one() {
    let f = full_snapshots();
    // bob "granted" surveys in a version-2 body carrying the signature of the genuine one.
    f.backend.set_snapshot(SnapshotState::Forged {
        body: consents(2, true),
        signed: consents(2, false),
    });
    assert!(wait_until(Duration::from_secs(3), || stat(
        &f,
        "consent_snapshot_signature_rejected"
    ) > 0));
    stays_on_last_good(&f, 1, Duration::from_millis(800));
    assert!(
        stat(&f, "consent_snapshot_rejected") >= stat(&f, "consent_snapshot_signature_rejected")
    );
    assert!(
        wait_until(Duration::from_secs(6), || bob_surveys(&f)
            == (403, "snapshot_stale".into())),
        "past the bound the failure mode applies"
    );
    assert!(f
        .envoy
        .log_text()
        .contains("snapshot rejected: the signature does not match the document"));
    f.backend
        .set_snapshot(SnapshotState::Serve(consents(3, true)));
    assert!(
        wait_until(Duration::from_secs(5), || bob_surveys(&f).0 == 200),
        "a genuine snapshot is taken again"
    );
}

#[test]
fn a_tampered_delta_is_refused_and_decisions_stay_on_the_last_good_snapshot() {
    let f = start_demo_signed(fast, SnapshotState::Serve(consents(1, false)), true);
    f.backend.set_delta(
        1,
        Some(SnapshotState::Forged {
            body: bob_delta(1, true),
            signed: bob_delta(1, false),
        }),
    );
    assert!(wait_until(Duration::from_secs(3), || stat(
        &f,
        "consent_snapshot_signature_rejected"
    ) > 0));
    // Each refused delta makes the next fetch a full one: the genuine version 1 again, so
    // the snapshot stays fresh and bob stays refused.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        assert_eq!(bob_surveys(&f), (403, "consent_missing".into()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stat(&f, "consent_snapshot_version"), 1);
    assert!(f
        .envoy
        .log_text()
        .contains("delta rejected: the signature does not match"));
}

#[test]
fn a_snapshot_signed_with_another_key_is_refused() {
    let f = full_snapshots();
    f.backend.sign_with(Some(Signer::generate().unwrap()));
    f.backend
        .set_snapshot(SnapshotState::Serve(consents(2, true)));
    assert!(wait_until(Duration::from_secs(3), || stat(
        &f,
        "consent_snapshot_signature_rejected"
    ) > 0));
    stays_on_last_good(&f, 1, Duration::from_millis(800));
    assert!(f.envoy.log_text().contains("signed with another key"));
}

#[test]
fn an_unsigned_snapshot_is_refused() {
    let f = full_snapshots();
    f.backend.sign_with(None);
    f.backend
        .set_snapshot(SnapshotState::Serve(consents(2, true)));
    assert!(wait_until(Duration::from_secs(3), || stat(
        &f,
        "consent_snapshot_signature_rejected"
    ) > 0));
    stays_on_last_good(&f, 1, Duration::from_millis(800));
    assert!(f
        .envoy
        .log_text()
        .contains("snapshot rejected: no signature"));
}

#[test]
fn a_replayed_older_snapshot_is_refused_and_decisions_stay_on_the_newer_one() {
    let f = full_snapshots();
    let granted = consents(2, true);
    f.backend
        .set_snapshot(SnapshotState::Serve(granted.clone()));
    assert!(wait_until(Duration::from_secs(5), || bob_surveys(&f).0 == 200));
    // bob withdraws in version 3...
    f.backend
        .set_snapshot(SnapshotState::Serve(consents(3, false)));
    assert!(wait_until(Duration::from_secs(5), || bob_surveys(&f).0 == 403));
    // ...and version 2, genuinely signed, is served again.
    let rejected_before = stat(&f, "consent_snapshot_rejected");
    f.backend.set_snapshot(SnapshotState::Serve(granted));
    // Within the same bound as the other fetches here: on a loaded machine (CI runs suites
    // side by side) the next fetch and the stat can take more than 3 s.
    assert!(wait_until(Duration::from_secs(5), || stat(
        &f,
        "consent_snapshot_rejected"
    ) > rejected_before));
    stays_on_last_good(&f, 3, Duration::from_millis(800));
    assert_eq!(stat(&f, "consent_snapshot_signature_rejected"), 0);
    assert!(f
        .envoy
        .log_text()
        .contains("version 2 is older than version 3 already published"));
}

/// Keys of the environment test: long, and unique enough to grep for.
struct Keys {
    subject: String,
    pseudonym: String,
    log: String,
}

impl Keys {
    fn new() -> Self {
        let n = std::process::id();
        Keys {
            subject: format!("e2e-subject-key-{n}-Qx7"),
            pseudonym: format!("e2e-pseudonym-key-{n}-Wz3"),
            log: format!("e2e-decision-log-key-{n}-Pk9"),
        }
    }
}

/// The shipped config with every key read from the VM's environment: the secrets from
/// Envoy's own environment (`host_env_keys`, as Istio's `valueFrom: HOST` and Envoy
/// Gateway's `hostKeys`), the public key from `key_values`; HMAC-keyed subjects.
fn env_config(yaml: &str) -> String {
    let yaml = map_plugin_config(&fast(yaml), |json| {
        let json = json.replace(
            "\"pseudonymisation_key\": \"demo-only-key-change-me-0123456789\"",
            "\"pseudonymisation_key\": {\"env\": \"CONSENT_PSEUDONYMISATION_KEY\"}",
        );
        let json = json.replace(
            "\"decision_log\": { \"enabled\": true,",
            "\"decision_log\": { \"enabled\": true, \"subject_key_secret\": {\"env\": \"CONSENT_DECISION_LOG_KEY\"},",
        );
        let json = json.replace(
            "\"source\": \"shared\",",
            "\"source\": \"shared\", \"subject_key\": \"hmac_sha256\", \"subject_key_secret\": {\"env\": \"CONSENT_SUBJECT_KEY_SECRET\"},",
        );
        // With HMAC subjects the ledger files people under the subject key secret.
        let json = json.replace(
            "\"ledger\": { \"enabled\": true, \"subject_key_secret\": \"demo-ledger-key-not-a-secret\" }",
            "\"ledger\": { \"enabled\": true }",
        );
        let public = "\"public_key\": \"RWR7uziaBNnDYPj8HxSyC6nLQAdQIgKoGm9RoAit5B7jSyNrB+PK7cek\"";
        assert!(json.contains(public), "the shipped public key");
        json.replace(
            public,
            "\"public_key\": {\"env\": \"CONSENT_SNAPSHOT_PUBLIC_KEY\"}",
        )
    });
    with_vm_env(&yaml)
}

/// The demo's public key, also in Envoy's own environment: the wasm VMs read it from
/// `key_values`, the native module (which has no VM) reads every `{"env": ...}` from there.
const NATIVE_PUBLIC_KEY_ENV: &str = "RWR7uziaBNnDYPj8HxSyC6nLQAdQIgKoGm9RoAit5B7jSyNrB+PK7cek";

/// Adds the VM environment to every `vm_config` (the fetcher's and the filter's). The
/// native module has no VM: it reads the same variables from Envoy's own environment.
fn with_vm_env(yaml: &str) -> String {
    if support::build() == support::Build::Native {
        return yaml.to_string();
    }
    let mut out = String::new();
    let mut added = 0;
    for line in yaml.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == "runtime: envoy.wasm.runtime.v8" {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!(
                "{indent}environment_variables:\n{indent}  host_env_keys: [CONSENT_SUBJECT_KEY_SECRET, CONSENT_PSEUDONYMISATION_KEY, CONSENT_DECISION_LOG_KEY]\n{indent}  key_values: {{ CONSENT_SNAPSHOT_PUBLIC_KEY: \"RWR7uziaBNnDYPj8HxSyC6nLQAdQIgKoGm9RoAit5B7jSyNrB+PK7cek\" }}\n"
            ));
            added += 1;
        }
    }
    assert_eq!(added, 2, "the fetcher's and the filter's vm_config");
    out
}

/// The demo consents with subjects keyed by HMAC-SHA-256 under `key`.
fn hmac_consents(key: &str) -> String {
    let keying = SubjectKeying::Hmac(key.as_bytes().to_vec());
    let mut doc: Value = serde_json::from_str(&demo_consents()).unwrap();
    doc["subject_key"] = "hmac_sha256".into();
    for r in doc["records"].as_array_mut().unwrap() {
        let subject = r["subject"].as_str().unwrap().to_string();
        r["subject"] = keying.subject_for(&subject).into();
    }
    doc.to_string()
}

#[test]
fn keys_from_the_vm_environment_work_and_no_key_value_reaches_a_log() {
    let keys = Keys::new();
    let env = [
        ("CONSENT_SUBJECT_KEY_SECRET", keys.subject.as_str()),
        ("CONSENT_PSEUDONYMISATION_KEY", keys.pseudonym.as_str()),
        ("CONSENT_DECISION_LOG_KEY", keys.log.as_str()),
        ("CONSENT_SNAPSHOT_PUBLIC_KEY", NATIVE_PUBLIC_KEY_ENV),
    ];
    let backend = consent_tools::demo_backend::DemoBackend::start_with_snapshot(
        "127.0.0.1:0",
        SnapshotState::Serve(hmac_consents(&keys.subject)),
    )
    .unwrap();
    backend.sign_with(Some(support::demo_signer()));
    let backend_port = backend.addr().unwrap().port();
    let (port, admin) = (free_port(), free_port());
    let yaml = env_config(&localise(
        &shipped_config("envoy-demo.yaml"),
        port,
        admin,
        backend_port,
        backend_port,
    ));
    let yaml = map_plugin_config(&yaml, |json| {
        json.replace("\"deltas_path\": \"/deltas\",", "")
    });
    let envoy = Envoy::start_with_env(&yaml, port, admin, &env).unwrap_or_else(|e| panic!("{e}"));
    let f = Fixture {
        backend,
        envoy,
        source: None,
        client_tls: None,
    };
    // HMAC-keyed subjects only match with the secret the VM read from its environment.
    assert!(
        wait_until(Duration::from_secs(15), || reason(
            &f,
            "u-alice",
            "marketing.newsletters"
        )
        .0 == 200),
        "{}",
        f.envoy.log_text()
    );
    assert_eq!(bob_surveys(&f), (403, "consent_missing".into()));
    assert_eq!(
        reason(&f, "u-carol", "support.inquiries"),
        (403, "use_stopped".into())
    );
    // Bad requests too: no user, an unknown purpose, a hostile user header, a body.
    for req in [
        Req::get("/echo").header("x-data-purpose", "surveys"),
        Req::get("/echo").who("u-alice", "no.such.purpose"),
        Req::get("/echo").who(&keys.subject, "surveys"),
        Req::get("/echo?lat=35.86")
            .who("u-bob", "service.improvement")
            .header("x-geo-position", "35.8617,139.6455"),
    ] {
        let (r, _) = send(&f, req);
        assert!(r.status == 200 || r.status == 403, "{}", r.status);
    }
    let (r, _) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "service.improvement")
            .json(r#"{"email":"b@example.jp","gps":{"lat":35.8617,"lng":139.6455}}"#),
    );
    assert_eq!(r.status, 200);
    // The decision log's subject is keyed with the decision-log key from the environment.
    let log_key = keys.log.clone();
    let want = consent_core::compile_config_with_env(
        br#"{"decision_log": {"subject_key_secret": {"env": "K"}}}"#,
        &|_| Some(log_key.clone()),
    )
    .unwrap()
    .decision_log
    .subject_hash("u-alice")
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(3), || f
            .envoy
            .log_text()
            .contains(&format!("\"subject\":\"{want}\""))),
        "no decision line keyed with the environment's key"
    );
    std::thread::sleep(Duration::from_millis(300));
    let all = f.envoy.all_output();
    assert!(
        all.contains("consent_decision "),
        "decision lines are logged"
    );
    for (name, value) in env {
        assert!(!all.contains(value), "{name}'s value is in Envoy's output");
    }
    assert!(
        !all.contains("RWR7uziaBNnDYPj8HxSyC6nLQAdQIgKoGm9RoAit5B7jSyNrB+PK7cek"),
        "the public key is in Envoy's output"
    );
    assert!(
        !all.contains("is written in the configuration"),
        "no key is inline"
    );

    // A key too short in the environment: Envoy refuses the configuration, naming the
    // field and the variable, never the value.
    let short = "short-e2e-Zq1";
    let env = [
        ("CONSENT_SUBJECT_KEY_SECRET", short),
        ("CONSENT_PSEUDONYMISATION_KEY", keys.pseudonym.as_str()),
        ("CONSENT_DECISION_LOG_KEY", keys.log.as_str()),
        ("CONSENT_SNAPSHOT_PUBLIC_KEY", NATIVE_PUBLIC_KEY_ENV),
    ];
    let (port, admin) = (free_port(), free_port());
    let yaml = env_config(&localise(
        &shipped_config("envoy-demo.yaml"),
        port,
        admin,
        backend_port,
        backend_port,
    ));
    let (code, stderr) = Envoy::wait_exit_with_env(&yaml, admin, &env);
    assert!(matches!(code, Some(c) if c != 0), "{code:?}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("consent filter configuration rejected"))
        .unwrap_or_else(|| panic!("no rejection line:\n{stderr}"));
    assert!(
        line.contains("snapshot.subject_key_secret")
            && line.contains("`CONSENT_SUBJECT_KEY_SECRET`")
            && line.contains("shorter than 16 bytes"),
        "{line}"
    );
    for value in [short, keys.pseudonym.as_str(), keys.log.as_str()] {
        assert!(!stderr.contains(value), "a key value in:\n{stderr}");
    }
    // And a variable the VM does not have.
    let (code, stderr) = Envoy::wait_exit_with_env(&yaml, admin, &env[1..]);
    assert!(matches!(code, Some(c) if c != 0), "{code:?}");
    assert!(
        stderr.contains("`CONSENT_SUBJECT_KEY_SECRET` is not set in the Wasm VM"),
        "{stderr}"
    );
}
