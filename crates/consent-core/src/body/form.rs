//! Form bodies (`application/x-www-form-urlencoded`), with the query string's splitter and
//! decoder: a parameter whose name (decoded, lowercased, whole or by segment, as in the
//! query) is one of a forbidden category's `query` names is removed, transformed as the
//! purpose says (a number coarsens like a JSON number, `"lat,lng"` like a JSON string; the
//! new value is form-encoded) or refuses the body (`block`). Every other byte, separators,
//! encodings, order and unknown parameters included, stays as it was.

use crate::body::redactor::{BodyOutcome, BodyReport, BodyRules, FieldHit, HitAction, Resolved};
use crate::body::transform::{text_as_value, value_as_text};
use crate::pieces::Edit;
use crate::policy::categories::{CategoryIdx, CategorySet};
use crate::policy::compiled::CompiledPolicy;
use crate::urlencoded;

/// The forbidden categories a body field's name carries through the policy's `query`
/// names, under any of its `readings` (lowercased), whole or by segment; with the policy
/// name that matched first, for field paths (it is the policy's text, never the body's).
pub(crate) fn field_categories(
    policy: &CompiledPolicy,
    forbidden: CategorySet,
    readings: &[String],
) -> (CategorySet, Option<String>) {
    let mut found = CategorySet::EMPTY;
    let mut matched = None;
    for name in readings {
        urlencoded::whole_or_segment(name, &mut |candidate: &str| {
            let cats = policy.query_categories(candidate).intersection(forbidden);
            if !cats.is_empty() {
                found = found.union(cats);
                matched.get_or_insert_with(|| candidate.to_string());
            }
            false
        });
    }
    (found, matched)
}

/// Records one body field acted on, when paths are recorded.
pub(crate) fn record(
    report: &mut BodyReport,
    rules: &BodyRules<'_>,
    path: impl FnOnce() -> String,
    category: CategoryIdx,
    action: HitAction,
) {
    if rules.record_paths {
        report.push_hit(FieldHit {
            path: path(),
            category: Some(category),
            action,
        });
    }
}

/// Redacts one form body for the forbidden categories; `semicolon` says whether `;`
/// separates parameters (the `query` block's setting).
pub(crate) fn redact_form(
    body: &[u8],
    rules: &BodyRules<'_>,
    policy: &CompiledPolicy,
    forbidden: CategorySet,
    semicolon: bool,
) -> (BodyOutcome, BodyReport) {
    let mut report = BodyReport::default();
    let mut blocked = None;
    let out = urlencoded::rewrite(body, semicolon, |param| {
        let readings = urlencoded::readings(urlencoded::raw_name(param));
        let (hit, name) = field_categories(policy, forbidden, &readings);
        if hit.is_empty() || blocked.is_some() {
            return Edit::Keep;
        }
        report.categories = report.categories.union(hit);
        let path = || format!("form:{}", name.as_deref().unwrap_or("*"));
        let first = hit.iter().next();
        let (edit, category, action) = match rules.resolve(hit) {
            Resolved::Block(c) => {
                blocked = Some(c);
                (Edit::Keep, Some(c), HitAction::Blocked)
            }
            Resolved::Remove => (Edit::Drop, first, HitAction::Removed),
            Resolved::Transform(c, action) => {
                let new = urlencoded::decode_value(param)
                    .and_then(|text| rules.transform_value(c, &action, &text_as_value(&text)))
                    .and_then(value_as_text);
                match new {
                    Some(text) => {
                        let done = match action {
                            crate::body::FieldAction::Pseudonymise => HitAction::Pseudonymised,
                            _ => HitAction::Coarsened,
                        };
                        (
                            Edit::Replace(urlencoded::with_value(param, &text)),
                            Some(c),
                            done,
                        )
                    }
                    None => (Edit::Drop, Some(c), HitAction::Removed),
                }
            }
        };
        match action {
            HitAction::Removed => report.removed += 1,
            HitAction::Coarsened | HitAction::Pseudonymised => report.transformed += 1,
            _ => {}
        }
        if let Some(c) = category {
            record(&mut report, rules, path, c, action);
        }
        edit
    });
    if let Some(c) = blocked {
        return (BodyOutcome::Blocked(c), report);
    }
    match out {
        Some(bytes) => (BodyOutcome::Rewritten(bytes), report),
        None => (BodyOutcome::Unchanged, report),
    }
}

#[cfg(test)]
mod tests {
    use crate::body::test_support::{config, enforce, forwarded};
    use crate::body::{BodyOutcome, HitAction};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=utf-8");

    fn out(purpose: &str, body: &str) -> String {
        let c = config("pass");
        let (outcome, _) = enforce(&c, purpose, FORM, body.as_bytes()).unwrap();
        forwarded(body.as_bytes(), &outcome)
    }

    #[test]
    fn forbidden_params_go_and_every_other_byte_stays() {
        assert_eq!(
            out(
                "strict",
                "a=1&email=x%40y.jp&note=caf%C3%A9+x&LAT=35.8&z&unknown=%zz"
            ),
            "a=1&note=caf%C3%A9+x&z&unknown=%zz"
        );
        let body = "a=1&note=caf%C3%A9+x";
        assert_eq!(out("strict", body), body);
        let c = config("pass");
        let (outcome, _) = enforce(&c, "all", FORM, b"email=a&lat=1").unwrap();
        assert_eq!(outcome, BodyOutcome::Unchanged, "an allowed purpose");
    }

    #[test]
    fn encoded_plus_and_structured_names_cannot_smuggle_a_param() {
        assert_eq!(
            out(
                "strict",
                "%45MAIL=a&em%61il=b&email%5B0%5D=c&user%5Bemail%5D=d&user.email=e&email[]=f&ok=1"
            ),
            "ok=1"
        );
        assert_eq!(out("strict", "e+mail=a&emails=b"), "e+mail=a&emails=b");
    }

    #[test]
    fn repeated_empty_and_valueless_params_are_each_removed() {
        assert_eq!(out("strict", "email=&email&email=a&x=&&y"), "x=&&y");
        assert_eq!(out("strict", "email=a&email=b"), "");
    }

    #[test]
    fn semicolons_separate_form_params_as_in_the_query() {
        assert_eq!(out("strict", "a=1;email=x;b=2&lat=3"), "a=1;b=2");
        let mut c = config("pass");
        c.query.semicolon_separator = false;
        let body = b"a=1;email=x;b=2";
        let (outcome, _) = enforce(&c, "strict", FORM, body).unwrap();
        assert_eq!(outcome, BodyOutcome::Unchanged, "one parameter named `a`");
    }

    #[test]
    fn transforms_rewrite_the_value_in_place_encoded() {
        assert_eq!(
            out("analysis", "lat=35.8617&gps_note=x&lng=139.6455&amount=3"),
            "lat=35.86&gps_note=x&lng=139.65&amount=3"
        );
        assert_eq!(
            out("analysis", "lat=35.8617%2C139.6455"),
            "lat=35.86%2C139.65",
            "a \"lat,lng\" value coarsens like a JSON string"
        );
        assert_eq!(out("analysis", "lat=home&lng&x=1"), "x=1", "cannot coarsen");
        let pseudonymised = out("analysis", "device_id=dev-7f3a9c&x=1");
        assert!(
            pseudonymised.starts_with("device_id=ps_"),
            "{pseudonymised}"
        );
        assert!(!pseudonymised.contains("7f3a9c"));
        let c = config("pass");
        let (_, report) = enforce(&c, "analysis", FORM, b"lat=1.234&email=a&device_id=d").unwrap();
        assert_eq!((report.removed, report.transformed), (1, 2));
        let actions: Vec<(&str, HitAction)> = report
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("form:lat", HitAction::Coarsened),
                ("form:email", HitAction::Removed),
                ("form:device_id", HitAction::Pseudonymised)
            ]
        );
    }

    #[test]
    fn a_block_action_blocks_the_form() {
        let c = config("pass");
        let (outcome, _) = enforce(&c, "offers", FORM, b"x=1&amount=5").unwrap();
        let payment = c.policy.category_idx("payment").unwrap();
        assert_eq!(outcome, BodyOutcome::Blocked(payment));
    }

    #[test]
    fn a_form_that_is_json_is_read_both_ways() {
        assert_eq!(out("strict", r#"{"email":"a","n":1}"#), r#"{"n":1}"#);
        assert_eq!(
            out("strict", r#"{"a":"x&email=b@example.jp"}"#),
            r#"{"a":"x"#,
            "a form parser reads email=b@example.jp\"}} here"
        );
    }

    #[test]
    fn paths_never_hold_a_value_or_an_unknown_name() {
        let c = config("pass");
        let (_, report) =
            enforce(&c, "strict", FORM, b"user%5Bemail%5D=secret@example.jp").unwrap();
        assert_eq!(report.fields[0].path, "form:email");
    }
}
