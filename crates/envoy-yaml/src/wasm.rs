//! The consent filter's wasm settings: the `.wasm` file, and the plugin configuration of an
//! HTTP filter together with the wasm bootstrap extensions (the consent fetcher) that run in
//! the same VM (`vm_config.vm_id`), which must compile the same configuration.

use saphyr::{MappingOwned, YamlOwned};

use crate::document::{at, at_mut, descendants, is_str, string, visit_mut, EnvoyYaml};
use crate::error::EditError;
use crate::http_filters::each_http_filter_mut;
use crate::native::FILTER_CONFIG;
use crate::plugin_configs::STRING_VALUE_TYPE;

/// Where a wasm filter or service keeps its plugin configuration: `typed_config.config`.
const CONFIG: [&str; 2] = ["typed_config", "config"];

/// The `configuration` mapping holding `json`.
fn configuration(json: &str) -> YamlOwned {
    let mut mapping = MappingOwned::new();
    mapping.insert(string("@type"), string(STRING_VALUE_TYPE));
    mapping.insert(string("value"), string(json));
    YamlOwned::Mapping(mapping)
}

/// Puts `json` as the plugin configuration of a wasm filter or service node, or of a
/// native dynamic-module filter (`typed_config.filter_config`).
fn set_configuration(node: &mut YamlOwned, json: &str) -> bool {
    if at(node, &FILTER_CONFIG).is_some() {
        if let Some(typed_config) =
            at_mut(node, &["typed_config"]).and_then(YamlOwned::as_mapping_mut)
        {
            typed_config.insert(string("filter_config"), configuration(json));
            return true;
        }
    }
    match at_mut(node, &CONFIG).and_then(YamlOwned::as_mapping_mut) {
        Some(config) => {
            config.insert(string("configuration"), configuration(json));
            true
        }
        None => false,
    }
}

/// The VM id of a wasm filter or service node.
fn vm_id(node: &YamlOwned) -> Option<String> {
    at(node, &["typed_config", "config", "vm_config", "vm_id"])
        .and_then(YamlOwned::as_str)
        .map(str::to_string)
}

impl EnvoyYaml {
    /// Sets every wasm `vm_config.code.local.filename`; returns how many.
    pub fn set_wasm_filename(&mut self, path: &str) -> usize {
        let mut changed = 0;
        visit_mut(&mut self.root, &mut |node| {
            if let Some(filename) = node
                .as_mapping_get_mut("vm_config")
                .and_then(|vm| at_mut(vm, &["code", "local", "filename"]))
            {
                *filename = string(path);
                changed += 1;
            }
        });
        changed
    }

    /// The plugin configuration text of the HTTP filter named `filter` (wasm, or native:
    /// `typed_config.filter_config`).
    pub fn plugin_config(&self, filter: &str) -> Result<String, EditError> {
        descendants(&self.root)
            .into_iter()
            .filter_map(|node| node.as_mapping_get("http_filters"))
            .filter_map(YamlOwned::as_sequence)
            .flatten()
            .filter(|f| is_str(f.as_mapping_get("name"), filter))
            .find_map(|f| {
                at(f, &["typed_config", "config", "configuration", "value"])
                    .or_else(|| at(f, &["typed_config", "filter_config", "value"]))
            })
            .and_then(YamlOwned::as_str)
            .map(str::to_string)
            .ok_or(EditError::NotFound(
                "plugin configuration in an HTTP filter of that name",
            ))
    }

    /// Replaces the plugin configuration of the wasm HTTP filter named `filter`, and of the
    /// wasm bootstrap extensions in the same VM; returns how many it set.
    pub fn set_plugin_config(&mut self, filter: &str, json: &str) -> Result<usize, EditError> {
        let (mut set, mut vm_ids) = (0, Vec::new());
        each_http_filter_mut(&mut self.root, filter, &mut |node| {
            if set_configuration(node, json) {
                set += 1;
                vm_ids.extend(vm_id(node));
            }
        });
        if set == 0 {
            return Err(EditError::NotFound("wasm HTTP filter of that name"));
        }
        if let Some(extensions) = self
            .root
            .as_mapping_get_mut("bootstrap_extensions")
            .and_then(YamlOwned::as_sequence_mut)
        {
            for extension in extensions {
                if vm_id(extension).is_some_and(|id| vm_ids.contains(&id))
                    && set_configuration(extension, json)
                {
                    set += 1;
                }
            }
        }
        Ok(set)
    }

    /// Replaces the plugin configuration of the wasm HTTP filter named `filter` (and of the
    /// bootstrap extensions in its VM) by `edit` of its text; returns how many it set.
    pub fn map_plugin_config(
        &mut self,
        filter: &str,
        edit: impl FnOnce(&str) -> String,
    ) -> Result<usize, EditError> {
        let json = edit(&self.plugin_config(filter)?);
        self.set_plugin_config(filter, &json)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DEMO: &str = include_str!("../../../envoy-config/envoy-demo.yaml");

    #[test]
    fn the_filter_and_the_fetcher_get_the_new_configuration() {
        let mut doc = EnvoyYaml::parse(DEMO).unwrap();
        let shipped = doc.plugin_config("consent").unwrap();
        assert!(shipped.contains("\"failure_mode\": \"block\""), "{shipped}");
        assert_eq!(
            doc.set_plugin_config("consent", "{\n  \"require_user\": false\n}\n")
                .unwrap(),
            2
        );
        let out = doc.to_yaml().unwrap();
        assert_eq!(out.matches("\"require_user\": false").count(), 2, "{out}");
        assert!(!out.contains("failure_mode"), "{out}");
        let found = crate::plugin_configurations(&out).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn an_edit_of_the_text_reaches_both_and_unknown_filters_are_errors() {
        let mut doc = EnvoyYaml::parse(DEMO).unwrap();
        let set = doc
            .map_plugin_config("consent", |json| {
                json.replace("\"refresh_ms\": 1000", "\"refresh_ms\": 200")
            })
            .unwrap();
        assert_eq!(set, 2);
        let out = doc.to_yaml().unwrap();
        assert_eq!(out.matches("\"refresh_ms\": 200").count(), 2, "{out}");
        assert_eq!(
            doc.set_plugin_config("nonesuch", "{}"),
            Err(EditError::NotFound("wasm HTTP filter of that name"))
        );
        assert!(doc.plugin_config("nonesuch").is_err());
    }

    #[test]
    fn every_wasm_filename_is_set() {
        let mut doc = EnvoyYaml::parse(DEMO).unwrap();
        assert_eq!(doc.set_wasm_filename("/abs/consent_filter.wasm"), 2);
        let out = doc.to_yaml().unwrap();
        assert_eq!(
            out.matches("filename: /abs/consent_filter.wasm").count(),
            2,
            "{out}"
        );
    }
}
