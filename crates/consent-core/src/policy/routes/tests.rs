use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn table(rules: serde_json::Value) -> Result<RouteTable, ConfigError> {
    let docs: Vec<RouteRuleDoc> = serde_json::from_value(rules).unwrap();
    let policy = CompiledPolicy::default_policy().unwrap();
    RouteTable::compile(&docs, &RouteRuleDoc::default(), &policy, true, false)
}

fn pick<'t>(t: &'t RouteTable, name: Option<&str>, host: &str, path: &str) -> &'t str {
    let facts = RouteFacts {
        route_name: name,
        host: Some(host),
        path: Some(path),
    };
    &t.rule(t.select(&facts)).name
}

#[test]
fn the_most_specific_rule_wins_and_unmatched_requests_get_the_default() {
    let t = table(serde_json::json!([
        {"name": "api", "match": {"path_prefix": "/api/"}},
        {"name": "api-users", "match": {"path_prefix": "/api/users/"}},
        {"name": "city-host", "match": {"host": "city.example", "path_prefix": "/"}},
        {"name": "any-sub", "match": {"host": "*.example"}},
        {"name": "named", "match": {"route_name": "profile"}}
    ]))
    .unwrap();
    assert_eq!(pick(&t, None, "a.test", "/api/x"), "api");
    assert_eq!(pick(&t, None, "a.test", "/api/users/1?x=/"), "api-users");
    assert_eq!(
        pick(&t, None, "City.Example:8443", "/api/users/1"),
        "city-host"
    );
    assert_eq!(pick(&t, None, "www.example", "/api/users/1"), "any-sub");
    assert_eq!(
        pick(&t, Some("profile"), "city.example", "/api/users/1"),
        "named"
    );
    assert_eq!(pick(&t, None, "a.test", "/other"), "default");
    assert_eq!(pick(&t, None, "example", "/x"), "default");
}

#[test]
fn path_variants_a_backend_would_read_alike_match_the_same_rule() {
    let t = table(serde_json::json!([
        {"name": "v1", "match": {"path_prefix": "/v1/"}}
    ]))
    .unwrap();
    for path in [
        "/v1/x",
        "//v1/x",
        "/%76%31/x",
        "/x/../v1/x",
        "/./v1/x?y=1",
        "/v1%2Fx",
    ] {
        assert_eq!(pick(&t, None, "a.test", path), "v1", "{path}");
    }
    for path in ["/v2/x", "/v1", "/V1/x"] {
        assert_eq!(pick(&t, None, "a.test", path), "default", "{path}");
    }
}

#[test]
fn a_rule_restricts_purposes_and_can_relax_the_user_requirement() {
    let t = table(serde_json::json!([
        {"name": "public", "match": {"path_prefix": "/public/"}, "purposes": ["marketing.analysis"], "require_user": false}
    ]))
    .unwrap();
    let p = CompiledPolicy::default_policy().unwrap();
    let rule = t.rule(t.select(&RouteFacts {
        path: Some("/public/x"),
        ..RouteFacts::default()
    }));
    assert!(!rule.require_user);
    assert!(rule.accepts(p.purpose_idx("marketing.analysis").unwrap()));
    assert!(!rule.accepts(p.purpose_idx("surveys").unwrap()));
    assert!(t.rule(None).accepts(p.purpose_idx("surveys").unwrap()));
}

#[test]
fn rule_mistakes_name_the_field() {
    let cases = [
        (serde_json::json!([{"purposes": []}]), "routes[0].match"),
        (serde_json::json!([{"match": {}}]), "routes[0].match"),
        (
            serde_json::json!([{"match": {"path_prefix": "api"}}]),
            "routes[0].match.path_prefix",
        ),
        (
            serde_json::json!([{"match": {"host": "a b"}}]),
            "routes[0].match.host",
        ),
        (
            serde_json::json!([{"match": {"host": "a"}, "purposes": ["nope"]}]),
            "routes[0].purposes[0]",
        ),
        (
            serde_json::json!([{"match": {"host": "a"}}, {"match": {"host": "A"}}]),
            "routes[1].match",
        ),
        (
            serde_json::json!([{"match": {"host": "a"}, "json": {"nope": ["$.x"]}}]),
            "routes[0].json.nope",
        ),
        (
            serde_json::json!([{"match": {"host": "a"}, "json": {"email": ["x"]}}]),
            "routes[0].json.email[0]",
        ),
    ];
    for (rules, path) in cases {
        assert_eq!(table(rules).unwrap_err().path(), path);
    }
}

#[test]
fn a_rule_can_add_selectors_for_its_bodies() {
    let t = table(serde_json::json!([
        {"name": "legacy", "match": {"path_prefix": "/legacy/"}, "json": {"location.gps": ["$.pos"]}}
    ]))
    .unwrap();
    let p = CompiledPolicy::default_policy().unwrap();
    let gps = p.category_idx("location.gps").unwrap();
    let rule = t.rule(t.select(&RouteFacts {
        path: Some("/legacy/x"),
        ..RouteFacts::default()
    }));
    let m = rule.matcher.as_ref().unwrap();
    assert!(m.categories.contains(gps));
    assert!(t.rule(None).matcher.is_none());
}
