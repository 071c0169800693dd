//! The plugin configurations embedded in the deployment manifests (deploy/) compile with
//! consent-core, exactly as the filter's `on_configure` would compile them.
//!
//! `make validate-deploy` extracts them (scripts/validate_manifests.py writes one JSON file
//! per configuration and an `index.txt` of `file<TAB>origin` lines, as Istio, Envoy Gateway
//! or Envoy would hand them to the filter) and runs this test with `CONSENT_DEPLOY_CONFIGS`
//! set to that directory. Without the variable there is nothing to read and the test only
//! says so, so that `cargo test` on its own stays self-contained. Keys written
//! `{"env": "NAME"}` are resolved from `env.json` there (test values for the variables each
//! manifest declares for its VM, as the script checked).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;

#[test]
fn deploy_manifest_plugin_configs_compile() {
    let Some(dir) = std::env::var_os("CONSENT_DEPLOY_CONFIGS") else {
        eprintln!(
            "CONSENT_DEPLOY_CONFIGS is not set (make validate-deploy sets it): nothing checked"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let index = std::fs::read_to_string(dir.join("index.txt"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("index.txt").display()));
    let env: std::collections::BTreeMap<String, String> = match std::fs::read(dir.join("env.json"))
    {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("env.json: a map of strings"),
        Err(_) => Default::default(),
    };
    let lookup = |name: &str| env.get(name).cloned();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let (file, origin) = line.split_once('\t').unwrap_or((line, line));
        let bytes = std::fs::read(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
        checked += 1;
        match consent_core::compile_config_with_env(&bytes, &lookup) {
            Ok(_) => println!("OK   {origin}: plugin configuration compiles"),
            Err(e) => failures.push(format!("BAD  {origin}: {e}")),
        }
    }
    assert!(
        checked > 0,
        "{} lists no configuration",
        dir.join("index.txt").display()
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} plugin configurations in deploy/ are rejected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
