//! JSON field selectors: `$.user.email`, `$.transactions[*].merchant`, `$..gps`.
//!
//! Grammar (a small, strict subset of JSONPath):
//! `$` then any of `.name`, `['name']`, `.*`, `[*]`, `[N]`, `..name`, `..*`.
//! Names are matched case-insensitively (ASCII), on the decoded key, so neither
//! `"GPS"` nor `"\u0067ps"` escapes a selector for `gps`.

use std::fmt;

/// One step of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member with this (lowercase) name.
    Key(String),
    /// Any object member.
    AnyKey,
    /// Any array element.
    AnyIndex,
    /// The array element at this index.
    Index(usize),
    /// A member with this (lowercase) name at any depth below.
    Descend(String),
    /// Any value at any depth below.
    DescendAny,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Steps from the root.
    pub segments: Vec<Segment>,
    /// The text it was parsed from.
    pub text: String,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a selector; the error says what is wrong (without the input).
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    let rest = text
        .strip_prefix('$')
        .ok_or_else(|| "a selector starts with `$`".to_string())?;
    let bytes = rest.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'.') if bytes.get(i + 1) == Some(&b'.') => {
                i += 2;
                if bytes.get(i) == Some(&b'*') {
                    segments.push(Segment::DescendAny);
                    i += 1;
                } else {
                    let (name, next) = read_name(rest, i)?;
                    segments.push(Segment::Descend(name));
                    i = next;
                }
            }
            Some(b'.') => {
                i += 1;
                if bytes.get(i) == Some(&b'*') {
                    segments.push(Segment::AnyKey);
                    i += 1;
                } else {
                    let (name, next) = read_name(rest, i)?;
                    segments.push(Segment::Key(name));
                    i = next;
                }
            }
            Some(b'[') => {
                let close = rest
                    .get(i..)
                    .and_then(|s| s.find(']'))
                    .map(|c| c + i)
                    .ok_or_else(|| "unclosed `[`".to_string())?;
                let inner = rest.get(i + 1..close).unwrap_or("");
                if inner == "*" {
                    segments.push(Segment::AnyIndex);
                } else if let Some(quoted) =
                    inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                {
                    if quoted.is_empty() {
                        return Err("empty member name".to_string());
                    }
                    segments.push(Segment::Key(quoted.to_lowercase()));
                } else if let Ok(n) = inner.parse::<usize>() {
                    segments.push(Segment::Index(n));
                } else {
                    return Err("brackets hold `*`, an index or a 'quoted name'".to_string());
                }
                i = close + 1;
            }
            _ => return Err(format!("unexpected character at offset {}", i + 1)),
        }
    }
    if segments.is_empty() {
        return Err("`$` alone would select the whole body".to_string());
    }
    if segments.last() == Some(&Segment::DescendAny) {
        return Err("`..*` must be followed by a step".to_string());
    }
    Ok(Selector {
        segments,
        text: text.to_string(),
    })
}

fn read_name(rest: &str, start: usize) -> Result<(String, usize), String> {
    let tail = rest.get(start..).unwrap_or("");
    let len = tail.find(['.', '[']).unwrap_or(tail.len());
    let name = tail.get(..len).unwrap_or("");
    if name.is_empty() {
        return Err("empty member name".to_string());
    }
    if name.contains(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | ']' | '*')) {
        return Err(
            "a dotted name cannot hold spaces, quotes, `]` or `*`; use ['...']".to_string(),
        );
    }
    Ok((name.to_lowercase(), start + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_form_parses() {
        let s = parse_selector("$.user.Email").unwrap();
        assert_eq!(
            s.segments,
            vec![Segment::Key("user".into()), Segment::Key("email".into())]
        );
        let s = parse_selector("$.transactions[*].merchant").unwrap();
        assert_eq!(
            s.segments,
            vec![
                Segment::Key("transactions".into()),
                Segment::AnyIndex,
                Segment::Key("merchant".into())
            ]
        );
        assert_eq!(
            parse_selector("$..gps").unwrap().segments,
            vec![Segment::Descend("gps".into())]
        );
        assert_eq!(
            parse_selector("$['a.b'][2].*").unwrap().segments,
            vec![
                Segment::Key("a.b".into()),
                Segment::Index(2),
                Segment::AnyKey
            ]
        );
        assert_eq!(
            parse_selector("$..*.lat").unwrap().segments,
            vec![Segment::DescendAny, Segment::Key("lat".into())]
        );
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for bad in [
            "user.email",
            "$",
            "$.",
            "$..",
            "$[",
            "$[x]",
            "$.a[*",
            "$..*",
            "$.a b",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad} should be rejected");
        }
    }
}
