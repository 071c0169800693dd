//! Which headers to remove and how to rewrite the path, given a decision.

use crate::decide::decision::Decision;
use crate::decide::query::strip_params;
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
}

impl HeaderEdits {
    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.new_path.is_none()
    }
}

/// Plans the request edits: forbidden category headers and query parameters.
pub fn plan_request<'a, I>(policy: &CompiledPolicy, decision: &Decision, headers: I) -> HeaderEdits
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    plan(policy, decision, headers, true)
}

/// Plans the response edits: forbidden category headers.
pub fn plan_response<'a, I>(policy: &CompiledPolicy, decision: &Decision, headers: I) -> HeaderEdits
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    plan(policy, decision, headers, false)
}

fn plan<'a, I>(
    policy: &CompiledPolicy,
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
    for (name, value) in headers {
        if with_path && name == ":path" && policy.has_query_mappings() {
            let Ok(path) = std::str::from_utf8(value) else {
                continue;
            };
            let mut hit = CategorySet::EMPTY;
            let mut count = 0;
            edits.new_path = strip_params(path, |param| {
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
