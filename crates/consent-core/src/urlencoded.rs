//! The `application/x-www-form-urlencoded` syntax that query strings and form bodies share:
//! one splitter and one decoder for both, so a parameter name is read the same way
//! wherever it travels.
//!
//! Names and values are decoded with `form_urlencoded` (`+` is a space, as forms and most
//! query parsers read it: WHATWG `URLSearchParams`, Go's `url.ParseQuery`, Node, Java
//! servlets). Some backends decode query strings as RFC 3986 does, keeping `+` as itself;
//! a name containing `+` is therefore also read that way (with `percent-encoding`), and it
//! matches when either reading matches. Frameworks read structured names (`lat[]`,
//! `lat[0]`, `location[lat]`, `location.lat` in PHP, Rails, Express's `qs`), so a name
//! also matches when any of its bracket or dot segments does.

use crate::pieces::{self, Edit};
use std::ops::Range;

/// The separators of a parameter list: `&`, and `;` when `semicolon` is set (backends that
/// split on `;`, such as Python's `parse_qsl` before 3.10, read `a=1;lat=2` as two
/// parameters).
pub(crate) fn split(input: &[u8], semicolon: bool) -> Vec<Range<usize>> {
    pieces::split(input, |b| b == b'&' || (semicolon && b == b';'))
}

/// A parameter's raw name: everything before the first `=`.
pub(crate) fn raw_name(param: &[u8]) -> &[u8] {
    match param.iter().position(|b| *b == b'=') {
        Some(at) => param.get(..at).unwrap_or_default(),
        None => param,
    }
}

/// Percent-decodes a name with `+` as a space and lowercases it; invalid escapes stay as
/// written.
pub fn decode_name(raw: &[u8]) -> String {
    form_urlencoded::parse(raw)
        .next()
        .map(|(name, _)| name.to_lowercase())
        .unwrap_or_default()
}

/// The readings of a raw name, lowercased: decoded with `+` as a space, and, when it
/// holds a `+`, with `+` as itself.
pub(crate) fn readings(raw: &[u8]) -> Vec<String> {
    let mut out = vec![decode_name(raw)];
    if raw.contains(&b'+') {
        let literal = percent_encoding::percent_decode(raw)
            .decode_utf8_lossy()
            .to_lowercase();
        out.push(literal);
    }
    out
}

/// Whether `hit` accepts some reading of a raw name, whole or any bracket or dot segment.
/// Stops at the first hit.
pub(crate) fn any_reading(raw: &[u8], mut hit: impl FnMut(&str) -> bool) -> bool {
    readings(raw)
        .iter()
        .any(|name| whole_or_segment(name, &mut hit))
}

/// Whether `hit` accepts `name` or one of its `[`, `]` or `.` separated segments.
pub(crate) fn whole_or_segment(name: &str, hit: &mut impl FnMut(&str) -> bool) -> bool {
    if hit(name) {
        return true;
    }
    name.split(['[', ']', '.'])
        .filter(|s| !s.is_empty() && s.len() != name.len())
        .any(hit)
}

/// The decoded value of a parameter (`+` is a space), `None` for a parameter without `=`.
pub(crate) fn decode_value(param: &[u8]) -> Option<String> {
    param.contains(&b'=').then(|| {
        form_urlencoded::parse(param)
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    })
}

/// A parameter with a new value: the raw name as it was, `=`, the value form-encoded.
pub(crate) fn with_value(param: &[u8], value: &str) -> Vec<u8> {
    let mut out = raw_name(param).to_vec();
    out.push(b'=');
    out.extend(form_urlencoded::byte_serialize(value.as_bytes()).flat_map(str::bytes));
    out
}

/// Rewrites a parameter list: `edit` is asked about every non-empty parameter (empty ones
/// between repeated separators are kept). `None` when nothing changed.
pub(crate) fn rewrite(
    input: &[u8],
    semicolon: bool,
    mut edit: impl FnMut(&[u8]) -> Edit,
) -> Option<Vec<u8>> {
    let pieces = split(input, semicolon);
    let mut changed = false;
    let edits: Vec<Edit> = pieces
        .iter()
        .map(|range| {
            let param = input.get(range.clone()).unwrap_or_default();
            let e = if param.is_empty() {
                Edit::Keep
            } else {
                edit(param)
            };
            changed |= e != Edit::Keep;
            e
        })
        .collect();
    changed.then(|| pieces::rebuild(input, &pieces, &edits))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn readings(raw: &str) -> Vec<String> {
        let mut seen = Vec::new();
        any_reading(raw.as_bytes(), |n| {
            seen.push(n.to_string());
            false
        });
        seen
    }

    #[test]
    fn a_plus_is_read_as_a_space_and_as_itself() {
        assert!(readings("home+address").contains(&"home address".to_string()));
        assert!(readings("home+address").contains(&"home+address".to_string()));
        assert_eq!(
            readings("lat"),
            vec!["lat"],
            "no second reading without a plus"
        );
    }

    #[test]
    fn values_decode_and_encode_as_forms_do() {
        assert_eq!(decode_value(b"q=caf%C3%A9+x").as_deref(), Some("café x"));
        assert_eq!(decode_value(b"q").as_deref(), None);
        assert_eq!(decode_value(b"q=").as_deref(), Some(""));
        assert_eq!(
            with_value(b"Gp%73=1", "35.86,139.65"),
            b"Gp%73=35.86%2C139.65"
        );
        assert_eq!(with_value(b"a", "x y"), b"a=x+y");
    }

    #[test]
    fn empty_params_between_separators_are_kept() {
        let out = rewrite(b"a=1&&lat=2;b", true, |p| {
            if p.starts_with(b"lat") {
                Edit::Drop
            } else {
                Edit::Keep
            }
        });
        assert_eq!(out.as_deref(), Some(&b"a=1&;b"[..]));
    }
}
