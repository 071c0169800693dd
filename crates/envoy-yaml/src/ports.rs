//! Ports: every `socket_address` whose `port_value` is one number gets another, so the
//! tests can put free ports in place of the shipped ones (listener, admin, clusters).

use saphyr::{ScalarOwned, YamlOwned};

use crate::document::{visit_mut, EnvoyYaml};

impl EnvoyYaml {
    /// Sets `port_value: to` in every `socket_address` that has `port_value: from`; returns
    /// how many it changed.
    pub fn replace_port(&mut self, from: u16, to: u16) -> usize {
        let mut changed = 0;
        visit_mut(&mut self.root, &mut |node| {
            let Some(port) = node
                .as_mapping_get_mut("socket_address")
                .and_then(|address| address.as_mapping_get_mut("port_value"))
            else {
                return;
            };
            if port.as_integer() == Some(i64::from(from)) {
                *port = YamlOwned::Value(ScalarOwned::Integer(i64::from(to)));
                changed += 1;
            }
        });
        changed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_socket_address_with_the_port_is_changed_and_nothing_else() {
        let yaml = "\
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 9901 } } }
clusters:
- endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8081 } } }
- endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8081 } } }
other: { port_value: 8081 }
";
        let mut doc = EnvoyYaml::parse(yaml).unwrap();
        assert_eq!(doc.replace_port(8081, 40001), 2);
        assert_eq!(doc.replace_port(10000, 40002), 0);
        let out = doc.to_yaml().unwrap();
        assert_eq!(out.matches("port_value: 40001").count(), 2, "{out}");
        assert!(out.contains("port_value: 9901"), "{out}");
        assert!(out.contains("port_value: 8081"), "{out}");
    }
}
