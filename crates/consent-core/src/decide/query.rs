//! Query-string redaction that keeps every other byte of the path as it was.

/// Removes the query parameters whose decoded, lowercased name `forbidden` rejects.
///
/// Returns the new path, or `None` when nothing was removed. Names are
/// percent-decoded (`la%74` is `lat`) and `+` is read as a space before matching, so an
/// encoding cannot smuggle a parameter past the filter. Frameworks read structured names
/// (`lat[]`, `lat[0]`, `location[lat]`, `location.lat` in PHP, Rails, Express's `qs`), so a
/// parameter goes when its whole name or any of its bracket or dot segments is forbidden.
/// Parameters are split on `&` only.
pub fn strip_params(path: &str, mut forbidden: impl FnMut(&str) -> bool) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for param in query.split('&') {
        let raw_name = param.split_once('=').map_or(param, |(name, _)| name);
        let name = decode_name(raw_name);
        let segments = name
            .split(['[', ']', '.'])
            .filter(|s| !s.is_empty() && s.len() != name.len());
        let hit = forbidden(&name) || segments.into_iter().any(&mut forbidden);
        if !param.is_empty() && hit {
            removed = true;
        } else {
            kept.push(param);
        }
    }
    if !removed {
        return None;
    }
    let query = kept.join("&");
    if query.is_empty() {
        Some(base.to_string())
    } else {
        Some(format!("{base}?{query}"))
    }
}

/// Percent-decodes and lowercases a parameter name; invalid escapes stay as written.
pub fn decode_name(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(decoded) => {
                        out.push(decoded);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn is_location(name: &str) -> bool {
        matches!(name, "lat" | "lng")
    }

    #[test]
    fn forbidden_params_go_and_the_rest_stay_byte_for_byte() {
        let out = strip_params(
            "/a/b?x=1&lat=35.86&q=caf%C3%A9+x&lng=139.6&empty=",
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
                strip_params(&path, is_location).as_deref(),
                Some("/a?page=2"),
                "{q}"
            );
        }
        assert_eq!(strip_params("/a?latitude=1&plate[0]=2", is_location), None);
    }

    #[test]
    fn nothing_forbidden_means_no_rewrite() {
        assert_eq!(strip_params("/a?x=1&y=2", is_location), None);
        assert_eq!(strip_params("/a", is_location), None);
    }

    #[test]
    fn removing_every_param_drops_the_question_mark() {
        assert_eq!(
            strip_params("/a?lat=1&lng=2", is_location).as_deref(),
            Some("/a")
        );
    }

    #[test]
    fn encoded_or_uppercased_names_cannot_smuggle_a_param() {
        let out = strip_params("/a?LA%74=1&%6C%6E%67=2&Lat[]=3&ok=1", is_location);
        assert_eq!(out.as_deref(), Some("/a?ok=1"));
    }

    #[test]
    fn a_name_without_value_is_matched_too() {
        assert_eq!(
            strip_params("/a?lat&b=1", is_location).as_deref(),
            Some("/a?b=1")
        );
    }

    #[test]
    fn invalid_escapes_are_kept_as_written() {
        assert_eq!(decode_name("a%zz%4"), "a%zz%4");
    }
}
