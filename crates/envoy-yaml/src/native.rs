//! The consent filter as a native Envoy dynamic module: turning the wasm HTTP filter of a
//! document into the `DynamicModuleFilter` of `libconsent_native.so` with the same plugin
//! configuration (what the end-to-end tests run with `CONSENT_FILTER_BUILD=native`, and
//! how `envoy-config/envoy-native.yaml` relates to `envoy-demo.yaml`).

use saphyr::{MappingOwned, YamlOwned};

use crate::document::{at, string, EnvoyYaml};
use crate::error::EditError;
use crate::http_filters::each_http_filter_mut;
use crate::plugin_configs::STRING_VALUE_TYPE;

/// The protobuf type of Envoy's dynamic-module HTTP filter.
pub const DYNAMIC_MODULE_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// Where a dynamic-module filter keeps its plugin configuration: `typed_config.filter_config`.
pub(crate) const FILTER_CONFIG: [&str; 2] = ["typed_config", "filter_config"];

fn mapping(entries: Vec<(&str, YamlOwned)>) -> YamlOwned {
    let mut map = MappingOwned::new();
    for (key, value) in entries {
        map.insert(string(key), value);
    }
    YamlOwned::Mapping(map)
}

/// The `typed_config` of the dynamic-module filter `filter_name` of module `module`.
fn native_typed_config(module: &str, filter_name: &str, json: &str) -> YamlOwned {
    mapping(vec![
        ("@type", string(DYNAMIC_MODULE_FILTER_TYPE)),
        (
            "dynamic_module_config",
            mapping(vec![
                ("name", string(module)),
                (
                    "do_not_close",
                    YamlOwned::Value(saphyr::ScalarOwned::Boolean(true)),
                ),
            ]),
        ),
        ("filter_name", string(filter_name)),
        (
            "filter_config",
            mapping(vec![
                ("@type", string(STRING_VALUE_TYPE)),
                ("value", string(json)),
            ]),
        ),
    ])
}

fn vm_id(node: &YamlOwned) -> Option<String> {
    at(node, &["typed_config", "config", "vm_config", "vm_id"])
        .and_then(YamlOwned::as_str)
        .map(str::to_string)
}

impl EnvoyYaml {
    /// Replaces every wasm HTTP filter named `filter` by the dynamic module `module` (found
    /// as `lib<module>.so` on `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`) with the same plugin
    /// configuration, and removes the wasm bootstrap extensions of their VMs (the consent
    /// fetcher: the module fetches the snapshot itself). Returns how many filters changed.
    pub fn use_native_module(&mut self, filter: &str, module: &str) -> Result<usize, EditError> {
        let (mut changed, mut vm_ids) = (0, Vec::new());
        each_http_filter_mut(&mut self.root, filter, &mut |node| {
            let Some(json) = at(node, &["typed_config", "config", "configuration", "value"])
                .and_then(YamlOwned::as_str)
                .map(str::to_string)
            else {
                return;
            };
            vm_ids.extend(vm_id(node));
            if let Some(map) = node.as_mapping_mut() {
                map.insert(
                    string("typed_config"),
                    native_typed_config(module, filter, &json),
                );
                changed += 1;
            }
        });
        if changed == 0 {
            return Err(EditError::NotFound("wasm HTTP filter of that name"));
        }
        let mut none_left = false;
        if let Some(extensions) = self
            .root
            .as_mapping_get_mut("bootstrap_extensions")
            .and_then(YamlOwned::as_sequence_mut)
        {
            extensions.retain(|e| !vm_id(e).is_some_and(|id| vm_ids.contains(&id)));
            none_left = extensions.is_empty();
        }
        if none_left {
            self.remove_top_level("bootstrap_extensions")?;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DEMO: &str = include_str!("../../../envoy-config/envoy-demo.yaml");
    const NATIVE: &str = include_str!("../../../envoy-config/envoy-native.yaml");

    fn filter_typed_config(doc: &EnvoyYaml) -> YamlOwned {
        let yaml = doc.to_yaml().unwrap();
        let reparsed = EnvoyYaml::parse(&yaml).unwrap();
        crate::document::descendants(&reparsed.root)
            .into_iter()
            .filter_map(|n| n.as_mapping_get("http_filters"))
            .filter_map(YamlOwned::as_sequence)
            .flatten()
            .find(|f| crate::document::is_str(f.as_mapping_get("name"), "consent"))
            .and_then(|f| f.as_mapping_get("typed_config"))
            .cloned()
            .unwrap()
    }

    #[test]
    fn the_demo_made_native_is_the_shipped_native_config() {
        let mut demo = EnvoyYaml::parse(DEMO).unwrap();
        assert_eq!(
            demo.use_native_module("consent", "consent_native").unwrap(),
            1
        );
        let native = EnvoyYaml::parse(NATIVE).unwrap();
        assert_eq!(filter_typed_config(&demo), filter_typed_config(&native));
        assert_eq!(
            demo.plugin_config("consent").unwrap(),
            native.plugin_config("consent").unwrap()
        );
        let out = demo.to_yaml().unwrap();
        assert!(!out.contains("bootstrap_extensions"), "{out}");
        assert!(!out.contains("envoy.filters.http.wasm.v3.Wasm"), "{out}");
        // Listeners, routes and clusters are the demo's.
        for doc in [&demo, &native] {
            let text = doc.to_yaml().unwrap();
            for port in [
                "port_value: 10000",
                "port_value: 9901",
                "port_value: 8081",
                "port_value: 8082",
                "port_value: 8083",
            ] {
                assert!(text.contains(port), "{port}");
            }
        }
    }

    #[test]
    fn the_native_plugin_configuration_is_read_and_replaced_like_the_wasm_one() {
        let mut doc = EnvoyYaml::parse(NATIVE).unwrap();
        assert!(doc
            .plugin_config("consent")
            .unwrap()
            .contains("\"failure_mode\": \"block\""));
        assert_eq!(doc.set_plugin_config("consent", "{}").unwrap(), 1);
        assert_eq!(doc.plugin_config("consent").unwrap(), "{}");
        assert_eq!(
            doc.use_native_module("consent", "x"),
            Err(EditError::NotFound("wasm HTTP filter of that name"))
        );
    }
}
