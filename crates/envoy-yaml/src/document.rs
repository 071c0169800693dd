//! A parsed Envoy YAML document, edited in place and written back.
//!
//! Loading expands aliases (each place gets its own copy of an anchored node), and writing
//! drops comments and picks its own layout: strings holding line breaks (the plugin
//! configuration JSON) are written as literal blocks, so their text is kept line for line.

use saphyr::{LoadableYamlNode, ScalarOwned, Yaml, YamlEmitter, YamlOwned};

use crate::error::{EditError, YamlError};

/// A parsed Envoy YAML document.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyYaml {
    pub(crate) root: YamlOwned,
}

impl EnvoyYaml {
    /// Parses one YAML document.
    pub fn parse(text: &str) -> Result<Self, YamlError> {
        let mut documents = YamlOwned::load_from_str(text).map_err(|e| YamlError::syntax(&e))?;
        match documents.len() {
            1 => Ok(EnvoyYaml {
                root: documents.remove(0),
            }),
            n => Err(YamlError::Documents(n)),
        }
    }

    /// Writes the document as YAML text (ending with a line break).
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        let mut out = String::new();
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline(true);
        emitter
            .dump(&Yaml::from(&self.root))
            .map_err(|_| YamlError::Emit)?;
        let mut text = out.strip_prefix("---\n").unwrap_or(&out).to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }

    /// Sets the top-level `key` to the node `fragment` (YAML text) describes, replacing any
    /// value it had.
    pub fn set_top_level(&mut self, key: &str, fragment: &str) -> Result<(), EditError> {
        let value = parse_fragment(fragment)?;
        let root = self
            .root
            .as_mapping_mut()
            .ok_or(EditError::NotFound("top-level mapping"))?;
        root.insert(string(key), value);
        Ok(())
    }

    /// Removes the top-level `key`.
    pub fn remove_top_level(&mut self, key: &str) -> Result<(), EditError> {
        self.root
            .as_mapping_mut()
            .and_then(|root| root.remove(&string(key)))
            .map(|_| ())
            .ok_or(EditError::NotFound("such top-level key"))
    }
}

/// A string node.
pub(crate) fn string(text: &str) -> YamlOwned {
    YamlOwned::Value(ScalarOwned::String(text.to_string()))
}

/// The node a YAML fragment describes.
pub(crate) fn parse_fragment(fragment: &str) -> Result<YamlOwned, EditError> {
    EnvoyYaml::parse(fragment)
        .map(|doc| doc.root)
        .map_err(EditError::Fragment)
}

/// Whether `node` is the string `text`.
pub(crate) fn is_str(node: Option<&YamlOwned>, text: &str) -> bool {
    node.and_then(YamlOwned::as_str) == Some(text)
}

/// The node at `path` (mapping keys) under `node`.
pub(crate) fn at<'a>(node: &'a YamlOwned, path: &[&str]) -> Option<&'a YamlOwned> {
    path.iter()
        .try_fold(node, |node, key| node.as_mapping_get(key))
}

/// The node at `path` (mapping keys) under `node`, to change.
pub(crate) fn at_mut<'a>(node: &'a mut YamlOwned, path: &[&str]) -> Option<&'a mut YamlOwned> {
    path.iter()
        .try_fold(node, |node, key| node.as_mapping_get_mut(key))
}

/// `node` and every node under it.
pub(crate) fn descendants(node: &YamlOwned) -> Vec<&YamlOwned> {
    let (mut out, mut open) = (Vec::new(), vec![node]);
    while let Some(node) = open.pop() {
        out.push(node);
        match node {
            YamlOwned::Sequence(items) => open.extend(items),
            YamlOwned::Mapping(entries) => open.extend(entries.values()),
            YamlOwned::Tagged(_, inner) => open.push(inner),
            _ => {}
        }
    }
    out
}

/// Calls `visit` on `node` and every node under it, parents first.
pub(crate) fn visit_mut(node: &mut YamlOwned, visit: &mut dyn FnMut(&mut YamlOwned)) {
    visit(node);
    match node {
        YamlOwned::Sequence(items) => {
            for item in items {
                visit_mut(item, visit);
            }
        }
        YamlOwned::Mapping(entries) => {
            for (_, value) in entries.iter_mut() {
                visit_mut(value, visit);
            }
        }
        YamlOwned::Tagged(_, inner) => visit_mut(inner, visit),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_document_is_written_back_with_its_json_text_line_for_line() {
        let yaml = "a:\n  value: |\n    {\n      \"x\": \"y\"\n    }\n  n: 3\n  t: \"1\"\n";
        let doc = EnvoyYaml::parse(yaml).unwrap();
        let out = doc.to_yaml().unwrap();
        assert!(out.contains("      \"x\": \"y\"\n"), "{out}");
        assert!(out.contains("t: \"1\""), "{out}");
        assert_eq!(EnvoyYaml::parse(&out).unwrap(), doc);
    }

    #[test]
    fn top_level_keys_are_set_and_removed() {
        let mut doc = EnvoyYaml::parse("a: 1\nb: 2\n").unwrap();
        doc.set_top_level("c", "{ id: x }").unwrap();
        doc.remove_top_level("a").unwrap();
        assert_eq!(doc.to_yaml().unwrap(), "b: 2\nc:\n  id: x\n");
        assert_eq!(
            doc.remove_top_level("a"),
            Err(EditError::NotFound("such top-level key"))
        );
        assert!(matches!(
            doc.set_top_level("d", "{ unclosed"),
            Err(EditError::Fragment(_))
        ));
    }

    #[test]
    fn more_than_one_document_is_refused() {
        assert_eq!(
            EnvoyYaml::parse("a: 1\n---\nb: 2\n"),
            Err(YamlError::Documents(2))
        );
    }
}
