//! Property tests of the non-JSON formats through the public API (`plan_request`,
//! `plan_response`, `enforce_body`): query strings, form bodies, multipart bodies and
//! cookies. Sentinel values are planted under forbidden and allowed names written in every
//! encoding the format allows (percent-encoded, `+` for spaces, upper case, structured
//! names, RFC 2231 names, escaped quotes); no forbidden sentinel may survive, raw or
//! decoded, and the output must be exactly the input without the forbidden pieces, every
//! other byte (separators, encodings, order, line ends) as it was.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use consent_core::body::{BodyHeaders, BodyOutcome, CivilDate};
use consent_core::{compile_config, CompiledConfig, Decision};
use proptest::prelude::*;

const TODAY: CivilDate = CivilDate {
    year: 2026,
    month: 11,
    day: 27,
};

/// `gps` (`lat`, `lng`; cookies `geo`, `_ga`) and `email` are forbidden for `strict`,
/// `note` is allowed; `coarse` coarsens `gps`.
fn config() -> CompiledConfig {
    let doc = serde_json::json!({
        "require_user": false,
        "caller": {"unidentified_party": "op"},
        "pseudonymisation_key": "format-properties-key-0123",
        "policy": {"id": "p", "version": 1,
            "categories": [
                {"id": "gps", "label": {"ja": "g", "en": "g"}, "query": ["lat", "lng"],
                 "cookies": ["geo", "_ga"], "json": ["$..lat", "$..lng"],
                 "coarsen": {"grid_degrees": 0.01}},
                {"id": "email", "label": {"ja": "e", "en": "e"}, "query": ["email", "メール"],
                 "json": ["$..email"]},
                {"id": "note", "label": {"ja": "n", "en": "n"}, "query": ["note"], "json": ["$..note"]}
            ],
            "purposes": [
                {"id": "strict", "label": {"ja": "s", "en": "s"}, "basis": "contract", "categories": ["note"]},
                {"id": "coarse", "label": {"ja": "c", "en": "c"}, "basis": "contract", "categories": ["note"],
                 "transforms": {"gps": "coarsen"}}
            ],
            "parties": [{"id": "op", "label": {"ja": "o", "en": "o"}, "kind": "operator"}]}
    });
    compile_config(doc.to_string().as_bytes()).unwrap()
}

fn decision(c: &CompiledConfig, purpose: &str) -> Decision {
    c.evaluate([("x-data-purpose", purpose.as_bytes())])
}

/// Percent-encodes every byte of `text`.
fn pct_all(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Percent-encodes every other byte, lower-case hex.
fn pct_some(text: &str) -> String {
    text.bytes()
        .enumerate()
        .map(|(i, b)| {
            if i % 2 == 0 && b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// An independent form decoder: `+` is a space, `%XX` a byte.
fn decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        rest = tail;
        match (b, hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                rest = &tail[2..];
            }
            (c, _) => out.push(c),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parameter: which name, how it is written, how its sentinel value is written.
#[derive(Debug, Clone)]
struct Param {
    name: usize,
    name_form: u8,
    value_form: u8,
    /// Separator before it: `&` or `;` (the first has none); sometimes an empty param.
    semicolon: bool,
    empty_before: bool,
}

const NAMES: [(&str, bool); 7] = [
    ("lat", true),
    ("lng", true),
    ("email", true),
    ("メール", true),
    ("note", false),
    ("page", false),
    ("latitude", false),
];

fn param() -> impl Strategy<Value = Param> {
    (
        0..NAMES.len(),
        0u8..9,
        0u8..4,
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(name, name_form, value_form, semicolon, empty_before)| Param {
                name,
                name_form,
                value_form,
                semicolon,
                empty_before,
            },
        )
}

fn write_name(name: &str, form: u8) -> String {
    match form {
        0 => name.to_string(),
        1 => name.to_uppercase(),
        2 => pct_all(name),
        3 => pct_some(name),
        4 => format!("user[{name}]"),
        5 => format!("{name}[]"),
        6 => format!("{name}%5B0%5D"),
        7 => format!("loc.{name}"),
        _ => format!("a%5Bb%5D%5B{}%5D", pct_all(name)),
    }
}

fn sentinel(i: usize) -> String {
    format!("LEAK-{i:06}")
}

fn write_value(i: usize, form: u8) -> String {
    let s = sentinel(i);
    match form {
        0 => s,
        1 => pct_all(&s),
        2 => format!("x+{}", s.replace('-', "+")),
        _ => format!("{}%20y", pct_some(&s)),
    }
}

/// The sentinel as it reads once decoded (the `+` form spells it with spaces).
fn readings(i: usize) -> [String; 2] {
    [sentinel(i), sentinel(i).replace('-', " ")]
}

/// The list as text, and the expected output without the forbidden params: each kept
/// piece (an empty param between two separators is one) with the separator before it,
/// but the first kept piece.
fn render(params: &[Param]) -> (String, String) {
    let mut pieces: Vec<(&str, String, bool)> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let (name, forbidden) = NAMES[p.name];
        let sep = if i == 0 {
            ""
        } else if p.semicolon {
            ";"
        } else {
            "&"
        };
        let piece = format!(
            "{}={}",
            write_name(name, p.name_form),
            write_value(i, p.value_form)
        );
        if p.empty_before {
            pieces.push((sep, String::new(), true));
            pieces.push(("&", piece, !forbidden));
        } else {
            pieces.push((sep, piece, !forbidden));
        }
    }
    let input: String = pieces
        .iter()
        .map(|(sep, piece, _)| format!("{sep}{piece}"))
        .collect();
    let mut expected = String::new();
    for (k, (sep, piece, _)) in pieces.iter().filter(|(_, _, keep)| *keep).enumerate() {
        if k > 0 {
            expected.push_str(sep);
        }
        expected.push_str(piece);
    }
    (input, expected)
}

fn assert_no_forbidden_sentinel(params: &[Param], output: &str) -> Result<(), TestCaseError> {
    let decoded = decode(output);
    for (i, p) in params.iter().enumerate() {
        let forbidden = NAMES[p.name].1;
        for reading in readings(i) {
            let present = output.contains(&reading) || decoded.contains(&reading);
            prop_assert!(!(forbidden && present), "sentinel {i} survives in {output}");
        }
    }
    Ok(())
}

/// A multipart part: name, how the disposition writes it, line end, JSON or text.
#[derive(Debug, Clone)]
struct Part {
    name: usize,
    form: u8,
    json: bool,
}

fn part() -> impl Strategy<Value = Part> {
    (0..NAMES.len(), 0u8..7, prop::bool::weighted(0.3)).prop_map(|(name, form, json)| Part {
        name,
        form,
        json,
    })
}

fn disposition(name: &str, form: u8) -> String {
    let quoted = |n: &str| format!("\"{n}\"");
    let value = match form {
        0 => quoted(name),
        1 => quoted(&name.to_uppercase()),
        2 if name.is_ascii() => {
            // An RFC 7230 escape before every second character.
            let escaped: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 1 {
                        format!("\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            quoted(&escaped)
        }
        2 | 3 => quoted(&pct_all(name)),
        4 => format!("\"x\"; name*=UTF-8''{}", pct_all(name)),
        5 => quoted(&format!("user[{name}]")),
        _ => format!("\"x\"; name*0*=UTF-8''{}; name*1=\"\"", pct_some(name)),
    };
    format!("Content-Disposition: form-data; name={value}")
}

fn render_multipart(parts: &[(usize, &Part)], nl: &str, preamble: bool) -> String {
    let mut out = String::new();
    if preamble {
        out.push_str("preamble LEAK-999999");
        out.push_str(nl);
    }
    for (i, p) in parts {
        let (name, _) = NAMES[p.name];
        out.push_str("--b0und4ry");
        out.push_str(nl);
        out.push_str(&disposition(name, p.form));
        out.push_str(nl);
        if p.json {
            out.push_str("Content-Type: application/json");
            out.push_str(nl);
        }
        out.push_str(nl);
        if p.json {
            out.push_str(&format!("{{\"v\":\"{}\"}}", sentinel(*i)));
        } else {
            out.push_str(&sentinel(*i));
        }
        out.push_str(nl);
    }
    out.push_str("--b0und4ry--");
    out.push_str(nl);
    out
}

fn enforce(c: &CompiledConfig, purpose: &str, ct: &str, body: &[u8]) -> (BodyOutcome, String) {
    let d = decision(c, purpose);
    let headers = BodyHeaders::from_headers([("content-type", ct.as_bytes())]);
    let (outcome, _) = c
        .enforce_body(&d, &headers, body, TODAY, true, &c.inline_consents())
        .unwrap();
    let text = match &outcome {
        BodyOutcome::Unchanged => String::from_utf8_lossy(body).into_owned(),
        BodyOutcome::Rewritten(b) => String::from_utf8_lossy(b).into_owned(),
        BodyOutcome::Blocked(_) => panic!("no block actions here"),
    };
    (outcome, text)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn forms_lose_every_forbidden_param_and_keep_every_other_byte(params in prop::collection::vec(param(), 1..12)) {
        let c = config();
        let (input, expected) = render(&params);
        let (_, output) = enforce(&c, "strict", "application/x-www-form-urlencoded", input.as_bytes());
        prop_assert_eq!(&output, &expected, "input {}", input);
        assert_no_forbidden_sentinel(&params, &output)?;
        let (_, coarse) = enforce(&c, "coarse", "application/x-www-form-urlencoded", input.as_bytes());
        assert_no_forbidden_sentinel(&params, &coarse)?;
    }

    #[test]
    fn query_strings_lose_every_forbidden_param_and_keep_every_other_byte(params in prop::collection::vec(param(), 1..12)) {
        let c = config();
        let (query, expected) = render(&params);
        let path = format!("/a/b?{query}");
        let d = decision(&c, "strict");
        let edits = c.plan_request(&d, [(":path", path.as_bytes())]);
        let left = edits.new_path.unwrap_or(path.clone());
        let want = if expected.is_empty() { "/a/b".to_string() } else { format!("/a/b?{expected}") };
        prop_assert_eq!(&left, &want);
        assert_no_forbidden_sentinel(&params, &left)?;
    }

    #[test]
    fn multipart_bodies_lose_every_forbidden_part_and_keep_every_other_byte(
        parts in prop::collection::vec(part(), 1..8),
        crlf in any::<bool>(),
        preamble in any::<bool>(),
    ) {
        let c = config();
        let nl = if crlf { "\r\n" } else { "\n" };
        let all: Vec<(usize, &Part)> = parts.iter().enumerate().collect();
        let input = render_multipart(&all, nl, preamble);
        let kept: Vec<(usize, &Part)> = all.iter().copied().filter(|(_, p)| !NAMES[p.name].1).collect();
        let expected = render_multipart(&kept, nl, preamble);
        let (_, output) = enforce(&c, "strict", "multipart/form-data; boundary=\"b0und4ry\"", input.as_bytes());
        prop_assert_eq!(&output, &expected);
        for (i, p) in &all {
            let present = output.contains(&sentinel(*i));
            prop_assert_eq!(present, !NAMES[p.name].1, "part {} ({:?})", i, p);
        }
    }

    #[test]
    fn cookie_headers_lose_every_forbidden_cookie_and_keep_every_other_byte(
        pairs in prop::collection::vec((0usize..6, any::<bool>(), any::<bool>()), 1..8),
    ) {
        const COOKIES: [(&str, bool); 6] = [("geo", true), ("_GA", true), ("%5Fga", true), ("session", false), ("sid", false), ("geography", false)];
        let c = config();
        let mut value = String::new();
        let mut kept: Vec<String> = Vec::new();
        for (i, (which, tight, quoted)) in pairs.iter().enumerate() {
            let sep = if *tight { ";" } else { "; " };
            let v = if *quoted { format!("\"{}\"", sentinel(i)) } else { sentinel(i) };
            let pair = format!("{}={v}", COOKIES[*which].0);
            if i > 0 {
                value.push_str(sep);
            }
            value.push_str(&pair);
            if !COOKIES[*which].1 {
                let lead = if kept.is_empty() { "" } else { sep };
                kept.push(format!("{lead}{pair}"));
            }
        }
        let d = decision(&c, "strict");
        let edits = c.plan_request(&d, [("cookie", value.as_bytes())]);
        let any_forbidden = pairs.iter().any(|(w, _, _)| COOKIES[*w].1);
        prop_assert_eq!(edits.cookies.is_some(), any_forbidden);
        if let Some(edit) = edits.cookies {
            let expected: Vec<Vec<u8>> = if kept.is_empty() { vec![] } else { vec![kept.concat().into_bytes()] };
            prop_assert_eq!(edit.keep, expected);
        }
        let set: Vec<String> = pairs.iter().enumerate().map(|(i, (w, _, _))| format!("{}={}; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly", COOKIES[*w].0, sentinel(i))).collect();
        let list: Vec<(&str, &[u8])> = set.iter().map(|v| ("set-cookie", v.as_bytes())).collect();
        let edits = c.plan_response(&d, list);
        if let Some(edit) = edits.cookies {
            let expected: Vec<Vec<u8>> = set.iter().zip(&pairs).filter(|(_, (w, _, _))| !COOKIES[*w].1).map(|(v, _)| v.clone().into_bytes()).collect();
            prop_assert_eq!(edit.keep, expected);
        } else {
            prop_assert!(!any_forbidden);
        }
    }
}
