//! Which headers to remove, how to rewrite the path, and which cookies to take out of
//! `Cookie` and `Set-Cookie` headers, given a decision.

use crate::config::CompiledConfig;
use crate::decide::cookie_plan::{plan_cookie_headers, plan_set_cookie_headers};
use crate::decide::decision::Decision;
use crate::decide::query::{strip_params, QuerySettings};
use crate::policy::categories::CategorySet;
use crate::policy::compiled::CompiledPolicy;

/// Edits to apply to one header map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Header names (lowercase) to remove, each once.
    pub remove: Vec<String>,
    /// New `:path` when query parameters were removed.
    pub new_path: Option<String>,
    /// Categories that were actually present and removed.
    pub removed: CategorySet,
    /// Number of headers and parameters removed.
    pub removed_count: usize,
    /// Of which query parameters.
    pub removed_params: usize,
    /// The `Cookie` (request) or `Set-Cookie` (response) headers to rewrite, when one held
    /// a forbidden cookie.
    pub cookies: Option<CookieEdit>,
    /// Cookies removed (pairs of `Cookie` headers, or `Set-Cookie` headers), not counted
    /// in `removed_count`.
    pub removed_cookies: usize,
}

impl HeaderEdits {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.new_path.is_none() && self.cookies.is_none()
    }
}

/// A rewrite of every header named `header`, for hosts that can only remove a header by
/// name and add values back: remove them all, then add each of `keep` in order (none:
/// the header is gone). `Cookie` values are rebuilt from their remaining pairs, byte for
/// byte; `Set-Cookie` values that set an allowed cookie are kept as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieEdit {
    /// `cookie` or `set-cookie`.
    pub header: &'static str,
    /// The values to add back, in order.
    pub keep: Vec<Vec<u8>>,
}

impl CompiledConfig {
    /// Plans the request edits with this configuration's `query` settings: forbidden
    /// category headers and query parameters.
    pub fn plan_request<'a, I>(&self, decision: &Decision, headers: I) -> HeaderEdits
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        plan(&self.policy, self.query, decision, headers, true)
    }

    /// Plans the response edits: forbidden category headers.
    pub fn plan_response<'a, I>(&self, decision: &Decision, headers: I) -> HeaderEdits
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        plan(&self.policy, self.query, decision, headers, false)
    }
}

/// Plans the request edits with the default `query` settings (`;` separates parameters):
/// forbidden category headers and query parameters. Hosts holding a configuration call
/// [`CompiledConfig::plan_request`], which honours its `query` block.
pub fn plan_request<'a, I>(policy: &CompiledPolicy, decision: &Decision, headers: I) -> HeaderEdits
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    plan(policy, QuerySettings::default(), decision, headers, true)
}

/// Plans the response edits: forbidden category headers (the same as
/// [`CompiledConfig::plan_response`]).
pub fn plan_response<'a, I>(policy: &CompiledPolicy, decision: &Decision, headers: I) -> HeaderEdits
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    plan(policy, QuerySettings::default(), decision, headers, false)
}

fn plan<'a, I>(
    policy: &CompiledPolicy,
    query: QuerySettings,
    decision: &Decision,
    headers: I,
    with_path: bool,
) -> HeaderEdits
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut edits = HeaderEdits::default();
    if !decision.redacts() {
        return edits;
    }
    let forbidden = decision.redacted;
    let cookie_header = if with_path { "cookie" } else { "set-cookie" };
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in headers {
        if name == cookie_header && policy.has_cookie_mappings() {
            cookies.push(value);
        }
        if with_path && name == ":path" && policy.has_query_mappings() {
            let Ok(path) = std::str::from_utf8(value) else {
                continue;
            };
            let mut hit = CategorySet::EMPTY;
            let mut count = 0;
            edits.new_path = strip_params(path, query, |param| {
                let cats = policy.query_categories(param).intersection(forbidden);
                if cats.is_empty() {
                    false
                } else {
                    hit = hit.union(cats);
                    count += 1;
                    true
                }
            });
            edits.removed = edits.removed.union(hit);
            edits.removed_count += count;
            edits.removed_params += count;
            continue;
        }
        let cats = policy.header_categories(name).intersection(forbidden);
        if !cats.is_empty() {
            edits.removed = edits.removed.union(cats);
            edits.removed_count += 1;
            if !edits.remove.iter().any(|n| n == name) {
                edits.remove.push(name.to_string());
            }
        }
    }
    // A cookie header mapped to a category as a whole is already removed.
    if !cookies.is_empty() && !edits.remove.iter().any(|n| n == cookie_header) {
        let found = if with_path {
            plan_cookie_headers(policy, forbidden, &cookies)
        } else {
            plan_set_cookie_headers(policy, forbidden, &cookies)
        };
        edits.removed = edits.removed.union(found.removed);
        edits.removed_cookies = found.count;
        edits.cookies = found.edit;
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile_config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn forbidden_headers_and_params_are_planned_for_removal() {
        let c = compile_config(
            br#"{"caller": {"unidentified_party": "tsunagu"}, "consents": {"records": [{"subject": "u", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let headers: Vec<(&str, &[u8])> = vec![
            (":path", b"/p?lat=1&page=2"),
            ("x-user-id", b"u"),
            ("x-data-purpose", b"marketing.newsletters"),
            ("x-geo-position", b"35.8,139.6"),
            ("x-geo-position", b"35.9,139.7"),
            ("x-user-email", b"a@example.com"),
            ("x-device-id", b"dev-1"),
        ];
        let d = c.evaluate(headers.iter().copied());
        let edits = plan_request(&c.policy, &d, headers.iter().copied());
        assert_eq!(edits.new_path.as_deref(), Some("/p?page=2"));
        assert_eq!(edits.remove, vec!["x-geo-position", "x-device-id"]);
        assert_eq!(edits.removed_count, 4);
        let gps = c.policy.category_idx("location.gps").unwrap();
        assert!(edits.removed.contains(gps));
        let resp = plan_response(&c.policy, &d, headers.iter().copied());
        assert_eq!(resp.new_path, None, "responses have no path");
    }

    #[test]
    fn the_configured_separators_decide_what_a_param_is() {
        let consents = r#""caller": {"unidentified_party": "tsunagu"}, "consents": {"records": [{"subject": "u", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}"#;
        let on = compile_config(format!("{{{consents}}}").as_bytes()).unwrap();
        let off = compile_config(
            format!(r#"{{{consents}, "query": {{"semicolon_separator": false}}}}"#).as_bytes(),
        )
        .unwrap();
        let headers: Vec<(&str, &[u8])> = vec![
            (":path", b"/p?page=2;lat=35.86"),
            ("x-user-id", b"u"),
            ("x-data-purpose", b"marketing.newsletters"),
        ];
        let d = on.evaluate(headers.iter().copied());
        let edits = on.plan_request(&d, headers.iter().copied());
        assert_eq!(edits.new_path.as_deref(), Some("/p?page=2"));
        assert_eq!(edits.removed_params, 1);
        let edits = off.plan_request(&d, headers.iter().copied());
        assert_eq!(edits.new_path, None, "`page=2;lat=35.86` is one parameter");
        let edits = plan_request(&on.policy, &d, headers.iter().copied());
        assert_eq!(edits.new_path.as_deref(), Some("/p?page=2"), "the default");
    }

    #[test]
    fn the_shipped_policy_takes_tracking_location_and_device_cookies_and_keeps_the_session() {
        let c = compile_config(
            br#"{"caller": {"unidentified_party": "tsunagu"}, "consents": {"records": [{"subject": "u", "grants": {"marketing.newsletters": {"policy_version": 1}}}]}}"#,
        )
        .unwrap();
        let headers: Vec<(&str, &[u8])> = vec![
            ("x-user-id", b"u"),
            ("x-data-purpose", b"marketing.newsletters"),
            (
                "cookie",
                b"session=s1; _ga=GA1.2.3; _fbp=fb.1; minna_cookie_id=c9; last_location=35.86%2C139.65; device_id=dev-1; sid=2",
            ),
        ];
        let d = c.evaluate(headers.iter().copied());
        let edits = c.plan_request(&d, headers.iter().copied());
        let keep = &edits.cookies.as_ref().unwrap().keep;
        assert_eq!(keep, &[b"session=s1; sid=2".to_vec()]);
        assert_eq!(edits.removed_cookies, 5);
        for id in ["cookie", "location.gps", "device_id"] {
            assert!(
                edits.removed.contains(c.policy.category_idx(id).unwrap()),
                "{id}"
            );
        }
    }

    #[test]
    fn an_allow_decision_plans_nothing() {
        let doc = serde_json::json!({"policy": {
            "id": "p", "version": 1,
            "categories": [{"id": "email", "label": {"ja": "a", "en": "b"}, "headers": ["x-email"]}],
            "purposes": [{"id": "all", "label": {"ja": "a", "en": "b"}, "basis": "contract", "categories": ["email"]}]
        }});
        let c = compile_config(doc.to_string().as_bytes()).unwrap();
        let headers: Vec<(&str, &[u8])> = vec![
            ("x-user-id", b"u"),
            ("x-data-purpose", b"all"),
            ("x-email", b"e"),
        ];
        let d = c.evaluate(headers.iter().copied());
        assert!(plan_request(&c.policy, &d, headers.iter().copied()).is_empty());
    }
}
