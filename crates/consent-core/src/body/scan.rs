//! A strict JSON scanner over bytes: validates as it goes and reports spans, so the
//! redactor can copy untouched bytes and parse each value exactly once.

use std::borrow::Cow;

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON (the offset of the first bad byte).
    Syntax(usize),
    /// Nested deeper than the limit.
    TooDeep,
}

/// Bytes that end the fast run inside a string: quote, backslash and control bytes.
// Indexing in a const initialiser cannot fail at run time: out of range would not compile.
#[allow(clippy::indexing_slicing)]
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The offset of the first quote, backslash or control byte at or after `from`: eight
/// bytes at a time where eight remain, then byte by byte.
#[inline]
fn find_string_stop(input: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = input.get(from..).and_then(|r| r.first_chunk::<8>()) {
        let x = u64::from_le_bytes(*chunk);
        let quote = x ^ (u64::from(b'"') * ONES);
        let backslash = x ^ (u64::from(b'\\') * ONES);
        // A byte is flagged when it is zero after the xor (a match) or below 0x20; the
        // lowest flagged byte is exact (borrows only reach upward).
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(0x20 * ONES) & !x);
        let hits = hits & HIGH;
        if hits != 0 {
            return Some(from + (hits.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    let rest = input.get(from..)?;
    rest.iter()
        .position(|&b| STRING_STOP.get(usize::from(b)).copied().unwrap_or(true))
        .map(|p| from + p)
}

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 128;

/// Cursor over a JSON document.
pub struct Scanner<'a> {
    /// The document.
    pub input: &'a [u8],
    /// Current offset.
    pub pos: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Scanner { input, pos: 0 }
    }

    /// The byte at the cursor.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// An error at the cursor.
    pub fn err(&self) -> JsonError {
        JsonError::Syntax(self.pos)
    }

    /// Skips JSON whitespace.
    #[inline]
    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `byte` or fails.
    #[inline]
    pub fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    /// Scans a string at the cursor; returns the span of its content (without quotes) and
    /// whether it holds escapes.
    pub fn string(&mut self) -> Result<(usize, usize, bool), JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Fast path: run to the next quote, backslash or control byte.
            self.pos = find_string_stop(self.input, self.pos)
                .ok_or(JsonError::Syntax(self.input.len()))?;
            let Some(&b) = self.input.get(self.pos) else {
                return Err(self.err());
            };
            match b {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self
                                .input
                                .get(self.pos + 1..self.pos + 5)
                                .ok_or(self.err())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(self.err());
                            }
                            self.pos += 5;
                        }
                        _ => return Err(self.err()),
                    }
                }
                _ => return Err(self.err()),
            }
        }
    }

    /// Scans a number at the cursor (JSON grammar).
    pub fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err());
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err());
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Scans a literal (`true`, `false`, `null`).
    pub fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.input.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err())
        }
    }

    /// Validates and skips one value of any kind.
    pub fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    self.string()?;
                    self.skip_ws();
                    self.expect(b':')?;
                    self.skip_ws();
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err()),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.err()),
                    }
                }
            }
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err()),
        }
    }
}

/// Decodes the content of a JSON string (span without quotes). Borrowed when it has no escapes.
/// Lone surrogates decode to U+FFFD, as they cannot name a key anyway.
#[inline]
pub fn decode_string(raw: &[u8], escaped: bool) -> Cow<'_, [u8]> {
    if !escaped {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(decode_escaped(raw))
}

/// The slow path of [`decode_string`]: a string with escapes.
#[inline(never)]
fn decode_escaped(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&kind) = raw.get(i + 1) else { break };
        i += 2;
        let simple = match kind {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            continue;
        }
        let unit = |at: usize| {
            raw.get(at..at + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let Some(first) = unit(i) else { break };
        i += 4;
        let code = if (0xD800..0xDC00).contains(&first)
            && raw.get(i) == Some(&b'\\')
            && raw.get(i + 1) == Some(&b'u')
        {
            match unit(i + 2) {
                Some(second) if (0xDC00..0xE000).contains(&second) => {
                    i += 6;
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                }
                _ => 0xFFFD,
            }
        } else {
            first
        };
        let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn valid(s: &str) -> bool {
        let mut sc = Scanner::new(s.as_bytes());
        sc.skip_ws();
        let ok = sc.skip_value(0).is_ok();
        sc.skip_ws();
        ok && sc.pos == s.len()
    }

    #[test]
    fn accepts_what_json_accepts() {
        for s in [
            "0",
            "-0.5e+3",
            "\"a\\u00e9\\n\"",
            "[]",
            "{}",
            " [1, {\"a\": [true, false, null]}] ",
            "\"\\ud83d\\ude00\"",
            "1E5",
        ] {
            assert!(valid(s), "{s}");
            assert!(serde_json::from_str::<serde_json::Value>(s).is_ok());
        }
    }

    #[test]
    fn rejects_what_json_rejects() {
        for s in [
            "01",
            "1.",
            "-",
            "+1",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "\"\\x\"",
            "\"a\nb\"",
            "tru",
            "[1 2]",
            "{\"a\" 1}",
            "'a'",
            "\"\\u12G4\"",
            "",
        ] {
            assert!(!valid(s), "{s}");
            assert!(
                serde_json::from_str::<serde_json::Value>(s).is_err(),
                "serde agrees on {s}"
            );
        }
    }

    #[test]
    fn the_word_scan_finds_the_same_stop_as_the_byte_scan() {
        let samples: [&[u8]; 6] = [
            b"abcdefghij\"",
            b"abc\\defghijklmn\"",
            b"abcdefgh\x01ij",
            b"\xff\xfe\x80\x7f~}|{zyx\"",
            b"short\"",
            b"no stop at all in here",
        ];
        for s in samples {
            for from in 0..s.len() {
                let expected = s[from..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .map(|p| p + from);
                assert_eq!(find_string_stop(s, from), expected, "{s:?} from {from}");
            }
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused() {
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        let mut sc = Scanner::new(deep.as_bytes());
        assert_eq!(sc.skip_value(0), Err(JsonError::TooDeep));
    }

    #[test]
    fn escapes_decode_to_the_key_they_spell() {
        assert_eq!(decode_string(b"\\u0067ps", true).as_ref(), b"gps");
        assert_eq!(decode_string(b"a\\\"b", true).as_ref(), b"a\"b");
        assert_eq!(
            decode_string("\\ud83d\\ude00".as_bytes(), true).as_ref(),
            "😀".as_bytes()
        );
        assert_eq!(decode_string(b"plain", false).as_ref(), b"plain");
    }
}
