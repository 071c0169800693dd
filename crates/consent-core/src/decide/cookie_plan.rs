//! Cookies of a forbidden category: removed one by one from `Cookie` request headers, and
//! the `Set-Cookie` response headers that set them dropped.
//!
//! Names are read with the `cookie` crate (a pair it cannot parse, such as `name` without
//! `=`, is read as the name it would be for servers that take it so), compared without
//! regard to ASCII case, and also percent-decoded, as some frameworks decode cookie names.
//! A `Cookie` header is split on `;` here and rebuilt from the remaining pairs byte for
//! byte; a `Set-Cookie` value is one cookie whatever commas its `Expires` holds.

use crate::decide::header_plan::CookieEdit;
use crate::pieces::{self, Edit};
use crate::policy::categories::CategorySet;
use crate::policy::compiled::CompiledPolicy;

/// What a cookie plan found.
#[derive(Debug, Default)]
pub(crate) struct CookiePlan {
    /// The rewrite, when a forbidden cookie was present.
    pub edit: Option<CookieEdit>,
    /// Categories removed.
    pub removed: CategorySet,
    /// Cookies removed.
    pub count: usize,
}

/// The forbidden categories a cookie's name carries, read from one `name=value` text.
fn categories(policy: &CompiledPolicy, forbidden: CategorySet, pair: &[u8]) -> CategorySet {
    let text = String::from_utf8_lossy(pair);
    let name = match cookie::Cookie::parse(text.as_ref()) {
        Ok(c) => c.name().to_string(),
        Err(_) => {
            let head = text.split(';').next().unwrap_or_default();
            head.split('=')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        }
    };
    let mut found = policy
        .cookie_categories(&name.to_ascii_lowercase())
        .intersection(forbidden);
    if name.contains('%') {
        let decoded = percent_encoding::percent_decode_str(&name).decode_utf8_lossy();
        found = found.union(
            policy
                .cookie_categories(&decoded.to_ascii_lowercase())
                .intersection(forbidden),
        );
    }
    found
}

/// Plans the `Cookie` request headers (`values`: every occurrence, in order): each is
/// split into its pairs and rebuilt from the allowed ones.
pub(crate) fn plan_cookie_headers(
    policy: &CompiledPolicy,
    forbidden: CategorySet,
    values: &[&[u8]],
) -> CookiePlan {
    plan(policy, forbidden, values, "cookie")
}

/// Plans the `Set-Cookie` response headers (`values`: every occurrence, in order): each
/// value is one cookie, kept or dropped whole.
pub(crate) fn plan_set_cookie_headers(
    policy: &CompiledPolicy,
    forbidden: CategorySet,
    values: &[&[u8]],
) -> CookiePlan {
    plan(policy, forbidden, values, "set-cookie")
}

fn plan(
    policy: &CompiledPolicy,
    forbidden: CategorySet,
    values: &[&[u8]],
    header: &'static str,
) -> CookiePlan {
    let mut plan = CookiePlan::default();
    let mut keep = Vec::with_capacity(values.len());
    for value in values {
        let pairs = if header == "cookie" {
            pieces::split(value, |b| b == b';')
        } else {
            std::iter::once(0..value.len()).collect()
        };
        let edits: Vec<Edit> = pairs
            .iter()
            .map(|range| {
                let pair = value.get(range.clone()).unwrap_or_default();
                let hit = categories(policy, forbidden, pair);
                if hit.is_empty() {
                    Edit::Keep
                } else {
                    plan.removed = plan.removed.union(hit);
                    plan.count += 1;
                    Edit::Drop
                }
            })
            .collect();
        if edits.iter().all(|e| *e == Edit::Keep) {
            keep.push(value.to_vec());
            continue;
        }
        let rebuilt = pieces::rebuild(value, &pairs, &edits);
        let start = rebuilt
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rebuilt.len());
        if let Some(rest) = rebuilt.get(start..).filter(|r| !r.is_empty()) {
            keep.push(rest.to_vec());
        }
    }
    if plan.count > 0 {
        plan.edit = Some(CookieEdit { header, keep });
    }
    plan
}

#[cfg(test)]
mod tests {
    use crate::config::{compile_config, CompiledConfig};
    use crate::decide::header_plan::{CookieEdit, HeaderEdits};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `ads` (cookies `_ga`, `_fbp`), `location` (cookie `last_location`); purposes `none`
    /// (sees neither) and `all`.
    fn config(extra_header: bool) -> CompiledConfig {
        let headers = if extra_header {
            serde_json::json!(["cookie"])
        } else {
            serde_json::json!([])
        };
        let doc = serde_json::json!({
            "require_user": false,
            "caller": {"unidentified_party": "op"},
            "policy": {"id": "p", "version": 1,
                "categories": [
                    {"id": "ads", "label": {"ja": "a", "en": "a"}, "cookies": ["_ga", "_FBP"]},
                    {"id": "location", "label": {"ja": "l", "en": "l"}, "cookies": ["last_location"],
                     "headers": headers}
                ],
                "purposes": [
                    {"id": "none", "label": {"ja": "n", "en": "n"}, "basis": "contract", "categories": []},
                    {"id": "all", "label": {"ja": "x", "en": "x"}, "basis": "contract", "categories": ["ads", "location"]}
                ],
                "parties": [{"id": "op", "label": {"ja": "o", "en": "o"}, "kind": "operator"}]}
        });
        compile_config(doc.to_string().as_bytes()).unwrap()
    }

    fn plan(
        c: &CompiledConfig,
        purpose: &str,
        headers: &[(&str, &str)],
        request: bool,
    ) -> HeaderEdits {
        let d = c.evaluate([("x-data-purpose", purpose.as_bytes())]);
        let list = headers.iter().map(|(n, v)| (*n, v.as_bytes()));
        if request {
            c.plan_request(&d, list)
        } else {
            c.plan_response(&d, list)
        }
    }

    fn kept(edit: &Option<CookieEdit>) -> Vec<String> {
        edit.as_ref()
            .unwrap()
            .keep
            .iter()
            .map(|v| String::from_utf8(v.clone()).unwrap())
            .collect()
    }

    #[test]
    fn forbidden_cookies_leave_every_cookie_header_one_by_one() {
        let c = config(false);
        let edits = plan(
            &c,
            "none",
            &[
                ("cookie", "_ga=GA1.2.3; session=abc;theme=dark"),
                ("x-other", "1"),
                ("cookie", "sid=1; LAST_LOCATION=\"35.86,139.65\"; _fbp=fb.1"),
                ("cookie", "_ga=x"),
                ("cookie", "lang=ja"),
            ],
            true,
        );
        let edit = edits.cookies.as_ref().unwrap();
        assert_eq!(edit.header, "cookie");
        assert_eq!(
            kept(&edits.cookies),
            ["session=abc;theme=dark", "sid=1", "lang=ja"]
        );
        assert_eq!(edits.removed_cookies, 4);
        assert_eq!(edits.removed_count, 0, "headers and params only");
        assert!(edits
            .removed
            .contains(c.policy.category_idx("ads").unwrap()));
        assert!(edits.remove.is_empty());
    }

    #[test]
    fn odd_pairs_are_read_strictly() {
        let c = config(false);
        let edits = plan(
            &c,
            "none",
            &[("cookie", "a=\"x; _ga=1\"; %5Fga=2; _ga; =v;  ; b=\"q\"")],
            true,
        );
        assert_eq!(kept(&edits.cookies), ["a=\"x; =v;  ; b=\"q\""]);
        assert_eq!(edits.removed_cookies, 3);
    }

    #[test]
    fn set_cookie_headers_of_forbidden_cookies_are_dropped_and_the_rest_kept() {
        let c = config(false);
        let allowed = "session=abc; Path=/; HttpOnly; Secure; SameSite=Lax";
        let edits = plan(
            &c,
            "none",
            &[
                ("set-cookie", "_ga=GA1.2.3; Domain=.example.jp; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT"),
                ("set-cookie", allowed),
                ("set-cookie", "last_location=\"35.86,139.65\"; Max-Age=60; HttpOnly"),
                ("set-cookie", "theme=dark; Expires=Thu, 01 Jan 2026 00:00:00 GMT"),
            ],
            false,
        );
        assert_eq!(edits.cookies.as_ref().unwrap().header, "set-cookie");
        assert_eq!(
            kept(&edits.cookies),
            [allowed, "theme=dark; Expires=Thu, 01 Jan 2026 00:00:00 GMT"]
        );
        assert_eq!(edits.removed_cookies, 2);
        assert_eq!(
            kept(&plan(&c, "none", &[("set-cookie", "_ga=1")], false).cookies),
            Vec::<String>::new()
        );
    }

    #[test]
    fn nothing_changes_without_a_forbidden_cookie() {
        let c = config(false);
        let headers = [
            ("cookie", "_ga=1; last_location=2"),
            ("set-cookie", "_ga=1"),
        ];
        assert!(
            plan(&c, "all", &headers, true).is_empty(),
            "an allowed purpose"
        );
        assert!(plan(&c, "none", &[("cookie", "session=1; gaa=2")], true).is_empty());
        let request_only = plan(&c, "none", &[("set-cookie", "_ga=1")], true);
        assert!(
            request_only.cookies.is_none(),
            "Set-Cookie is a response header"
        );
    }

    #[test]
    fn a_cookie_header_removed_whole_is_not_rebuilt() {
        let c = config(true);
        let edits = plan(&c, "none", &[("cookie", "_ga=1; session=2")], true);
        assert_eq!(edits.remove, ["cookie"]);
        assert!(edits.cookies.is_none());
    }

    #[test]
    fn cookie_names_in_the_policy_are_checked() {
        let doc = serde_json::json!({"policy": {"id": "p", "version": 1,
            "categories": [{"id": "a", "label": {"ja": "a", "en": "a"}, "cookies": ["ok", "not ok"]}],
            "purposes": [{"id": "x", "label": {"ja": "x", "en": "x"}, "basis": "contract", "categories": []}]}});
        let err = compile_config(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.path(), "policy.categories[0].cookies[1]");
        assert!(!err.to_string().contains("not ok"), "{err}");
    }
}
