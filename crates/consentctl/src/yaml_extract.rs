//! Finds the consent filter's plugin configurations in an Envoy YAML file, line by line
//! (no YAML parser): every `configuration:` mapping whose `"@type"` is
//! `type.googleapis.com/google.protobuf.StringValue`, with its `value:` given as a block
//! scalar (`value: |` and indented lines) or a one-line quoted string.
//!
//! `configuration: &name` anchors are remembered, and `configuration: *name` aliases are
//! reported as reusing the anchored configuration rather than checked twice.

/// The protobuf type a wasm plugin configuration is wrapped in.
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// One `configuration:` key found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// 1-based line of the `configuration:` key.
    pub line: usize,
    /// What it holds.
    pub kind: FoundKind,
}

/// What one `configuration:` key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundKind {
    /// A StringValue with text (the plugin configuration JSON).
    Text {
        /// The YAML anchor on the mapping (`&name`), if any.
        anchor: Option<String>,
        /// 1-based line of the text's first line.
        first_line: usize,
        /// The text, block indentation removed.
        text: String,
    },
    /// `configuration: *name`: the same node as an anchored one.
    Alias {
        /// The anchor name.
        name: String,
        /// Line of the `configuration:` carrying that anchor, if there is one.
        anchor_line: Option<usize>,
    },
    /// A mapping whose `@type` is not StringValue (not a plugin configuration of ours).
    OtherType,
    /// A form this light reader does not follow (flow mapping, multi-line quoted value...).
    Unsupported(&'static str),
}

/// Number of leading spaces.
fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// The key position of a line: its column (after any `- ` list markers) and the text there.
fn key_position(line: &str) -> (usize, &str) {
    let mut column = indent_of(line);
    let mut rest = line.trim_start_matches(' ');
    while let Some(after) = rest.strip_prefix("- ") {
        let trimmed = after.trim_start_matches(' ');
        column += rest.len() - trimmed.len();
        rest = trimmed;
    }
    (column, rest)
}

/// Splits `key: rest` (key plain, `"quoted"` or `'quoted'`); `None` if the line is no key.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let (key, after) = match text.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = text.get(1..)?;
            let end = inner.find(q)?;
            (inner.get(..end)?, inner.get(end + 1..)?)
        }
        _ => {
            let end = text
                .find(": ")
                .or_else(|| text.strip_suffix(':').map(str::len))?;
            (text.get(..end)?, text.get(end..)?)
        }
    };
    let value = after.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with(' ')) {
        return None;
    }
    Some((key, value.trim()))
}

/// Drops a ` # comment` that is not inside quotes.
fn strip_comment(text: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && (previous == ' ' || previous == '\t') => {
                return text.get(..i).unwrap_or(text).trim_end();
            }
            None => {}
        }
        previous = c;
    }
    text.trim_end()
}

/// A one-line scalar without its quotes; `None` for a quoted scalar this reader cannot
/// finish on one line.
fn plain_scalar(text: &str) -> Option<String> {
    let text = strip_comment(text);
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        return Some(inner.replace("''", "'"));
    }
    if text.starts_with('"') {
        // YAML double-quoted escapes are a superset of JSON's; the common ones agree.
        return serde_json::from_str::<String>(text).ok();
    }
    Some(text.to_string())
}

/// Whether a scalar header is a block scalar: `|` or `>` with optional indicators.
fn block_header(text: &str) -> Option<Option<usize>> {
    let header = strip_comment(text);
    let indicators = header
        .strip_prefix('|')
        .or_else(|| header.strip_prefix('>'))?;
    if !indicators
        .chars()
        .all(|c| c == '-' || c == '+' || c.is_ascii_digit())
    {
        return None;
    }
    let explicit = indicators
        .chars()
        .find_map(|c| c.to_digit(10))
        .and_then(|d| usize::try_from(d).ok());
    Some(explicit)
}

/// The lines of a block scalar starting at `start` under a key at `key_indent`: the text
/// and the index of the first line after it.
fn block_text(
    lines: &[&str],
    start: usize,
    key_indent: usize,
    explicit: Option<usize>,
) -> (String, usize) {
    let mut end = start;
    while let Some(line) = lines.get(end) {
        if !is_blank(line) && indent_of(line) <= key_indent {
            break;
        }
        end += 1;
    }
    let body = lines.get(start..end).unwrap_or_default();
    let content_indent = explicit.map(|e| key_indent + e).unwrap_or_else(|| {
        body.iter()
            .find(|l| !is_blank(l))
            .map_or(key_indent + 1, |l| indent_of(l))
    });
    let text: Vec<&str> = body
        .iter()
        .map(|l| l.get(content_indent..).unwrap_or(""))
        .collect();
    (text.join("\n"), end)
}

/// Reads the mapping under a `configuration:` key at `parent_indent`, starting at line
/// index `start`; returns what it holds and the index of the first line after it.
fn read_mapping(lines: &[&str], start: usize, parent_indent: usize) -> (FoundKindParts, usize) {
    let mut parts = FoundKindParts::default();
    let mut child_indent: Option<usize> = None;
    let mut i = start;
    while let Some(line) = lines.get(i) {
        if is_blank(line) {
            i += 1;
            continue;
        }
        let (column, text) = key_position(line);
        if indent_of(line) <= parent_indent {
            break;
        }
        if text.starts_with('#') {
            i += 1;
            continue;
        }
        let level = *child_indent.get_or_insert(column);
        if column != level {
            i += 1;
            continue;
        }
        let Some((key, rest)) = split_key(text) else {
            i += 1;
            continue;
        };
        match key {
            "@type" => parts.type_url = plain_scalar(rest),
            "value" => {
                if let Some(explicit) = block_header(rest) {
                    let (text, end) = block_text(lines, i + 1, column, explicit);
                    parts.value = Some(Value::Text {
                        first_line: i + 2,
                        text,
                    });
                    i = end;
                    continue;
                }
                parts.value = Some(match plain_scalar(rest) {
                    Some(text) => Value::Text {
                        first_line: i + 1,
                        text,
                    },
                    None => Value::Unsupported,
                });
            }
            _ => {}
        }
        i += 1;
    }
    (parts, i)
}

#[derive(Debug, Default)]
struct FoundKindParts {
    type_url: Option<String>,
    value: Option<Value>,
}

#[derive(Debug)]
enum Value {
    Text { first_line: usize, text: String },
    Unsupported,
}

/// Every `configuration:` key of an Envoy YAML file, in file order.
pub fn extract(yaml: &str) -> Vec<Found> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut found = Vec::new();
    let mut anchors: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        let (column, text) = key_position(line);
        let Some(("configuration", rest)) = split_key(text) else {
            i += 1;
            continue;
        };
        let line_no = i + 1;
        let rest = strip_comment(rest);
        if let Some(name) = rest.strip_prefix('*') {
            let name = name.trim().to_string();
            let anchor_line = anchors.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
            found.push(Found {
                line: line_no,
                kind: FoundKind::Alias { name, anchor_line },
            });
            i += 1;
            continue;
        }
        let (anchor, after_anchor) = match rest.strip_prefix('&') {
            Some(a) => match a.split_once(' ') {
                Some((name, after)) => (Some(name.to_string()), after.trim()),
                None => (Some(a.to_string()), ""),
            },
            None => (None, rest),
        };
        if !after_anchor.is_empty() {
            found.push(Found {
                line: line_no,
                kind: FoundKind::Unsupported(if after_anchor.starts_with('{') {
                    "a flow mapping (`{ ... }`); write it as an indented block"
                } else {
                    "a value on the same line; expected an indented mapping"
                }),
            });
            i += 1;
            continue;
        }
        let (parts, end) = read_mapping(&lines, i + 1, column);
        if let Some(name) = &anchor {
            anchors.push((name.clone(), line_no));
        }
        let kind = match (parts.type_url.as_deref(), parts.value) {
            (Some(STRING_VALUE_TYPE), Some(Value::Text { first_line, text })) => FoundKind::Text {
                anchor,
                first_line,
                text,
            },
            (Some(STRING_VALUE_TYPE), Some(Value::Unsupported)) => FoundKind::Unsupported(
                "a quoted `value` over several lines; use a block scalar (`value: |`)",
            ),
            (Some(STRING_VALUE_TYPE), None) => {
                FoundKind::Unsupported("a StringValue without `value`")
            }
            _ => FoundKind::OtherType,
        };
        found.push(Found {
            line: line_no,
            kind,
        });
        i = end.max(i + 1);
    }
    found
}

/// Rewrites `... at line L column C` of a JSON error into the YAML file's line numbers,
/// given the line the JSON starts on.
pub fn yaml_position(message: &str, first_line: usize) -> String {
    let Some(at) = message.rfind(" at line ") else {
        return message.to_string();
    };
    let (head, tail) = message.split_at(at);
    let mut words = tail.split_whitespace().skip(2);
    let line = words.next().and_then(|w| w.parse::<usize>().ok());
    match (line, words.next(), words.next()) {
        (Some(line), Some("column"), Some(column)) => {
            format!(
                "{head} at YAML line {} (JSON column {column})",
                first_line + line - 1
            )
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../../envoy-config/envoy-demo.yaml");

    #[test]
    fn the_demo_has_one_anchored_configuration_and_one_alias() {
        let found = extract(DEMO);
        assert_eq!(found.len(), 2, "{found:?}");
        let FoundKind::Text {
            anchor,
            first_line,
            text,
        } = &found[0].kind
        else {
            panic!("{found:?}")
        };
        assert_eq!(anchor.as_deref(), Some("consent_plugin_configuration"));
        let lines: Vec<&str> = DEMO.lines().collect();
        assert!(lines[found[0].line - 1].contains("configuration: &consent_plugin_configuration"));
        assert_eq!(lines[*first_line - 1].trim(), "{");
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
        let found = extract(yaml);
        assert_eq!(
            found,
            vec![Found {
                line: 5,
                kind: FoundKind::Text {
                    anchor: None,
                    first_line: 7,
                    text: "{\n  \"require_user\": false\n}\n".into()
                }
            }]
        );
    }

    #[test]
    fn one_line_quoted_values_and_other_types() {
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
  configuration: { \"@type\": x, value: y }
d:
  configuration: *nowhere
";
        let found = extract(yaml);
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(
            found[0].kind,
            FoundKind::Text {
                anchor: None,
                first_line: 4,
                text: "{\"block_status\": 451, \"x\": 'y'}".into()
            }
        );
        assert_eq!(found[1].kind, FoundKind::OtherType);
        assert!(matches!(found[2].kind, FoundKind::Unsupported(m) if m.contains("flow")));
        assert_eq!(
            found[3].kind,
            FoundKind::Alias {
                name: "nowhere".into(),
                anchor_line: None
            }
        );
    }

    #[test]
    fn comments_and_keys_are_read_like_yaml() {
        assert_eq!(strip_comment("| # note"), "|");
        assert_eq!(strip_comment("'a # b' # c"), "'a # b'");
        assert_eq!(split_key("\"@type\": x"), Some(("@type", "x")));
        assert_eq!(split_key("configuration:"), Some(("configuration", "")));
        assert_eq!(split_key("url: http://x"), Some(("url", "http://x")));
        assert_eq!(split_key("no key here"), None);
        assert_eq!(block_header("|  # consent"), Some(None));
        assert_eq!(block_header(">2-"), Some(Some(2)));
        assert_eq!(block_header("|x"), None);
        assert_eq!(key_position("  - - name: x"), (6, "name: x"));
    }

    #[test]
    fn json_error_positions_are_moved_to_yaml_lines() {
        assert_eq!(
            yaml_position("(document): expected `,` or `}` at line 3 column 7", 30),
            "(document): expected `,` or `}` at YAML line 32 (JSON column 7)"
        );
        assert_eq!(yaml_position("no position", 30), "no position");
    }
}
