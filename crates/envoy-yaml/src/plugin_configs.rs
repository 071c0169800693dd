//! Finds the plugin configurations in an Envoy YAML file: every `configuration` key whose
//! mapping is a `google.protobuf.StringValue` with a `value` string (what Envoy's wasm HTTP
//! filters and wasm bootstrap extensions take in `config.configuration`), in file order,
//! with the key's line and the lines of the text.
//!
//! The file is read as the parser's events, which carry positions: a loaded tree would have
//! lost the lines and expanded the aliases. An anchored configuration
//! (`configuration: &name`) is remembered, and an alias of it (`configuration: *name`) is
//! reported as reusing it rather than read twice.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span};

use crate::error::YamlError;
use crate::text_lines::TextLines;

/// The protobuf type a wasm plugin configuration is wrapped in.
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// The key whose mapping holds a plugin configuration.
const CONFIGURATION: &str = "configuration";

/// One `configuration` key found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// 1-based line of the `configuration` key.
    pub line: usize,
    /// What it holds.
    pub kind: FoundKind,
}

/// What one `configuration` key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundKind {
    /// A StringValue with text (the plugin configuration JSON).
    Text {
        /// The YAML anchor on the mapping (`&name`), if any.
        anchor: Option<String>,
        /// Where the text is in the file.
        lines: TextLines,
        /// The text, as YAML reads it (block indentation removed).
        text: String,
    },
    /// `configuration: *name`: the same node as an anchored one.
    Alias {
        /// The anchor name.
        name: String,
        /// Line of the `configuration` key carrying that anchor, if one does.
        anchor_line: Option<usize>,
    },
    /// Not a StringValue mapping (not a plugin configuration of ours).
    OtherType,
    /// A StringValue without a `value` string.
    NoValue,
}

/// Every `configuration` key of an Envoy YAML file, in file order.
pub fn plugin_configurations(yaml: &str) -> Result<Vec<Found>, YamlError> {
    let mut walker = Walker {
        source: yaml,
        lines: yaml.lines().collect(),
        stack: Vec::new(),
        found: Vec::new(),
        anchors: BTreeMap::new(),
    };
    for event in Parser::new_from_str(yaml) {
        let (event, span) = event.map_err(|e| YamlError::syntax(&e))?;
        walker.event(event, span);
    }
    Ok(walker.found)
}

/// A mapping key seen, waiting for its value.
#[derive(Debug)]
struct Key {
    /// The key text (None for a key that is itself a collection).
    text: Option<String>,
    /// Its 1-based line.
    line: usize,
}

/// What a `configuration` mapping's `value` turned out to be.
#[derive(Debug, Default)]
enum Value {
    #[default]
    Missing,
    Text(String, TextLines),
    NotText,
}

/// A `configuration` mapping being read.
#[derive(Debug, Default)]
struct Pending {
    line: usize,
    anchor: Option<(usize, String)>,
    type_url: Option<String>,
    value: Value,
}

impl Pending {
    fn into_found(self) -> Found {
        let kind = match (self.type_url.as_deref(), self.value) {
            (Some(STRING_VALUE_TYPE), Value::Text(text, lines)) => FoundKind::Text {
                anchor: self.anchor.map(|(_, name)| name),
                lines,
                text,
            },
            (Some(STRING_VALUE_TYPE), _) => FoundKind::NoValue,
            _ => FoundKind::OtherType,
        };
        Found {
            line: self.line,
            kind,
        }
    }
}

/// An open collection.
#[derive(Debug)]
enum Frame {
    Mapping {
        /// The key whose value comes next, once read.
        key: Option<Key>,
        /// The next node is a key.
        awaiting_key: bool,
        /// Set when this mapping is the value of a `configuration` key.
        config: Option<Pending>,
    },
    Sequence,
}

/// Where the node that starts now sits.
enum Slot {
    /// A mapping key.
    Key,
    /// The value of a `configuration` key, on this line.
    Configuration(usize),
    /// A value directly in a `configuration` mapping, under this key.
    Field(String),
    /// Anywhere else.
    Other,
}

struct Walker<'a> {
    source: &'a str,
    lines: Vec<&'a str>,
    stack: Vec<Frame>,
    found: Vec<Found>,
    /// Anchor id -> line of the `configuration` key that carries it.
    anchors: BTreeMap<usize, usize>,
}

impl Walker<'_> {
    fn slot(&self) -> Slot {
        match self.stack.last() {
            Some(Frame::Mapping {
                awaiting_key: true, ..
            }) => Slot::Key,
            Some(Frame::Mapping {
                key:
                    Some(Key {
                        text: Some(key),
                        line,
                    }),
                config,
                ..
            }) => match config {
                Some(_) => Slot::Field(key.clone()),
                None if key == CONFIGURATION => Slot::Configuration(*line),
                None => Slot::Other,
            },
            _ => Slot::Other,
        }
    }

    fn pending(&mut self) -> Option<&mut Pending> {
        match self.stack.last_mut() {
            Some(Frame::Mapping { config, .. }) => config.as_mut(),
            _ => None,
        }
    }

    /// A node ended: in a mapping, a key was read (its value comes next) or a value was.
    fn node_done(&mut self, key: Option<Key>) {
        if let Some(Frame::Mapping {
            key: current,
            awaiting_key,
            ..
        }) = self.stack.last_mut()
        {
            if *awaiting_key {
                *current = key;
                *awaiting_key = false;
            } else {
                *current = None;
                *awaiting_key = true;
            }
        }
    }

    /// A collection or alias is the value of a `configuration` mapping's `value` key.
    fn value_is_not_text(&mut self, slot: &Slot) {
        if matches!(slot, Slot::Field(key) if key == "value") {
            if let Some(pending) = self.pending() {
                pending.value = Value::NotText;
            }
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) {
        let slot = self.slot();
        match event {
            Event::Scalar(text, style, _, _) => {
                let key = match &slot {
                    Slot::Key => Some(Key {
                        text: Some(text.to_string()),
                        line: span.start.line(),
                    }),
                    Slot::Configuration(line) => {
                        self.found.push(Found {
                            line: *line,
                            kind: FoundKind::OtherType,
                        });
                        None
                    }
                    Slot::Field(field) => {
                        let lines = text_lines(&text, style, &span, &self.lines);
                        if let Some(pending) = self.pending() {
                            match field.as_str() {
                                "@type" => pending.type_url = Some(text.to_string()),
                                "value" => pending.value = Value::Text(text.to_string(), lines),
                                _ => {}
                            }
                        }
                        None
                    }
                    Slot::Other => None,
                };
                self.node_done(key);
            }
            Event::MappingStart(anchor, _) => {
                self.value_is_not_text(&slot);
                let config = match slot {
                    Slot::Configuration(line) => Some(Pending {
                        line,
                        anchor: (anchor > 0)
                            .then(|| (anchor, property_name(self.source, span.start, '&'))),
                        ..Pending::default()
                    }),
                    _ => None,
                };
                self.stack.push(Frame::Mapping {
                    key: None,
                    awaiting_key: true,
                    config,
                });
            }
            Event::SequenceStart(..) => {
                self.value_is_not_text(&slot);
                if let Slot::Configuration(line) = slot {
                    self.found.push(Found {
                        line,
                        kind: FoundKind::OtherType,
                    });
                }
                self.stack.push(Frame::Sequence);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Mapping {
                    config: Some(pending),
                    ..
                }) = self.stack.pop()
                {
                    if let Some((id, _)) = &pending.anchor {
                        self.anchors.insert(*id, pending.line);
                    }
                    self.found.push(pending.into_found());
                }
                self.node_done(complex_key(&span));
            }
            Event::Alias(id) => {
                self.value_is_not_text(&slot);
                if let Slot::Configuration(line) = slot {
                    self.found.push(Found {
                        line,
                        kind: FoundKind::Alias {
                            name: property_name(self.source, span.start, '*'),
                            anchor_line: self.anchors.get(&id).copied(),
                        },
                    });
                }
                self.node_done(complex_key(&span));
            }
            _ => {}
        }
    }
}

/// The key a collection or alias makes when it stands as a mapping key.
fn complex_key(span: &Span) -> Option<Key> {
    Some(Key {
        text: None,
        line: span.start.line(),
    })
}

/// The name of the anchor (`&name`) or alias (`*name`) at or after `at` on its line: the
/// parser gives its id and position, not its name.
fn property_name(source: &str, at: Marker, sigil: char) -> String {
    let rest = source
        .char_indices()
        .nth(at.index())
        .and_then(|(byte, _)| source.get(byte..))
        .unwrap_or("");
    let line = rest.lines().next().unwrap_or("");
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(sigil))
        .map(|name| {
            name.split([',', '[', ']', '{', '}'])
                .next()
                .unwrap_or(name)
                .to_string()
        })
        .unwrap_or_default()
}

/// Number of line breaks the text starts with (blank lines at the top of a block scalar).
fn leading_line_breaks(text: &str) -> usize {
    text.len() - text.trim_start_matches('\n').len()
}

/// The lines a scalar's text spans in the file.
fn text_lines(text: &str, style: ScalarStyle, span: &Span, file: &[&str]) -> TextLines {
    let start = span.start.line();
    match style {
        ScalarStyle::Literal => {
            let first = start.saturating_sub(leading_line_breaks(text));
            TextLines {
                first,
                last: first + text.lines().count().saturating_sub(1),
                exact: true,
            }
        }
        ScalarStyle::Folded => {
            // The span ends at the next token: the last content line is the last one
            // before it that is neither blank nor a comment.
            let last = (start..span.end.line().max(start))
                .rev()
                .find(|&line| {
                    file.get(line.saturating_sub(1))
                        .map(|l| l.trim())
                        .is_some_and(|l| !l.is_empty() && !l.starts_with('#'))
                })
                .unwrap_or(start);
            TextLines {
                first: start.saturating_sub(leading_line_breaks(text)),
                last,
                exact: false,
            }
        }
        ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let last = span.end.line().max(start);
            TextLines {
                first: start,
                last,
                exact: last == start,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    const DEMO: &str = include_str!("../../../envoy-config/envoy-demo.yaml");

    fn found(yaml: &str) -> Vec<Found> {
        plugin_configurations(yaml).unwrap()
    }

    #[test]
    fn the_demo_has_one_anchored_configuration_and_one_alias() {
        let found = found(DEMO);
        assert_eq!(found.len(), 2, "{found:?}");
        let FoundKind::Text {
            anchor,
            lines: text_lines,
            text,
        } = &found[0].kind
        else {
            panic!("{found:?}")
        };
        assert_eq!(anchor.as_deref(), Some("consent_plugin_configuration"));
        let lines: Vec<&str> = DEMO.lines().collect();
        assert!(lines[found[0].line - 1].contains("configuration: &consent_plugin_configuration"));
        assert_eq!(lines[text_lines.first - 1].trim(), "{");
        assert_eq!(lines[text_lines.last - 1].trim(), "}");
        assert!(text_lines.exact);
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["snapshot"]["source"], "shared");
        assert!(!text.starts_with(' '), "block indentation removed");
        assert_eq!(
            found[1].kind,
            FoundKind::Alias {
                name: "consent_plugin_configuration".into(),
                anchor_line: Some(found[0].line)
            }
        );
        assert!(lines[found[1].line - 1].contains("*consent_plugin_configuration"));
    }

    #[test]
    fn block_scalars_keep_inner_indentation_and_end_at_the_parent() {
        let yaml = "\
filters:
- name: consent
  typed_config:
    config:
      configuration:
        value: |-

          {
            \"require_user\": false
          }

        \"@type\": type.googleapis.com/google.protobuf.StringValue
      root_id: consent
";
        assert_eq!(
            found(yaml),
            vec![Found {
                line: 5,
                kind: FoundKind::Text {
                    anchor: None,
                    lines: TextLines {
                        first: 7,
                        last: 10,
                        exact: true
                    },
                    text: "\n{\n  \"require_user\": false\n}".into()
                }
            }]
        );
    }

    #[test]
    fn flow_mappings_quoted_values_other_types_and_missing_values() {
        let yaml = "\
a:
  configuration:
    '@type': type.googleapis.com/google.protobuf.StringValue
    value: '{\"block_status\": 451, \"x\": ''y''}'  # comment
b:
  configuration:
    \"@type\": type.googleapis.com/envoy.config.Other
    value: 3
c:
  configuration: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: \"{}\" }
d:
  configuration: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: [1] }
e:
  configuration: just text
f:
  configuration:
    \"@type\": type.googleapis.com/google.protobuf.StringValue
    value: \"{\\\"a\\\":
      1}\"
";
        let found = found(yaml);
        assert_eq!(found.len(), 6, "{found:?}");
        let one_line = |line| TextLines {
            first: line,
            last: line,
            exact: true,
        };
        assert_eq!(
            found[0].kind,
            FoundKind::Text {
                anchor: None,
                lines: one_line(4),
                text: "{\"block_status\": 451, \"x\": 'y'}".into()
            }
        );
        assert_eq!(found[1].kind, FoundKind::OtherType);
        assert_eq!(
            found[2],
            Found {
                line: 10,
                kind: FoundKind::Text {
                    anchor: None,
                    lines: one_line(10),
                    text: "{}".into()
                }
            }
        );
        assert_eq!(found[3].kind, FoundKind::NoValue);
        assert_eq!(found[4].kind, FoundKind::OtherType);
        assert_eq!(
            found[5].kind,
            FoundKind::Text {
                anchor: None,
                lines: TextLines {
                    first: 18,
                    last: 19,
                    exact: false
                },
                text: "{\"a\": 1}".into()
            }
        );
    }

    #[test]
    fn an_alias_of_an_anchor_that_is_no_configuration_has_no_anchor_line() {
        let yaml = "\
shared: &cfg
  \"@type\": type.googleapis.com/google.protobuf.StringValue
  value: \"{}\"
filter:
  configuration: *cfg
";
        assert_eq!(
            found(yaml),
            vec![Found {
                line: 5,
                kind: FoundKind::Alias {
                    name: "cfg".into(),
                    anchor_line: None
                }
            }]
        );
    }

    #[test]
    fn folded_text_spans_its_lines_but_not_exactly() {
        let yaml = "\
configuration:
  \"@type\": type.googleapis.com/google.protobuf.StringValue
  value: >
    {\"a\":
    1}

# after
next: 1
";
        let found = found(yaml);
        let FoundKind::Text { lines, text, .. } = &found[0].kind else {
            panic!("{found:?}")
        };
        assert_eq!(text, "{\"a\": 1}\n");
        assert_eq!(
            *lines,
            TextLines {
                first: 4,
                last: 5,
                exact: false
            }
        );
    }

    #[test]
    fn a_syntax_error_gives_its_position_and_no_value() {
        let yaml = "a:\n  configuration: \"secret-value-4711\n b: [";
        let e = plugin_configurations(yaml).unwrap_err();
        let message = e.to_string();
        assert!(message.starts_with("invalid YAML at line"), "{message}");
        assert!(!message.contains("secret-value"), "{message}");
    }
}
