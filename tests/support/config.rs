//! Edits of the shipped Envoy config for the tests, made on the parsed document with
//! envoy-yaml (the output is YAML Envoy reads; comments go and aliases are expanded).
//! Edits of the plugin configuration's JSON text stay text edits, as in the tests.

use std::path::Path;

use envoy_yaml::{EditError, EnvoyYaml};

use super::envoy::{build, native_module_dir, wasm_path, Build};

/// The consent filter's name in the demo's HTTP filter chain.
pub const CONSENT_FILTER: &str = "consent";

/// The demo's listener.
const LISTENER: &str = "ingress";

/// The shipped ports: listener, admin, demo backend, consent source.
const SHIPPED_PORTS: [u16; 4] = [10000, 9901, 8081, 8082];

/// Parses `yaml`, applies `edit` and writes the document back.
pub fn edit_yaml(yaml: &str, edit: impl FnOnce(&mut EnvoyYaml) -> Result<(), EditError>) -> String {
    let mut doc = EnvoyYaml::parse(yaml).unwrap_or_else(|e| panic!("Envoy config: {e}"));
    edit(&mut doc).unwrap_or_else(|e| panic!("Envoy config edit: {e}"));
    doc.to_yaml()
        .unwrap_or_else(|e| panic!("Envoy config: {e}"))
}

/// The native module's name (`libconsent_native.so`).
pub const NATIVE_MODULE: &str = "consent_native";

/// Points a shipped config at test ports and the built `.wasm` (the consent source at
/// `source`, which may be the backend's port when it plays the source). Under
/// `CONSENT_FILTER_BUILD=native` the consent filter becomes the native module with the same
/// plugin configuration, and the wasm fetcher goes (envoy-native.yaml's shape).
pub fn localise(yaml: &str, listen: u16, admin: u16, backend: u16, source: u16) -> String {
    let build = build();
    let wasm = match build {
        Build::Wasm => wasm_path().display().to_string(),
        Build::Native => {
            native_module_dir();
            String::new()
        }
    };
    edit_yaml(yaml, |doc| {
        let ports = SHIPPED_PORTS
            .into_iter()
            .zip([listen, admin, backend, source]);
        let changed: usize = ports.map(|(from, to)| doc.replace_port(from, to)).sum();
        let files = match build {
            Build::Wasm => doc.set_wasm_filename(&wasm),
            // A document without the filter (a bootstrap whose listeners are in LDS) has
            // nothing to turn native.
            Build::Native => match doc.use_native_module(CONSENT_FILTER, NATIVE_MODULE) {
                Ok(n) => n,
                Err(EditError::NotFound(_)) => 0,
                Err(e) => return Err(e),
            },
        };
        assert!(
            changed + files > 0,
            "ports or the filter not found in the config"
        );
        Ok(())
    })
}

/// Points every socket address on port `from` at `to` (e.g. the demo gRPC backend).
pub fn with_port(yaml: &str, from: u16, to: u16) -> String {
    edit_yaml(yaml, |doc| {
        assert!(
            doc.replace_port(from, to) > 0,
            "no socket address on port {from}"
        );
        Ok(())
    })
}

/// Replaces the consent filter's plugin configuration (and the fetcher's, which runs in
/// the same VM) with `json`.
pub fn with_plugin_config(yaml: &str, json: &str) -> String {
    edit_yaml(yaml, |doc| {
        doc.set_plugin_config(CONSENT_FILTER, json).map(drop)
    })
}

/// Edits the text of the consent filter's plugin configuration (and the fetcher's).
pub fn map_plugin_config(yaml: &str, edit: impl FnOnce(&str) -> String) -> String {
    edit_yaml(yaml, |doc| {
        doc.map_plugin_config(CONSENT_FILTER, edit).map(drop)
    })
}

/// Removes the consent filter from the HTTP filter chain (for control experiments).
pub fn without_filter(yaml: &str) -> String {
    edit_yaml(yaml, |doc| doc.remove_http_filter(CONSENT_FILTER))
}

/// The demo config without the bootstrap singleton: the filter's workers fetch under a lease.
/// (The native module fetches once per process whatever `snapshot.fetcher` says; the
/// setting is added all the same.)
pub fn worker_lease(yaml: &str) -> String {
    edit_yaml(yaml, |doc| {
        match doc.remove_top_level("bootstrap_extensions") {
            Err(EditError::NotFound(_)) if build() == Build::Native => {}
            other => other?,
        }
        doc.map_plugin_config(CONSENT_FILTER, |json| {
            let failure_mode = "\"failure_mode\": \"block\"";
            let out = json.replacen(
                failure_mode,
                &format!("{failure_mode},\n    \"fetcher\": \"worker_lease\""),
                1,
            );
            assert_ne!(
                out, json,
                "no snapshot failure_mode in the plugin configuration"
            );
            out
        })
        .map(drop)
    })
}

/// Makes the demo listener TLS with `socket` (the `transport_socket` value, YAML text).
pub fn with_transport_socket(yaml: &str, socket: &str) -> String {
    edit_yaml(yaml, |doc| doc.set_transport_socket(LISTENER, socket))
}

/// Splits a config into a bootstrap that reads its listeners from the watched file
/// `dir/lds.yaml`, and that file's first content (version 1).
pub fn split_lds(yaml: &str, dir: &Path) -> (String, String) {
    let mut lds = None;
    let boot = edit_yaml(yaml, |doc| {
        lds = Some(doc.take_listeners_as_lds("1")?);
        doc.set_top_level("node", "{ id: consent-e2e, cluster: consent-e2e }")?;
        doc.set_top_level(
            "dynamic_resources",
            &format!(
                "{{ lds_config: {{ resource_api_version: V3, path_config_source: {{ path: \"{}\", watched_directory: {{ path: \"{}\" }} }} }} }}",
                dir.join("lds.yaml").display(),
                dir.display()
            ),
        )
    });
    let lds = lds
        .expect("listeners taken")
        .to_yaml()
        .unwrap_or_else(|e| panic!("LDS file: {e}"));
    (boot, lds)
}
