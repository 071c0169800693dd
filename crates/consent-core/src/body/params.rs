//! Header parameters as MIME writes them (`form-data; name="a"; filename*=UTF-8''b`,
//! `multipart/form-data; boundary="x"`): RFC 7231 tokens and quoted strings, RFC 2231 /
//! RFC 5987 extended values and continuations.
//!
//! Hand-written, because what the filter needs here is not what a parser for one reading
//! gives: a quoted string with a backslash is read both with RFC 7230 escapes and without
//! them (browsers never escape, and parsers differ), every extended and continued form of
//! a parameter is a value of its own to check, and a parameter given twice is an error
//! (parsers differ on which one wins), never a guess.

/// One parameter as written: its lowercase name and its value, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Param {
    /// Lowercase name, with any `*` and section number (`name*`, `name*0*`).
    pub name: String,
    /// The value; quoted strings without their quotes (and escapes, when read with them).
    pub value: Vec<u8>,
}

/// Why a parameter list does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Splits a header value on the commas outside quoted strings (Envoy joins repeated
/// headers with commas; a quoted boundary may hold one).
pub(crate) fn split_list(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in value.iter().enumerate() {
        match (quoted, escaped, *b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b',') => {
                out.push(value.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value.get(start..).unwrap_or_default());
    out
}

/// Parses `first; name=value; ...`: the first element (trimmed, lowercased) and the
/// parameters in order. `escapes` reads `\x` inside quoted strings as `x`; without it a
/// backslash is an ordinary byte and the next quote ends the string.
pub(crate) fn parse(header: &[u8], escapes: bool) -> Result<(String, Vec<Param>), Malformed> {
    let head_end = header
        .iter()
        .position(|b| *b == b';')
        .unwrap_or(header.len());
    let head = String::from_utf8_lossy(trim(header.get(..head_end).unwrap_or_default()))
        .to_ascii_lowercase();
    let mut params = Vec::new();
    let mut pos = head_end;
    while pos < header.len() {
        pos += 1; // the ';'
        let rest = header.get(pos..).unwrap_or_default();
        let Some(eq) = rest.iter().position(|b| *b == b'=' || *b == b';') else {
            if trim(rest).is_empty() {
                break;
            }
            return Err(Malformed);
        };
        if rest.get(eq) != Some(&b'=') {
            if trim(rest.get(..eq).unwrap_or_default()).is_empty() {
                pos += eq;
                continue;
            }
            return Err(Malformed);
        }
        let name = trim(rest.get(..eq).unwrap_or_default());
        if name.is_empty() {
            return Err(Malformed);
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        pos += eq + 1;
        while header.get(pos).copied().is_some_and(is_space) {
            pos += 1;
        }
        let (value, next) = if header.get(pos) == Some(&b'"') {
            quoted(header, pos + 1, escapes)?
        } else {
            let end = header
                .get(pos..)
                .and_then(|r| r.iter().position(|b| *b == b';'))
                .map_or(header.len(), |at| pos + at);
            (trim(header.get(pos..end).unwrap_or_default()).to_vec(), end)
        };
        params.push(Param { name, value });
        pos = next;
    }
    Ok((head, params))
}

/// A quoted string's content from `start` (after the opening quote), and where the next
/// `;` (or the end) is; anything but spaces between the closing quote and it is an error.
fn quoted(header: &[u8], start: usize, escapes: bool) -> Result<(Vec<u8>, usize), Malformed> {
    let mut value = Vec::new();
    let mut pos = start;
    loop {
        match header.get(pos) {
            None => return Err(Malformed),
            Some(b'"') => break,
            Some(b'\\') if escapes => {
                value.push(*header.get(pos + 1).ok_or(Malformed)?);
                pos += 2;
            }
            Some(b) => {
                value.push(*b);
                pos += 1;
            }
        }
    }
    pos += 1;
    while header.get(pos).copied().is_some_and(is_space) {
        pos += 1;
    }
    match header.get(pos) {
        None | Some(b';') => Ok((value, pos)),
        Some(_) => Err(Malformed),
    }
}

/// Every value the parameter `base` has in `params`: the plain one, the RFC 5987
/// extended one (`base*`, percent-decoded) and the RFC 2231 continuations (`base*0`,
/// `base*1*`, ... joined in order). A plain or extended form given twice is an error.
pub(crate) fn values_of(params: &[Param], base: &str) -> Result<Vec<Vec<u8>>, Malformed> {
    let mut plain = None;
    let mut extended = None;
    let mut sections: Vec<(u32, bool, &[u8])> = Vec::new();
    for p in params {
        let Some(rest) = p.name.strip_prefix(base) else {
            continue;
        };
        let slot = match rest {
            "" => &mut plain,
            "*" => &mut extended,
            _ => {
                let Some(section) = rest.strip_prefix('*') else {
                    continue;
                };
                let (number, encoded) = match section.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (section, false),
                };
                let Ok(n) = number.parse::<u32>() else {
                    continue;
                };
                if sections.iter().any(|(m, _, _)| *m == n) {
                    return Err(Malformed);
                }
                sections.push((n, encoded, &p.value));
                continue;
            }
        };
        if slot.replace(&p.value).is_some() {
            return Err(Malformed);
        }
    }
    let mut out: Vec<Vec<u8>> = plain.into_iter().cloned().collect();
    out.extend(extended.map(|v| ext_value(v, true)));
    if !sections.is_empty() {
        sections.sort_by_key(|(n, _, _)| *n);
        let mut joined = Vec::new();
        for (i, (_, encoded, value)) in sections.iter().enumerate() {
            if *encoded {
                joined.extend(ext_value(value, i == 0));
            } else {
                joined.extend_from_slice(value);
            }
        }
        out.push(joined);
    }
    Ok(out)
}

/// Decodes an RFC 5987 value: `charset'language'percent-encoded` (the prefix only when
/// `with_prefix`); ISO-8859-1 bytes become their characters, anything else is read as
/// UTF-8.
fn ext_value(value: &[u8], with_prefix: bool) -> Vec<u8> {
    let mut charset: &[u8] = b"utf-8";
    let mut encoded = value;
    if with_prefix {
        let mut parts = value.splitn(3, |b| *b == b'\'');
        if let (Some(c), Some(_), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
            charset = c;
            encoded = rest;
        }
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode(encoded).collect();
    if charset.eq_ignore_ascii_case(b"iso-8859-1") {
        bytes
            .iter()
            .map(|b| char::from(*b))
            .collect::<String>()
            .into_bytes()
    } else {
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn names(header: &str, escapes: bool) -> Vec<String> {
        let (_, params) = parse(header.as_bytes(), escapes).unwrap();
        values_of(&params, "name")
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn tokens_quoted_strings_and_escapes() {
        let (head, params) = parse(br#"Form-Data; name="a\"b"; filename=x.txt"#, true).unwrap();
        assert_eq!(head, "form-data");
        assert_eq!(params[0].value, b"a\"b");
        assert_eq!(params[1].value, b"x.txt");
        assert_eq!(names(r#"form-data; name="la\t""#, true), vec!["lat"]);
        assert_eq!(names(r#"form-data; name="la\t""#, false), vec!["la\\t"]);
        assert_eq!(names("form-data; name = lat ;", true), vec!["lat"]);
    }

    #[test]
    fn extended_and_continued_values_are_decoded() {
        assert_eq!(
            names("form-data; name*=UTF-8''%6Cat", true),
            vec!["lat".to_string()]
        );
        assert_eq!(
            names("form-data; name*=iso-8859-1'en'caf%E9", true),
            vec!["café".to_string()]
        );
        assert_eq!(
            names(r#"form-data; name*1="t"; name*0*=UTF-8''l%61"#, true),
            vec!["lat".to_string()]
        );
        assert_eq!(
            names(r#"form-data; name="a"; name*=UTF-8''lat"#, true),
            vec!["a", "lat"]
        );
    }

    #[test]
    fn repeats_and_broken_syntax_are_errors() {
        let (_, params) = parse(br#"form-data; name="a"; name="lat""#, true).unwrap();
        assert_eq!(values_of(&params, "name"), Err(Malformed));
        assert_eq!(parse(br#"form-data; name="open"#, true), Err(Malformed));
        assert_eq!(parse(br#"form-data; name="a"b"#, true), Err(Malformed));
        assert_eq!(parse(b"form-data; name", true), Err(Malformed));
    }

    #[test]
    fn lists_split_outside_quotes() {
        let list = split_list(br#"text/plain, multipart/form-data; boundary="a,b""#);
        assert_eq!(list.len(), 2);
        assert_eq!(list[1], br#" multipart/form-data; boundary="a,b""#);
    }
}
