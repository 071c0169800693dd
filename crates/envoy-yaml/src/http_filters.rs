//! HTTP filters, found by name in every `http_filters` list of the document.

use saphyr::YamlOwned;

use crate::document::{is_str, visit_mut, EnvoyYaml};
use crate::error::EditError;

/// Calls `visit` on every HTTP filter named `name`.
pub(crate) fn each_http_filter_mut(
    root: &mut YamlOwned,
    name: &str,
    visit: &mut dyn FnMut(&mut YamlOwned),
) {
    visit_mut(root, &mut |node| {
        let Some(filters) = node
            .as_mapping_get_mut("http_filters")
            .and_then(YamlOwned::as_sequence_mut)
        else {
            return;
        };
        for filter in filters
            .iter_mut()
            .filter(|f| is_str(f.as_mapping_get("name"), name))
        {
            visit(filter);
        }
    });
}

impl EnvoyYaml {
    /// Removes every HTTP filter named `name` from its filter chain.
    pub fn remove_http_filter(&mut self, name: &str) -> Result<(), EditError> {
        let mut removed = 0;
        visit_mut(&mut self.root, &mut |node| {
            if let Some(filters) = node
                .as_mapping_get_mut("http_filters")
                .and_then(YamlOwned::as_sequence_mut)
            {
                let before = filters.len();
                filters.retain(|f| !is_str(f.as_mapping_get("name"), name));
                removed += before - filters.len();
            }
        });
        if removed == 0 {
            return Err(EditError::NotFound("HTTP filter of that name"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_filter_is_removed_by_name_and_the_others_stay_in_order() {
        let yaml = "\
http_filters:
- name: first
- name: consent
  typed_config: { a: 1 }
- name: router
";
        let mut doc = EnvoyYaml::parse(yaml).unwrap();
        doc.remove_http_filter("consent").unwrap();
        assert_eq!(
            doc.to_yaml().unwrap(),
            "http_filters:\n  - name: first\n  - name: router\n"
        );
        assert_eq!(
            doc.remove_http_filter("consent"),
            Err(EditError::NotFound("HTTP filter of that name"))
        );
    }
}
