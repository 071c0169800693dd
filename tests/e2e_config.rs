//! End to end: every shipped Envoy config validates, and a bad plugin configuration stops
//! Envoy from starting with one log line that names the problem.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{
    envoy_command, free_port, localise, native_module_dir, repo_root, shipped_config, wasm_path,
    with_plugin_config, Envoy,
};

/// Every config in envoy-config/, the wasm ones and envoy-native.yaml, whichever build the
/// suite runs (both must be built).
#[test]
fn every_shipped_envoy_config_passes_envoy_validate() {
    wasm_path();
    native_module_dir();
    let dir = repo_root().join("envoy-config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = envoy_command()
            // envoy-native.yaml loads the module, whichever build the suite runs.
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_module_dir())
            .args(["--mode", "validate", "-c"])
            .arg(&path)
            .current_dir(repo_root())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} failed validation:\n{text}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no Envoy config found in envoy-config/");
}

#[test]
fn a_missing_or_stale_wasm_is_refused_with_what_to_run() {
    let dir = std::env::temp_dir().join(support::tag("wasm-check"));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("consent_filter.wasm");
    let missing = support::envoy::wasm_problem(&wasm).expect("missing is a problem");
    assert!(
        missing.contains("is missing") && missing.contains("make wasm"),
        "{missing}"
    );
    let file = std::fs::File::create(&wasm).unwrap();
    assert_eq!(
        support::envoy::wasm_problem(&wasm),
        None,
        "a fresh build is fine"
    );
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let stale = support::envoy::wasm_problem(&wasm).expect("an old build is a problem");
    assert!(
        stale.contains("is older than") && stale.contains("make wasm"),
        "{stale}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_or_stale_native_module_is_refused_with_what_to_run() {
    let dir = std::env::temp_dir().join(support::tag("native-check"));
    std::fs::create_dir_all(&dir).unwrap();
    let so = dir.join("libconsent_native.so");
    let missing = support::envoy::native_problem(&so).expect("missing is a problem");
    assert!(
        missing.contains("is missing") && missing.contains("make native"),
        "{missing}"
    );
    let file = std::fs::File::create(&so).unwrap();
    assert_eq!(
        support::envoy::native_problem(&so),
        None,
        "a fresh build is fine"
    );
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let stale = support::envoy::native_problem(&so).expect("an old build is a problem");
    assert!(
        stale.contains("is older than") && stale.contains("make native"),
        "{stale}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn rejected_with(plugin_config: &str) -> String {
    let (port, admin, backend) = (free_port(), free_port(), free_port());
    let yaml = localise(
        &shipped_config("envoy-demo.yaml"),
        port,
        admin,
        backend,
        backend,
    );
    let yaml = with_plugin_config(&yaml, plugin_config);
    let (code, stderr) = Envoy::wait_exit(&yaml, admin);
    assert!(
        matches!(code, Some(c) if c != 0),
        "envoy must refuse to start, got {code:?}\n{stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("consent filter configuration rejected"))
        .collect();
    assert!(!lines.is_empty(), "no rejection line in:\n{stderr}");
    lines[0].to_string()
}

#[test]
fn an_unknown_key_stops_the_filter_from_loading() {
    let line = rejected_with(r#"{"require_usr": false}"#);
    assert!(line.contains("unknown field `require_usr`"), "{line}");
}

#[test]
fn an_unknown_purpose_id_stops_the_filter_from_loading() {
    let line = rejected_with(
        r#"{"consents": {"records": [{"subject": "u-secret", "grants": {"marketing.campains": {"policy_version": 1}}}]}}"#,
    );
    assert!(
        line.contains("consents.records[0].grants.marketing.campains"),
        "{line}"
    );
    assert!(line.contains("unknown purpose"), "{line}");
    assert!(!line.contains("u-secret"), "no subject in logs: {line}");
}

#[test]
fn malformed_json_stops_the_filter_from_loading() {
    let line = rejected_with(r#"{"require_user": tru"#);
    assert!(line.contains("rejected"), "{line}");
}

#[test]
fn an_operator_policy_with_an_unknown_category_stops_the_filter_from_loading() {
    let line = rejected_with(
        r#"{"policy": {"id": "p", "version": 1, "categories": [], "purposes": [{"id": "a", "label": {"ja": "a", "en": "a"}, "basis": "notice", "categories": ["gps"]}]}}"#,
    );
    assert!(line.contains("policy.purposes[0].categories[0]"), "{line}");
}
