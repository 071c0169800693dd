//! The request as the decision sees it: who the data is about and why it is used.

use crate::policy::gpc::{is_signal, GPC_HEADER};
use crate::policy::party::Caller;
use crate::policy::routes::RuleIdx;

/// Longest accepted user-ID or purpose value, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;

/// What one identity header held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderValue<'a> {
    /// Not sent, or sent empty.
    #[default]
    Absent,
    /// Exactly one well-formed value.
    One(&'a str),
    /// Sent more than once, or one value holding a comma-separated list.
    Repeated,
    /// Not valid UTF-8, holds control characters, or longer than [`MAX_IDENTITY_LEN`].
    Invalid,
}

fn classify(raw: &[u8]) -> HeaderValue<'_> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return HeaderValue::Invalid;
    };
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() {
        return HeaderValue::Absent;
    }
    if text.len() > MAX_IDENTITY_LEN || text.chars().any(char::is_control) {
        return HeaderValue::Invalid;
    }
    if text.contains(',') {
        return HeaderValue::Repeated;
    }
    HeaderValue::One(text)
}

/// What the decision knows about a request besides its identity headers: who receives
/// the data, the GPC signal and the route rule. The default is the strictest: an unknown
/// caller (a third party), no signal, the default rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestContext {
    /// The resolved caller (§7, §8).
    pub caller: Caller,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
    /// The route rule that matched; `None` is the default rule.
    pub rule: Option<RuleIdx>,
}

impl<'a> HeaderValue<'a> {
    /// Folds every occurrence of one header into a single value (see [`HeaderValue`]).
    pub fn fold<I>(values: I) -> Self
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut occurrences = Occurrences::default();
        for v in values {
            occurrences.add(v);
        }
        occurrences.value()
    }
}

/// The facts of one request that the decision reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestView<'a> {
    /// Who the data is about.
    pub user: HeaderValue<'a>,
    /// Why it is being used.
    pub purpose: HeaderValue<'a>,
    /// Caller, GPC and route.
    pub context: RequestContext,
}

impl<'a> RequestView<'a> {
    /// Reads the identity headers out of a request's header list (names in lowercase,
    /// as Envoy gives them). Every occurrence counts, so a repeated header is seen.
    pub fn from_headers<I>(user_header: &str, purpose_header: &str, headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let scan = HeaderScan::read(user_header, purpose_header, None, headers);
        RequestView {
            user: scan.user,
            purpose: scan.purpose,
            context: RequestContext::default(),
        }
    }

    /// A view with the given identity headers and context.
    pub fn with_context(self, context: RequestContext) -> Self {
        RequestView { context, ..self }
    }
}

/// Everything the decision reads from a request's headers, read in one pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderScan<'a> {
    /// The user-ID header.
    pub user: HeaderValue<'a>,
    /// The purpose header.
    pub purpose: HeaderValue<'a>,
    /// `Sec-GPC: 1` was sent (any occurrence).
    pub gpc: bool,
    /// The development caller header, when one is configured.
    pub dev_caller: HeaderValue<'a>,
    /// `:authority`, for route rules.
    pub authority: Option<&'a str>,
    /// `:path`, for route rules.
    pub path: Option<&'a str>,
}

impl<'a> HeaderScan<'a> {
    /// Reads a header list (lowercase names). An empty header name never matches, so
    /// passing `""` for the identity headers reads only the rest.
    pub fn read<I>(
        user_header: &str,
        purpose_header: &str,
        dev_header: Option<&str>,
        headers: I,
    ) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut user = Occurrences::default();
        let mut purpose = Occurrences::default();
        let mut dev = Occurrences::default();
        let mut scan = HeaderScan::default();
        for (name, value) in headers {
            if name.is_empty() {
                continue;
            }
            if name == user_header {
                user.add(value);
            } else if name == purpose_header {
                purpose.add(value);
            } else if name == GPC_HEADER {
                scan.gpc |= is_signal(value);
            } else if dev_header == Some(name) {
                dev.add(value);
            } else if name == ":authority" {
                scan.authority = scan.authority.or(std::str::from_utf8(value).ok());
            } else if name == ":path" {
                scan.path = scan.path.or(std::str::from_utf8(value).ok());
            }
        }
        scan.user = user.value();
        scan.purpose = purpose.value();
        scan.dev_caller = dev.value();
        scan
    }
}

/// Every occurrence of one header, folded as they arrive.
#[derive(Default)]
struct Occurrences<'a> {
    count: usize,
    first: Option<HeaderValue<'a>>,
    any_invalid: bool,
}

impl<'a> Occurrences<'a> {
    fn add(&mut self, raw: &'a [u8]) {
        let value = classify(raw);
        self.count += 1;
        self.any_invalid |= value == HeaderValue::Invalid;
        self.first.get_or_insert(value);
    }

    fn value(self) -> HeaderValue<'a> {
        match (self.count, self.any_invalid) {
            (0, _) => HeaderValue::Absent,
            (_, true) => HeaderValue::Invalid,
            (1, false) => self.first.unwrap_or(HeaderValue::Absent),
            _ => HeaderValue::Repeated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn view(headers: &[(&'static str, &'static [u8])]) -> RequestView<'static> {
        RequestView::from_headers("x-user-id", "x-data-purpose", headers.iter().copied())
    }

    #[test]
    fn single_headers_are_read_and_trimmed() {
        let v = view(&[("x-user-id", b" u-1 "), ("x-data-purpose", b"surveys")]);
        assert_eq!(v.user, HeaderValue::One("u-1"));
        assert_eq!(v.purpose, HeaderValue::One("surveys"));
    }

    #[test]
    fn a_repeated_header_is_not_taken_as_its_first_value() {
        let v = view(&[("x-user-id", b"u-1"), ("x-user-id", b"u-2")]);
        assert_eq!(v.user, HeaderValue::Repeated);
    }

    #[test]
    fn a_comma_separated_value_counts_as_several_values() {
        let v = view(&[("x-data-purpose", b"surveys, marketing.campaigns")]);
        assert_eq!(v.purpose, HeaderValue::Repeated);
    }

    #[test]
    fn invalid_utf8_and_control_characters_are_invalid() {
        assert_eq!(
            view(&[("x-user-id", b"\xff\xfe")]).user,
            HeaderValue::Invalid
        );
        assert_eq!(view(&[("x-user-id", b"a\x01b")]).user, HeaderValue::Invalid);
    }

    #[test]
    fn an_invalid_value_stays_invalid_when_repeated() {
        let v = view(&[("x-user-id", b"\xff"), ("x-user-id", b"u-1")]);
        assert_eq!(v.user, HeaderValue::Invalid);
    }

    #[test]
    fn overlong_values_are_invalid() {
        let long = vec![b'a'; MAX_IDENTITY_LEN + 1];
        let v = RequestView::from_headers(
            "x-user-id",
            "x-data-purpose",
            [("x-user-id", long.as_slice())],
        );
        assert_eq!(v.user, HeaderValue::Invalid);
    }

    #[test]
    fn an_empty_header_next_to_a_value_still_counts_as_repeated() {
        let v = view(&[("x-user-id", b""), ("x-user-id", b"u-1")]);
        assert_eq!(v.user, HeaderValue::Repeated);
    }

    #[test]
    fn empty_and_missing_headers_are_absent() {
        let v = view(&[("x-user-id", b"  ")]);
        assert_eq!(v.user, HeaderValue::Absent);
        assert_eq!(v.purpose, HeaderValue::Absent);
    }
}
