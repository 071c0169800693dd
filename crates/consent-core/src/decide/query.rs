//! Query-string redaction that keeps every other byte of the path as it was.

use serde::{Deserialize, Serialize};

use crate::urlencoded;

/// The `query` block of the plugin configuration: how parameter lists are split. Form
/// bodies (`application/x-www-form-urlencoded`) share the query string's syntax and
/// decoder, so the same setting applies to them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryDoc {
    /// Split parameters on `;` as well as `&` (default `true`): backends that do read
    /// `?page=2;lat=35.86` as two parameters, so the filter must too. `false` only where
    /// every backend splits on `&` alone; it never keeps a parameter a `&` separates.
    pub semicolon_separator: bool,
}

impl Default for QueryDoc {
    fn default() -> Self {
        QueryDoc {
            semicolon_separator: true,
        }
    }
}

/// Checked query settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuerySettings {
    /// `;` separates parameters too.
    pub semicolon_separator: bool,
}

impl Default for QuerySettings {
    fn default() -> Self {
        QuerySettings::compile(&QueryDoc::default())
    }
}

impl QuerySettings {
    /// The settings of a `query` block (every value is valid).
    pub fn compile(doc: &QueryDoc) -> Self {
        QuerySettings {
            semicolon_separator: doc.semicolon_separator,
        }
    }
}

/// Removes the query parameters whose name `forbidden` rejects.
///
/// Returns the new path, or `None` when nothing was removed. Names are percent-decoded
/// (`la%74` is `lat`) and lowercased, read with `+` as a space and, when they hold a `+`,
/// as itself; a parameter goes when `forbidden` rejects either reading, its whole name or
/// any of its bracket or dot segments (`lat[]`, `lat[0]`, `location[lat]`, `location.lat`),
/// so neither an encoding nor a framework's structured names can smuggle it past the
/// filter. Parameters are split on `&`, and on `;` when `settings` say so. Every other
/// byte of the path stays as it was; removing every parameter drops the `?`.
pub fn strip_params(
    path: &str,
    settings: QuerySettings,
    mut forbidden: impl FnMut(&str) -> bool,
) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let query = urlencoded::rewrite(query.as_bytes(), settings.semicolon_separator, |param| {
        if urlencoded::any_reading(urlencoded::raw_name(param), &mut forbidden) {
            crate::pieces::Edit::Drop
        } else {
            crate::pieces::Edit::Keep
        }
    })?;
    if query.is_empty() {
        Some(base.to_string())
    } else {
        Some(format!("{base}?{}", String::from_utf8_lossy(&query)))
    }
}

/// Percent-decodes and lowercases a parameter name, `+` read as a space; invalid escapes
/// stay as written.
pub fn decode_name(raw: &str) -> String {
    urlencoded::decode_name(raw.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ON: QuerySettings = QuerySettings {
        semicolon_separator: true,
    };

    fn is_location(name: &str) -> bool {
        matches!(name, "lat" | "lng")
    }

    #[test]
    fn forbidden_params_go_and_the_rest_stay_byte_for_byte() {
        let out = strip_params(
            "/a/b?x=1&lat=35.86&q=caf%C3%A9+x&lng=139.6&empty=",
            ON,
            is_location,
        );
        assert_eq!(out.as_deref(), Some("/a/b?x=1&q=caf%C3%A9+x&empty="));
    }

    #[test]
    fn structured_names_are_matched_by_every_segment() {
        for q in [
            "lat[]=1",
            "lat[0]=1",
            "lat%5B0%5D=1",
            "lat[x]=1",
            "location[lat]=1",
            "location%5Blat%5D=1",
            "location.lat=1",
            "a[b][lat]=1",
        ] {
            let path = format!("/a?{q}&page=2");
            assert_eq!(
                strip_params(&path, ON, is_location).as_deref(),
                Some("/a?page=2"),
                "{q}"
            );
        }
        assert_eq!(
            strip_params("/a?latitude=1&plate[0]=2", ON, is_location),
            None
        );
    }

    #[test]
    fn nothing_forbidden_means_no_rewrite() {
        assert_eq!(strip_params("/a?x=1&y=2", ON, is_location), None);
        assert_eq!(strip_params("/a", ON, is_location), None);
    }

    #[test]
    fn removing_every_param_drops_the_question_mark() {
        assert_eq!(
            strip_params("/a?lat=1&lng=2", ON, is_location).as_deref(),
            Some("/a")
        );
    }

    #[test]
    fn encoded_or_uppercased_names_cannot_smuggle_a_param() {
        let out = strip_params("/a?LA%74=1&%6C%6E%67=2&Lat[]=3&ok=1", ON, is_location);
        assert_eq!(out.as_deref(), Some("/a?ok=1"));
    }

    #[test]
    fn a_name_without_value_is_matched_too() {
        assert_eq!(
            strip_params("/a?lat&b=1", ON, is_location).as_deref(),
            Some("/a?b=1")
        );
    }

    #[test]
    fn invalid_escapes_are_kept_as_written() {
        assert_eq!(decode_name("a%zz%4"), "a%zz%4");
        assert_eq!(
            strip_params("/a?l%zzat=1&lat%=2&lat=3", ON, is_location).as_deref(),
            Some("/a?l%zzat=1&lat%=2")
        );
    }

    #[test]
    fn semicolons_separate_params_unless_switched_off() {
        assert_eq!(
            strip_params("/a?page=2;lat=35.86", ON, is_location).as_deref(),
            Some("/a?page=2")
        );
        assert_eq!(
            strip_params("/a?lat=1;page=2&lng=3;q=4", ON, is_location).as_deref(),
            Some("/a?page=2;q=4"),
            "the separators of the kept params stay as they were"
        );
        let off = QuerySettings {
            semicolon_separator: false,
        };
        assert_eq!(strip_params("/a?page=2;lat=35.86", off, is_location), None);
        assert_eq!(
            strip_params("/a?lat=1;page=2&q=3", off, is_location).as_deref(),
            Some("/a?q=3"),
            "without `;` the whole `lat=1;page=2` is one parameter named lat"
        );
    }

    #[test]
    fn a_plus_in_a_name_matches_under_either_reading() {
        let home = |name: &str| name == "home address" || name == "x+y";
        assert_eq!(
            strip_params("/a?home+address=1&x+y=2&x%2By=3&ok=4", ON, home).as_deref(),
            Some("/a?ok=4")
        );
    }

    #[test]
    fn repeated_and_empty_params_are_each_judged() {
        assert_eq!(
            strip_params("/a?lat=1&lat=2&&lat&lat=&x=", ON, is_location).as_deref(),
            Some("/a?&x=")
        );
    }
}
