//! Listeners: TLS on a listener's filter chains, and the listeners moved out of the
//! bootstrap into a listener discovery (LDS) file.

use saphyr::{MappingOwned, YamlOwned};

use crate::document::{at_mut, is_str, parse_fragment, string, EnvoyYaml};
use crate::error::EditError;

/// The type URL of a listener resource in an LDS file.
const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

impl EnvoyYaml {
    /// Sets the `transport_socket` (YAML text of its value) of every filter chain of the
    /// static listener named `listener`.
    pub fn set_transport_socket(&mut self, listener: &str, socket: &str) -> Result<(), EditError> {
        let socket = parse_fragment(socket)?;
        let chains = at_mut(&mut self.root, &["static_resources", "listeners"])
            .and_then(YamlOwned::as_sequence_mut)
            .and_then(|listeners| {
                listeners
                    .iter_mut()
                    .find(|l| is_str(l.as_mapping_get("name"), listener))
            })
            .and_then(|l| l.as_mapping_get_mut("filter_chains"))
            .and_then(YamlOwned::as_sequence_mut)
            .filter(|chains| !chains.is_empty())
            .ok_or(EditError::NotFound(
                "listener of that name with filter chains",
            ))?;
        for chain in chains {
            chain
                .as_mapping_mut()
                .ok_or(EditError::NotFound("filter chain mapping"))?
                .insert(string("transport_socket"), socket.clone());
        }
        Ok(())
    }

    /// Takes the static listeners out of the document and returns them as the content of an
    /// LDS file at `version_info` (each listener a resource with its `@type`).
    pub fn take_listeners_as_lds(&mut self, version_info: &str) -> Result<EnvoyYaml, EditError> {
        let listeners = self
            .root
            .as_mapping_get_mut("static_resources")
            .and_then(YamlOwned::as_mapping_mut)
            .and_then(|resources| resources.remove(&string("listeners")))
            .and_then(|listeners| match listeners {
                YamlOwned::Sequence(items) => Some(items),
                _ => None,
            })
            .ok_or(EditError::NotFound("static listeners"))?;
        let resources = listeners
            .into_iter()
            .map(|listener| {
                let mut resource = MappingOwned::new();
                resource.insert(string("@type"), string(LISTENER_TYPE));
                if let YamlOwned::Mapping(fields) = listener {
                    resource.extend(fields);
                }
                YamlOwned::Mapping(resource)
            })
            .collect();
        let mut lds = MappingOwned::new();
        lds.insert(string("version_info"), string(version_info));
        lds.insert(string("resources"), YamlOwned::Sequence(resources));
        Ok(EnvoyYaml {
            root: YamlOwned::Mapping(lds),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DEMO: &str = include_str!("../../../envoy-config/envoy-demo.yaml");

    #[test]
    fn the_listener_gets_tls_on_its_filter_chain() {
        let mut doc = EnvoyYaml::parse(DEMO).unwrap();
        doc.set_transport_socket("ingress", "{ name: envoy.transport_sockets.tls }")
            .unwrap();
        let out = doc.to_yaml().unwrap();
        assert!(
            out.contains("transport_socket:\n            name: envoy.transport_sockets.tls"),
            "{out}"
        );
        assert_eq!(
            doc.set_transport_socket("egress", "{}"),
            Err(EditError::NotFound(
                "listener of that name with filter chains"
            ))
        );
    }

    #[test]
    fn the_listeners_move_to_an_lds_file() {
        let mut boot = EnvoyYaml::parse(DEMO).unwrap();
        let lds = boot.take_listeners_as_lds("1").unwrap();
        let (boot, lds) = (boot.to_yaml().unwrap(), lds.to_yaml().unwrap());
        assert!(!boot.contains("listeners"), "{boot}");
        assert!(boot.contains("clusters"), "{boot}");
        assert!(
            lds.starts_with(&format!(
            "version_info: \"1\"\nresources:\n  - \"@type\": {LISTENER_TYPE}\n    name: ingress\n"
        )),
            "{lds}"
        );
        assert_eq!(crate::plugin_configurations(&lds).unwrap().len(), 1);
    }
}
