//! Multipart form bodies (`multipart/form-data`, RFC 7578 over RFC 2046's framing).
//!
//! The framing is hand-written: the crates that parse multipart either need an async
//! runtime and a stream (`multer`) or are unmaintained (`multipart`), and none gives the
//! byte offsets the filter needs to keep every untouched byte as it was. What it uses of
//! others: `memchr` (already in the tree through `serde_json`) finds the delimiters,
//! `httparse` reads each part's header block, [`super::params`] its `Content-Disposition`.
//!
//! Reading it strictly: a delimiter is `--boundary` at the start of a line, after CRLF or
//! a bare LF (parsers differ on line ends, so both count), followed by transport padding
//! and a line end, or by `--` for the closing one. A line that starts with the delimiter
//! and goes on otherwise, a missing closing delimiter, a delimiter after it, a part
//! without `Content-Disposition: form-data` and a `name`, a name given twice, a header
//! block that does not end or is too long: each is an error, and the host refuses the
//! body. Nothing malformed passes.

use std::fmt;

use crate::body::form::{field_categories, record};
use crate::body::params::{self, Param};
use crate::body::redactor::{BodyOutcome, BodyReport, BodyRules, HitAction, Resolved};
use crate::body::scan::JsonError;
use crate::body::{is_json, BodyError};
use crate::policy::categories::CategorySet;
use crate::policy::compiled::CompiledPolicy;

/// Longest boundary RFC 2046 allows.
pub const MAX_BOUNDARY_BYTES: usize = 70;

/// Largest header block of one part.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;

/// Most headers one part may have.
const MAX_PART_HEADERS: usize = 32;

/// A multipart boundary as the content type declares it: 1 to 70 of RFC 2046's `bchars`,
/// not ending in a space.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    len: u8,
    bytes: [u8; MAX_BOUNDARY_BYTES],
}

impl Boundary {
    /// Checks a boundary; `None` when it is empty, too long or holds a byte RFC 2046 does
    /// not allow in one.
    pub fn new(value: &[u8]) -> Option<Self> {
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(b);
        if value.is_empty()
            || value.len() > MAX_BOUNDARY_BYTES
            || !value.iter().all(allowed)
            || value.last() == Some(&b' ')
        {
            return None;
        }
        let mut bytes = [0; MAX_BOUNDARY_BYTES];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(Boundary {
            len: u8::try_from(value.len()).ok()?,
            bytes,
        })
    }

    /// The boundary's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl fmt::Debug for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Boundary({:?})",
            String::from_utf8_lossy(self.as_bytes())
        )
    }
}

/// Why a multipart body was refused as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipartError {
    /// The content type has no valid `boundary` parameter.
    Boundary,
    /// No delimiter line at all.
    NoDelimiter,
    /// The closing delimiter is missing.
    NotClosed,
    /// A line starts with the delimiter and goes on with something else.
    DelimiterLine,
    /// A delimiter line after the closing one.
    AfterClose,
    /// A part's header block does not end, or is not valid header syntax.
    Headers,
    /// A part's header block is longer than [`MAX_PART_HEADER_BYTES`] or has too many headers.
    HeadersTooLong,
    /// A part without `Content-Disposition: form-data`, or a disposition that does not parse.
    Disposition,
    /// A part without a `name`.
    NoName,
    /// A header or parameter given twice, which parsers read differently.
    Ambiguous,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultipartError::Boundary => "the content type has no valid boundary",
            MultipartError::NoDelimiter => "no multipart delimiter",
            MultipartError::NotClosed => "the closing delimiter is missing",
            MultipartError::DelimiterLine => "a line starts with the delimiter and goes on",
            MultipartError::AfterClose => "a delimiter after the closing one",
            MultipartError::Headers => "a part's headers are malformed",
            MultipartError::HeadersTooLong => "a part's header block is too long",
            MultipartError::Disposition => "a part has no form-data content disposition",
            MultipartError::NoName => "a part has no name",
            MultipartError::Ambiguous => "a part repeats a header or parameter",
        })
    }
}

impl std::error::Error for MultipartError {}

/// One part: `start` is its delimiter line's `--`, `end` the next one's; its body is
/// `body_start..body_end` (the line end before the next delimiter excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    headers: usize,
    body_end: usize,
    end: usize,
}

/// Finds the parts of a multipart body.
fn spans(body: &[u8], boundary: &Boundary) -> Result<Vec<Span>, MultipartError> {
    let mut dash = b"--".to_vec();
    dash.extend_from_slice(boundary.as_bytes());
    // (position of `--`, position after its line end), closing delimiter last.
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut closed = false;
    for at in memchr::memmem::find_iter(body, &dash) {
        if at != 0 && body.get(at - 1) != Some(&b'\n') {
            continue;
        }
        if closed {
            return Err(MultipartError::AfterClose);
        }
        let after = at + dash.len();
        if body.get(after..after + 2) == Some(b"--") {
            lines.push((at, after + 2));
            closed = true;
            continue;
        }
        let mut pos = after;
        while matches!(body.get(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        match (body.get(pos), body.get(pos + 1)) {
            (Some(b'\n'), _) => pos += 1,
            (Some(b'\r'), Some(b'\n')) => pos += 2,
            _ => return Err(MultipartError::DelimiterLine),
        }
        lines.push((at, pos));
    }
    if lines.is_empty() {
        return Err(MultipartError::NoDelimiter);
    }
    if !closed {
        return Err(MultipartError::NotClosed);
    }
    let mut out = Vec::with_capacity(lines.len());
    for pair in lines.windows(2) {
        let [(start, headers), (end, _)] = pair else {
            continue;
        };
        let line_end = if *end >= 2 && body.get(end - 2..*end) == Some(b"\r\n") {
            2
        } else {
            1
        };
        let body_end = end.saturating_sub(line_end);
        if body_end < *headers {
            return Err(MultipartError::Headers);
        }
        out.push(Span {
            start: *start,
            headers: *headers,
            body_end,
            end: *end,
        });
    }
    Ok(out)
}

/// What a part's headers say.
struct PartHeaders {
    /// Every reading of its name (lowercased; percent-decoded too).
    names: Vec<String>,
    /// It declares JSON.
    json: bool,
    /// It is a text field: no file name, no content type or `text/plain`.
    text: bool,
    /// Its `Content-Transfer-Encoding` makes its bytes unreadable as they are.
    encoded: bool,
    /// Where its body starts.
    body_start: usize,
}

fn read_headers(part: &[u8], offset: usize) -> Result<PartHeaders, MultipartError> {
    let limit = part.len().min(MAX_PART_HEADER_BYTES);
    let mut storage = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    let (consumed, headers) =
        match httparse::parse_headers(part.get(..limit).unwrap_or_default(), &mut storage) {
            Ok(httparse::Status::Complete(done)) => done,
            Ok(httparse::Status::Partial) if limit < part.len() => {
                return Err(MultipartError::HeadersTooLong)
            }
            Err(httparse::Error::TooManyHeaders) => return Err(MultipartError::HeadersTooLong),
            Ok(httparse::Status::Partial) | Err(_) => return Err(MultipartError::Headers),
        };
    let one = |name: &str| -> Result<Option<&[u8]>, MultipartError> {
        let mut found = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        let first = found.next().map(|h| h.value);
        if found.next().is_some() {
            return Err(MultipartError::Ambiguous);
        }
        Ok(first)
    };
    let disposition = one("content-disposition")?.ok_or(MultipartError::Disposition)?;
    let content_type = one("content-type")?;
    let encoding = one("content-transfer-encoding")?;
    let readings: Vec<Vec<Param>> = [true, false]
        .into_iter()
        .filter_map(|escapes| params::parse(disposition, escapes).ok())
        .map(|(head, params)| {
            if head == "form-data" {
                Ok(params)
            } else {
                Err(MultipartError::Disposition)
            }
        })
        .collect::<Result<_, _>>()?;
    if readings.is_empty() {
        return Err(MultipartError::Disposition);
    }
    let mut names = Vec::new();
    let mut file = false;
    for params in &readings {
        let ambiguous = |_| MultipartError::Ambiguous;
        for raw in params::values_of(params, "name").map_err(ambiguous)? {
            let text = String::from_utf8_lossy(&raw).to_lowercase();
            if raw.contains(&b'%') {
                let decoded = percent_encoding::percent_decode(&raw).decode_utf8_lossy();
                names.push(decoded.to_lowercase());
            }
            names.push(text);
        }
        file |= !params::values_of(params, "filename")
            .map_err(ambiguous)?
            .is_empty();
    }
    if names.is_empty() {
        return Err(MultipartError::NoName);
    }
    names.sort();
    names.dedup();
    let essence = content_type.map(|ct| {
        String::from_utf8_lossy(ct.split(|b| *b == b';').next().unwrap_or_default())
            .trim()
            .to_ascii_lowercase()
    });
    let encoded = encoding.is_some_and(|e| {
        let e = String::from_utf8_lossy(e).trim().to_ascii_lowercase();
        !matches!(e.as_str(), "7bit" | "8bit" | "binary")
    });
    Ok(PartHeaders {
        names,
        json: content_type.is_some_and(is_json),
        text: !file && essence.as_deref().is_none_or(|e| e == "text/plain"),
        encoded,
        body_start: offset + consumed,
    })
}

/// Redacts a JSON document (a part's body) as the body redactor would.
pub(crate) type JsonRedact<'r> =
    dyn FnMut(&[u8]) -> Result<(BodyOutcome, BodyReport), JsonError> + 'r;

/// What becomes of one part.
enum PartEdit {
    Remove,
    Body(Vec<u8>),
}

/// Redacts one multipart body. Parts whose name carries a forbidden category (through the
/// categories' `query` names) are removed whole, or refuse the body when the category's
/// action is `block`. Of the others, a part declared JSON is redacted as JSON (invalid
/// JSON is an error), and so is any part whose body parses as JSON; a text field passes
/// byte for byte; anything else (a file, another content type, a transfer encoding) cannot
/// be checked: an error when `refuse_unread`, else it passes and the report says
/// `unread`.
pub(crate) fn redact_multipart(
    body: &[u8],
    boundary: &Boundary,
    rules: &BodyRules<'_>,
    policy: &CompiledPolicy,
    forbidden: CategorySet,
    refuse_unread: bool,
    json: &mut JsonRedact<'_>,
) -> Result<(BodyOutcome, BodyReport), BodyError> {
    let spans = spans(body, boundary).map_err(BodyError::InvalidMultipart)?;
    let mut report = BodyReport::default();
    let mut edits: Vec<(Span, PartEdit)> = Vec::new();
    for (index, span) in spans.iter().enumerate() {
        let part = body.get(span.headers..span.body_end).unwrap_or_default();
        let headers = read_headers(part, span.headers).map_err(BodyError::InvalidMultipart)?;
        let (hit, name) = field_categories(policy, forbidden, &headers.names);
        if !hit.is_empty() {
            report.categories = report.categories.union(hit);
            let path = || format!("multipart[{index}]:{}", name.as_deref().unwrap_or("*"));
            let first = hit.iter().next();
            match rules.resolve(hit) {
                Resolved::Block(c) => {
                    record(&mut report, rules, path, c, HitAction::Blocked);
                    return Ok((BodyOutcome::Blocked(c), report));
                }
                Resolved::Remove | Resolved::Transform(..) => {
                    report.removed += 1;
                    if let Some(c) = first {
                        record(&mut report, rules, path, c, HitAction::Removed);
                    }
                    edits.push((*span, PartEdit::Remove));
                }
            }
            continue;
        }
        let content = body
            .get(headers.body_start..span.body_end)
            .unwrap_or_default();
        let redacted = if headers.encoded {
            None
        } else {
            Some(json(content))
        };
        match redacted {
            Some(Ok((outcome, part_report))) => {
                let prefix = format!("multipart[{index}]");
                let mut part_report = part_report;
                for hit in &mut part_report.fields {
                    hit.path.insert_str(0, &prefix);
                }
                report.merge(part_report);
                match outcome {
                    BodyOutcome::Unchanged => {}
                    BodyOutcome::Rewritten(bytes) => {
                        let at = Span {
                            start: headers.body_start,
                            ..*span
                        };
                        edits.push((at, PartEdit::Body(bytes)));
                    }
                    BodyOutcome::Blocked(c) => return Ok((BodyOutcome::Blocked(c), report)),
                }
            }
            Some(Err(e)) if headers.json => return Err(BodyError::InvalidJson(e)),
            _ if headers.text && !headers.encoded => {}
            _ if refuse_unread => return Err(BodyError::Unreadable),
            _ => report.unread = true,
        }
    }
    if edits.is_empty() {
        return Ok((BodyOutcome::Unchanged, report));
    }
    let mut out = Vec::with_capacity(body.len());
    let mut copied = 0;
    for (span, edit) in edits {
        match edit {
            PartEdit::Remove => {
                out.extend_from_slice(body.get(copied..span.start).unwrap_or_default());
                copied = span.end;
            }
            PartEdit::Body(bytes) => {
                out.extend_from_slice(body.get(copied..span.start).unwrap_or_default());
                out.extend_from_slice(&bytes);
                copied = span.body_end;
            }
        }
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    Ok((BodyOutcome::Rewritten(out), report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::test_support::{config, enforce, forwarded};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const CT: Option<&str> = Some("multipart/form-data; boundary=XyZ");

    /// A multipart body with boundary `XyZ`: each part is (header lines, body).
    fn body(nl: &str, parts: &[(&[&str], &str)]) -> String {
        let mut out = String::new();
        for (headers, content) in parts {
            out.push_str("--XyZ");
            out.push_str(nl);
            for h in *headers {
                out.push_str(h);
                out.push_str(nl);
            }
            out.push_str(nl);
            out.push_str(content);
            out.push_str(nl);
        }
        out.push_str("--XyZ--");
        out.push_str(nl);
        out
    }

    fn field(name: &str) -> String {
        format!("Content-Disposition: form-data; name={name}")
    }

    fn run(purpose: &str, unparsed: &str, input: &str) -> Result<(String, BodyReport), BodyError> {
        let c = config(unparsed);
        let (outcome, report) = enforce(&c, purpose, CT, input.as_bytes())?;
        Ok((forwarded(input.as_bytes(), &outcome), report))
    }

    fn out(input: &str) -> String {
        run("strict", "pass", input).unwrap().0
    }

    #[test]
    fn a_forbidden_part_goes_whole_and_every_other_byte_stays() {
        for nl in ["\r\n", "\n"] {
            let note = field("\"note\"");
            let email = field("\"email\"");
            let lat = field("lat");
            let (h0, h1, h2) = (
                [note.as_str()],
                [email.as_str(), "Content-Type: text/plain"],
                [lat.as_str()],
            );
            let parts: Vec<(&[&str], &str)> =
                vec![(&h0, "hello"), (&h1, "a@example.jp"), (&h2, "35.86")];
            let input = body(nl, &parts);
            let kept = body(nl, &parts[..1]);
            assert_eq!(out(&input), kept, "{nl:?}");
            let first_gone = body(nl, &[parts[1], parts[0]]);
            assert_eq!(out(&first_gone), kept, "{nl:?}");
            assert_eq!(out(&body(nl, &parts[1..])), format!("--XyZ--{nl}"));
            let allowed = body(nl, &parts[..1]);
            assert_eq!(
                enforce(&config("pass"), "strict", CT, allowed.as_bytes())
                    .unwrap()
                    .0,
                BodyOutcome::Unchanged
            );
        }
    }

    #[test]
    fn preamble_and_epilogue_stay() {
        let email = field("\"email\"");
        let note = field("note");
        let inner = body("\r\n", &[(&[email.as_str()], "x"), (&[note.as_str()], "y")]);
        let input = format!("preamble\r\n{inner}epilogue\r\n");
        let expected = format!(
            "preamble\r\n{}epilogue\r\n",
            body("\r\n", &[(&[note.as_str()], "y")])
        );
        assert_eq!(out(&input), expected);
    }

    #[test]
    fn every_way_of_writing_a_name_is_read() {
        for name in [
            r#""email""#,
            r#""EMAIL""#,
            r#""em\ail""#,
            r#""%65mail""#,
            r#""user[email]""#,
            r#""user.email""#,
            "email",
            r#"x; name*=UTF-8''%65mail"#,
            r#""x"; name*=utf-8'en'email"#,
            r#""x"; name*0*=UTF-8''em; name*1="ail""#,
        ] {
            let disposition = field(name);
            let input = body("\r\n", &[(&[disposition.as_str()], "secret")]);
            assert_eq!(out(&input), "--XyZ--\r\n", "{name}");
        }
        let quoted = field(r#""a\"b""#);
        let input = body("\r\n", &[(&[quoted.as_str()], "kept")]);
        assert_eq!(out(&input), input, "an escaped quote in an allowed name");
    }

    #[test]
    fn a_json_part_is_redacted_as_json() {
        let meta = field("\"meta\"");
        let doc = r#"{"gps":{"lat":35.8617,"lng":139.6455},"note":"x"}"#;
        let declared = body(
            "\r\n",
            &[(&[meta.as_str(), "Content-Type: application/json"], doc)],
        );
        let expected = body(
            "\r\n",
            &[(
                &[meta.as_str(), "Content-Type: application/json"],
                r#"{"note":"x"}"#,
            )],
        );
        let (text, report) = run("strict", "pass", &declared).unwrap();
        assert_eq!(text, expected);
        assert_eq!(report.fields[0].path, "multipart[0]$.gps");
        let (coarse, _) = run("analysis", "pass", &declared).unwrap();
        assert!(coarse.contains(r#"{"gps":{"lat":35.86,"lng":139.65},"note":"x"}"#));
        let sniffed = body("\r\n", &[(&[meta.as_str()], doc)]);
        assert!(
            !out(&sniffed).contains("35.86"),
            "a text field holding JSON"
        );
        let broken = body(
            "\r\n",
            &[(
                &[meta.as_str(), "Content-Type: application/json"],
                "{\"a\":",
            )],
        );
        assert!(matches!(
            run("strict", "pass", &broken),
            Err(BodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn files_and_unreadable_parts_follow_unparsed() {
        let file = r#"Content-Disposition: form-data; name="upload"; filename="a.bin""#;
        let input = body(
            "\r\n",
            &[(
                &[file, "Content-Type: application/octet-stream"],
                "\u{1}\u{2}",
            )],
        );
        let (text, report) = run("strict", "pass", &input).unwrap();
        assert_eq!(text, input);
        assert!(report.unread);
        assert_eq!(run("strict", "block", &input), Err(BodyError::Unreadable));
        let encoded = field("note");
        let b64 = body(
            "\r\n",
            &[(
                &[encoded.as_str(), "Content-Transfer-Encoding: base64"],
                "e30=",
            )],
        );
        assert_eq!(run("strict", "block", &b64), Err(BodyError::Unreadable));
        let text_field = field("note");
        let plain = body("\r\n", &[(&[text_field.as_str()], "just words")]);
        let (_, report) = run("strict", "block", &plain).unwrap();
        assert!(!report.unread, "a text field of an allowed name is read");
        let json_file = r#"Content-Disposition: form-data; name="f"; filename="a.json""#;
        let json_upload = body("\r\n", &[(&[json_file], r#"{"email":"a"}"#)]);
        assert!(!out(&json_upload).contains("email"), "a JSON file is read");
    }

    #[test]
    fn a_block_action_blocks_the_body() {
        let amount = field("amount");
        let input = body("\r\n", &[(&[amount.as_str()], "5")]);
        let c = config("pass");
        let (outcome, _) = enforce(&c, "offers", CT, input.as_bytes()).unwrap();
        assert!(matches!(outcome, BodyOutcome::Blocked(_)));
    }

    #[test]
    fn malformed_multipart_is_an_error_never_a_pass() {
        let note = field("note");
        let good = body("\r\n", &[(&[note.as_str()], "x")]);
        let cases: Vec<(String, MultipartError)> = vec![
            ("no delimiter at all".into(), MultipartError::NoDelimiter),
            (good.replace("--XyZ--\r\n", ""), MultipartError::NotClosed),
            (
                good.replace("--XyZ\r\n", "--XyZjunk\r\n"),
                MultipartError::DelimiterLine,
            ),
            (format!("{good}--XyZ\r\n"), MultipartError::AfterClose),
            (
                good.replace(&note, "Content-Disposition: attachment; name=x"),
                MultipartError::Disposition,
            ),
            (
                good.replace(&note, "Content-Type: text/plain"),
                MultipartError::Disposition,
            ),
            (
                good.replace(&note, "Content-Disposition: form-data"),
                MultipartError::NoName,
            ),
            (
                good.replace(&note, "Content-Disposition: form-data; name=a; name=email"),
                MultipartError::Ambiguous,
            ),
            (
                good.replace(&note, &format!("{note}\r\n{note}")),
                MultipartError::Ambiguous,
            ),
            (
                good.replace(
                    &note,
                    &format!("X-Long: {}", "a".repeat(MAX_PART_HEADER_BYTES)),
                ),
                MultipartError::HeadersTooLong,
            ),
            (
                good.replace(&note, "Broken header line"),
                MultipartError::Headers,
            ),
            ("--XyZ\r\n--XyZ--\r\n".into(), MultipartError::Headers),
        ];
        for (input, expected) in cases {
            assert_eq!(
                run("all", "pass", &input),
                Err(BodyError::InvalidMultipart(expected)),
                "{input:?}"
            );
        }
        let c = config("pass");
        let missing = crate::body::BodyHeaders::from_headers([(
            "content-type",
            b"multipart/form-data".as_slice(),
        )]);
        let d = c.evaluate([("x-data-purpose", b"strict".as_slice())]);
        assert_eq!(
            c.enforce_body(
                &d,
                &missing,
                good.as_bytes(),
                crate::body::test_support::TODAY,
                false,
                &c.inline_consents()
            ),
            Err(BodyError::InvalidMultipart(MultipartError::Boundary))
        );
    }

    #[test]
    fn a_delimiter_after_a_bare_lf_counts_inside_a_crlf_body() {
        let note = field("note");
        let hidden = format!(
            "--XyZ\r\n{note}\r\n\r\nx\n--XyZ\r\nContent-Disposition: form-data; name=email\r\n\r\nsecret\r\n--XyZ--\r\n"
        );
        assert!(!out(&hidden).contains("secret"));
    }

    #[test]
    fn boundaries_follow_rfc_2046() {
        assert!(Boundary::new(b"----WebKitFormBoundary7MA4YWxkTrZu0gW").is_some());
        assert!(Boundary::new(b"a'()+_,-./:=? b").is_some());
        assert!(Boundary::new(b"").is_none());
        assert!(Boundary::new(b"trailing ").is_none());
        assert!(Boundary::new(b"semi;colon").is_none());
        assert!(Boundary::new(&[b'a'; 71]).is_none());
    }
}
